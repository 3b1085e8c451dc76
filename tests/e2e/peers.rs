//! Reading through the mount from each real client, found via opentracker and via
//! `--peer`; and the other direction, aria2c downloading from `btt seed`.

use crate::harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

enum Client {
    Aria2,
    Transmission,
    Qbittorrent,
}

fn read_from(client: Client) {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let tport = free_port();
    let http = format!("http://127.0.0.1:{tport}/announce");
    let udp = format!("udp://127.0.0.1:{tport}/announce");
    // Each client also exercises a tracker protocol: HTTP, UDP (BEP 15), or tiers of both.
    let trackers = match client {
        Client::Aria2 => vec![http],
        Client::Transmission => vec![udp],
        Client::Qbittorrent => vec![udp, http],
    };
    let torrent = make_torrent(&content, 64 * 1024, &trackers);
    let _tracker = opentracker(d, tport, &[&torrent]);
    let port = free_port();
    let _seeder = match client {
        Client::Aria2 => aria2_seed(&torrent, &d.join("seed"), port, &d.join("aria2.log"), false),
        Client::Transmission => transmission_seed(&torrent, &d.join("seed"), port, d),
        Client::Qbittorrent => qbittorrent_seed(&torrent, &d.join("seed"), port, d),
    };
    {
        let m = Mount::start(&d.join("via-tracker"), &torrent, &[]);
        assert_tree_eq(&m.mnt.join("tree"), &content);
        assert!(
            m.log().contains("announced"),
            "found through the tracker:\n{}",
            m.log()
        );
    }
    {
        let ip = if matches!(client, Client::Qbittorrent) {
            QBT_IP
        } else {
            "127.0.0.1"
        };
        let peer = format!("{ip}:{port}");
        let m = Mount::start(
            &d.join("via-peer"),
            &torrent,
            &["--no-trackers", "--peer", &peer],
        );
        assert_tree_eq(&m.mnt.join("tree"), &content);
    }
}

#[test]
fn read_from_aria2() {
    read_from(Client::Aria2);
}

#[test]
fn read_from_transmission() {
    read_from(Client::Transmission);
}

#[test]
fn read_from_qbittorrent() {
    read_from(Client::Qbittorrent);
}

#[test]
fn aria2_downloads_from_btt_seed() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let tport = free_port();
    let torrent = make_torrent(
        &content,
        64 * 1024,
        &[format!("http://127.0.0.1:{tport}/announce")],
    );
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
    let mut aria = Proc::spawn(
        "aria2c",
        std::process::Command::new("aria2c")
            .arg(&torrent)
            .arg(format!("--dir={}", out.display()))
            .args([
                "--seed-time=0",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
            ])
            .args([
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

#[test]
fn multi_file_listing_sizes_and_metadata() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 32 * 1024, &[]);
    let (_seed, peer) = seed_with_btt(d, &torrent);
    let m = Mount::start(d, &torrent, &["--no-trackers", "--peer", &peer]);
    let root = m.mnt.join("tree");
    for (rel, len) in TRICKY {
        let md = std::fs::metadata(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(md.len(), *len as u64, "{rel}");
        assert!(md.permissions().readonly());
    }
    let mut top: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        vec!["big file.bin", "empty", "nested", "one", "z last.bin"]
    );
    assert_tree_eq(&root, &content);
    assert_ne!(
        read_file_timeout(Path::new(&root.join("one")), Duration::from_secs(10))
            .unwrap()
            .len(),
        0
    );
}

/// `--max-up` on `btt seed` and `--max-down` on a mount (or `-o
/// max_down=`) hold a transfer to the rate: 6 MiB at 2 MiB/s takes about 3 s (loopback does it in a
/// fraction of one). Only the lower bound is asserted: a limit can only
/// make things slower, and a slow machine is slower anyway.
#[test]
fn rate_limits_hold_transfers_to_the_rate() {
    let d = tmpdir();
    let data = d.path().join("data");
    make_tree(&data, &[("f.bin", 6 << 20)]);
    let torrent = make_torrent(&data.join("f.bin"), 256 * 1024, &[]);
    let want = std::fs::read(data.join("f.bin")).unwrap();
    for (i, (seed_args, mount_args)) in [
        (vec!["--max-up", "2MiB"], vec![]),
        (vec![], vec!["--max-down", "2MiB/s"]),
        // As a mount option (what fstab's `mount -t btt` passes).
        (vec![], vec!["-o", "noatime,max_down=2MiB"]),
        // Set through the web API once mounted (below).
        (vec![], vec!["--http"]),
    ]
    .into_iter()
    .enumerate()
    {
        let http = format!("127.0.0.1:{}", free_port());
        let limits = format!("http://{http}/api/v1/limits");
        let via_api = mount_args == ["--http"];
        let port = free_port();
        let _seed = btt_seed(
            &torrent,
            &data,
            port,
            &d.path().join(format!("seed{i}.log")),
            &seed_args,
        );
        let peer = format!("127.0.0.1:{port}");
        let mut args = vec!["--no-trackers", "--peer", &peer];
        args.extend(mount_args.iter().copied());
        if via_api {
            args.push(&http);
        }
        let m = Mount::start(&d.path().join(format!("m{i}")), &torrent, &args);
        let curl = |extra: &[&str]| {
            let o = Command::new("curl")
                .args(["-s", "-S", "--max-time", "10"])
                .args(extra)
                .arg(&limits)
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        if via_api {
            assert!(
                curl(&[]).contains("\"max_down_bytes_per_sec\":null"),
                "no limit at first"
            );
            let set = curl(&["-X", "PUT", "-d", r#"{"max_down": "2MiB"}"#]);
            assert!(set.contains("\"max_down_bytes_per_sec\":2097152"), "{set}");
            let bad = curl(&["-X", "PUT", "-d", r#"{"max_up": "fast"}"#]);
            assert!(bad.contains("error"), "a rate that is not one: {bad}");
        }
        let t0 = std::time::Instant::now();
        let got = read_file_timeout(&m.mnt.join("f.bin"), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(got, want);
        assert!(
            secs >= 2.4,
            "{seed_args:?} {mount_args:?}: 6 MiB in {secs:.2} s, faster than 2 MiB/s"
        );
        if via_api {
            let lifted = curl(&["-X", "PUT", "-d", r#"{"max_down": null}"#]);
            assert!(
                lifted.contains("\"max_down_bytes_per_sec\":null"),
                "{lifted}"
            );
        }
    }
}
