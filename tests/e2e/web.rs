//! The web face of a running mount: HTTP range streaming that players use
//! (curl's edge cases, ffprobe, ffmpeg seeking, VLC), the JSON API and its
//! waiting-read causes, the event stream, Prometheus metrics, `btt status`,
//! and the token off 127.0.0.1 (127.0.0.2 stands for another host).

use crate::harness::*;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `curl ARGS URL`: (status code, headers, body).
fn curl(url: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
    let d = tmpdir();
    let (h, b) = (d.path().join("h"), d.path().join("b"));
    let o = Command::new("curl")
        .args(["-s", "-S", "--path-as-is", "--max-time", "60", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let code = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        code,
        std::fs::read_to_string(&h)
            .unwrap_or_default()
            .to_ascii_lowercase(),
        std::fs::read(&b).unwrap_or_default(),
    )
}

fn json(url: &str, args: &[&str]) -> Value {
    let (code, _, body) = curl(url, args);
    assert_eq!(code, 200, "{url}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn info_hash(torrent: &Path) -> String {
    btt::metainfo::Metainfo::from_bytes(&std::fs::read(torrent).unwrap())
        .unwrap()
        .info_hash
        .hex()
}

#[test]
fn a_file_streams_over_http_with_ranges_and_players_play_it() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/videos");
    std::fs::create_dir_all(&content).unwrap();
    btt::demo::generate_video(&content.join("clip.mp4"), 36, 10).unwrap();
    let data = std::fs::read(content.join("clip.mp4")).unwrap();
    let n = data.len();
    let torrent = make_torrent(&content, 256 * 1024, &[]);
    let (_seed, peer) = seed_with_btt(d, &torrent);
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    // VLC will not run as root: it runs as nobody, another user, so the
    // page is given a token (as for another host).
    let token = "0123456789abcdef0123";
    let _m = Mount::start(
        d,
        &torrent,
        &[
            "--no-trackers",
            "--peer",
            &peer,
            "--http",
            &http,
            "--http-token",
            token,
        ],
    );
    let url = format!(
        "http://{http}/stream/{}/clip.mp4?token={token}",
        info_hash(&torrent)
    );

    let (code, h, body) = curl(&url, &["-r", "0-0"]);
    assert_eq!((code, body.as_slice()), (206, &data[..1]), "the first byte");
    assert!(h.contains(&format!("content-range: bytes 0-0/{n}")), "{h}");
    assert!(
        h.contains("content-type: video/mp4") && h.contains("accept-ranges: bytes"),
        "{h}"
    );
    let (code, h, body) = curl(&url, &["-r", &format!("{}-{}", n - 1, n - 1)]);
    assert_eq!(
        (code, body.as_slice()),
        (206, &data[n - 1..]),
        "the last byte"
    );
    assert!(
        h.contains(&format!("content-range: bytes {}-{}/{n}", n - 1, n - 1)),
        "{h}"
    );
    let (code, _, body) = curl(&url, &["-H", "Range: bytes=-100"]);
    assert_eq!((code, body.as_slice()), (206, &data[n - 100..]), "a suffix");
    let (code, _, body) = curl(&url, &["-H", &format!("Range: bytes={}-", n - 5000)]);
    assert_eq!(
        (code, body.as_slice()),
        (206, &data[n - 5000..]),
        "an open range"
    );
    let (code, h, _) = curl(&url, &["-H", &format!("Range: bytes={n}-")]);
    assert_eq!(code, 416, "beyond the end");
    assert!(h.contains(&format!("content-range: bytes */{n}")), "{h}");
    let (code, h, _) = curl(&url, &["-I"]);
    assert_eq!(code, 200, "HEAD");
    assert!(h.contains(&format!("content-length: {n}")), "{h}");

    // Two ranges of one file at once, as a player's demuxer and its index
    // reader ask.
    let halves = [(0, n / 2), (n / 2, n)];
    let got: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = halves
            .iter()
            .map(|&(a, b)| {
                let url = &url;
                s.spawn(move || curl(url, &["-r", &format!("{a}-{}", b - 1)]).2)
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (&(a, b), g) in halves.iter().zip(&got) {
        assert!(
            g.as_slice() == &data[a..b],
            "bytes {a}..{b} over HTTP differ"
        );
    }
    let (code, _, body) = curl(&url, &[]);
    assert!(code == 200 && body == data, "the whole file");

    for bad in ["../../../etc/passwd", "videos/../clip.mp4", "nope.mp4"] {
        let u = format!(
            "http://{http}/stream/{}/{bad}?token={token}",
            info_hash(&torrent)
        );
        let (code, _, body) = curl(&u, &[]);
        assert_eq!(code, 404, "{bad}: {}", String::from_utf8_lossy(&body));
    }

    let probe = run_ok(
        Command::new("timeout").args(["60", "ffprobe", "-hide_banner", "-show_format", &url]),
        "ffprobe",
    );
    assert!(probe.contains("1920x1080"), "{probe}");
    run_ok(
        Command::new("timeout").args([
            "60",
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-ss",
            "30",
            "-i",
            &url,
            "-frames:v",
            "1",
            "-f",
            "null",
            "-",
        ]),
        "seek and decode one frame over HTTP",
    );
    let out = run_ok(
        Command::new("timeout")
            .args([
                "120",
                "runuser",
                "-u",
                "nobody",
                "--",
                "cvlc",
                "-vv",
                "--play-and-exit",
                "--no-video-title-show",
                "--vout=dummy",
                "--aout=dummy",
                "--rate=4",
                &url,
            ])
            .env("HOME", "/tmp"),
        "cvlc",
    );
    assert!(
        out.contains("EOF reached"),
        "VLC did not play the stream to the end:\n{}",
        &out[out.len().saturating_sub(3000)..]
    );
}

/// The API shows the torrent, its files and pieces; a read that waits says
/// "no peers" while the only seeder is gone and stops waiting when it is
/// back; the event stream and /metrics carry the same; `btt status` shows
/// the page's address and the waiting read.
#[test]
fn the_api_says_why_a_read_waits_and_metrics_count() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, &[("a.bin", 3 << 20), ("b.txt", 5000)]);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let ih = info_hash(&torrent);
    let seed_port = free_port();
    let seed = |log: &str| {
        btt_seed(
            &torrent,
            &d.join("seed"),
            seed_port,
            &d.join(log),
            &["--no-trackers"],
        )
    };
    let mut s1 = seed("seed1.log");
    let peer = format!("127.0.0.1:{seed_port}");
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let status = d.join("status");
    std::fs::create_dir_all(&status).unwrap();
    let st = status.to_str().unwrap();
    let m = Mount::try_start_env(
        d,
        &torrent,
        &["--no-trackers", "--peer", &peer, "--http", &http],
        &[("BTT_STATUS_DIR", st)],
    )
    .unwrap();
    let api = format!("http://{http}/api/v1/torrents/{ih}");
    let list = json(&format!("http://{http}/api/v1/torrents"), &[]);
    assert_eq!(list.as_array().map(|a| a.len()), Some(1), "{list}");
    let v = &list[0];
    assert_eq!(v["name"], "tree");
    assert_eq!(v["files"][0]["path"], "a.bin");
    assert_eq!(v["pieces_total"], 49);

    // The first piece read: then the seeder goes away.
    let f = m.mnt.join("tree/a.bin");
    let first = read_file_timeout(&f, Duration::from_secs(30)).unwrap();
    assert_eq!(first.len(), 3 << 20);
    let v = json(&api, &[]);
    assert_eq!(v["pieces_have"], 48, "a.bin's pieces: {v}");
    assert_eq!(v["files"][0]["have_bytes"], 3 << 20);
    assert!(
        v["pieces"].as_str().unwrap().starts_with(&"1".repeat(48)),
        "{v}"
    );
    s1.signal(libc::SIGTERM);
    s1.wait_exit(Duration::from_secs(10));
    assert!(
        wait_until(Duration::from_secs(20), || json(&api, &[])["peer_count"]
            == 0),
        "the seeder is gone"
    );
    let b = m.mnt.join("tree/b.txt");
    let reader = std::thread::spawn(move || read_file_timeout(&b, Duration::from_secs(90)));
    let mut cause = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let v = json(&api, &[]);
            cause = v["waiting"][0]["cause"].as_str().unwrap_or("").to_string();
            cause.contains("no peers")
        }),
        "the waiting read's cause: {cause:?}"
    );
    let btt_status = || {
        let o = Command::new(BTT)
            .arg("status")
            .env("BTT_STATUS_DIR", st)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut human = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            human = btt_status();
            human.contains("a read waits")
                && human.contains("on piece 48")
                && human.contains("no peers")
        }),
        "btt status says why the read waits:\n{human}"
    );
    assert!(
        human.contains(&format!("web page: http://{http}/")),
        "{human}"
    );
    let j = Command::new(BTT)
        .args(["status", "--json"])
        .env("BTT_STATUS_DIR", st)
        .output()
        .unwrap();
    let j: Value = serde_json::from_slice(&j.stdout).expect("btt status --json is JSON");
    assert_eq!(j[0]["info_hash"], ih.as_str(), "{j}");
    assert!(
        j[0]["pieces"].is_string() && j[0]["files"].is_array(),
        "the API's object: {j}"
    );

    // --watch redraws (home and clear, then the lines) until stopped.
    let w = Command::new("timeout")
        .args(["2.5", BTT, "status", "--watch"])
        .env("BTT_STATUS_DIR", st)
        .output()
        .unwrap();
    let w = String::from_utf8_lossy(&w.stdout);
    assert!(
        w.matches("\x1b[H\x1b[2J").count() >= 2 && w.contains("a read waits"),
        "btt status --watch redraws: {w:?}"
    );

    let (code, _, body) = curl(&format!("http://{http}/metrics"), &[]);
    let metrics = String::from_utf8_lossy(&body);
    assert_eq!(code, 200);
    assert!(
        metrics.contains(&format!(
            "btt_pieces_have{{info_hash=\"{ih}\",name=\"tree\"}} 48"
        )) && metrics.contains("btt_waiting_reads{")
            && metrics.contains("# TYPE btt_downloaded_bytes_total counter"),
        "{metrics}"
    );
    let (_, _, events) = curl(
        &format!("http://{http}/api/v1/events"),
        &["-N", "--max-time", "3"],
    );
    let events = String::from_utf8_lossy(&events);
    assert!(
        events.contains("event: torrents") && events.contains("no peers"),
        "the event stream carries the views: {}",
        &events[..events.len().min(2000)]
    );
    // Another user of this host is refused (the page is its user's, as the
    // mount is without allow_other).
    let o = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &api,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "403",
        "another user: {o:?}"
    );
    // Another site's page (DNS rebinding, a cross-site POST) is refused.
    let (code, _, _) = curl(&api, &["-H", "Host: evil.example"]);
    assert_eq!(code, 403, "a foreign Host");
    let (code, _, _) = curl(
        &format!("http://{http}/api/v1/limits"),
        &[
            "-X",
            "PUT",
            "-H",
            "Origin: http://evil.example",
            "-d",
            r#"{"max_down": 1}"#,
        ],
    );
    assert_eq!(code, 403, "a foreign Origin");
    let (code, _, page) = curl(&format!("http://{http}/"), &[]);
    let page = String::from_utf8_lossy(&page);
    assert!(
        code == 200 && page.contains("EventSource(\"/api/v1/events\")"),
        "{page}"
    );

    // The seeder is back: the read completes and nothing waits.
    let _s2 = seed("seed2.log");
    let got = reader
        .join()
        .unwrap()
        .expect("the read completes once the seeder is back");
    assert_eq!(got, std::fs::read(content.join("b.txt")).unwrap());
    let v = json(&api, &[]);
    assert_eq!(v["waiting"].as_array().map(|a| a.len()), Some(0), "{v}");
    assert_eq!(v["pieces_have"], 49);
    let _ = std::fs::remove_dir_all(&status);
}

/// Off 127.0.0.1 the page makes up a token, prints it once, and refuses
/// every request without it; `btt status` shows the address, not the token.
#[test]
fn off_loopback_every_request_needs_the_token() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, &[("a.bin", 300_000)]);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let ih = info_hash(&torrent);
    let (_seed, peer) = seed_with_btt(d, &torrent);
    let port = free_port();
    let http = format!("127.0.0.2:{port}");
    let status = d.join("status");
    std::fs::create_dir_all(&status).unwrap();
    let st = status.to_str().unwrap();
    let m = Mount::try_start_env(
        d,
        &torrent,
        &["--no-trackers", "--peer", &peer, "--http", &http],
        &[("BTT_STATUS_DIR", st)],
    )
    .unwrap();
    let mut token = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let out = m.proc.log_text();
            token = out
                .split(&format!("web page: http://{http}/?token="))
                .nth(1)
                .map(|t| t.lines().next().unwrap_or("").trim().to_string())
                .unwrap_or_default();
            token.len() == 32
        }),
        "the page's address with its token is printed: {}",
        m.proc.log_text()
    );
    let base = format!("http://{http}");
    for path in [
        "/",
        "/api/v1/torrents",
        "/metrics",
        &format!("/stream/{ih}/a.bin"),
    ] {
        let (code, _, _) = curl(&format!("{base}{path}"), &[]);
        assert_eq!(code, 401, "{path} without the token");
        let (code, _, _) = curl(
            &format!("{base}{path}"),
            &["-H", "Authorization: Bearer wrong"],
        );
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let bearer = format!("Authorization: Bearer {token}");
    let v = json(&format!("{base}/api/v1/torrents"), &["-H", &bearer]);
    assert_eq!(v[0]["name"], "tree");
    let (code, h, _) = curl(&format!("{base}/?token={token}"), &[]);
    assert_eq!(code, 200);
    assert!(
        h.contains("set-cookie: btt_token="),
        "the page keeps its token for its own requests: {h}"
    );
    let (code, _, body) = curl(
        &format!("{base}/stream/{ih}/a.bin"),
        &["-H", &format!("Cookie: btt_token={token}")],
    );
    assert_eq!(code, 200);
    assert_eq!(body, std::fs::read(content.join("a.bin")).unwrap());
    let human = Command::new(BTT)
        .arg("status")
        .env("BTT_STATUS_DIR", st)
        .output()
        .unwrap();
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        human.contains(&format!("web page: {base}/ (with its token)")),
        "{human}"
    );
    assert!(
        !human.contains(&token),
        "btt status shows the token:\n{human}"
    );
    for f in std::fs::read_dir(&status).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        assert!(!text.contains(&token), "a status file holds the token");
    }
}

/// The live page in headless Chromium (Debian's, driven by puppeteer-core)
/// while a slow seeder feeds a read: the percent and the piece map move
/// without a reload; the waiting read's cause reads "no peers" when the only
/// seeder stops and clears when it returns. The screenshot is saved as
/// target/web-page.png.
#[test]
fn the_live_page_follows_a_read_in_chromium() {
    use std::io::BufRead;
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, &[("film.bin", 6 << 20)]);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let seed_port = free_port();
    let seed = |log: &str| {
        btt_seed(
            &torrent,
            &d.join("seed"),
            seed_port,
            &d.join(log),
            &["--no-trackers", "--max-up", "400KiB"],
        )
    };
    let mut s1 = seed("seed1.log");
    let peer = format!("127.0.0.1:{seed_port}");
    let http = format!("127.0.0.1:{}", free_port());
    let m = Mount::start(
        d,
        &torrent,
        &["--no-trackers", "--peer", &peer, "--http", &http],
    );
    let f = m.mnt.join("tree/film.bin");
    let reader = std::thread::spawn(move || read_file_timeout(&f, Duration::from_secs(240)));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = root.join("target/web-page.png");
    let _ = std::fs::remove_file(&shot);
    let script = root.join("tests/browser/page.js");
    assert!(
        root.join("tests/browser/node_modules/puppeteer-core")
            .exists(),
        "puppeteer-core is not installed in tests/browser (run tests/setup.sh)"
    );
    let mut node = Command::new("node")
        .arg(&script)
        .arg(format!("http://{http}/"))
        .arg(&shot)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // Its own process group: chromium goes with it, whatever happens.
        .process_group(0)
        .spawn()
        .expect("run node");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            // The script closes the browser before it says "done"; a script
            // that did not get that far takes its browser with it.
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while self.0.try_wait().ok().flatten().is_none() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: killpg on the group this child leads.
            unsafe { libc::killpg(self.0.id() as i32, libc::SIGKILL) };
            let _ = self.0.wait();
        }
    }
    let out = node.stdout.take().unwrap();
    let node = Kill(node);
    let mut seen = Vec::new();
    let mut s2 = None;
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        match line.split(' ').next().unwrap_or("") {
            "stop" => {
                s1.signal(libc::SIGTERM);
                s1.wait_exit(Duration::from_secs(10));
            }
            "no-peers" => s2 = Some(seed("seed2.log")),
            "done" | "error" => break,
            _ => {}
        }
    }
    drop(node);
    assert_eq!(
        seen.iter()
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["changed", "stop", "no-peers", "back", "done"],
        "what the page showed: {seen:#?}"
    );
    assert!(
        std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0) > 10_000,
        "a screenshot in {}",
        shot.display()
    );
    let got = reader.join().unwrap().expect("the read completes");
    assert_eq!(got, std::fs::read(content.join("film.bin")).unwrap());
    drop(s2);
}
