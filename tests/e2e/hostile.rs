//! Hostile peers written to break a rule, beside a good seeder: a read must
//! complete from the good one while the attack goes on (issue: a hostile
//! peer must not stall a read). Each attacker is a small BitTorrent peer in
//! this process on 127.0.0.1, stopped on drop.

use crate::harness::*;
use btt::wire::{self, BlockRef, Handshake, Message};
use bytes::BytesMut;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// f.bin of `size` bytes in a scratch dir: (dir, data dir, its torrent).
fn content(size: usize) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    content_in_pieces(size, 65536)
}

fn content_in_pieces(
    size: usize,
    piece: u64,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tmpdir();
    let data = d.path().join("data");
    make_tree(&data, &[("f.bin", size)]);
    let torrent = make_torrent(&data.join("f.bin"), piece, &[]);
    (d, data, torrent)
}

fn meta_of(torrent: &std::path::Path) -> btt::metainfo::Metainfo {
    btt::metainfo::Metainfo::from_bytes(&std::fs::read(torrent).unwrap()).unwrap()
}

/// f.bin reads byte-exact from `m` within `secs`.
fn reads_whole(m: &Mount, data: &std::path::Path, secs: u64) {
    let got = read_file_timeout(&m.mnt.join("f.bin"), Duration::from_secs(secs))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert_eq!(got, std::fs::read(data.join("f.bin")).unwrap());
}

/// How an attacker answers a request.
#[derive(Clone)]
pub enum Answer {
    /// A PIECE one byte shorter than asked.
    ShortBlock,
    /// Never unchokes, never answers: it only takes a slot.
    Silent,
    /// A block of the right length and the wrong bytes.
    Corrupt,
    /// The first block of each piece, wrong; the other requests are kept
    /// and never answered (they time out and go to another peer), so the
    /// pieces it spoils are completed by someone else.
    CorruptFirstBlocks,
    /// The first block of each piece, right (from the torrent's bytes);
    /// the other requests are kept and never answered.
    GoodFirstBlocks { data: Arc<Vec<u8>>, piece: usize },
}

/// A peer that has every piece, unchokes everyone and answers requests
/// with `answer`.
pub struct Hostile {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    /// On `ip`, presenting `peer_id` (someone else's) if given.
    pub fn start_as(
        torrent: &std::path::Path,
        answer: Answer,
        ip: &str,
        peer_id: Option<[u8; 20]>,
    ) -> Hostile {
        let meta = meta_of(torrent);
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, ih, n) = (stop.clone(), meta.info_hash.0, meta.num_pieces());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (s, answer) = (s.clone(), answer.clone());
                        std::thread::spawn(move || {
                            let _ = serve(c, ih, n, answer, peer_id, false, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Hostile { port, stop }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn send(c: &mut TcpStream, m: Message) -> std::io::Result<()> {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    c.write_all(&b)
}

fn serve(
    mut c: TcpStream,
    ih: [u8; 20],
    n: usize,
    answer: Answer,
    peer_id: Option<[u8; 20]>,
    dialed: bool,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    c.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut id = *b"-XX0001-hostilepeer0";
    id[19] = b'0' + (rand_byte() % 10);
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    if !dialed {
        c.read_exact(&mut hs)?;
        c.write_all(&Handshake::new(ih, peer_id.unwrap_or(id)).encode())?;
    }
    send(&mut c, Message::HaveAll)?;
    if !matches!(answer, Answer::Silent) {
        send(&mut c, Message::Unchoke)?;
    }
    let _ = n;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        match c.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
        while let Ok(Some(m)) = wire::decode(&mut buf, 1 << 20) {
            if let Message::Request(r) = m {
                reply(&mut c, r, &answer)?;
            }
        }
    }
    Ok(())
}

fn reply(c: &mut TcpStream, r: BlockRef, answer: &Answer) -> std::io::Result<()> {
    match answer {
        Answer::ShortBlock => {
            let len = r.length.saturating_sub(1) as usize;
            c.write_all(&Message::piece_header(r.index, r.begin, len))?;
            c.write_all(&vec![0xAB; len])
        }
        Answer::Silent => Ok(()),
        Answer::Corrupt => {
            c.write_all(&Message::piece_header(r.index, r.begin, r.length as usize))?;
            c.write_all(&vec![0xAB; r.length as usize])
        }
        Answer::CorruptFirstBlocks if r.begin == 0 => reply(c, r, &Answer::Corrupt),
        Answer::GoodFirstBlocks { data, piece } if r.begin == 0 => {
            let at = r.index as usize * piece;
            let block = data.get(at..at + r.length as usize).unwrap_or(&[]);
            c.write_all(&Message::piece_header(r.index, r.begin, block.len()))?;
            c.write_all(block)
        }
        Answer::CorruptFirstBlocks | Answer::GoodFirstBlocks { .. } => Ok(()),
    }
}

/// Whether a mount's log says it banned address `ip`.
fn banned(log: &str, ip: &str) -> bool {
    let field = format!("ip={ip} ");
    log.lines()
        .any(|l| l.contains("peer banned") && l.contains(&field))
}

/// Dials the mount's listen port on 127.0.0.1 from `ip`, again and again
/// (at once after each drop), answering requests with `answer`. Counts the
/// sessions the mount took (it answered the handshake); stops when the
/// flag is set.
fn reconnecting(
    port: u16,
    torrent: &std::path::Path,
    ip: &str,
    answer: Answer,
) -> (Arc<AtomicBool>, Arc<AtomicUsize>) {
    let meta = meta_of(torrent);
    let (ih, n) = (meta.info_hash.0, meta.num_pieces());
    let from: std::net::SocketAddr = format!("{ip}:0").parse().unwrap();
    let to: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(AtomicUsize::new(0));
    let (s, k) = (stop.clone(), sessions.clone());
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let sock =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            sock.bind(&from.into()).unwrap();
            if sock
                .connect_timeout(&to.into(), Duration::from_secs(2))
                .is_err()
            {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mut c: TcpStream = sock.into();
            let mut id = *b"-XX0001-reconnect000";
            id[19] = b'0' + (rand_byte() % 10);
            let mut hs = [0u8; wire::HANDSHAKE_LEN];
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            if c.write_all(&Handshake::new(ih, id).encode()).is_ok()
                && c.read_exact(&mut hs).is_ok()
            {
                k.fetch_add(1, Ordering::Relaxed);
                let _ = serve(c, ih, n, answer.clone(), None, true, &s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (stop, sessions)
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u8
}

/// Two peers answering every request with a block one byte short, then a
/// good seeder: the read completes from the good one (each short block
/// frees its request at once, and its sender is dropped and banned; bans
/// are by address, so the attackers live on addresses of their own).
#[test]
fn short_blocks_do_not_stall_a_read() {
    let (d, data, torrent) = content(3_000_000);
    let (a, b) = (
        Hostile::start_as(&torrent, Answer::ShortBlock, "127.0.0.2", None),
        Hostile::start_as(&torrent, Answer::ShortBlock, "127.0.0.3", None),
    );
    let good = free_port();
    let peers = [
        format!("127.0.0.2:{}", a.port),
        format!("127.0.0.3:{}", b.port),
        format!("127.0.0.1:{good}"),
    ];
    let m = Mount::start(
        &d.path().join("m"),
        &torrent,
        &[
            "--no-trackers",
            "--peer",
            &peers[0],
            "--peer",
            &peers[1],
            "--peer",
            &peers[2],
        ],
    );
    // The attackers get the reader's blocks first; the good seeder comes
    // a moment later.
    let f = m.mnt.join("f.bin");
    let reader = std::thread::spawn(move || read_file_timeout(&f, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_millis(1500));
    let _seed = btt_seed(&torrent, &data, good, &d.path().join("seed.log"), &[]);
    let got = reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert_eq!(got, std::fs::read(data.join("f.bin")).unwrap());
}

/// A peer sending wrong data that reconnects to the mount's listen port at
/// once whenever it is dropped, before the good seeder is reachable: it is
/// banned by its address (every later connection from it refused before
/// the handshake), the good seeder is never blamed for the pieces they
/// shared, and the read completes from it.
#[test]
fn a_reconnecting_corrupt_peer_is_banned_by_its_address() {
    let (d, data, torrent) = content(3_000_000);
    let good = free_port();
    let _seed = btt_seed(&torrent, &data, good, &d.path().join("seed.log"), &[]);
    let late = free_port();
    let fwd = forward_later(late, good, Duration::from_millis(1500));
    let m = Mount::start(
        &d.path().join("m"),
        &torrent,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{late}")],
    );
    let (stop, sessions) = reconnecting(listen_port(&m), &torrent, "127.0.0.2", Answer::Corrupt);
    reads_whole(&m, &data, 30);
    stop.store(true, Ordering::Relaxed);
    fwd.store(true, Ordering::Relaxed);
    let n = sessions.load(Ordering::Relaxed);
    assert!(n <= 3, "{n} sessions from a banned address\n{}", m.log());
    assert!(banned(&m.log(), "127.0.0.2"), "{}", m.log());
    assert!(!banned(&m.log(), "127.0.0.1"), "{}", m.log());
}

/// Reads f.bin of `torrent` through a mount whose peers are a liar on
/// 127.0.0.2 answering with `lie` (spoiling the first block of each piece
/// it is asked for, or every block) and the good seeder on 127.0.0.1 (and
/// `extra` arguments); the mount's log.
fn read_beside_a_liar(
    d: &std::path::Path,
    torrent: &std::path::Path,
    data: &std::path::Path,
    lie: Answer,
    extra: &[&str],
) -> String {
    let liar = Hostile::start_as(torrent, lie, "127.0.0.2", None);
    let good = free_port();
    let _seed = btt_seed(torrent, data, good, &d.join("seed.log"), &[]);
    let (l, g) = (
        format!("127.0.0.2:{}", liar.port),
        format!("127.0.0.1:{good}"),
    );
    let mut args = vec!["--no-trackers", "--peer", &l, "--peer", &g];
    args.extend(extra);
    let m = Mount::start(&d.join("m"), torrent, &args);
    reads_whole(&m, data, 30);
    m.log()
}

/// A liar spoils the first block of each piece it is asked for and lets
/// the good seeder complete them, so every piece it touches fails with two
/// senders: the pieces are fetched again from one peer alone, the liar is
/// caught (its block differs from the verified piece, or a piece of its own
/// fails) and banned, and the good seeder is never blamed for the pieces
/// they shared (two shared failures got it banned, and the read hung).
#[test]
fn a_liar_sharing_pieces_with_the_good_seeder_is_the_only_one_banned() {
    let (d, data, torrent) = content_in_pieces(4_000_000, 256 * 1024);
    let log = read_beside_a_liar(d.path(), &torrent, &data, Answer::CorruptFirstBlocks, &[]);
    assert!(banned(&log, "127.0.0.2"), "the liar is banned\n{log}");
    assert!(!banned(&log, "127.0.0.1"), "the good seeder is not\n{log}");
}

/// The same liar on a v2 torrent: each 16 KiB block has its own SHA-256
/// in the merkle tree, so at the first shared failure the mount asks a peer
/// for the piece's block hashes (BEP 52 hash request, checked against the
/// piece layer) and names the bad block and its sender. The liar is banned
/// by its block, at once, and the good seeder (which answers the request
/// from its data) is not.
#[test]
fn a_v2_liar_is_banned_by_its_block() {
    v2_liar_is_banned_by_its_block(4_000_000, "256KiB", "2MiB", Answer::CorruptFirstBlocks);
}

/// The same with 16 MiB pieces (1 024 blocks, more than one hash request
/// may carry): the block hashes come in two spans of 512, each with the
/// uncle that proves it against the piece layer. With two pieces only, the
/// liar spoils every block it sends (so that it surely shares a piece with
/// the seeder).
#[test]
fn a_v2_liar_is_banned_by_its_block_in_a_piece_of_1024_blocks() {
    let log = v2_liar_is_banned_by_its_block(20_000_000, "16MiB", "6MiB", Answer::Corrupt);
    // Refetching 16 MiB at 6 MiB/s takes seconds, the seeder's two answers
    // (16 KiB each) milliseconds: they judged it.
    let by_answer = log.lines().any(|l| {
        l.contains("block hashes checked a failed piece")
            && l.contains("a peer's answer")
            && l.contains("liars=1")
    });
    assert!(by_answer, "the seeder's spans named the liar\n{log}");
}

/// The mount's log.
fn v2_liar_is_banned_by_its_block(size: usize, piece: &str, max_down: &str, lie: Answer) -> String {
    let d = tmpdir();
    let data = d.path().join("data");
    make_tree(&data, &[("f.bin", size)]);
    let torrent = d.path().join("f.v2.torrent");
    btt_create(
        &data.join("f.bin"),
        &torrent,
        &["--v2", "--piece-size", piece],
    );
    let log = read_beside_a_liar(d.path(), &torrent, &data, lie, &["--max-down", max_down]);
    // Block hashes named the liar's block: the seeder's answer, checked
    // against the piece layer, or (when the piece's refetch from one peer
    // ended first) the verified piece's own. --max-down makes a refetch
    // take longer than the answer (a few hundred bytes), so the seeder's
    // answer usually comes first.
    let by_block = log
        .lines()
        .any(|l| l.contains("block hashes checked a failed piece") && l.contains("liars=1"));
    assert!(by_block, "a block hash named the liar\n{log}");
    assert!(banned(&log, "127.0.0.2"), "the liar is banned\n{log}");
    assert!(!banned(&log, "127.0.0.1"), "the good seeder is not\n{log}");
    log
}

/// The peer id a BitTorrent peer on 127.0.0.1:`port` presents for `torrent`
/// (anyone learns it by connecting).
fn peer_id_of(port: u16, torrent: &std::path::Path) -> [u8; 20] {
    let meta = meta_of(torrent);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(&Handshake::new(meta.info_hash.0, *b"-XX0001-askingforid0").encode())
        .unwrap();
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    c.read_exact(&mut hs).unwrap();
    Handshake::decode(&hs).unwrap().peer_id
}

/// Forwards 127.0.0.1:`port` to 127.0.0.1:`to`, listening only after
/// `delay` (before that, connections are refused).
fn forward_later(port: u16, to: u16, delay: Duration) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        while !s.load(Ordering::Relaxed) {
            let Ok((a, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Ok(b) = TcpStream::connect(("127.0.0.1", to)) else {
                continue;
            };
            a.set_nonblocking(false).unwrap();
            for (mut r, mut w) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut r, &mut w);
                    let _ = w.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    stop
}

/// A peer on another address presenting the good seeder's peer id, reached
/// first: the real seeder is still accepted and the read completes from it.
#[test]
fn a_stolen_peer_id_does_not_shut_out_the_real_peer() {
    let (d, data, torrent) = content(1_000_000);
    let good = free_port();
    let _seed = btt_seed(&torrent, &data, good, &d.path().join("seed.log"), &[]);
    let id = peer_id_of(good, &torrent);
    let impostor = Hostile::start_as(&torrent, Answer::Silent, "127.0.0.2", Some(id));
    // The real seeder is reached through a port that opens a moment later.
    let late = free_port();
    let fwd = forward_later(late, good, Duration::from_millis(1500));
    let m = Mount::start(
        &d.path().join("m"),
        &torrent,
        &[
            "--no-trackers",
            "--peer",
            &format!("127.0.0.2:{}", impostor.port),
            "--peer",
            &format!("127.0.0.1:{late}"),
        ],
    );
    reads_whole(&m, &data, 20);
    fwd.store(true, Ordering::Relaxed);
}

/// `n` connections to 127.0.0.1:`port` that complete the handshake for
/// `torrent` and then give nothing (kept open until the returned flag is set).
fn idle_crowd(port: u16, torrent: &std::path::Path, n: usize) -> Arc<AtomicBool> {
    crowd(port, torrent, n, true)
}

/// [`idle_crowd`]; without `handshake` the connections send nothing at all.
/// Returns once every connection is made.
fn crowd(port: u16, torrent: &std::path::Path, n: usize, handshake: bool) -> Arc<AtomicBool> {
    let meta = meta_of(torrent);
    let ih = meta.info_hash.0;
    let mut held = Vec::new();
    for i in 0..n {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        if handshake {
            let mut id = *b"-XX0001-idlecrowd000";
            id[17..20].copy_from_slice(format!("{:03}", i % 1000).as_bytes());
            let _ = c.write_all(&Handshake::new(ih, id).encode());
        }
        held.push(c);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(held);
    });
    stop
}

/// The mount's listen port, from its log.
fn listen_port(m: &Mount) -> u16 {
    let log = m.log();
    let at = log
        .find("listen=127.0.0.1:")
        .expect("listen address in the log");
    log[at + 17..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// 70 idle connections fill the mount's peer slots before the only good
/// seeder is reachable: slots kept for our own dials (and idle incoming
/// peers making room) still let the mount reach it and read.
#[test]
fn idle_connections_do_not_shut_out_a_seeder() {
    let (d, data, torrent) = content(1_000_000);
    let good = free_port();
    let _seed = btt_seed(&torrent, &data, good, &d.path().join("seed.log"), &[]);
    let late = free_port();
    let fwd = forward_later(late, good, Duration::from_millis(3000));
    let m = Mount::start(
        &d.path().join("m"),
        &torrent,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{late}")],
    );
    let crowd = idle_crowd(listen_port(&m), &torrent, 70);
    reads_whole(&m, &data, 20);
    crowd.store(true, Ordering::Relaxed);
    fwd.store(true, Ordering::Relaxed);
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A connection to `port` for `torrent` (fast extension on) that sends
/// `msgs` and never reads what comes back; the connection, or `None` if the
/// peer dropped it.
fn flood(
    port: u16,
    torrent: &std::path::Path,
    msgs: impl Iterator<Item = Message>,
) -> Option<TcpStream> {
    let meta = meta_of(torrent);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&Handshake::new(meta.info_hash.0, *b"-XX0001-flooder00000").encode())
        .unwrap();
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = BytesMut::new();
    for m in msgs {
        m.encode(&mut buf);
        if buf.len() > 1 << 16 {
            if c.write_all(&buf).is_err() {
                return None;
            }
            buf.clear();
        }
    }
    c.write_all(&buf).ok().map(|()| c)
}

/// Floods of requests whose replies are never read, and of cancels for
/// blocks never asked: the seller's memory stays bounded (each per-peer
/// queue has a bound; a peer that does not read is dropped).
#[test]
fn request_and_cancel_floods_keep_the_seller_bounded() {
    let (d, data, torrent) = content(4_000_000);
    let port = free_port();
    let seed = btt_seed(&torrent, &data, port, &d.path().join("seed.log"), &[]);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(seed.pid());
    let req = |i: u32| BlockRef {
        index: i % 61,
        begin: (i % 4) * 16384,
        length: 16384,
    };
    // Measured while the connections are open (the seller is still
    // working through what was sent).
    let c1 = flood(
        port,
        &torrent,
        (0..1_000_000u32).map(|i| Message::Request(req(i))),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let after_requests = rss_kib(seed.pid());
    let c2 = flood(
        port,
        &torrent,
        (0..1_000_000u32).map(|i| {
            Message::Cancel(BlockRef {
                index: i % 61,
                begin: (i / 61) * 16384 % 65536,
                length: 1 + i % 16384,
            })
        }),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let after_cancels = rss_kib(seed.pid());
    println!(
        "seller RSS: {before} KiB before, {after_requests} after 1M requests, {after_cancels} after 1M cancels (dropped: {}, {})",
        c1.is_none(),
        c2.is_none()
    );
    drop((c1, c2));
    assert!(
        after_requests < before + 16 * 1024 && after_cancels < before + 16 * 1024,
        "seller RSS {before} → {after_requests} → {after_cancels} KiB"
    );
    // Still serving.
    let m = Mount::start(
        &d.path().join("m"),
        &torrent,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{port}")],
    );
    reads_whole(&m, &data, 20);
}

/// 1 100 connections to a seeder limited to 1 024 open files: it refuses
/// the excess early (no "Too many open files") and an honest download
/// still completes.
#[test]
fn a_connection_flood_stays_below_the_fd_limit() {
    let (d, data, torrent) = content(1_000_000);
    let port = free_port();
    let log = d.path().join("seed.log");
    let _seed = Proc::spawn(
        "btt seed",
        std::process::Command::new("prlimit")
            .args(["--nofile=1024:1024", BTT, "seed"])
            .arg(&torrent)
            .arg("--data")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "btt=debug,info"),
        &log,
    );
    wait_port(port, Duration::from_secs(30));
    // Connections that never send a handshake hold a descriptor each for
    // the handshake's time-out.
    let crowd = crowd(port, &torrent, 1100, false);
    std::thread::sleep(Duration::from_secs(2));
    let m = Mount::start(
        &d.path().join("m"),
        &torrent,
        &["--no-trackers", "--peer", &format!("127.0.0.1:{port}")],
    );
    reads_whole(&m, &data, 30);
    crowd.store(true, Ordering::Relaxed);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("Too many open files"),
        "{}",
        &text[text.len().saturating_sub(2000)..]
    );
    assert!(
        text.contains("too many connections: refused"),
        "{} lines: {}",
        text.lines().count(),
        &text[text.len().saturating_sub(1500)..]
    );
}

/// Blocks are written to disk as they arrive, not held in memory until
/// their piece is complete (a 16 MiB piece in memory per piece in
/// progress is what kept the mount's memory high), and only a verified
/// piece counts: a peer sends the first block of each piece and never the
/// rest; that block reaches the mount's file while the read still waits.
/// The mount is then killed (-9) with those pieces half there: a remount
/// with a good seeder does not take them as had, and reads byte-exact.
#[test]
fn blocks_reach_the_disk_on_arrival_and_a_kill_mid_piece_costs_only_that_piece() {
    let piece = 1 << 20;
    let (d, data, torrent) = content_in_pieces(4 << 20, piece as u64);
    let bytes = Arc::new(std::fs::read(data.join("f.bin")).unwrap());
    let half = Answer::GoodFirstBlocks {
        data: bytes.clone(),
        piece,
    };
    let partial = Hostile::start_as(&torrent, half, "127.0.0.2", None);
    let p = format!("127.0.0.2:{}", partial.port);
    let args = ["--no-trackers", "--peer", p.as_str()];
    let m = Mount::start(&d.path().join("m"), &torrent, &args);
    let file = m.mnt.join("f.bin");
    let reader = std::thread::spawn(move || read_file_timeout(&file, Duration::from_secs(8)));
    let stored = || {
        walkdir(&d.path().join("m/data"))
            .into_iter()
            .find(|p| p.ends_with("f.bin"))
    };
    let first = &bytes[..wire::BLOCK_SIZE as usize];
    let on_disk = wait_until(Duration::from_secs(8), || {
        stored().is_some_and(|f| {
            std::fs::read(f)
                .is_ok_and(|got| got.len() >= first.len() && &got[..first.len()] == first)
        })
    });
    assert!(
        on_disk,
        "the first block is on disk before its piece is complete\n{}",
        m.log()
    );
    assert!(
        !reader.is_finished(),
        "the read still waits for the rest of the piece"
    );
    let m = {
        m.proc.signal(libc::SIGKILL);
        let dir = m.mnt.parent().unwrap().to_path_buf();
        drop(m);
        let good = free_port();
        let _seed = btt_seed(&torrent, &data, good, &d.path().join("seed.log"), &[]);
        let g = format!("127.0.0.1:{good}");
        let m = Mount::start(
            &dir,
            &torrent,
            &["--no-trackers", "--peer", &p, "--peer", &g],
        );
        reads_whole(&m, &data, 30);
        m
    };
    assert!(
        m.log()
            .lines()
            .any(|l| l.contains("engine started") && l.contains("have=0")),
        "the half-written pieces were not taken as had\n{}",
        m.log()
    );
    let _ = reader.join();
}

/// Every file under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}
