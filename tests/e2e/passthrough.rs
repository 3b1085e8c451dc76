//! Completed files are read by the kernel from the store (FUSE passthrough):
//! they stay readable with btt-mount stopped, and a file open since before it
//! completed is readable on every later open too (the kernel refuses a
//! passthrough open of an inode with cached opens, and the reverse).

use crate::harness::*;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Reads `f` to its end on a thread; None if that takes longer than `t`
/// (the thread then finishes when the mount answers). Plain reads only:
/// `read_to_end` asks for the size first (statx), and that is a request to
/// btt-mount whatever the open's mode.
fn read_within(mut f: std::fs::File, t: Duration) -> Option<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let r = loop {
            match f.read(&mut buf) {
                Ok(0) => break Ok(v),
                Ok(n) => v.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        };
        let _ = tx.send(r);
    });
    rx.recv_timeout(t).ok().map(|r| r.expect("read"))
}

/// A process stopped (SIGSTOP) until this is dropped, whatever happens.
struct Stopped<'a>(&'a Proc);

impl<'a> Stopped<'a> {
    fn new(p: &'a Proc) -> Self {
        p.signal(libc::SIGSTOP);
        Stopped(p)
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        self.0.signal(libc::SIGCONT);
    }
}

fn passthrough_opens(m: &Mount) -> usize {
    m.log().matches("opened in passthrough").count()
}

fn open(p: &Path) -> std::fs::File {
    std::fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
}

#[test]
fn a_complete_file_is_read_by_the_kernel_while_btt_is_stopped() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/tree");
    make_tree(&content, &[("a.bin", 4 << 20), ("b.bin", 1 << 20)]);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let want = std::fs::read(content.join("a.bin")).unwrap();
    let keep = d.join("keep");
    let keep = keep.to_str().unwrap();
    {
        let (_seed, peer) = seed_with_btt(d, &torrent);
        // Slow enough that a.bin is far from complete when first opened.
        let m = Mount::start(
            &d.join("m1"),
            &torrent,
            &[
                "--no-trackers",
                "--peer",
                &peer,
                "--data-dir",
                keep,
                "--max-down",
                "1MiB/s",
            ],
        );
        let a = m.mnt.join("tree/a.bin");
        let first = open(&a);
        let mut head = [0u8; 4096];
        (&first).read_exact(&mut head).unwrap();
        let second = open(&a);
        assert!(
            read_within(second, Duration::from_secs(60)).unwrap() == want,
            "read whole through a second open"
        );
        // a.bin is complete now, but `first` is a cached open: a third one
        // must be cached too, or the kernel fails it.
        let third = open(&a);
        assert!(read_within(third, Duration::from_secs(20)).unwrap() == want);
        assert!(
            read_within(first, Duration::from_secs(20)).unwrap() == want[4096..],
            "the first open reads on"
        );
        assert_eq!(passthrough_opens(&m), 0, "{}", m.log());
        // Once the cached opens are released (the kernel tells us after the
        // close), an open goes through.
        assert!(
            wait_until(Duration::from_secs(10), || {
                let f = open(&a);
                drop(f);
                passthrough_opens(&m) > 0
            }),
            "no passthrough open of the complete file:\n{}",
            m.log()
        );
    }
    // No seeder now. A fresh mount has nothing of a.bin in its page cache, so
    // a read that reached btt-mount would wait for it.
    let m = Mount::start(
        &d.join("m2"),
        &torrent,
        &["--no-trackers", "--data-dir", keep, "--read-timeout", "30"],
    );
    let a = open(&m.mnt.join("tree/a.bin"));
    let got = {
        let _stopped = Stopped::new(&m.proc);
        read_within(a, Duration::from_secs(10))
    };
    assert!(
        got.is_some(),
        "reading a complete file waited for the stopped btt-mount"
    );
    assert!(got.unwrap() == want, "byte-exact from the store");
    assert_eq!(passthrough_opens(&m), 1, "{}", m.log());
}
