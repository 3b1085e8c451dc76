//! Bad input gets a clear error, never a panic or a hang.

use crate::harness::*;
use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

fn mount_err(d: &std::path::Path, torrent: &std::path::Path) -> String {
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new("timeout")
        .arg("20")
        .arg(BTT_MOUNT)
        .arg(torrent)
        .arg(&mnt)
        .arg("--no-trackers")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "must fail");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!is_mounted(&mnt));
    err
}

#[test]
fn corrupt_and_hostile_torrents() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let good = std::fs::read(make_torrent(&content, 32 * 1024, &[])).unwrap();
    let t = d.join("bad.torrent");
    std::fs::write(&t, &good[..good.len() / 2]).unwrap();
    let e = mount_err(d, &t);
    assert!(
        e.contains("invalid torrent") && e.contains("bencode"),
        "{e}"
    );
    let mut flipped = good.clone();
    let at = flipped.windows(6).position(|w| w == b"pieces").unwrap();
    flipped[at + 6] = b'x';
    std::fs::write(&t, &flipped).unwrap();
    assert!(mount_err(d, &t).contains("invalid torrent"));
    // A path component `..` (the first `nested` renamed).
    let mut raw = good.clone();
    let at = raw.windows(8).position(|w| w == b"6:nested").unwrap();
    raw.splice(at..at + 8, b"2:..".iter().copied());
    std::fs::write(&t, &raw).unwrap();
    let e = mount_err(d, &t);
    assert!(e.contains("unsafe path"), "{e}");
    std::fs::write(&t, b"").unwrap();
    assert!(mount_err(d, &t).contains("is not a .torrent file"));
    assert!(mount_err(d, &d.join("missing.torrent")).contains("cannot read torrent"));
}

/// A fake peer listening on `port` that answers the handshake with `reply_hash`,
/// then sends `after` and waits for the connection to close.
fn fake_peer(reply_hash: [u8; 20], after: &'static [u8]) -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).unwrap();
        s.write_all(&btt::wire::Handshake::new(reply_hash, *b"-XX0000-hostilepeer!").encode())
            .unwrap();
        let _ = s.write_all(after);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // returns when btt closes the connection
    });
    (port, h)
}

fn one_file(d: &std::path::Path, seed: u64) -> std::path::PathBuf {
    let a = d.join(format!("seed{seed}/a.bin"));
    std::fs::create_dir_all(a.parent().unwrap()).unwrap();
    std::fs::write(&a, bytes(200_000, seed)).unwrap();
    make_torrent(&a, 32 * 1024, &[])
}

#[test]
fn peer_with_wrong_info_hash_is_refused() {
    let d = tmpdir();
    let d = d.path();
    let ta = one_file(d, 1);
    let tb = one_file(d, 2);
    // Outgoing: the peer answers with another torrent's hash.
    let (port, fake) = fake_peer([7; 20], b"");
    let m = Mount::start(
        d,
        &ta,
        &[
            "--no-trackers",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--read-timeout",
            "2",
        ],
    );
    let e = read_file_timeout(&m.mnt.join("a.bin"), Duration::from_secs(20)).unwrap_err();
    assert!(e.contains("Input/output error"), "{e}");
    assert!(
        wait_until(Duration::from_secs(3), || m
            .log()
            .contains("peer is for another torrent")),
        "{}",
        m.log()
    );
    fake.join().unwrap();
    // Incoming: a mount of torrent A dials `btt seed` of torrent B, which refuses it.
    let sport = free_port();
    let other = btt_seed(
        &tb,
        &d.join("seed2"),
        sport,
        &d.join("other.log"),
        &["--no-trackers"],
    );
    let m2 = Mount::start(
        &d.join("m2"),
        &ta,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{sport}")],
    );
    assert!(
        wait_until(Duration::from_secs(5), || other
            .log_text()
            .contains("peer is for another torrent")),
        "{}",
        other.log_text()
    );
    drop(m2);
}

/// A fake peer that completes the handshake and then sends a huge length prefix.
#[test]
fn oversized_wire_message_drops_the_peer_only() {
    let d = tmpdir();
    let d = d.path();
    let a = d.join("seed/a.bin");
    std::fs::create_dir_all(a.parent().unwrap()).unwrap();
    std::fs::write(&a, bytes(100_000, 3)).unwrap();
    let t = make_torrent(&a, 32 * 1024, &[]);
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&t).unwrap()).unwrap();
    let (port, fake) = fake_peer(meta.info_hash.0, &[0x7f, 0xff, 0xff, 0xff, 7]);
    let m = Mount::start(
        d,
        &t,
        &[
            "--no-trackers",
            "--peer",
            &format!("127.0.0.1:{port}"),
            "--read-timeout",
            "1",
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || m
            .log()
            .contains("exceeds the limit")),
        "{}",
        m.log()
    );
    fake.join().unwrap();
    assert!(
        std::fs::metadata(m.mnt.join("a.bin")).is_ok(),
        "mount still serves metadata"
    );
}

/// A .torrent of `n` one-byte files f0000000… in one directory `many`.
fn many_files_torrent(d: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut files = Vec::with_capacity(n * 32);
    for i in 0..n {
        let name = format!("f{i:07}");
        files.extend_from_slice(format!("d6:lengthi1e4:pathl{}:{name}ee", name.len()).as_bytes());
    }
    let pieces = n.div_ceil(16384);
    let mut t = b"d4:infod5:filesl".to_vec();
    t.extend_from_slice(&files);
    t.extend_from_slice(
        format!(
            "e4:name4:many12:piece lengthi16384e6:pieces{}:",
            pieces * 20
        )
        .as_bytes(),
    );
    t.extend(std::iter::repeat_n(0u8, pieces * 20));
    t.extend_from_slice(b"ee");
    let p = d.join("many.torrent");
    std::fs::write(&p, t).unwrap();
    p
}

/// Scale as an attack: a torrent of 100 000 files mounts and lists whole,
/// in order, without the network (`readdir` goes on from its offset rather
/// than building the listing each time: 10^6 files took 57 s to `ls`), and
/// `--max-files` refuses one larger than the limit with a clear error.
#[test]
fn a_torrent_with_100_000_files_lists_whole_and_max_files_guards() {
    let d = tmpdir();
    let d = d.path();
    let n = 100_000;
    let t = many_files_torrent(d, n);
    let m = Mount::start(&d.join("a"), &t, &["--no-trackers"]);
    let dir = m.mnt.join("many");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), n, "every file listed once");
    let expect: Vec<String> = (0..n).map(|i| format!("f{i:07}")).collect();
    assert_eq!(names, expect, "in name order, none twice");
    assert_eq!(std::fs::metadata(dir.join("f0099999")).unwrap().len(), 1);
    assert!(std::fs::metadata(dir.join("f0100000")).is_err());
    drop(m);
    let e = match Mount::try_start(&d.join("b"), &t, &["--no-trackers", "--max-files", "99999"]) {
        Ok(_) => panic!("mounted past --max-files"),
        Err(e) => e,
    };
    assert!(
        e.contains("100000 files, more than --max-files 99999"),
        "{e}"
    );
}

/// `btt-mount TORRENT MNT ARGS` in the foreground, logging to `log`.
fn raw_mount(
    torrent: &std::path::Path,
    mnt: &std::path::Path,
    args: &[&str],
    log: &std::path::Path,
) -> Proc {
    let mut c = Command::new(BTT_MOUNT);
    c.arg(torrent)
        .arg(mnt)
        .args(["--foreground", "--listen", "127.0.0.1:0", "--no-trackers"])
        .args(args)
        .env("RUST_LOG", "btt=info");
    Proc::spawn("btt-mount", &mut c, log)
}

/// Mount points that cannot take a mount are explained with what to do; a
/// stale btt mount left by a killed btt-mount is cleared and mounted over.
#[test]
fn mount_point_mistakes_are_explained_or_cleared() {
    let d = tmpdir();
    let d = d.path();
    let torrent = one_file(d, 3);
    let port = free_port();
    let _seed = btt_seed(
        &torrent,
        &d.join("seed3"),
        port,
        &d.join("seed.log"),
        &["--no-trackers"],
    );
    let peer = format!("127.0.0.1:{port}");
    // Not empty: refused, unless -o nonempty.
    let full = d.join("full/mnt");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("mine.txt"), b"keep").unwrap();
    let err = mount_err(&d.join("full"), &torrent);
    assert!(
        err.contains("not empty") && err.contains("-o nonempty"),
        "{err}"
    );
    let over = Mount::start(
        &d.join("full"),
        &torrent,
        &["--no-trackers", "--peer", &peer, "-o", "nonempty"],
    );
    assert!(over.mnt.join("a.bin").exists(), "{}", over.log());
    drop(over);
    assert!(
        full.join("mine.txt").exists(),
        "its contents are back once unmounted"
    );
    // Already a btt mount: refused, the first one untouched.
    let first = Mount::start(&d.join("m"), &torrent, &["--no-trackers", "--peer", &peer]);
    let out = Command::new("timeout")
        .arg("20")
        .arg(BTT_MOUNT)
        .arg(&torrent)
        .arg(&first.mnt)
        .arg("--no-trackers")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("already a btt mount"),
        "{err}"
    );
    assert!(
        std::fs::read(first.mnt.join("a.bin")).is_ok(),
        "the first mount still serves"
    );
    // Stale: the first btt-mount killed leaves a dead mount behind
    // (ENOTCONN); a new btt-mount clears it and serves.
    let mut first = first;
    first.proc.signal(libc::SIGKILL);
    first
        .proc
        .wait_exit(Duration::from_secs(10))
        .expect("killed");
    assert!(is_mounted(&first.mnt), "a stale mount is left");
    assert_eq!(
        std::fs::read_dir(&first.mnt).unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN)
    );
    let log = d.join("again.log");
    let again = raw_mount(
        &torrent,
        &first.mnt,
        &[
            "--peer",
            &peer,
            "--data-dir",
            d.join("m/data").to_str().unwrap(),
        ],
        &log,
    );
    let served = wait_until(Duration::from_secs(20), || {
        std::fs::read(first.mnt.join("a.bin")).is_ok_and(|b| b == bytes(200_000, 3))
    });
    assert!(served, "{}", again.log_text());
    assert!(
        again.log_text().contains("cleared a stale btt mount"),
        "{}",
        again.log_text()
    );
    let _ = Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(&first.mnt)
        .status();
    drop(again);
}

/// `access()` answers from the mode bits: files are not executable,
/// directories are searchable, nothing is writable.
#[test]
fn access_follows_the_mode_bits() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let m = Mount::start(&d.join("m"), &torrent, &["--no-trackers"]);
    let test = |flag: &str, p: &std::path::Path| {
        Command::new("test")
            .arg(flag)
            .arg(p)
            .status()
            .unwrap()
            .success()
    };
    let file = m.mnt.join("tree/big file.bin");
    assert!(test("-r", &file) && !test("-x", &file) && !test("-w", &file));
    assert!(test("-x", &m.mnt.join("tree")));
    let out = Command::new("find")
        .arg(&m.mnt)
        .args(["-type", "f", "-executable"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "no file is executable"
    );
}

/// What programs ask of every file (extended attributes, ioctls, locks,
/// fsync) gets the errno a read-only filesystem gives, without a warning
/// in the log, and a clean unmount logs no warning either.
#[test]
fn routine_questions_are_answered_quietly() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let m = Mount::start(&d.join("m"), &torrent, &["--no-trackers"]);
    let file = m.mnt.join("tree/one");
    // errno by name: ENODATA getxattr, [] listxattr, ENOTTY ioctl,
    // fsync fine, flock fine.
    let py = r#"
import errno, fcntl, os, sys, termios
p = sys.argv[1]
out = []
try:
    os.getxattr(p, "security.selinux"); out.append("getxattr ok")
except OSError as e:
    out.append("getxattr " + errno.errorcode[e.errno])
out.append("listxattr %r" % os.listxattr(p))
fd = os.open(p, os.O_RDONLY)
try:
    fcntl.ioctl(fd, termios.TCGETS, bytes(64)); out.append("ioctl ok")
except OSError as e:
    out.append("ioctl " + errno.errorcode[e.errno])
os.fsync(fd); out.append("fsync ok")
fcntl.flock(fd, fcntl.LOCK_SH); out.append("flock ok")
try:
    os.readlink(p); out.append("readlink ok")
except OSError as e:
    out.append("readlink " + errno.errorcode[e.errno])
os.close(fd)
print(" | ".join(out))
"#;
    let out = Command::new("python3")
        .args(["-c", py])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "getxattr ENODATA | listxattr [] | ioctl ENOTTY | fsync ok | flock ok | readlink EINVAL",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = Command::new("ls").arg("-lR").arg(&m.mnt).output().unwrap();
    assert!(st.status.success());
    let mut m = m;
    let st = Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    m.proc
        .wait_exit(Duration::from_secs(10))
        .expect("the mount ends");
    let log = m.log() + &m.proc.log_text();
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("Not Implemented"))
        .collect();
    assert!(warned.is_empty(), "{warned:#?}");
}

/// A folder or a text file given as the torrent is named for what it is,
/// with what to do, by btt-mount, btt get and btt seed alike; the error
/// says each cause once and never prints a backtrace, even with
/// RUST_BACKTRACE=1.
#[test]
fn wrong_torrent_arguments_are_named_for_what_they_are() {
    let d = tmpdir();
    let d = d.path();
    let folder = d.join("holiday");
    make_tree(&folder, &[("a.jpg", 1000)]);
    let text = d.join("notes.txt");
    std::fs::write(&text, "hello\n").unwrap();
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (BTT_MOUNT, vec![s(&folder), s(&mnt)], "btt create"),
        (BTT_MOUNT, vec![s(&text), s(&mnt)], "is not a .torrent file"),
        (
            BTT,
            vec!["get".into(), s(&text), s(&d.join("out"))],
            "is not a .torrent file",
        ),
        (
            BTT,
            vec!["get".into(), s(&folder), s(&d.join("out"))],
            "btt create",
        ),
        (
            BTT,
            vec!["seed".into(), s(&text), "--data".into(), s(d)],
            "is not a .torrent file",
        ),
    ];
    for (prog, args, want) in cases {
        let out = Command::new("timeout")
            .arg("20")
            .arg(prog)
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let what = format!("{prog} {args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(err.starts_with("error: ") && err.contains(want), "{what}");
        assert!(
            !err.contains("backtrace") && !err.contains("Caused by"),
            "{what}"
        );
        let lines: Vec<&str> = err.lines().collect();
        let mut unique = lines.clone();
        unique.dedup();
        assert_eq!(lines.len(), unique.len(), "{what}");
        assert!(!is_mounted(&mnt));
    }
}

/// A mount with nobody to ask (its tracker and its one peer refuse
/// connections) says why at the default level, in `btt status`, and as the
/// cause of the read that fails; that read fails after the --read-timeout
/// the user set, not twice it (the kernel reads a failed page again).
#[test]
fn a_mount_with_nobody_to_ask_says_why() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let dead = free_port();
    let torrent = make_torrent(
        &content,
        64 * 1024,
        &[format!("http://127.0.0.1:{dead}/announce")],
    );
    let status = d.join("status");
    std::fs::create_dir_all(&status).unwrap();
    let peer = format!("127.0.0.1:{}", free_port());
    let m = Mount::try_start_env(
        &d.join("m"),
        &torrent,
        &["--peer", &peer, "--read-timeout", "3"],
        &[("BTT_STATUS_DIR", status.to_str().unwrap())],
    )
    .unwrap();
    let t = std::time::Instant::now();
    let r = read_file_timeout(&m.mnt.join("tree/one"), Duration::from_secs(30));
    let took = t.elapsed();
    assert!(
        r.is_err_and(|e| e.contains("Input/output error")),
        "{}",
        m.log()
    );
    assert!(
        took < Duration::from_millis(4500),
        "EIO after {took:?}, --read-timeout 3"
    );
    let log = m.log();
    let line = log
        .lines()
        .find(|l| l.contains("a read timed out after 3s"))
        .unwrap_or_else(|| panic!("no cause logged\n{log}"));
    assert!(
        line.contains("tree/one")
            && line.contains("no peers yet: 1 tracker failing (")
            && line.contains("1 peer given (refused the connection)"),
        "{line}"
    );
    let out = Command::new(BTT)
        .arg("status")
        .env("BTT_STATUS_DIR", &status)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("  no peers yet: 1 tracker failing"), "{out}");
    // Said in the log, once alone for 10 s.
    assert!(
        wait_until(Duration::from_secs(20), || m
            .log()
            .lines()
            .any(|l| l.contains("WARN")
                && l.contains("no peers yet")
                && !l.contains("timed out"))),
        "{}",
        m.log()
    );
}

/// `btt seed` with wrong data names what is wrong: the files missing, cut
/// short or different (and still serves what verified); a `--data` that
/// does not exist, or that is the torrent's own folder, is refused with
/// the folder to give.
#[test]
fn btt_seed_names_the_files_it_lacks_and_the_folder_to_give() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let bad = d.join("bad/tree");
    make_tree(&bad, TRICKY);
    std::fs::remove_file(bad.join("one")).unwrap();
    let z = bad.join("z last.bin");
    let cut = std::fs::read(&z).unwrap()[..1000].to_vec();
    std::fs::write(&z, cut).unwrap();
    let big = bad.join("big file.bin");
    let mut b = std::fs::read(&big).unwrap();
    b[1_000_000] ^= 1;
    std::fs::write(&big, b).unwrap();
    let port = free_port();
    let sp = btt_seed(
        &torrent,
        &d.join("bad"),
        port,
        &d.join("seed.log"),
        &["--no-trackers"],
    );
    assert!(
        wait_until(Duration::from_secs(20), || sp
            .log_text()
            .contains("seeding")),
        "{}",
        sp.log_text()
    );
    let log = sp.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("data is incomplete"))
        .unwrap_or_else(|| panic!("{log}"));
    for want in [
        "tree/big file.bin (content differs)",
        "tree/one (missing)",
        "tree/z last.bin (1000 of 262144 bytes)",
    ] {
        assert!(line.contains(want), "{want} in {line}");
    }
    assert!(
        !line.contains("ünïcödé") && !line.contains("x.dat"),
        "{line}"
    );
    drop(sp);
    // By default (no RUST_LOG, no -v) the same in a short human line.
    let port = free_port();
    let mut c = Command::new(BTT);
    c.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(d.join("bad"))
        .args(["--no-trackers", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("RUST_LOG");
    let sp = Proc::spawn("btt seed", &mut c, &d.join("seed-human.log"));
    assert!(
        wait_until(Duration::from_secs(20), || sp
            .log_text()
            .contains("seeding")),
        "{}",
        sp.log_text()
    );
    let log = sp.log_text();
    assert!(
        log.lines()
            .any(|l| l.starts_with("warning: data is incomplete in ")),
        "{log}"
    );
    assert!(!log.contains("INFO") && !log.contains(" WARN "), "{log}");
    drop(sp);
    for (data, want) in [
        (d.join("nowhere"), "does not exist".to_string()),
        (
            content.clone(),
            format!(
                "give the folder above it, --data {}",
                d.join("seed").display()
            ),
        ),
    ] {
        let out = Command::new(BTT)
            .arg("seed")
            .arg(&torrent)
            .arg("--data")
            .arg(&data)
            .args(["--no-trackers", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&want), "{want} in {err}");
    }
}

/// `btt get` into a folder that already holds some of the torrent's files
/// keeps what verifies (says so, fetches the rest) and leaves a file whose
/// content differs alone unless --overwrite.
#[test]
fn btt_get_keeps_what_is_there_and_overwrites_only_when_told() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let (_seed, addr) = seed_with_btt(d, &torrent);
    let out = d.join("out");
    let have = out.join("tree");
    std::fs::create_dir_all(have.join("nested/deeper/still")).unwrap();
    std::fs::copy(content.join("big file.bin"), have.join("big file.bin")).unwrap();
    let x = have.join("nested/deeper/still/x.dat");
    let mut changed = std::fs::read(content.join("nested/deeper/still/x.dat")).unwrap();
    changed[300_000] ^= 1;
    std::fs::write(&x, &changed).unwrap();
    let get = |extra: &[&str]| btt_get(&torrent, &out, &addr, d, extra);
    let (code, err) = get(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("already holds files that differ")
            && err.contains("tree/nested/deeper/still/x.dat (content differs)")
            && err.contains("--overwrite"),
        "{err}"
    );
    assert!(!err.contains("big file.bin"), "{err}");
    assert_eq!(std::fs::read(&x).unwrap(), changed, "left alone");
    let (code, err) = get(&["--overwrite"]);
    assert_eq!(code, Some(0), "{err}");
    // big file.bin (3 MiB and a bit) is kept, not fetched again.
    assert!(
        err.contains("pieces (3.") && err.contains("already in"),
        "{err}"
    );
    assert_tree_eq(&have, &content);
}

/// `btt get WHAT OUT --peer ADDR EXTRA` with HOME at `home`: its exit code and stderr.
fn btt_get(
    what: &std::path::Path,
    out: &std::path::Path,
    addr: &str,
    home: &std::path::Path,
    extra: &[&str],
) -> (Option<i32>, String) {
    let o = Command::new(BTT)
        .arg("get")
        .arg(what)
        .arg(out)
        .args(["--no-trackers", "--peer", addr])
        .args(extra)
        .env("HOME", home)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `btt get --only GLOB` fetches the files it names and not the rest (their
/// neighbours hold at most the edges of shared pieces), a later run with
/// another glob or none resumes from there without calling those edges
/// "files that differ", and a magnet's `so=` picks files the same way.
#[test]
fn btt_get_only_fetches_the_chosen_files() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let (_seed, addr) = seed_with_btt(d, &torrent);
    let get = |what: &std::path::Path, out: &std::path::Path, extra: &[&str]| {
        btt_get(what, out, &addr, d, extra)
    };
    let out = d.join("out");
    let have = out.join("tree");
    let same =
        |rel: &str| std::fs::read(have.join(rel)).ok() == std::fs::read(content.join(rel)).ok();

    let (code, err) = get(&torrent, &out, &["--only", "nested/*"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("fetching 2 of 6 files"), "{err}");
    assert!(same("nested/deeper/still/x.dat") && same("nested/ünïcödé 文件.txt"));
    assert!(
        !same("big file.bin"),
        "big file.bin was not chosen, yet it is all there"
    );
    assert!(
        !have.join("empty").exists(),
        "an empty file not chosen is not made"
    );

    // A fresh start in the same folder: the neighbours' edges are not in the way.
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".bitfield")
        {
            std::fs::remove_file(p).unwrap();
        }
    }
    let (code, err) = get(&torrent, &out, &["--only", "*.bin", "--only", "tree/one"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("differ"), "{err}");
    assert!(err.contains("fetching 3 of 6 files"), "{err}");
    assert!(same("big file.bin") && same("z last.bin") && same("one"));
    let (code, err) = get(&torrent, &out, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("warning"),
        "a clean finish warns of nothing: {err}"
    );
    assert_tree_eq(&have, &content);

    let (code, err) = get(&torrent, &d.join("none"), &["--only", "*.mkv"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--only \"*.mkv\" matches none of the torrent's 6 files"),
        "{err}"
    );
    let (code, err) = get(&torrent, &d.join("none"), &["--only", "[x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a glob"), "{err}");

    // A magnet's so= (BEP 53): the file's index in the torrent.
    let last = (0..meta.files.len())
        .find(|&i| meta.path(i) == "z last.bin")
        .unwrap();
    let magnet = format!("{}&so={last}", meta.magnet());
    let by_magnet = d.join("magnet");
    let (code, err) = get(std::path::Path::new(&magnet), &by_magnet, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("fetching 1 of 6 files"), "{err}");
    let got = by_magnet.join("tree");
    assert_eq!(
        std::fs::read(got.join("z last.bin")).unwrap(),
        std::fs::read(content.join("z last.bin")).unwrap()
    );
    assert!(
        std::fs::read(got.join("big file.bin")).ok()
            != std::fs::read(content.join("big file.bin")).ok()
    );
}

/// A user without the rights gets what is needed, not a bare "Permission
/// denied": a data folder it cannot write names --data-dir; a mount point
/// it may not mount on names what mounting needs.
#[test]
fn a_user_without_the_rights_is_told_what_is_needed() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    // Root's own folders, readable by nobody but not writable.
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new("runuser")
            .args(["-u", "nobody", "--", BTT_MOUNT])
            .arg(&torrent)
            .arg(&mnt)
            .args(["--foreground", "--no-trackers"])
            .args(args)
            .env("HOME", "/nonexistent")
            .env_remove("XDG_DATA_HOME")
            .output()
            .unwrap();
        assert!(!is_mounted(&mnt));
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot write the data folder /nonexistent/.local/share/btt")
            && err.contains("--data-dir"),
        "{err}"
    );
    let data = d.join("nobody-data");
    std::fs::create_dir_all(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let (code, err) = run(&["--data-dir", data.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("FUSE mount failed") && err.contains("a mount point you own"),
        "{err}"
    );
    // btt seed keeps what it verified under the same home: said so, with
    // the variable to set (it said "…/btt/seed: Permission denied").
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(d)
        .status()
        .unwrap();
    let o = Command::new("runuser")
        .args(["-u", "nobody", "--", BTT, "seed"])
        .arg(&torrent)
        .arg("--data")
        .arg(d.join("seed"))
        .args(["--no-trackers", "--listen", "127.0.0.1:0"])
        .env("HOME", "/nonexistent")
        .env_remove("XDG_DATA_HOME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/nonexistent/.local/share/btt/seed") && err.contains("XDG_DATA_HOME"),
        "{err}"
    );
}

/// Amounts are read the same way everywhere: sat, `k`, msat and BTC
/// (`--budget 11718750msat` was refused as "not an amount in sat"); what
/// the chain needs in whole sat refuses a fraction with that reason. Each
/// command here gets past its arguments and stops on the missing torrent
/// or wallet instead.
#[test]
fn amounts_are_read_in_sat_msat_and_btc() {
    let d = tmpdir();
    let d = d.path();
    let home = d.join("home");
    let none = d.join("none.torrent");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let run = |bin: &str, args: &[String]| {
        let o = Command::new(bin)
            .args(args)
            .env("BTT_HOME", &home)
            .env("BTT_NO_DHT", "true")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let get = |flag: &str, v: &str| {
        vec![
            "get".into(),
            s(&none),
            s(&d.join("out")),
            flag.into(),
            v.into(),
        ]
    };
    let mount = |flag: &str, v: &str| vec![s(&none), s(&d.join("mnt")), flag.into(), v.into()];
    for (bin, args) in [
        (BTT, get("--budget", "11718750msat")),
        (BTT, get("--budget", "0.00025BTC")),
        (BTT, get("--budget", "25k")),
        (BTT, get("--channel-size", "0.001BTC")),
        (BTT_MOUNT, mount("--budget", "11718750msat")),
        (BTT_MOUNT, mount("--channel-size", "100000 sat")),
        (
            BTT,
            vec![
                "wallet".into(),
                "send".into(),
                "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
                "0.0001BTC".into(),
            ],
        ),
    ] {
        let (code, err) = run(bin, &args);
        assert_ne!(code, Some(2), "{args:?} is a usage error: {err}");
        assert!(!err.contains("not an amount"), "{args:?}: {err}");
    }
    let (code, err) = run(BTT, &get("--channel-size", "1500msat"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a whole number of sat"), "{err}");
    let (code, err) = run(BTT, &get("--budget", "lots"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("e.g. 25000sat"), "{err}");
}

/// Help says what each argument is, and lists `--home` only where it is
/// used (it was on every command, `create` and `tracker` included, and
/// `create --comment` had no description). `--home` works before the
/// command and after it.
#[test]
fn help_describes_every_argument_and_only_the_useful_ones() {
    let help = |args: &[&str]| {
        let o = Command::new(BTT).args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for cmd in [
        "seed",
        "get",
        "status",
        "wallet",
        "wallet init",
        "wallet send",
        "channels",
        "channels open",
        "channels pay",
        "channels close",
        "channels refund",
        "create",
        "tracker",
        "demo",
    ] {
        let mut args: Vec<&str> = cmd.split(' ').collect();
        args.push("-h");
        let h = help(&args);
        // An option or argument with nothing after its name, on its line
        // or (long help) indented on the next.
        let lines: Vec<&str> = h.lines().collect();
        let item = |l: &str| {
            let t = l.trim_start();
            l.starts_with("  ") && (t.starts_with('-') || t.starts_with('<'))
        };
        let indent = |l: &str| l.len() - l.trim_start().len();
        let bare: Vec<&str> = (0..lines.len())
            .filter(|&i| item(lines[i]) && !lines[i].trim().contains("  "))
            .filter(|&i| {
                lines
                    .get(i + 1)
                    .is_none_or(|n| item(n) || n.trim().is_empty() || indent(n) <= indent(lines[i]))
            })
            .map(|i| lines[i])
            .collect();
        assert!(bare.is_empty(), "btt {cmd}: undescribed {bare:?}\n{h}");
        let has_home = h.contains("--home");
        let uses_home = ["seed", "get", "wallet", "channels"].contains(&args[0]);
        assert_eq!(has_home, uses_home, "btt {cmd} and --home:\n{h}");
    }
    let d = tmpdir();
    let home = d.path().join("h");
    let s = home.to_str().unwrap();
    for args in [
        vec!["--home", s, "wallet", "address"],
        vec!["wallet", "--home", s, "address"],
        vec!["wallet", "address", "--home", s],
        vec!["channels", "list", "--home", s],
    ] {
        let o = Command::new(BTT).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_ne!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(s), "{args:?} looks in the home given: {err}");
    }
    let o = Command::new(BTT)
        .args(["create", "x", "--home", s])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "create takes no --home: {o:?}");
}

/// `btt doctor` checks what mounting and buying need, one line each with
/// its fix, and fails (exit 1) when something needed is missing: as root
/// here everything a mount needs is fine; `nobody` (home /nonexistent) is
/// told to pass --data-dir and, if it cannot open /dev/fuse, how to get
/// access; a wallet whose server is down is a failure naming config.toml.
#[test]
fn btt_doctor_names_what_is_missing_and_the_fix() {
    let d = tmpdir();
    let d = d.path();
    let doctor = |runuser: bool, args: &[&str]| {
        let mut c = if runuser {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--", BTT]);
            c
        } else {
            Command::new(BTT)
        };
        let o = c
            .arg("doctor")
            .args(args)
            .env_remove("BTT_HOME")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let line = |out: &str, name: &str| {
        out.lines()
            .position(|l| l.contains(&format!(" {name}: ")))
            .map(|i| {
                let next = out.lines().nth(i + 1).unwrap_or("");
                let fix = next.trim_start().strip_prefix("fix: ").unwrap_or("");
                (out.lines().nth(i).unwrap().to_string(), fix.to_string())
            })
            .unwrap_or_else(|| panic!("no {name} line in\n{out}"))
    };
    let home = d.join("home");
    let data = d.join("data");
    let (h, dd) = (home.to_str().unwrap(), data.to_str().unwrap());
    let (code, out, err) = doctor(false, &["--home", h, "--data-dir", dd]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(line(&out, "FUSE device").0.starts_with("ok"), "{out}");
    assert!(line(&out, "data dir").0.starts_with("ok"), "{out}");
    let (w, fix) = line(&out, "wallet");
    assert!(
        w.starts_with("note") && fix.contains("btt wallet init"),
        "{out}"
    );

    let closed = free_port();
    let o = Command::new(BTT)
        .args(["wallet", "init", "--home", h, "--network", "regtest"])
        .args(["--electrum", &format!("tcp://127.0.0.1:{closed}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let (code, out, err) = doctor(false, &["--home", h, "--data-dir", dd]);
    assert_eq!(code, Some(1), "{out}{err}");
    let (w, fix) = line(&out, "wallet");
    assert!(w.starts_with("FAIL") && w.contains("refused"), "{out}");
    assert!(fix.contains("config.toml"), "{out}");
    assert!(err.contains("1 of 5 checks failed"), "{err}");

    let (code, out, err) = doctor(true, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    let (l, fix) = line(&out, "data dir");
    assert!(l.starts_with("FAIL") && fix.contains("--data-dir"), "{out}");
    let can_open = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "sh",
            "-c",
            "test -r /dev/fuse && test -w /dev/fuse",
        ])
        .status()
        .unwrap()
        .success();
    let (l, fix) = line(&out, "FUSE device");
    if can_open {
        assert!(l.starts_with("ok"), "{out}");
    } else {
        assert!(l.starts_with("FAIL") && fix.contains("/dev/fuse"), "{out}");
    }
    let (l, _) = line(&out, "allow_other");
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    assert_eq!(
        l.starts_with("ok"),
        btt::doctor::allows_other(&conf),
        "{out}"
    );
}

/// `btt get`'s bar on a terminal (a pty through `script`): what is logged
/// mid-download is printed above the bar, not glued to it; Ctrl-C leaves
/// the bar where the download was (it jumped to 100 %) and says how much
/// in human units; a free download with a buyer configured shows no
/// "0 sat spent". The download is slowed with --max-down so Ctrl-C lands
/// in the middle.
#[test]
fn btt_get_bar_keeps_logs_above_it_and_its_place_on_ctrl_c() {
    let d = tmpdir();
    let d = d.path();
    let data = d.join("data");
    make_tree(&data, &[("f.bin", 8 << 20)]);
    let torrent = make_torrent(&data.join("f.bin"), 256 * 1024, &[]);
    let good = free_port();
    let _seed = btt_seed(&torrent, &data, good, &d.join("seed.log"), &[]);
    let home = d.join("home");
    let o = Command::new(BTT)
        .args(["wallet", "init", "--home", home.to_str().unwrap()])
        .args(["--network", "regtest", "--electrum"])
        .arg(format!("tcp://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let get = format!(
        "{BTT} get {} {} --no-trackers --peer 127.0.0.1:{good} \
         --max-down 1MiB --home {} --max-price 1000sat/GiB",
        torrent.display(),
        d.join("out").display(),
        home.display()
    );
    let mut script = Command::new("script")
        .args(["-qfec", &get, "/dev/null"])
        .env("BTT_NO_DHT", "true")
        .env("RUST_LOG", "info")
        .env("COLUMNS", "120")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    // Ctrl-C, as the terminal sends it.
    script.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let mut out = String::new();
    script
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = script.wait();
    // What the terminal shows: each line as the last \r left it, without
    // the escape sequences.
    let esc = |s: &str| {
        let mut o = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c == '\x1b' {
                for c in it.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                o.push(c);
            }
        }
        o
    };
    let shown = esc(&out);
    let segments: Vec<&str> = shown.split(['\r', '\n']).collect();
    let logs: Vec<&&str> = segments.iter().filter(|s| s.contains(" INFO ")).collect();
    assert!(logs.len() >= 3, "lines were logged:\n{shown}");
    for l in &logs {
        assert!(l.starts_with("20"), "glued to the bar: {l:?}\n{shown}");
    }
    let bars: Vec<&&str> = segments.iter().filter(|s| s.contains("MiB/")).collect();
    let last = bars.last().unwrap_or_else(|| panic!("no bar:\n{shown}"));
    assert!(
        !last.contains("8.00 MiB/8.00 MiB"),
        "100 % on Ctrl-C: {last:?}\n{shown}"
    );
    assert!(
        shown.contains("interrupted with") && shown.contains("MiB of 8.00 MiB"),
        "{shown}"
    );
    assert!(
        !shown.contains("0 sat spent") && !shown.contains("paid 0 sat"),
        "{shown}"
    );
}

/// `-q` is for scripts: a command prints nothing but its errors. `btt -q
/// seed` says nothing while it seeds (without it: the "seeding" line),
/// `btt get -q` finishes silently, `btt-mount -q` mounts silently, and an
/// error still prints.
#[test]
fn quiet_prints_nothing_but_errors() {
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
    let d = tmpdir();
    let d = d.path();
    let data = d.join("data");
    make_tree(&data, &[("f.bin", 1 << 20)]);
    let torrent = make_torrent(&data.join("f.bin"), 65536, &[]);
    let want = std::fs::read(data.join("f.bin")).unwrap();
    let (quiet_port, loud_port) = (free_port(), free_port());
    let quiet = btt_seed(&torrent, &data, quiet_port, &d.join("q.log"), &["-q"]);
    let loud = btt_seed(&torrent, &data, loud_port, &d.join("l.log"), &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(loud.log_text().contains("seeding"), "{}", loud.log_text());
    let peer = format!("127.0.0.1:{quiet_port}");
    let out = d.join("out");
    let o = Command::new(BTT)
        .arg("get")
        .arg(&torrent)
        .arg(&out)
        .args(["--no-trackers", "--peer", &peer, "-q"])
        .env("BTT_NO_DHT", "true")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "btt get -q said: {o:?}"
    );
    assert_eq!(std::fs::read(out.join("f.bin")).unwrap(), want);
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let o = Command::new(BTT_MOUNT)
        .arg("-q")
        .arg(&torrent)
        .arg(&mnt)
        .args(["--no-trackers", "--peer", &peer, "--data-dir"])
        .arg(d.join("mdata"))
        .env("BTT_NO_DHT", "true")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let _unmount = Unmount(mnt.clone());
    assert!(o.status.success(), "{o:?}");
    assert!(
        o.stdout.is_empty() && o.stderr.is_empty(),
        "btt-mount -q said: {o:?}"
    );
    let got = read_file_timeout(&mnt.join("f.bin"), Duration::from_secs(30)).unwrap();
    assert_eq!(got, want);
    let o = Command::new(BTT)
        .args(["-q", "get", "/nonexistent.torrent"])
        .arg(&out)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("error:"),
        "{o:?}"
    );
    drop(loud);
    let q = quiet.log_text();
    assert!(q.trim().is_empty(), "btt seed -q said: {q}");
}

/// `btt status` shows rates in the bar's units (MiB/s, it said MB/s), no
/// rate for a seeder with no peer, and another user's processes to root;
/// a user with nothing running is told where btt looked (it said "nothing
/// running" while root's seeder ran). The seeder runs as `nobody`.
#[test]
fn status_shows_every_user_to_root_and_says_where_it_looked() {
    let d = tmpdir();
    let d = d.path();
    let data = d.join("data");
    make_tree(&data, &[("f.bin", 300_000)]);
    let torrent = make_torrent(&data.join("f.bin"), 65536, &[]);
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(d)
        .status()
        .unwrap();
    let port = free_port();
    let home = d.join("nobody");
    std::fs::create_dir_all(&home).unwrap();
    Command::new("chown")
        .arg("nobody")
        .arg(&home)
        .status()
        .unwrap();
    // setpriv execs (runuser would stay the parent, and killing it would
    // leave the seeder running).
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "env"])
        .arg(format!("HOME={}", home.display()))
        .args([BTT, "seed"])
        .arg(&torrent)
        .arg("--data")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-trackers"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("BTT_STATUS_DIR");
    let _seed = Proc::spawn("btt seed (nobody)", &mut c, &d.join("seed.log"));
    wait_port(port, Duration::from_secs(30));
    let status = |as_nobody: bool| {
        let mut c = if as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--", BTT, "status"]);
            c
        } else {
            let mut c = Command::new(BTT);
            c.arg("status");
            c
        };
        let o = c
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("BTT_STATUS_DIR")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Other tests seed an f.bin as root: the line is found by its pid.
    let pid = format!("[pid {}", _seed.pid());
    let mut seen = String::new();
    let found = wait_until(Duration::from_secs(10), || {
        seen = status(false);
        seen.contains(&pid)
    });
    assert!(found, "root sees nobody's seeder:\n{seen}");
    let line = seen.lines().find(|l| l.contains(&pid)).unwrap();
    assert!(line.contains("nobody"), "says whose it is: {line}");
    assert!(!line.contains("MB/s"), "the bar's units: {line}");
    assert!(!line.contains("up "), "no rate with no peer: {line}");
    assert!(status(true).contains(&pid), "nobody sees its own");
    // A user with nothing running: where btt looked.
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = Command::new(BTT)
        .arg("status")
        .env("BTT_STATUS_DIR", &empty)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("nothing running") && out.contains(empty.to_str().unwrap()),
        "{out}"
    );
}
