//! End-to-end tests: real kernel FUSE mounts, real BitTorrent clients (aria2c,
//! transmission-daemon, qbittorrent-nox, opentracker), real players (ffmpeg, cvlc).
//! One test binary (faster to build). Everything talks over 127.0.0.1 only.
//! `tests/setup.sh` installs the programs; it is what the README's test command runs.

mod harness;

mod bad_input;
mod chain;
mod dht;
mod faults;
mod hostile;
mod library;
mod lsd;
mod magnet;
mod own_tracker;
mod packaging;
mod paid;
mod passthrough;
mod payments;
mod peers;
mod pex;
mod tracker;
mod v2;
mod video;
mod web;
