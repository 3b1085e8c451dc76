//! Local Service Discovery (BEP 14, `--lsd`), in a network namespace with
//! only loopback (multicast switched on for it): peers find each other on
//! the local network with no tracker, no DHT and no `--peer`, also for a
//! magnet (its metadata) and under a hybrid's v2 info-hash.

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

/// Loopback made to carry the LSD group's multicast.
fn multicast_on(ns: &NetNs) {
    for args in [
        &["link", "set", "lo", "multicast", "on"][..],
        &["route", "add", "224.0.0.0/4", "dev", "lo"][..],
    ] {
        let ok = ns.command("ip").args(args).status().unwrap();
        assert!(ok.success(), "ip {args:?} in the namespace");
    }
}

/// `btt seed` of `torrent` from `seed` with `--lsd` and nothing else, once
/// its LSD node is up.
fn lsd_seed(ns: &NetNs, torrent: &Path, seed: &Path, log: &Path) -> Proc {
    let mut c = ns.command(BTT);
    c.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(seed)
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--no-trackers",
            "--lsd",
        ])
        .env("RUST_LOG", "btt=debug,info");
    let seeder = Proc::spawn("btt seed", &mut c, log);
    assert!(
        wait_until(Duration::from_secs(20), || seeder
            .log_text()
            .contains("local peer discovery on")),
        "{}",
        seeder.log_text()
    );
    seeder
}

#[test]
fn a_mount_finds_btt_seed_through_local_service_discovery() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    multicast_on(&ns);
    let seed = d.join("seed");
    make_tree(&seed, &[("clip.bin", 2_000_000)]);
    let torrent = make_torrent(&seed.join("clip.bin"), 64 * 1024, &[]);
    let seeder = lsd_seed(&ns, &torrent, &seed, &d.join("seed.log"));
    let m = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        &torrent,
        &["--no-trackers", "--lsd"],
        &[],
    )
    .unwrap();
    let got = read_file_timeout(&m.mnt.join("clip.bin"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}\n--- seed ---\n{}", m.log(), seeder.log_text()));
    assert!(
        got == std::fs::read(seed.join("clip.bin")).unwrap(),
        "byte-exact"
    );
    // Whichever heard the other's announce dialed (each announces once at
    // start): nothing else could have told either of them.
    assert!(
        m.log().contains("peers from local peer discovery")
            || seeder
                .log_text()
                .contains("peers from local peer discovery"),
        "{}\n--- seed ---\n{}",
        m.log(),
        seeder.log_text()
    );
}

/// A hybrid torrent is announced on the local network under both of its
/// info-hashes, and a magnet's metadata is looked for there too: a mount
/// holding only the v2 hash (`urn:btmh`), with no tracker, no DHT and no
/// peer, finds `btt seed` through LSD, gets the metadata and reads.
#[test]
fn a_v2_magnet_of_a_hybrid_finds_btt_seed_through_local_service_discovery() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    multicast_on(&ns);
    let seed = d.join("seed");
    make_tree(&seed, &[("clip.bin", 1_500_000)]);
    let torrent = d.join("clip.torrent");
    let meta = btt_create(
        &seed.join("clip.bin"),
        &torrent,
        &["--hybrid", "--piece-size", "64KiB"],
    );
    let v2 = meta.v2.as_ref().unwrap().info_hash;
    let seeder = lsd_seed(&ns, &torrent, &seed, &d.join("seed.log"));
    let magnet = format!(
        "magnet:?xt=urn:btmh:1220{}",
        data_encoding::HEXLOWER.encode(&v2)
    );
    let m = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        Path::new(&magnet),
        &["--no-trackers", "--lsd", "--metadata-timeout", "60"],
        &[],
    )
    .unwrap();
    let shown = wait_until(Duration::from_secs(40), || m.mnt.join("clip.bin").exists());
    assert!(
        shown,
        "no metadata through LSD\n{}\n--- seed ---\n{}",
        m.log(),
        seeder.log_text()
    );
    let got = read_file_timeout(&m.mnt.join("clip.bin"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}\n--- seed ---\n{}", m.log(), seeder.log_text()));
    assert!(
        got == std::fs::read(seed.join("clip.bin")).unwrap(),
        "byte-exact"
    );
}
