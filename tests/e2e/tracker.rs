//! The tracker client's manners, against scripted HTTP trackers on
//! 127.0.0.1 that count every announce: the interval a tracker asks for is
//! kept, a failing tracker is retried with growing waits, its `tracker id` is
//! sent back, and `stopped` is said on the way out.

use crate::harness::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An HTTP tracker that answers every request the same way and records
/// each request's target (path and query) with its arrival time.
struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scripted {
    /// `answer`: a bencoded body for "200 OK", or `None` for "503".
    fn start(answer: Option<&'static [u8]>) -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                let target = line.split(' ').nth(1).unwrap_or("").to_string();
                s.lock().unwrap().push((Instant::now(), target));
                let mut c = c;
                let _ = match answer {
                    Some(body) => {
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        c.write_all(head.as_bytes()).and_then(|()| c.write_all(body))
                    }
                    None => c.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        Scripted {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    fn seen(&self) -> Vec<(Instant, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Two mounts with no peers for 40 s: one whose tracker asks for a 30 s
/// interval (and gives a tracker id), one whose tracker fails every time.
/// btt used to announce every 15 s to the first (3 times in 40 s) and every
/// 5 s to the second (8 times).
#[test]
fn announces_keep_the_interval_and_back_off_on_failure() {
    let d = tmpdir();
    let d = d.path();
    let good = Scripted::start(Some(
        b"d8:intervali30e12:min intervali30e5:peers0:10:tracker id5:t-42xe",
    ));
    let bad = Scripted::start(None);
    make_tree(&d.join("a"), &[("a.bin", 100_000)]);
    make_tree(&d.join("b"), &[("b.bin", 200_000)]);
    let ta = make_torrent(&d.join("a/a.bin"), 16384, &[good.url()]);
    let tb = make_torrent(&d.join("b/b.bin"), 16384, &[bad.url()]);
    let start = Instant::now();
    let ma = Mount::start(&d.join("ma"), &ta, &[]);
    let mb = Mount::start(&d.join("mb"), &tb, &[]);
    std::thread::sleep(Duration::from_secs(40).saturating_sub(start.elapsed()));
    let g = good.seen();
    let b = bad.seen();
    assert!(
        (1..=2).contains(&g.len()),
        "{} announces in 40 s to a tracker asking for 30 s: {g:?}",
        g.len()
    );
    if let [(t0, _), (t1, second)] = &g[..] {
        assert!(*t1 - *t0 >= Duration::from_secs(29), "{:?}", *t1 - *t0);
        assert!(second.contains("trackerid=t%2D42x"), "{second}");
    }
    assert!(
        (2..=3).contains(&b.len()),
        "{} tries in 40 s at a failing tracker: {b:?}",
        b.len()
    );
    if let [(t0, _), (t1, _), ..] = &b[..] {
        assert!(*t1 - *t0 >= Duration::from_secs(14), "{:?}", *t1 - *t0);
    }
    let log = mb.log();
    assert!(
        log.contains("announce failed") && log.contains("retry_in"),
        "the back-off is in the log"
    );
    assert!(
        !log.contains("info_hash="),
        "the announce URL's query is not logged"
    );
    // Unmounting says `stopped`.
    drop(ma);
    assert!(
        wait_until(Duration::from_secs(5), || good
            .seen()
            .last()
            .is_some_and(|(_, t)| t.contains("event=stopped"))),
        "{:?}",
        good.seen()
    );
}

/// An HTTPS tracker (Python's `ssl` with a certificate for 127.0.0.1 signed
/// by a CA made here with openssl): a mount that trusts the CA
/// (`SSL_CERT_FILE`) announces over TLS; one that does not says the
/// announce failed, in a short line without the URL's query.
#[test]
fn https_trackers_are_announced_to() {
    let d = tmpdir();
    let d = d.path();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(d)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=btt test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    let server = r#"
import http.server, ssl, sys
port, cert, key, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
body = b"d8:intervali1800e5:peers0:e"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(log, "a") as f:
            f.write(self.path + "\n")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", port), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
s.socket = ctx.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#;
    let port = free_port();
    let seen = d.join("seen.log");
    let _tracker = Proc::spawn(
        "https tracker",
        std::process::Command::new("python3")
            .arg("-c")
            .arg(server)
            .arg(port.to_string())
            .arg(d.join("srv.pem"))
            .arg(d.join("srv.key"))
            .arg(&seen),
        &d.join("tracker.out"),
    );
    wait_port(port, Duration::from_secs(10));
    make_tree(&d.join("c"), &[("c.bin", 50_000)]);
    let t = make_torrent(
        &d.join("c/c.bin"),
        16384,
        &[format!("https://127.0.0.1:{port}/announce")],
    );
    let ca = d.join("ca.pem");
    let trusting = Mount::try_start_env(
        &d.join("m1"),
        &t,
        &[],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_until(Duration::from_secs(15), || trusting
            .log()
            .contains("announced")),
        "{}",
        trusting.log()
    );
    let got = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(got.contains("/announce?info_hash="), "{got}");
    // With only the system's CAs, the tracker's certificate is refused.
    let wary = Mount::try_start_env(
        &d.join("m2"),
        &t,
        &[],
        &[("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        wait_until(Duration::from_secs(15), || wary
            .log()
            .contains("announce failed")),
        "{}",
        wary.log()
    );
    let line = wary
        .log()
        .lines()
        .find(|l| l.contains("announce failed"))
        .unwrap()
        .to_string();
    assert!(!line.contains("info_hash="), "{line}");
    assert!(!wary.log().contains("announced peers"), "{}", wary.log());
}
