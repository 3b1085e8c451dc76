//! Faults: a seeder that dies and comes back, no peers at all, unmounting under a
//! blocked read, a peer serving corrupt data, and remounting without re-downloading.

use crate::harness::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn single(d: &std::path::Path, len: usize, piece: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let content = d.join("seed/data.bin");
    std::fs::create_dir_all(content.parent().unwrap()).unwrap();
    std::fs::write(&content, bytes(len, 42)).unwrap();
    (make_torrent(&content, piece, &[]), content)
}

/// `cat FILE > OUT` in the background, killed on drop.
fn background_cat(file: &std::path::Path, out: &std::path::Path) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("cat '{}' > '{}'", file.display(), out.display()));
    Proc::spawn("cat", &mut cmd, &out.with_extension("err"))
}

#[test]
fn seeder_killed_mid_read_then_restarted() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, content) = single(d, 16 << 20, 64 * 1024);
    let port = free_port();
    let peer = format!("127.0.0.1:{port}");
    let mut seed = btt_seed(
        &torrent,
        &d.join("seed"),
        port,
        &d.join("seed1.log"),
        &["--no-trackers"],
    );
    let m = Mount::start(d, &torrent, &["--no-trackers", "--peer", &peer]);
    let f = m.mnt.join("data.bin");
    // The first MiB arrives while the seeder is up…
    let head = Command::new("timeout")
        .arg("30")
        .arg("head")
        .args(["-c", "1048576"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(head.stdout.len(), 1 << 20);
    drop(std::mem::replace(
        &mut seed,
        Proc::spawn("true", &mut Command::new("true"), &d.join("x.log")),
    ));
    // …then it dies, and a full read blocks part-way.
    let out = d.join("out.bin");
    let mut reader = background_cat(&f, &out);
    assert!(
        reader.wait_exit(Duration::from_secs(4)).is_none(),
        "read must wait for the missing pieces"
    );
    // While the read waits, the peer that served it is dialed again every
    // quarter second, not after a back-off grown while it was away (that
    // gave 0.5, 1, 2 s…: 3 or 4 dials in these 4 s).
    let refused = m
        .log()
        .lines()
        .filter(|l| l.contains(&format!("addr={peer}")) && l.contains("Connection refused"))
        .count();
    assert!(
        refused >= 8,
        "{refused} dials while the seeder was away\n{}",
        m.log()
    );
    let _seed2 = btt_seed(
        &torrent,
        &d.join("seed"),
        port,
        &d.join("seed2.log"),
        &["--no-trackers"],
    );
    let st = reader
        .wait_exit(Duration::from_secs(60))
        .expect("reader completes once the seeder is back");
    assert!(st.success());
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&content).unwrap(),
        "byte-exact"
    );
}

#[test]
fn no_peer_metadata_at_once_read_times_out_and_writes_refused() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, _) = single(d, 1 << 20, 32 * 1024);
    let dead = format!("127.0.0.1:{}", free_port());
    let m = Mount::start(
        d,
        &torrent,
        &["--no-trackers", "--peer", &dead, "--read-timeout", "2"],
    );
    let f = m.mnt.join("data.bin");
    let t = Instant::now();
    let ls = Command::new("ls").arg("-l").arg(&m.mnt).output().unwrap();
    let st = Command::new("stat").arg(&f).output().unwrap();
    let took = t.elapsed();
    assert!(ls.status.success() && st.status.success());
    assert!(String::from_utf8_lossy(&ls.stdout).contains("1048576"));
    assert!(
        took < Duration::from_secs(2),
        "ls+stat took {took:?} with no peers"
    );
    let t = Instant::now();
    let err = read_file_timeout(&f, Duration::from_secs(30)).unwrap_err();
    assert!(err.contains("Input/output error"), "{err}");
    assert!(
        t.elapsed() >= Duration::from_millis(1900) && t.elapsed() < Duration::from_secs(15),
        "{:?}",
        t.elapsed()
    );
    let touch = Command::new("touch")
        .arg(m.mnt.join("new"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&touch.stderr).contains("Read-only file system"),
        "{:?}",
        touch
    );
    let write = Command::new("sh")
        .arg("-c")
        .arg(format!("echo x >> '{}'", f.display()))
        .output()
        .unwrap();
    assert!(!write.status.success());
    assert!(is_mounted(&m.mnt), "still mounted after the timeout");
}

fn blocked_read_then(stop: impl FnOnce(&Mount)) {
    let d = tmpdir();
    let d = d.path();
    let (torrent, _) = single(d, 1 << 20, 32 * 1024);
    let dead = format!("127.0.0.1:{}", free_port());
    let mut m = Mount::start(d, &torrent, &["--no-trackers", "--peer", &dead]);
    let mut reader = Proc::spawn(
        "cat",
        Command::new("cat")
            .arg(m.mnt.join("data.bin"))
            .stdout(Stdio::null()),
        &d.join("cat.err"),
    );
    assert!(
        reader.wait_exit(Duration::from_millis(800)).is_none(),
        "read is blocked"
    );
    let t = Instant::now();
    stop(&m);
    let st = m
        .proc
        .wait_exit(Duration::from_secs(3))
        .expect("btt-mount exits promptly");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "unmount took {took:?}");
    assert!(st.success(), "btt-mount exit status {st}");
    let rs = reader
        .wait_exit(Duration::from_secs(3))
        .expect("blocked reader released");
    assert!(!rs.success());
    let err = std::fs::read_to_string(d.join("cat.err")).unwrap();
    assert!(
        err.contains("Input/output error") || err.contains("Transport endpoint"),
        "{err}"
    );
    assert!(wait_until(Duration::from_secs(2), || !is_mounted(&m.mnt)));
}

#[test]
fn sigterm_while_read_blocked() {
    blocked_read_then(|m| m.proc.signal(libc::SIGTERM));
}

#[test]
fn sigint_while_read_blocked() {
    blocked_read_then(|m| m.proc.signal(libc::SIGINT));
}

#[test]
fn lazy_umount_while_read_blocked() {
    blocked_read_then(|m| {
        assert!(Command::new("umount")
            .arg("-l")
            .arg(&m.mnt)
            .status()
            .unwrap()
            .success());
    });
}

#[test]
fn fusermount_lazy_while_read_blocked() {
    blocked_read_then(|m| {
        assert!(Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&m.mnt)
            .status()
            .unwrap()
            .success());
    });
}

#[test]
fn plain_umount_when_idle() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, _) = single(d, 100_000, 32 * 1024);
    let mut m = Mount::start(d, &torrent, &["--no-trackers"]);
    assert!(Command::new("umount")
        .arg(&m.mnt)
        .status()
        .unwrap()
        .success());
    assert!(m
        .proc
        .wait_exit(Duration::from_secs(2))
        .expect("exits after umount")
        .success());
}

#[test]
fn killed_reader_stops_waiting() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, _) = single(d, 1 << 20, 32 * 1024);
    let dead = format!("127.0.0.1:{}", free_port());
    let m = Mount::start(d, &torrent, &["--no-trackers", "--peer", &dead]);
    let mut reader = Proc::spawn(
        "cat",
        Command::new("cat")
            .arg(m.mnt.join("data.bin"))
            .stdout(Stdio::null()),
        &d.join("cat.err"),
    );
    std::thread::sleep(Duration::from_millis(500));
    reader.signal(libc::SIGKILL);
    assert!(
        reader.wait_exit(Duration::from_secs(3)).is_some(),
        "a killed reader must not hang in the kernel"
    );
    assert!(is_mounted(&m.mnt));
}

#[test]
fn corrupt_peer_is_dropped_and_data_comes_from_another() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, content) = single(d, 4 << 20, 64 * 1024);
    // A real client (aria2c, told not to check) serving a copy with every piece damaged.
    let bad_dir = d.join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let mut bad = std::fs::read(&content).unwrap();
    for i in (1000..bad.len()).step_by(64 * 1024) {
        bad[i] ^= 0xff;
    }
    std::fs::write(bad_dir.join("data.bin"), &bad).unwrap();
    let bad_port = free_port();
    let _bad = aria2_seed(&torrent, &bad_dir, bad_port, &d.join("bad.log"), true);
    let good_port = free_port();
    // Bans are by address: the liar has one of its own (aria2c listens on
    // every address).
    let bad_peer = format!("127.0.0.2:{bad_port}");
    let m = Mount::start(d, &torrent, &["--no-trackers", "--peer", &bad_peer]);
    // Only the corrupt peer at first: it must be caught and dropped.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let _ = Command::new("timeout")
                .args(["1", "head", "-c", "1"])
                .arg(m.mnt.join("data.bin"))
                .output();
            m.log().contains("failed the hash check")
        }),
        "corrupt data not detected:\n{}",
        m.log()
    );
    let _good = btt_seed(
        &torrent,
        &d.join("seed"),
        good_port,
        &d.join("good.log"),
        &["--no-trackers"],
    );
    // Point the mount at the good peer by remounting with both; the bad one is dropped again.
    drop(m);
    let both = [
        "--no-trackers",
        "--peer",
        &bad_peer,
        "--peer",
        &format!("127.0.0.1:{good_port}"),
    ];
    let m = Mount::start(&d.join("again"), &torrent, &both);
    let data = read_file_timeout(&m.mnt.join("data.bin"), Duration::from_secs(60)).unwrap();
    assert!(
        data == std::fs::read(&content).unwrap(),
        "byte-exact from the good peer"
    );
}

#[test]
fn remount_downloads_nothing_again() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, content) = single(d, 3 << 20, 64 * 1024);
    let port = free_port();
    let peer = format!("127.0.0.1:{port}");
    let data_dir = d.join("keep");
    let dd = data_dir.to_str().unwrap();
    {
        let _seed = btt_seed(
            &torrent,
            &d.join("seed"),
            port,
            &d.join("seed.log"),
            &["--no-trackers"],
        );
        let m = Mount::start(
            &d.join("m1"),
            &torrent,
            &["--no-trackers", "--peer", &peer, "--data-dir", dd],
        );
        assert!(
            read_file_timeout(&m.mnt.join("data.bin"), Duration::from_secs(60)).unwrap()
                == std::fs::read(&content).unwrap()
        );
    }
    // No seeder now: every byte must come from the kept data.
    let m = Mount::start(
        &d.join("m2"),
        &torrent,
        &[
            "--no-trackers",
            "--peer",
            &peer,
            "--data-dir",
            dd,
            "--read-timeout",
            "5",
        ],
    );
    assert!(
        read_file_timeout(&m.mnt.join("data.bin"), Duration::from_secs(30)).unwrap()
            == std::fs::read(&content).unwrap()
    );
    let log = m.log();
    assert!(
        log.contains(&format!("have={}", (3 << 20) / (64 * 1024))),
        "resumed with all pieces:\n{log}"
    );
    assert!(
        !log.contains("peer connected"),
        "nothing was downloaded:\n{log}"
    );
}

#[test]
fn no_keep_deletes_data_on_unmount() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, _) = single(d, 300_000, 32 * 1024);
    let (_seed, peer) = seed_with_btt(d, &torrent);
    let mut m = Mount::start(
        d,
        &torrent,
        &["--no-trackers", "--peer", &peer, "--no-keep"],
    );
    read_file_timeout(&m.mnt.join("data.bin"), Duration::from_secs(30)).unwrap();
    let data = d.join("data");
    assert!(std::fs::read_dir(&data).unwrap().count() > 0);
    m.proc.signal(libc::SIGTERM);
    assert!(m.proc.wait_exit(Duration::from_secs(3)).is_some());
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "data deleted");
}

/// The data dir's disk is full: blocks cannot be written, so no piece can
/// be checked; a read fails with EIO and the log says why, instead of
/// waiting forever (or keeping pieces in memory without bound).
#[test]
fn a_full_disk_fails_the_read_with_a_reason() {
    let d = tmpdir();
    let d = d.path();
    let (torrent, _content) = single(d, 4 << 20, 256 * 1024);
    let (_seed, peer) = seed_with_btt(d, &torrent);
    let small = d.join("small");
    std::fs::create_dir_all(&small).unwrap();
    run_ok(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(&small),
        "mount tmpfs",
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _tiny = Unmount(small.clone());
    let data = small.join("data");
    let m = Mount::start(
        &d.join("m"),
        &torrent,
        &[
            "--no-trackers",
            "--peer",
            &peer,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let got = read_file_timeout(&m.mnt.join("data.bin"), Duration::from_secs(30));
    let err = got.expect_err("a read cannot succeed on a full disk");
    assert!(
        !err.contains("timed out"),
        "the read fails, it does not hang: {err}"
    );
    let log = m.log();
    assert!(log.contains("could not be stored"), "{log}");
}
