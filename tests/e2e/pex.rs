//! PEX (BEP 11) both ways with libtorrent, in a network namespace with only
//! loopback made by each test (libtorrent and btt would otherwise tell
//! each other of whatever they hear).

use crate::dht::lt_peer;
use crate::harness::*;
use std::path::Path;
use std::time::Duration;

/// The port a mount listens on, from its log.
fn listen_port(m: &Mount) -> u16 {
    let mut port = None;
    wait_until(Duration::from_secs(10), || {
        port = m
            .log()
            .split("engine started listen=127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok());
        port.is_some()
    });
    port.unwrap_or_else(|| panic!("no listen address in the log\n{}", m.log()))
}

/// A file of `size` bytes in `dir`/seed and its torrent.
fn content(dir: &Path, size: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let seed = dir.join("seed");
    make_tree(&seed, &[("clip.bin", size)]);
    let torrent = make_torrent(&seed.join("clip.bin"), 64 * 1024, &[]);
    (torrent, seed)
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A mount told of one libtorrent seeder learns of a second one (which the
/// first is connected to) through PEX, and reads the whole file from it
/// once the first is killed. Nothing else could tell it: no tracker, no
/// DHT, no LSD.
#[test]
fn a_mount_learns_a_peer_through_pex_and_reads_from_it_when_the_first_dies() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let (torrent, seed) = content(d, 3_000_000);
    let (pa, pb) = (free_port(), free_port());
    let b = lt_peer(
        &ns,
        pb,
        &["--seed".into(), s(&torrent), s(&seed)],
        &d.join("lt-b.log"),
    );
    let mut a = lt_peer(
        &ns,
        pa,
        &[
            "--seed".into(),
            s(&torrent),
            s(&seed),
            "--connect".into(),
            format!("127.0.0.1:{pb}"),
        ],
        &d.join("lt-a.log"),
    );
    let b_addr = format!("127.0.0.1:{pb}");
    assert!(
        wait_until(Duration::from_secs(20), || a
            .log_text()
            .contains(&format!("peer {b_addr} "))),
        "the libtorrent seeders never met\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
    let m = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        &torrent,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{pa}")],
        &[],
    )
    .unwrap();
    // libtorrent sends PEX once a minute.
    let learned = wait_until(Duration::from_secs(120), || {
        m.log()
            .lines()
            .any(|l| l.contains("peers learned through PEX") && !l.contains("new=0"))
    });
    assert!(learned, "nothing learned through PEX\n{}", m.log());
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).expect("killed");
    let got = read_file_timeout(&m.mnt.join("clip.bin"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert!(
        got == std::fs::read(seed.join("clip.bin")).unwrap(),
        "byte-exact"
    );
    let log = m.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("addr={b_addr}")) && l.contains("peer connected")),
        "never connected to the peer PEX named\n{log}"
    );
}

/// libtorrent told only of a mount learns through the mount's PEX of the
/// seeder the mount dialed, and connects to it.
#[test]
fn libtorrent_learns_a_peer_through_the_pex_of_a_mount() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let (torrent, seed) = content(d, 1_000_000);
    let pa = free_port();
    let _a = lt_peer(
        &ns,
        pa,
        &["--seed".into(), s(&torrent), s(&seed)],
        &d.join("lt-a.log"),
    );
    let m = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        &torrent,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{pa}")],
        &[],
    )
    .unwrap();
    let mport = listen_port(&m);
    assert!(
        wait_until(Duration::from_secs(20), || m
            .log()
            .contains("peer connected")),
        "{}",
        m.log()
    );
    let out = d.join("lt-down");
    std::fs::create_dir_all(&out).unwrap();
    let leecher = lt_peer(
        &ns,
        free_port(),
        &[
            "--get".into(),
            s(&torrent),
            s(&out),
            "--connect".into(),
            format!("127.0.0.1:{mport}"),
        ],
        &d.join("lt-get.log"),
    );
    // Source flag 4: libtorrent learned the address through PEX.
    let via_pex = format!("peer 127.0.0.1:{pa} 4");
    assert!(
        wait_until(Duration::from_secs(60), || leecher
            .log_text()
            .contains(&via_pex)),
        "libtorrent never heard of the seeder through the mount's PEX\n{}\n{}",
        leecher.log_text(),
        m.log()
    );
}
