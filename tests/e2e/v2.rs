//! v2 and hybrid torrents (BEP 52) both ways with libtorrent, the one
//! client here that speaks v2, in a network namespace with only loopback
//! (libtorrent runs its DHT): btt mounts what libtorrent makes and seeds,
//! and libtorrent downloads what `btt create --v2 / --hybrid` makes from
//! `btt seed`. (aria2c 1.36, Debian's, computes a wrong v1 info-hash for
//! every hybrid torrent, libtorrent's too: aria2 issue 1903, fixed after
//! that release; so no v1-only client joins a hybrid swarm here.)

use crate::dht::lt_peer;
use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LT_MAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lt_make.py");

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A folder `d/seed/album` whose files are smaller than a piece, span
/// several, fill exactly two, are empty, and sit in a subfolder.
fn album(d: &Path) -> PathBuf {
    let seed = d.join("seed");
    make_tree(
        &seed,
        &[
            ("album/big.bin", 300_000),
            ("album/small.txt", 6),
            ("album/sub/mid.bin", 40_000),
            ("album/empty", 0),
            ("album/two.bin", 65_536),
        ],
    );
    seed
}

/// libtorrent's torrent of `content`: `kind` is v2 or hybrid.
fn lt_make(content: &Path, kind: &str) -> PathBuf {
    let out = content.with_extension(format!("{kind}.torrent"));
    let st = Command::new("/usr/bin/python3")
        .args([LT_MAKE, &s(content), &s(&out), kind, "32768"])
        .status()
        .unwrap();
    assert!(st.success(), "lt_make.py {kind}");
    out
}

/// `btt seed` of `torrent` from `data` inside `ns` on `port`, logging at
/// `log_level` (RUST_LOG), once it says it is seeding.
fn seed_in(
    ns: &NetNs,
    torrent: &Path,
    data: &Path,
    port: u16,
    log: &Path,
    log_level: &str,
) -> Proc {
    let mut c = ns.command(BTT);
    c.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--no-dht", "--no-trackers"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", log_level);
    let sp = Proc::spawn("btt seed", &mut c, log);
    assert!(
        wait_until(Duration::from_secs(20), || sp
            .log_text()
            .contains("seeding")),
        "{}",
        sp.log_text()
    );
    sp
}

/// A mount of `torrent` made and seeded by libtorrent reads every file
/// byte-exact: v2-only (checked with SHA-256 merkle hashes alone) and
/// hybrid.
#[test]
fn a_mount_reads_v2_and_hybrid_torrents_libtorrent_made_and_seeds() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let seed = album(d);
    for kind in ["v2", "hybrid"] {
        let torrent = lt_make(&seed.join("album"), kind);
        let port = free_port();
        let _lt = lt_peer(
            &ns,
            port,
            &["--seed".into(), s(&torrent), s(&seed)],
            &d.join(format!("lt-{kind}.log")),
        );
        let m = Mount::try_start_in(
            Some(&ns),
            &d.join(format!("m-{kind}")),
            &torrent,
            &["--no-trackers", "--peer", &format!("127.0.0.1:{port}")],
            &[],
        )
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_tree_eq(&m.mnt.join("album"), &seed.join("album"));
        assert!(
            !m.log().contains("hash mismatch"),
            "{kind}: a piece failed its check\n{}",
            m.log()
        );
    }
}

/// What `btt create --v2` and `--hybrid` make, libtorrent loads (it checks
/// the piece layers against the roots) and downloads from `btt seed`
/// byte-exact.
#[test]
fn libtorrent_downloads_btt_made_v2_and_hybrid_torrents_from_btt_seed() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let seed = album(d);
    for kind in ["v2", "hybrid"] {
        let torrent = d.join(format!("album.{kind}.torrent"));
        btt_create(
            &seed.join("album"),
            &torrent,
            &[&format!("--{kind}"), "--piece-size", "32KiB"],
        );
        let port = free_port();
        let sp = seed_in(
            &ns,
            &torrent,
            &seed,
            port,
            &d.join(format!("seed-{kind}.log")),
            "info",
        );
        let got = d.join(format!("lt-{kind}"));
        std::fs::create_dir_all(&got).unwrap();
        let lt = lt_peer(
            &ns,
            free_port(),
            &[
                "--get".into(),
                s(&torrent),
                s(&got),
                "--connect".into(),
                format!("127.0.0.1:{port}"),
            ],
            &d.join(format!("lt-get-{kind}.log")),
        );
        assert!(
            wait_until(Duration::from_secs(60), || lt
                .log_text()
                .contains("finished")),
            "{kind}: libtorrent did not finish\n{}\n{}",
            lt.log_text(),
            sp.log_text()
        );
        assert_tree_eq(&got.join("album"), &seed.join("album"));
    }
}

/// A hybrid is one torrent in two swarms: `btt seed` answers a handshake
/// naming either info-hash (v1, or v2 truncated to 20 bytes) with the
/// same one, and refuses any other.
#[test]
fn a_hybrid_seed_answers_a_handshake_on_either_info_hash() {
    use btt::wire::Handshake;
    use std::io::{Read, Write};
    let d = tmpdir();
    let d = d.path();
    let seed = album(d);
    let torrent = d.join("album.torrent");
    let meta = btt_create(
        &seed.join("album"),
        &torrent,
        &["--hybrid", "--piece-size", "32KiB"],
    );
    let v1 = meta.info_hash.0;
    let v2: [u8; 20] = meta.v2.as_ref().unwrap().info_hash[..20]
        .try_into()
        .unwrap();
    let port = free_port();
    let _seed = btt_seed(
        &torrent,
        &seed,
        port,
        &d.join("seed.log"),
        &["--no-trackers"],
    );
    let ask = |ih: [u8; 20]| -> Option<[u8; 20]> {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&Handshake::new(ih, *b"-XX0001-hybridhybrid").encode())
            .unwrap();
        let mut hs = [0u8; btt::wire::HANDSHAKE_LEN];
        c.read_exact(&mut hs).ok()?;
        Some(Handshake::decode(&hs).unwrap().info_hash)
    };
    assert_eq!(ask(v1), Some(v1));
    assert_eq!(ask(v2), Some(v2), "not answered on the v2 info-hash");
    assert_eq!(ask([7; 20]), None);
}

/// A v2-only magnet link (`urn:btmh`) mounts from libtorrent: the info
/// dictionary comes over BEP 9 (checked with SHA-256), the piece layers a
/// magnet lacks over BEP 52 hash requests, and the kept torrent holds them,
/// so a remount with no peer at all shows and reads the files at once.
#[test]
fn a_v2_only_magnet_link_mounts_from_libtorrent_and_remounts_without_peers() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let seed = album(d);
    let torrent = lt_make(&seed.join("album"), "v2");
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let v2 = meta.v2.as_ref().unwrap().info_hash;
    let port = free_port();
    let mut lt = lt_peer(
        &ns,
        port,
        &["--seed".into(), s(&torrent), s(&seed)],
        &d.join("lt.log"),
    );
    let magnet = format!(
        "magnet:?xt=urn:btmh:1220{}&dn=album&x.pe=127.0.0.1:{port}",
        data_encoding::HEXLOWER.encode(&v2)
    );
    let data = d.join("data");
    {
        // The peer that gave the metadata is dialed for the data: a read
        // does not wait until libtorrent happens to dial in (a minute).
        let m = Mount::try_start_in(
            Some(&ns),
            &d.join("first"),
            Path::new(&magnet),
            &[
                "--no-trackers",
                "--data-dir",
                &s(&data),
                "--read-timeout",
                "30",
            ],
            &[],
        )
        .unwrap();
        assert!(
            wait_until(Duration::from_secs(60), || m.mnt.join("album").exists()),
            "the files never appeared\n{}",
            m.log()
        );
        assert_tree_eq(&m.mnt.join("album"), &seed.join("album"));
        assert!(!m.log().contains("hash mismatch"), "{}", m.log());
    }
    lt.signal(libc::SIGKILL);
    let _ = lt.wait_exit(Duration::from_secs(5));
    let m = Mount::try_start_in(
        Some(&ns),
        &d.join("second"),
        Path::new(&magnet),
        &["--no-trackers", "--data-dir", &s(&data)],
        &[],
    )
    .unwrap();
    assert!(m.mnt.join("album").exists(), "shown at once on a remount");
    assert_tree_eq(&m.mnt.join("album"), &seed.join("album"));
}

/// libtorrent holding only a v2-only magnet link gets the info dictionary
/// and the piece layers from `btt seed` (which answers its hash requests
/// with their proofs) and downloads every file byte-exact.
#[test]
fn libtorrent_fetches_a_v2_magnet_from_btt_seed() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let seed = album(d);
    let torrent = d.join("album.torrent");
    let meta = btt_create(
        &seed.join("album"),
        &torrent,
        &["--v2", "--piece-size", "16KiB"],
    );
    let port = free_port();
    let sp = seed_in(&ns, &torrent, &seed, port, &d.join("seed.log"), "btt=debug");
    let got = d.join("lt");
    std::fs::create_dir_all(&got).unwrap();
    let lt = lt_peer(
        &ns,
        free_port(),
        &[
            "--get".into(),
            meta.magnet(),
            s(&got),
            "--connect".into(),
            format!("127.0.0.1:{port}"),
        ],
        &d.join("lt-get.log"),
    );
    assert!(
        wait_until(Duration::from_secs(60), || lt
            .log_text()
            .contains("finished")),
        "libtorrent did not finish\n{}\n{}",
        lt.log_text(),
        sp.log_text()
    );
    assert_tree_eq(&got.join("album"), &seed.join("album"));
    // libtorrent can check a whole file by its root alone; that it asked
    // for the layers and was answered is what the seed says.
    let log = sp.log_text();
    assert!(log.contains("hash request answered"), "{log}");
    assert!(!log.contains("hash request refused"), "{log}");
}
