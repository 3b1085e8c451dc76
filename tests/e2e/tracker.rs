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
