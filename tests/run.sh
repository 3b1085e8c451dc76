#!/usr/bin/env bash
# The whole test suite, from a bare machine: installs the real programs the
# end-to-end tests drive (BitTorrent clients, tracker, players, FUSE), then runs
# formatting, lint, unit/property tests and the end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh

export RUST_BACKTRACE=0
# Nothing in the suite speaks DHT outside a test's own network namespace.
export BTT_NO_DHT=true
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# Criterion benchmarks run once each in test mode (they take no --test-threads).
cargo test --benches
# The .deb the packaging test installs (from the dev build the tests use;
# `bash packaging/build-deb.sh` alone makes the release package).
rm -rf target/deb
cargo build --workspace --bins
BTT_DEB_PROFILE=dev bash packaging/build-deb.sh
cargo test --workspace --lib --bins --tests -- --test-threads=2
