//! A library mount (`btt-mount --library MNT --watch DIR`): torrents and
//! magnets dropped in the watch folder appear as MNT/<name> and read
//! byte-exact, a second torrent of the same name shows as "name (2)",
//! `btt add` and the API add and remove, a deleted watch file takes its
//! torrent away, and a restart brings the set back with no peer to ask
//! for metadata.

use crate::harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn meta(torrent: &Path) -> btt::metainfo::Metainfo {
    btt::metainfo::Metainfo::from_bytes(&std::fs::read(torrent).unwrap()).unwrap()
}

#[test]
fn a_library_takes_torrents_and_magnets_and_keeps_them() {
    let d = tmpdir();
    let d = d.path();
    let one = d.join("seed/tree");
    make_tree(&one, &[("a.bin", 700_000), ("sub/b.txt", 5_000)]);
    let one_t = make_torrent(&one, 64 * 1024, &[]);
    let two = d.join("seed/film.mkv");
    make_tree(&d.join("seed"), &[("film.mkv", 900_000)]);
    let two_t = make_torrent(&two, 64 * 1024, &[]);
    // Another torrent called "tree", other content.
    let clash = d.join("seed2/tree");
    make_tree(&clash, &[("c.bin", 300_000)]);
    let clash_t = make_torrent(&clash, 64 * 1024, &[]);
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let mut s1 = btt_seed(
        &one_t,
        &d.join("seed"),
        p1,
        &d.join("s1.log"),
        &["--no-trackers"],
    );
    let mut s1b = btt_seed(
        &two_t,
        &d.join("seed"),
        p3,
        &d.join("s1b.log"),
        &["--no-trackers"],
    );
    let mut s2 = btt_seed(
        &clash_t,
        &d.join("seed2"),
        p2,
        &d.join("s2.log"),
        &["--no-trackers"],
    );
    let film_peer = format!("127.0.0.1:{p3}");
    let watch = d.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let status = d.join("status");
    std::fs::create_dir_all(&status).unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let peers = [
        "--peer".to_string(),
        format!("127.0.0.1:{p1}"),
        "--peer".into(),
        film_peer.clone(),
        "--peer".into(),
        format!("127.0.0.1:{p2}"),
    ];
    let mut args: Vec<&str> = vec![
        "--no-trackers",
        "--watch",
        watch.to_str().unwrap(),
        "--http",
        &http,
    ];
    args.extend(peers.iter().map(String::as_str));
    let st = status.to_str().unwrap();
    let m = Mount::library(d, &args, &[("BTT_STATUS_DIR", st)]);
    let mnt = m.mnt.clone();

    std::fs::copy(&one_t, watch.join("tree.torrent")).unwrap();
    std::fs::write(watch.join("film.magnet"), meta(&two_t).magnet()).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || mnt.join("tree").is_dir()
            && mnt.join("film.mkv").is_file()),
        "both appear: {:?}\n{}",
        std::fs::read_dir(&mnt).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
        m.log()
    );
    assert_tree_eq(&mnt.join("tree"), &one);
    assert_eq!(
        read_file_timeout(&mnt.join("film.mkv"), Duration::from_secs(30)).unwrap(),
        std::fs::read(&two).unwrap()
    );

    // btt add: a clash of names is shown, not hidden.
    let o = btt_add(&clash_t, &status);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("added"),
        "{o:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || mnt.join("tree (2)").is_dir()),
        "the second 'tree' is 'tree (2)'"
    );
    assert_tree_eq(&mnt.join("tree (2)"), &clash);
    let v: serde_json::Value = serde_json::from_slice(
        &Command::new("curl")
            .args(["-s", &format!("http://{http}/api/v1/torrents")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(v.as_array().map(|a| a.len()), Some(3), "{v}");

    // A magnet nobody can give the metadata of waits (in the API); its
    // .torrent given later starts it.
    let late = d.join("late/late");
    make_tree(&late, &[("l.bin", 100_000)]);
    let late_t = make_torrent(&late, 64 * 1024, &[]);
    std::fs::write(watch.join("late.magnet"), meta(&late_t).magnet()).unwrap();
    let listed = || -> serde_json::Value {
        let o = Command::new("curl")
            .args(["-s", &format!("http://{http}/api/v1/torrents")])
            .output()
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || listed().as_array().is_some_and(
            |a| a.iter().any(|t| t["waiting_for_metadata"].is_string())
        )),
        "the magnet waits for its metadata: {}",
        listed()
    );
    btt_add(&late_t, &status);
    assert!(
        wait_until(Duration::from_secs(10), || mnt.join("late").is_dir()),
        "the waiting magnet starts from its .torrent"
    );
    std::fs::remove_file(watch.join("late.magnet")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !mnt.join("late").exists()),
        "and goes with its watch file"
    );

    // A deleted watch file takes its torrent away.
    std::fs::remove_file(watch.join("tree.torrent")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || !mnt.join("tree").exists()),
        "tree is gone with its file"
    );
    assert!(mnt.join("tree (2)").is_dir() && mnt.join("film.mkv").is_file());

    // A restart with nobody to ask: the set (the magnet's too) comes back
    // from the library's own records, and what was read is there.
    drop(m);
    for s in [&mut s1, &mut s1b, &mut s2] {
        s.signal(libc::SIGTERM);
        s.wait_exit(Duration::from_secs(10));
    }
    let m = Mount::library(
        d,
        &["--no-trackers", "--watch", watch.to_str().unwrap()],
        &[("BTT_STATUS_DIR", st)],
    );
    let names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["film.mkv", "tree"],
        "after the restart: {names:?}\n{}",
        m.log()
    );
    assert_eq!(
        read_file_timeout(&m.mnt.join("film.mkv"), Duration::from_secs(10)).unwrap(),
        std::fs::read(&two).unwrap(),
        "the magnet's film is read from the data dir"
    );
    assert_tree_eq(&m.mnt.join("tree"), &clash);
}

/// `btt add TORRENT`, told of the library through `status`; it must succeed.
/// A magnet in the library's watch folder whose only seeder is in no
/// tracker, no link and no DHT, and dials the library's port (one listener
/// for all its torrents): the metadata comes over the connection it opened,
/// then the files from it.
#[test]
fn a_library_magnet_takes_the_metadata_from_a_seeder_that_dials_it() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let content = d.join("seed/tree");
    make_tree(&content, &[("a.bin", 700_000), ("sub/b.txt", 5_000)]);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let watch = d.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let w = watch.to_str().unwrap();
    let args = ["--no-trackers", "--watch", w, "--listen", &listen];
    let m = Mount::library_in(Some(&ns), d, &args, &[]);
    std::fs::write(watch.join("tree.magnet"), meta(&torrent).magnet()).unwrap();
    let asking = wait_until(Duration::from_secs(20), || {
        m.log().contains("fetching a magnet's metadata")
    });
    assert!(asking, "the magnet is not taken\n{}", m.log());
    let _lt = crate::magnet::lt_seed_dialing(&ns, &torrent, &d.join("seed"), &listen, d);
    let shown = wait_until(Duration::from_secs(40), || m.mnt.join("tree").is_dir());
    assert!(
        shown,
        "no metadata from the seeder that dialed us\n{}",
        m.log()
    );
    assert_tree_eq(&m.mnt.join("tree"), &content);
}

fn btt_add(torrent: &Path, status: &Path) -> std::process::Output {
    let o = Command::new(BTT)
        .arg("add")
        .arg(torrent)
        .env("BTT_STATUS_DIR", status)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "btt add: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// An idle torrent leaves its status file as it is: each torrent rewrote
/// its file every second, and a library of a thousand idle torrents spent
/// half a core creating and renaming a thousand files a second.
#[test]
fn an_idle_torrent_leaves_its_status_file_alone() {
    use std::os::unix::fs::MetadataExt;
    let d = tmpdir();
    let d = d.path();
    make_tree(&d.join("seed"), &[("one.bin", 300_000)]);
    let t = make_torrent(&d.join("seed/one.bin"), 64 * 1024, &[]);
    let (_seed, peer) = seed_with_btt(d, &t);
    let status = d.join("status");
    std::fs::create_dir_all(&status).unwrap();
    let m = Mount::try_start_env(
        d,
        &t,
        &["--no-trackers", "--peer", &peer],
        &[("BTT_STATUS_DIR", status.to_str().unwrap())],
    )
    .unwrap();
    assert_eq!(
        read_file_timeout(&m.mnt.join("one.bin"), Duration::from_secs(30)).unwrap(),
        std::fs::read(d.join("seed/one.bin")).unwrap()
    );
    let stamp = || {
        let f = std::fs::read_dir(&status)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "json"))?;
        let md = f.metadata().ok()?;
        Some((md.ino(), md.mtime(), md.mtime_nsec()))
    };
    assert!(
        wait_until(Duration::from_secs(10), || stamp().is_some()),
        "a status file is written\n{}",
        m.log()
    );
    // Once the read's last rates are out, nothing changes: no rewrite for
    // three seconds in a row.
    assert!(
        wait_until(Duration::from_secs(20), || {
            let a = stamp();
            std::thread::sleep(Duration::from_secs(3));
            a.is_some() && a == stamp()
        }),
        "the status file of an idle torrent is rewritten all the time\n{}",
        m.log()
    );
    // Removed by someone else (a /tmp cleaner): written again.
    for e in std::fs::read_dir(&status).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(5), || stamp().is_some()),
        "a removed status file is not written again\n{}",
        m.log()
    );
}

/// A library and a seeder that end leave no status file behind: the
/// runtime ended before most torrents' status tasks had removed theirs
/// (72 of 100 were left, and `btt status` would show them again under a
/// reused pid).
#[test]
fn a_library_and_a_seeder_that_end_leave_no_status_files() {
    let d = tmpdir();
    let d = d.path();
    let watch = d.join("watch");
    std::fs::create_dir_all(&watch).unwrap();
    const N: usize = 100;
    let mut torrents = Vec::new();
    for i in 0..N {
        let f = d.join(format!("content/f{i:03}.bin"));
        make_tree(f.parent().unwrap(), &[(&format!("f{i:03}.bin"), 1000 + i)]);
        let t = make_torrent(&f, 16 * 1024, &[]);
        std::fs::copy(&t, watch.join(format!("f{i:03}.torrent"))).unwrap();
        torrents.push(t);
    }
    let (mount_status, seed_status) = (d.join("status-mount"), d.join("status-seed"));
    for s in [&mount_status, &seed_status] {
        std::fs::create_dir_all(s).unwrap();
    }
    let files = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    };
    let port = free_port();
    let mut seed = Proc::spawn(
        "btt seed",
        Command::new(BTT)
            .arg("seed")
            .args(&torrents)
            .arg("--data")
            .arg(d.join("content"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-trackers"])
            .env("BTT_STATUS_DIR", &seed_status),
        &d.join("seed.log"),
    );
    wait_port(port, Duration::from_secs(30));
    let peer = format!("127.0.0.1:{port}");
    let mut m = Mount::library(
        d,
        &[
            "--no-trackers",
            "--watch",
            watch.to_str().unwrap(),
            "--peer",
            &peer,
        ],
        &[("BTT_STATUS_DIR", mount_status.to_str().unwrap())],
    );
    assert!(
        wait_until(Duration::from_secs(30), || files(&mount_status) == N + 1
            && files(&seed_status) == N),
        "a status file per torrent (and the library's)\n{}",
        m.log()
    );
    // Every torrent connected and read: each shutdown has a peer to close.
    for i in 0..N {
        let name = format!("f{i:03}.bin");
        assert_eq!(
            read_file_timeout(&m.mnt.join(&name), Duration::from_secs(30)).unwrap(),
            std::fs::read(d.join("content").join(&name)).unwrap()
        );
    }
    let ok = Command::new("fusermount3")
        .arg("-u")
        .arg(&m.mnt)
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        m.proc.wait_exit(Duration::from_secs(30)).is_some(),
        "the library ends once unmounted\n{}",
        m.log()
    );
    seed.signal(libc::SIGTERM);
    assert!(seed.wait_exit(Duration::from_secs(30)).is_some());
    assert_eq!(
        (files(&mount_status), files(&seed_status)),
        (0, 0),
        "status files left behind (mount, seeder)\n{}",
        m.log()
    );
}
