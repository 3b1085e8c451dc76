//! Magnet links (BEP 9): a mount given only an info-hash fetches the
//! metadata from peers (aria2c through opentracker; `btt seed` by `x.pe=`,
//! beside peers that lie), keeps it for the next mount, and `btt seed`
//! serves it to aria2c holding only the magnet; a libtorrent seeder that
//! only dials the mount gives it the metadata on its own connection.

use crate::harness::*;
use btt::metainfo::Metainfo;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn meta(torrent: &Path) -> Metainfo {
    Metainfo::from_bytes(&std::fs::read(torrent).unwrap()).unwrap()
}

fn wait_for_files(mnt: &Path, name: &str) {
    let shown = wait_until(Duration::from_secs(60), || mnt.join(name).exists());
    assert!(
        shown,
        "the torrent's files never appeared in {}",
        mnt.display()
    );
}

#[test]
fn a_magnet_mounts_from_aria2_via_the_tracker_and_remounts_without_peers() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let tport = free_port();
    let tracker = format!("http://127.0.0.1:{tport}/announce");
    let torrent = make_torrent(&content, 64 * 1024, std::slice::from_ref(&tracker));
    let m = meta(&torrent);
    let _tracker = opentracker(d, tport, &[&torrent]);
    let mut aria = aria2_seed(
        &torrent,
        &d.join("seed"),
        free_port(),
        &d.join("aria2.log"),
        false,
    );
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=tree&tr={}",
        m.info_hash.hex(),
        tracker.replace(':', "%3A").replace('/', "%2F")
    );
    // Given on the command line and, the second time, in a file.
    let data = d.join("data");
    {
        let mount = Mount::start(
            &d.join("first"),
            Path::new(&magnet),
            &["--data-dir", data.to_str().unwrap()],
        );
        wait_for_files(&mount.mnt, "tree");
        assert_tree_eq(&mount.mnt.join("tree"), &content);
        let log = mount.log();
        assert!(log.contains("metadata received and verified"), "{log}");
    }
    let kept = data.join(format!("{}.torrent", m.info_hash.hex()));
    assert_eq!(meta(&kept).info_hash, m.info_hash, "the metadata is kept");
    aria.signal(libc::SIGKILL);
    let _ = aria.wait_exit(Duration::from_secs(5));
    let file = d.join("link.magnet");
    std::fs::write(&file, format!("{magnet}\n")).unwrap();
    let mount = Mount::start(
        &d.join("second"),
        &file,
        &["--data-dir", data.to_str().unwrap(), "--no-trackers"],
    );
    // No peer at all now: the kept metadata and data serve it at once.
    assert!(
        mount.mnt.join("tree").exists(),
        "shown at once on a remount"
    );
    assert_tree_eq(&mount.mnt.join("tree"), &content);
}

/// A peer that speaks BEP 9 and lies: `wrong` sends metadata of the right
/// size whose hash is wrong; otherwise it announces a huge size and sends
/// nothing. Counts the connections it got.
fn liar(info_hash: [u8; 20], size: usize, wrong: bool) -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let asked = Arc::new(AtomicBool::new(false));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                let mut hs = [0u8; 68];
                if s.read_exact(&mut hs).is_err() {
                    return;
                }
                seen.store(true, Ordering::Relaxed);
                let mut h = btt::wire::Handshake::new(info_hash, *b"-LI0001-liarliarliar");
                h.reserved[5] |= 0x10;
                let _ = s.write_all(&h.encode());
                let claimed = if wrong { size } else { 60 << 20 };
                let ext = format!("d1:md11:ut_metadatai1ee13:metadata_sizei{claimed}ee");
                let _ = send_ext(&mut s, 0, ext.as_bytes());
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let mut msg = vec![0u8; u32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut msg).is_err() {
                        return;
                    }
                    if !wrong || msg.len() < 2 || msg[0] != 20 || msg[1] != 1 {
                        continue;
                    }
                    let req = String::from_utf8_lossy(&msg[2..]).to_string();
                    let Some(piece) = req
                        .split("5:piecei")
                        .nth(1)
                        .and_then(|r| r.split('e').next())
                        .and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    let len = (size - piece * 16384).min(16384);
                    let mut out = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{size}ee")
                        .into_bytes();
                    out.extend(std::iter::repeat_n(b'x', len));
                    if send_ext(&mut s, 3, &out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, asked)
}

fn send_ext(s: &mut TcpStream, id: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut m = ((payload.len() + 2) as u32).to_be_bytes().to_vec();
    m.extend([20, id]);
    m.extend_from_slice(payload);
    s.write_all(&m)
}

#[test]
fn a_magnet_gets_true_metadata_from_btt_seed_beside_peers_that_lie() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 32 * 1024, &[]);
    let m = meta(&torrent);
    let (_seed, good) = seed_with_btt(d, &torrent);
    let (wrong, wrong_asked) = liar(m.info_hash.0, m.info_bytes.len(), true);
    let (huge, huge_asked) = liar(m.info_hash.0, 0, false);
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:{wrong}&x.pe=127.0.0.1:{huge}",
        m.info_hash.hex()
    );
    // The liars alone: the wrong copy is caught, nothing is kept.
    let mut alone = Mount::start(
        &d.join("liars"),
        Path::new(&magnet),
        &["--no-trackers", "--metadata-timeout", "5"],
    );
    let st = alone
        .proc
        .wait_exit(Duration::from_secs(30))
        .expect("gives up");
    assert!(!st.success());
    let out = alone.proc.log_text();
    assert!(out.contains("sent wrong metadata"), "{out}");
    assert!(wrong_asked.load(Ordering::Relaxed) && huge_asked.load(Ordering::Relaxed));
    let kept = d
        .join("liars/data")
        .join(format!("{}.torrent", m.info_hash.hex()));
    assert!(!kept.exists(), "a wrong copy is never kept");
    drop(alone);
    // With the good seeder beside them: the true metadata, and the files.
    let mount = Mount::start(
        &d.join("all"),
        Path::new(&magnet),
        &["--no-trackers", "--peer", &good],
    );
    wait_for_files(&mount.mnt, "tree");
    assert_tree_eq(&mount.mnt.join("tree"), &content);
}

#[test]
fn a_magnet_without_metadata_says_what_it_waits_for_then_ends_with_a_clear_error() {
    let d = tmpdir();
    let d = d.path();
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let refused = free_port();
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=film&x.pe=127.0.0.1:{refused}");
    let mut mount = Mount::start(d, Path::new(&magnet), &["--metadata-timeout", "4"]);
    let note = std::fs::read_to_string(mount.mnt.join("btt-waiting-for-metadata.txt")).unwrap();
    assert!(note.contains(hash) && note.contains("film"), "{note}");
    let names: Vec<_> = std::fs::read_dir(&mount.mnt).unwrap().collect();
    assert_eq!(names.len(), 1, "only the note while waiting");
    let st = mount
        .proc
        .wait_exit(Duration::from_secs(20))
        .expect("the mount gives up");
    assert!(!st.success());
    assert!(!is_mounted(&mount.mnt), "unmounted when it gives up");
    let out = mount.proc.log_text();
    assert!(
        out.contains("no metadata for") && out.contains("refused the connection"),
        "{out}"
    );
}

#[test]
fn aria2_fetches_the_metadata_of_a_magnet_from_btt_seed() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let tport = free_port();
    let tracker = format!("http://127.0.0.1:{tport}/announce");
    let torrent = make_torrent(&content, 64 * 1024, std::slice::from_ref(&tracker));
    let m = meta(&torrent);
    let _tracker = opentracker(d, tport, &[&torrent]);
    let _seed = btt_seed(
        &torrent,
        &d.join("seed"),
        free_port(),
        &d.join("seed.log"),
        &[],
    );
    let out = d.join("down");
    std::fs::create_dir_all(&out).unwrap();
    let magnet = format!("magnet:?xt=urn:btih:{}&tr={tracker}", m.info_hash.hex());
    let mut aria = Proc::spawn(
        "aria2c",
        std::process::Command::new("aria2c")
            .arg(&magnet)
            .arg(format!("--dir={}", out.display()))
            .args([
                "--seed-time=0",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--bt-save-metadata=false",
                "--disable-ipv6=true",
                "--summary-interval=0",
                "--console-log-level=warn",
                "--bt-tracker-interval=2",
            ])
            .arg(format!("--listen-port={}", free_port())),
        &d.join("aria2.log"),
    );
    let st = aria
        .wait_exit(Duration::from_secs(120))
        .expect("aria2c finished");
    assert!(st.success(), "aria2c failed: {}", aria.log_text());
    assert_tree_eq(&out.join("tree"), &content);
}

/// `btt seed` and `btt get` take magnets too: a seeder given only the magnet
/// and the data fetches the metadata from another seeder, checks its data
/// and serves; `btt get` with the magnet and that seeder alone downloads it.
#[test]
fn btt_seed_and_btt_get_take_magnets() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let m = meta(&torrent);
    let (_first, first) = seed_with_btt(d, &torrent);
    let magnet = format!("magnet:?xt=urn:btih:{}&dn=tree", m.info_hash.hex());
    let port = free_port();
    let home = d.join("home");
    let mut seed = Command::new(BTT);
    seed.args(["seed", &magnet, "--data"])
        .arg(d.join("seed"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--no-trackers", "--peer", &first])
        .env("HOME", &home);
    let _second = Proc::spawn("btt seed (magnet)", &mut seed, &d.join("seed2.log"));
    wait_port(port, Duration::from_secs(60));
    let out = d.join("down");
    let mut get = Command::new(BTT);
    get.args(["get", &magnet])
        .arg(&out)
        .args([
            "--no-trackers",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--quiet",
        ])
        .env("HOME", &home);
    let mut get = Proc::spawn("btt get (magnet)", &mut get, &d.join("get.log"));
    let st = get
        .wait_exit(Duration::from_secs(120))
        .expect("btt get ends");
    assert!(st.success(), "btt get failed: {}", get.log_text());
    assert_tree_eq(&out.join("tree"), &content);
}

/// The TRICKY tree under `d/seed/tree`, its torrent and its bare magnet.
fn tricky_magnet(d: &Path) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let magnet = format!("magnet:?xt=urn:btih:{}", meta(&torrent).info_hash.hex());
    (content, torrent, magnet)
}

/// A libtorrent seeder of `torrent` (data in `data`) that dials `addr`.
pub fn lt_seed_dialing(ns: &NetNs, torrent: &Path, data: &Path, addr: &str, d: &Path) -> Proc {
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let args = [
        "--seed".to_string(),
        s(torrent),
        s(data),
        "--connect".to_string(),
        addr.to_string(),
    ];
    crate::dht::lt_peer(ns, free_port(), &args, &d.join("lt-seed.log"))
}

/// A seeder in no tracker, no link and no DHT, that dials the mount itself
/// (as one that learned of us from a tracker would): the metadata comes
/// over the connection it opened, then the files from it.
#[test]
fn a_magnet_gets_its_metadata_from_a_libtorrent_seeder_that_dials_the_mount() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let (content, torrent, magnet) = tricky_magnet(d);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mount = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        Path::new(&magnet),
        &[
            "--no-trackers",
            "--listen",
            &listen,
            "--metadata-timeout",
            "60",
        ],
        &[],
    )
    .unwrap();
    let _seeder = lt_seed_dialing(&ns, &torrent, &d.join("seed"), &listen, d);
    let shown = wait_until(Duration::from_secs(40), || mount.mnt.join("tree").exists());
    assert!(
        shown,
        "no metadata from the seeder that dialed us\n{}",
        mount.log()
    );
    assert_tree_eq(&mount.mnt.join("tree"), &content);
    let log = mount.log();
    assert!(log.contains("incoming=true"), "{log}");
}

/// `cmd` (a `btt` command of a magnet, in `ns`) with no trackers, on
/// `listen`, its home under `d`: started, and listening before it has the
/// metadata.
fn btt_listening(ns: &NetNs, mut cmd: Command, listen: &str, d: &Path, what: &str) -> Proc {
    cmd.args(["--no-trackers", "--listen", listen])
        .args(["--metadata-timeout", "60", "--home"])
        .arg(d.join("home"));
    let p = Proc::spawn(
        &format!("btt {what} (magnet)"),
        &mut cmd,
        &d.join(format!("btt-{what}.log")),
    );
    let listening = wait_until(Duration::from_secs(20), || {
        ns.command("bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/{}", listen.replace(':', "/")),
            ])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(listening, "btt {what} does not listen: {}", p.log_text());
    p
}

/// `btt seed` of a magnet (the data already on disk) listens before it
/// fetches the metadata: a seeder that only dials it gives it the
/// metadata; then, with that seeder gone, a mount reads the files from
/// `btt seed` alone.
#[test]
fn btt_seed_of_a_magnet_takes_the_metadata_from_a_seeder_that_dials_it() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let (content, torrent, magnet) = tricky_magnet(d);
    let ours = d.join("ours");
    run_ok(
        Command::new("cp").arg("-a").arg(d.join("seed")).arg(&ours),
        "cp",
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let mut seed = ns.command(BTT);
    seed.args(["seed", &magnet, "--data"]).arg(&ours);
    let seed = btt_listening(&ns, seed, &listen, d, "seed");
    let lt = lt_seed_dialing(&ns, &torrent, &d.join("seed"), &listen, d);
    let ready = wait_until(Duration::from_secs(40), || {
        seed.log_text().contains("seeding ")
    });
    assert!(
        ready,
        "no metadata from the seeder that dialed us\n{}",
        seed.log_text()
    );
    drop(lt);
    let mount = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        &torrent,
        &["--no-trackers", "--peer", &listen],
        &[],
    )
    .unwrap();
    assert_tree_eq(&mount.mnt.join("tree"), &content);
}

/// `btt get` of a magnet listens before it fetches the metadata: a seeder
/// that only dials it (in no tracker, no link, no DHT) gives it the
/// metadata, then the files.
#[test]
fn btt_get_of_a_magnet_takes_the_metadata_from_a_seeder_that_dials_it() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let (content, torrent, magnet) = tricky_magnet(d);
    let listen = format!("127.0.0.1:{}", free_port());
    let out = d.join("down");
    let mut get = ns.command(BTT);
    get.args(["get", &magnet]).arg(&out).arg("--quiet");
    let mut get = btt_listening(&ns, get, &listen, d, "get");
    let _seeder = lt_seed_dialing(&ns, &torrent, &d.join("seed"), &listen, d);
    let st = get
        .wait_exit(Duration::from_secs(60))
        .expect("btt get ends");
    assert!(st.success(), "btt get failed: {}", get.log_text());
    assert_tree_eq(&out.join("tree"), &content);
}
