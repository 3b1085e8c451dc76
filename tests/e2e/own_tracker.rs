//! `btt tracker`: aria2c, qbittorrent-nox and btt find each other through
//! it over HTTP, qbittorrent-nox and btt over UDP too, and its scrape
//! counts (asked over both) are what the peers said.

use crate::harness::*;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Http,
    Udp,
}

/// `btt tracker` on 127.0.0.1:`port`.
fn btt_tracker(port: u16, log: &Path, extra: &[&str]) -> Proc {
    let mut c = std::process::Command::new(BTT);
    c.args(["tracker", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .env("RUST_LOG", "btt=debug,info");
    let p = Proc::spawn("btt tracker", &mut c, log);
    wait_port(port, Duration::from_secs(20));
    p
}

fn url_escape(b: &[u8]) -> String {
    b.iter().map(|x| format!("%{x:02x}")).collect()
}

/// (complete, downloaded, incomplete) of `hash`, asked over HTTP.
fn http_scrape(port: u16, hash: &[u8; 20]) -> (u32, u32, u32) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /scrape?info_hash={} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        url_escape(hash)
    )
    .unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let body = &resp[resp.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let text = String::from_utf8_lossy(body).into_owned();
    let num = |k: &str| -> u32 {
        let key = format!("{}:{k}i", k.len());
        let at = text.find(&key).unwrap_or_else(|| panic!("{text}"));
        let rest = &text[at + key.len()..];
        rest[..rest.find('e').unwrap()].parse().unwrap()
    };
    (num("complete"), num("downloaded"), num("incomplete"))
}

/// The same over UDP (BEP 15: connect, then scrape).
fn udp_scrape(port: u16, hash: &[u8; 20]) -> (u32, u32, u32) {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.connect(("127.0.0.1", port)).unwrap();
    let mut c = 0x0417_2710_1980u64.to_be_bytes().to_vec();
    c.extend_from_slice(&0u32.to_be_bytes());
    c.extend_from_slice(&5u32.to_be_bytes());
    s.send(&c).unwrap();
    let mut buf = [0u8; 512];
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(n, 16, "a connect answer");
    let mut q = buf[8..16].to_vec();
    q.extend_from_slice(&2u32.to_be_bytes());
    q.extend_from_slice(&6u32.to_be_bytes());
    q.extend_from_slice(hash);
    s.send(&q).unwrap();
    let n = s.recv(&mut buf).unwrap();
    assert_eq!(n, 20, "one torrent's counts: {:?}", &buf[..n]);
    let u = |i: usize| u32::from_be_bytes(buf[i..i + 4].try_into().unwrap());
    (u(8), u(12), u(16))
}

fn aria2c_get(torrent: &Path, dir: &Path, log: &Path) -> std::process::ExitStatus {
    let out = std::process::Command::new("aria2c")
        .arg(torrent)
        .arg(format!("--dir={}", dir.display()))
        .args([
            "--seed-time=0",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--file-allocation=none",
            "--summary-interval=0",
            "--console-log-level=warn",
            "--bt-stop-timeout=60",
        ])
        .arg(format!("--listen-port={}", free_port()))
        .output()
        .expect("aria2c");
    std::fs::write(log, [out.stdout, out.stderr].concat()).unwrap();
    out.status
}

fn find_each_other(proto: Proto) {
    let d = tmpdir();
    let d = d.path();
    let port = free_port();
    let tracker = btt_tracker(port, &d.join("tracker.log"), &["--interval", "30"]);
    let announce = match proto {
        Proto::Http => format!("http://127.0.0.1:{port}/announce"),
        Proto::Udp => format!("udp://127.0.0.1:{port}"),
    };
    let seed = d.join("seed");
    make_tree(&seed, &[("clip.bin", 3_000_000)]);
    let torrent = make_torrent(&seed.join("clip.bin"), 64 * 1024, &[announce]);
    let hash = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info_hash
        .0;
    let want = std::fs::read(seed.join("clip.bin")).unwrap();
    // Asked over both; an announce may land between the two questions, so
    // they are asked again until they agree.
    let scrape = |what: &str| {
        for _ in 0..50 {
            let (h, u) = (http_scrape(port, &hash), udp_scrape(port, &hash));
            if h == u {
                return h;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what}: HTTP and UDP scrapes never agree");
    };
    assert_eq!(scrape("nobody yet"), (0, 0, 0));
    // btt seed announces through it.
    let sp = btt_seed(&torrent, &seed, free_port(), &d.join("seed.log"), &[]);
    assert!(
        wait_until(Duration::from_secs(20), || scrape("seed").0 == 1),
        "btt seed never announced\n{}\n{}",
        sp.log_text(),
        tracker.log_text()
    );
    assert_eq!(scrape("the seed alone"), (1, 0, 0));
    // aria2c finds it there (over HTTP: aria2c speaks UDP trackers only
    // through its DHT socket, which these tests keep off), completes, and
    // is gone once it stops. Whether it said "completed" first is its own
    // choice; the count says what it said.
    let mut downloads = 0;
    if proto == Proto::Http {
        let got = d.join("aria");
        let status = aria2c_get(&torrent, &got, &d.join("aria.log"));
        assert!(
            status.success(),
            "aria2c: {}\n{}",
            std::fs::read_to_string(d.join("aria.log")).unwrap_or_default(),
            tracker.log_text()
        );
        assert!(
            std::fs::read(got.join("clip.bin")).unwrap() == want,
            "aria2c byte-exact"
        );
        let (c, dl, i) = scrape("aria2c done and gone");
        assert!((c, i) == (1, 0) && dl <= 1, "{:?}", (c, dl, i));
        downloads = dl;
        let said = tracker.log_text().contains("event=Completed");
        assert_eq!(said, dl == 1, "the count is what aria2c said");
    }
    // qbittorrent-nox downloads through it too.
    let qdir = d.join("qbt-data");
    std::fs::create_dir_all(&qdir).unwrap();
    let _q = qbittorrent_seed(&torrent, &qdir, free_port(), d);
    assert!(
        wait_until(Duration::from_secs(90), || std::fs::read(
            qdir.join("clip.bin")
        )
        .is_ok_and(|b| b == want)),
        "qbittorrent-nox never got it through the tracker\n{}",
        tracker.log_text()
    );
    // And a mount: its peers come from the tracker alone.
    let m = Mount::try_start(&d.join("m"), &torrent, &[]).unwrap();
    let read = read_file_timeout(&m.mnt.join("clip.bin"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert!(read == want, "the mount byte-exact");
    // Three seeds (btt seed; qBittorrent and the mount, each once it says
    // it completed), two more downloads, no leecher.
    assert!(
        wait_until(Duration::from_secs(30), || scrape("all")
            == (3, downloads + 2, 0)),
        "scrape {:?}\n{}",
        scrape("all"),
        tracker.log_text()
    );
}

#[test]
fn aria2c_qbittorrent_and_btt_meet_through_btt_tracker_over_http() {
    find_each_other(Proto::Http);
}

#[test]
fn qbittorrent_and_btt_meet_through_btt_tracker_over_udp() {
    find_each_other(Proto::Udp);
}

/// Only the allow-list's torrents are tracked; others get a clear failure.
#[test]
fn btt_tracker_refuses_torrents_off_its_allow_list() {
    let d = tmpdir();
    let d = d.path();
    let allowed = [7u8; 20];
    std::fs::write(
        d.join("allow"),
        format!("# ours\n{}\n", data_encoding::HEXLOWER.encode(&allowed)),
    )
    .unwrap();
    let port = free_port();
    let _t = btt_tracker(
        port,
        &d.join("tracker.log"),
        &["--allow", d.join("allow").to_str().unwrap()],
    );
    let ask = |hash: &[u8; 20]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /announce?info_hash={}&peer_id=-XX0000-000000000000&port=6881&left=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            url_escape(hash)
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(ask(&allowed).contains("8:completei1e"), "{}", ask(&allowed));
    let other = ask(&[8u8; 20]);
    assert!(
        other.contains("failure reason") && other.contains("not allowed"),
        "{other}"
    );
}

/// A hybrid `btt seed` announces itself in both of its swarms: the tracker
/// counts it as a seed under the v1 info-hash and under the v2 one
/// (truncated to 20 bytes).
#[test]
fn a_hybrid_seed_announces_both_info_hashes() {
    let d = tmpdir();
    let d = d.path();
    let port = free_port();
    let _tracker = btt_tracker(port, &d.join("tracker.log"), &[]);
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = d.join("tree.torrent");
    let announce = format!("http://127.0.0.1:{port}/announce");
    let meta = btt_create(
        &content,
        &torrent,
        &["--hybrid", "--piece-size", "64KiB", "-t", &announce],
    );
    let v2: [u8; 20] = meta.v2.as_ref().unwrap().info_hash[..20]
        .try_into()
        .unwrap();
    let _seed = btt_seed(
        &torrent,
        &d.join("seed"),
        free_port(),
        &d.join("seed.log"),
        &[],
    );
    let both = wait_until(Duration::from_secs(20), || {
        http_scrape(port, &meta.info_hash.0).0 == 1 && http_scrape(port, &v2).0 == 1
    });
    assert!(
        both,
        "v1 {:?}, v2 {:?}",
        http_scrape(port, &meta.info_hash.0),
        http_scrape(port, &v2)
    );
}
