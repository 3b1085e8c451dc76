//! btt: mount a torrent as a read-only filesystem.
//!
//! Data flows one way: kernel → [`fuse`] adapter → [`fs`] → [`engine`] → peers →
//! [`store`] → back. Each module owns one layer; the protocol layers
//! ([`metainfo`], [`wire`], the tracker message codecs) never do I/O so they can be
//! tested byte for byte without sockets.

#[cfg(test)]
mod alloc_count;
pub mod bencode;
pub mod bitfield;
pub mod chain;
pub mod chanstore;
pub mod cli;
pub mod config;
pub mod create;
pub mod demo;
pub mod dht;
pub mod doctor;
pub mod engine;
pub mod failpoint;
pub mod fs;
pub mod fuse;
pub mod fuzz;
pub mod get;
pub mod library;
pub mod lsd;
pub mod magnet;
pub mod market;
pub mod memory;
pub mod metainfo;
pub mod mount;
pub mod passthrough;
pub mod pay;
pub mod seed;
pub mod store;
pub mod tracker;
pub mod wallet;
pub mod web;
pub mod wire;

/// Our BitTorrent client prefix (Azureus style): `-BT0100-` + 12 random bytes.
pub fn new_peer_id() -> [u8; 20] {
    use rand::Rng;
    let mut id = [0u8; 20];
    id[..8].copy_from_slice(b"-BT0100-");
    let mut rng = rand::rng();
    for b in &mut id[8..] {
        *b = rng.random_range(b'0'..=b'z');
    }
    id
}
