//! A peer connection: dial or accept, handshakes, the writer task, flow
//! control. What the messages mean is [`super::peer`]'s job, what the
//! BEP 10 extensions say is [`super::ext`]'s.
//!
//! Writes go through a separate writer task fed by a channel, so a peer that
//! reads slowly never stalls our reading from it, and uploads read pieces
//! from the store off the runtime. Every queue toward a peer is counted
//! ([`UploadQueue`]) and bounded.

use super::ext;
use super::peer::{Remote, Session, MAX_UPLOAD_QUEUE};
use super::{PeerCmd, Torrent};
use crate::wire::{self, BlockRef, Handshake, HashReq, Message};
use bytes::{Bytes, BytesMut};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("peer is for another torrent (info-hash {0})")]
    WrongInfoHash(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("{0}")]
    Refused(String),
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections of this process (all torrents), and the most it keeps:
/// below the file-descriptor limit, so a crowd is refused early instead of
/// the process hitting "Too many open files" (which also fails its own disk
/// and chain work).
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static MAX_CONNECTIONS: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Raises the soft open-files limit to the hard one and keeps connections
/// 128 below it. Call once at start.
pub fn limit_connections_to_fds() {
    // SAFETY: plain getrlimit/setrlimit on our own process.
    let soft = unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
        r.rlim_cur
    };
    let cap = (soft as usize).saturating_sub(128).max(16);
    MAX_CONNECTIONS.store(cap, Ordering::Relaxed);
}

/// One connection counted against [`MAX_CONNECTIONS`] while it lives.
struct ConnSlot;

impl ConnSlot {
    fn take() -> Option<ConnSlot> {
        let max = MAX_CONNECTIONS.load(Ordering::Relaxed);
        CONNECTIONS
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnSlot)
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts peers for one or several torrents (`btt seed T1 T2` shares a
/// port): each incoming peer is handed to the torrent its handshake asks for.
pub(crate) async fn accept_loop(
    torrents: Arc<super::Torrents>,
    listener: TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok((mut stream, addr)) => {
                    let Some(slot) = ConnSlot::take() else {
                        debug!(%addr, "too many connections: refused");
                        continue;
                    };
                    let torrents = torrents.clone();
                    tokio::spawn(async move {
                        let _slot = slot;
                        let theirs = match read_handshake(&mut stream).await {
                            Ok(h) => h,
                            Err(e) => return debug!(%addr, error = %e, "incoming peer closed"),
                        };
                        let Some(t) = torrents.find(&theirs.info_hash) else {
                            let ih = theirs.info_hash;
                            let peer = crate::magnet::IncomingPeer { stream, addr, handshake: Some(theirs) };
                            if torrents.to_fetch(&ih, peer) {
                                return debug!(%addr, "incoming peer asked for a magnet's metadata");
                            }
                            let ih = data_encoding::HEXLOWER.encode(&ih);
                            return info!(%addr, error = %PeerError::WrongInfoHash(ih), "incoming peer refused");
                        };
                        let span = tracing::info_span!(parent: &t.span, "peer", %addr, dir = "in");
                        if let Err(e) = incoming(t.clone(), stream, addr, theirs).instrument(span.clone()).await {
                            debug!(parent: &span, error = %e, "incoming peer closed");
                        }
                    });
                }
                Err(e) => {
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// An accepted connection whose handshake `theirs` named this torrent.
async fn incoming(
    t: Arc<Torrent>,
    mut stream: TcpStream,
    addr: SocketAddr,
    theirs: Handshake,
) -> Result<(), PeerError> {
    if t.is_banned(&addr) {
        return Err(PeerError::Refused("banned".into()));
    }
    // A hybrid answers on the info-hash it was asked for.
    stream
        .write_all(
            &Handshake::new(theirs.info_hash, t.peer_id)
                .with_v2(t.meta.v2.is_some())
                .encode(),
        )
        .await?;
    run(t, stream, addr, theirs, true).await
}

/// Dials `addr`, naming the torrent by `hash` (a hybrid's v1 hash, or its
/// v2 one for a peer found only in the v2 swarm), runs the session, and
/// reports a failed dial for back-off.
pub(crate) async fn dial(t: Arc<Torrent>, addr: SocketAddr, hash: [u8; 20]) {
    let span = tracing::info_span!(parent: &t.span, "peer", %addr, dir = "out");
    async move {
        let Some(_slot) = ConnSlot::take() else {
            debug!("too many connections: not dialling");
            t.note_dial_failure(addr);
            return;
        };
        let res = async {
            let mut stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| PeerError::HandshakeTimeout)??;
            stream
                .write_all(
                    &Handshake::new(hash, t.peer_id)
                        .with_v2(t.meta.v2.is_some())
                        .encode(),
                )
                .await?;
            let theirs = their_handshake(&t, &mut stream).await?;
            run(t.clone(), stream, addr, theirs, false).await
        }
        .await;
        match res {
            Ok(()) => {}
            Err(e) => {
                debug!(error = %e, "peer session ended");
                t.note_dial_error(&e);
                if matches!(e, PeerError::WrongInfoHash(_)) {
                    tracing::warn!(error = %e, "peer refused");
                }
            }
        }
        t.note_dial_failure(addr);
    }
    .instrument(span)
    .await
}

/// Reads a peer's handshake, bounded in time.
async fn read_handshake(stream: &mut TcpStream) -> Result<Handshake, PeerError> {
    let mut buf = [0u8; wire::HANDSHAKE_LEN];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut buf))
        .await
        .map_err(|_| PeerError::HandshakeTimeout)??;
    Ok(Handshake::decode(&buf)?)
}

/// Reads the peer's handshake (bounded in time) and checks it is for our
/// torrent. A hybrid's either hash will do: asked by its v1 hash with
/// BEP 52's bit set, libtorrent answers with the v2 one (an upgrade).
async fn their_handshake(t: &Torrent, stream: &mut TcpStream) -> Result<Handshake, PeerError> {
    let theirs = read_handshake(stream).await?;
    if !t.meta.answers_to(&theirs.info_hash) {
        return Err(PeerError::WrongInfoHash(
            data_encoding::HEXLOWER.encode(&theirs.info_hash),
        ));
    }
    Ok(theirs)
}

/// What the writer sends: a message, or a block it reads from the store.
pub(super) enum Out {
    Msg(Message),
    Upload(BlockRef),
    /// A block-layer hash request to answer from these pieces' data.
    BlockHashes(HashReq, std::ops::Range<usize>),
}

/// Uploads accepted and not yet written: bounds the queue, and tells a
/// paid seller what it counted but never sent when the connection ends.
#[derive(Default)]
pub(super) struct UploadQueue {
    pub(super) blocks: AtomicUsize,
    pub(super) bytes: std::sync::atomic::AtomicU64,
    /// Other messages queued for the writer.
    pub(super) msgs: AtomicUsize,
    /// `btt_pay` messages waiting for the seller hook.
    pub(super) pay: AtomicUsize,
    /// Block-layer hash requests waiting for the writer.
    pub(super) hashing: AtomicUsize,
}

/// Messages we may have queued for a peer that does not read them (BEP 6
/// rejects of a request flood, say) before it is dropped: every per-peer
/// queue has a bound.
pub(super) const MAX_OUT_MSGS: usize = 16384;

pub(super) fn dec(a: &AtomicUsize) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

impl UploadQueue {
    pub(super) fn push(&self, len: u32) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    pub(super) fn pop(&self, len: u32) {
        self.blocks.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }
}

/// The sending side of a connection, as the session and its helper tasks
/// hold it: every message is counted until the writer takes it.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) out: mpsc::UnboundedSender<Out>,
    /// Uploads the peer cancelled before the writer reached them.
    pub(super) cancelled: Arc<Mutex<HashSet<BlockRef>>>,
    pub(super) queued: Arc<UploadQueue>,
}

impl Link {
    pub(super) fn send(&self, m: Message) {
        self.queued.msgs.fetch_add(1, Ordering::Relaxed);
        let _ = self.out.send(Out::Msg(m));
    }
}

/// Block-layer hash requests answered at once by the whole process (each
/// reads and hashes up to 8 MiB).
static BLOCK_HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Upload bytes the writer gathers into one write.
const WRITE_BATCH: usize = 256 * 1024;
/// A writer idle this long gives its buffer back.
const WRITER_IDLE: Duration = Duration::from_secs(1);
/// A connection's socket buffer: received blocks are slices of it until
/// they are written. Below the allocator's mmap threshold (128 KiB, see
/// `memory.rs`), so a new one reuses freed heap instead of mapping fresh
/// pages, each faulted in and zeroed (a tenth of a mount's CPU at 256 KiB).
const READ_BUF: usize = 120 * 1024;
/// Room left below which a new socket buffer is taken (two blocks' frames).
const READ_ROOM: usize = 33 * 1024;
/// Messages it takes at once.
const MAX_BATCH: usize = 1024;

/// The bytes of these torrent ranges: from memory if all are there, else
/// read off the runtime (only those ranges; the page cache keeps them).
async fn read_runs(t: &Arc<Torrent>, runs: &[(u64, u64)]) -> Result<Vec<Bytes>, PeerError> {
    if runs.is_empty() {
        return Ok(vec![]);
    }
    let held: Option<Vec<Bytes>> = runs
        .iter()
        .map(|&(o, l)| t.store.read_range_memory(o, l))
        .collect();
    if let Some(d) = held {
        return Ok(d);
    }
    let (store, runs) = (t.store.clone(), runs.to_vec());
    tokio::task::spawn_blocking(move || {
        runs.iter()
            .map(|&(o, l)| store.read_range(o, l))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| PeerError::Protocol(e.to_string()))?
    .map_err(|e| PeerError::Protocol(e.to_string()))
}

/// Sends queued messages, batching whatever is ready into one write.
async fn writer(
    t: Arc<Torrent>,
    addr: SocketAddr,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    cancelled: Arc<Mutex<HashSet<BlockRef>>>,
    queued: Arc<UploadQueue>,
) -> Result<(), PeerError> {
    // Grown to what the batches need, given back after a second idle.
    let mut buf = BytesMut::new();
    loop {
        let first = match tokio::time::timeout(WRITER_IDLE, rx.recv()).await {
            Ok(first) => first,
            Err(_) => {
                buf = BytesMut::new();
                rx.recv().await
            }
        };
        let Some(first) = first else { break };
        // What is ready, up to a batch of uploads.
        let mut batch = vec![first];
        let mut up = 0usize;
        while up < WRITE_BATCH && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(o) => {
                    if let Out::Upload(r) = &o {
                        up += r.length as usize;
                    }
                    batch.push(o);
                }
                Err(_) => break,
            }
        }
        // The uploads the peer did not cancel, taken off the queue here;
        // their bytes read at once.
        let mut blocks = Vec::new();
        batch.retain(|o| {
            let Out::Upload(r) = o else { return true };
            queued.pop(r.length);
            let gone = cancelled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(r);
            if gone {
                if let Some(pay) = &t.cfg.pay {
                    pay.0.unserved(addr, t.meta.info_hash.0, r.length as u64);
                }
            } else {
                let off = t.meta.piece_offset(r.index as usize) + r.begin as u64;
                blocks.push((off, r.length));
            }
            !gone
        });
        // Room for the batch at once: growing step by step past the mmap
        // threshold would map, copy and fault a buffer per step.
        let need = blocks.iter().map(|b| b.1 as usize + 13).sum::<usize>() + 32 * batch.len();
        buf.reserve(need);
        let plan = super::upload::ReadPlan::new(&blocks);
        let data = read_runs(&t, &plan.runs).await?;
        let mut placed = plan.at.into_iter();
        for out in batch {
            match out {
                Out::Msg(m) => {
                    dec(&queued.msgs);
                    m.encode(&mut buf)
                }
                Out::Upload(r) => {
                    let (run, at) = placed.next().expect("one place per upload");
                    let len = r.length as usize;
                    buf.extend_from_slice(&Message::piece_header(r.index, r.begin, len));
                    buf.extend_from_slice(&data[run][at..at + len]);
                    t.stats
                        .uploaded
                        .fetch_add(r.length as u64, Ordering::Relaxed);
                }
                Out::BlockHashes(r, pieces) => {
                    dec(&queued.hashing);
                    // Reading and hashing up to 8 MiB: a few at a time for
                    // the whole process, one piece held at a time, the bytes
                    // read counted against --max-up.
                    let _permit = BLOCK_HASHING.acquire().await;
                    let (store, meta) = (t.store.clone(), t.meta.clone());
                    let read = pieces.len() as u64 * t.meta.piece_length;
                    let got = tokio::task::spawn_blocking(move || {
                        let v2 = meta.v2.as_ref()?;
                        let digests = pieces
                            .map(|p| store.read_piece(p).map(|d| v2.block_digests(p, &d)))
                            .collect::<Result<Vec<_>, _>>()
                            .ok()?;
                        v2.block_answer(&r.root, r.index, r.count, r.proof_layers, &digests)
                    })
                    .await
                    .map_err(|e| PeerError::Protocol(e.to_string()))?;
                    super::rate::throttle(&t.cfg.max_up, read as usize).await;
                    match got {
                        Some(h) => {
                            debug!(index = r.index, count = r.count, "block hashes answered");
                            Message::Hashes {
                                req: r,
                                hashes: Bytes::from(h.concat()),
                            }
                            .encode(&mut buf)
                        }
                        None => Message::HashReject(r).encode(&mut buf),
                    }
                }
            }
        }
        if !buf.is_empty() {
            super::rate::throttle(&t.cfg.max_up, buf.len()).await;
            wr.write_all(&buf).await?;
            buf.clear();
        }
    }
    Ok(())
}

/// Runs a connection whose handshakes are done: its writer task, the
/// session reading and answering messages, and what it leaves behind.
async fn run(
    t: Arc<Torrent>,
    stream: TcpStream,
    addr: SocketAddr,
    theirs: Handshake,
    incoming: bool,
) -> Result<(), PeerError> {
    let _ = stream.set_nodelay(true);
    let wake = Arc::new(Notify::new());
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    // The seller hook's task may close the connection (a peer that breaks
    // the extension's rules).
    let pay_close = t.cfg.pay.as_ref().map(|_| cmd_tx.clone());
    let key = t
        .register_peer(addr, theirs.peer_id, wake.clone(), cmd_tx, incoming)
        .map_err(PeerError::Refused)?;
    let client = String::from_utf8_lossy(&theirs.peer_id[..8]).into_owned();
    info!(%client, "peer connected");
    let (mut rd, wr) = stream.into_split();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let cancelled = Arc::new(Mutex::new(HashSet::new()));
    let queued = Arc::new(UploadQueue::default());
    let writer_task = tokio::spawn(
        writer(
            t.clone(),
            addr,
            wr,
            out_rx,
            cancelled.clone(),
            queued.clone(),
        )
        .in_current_span(),
    );
    let link = Link {
        out: out_tx,
        cancelled,
        queued,
    };
    let pay = ext::pay::PayState::start(&t, addr, &link, pay_close);
    let remote = Remote {
        key,
        addr,
        incoming,
    };
    let mut s = Session::new(t.clone(), remote, link, pay, wake.clone(), &theirs);
    let result = session_loop(&mut s, &mut rd, &wake, &mut cmd_rx).await;
    writer_task.abort();
    s.close();
    match &result {
        Ok(()) => info!("peer closed"),
        Err(e) => info!(error = %e, "peer dropped"),
    }
    result
}

/// Reads and answers the peer, follows the torrent's commands, and keeps
/// requests flowing and the connection alive on a timer.
async fn session_loop(
    s: &mut Session,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    wake: &Notify,
    cmd_rx: &mut mpsc::UnboundedReceiver<PeerCmd>,
) -> Result<(), PeerError> {
    let n = s.t.meta.num_pieces();
    let max = wire::max_frame_for(n);
    let have = s.t.have();
    if s.fast && have.is_complete() {
        s.send(Message::HaveAll);
    } else if s.fast && have.count() == 0 {
        s.send(Message::HaveNone);
    } else if have.count() > 0 {
        s.send(Message::Bitfield(Bytes::copy_from_slice(have.as_bytes())));
    }
    if s.extended {
        s.send(Message::Extended {
            id: 0,
            payload: Bytes::from(ext::our_handshake(&s.t, MAX_UPLOAD_QUEUE).encode()),
        });
    }
    let mut stop = s.t.shutdown_signal();
    let mut buf = BytesMut::with_capacity(READ_BUF);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_tick = Instant::now();
    let mut last_heard = Instant::now();
    let mut read_since_tick = false;
    let mut paused: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut stalled: Option<Instant> = None;
    loop {
        // Blocks wait to be written: read nothing more until they are, and
        // time out no request meanwhile.
        let disk_full = s.t.disk.full();
        match (disk_full, stalled) {
            (true, None) => stalled = Some(Instant::now()),
            (false, Some(since)) => {
                s.postpone(since.elapsed());
                stalled = None;
            }
            _ => {}
        }
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            () = s.t.disk.room(), if disk_full => {}
            () = async { paused.as_mut().expect("paused").await }, if paused.is_some() => {
                // Waits are sliced: what is still owed (none, if the
                // limit was lifted meanwhile) is waited for next.
                let more = super::rate::owed(&s.t.cfg.max_down);
                paused = (!more.is_zero())
                    .then(|| Box::pin(tokio::time::sleep(more.min(super::rate::SLICE))));
            }
            r = rd.read_buf(&mut buf), if paused.is_none() && !disk_full => {
                let n = r?;
                if n == 0 {
                    return Err(PeerError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                // ACK at once (Linux leaves quick-ACK mode on its own, so
                // again after each read): a sender that holds back the
                // tail of a reply until it is ACKed (Nagle, as aria2c's
                // sockets do) otherwise waits out our delayed ACK, 40 ms,
                // whenever only a piece or two are asked for.
                let _ = socket2::SockRef::from(rd.as_ref()).set_tcp_quickack(true);
                // Over --max-down: the next read waits (TCP slows the peer);
                // commands and timers do not.
                let wait = super::rate::cost(&s.t.cfg.max_down, n);
                if !wait.is_zero() {
                    paused = Some(Box::pin(tokio::time::sleep(wait.min(super::rate::SLICE))));
                }
                last_heard = Instant::now();
                read_since_tick = true;
                while let Some(m) = wire::decode(&mut buf, max)? {
                    s.handle(m)?;
                    if let Some(e) = s.overflowing() {
                        return Err(e);
                    }
                }
                if buf.capacity() - buf.len() < READ_ROOM {
                    // A new buffer of READ_BUF in all (blocks still waiting
                    // to be written hold the old one).
                    buf.reserve(READ_BUF.saturating_sub(buf.len()).max(READ_ROOM));
                }
            }
            cmd = cmd_rx.recv() => match cmd {
                Some(PeerCmd::Have(p)) => {
                    if !s.has.get(p as usize) {
                        s.send(Message::Have(p));
                    }
                    s.update_interest();
                }
                Some(PeerCmd::Choke) => s.send(Message::Choke),
                Some(PeerCmd::Unchoke) => s.send(Message::Unchoke),
                Some(PeerCmd::Close(why)) => return Err(PeerError::Refused(why)),
                Some(PeerCmd::AskBlockHashes(p)) => s.ask_block_hashes(p),
                None => return Ok(()),
            },
            _ = wake.notified() => {
                s.update_interest();
                s.request_more();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                // Idle since the last tick with nothing half-read, and not
                // held back by --max-down or a full disk: the buffer goes
                // back (a library holds a connection per torrent, mostly
                // idle). The next read takes a small one, then a full one
                // as above.
                let waiting = paused.is_some() || stalled.is_some();
                if !read_since_tick && !waiting && buf.is_empty() && buf.capacity() > 0 {
                    buf = BytesMut::new();
                }
                read_since_tick = false;
                s.tick(now.duration_since(last_tick));
                last_tick = now;
                s.pex_tick(now);
                if stalled.is_none() {
                    s.tidy_requests();
                    s.update_interest();
                    s.request_more();
                }
                if now.duration_since(s.last_sent) > Duration::from_secs(90) {
                    s.send(Message::KeepAlive);
                }
                if now.duration_since(last_heard) > Duration::from_secs(180) {
                    return Err(PeerError::Protocol("silent for 3 minutes".into()));
                }
            }
        }
    }
}
