//! One peer connection: handshake, then a loop that reads messages, asks the picker
//! for blocks, answers requests and follows the torrent's commands (have, choke).
//!
//! Writes go through a separate writer task fed by a channel, so a peer that reads
//! slowly never stalls our reading from it, and uploads read pieces from the store
//! off the runtime.

use super::picker::{BlockOutcome, PeerKey, PeerView};
use super::{PeerCmd, Torrent};
use crate::bitfield::Bitfield;
use crate::wire::{self, BlockRef, ExtHandshake, Handshake, Message};
use bytes::{Bytes, BytesMut};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn, Instrument};

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
/// Requests a peer may queue with us before we reject more.
const MAX_UPLOAD_QUEUE: usize = 512;
/// Largest block we serve (most clients ask for 16 KiB; some up to 128 KiB).
const MAX_SERVE_BLOCK: u32 = 128 * 1024;

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
pub(crate) async fn accept_loop(torrents: Vec<Arc<Torrent>>, listener: TcpListener) {
    let Some(first) = torrents.first() else {
        return;
    };
    // They are stopped together; the first one's signal ends the loop.
    let mut stop = first.shutdown_signal();
    let torrents = Arc::new(torrents);
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
                        let Some(t) = torrents.iter().find(|t| t.meta.info_hash.0 == theirs.info_hash) else {
                            let ih = data_encoding::HEXLOWER.encode(&theirs.info_hash);
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
    stream
        .write_all(&Handshake::new(t.meta.info_hash.0, t.peer_id).encode())
        .await?;
    run(t, stream, addr, theirs, true).await
}

/// Dials `addr`, runs the session, and reports a failed dial for back-off.
pub(crate) async fn dial(t: Arc<Torrent>, addr: SocketAddr) {
    let span = tracing::info_span!("peer", %addr, dir = "out");
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
                .write_all(&Handshake::new(t.meta.info_hash.0, t.peer_id).encode())
                .await?;
            let theirs = their_handshake(&t, &mut stream).await?;
            run(t.clone(), stream, addr, theirs, false).await
        }
        .await;
        match res {
            Ok(()) => {}
            Err(e) => {
                debug!(error = %e, "peer session ended");
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

/// Reads the peer's handshake (bounded in time) and checks it is for our torrent.
async fn their_handshake(t: &Torrent, stream: &mut TcpStream) -> Result<Handshake, PeerError> {
    let theirs = read_handshake(stream).await?;
    if theirs.info_hash != t.meta.info_hash.0 {
        return Err(PeerError::WrongInfoHash(
            data_encoding::HEXLOWER.encode(&theirs.info_hash),
        ));
    }
    Ok(theirs)
}

enum Out {
    Msg(Message),
    Upload(BlockRef),
}

/// Uploads accepted and not yet written: bounds the queue, and tells a
/// paid seller what it counted but never sent when the connection ends.
#[derive(Default)]
struct UploadQueue {
    blocks: AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
    /// Other messages queued for the writer.
    msgs: AtomicUsize,
    /// `btt_pay` messages waiting for the seller hook.
    pay: AtomicUsize,
}

/// Messages we may have queued for a peer that does not read them (BEP 6
/// rejects of a request flood, say) before it is dropped: every per-peer
/// queue has a bound.
const MAX_OUT_MSGS: usize = 16384;
/// Messages waiting for a peer beyond which its metadata requests are
/// refused (each reply holds a 16 KiB piece).
const MAX_METADATA_QUEUED: usize = 64;
/// `btt_pay` messages a peer may have waiting for an answer.
const MAX_PAY_QUEUE: usize = 1024;

fn dec(a: &AtomicUsize) {
    let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

impl UploadQueue {
    fn push(&self, len: u32) {
        self.blocks.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
    fn pop(&self, len: u32) {
        self.blocks.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(len as u64, Ordering::Relaxed);
    }
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
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut cached: Option<(usize, Bytes)> = None;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Msg(m) => {
                    dec(&queued.msgs);
                    m.encode(&mut buf)
                }
                Out::Upload(r) => {
                    queued.pop(r.length);
                    if cancelled
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&r)
                    {
                        if let Some(pay) = &t.cfg.pay {
                            pay.0.unserved(addr, t.meta.info_hash.0, r.length as u64);
                        }
                        continue;
                    }
                    let p = r.index as usize;
                    let data = match &cached {
                        Some((cp, d)) if *cp == p => d.clone(),
                        _ => {
                            let store = t.store.clone();
                            let d = tokio::task::spawn_blocking(move || store.read_piece(p))
                                .await
                                .map_err(|e| PeerError::Protocol(e.to_string()))?
                                .map_err(|e| PeerError::Protocol(e.to_string()))?;
                            cached = Some((p, d.clone()));
                            d
                        }
                    };
                    let (b, e) = (r.begin as usize, (r.begin + r.length) as usize);
                    buf.extend_from_slice(&Message::piece_header(r.index, r.begin, e - b));
                    buf.extend_from_slice(&data[b..e]);
                    t.stats
                        .uploaded
                        .fetch_add(r.length as u64, Ordering::Relaxed);
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            wr.write_all(&buf).await?;
            buf.clear();
        }
    }
    Ok(())
}

/// What a peer is to the buyer (`Session::buy_state`).
mod seller {
    /// A free peer.
    pub const NO: u8 = 0;
    /// A seller we are getting a channel with.
    pub const BINDING: u8 = 1;
    /// A seller bound to a channel: paid requests allowed.
    pub const BOUND: u8 = 2;
    /// A seller we cannot use (no channel, or it refused).
    pub const UNUSABLE: u8 = 3;
    /// A seller we may use but do not need yet (no channel until we do).
    pub const IDLE: u8 = 4;
}

struct Session {
    t: Arc<Torrent>,
    key: PeerKey,
    out: mpsc::UnboundedSender<Out>,
    cancelled: Arc<Mutex<HashSet<BlockRef>>>,
    queued: Arc<UploadQueue>,
    fast: bool,
    extended: bool,
    has: Bitfield,
    they_choke: bool,
    am_interested: bool,
    allowed_fast: Vec<u32>,
    /// Our requests in flight, oldest first, with when they were sent.
    outstanding: VecDeque<(BlockRef, Instant)>,
    reqq: usize,
    snubbed: bool,
    bytes_this_tick: u64,
    up_last: u64,
    rate: f64,
    /// Smoothed time from request to block.
    rtt: Duration,
    last_sent: Instant,
    addr: SocketAddr,
    /// Buyer side: one of [`seller`]'s states (shared with the task that
    /// binds a channel).
    buy_state: Arc<std::sync::atomic::AtomicU8>,
    /// `btt_pay` messages go to a per-peer worker that answers them in order
    /// off the runtime (they block on fsync and chain calls).
    pay: Option<mpsc::UnboundedSender<Bytes>>,
    /// The id the peer wants `btt_pay` replies on (0: not announced).
    their_pay_id: Arc<std::sync::atomic::AtomicU8>,
    /// Wakes this session (new pieces wanted, credit freed by a payment).
    wake: Arc<Notify>,
    /// The id the peer wants `ut_metadata` messages on (0: it does not).
    their_metadata_id: u8,
}

impl Session {
    fn send(&mut self, m: Message) {
        self.last_sent = Instant::now();
        self.queued.msgs.fetch_add(1, Ordering::Relaxed);
        let _ = self.out.send(Out::Msg(m));
    }

    /// A queue for this peer passed its bound: it sends faster than it
    /// reads, or floods us with what needs an answer.
    fn overflowing(&self) -> Option<PeerError> {
        if self.queued.msgs.load(Ordering::Relaxed) > MAX_OUT_MSGS {
            return Some(PeerError::Protocol("does not read what we send".into()));
        }
        if self.queued.pay.load(Ordering::Relaxed) > MAX_PAY_QUEUE {
            return Some(PeerError::Protocol(
                "too many btt_pay messages waiting".into(),
            ));
        }
        None
    }

    fn depth(&self) -> usize {
        if self.snubbed {
            return 1;
        }
        // Keep about one second of data in flight, within the peer's queue limit.
        let by_rate = (self.rate / wire::BLOCK_SIZE as f64) as usize;
        by_rate.clamp(32, 1024).min(self.reqq)
    }

    fn update_interest(&mut self) {
        let want = {
            let st = self.t.lock();
            let have = st.picker.have();
            // Interested in anyone with a piece we lack: being unchoked before the
            // first read arrives saves a choke round on the first byte.
            self.has.ones().any(|p| !have.get(p))
        };
        if want != self.am_interested {
            self.am_interested = want;
            self.send(if want {
                Message::Interested
            } else {
                Message::NotInterested
            });
        }
    }

    fn is_seller(&self) -> bool {
        self.buy_state.load(Ordering::Relaxed) != seller::NO
    }

    /// Gives a paid request's budget back.
    fn release_paid(&self, bytes: u64) {
        if let (Some(buy), true) = (&self.t.cfg.buy, self.is_seller()) {
            buy.0.release(self.key, bytes);
        }
    }

    /// A paid block arrived that will not be paid for: it still takes room
    /// under the seller's credit.
    fn waste_paid(&self, bytes: u64) {
        if let (Some(buy), true) = (&self.t.cfg.buy, self.is_seller()) {
            buy.0.wasted(self.key, bytes);
        }
    }

    fn request_more(&mut self) {
        if self.they_choke && self.allowed_fast.is_empty() {
            return;
        }
        let paid = match self.buy_state.load(Ordering::Relaxed) {
            seller::NO => false,
            seller::BOUND => true,
            seller::IDLE => {
                let needed = {
                    let mut st = self.t.lock();
                    let view = PeerView {
                        key: self.key,
                        has: &self.has,
                        choked: self.they_choke,
                        allowed_fast: &self.allowed_fast,
                        slow: false,
                        paid: true,
                        may_start: true,
                    };
                    st.picker.would_buy(&view, Instant::now())
                };
                if needed {
                    self.bind_channel();
                }
                return;
            }
            _ => return, // binding, or unusable
        };
        let mut want = self.depth().saturating_sub(self.outstanding.len());
        if let (true, Some(buy)) = (paid, &self.t.cfg.buy) {
            // A seller serves `credit` bytes beyond what is paid: asking for
            // more only earns rejects. Payments free room and wake us.
            match buy.0.room(self.key) {
                Some(room) => want = want.min((room / wire::BLOCK_SIZE as u64) as usize),
                None => {
                    // The channel closed under us: bind again when needed.
                    info!("the paid channel can no longer be used; binding again when needed");
                    self.buy_state.store(seller::IDLE, Ordering::Relaxed);
                    return;
                }
            }
        }
        if want == 0 {
            return;
        }
        let now = Instant::now();
        let picked = {
            let mut st = self.t.lock();
            let best = st.peers.values().map(|p| p.rate_down).fold(0.0, f64::max);
            let slow = best > 1e6 && self.rate < best / 8.0;
            // One address may hold only so much data no hash has checked
            // yet (however many connections it makes).
            // (The scan is needed only when pieces in progress could hold
            // that much.)
            let cap = self.t.unverified_cap();
            let may_start = st.picker.unverified_bound() < cap
                || st.picker.unverified_from(&st.keys_of(self.addr.ip())) < cap;
            let view = PeerView {
                key: self.key,
                has: &self.has,
                choked: self.they_choke,
                allowed_fast: &self.allowed_fast,
                slow,
                paid,
                may_start,
            };
            let mut picked = st.picker.pick(&view, want, now);
            if let (true, Some(buy)) = (paid, &self.t.cfg.buy) {
                // Budget first: what cannot be reserved is not asked for.
                if let Some(cut) = picked
                    .iter()
                    .position(|r| !buy.0.reserve(self.key, r.length as u64))
                {
                    for r in picked.drain(cut..) {
                        st.picker.release(self.key, &r);
                    }
                }
            }
            picked
        };
        for r in picked {
            self.outstanding.push_back((r, now));
            self.send(Message::Request(r));
        }
    }

    /// Drops requests that timed out or are no longer needed (another peer won).
    fn tidy_requests(&mut self) {
        let now = Instant::now();
        let timeout = (self.rtt * 8).clamp(Duration::from_secs(3), Duration::from_secs(20));
        let mut st = self.t.lock();
        let mut cancel = Vec::new();
        let mut timed_out = 0;
        self.outstanding.retain(|(r, at)| {
            if !st.picker.still_wanted(r) {
                cancel.push(*r);
                return false;
            }
            if now.duration_since(*at) > timeout {
                timed_out += 1;
                st.picker.release(self.key, r);
                cancel.push(*r);
                return false;
            }
            true
        });
        drop(st);
        if timed_out > 0 {
            debug!(timed_out, ?timeout, "requests timed out; peer snubbed");
            self.snubbed = true;
        }
        for r in cancel {
            self.release_paid(r.length as u64);
            self.send(Message::Cancel(r));
        }
    }

    fn tick(&mut self, dt: Duration) {
        let inst = self.bytes_this_tick as f64 / dt.as_secs_f64().max(1e-3);
        self.rate = if self.rate == 0.0 {
            inst
        } else {
            0.6 * self.rate + 0.4 * inst
        };
        self.bytes_this_tick = 0;
        let up = self.t.stats.uploaded.load(Ordering::Relaxed);
        let mut st = self.t.lock();
        if let Some(p) = st.peers.get_mut(&self.key) {
            p.rate_down = self.rate;
            p.rate_up = (up - self.up_last) as f64 / dt.as_secs_f64().max(1e-3);
        }
        self.up_last = up;
    }

    /// A peer announced `btt_pay`: if the buyer wants it, treat it as a paid
    /// seller and bind a channel to this connection off the runtime.
    fn seller_announced(&mut self, their_id: u8, info: &bendy::value::Value<'static>) {
        let Some(buy) = self.t.cfg.buy.clone() else {
            return;
        };
        if self.is_seller() || !buy.0.consider(self.key, self.addr, info, self.wake.clone()) {
            return;
        }
        self.buy_state.store(seller::IDLE, Ordering::Relaxed);
        self.their_pay_id.store(their_id, Ordering::Relaxed);
        self.t.lock().picker.add_paid_pieces(&self.has);
        self.request_more();
    }

    /// Gets a channel for this seller off the runtime, then binds this
    /// connection to it with `resume`.
    fn bind_channel(&mut self) {
        let Some(buy) = self.t.cfg.buy.clone() else {
            return;
        };
        self.buy_state.store(seller::BINDING, Ordering::Relaxed);
        info!("free peers cannot deliver: getting a channel with this seller");
        let their_id = self.their_pay_id.load(Ordering::Relaxed);
        let (conn, ih, out, state, queued) = (
            self.key,
            self.t.meta.info_hash.0,
            self.out.clone(),
            self.buy_state.clone(),
            self.queued.clone(),
        );
        tokio::spawn(
            async move {
                let r = tokio::task::spawn_blocking(move || buy.0.bind(conn, ih)).await;
                match r {
                    Ok(Ok(payload)) => {
                        queued.msgs.fetch_add(1, Ordering::Relaxed);
                        let _ = out.send(Out::Msg(Message::Extended {
                            id: their_id,
                            payload: Bytes::from(payload),
                        }));
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "no channel with this seller; not buying from it");
                        state.store(seller::UNUSABLE, Ordering::Relaxed);
                    }
                    Err(e) => {
                        warn!(error = %e, "channel task failed");
                        state.store(seller::UNUSABLE, Ordering::Relaxed);
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// The seller answered `resume`: buy, bind to another channel, or give up.
    fn channel_bound(&mut self, open: bool, unpaid: u64) {
        use super::Bound;
        let Some(buy) = self.t.cfg.buy.clone() else {
            return;
        };
        match buy
            .0
            .bound(self.key, open, unpaid, self.t.meta.piece_length)
        {
            Bound::Usable => {
                info!(unpaid, "bound to a paid channel");
                self.buy_state.store(seller::BOUND, Ordering::Relaxed);
                self.request_more();
            }
            Bound::Exhausted => {
                self.buy_state.store(seller::IDLE, Ordering::Relaxed);
                self.request_more();
            }
            Bound::TooSmall => {
                info!("not buying from this seller");
                self.buy_state.store(seller::UNUSABLE, Ordering::Relaxed);
            }
        }
    }

    /// A (possibly repeated) full availability set replaces what we knew. Some
    /// clients (aria2) send a bitfield again after have-none.
    fn on_bitfield(&mut self, bf: Bitfield) {
        let mut st = self.t.lock();
        st.picker.remove_peer_pieces(&self.has);
        st.picker.add_peer_pieces(&bf);
        if self.is_seller() {
            st.picker.remove_paid_pieces(&self.has);
            st.picker.add_paid_pieces(&bf);
        }
        if let Some(p) = st.peers.get_mut(&self.key) {
            p.has = bf.clone();
        }
        drop(st);
        self.has = bf;
    }

    fn handle(&mut self, m: Message) -> Result<(), PeerError> {
        let n = self.t.meta.num_pieces();
        match m {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Unknown { .. } => {}
            Message::Choke => {
                self.they_choke = true;
                // BEP 6 peers reject explicitly, but releasing now is always safe: a
                // late block is still accepted if we have not re-requested it.
                let mut dropped = 0u64;
                {
                    let mut st = self.t.lock();
                    for (r, _) in self.outstanding.drain(..) {
                        st.picker.release(self.key, &r);
                        dropped += r.length as u64;
                    }
                }
                // Their budget comes back now; a block that still arrives
                // counts as waste (see `Message::Piece`).
                self.release_paid(dropped);
            }
            Message::Unchoke => {
                self.they_choke = false;
                self.request_more();
            }
            Message::Interested | Message::NotInterested => {
                let i = matches!(m, Message::Interested);
                if let Some(p) = self.t.lock().peers.get_mut(&self.key) {
                    p.peer_interested = i;
                }
                self.t.trigger_choker();
            }
            Message::Have(i) => {
                if i as usize >= n {
                    return Err(PeerError::Protocol(format!("have {i} ≥ {n} pieces")));
                }
                if self.has.set(i as usize) {
                    let mut st = self.t.lock();
                    st.picker.add_have(i as usize);
                    if self.is_seller() {
                        st.picker.add_paid_have(i as usize);
                    }
                    if let Some(p) = st.peers.get_mut(&self.key) {
                        p.has.set(i as usize);
                    }
                }
                self.update_interest();
                self.request_more();
            }
            Message::Bitfield(b) => {
                let bf = Bitfield::from_bytes(&b, n).ok_or_else(|| {
                    PeerError::Protocol("bitfield has the wrong length or spare bits".into())
                })?;
                self.on_bitfield(bf);
                self.update_interest();
            }
            Message::HaveAll | Message::HaveNone => {
                if !self.fast {
                    return Err(PeerError::Protocol(
                        "have-all/none without the fast extension".into(),
                    ));
                }
                let bf = if matches!(m, Message::HaveAll) {
                    Bitfield::full(n)
                } else {
                    Bitfield::new(n)
                };
                self.on_bitfield(bf);
                self.update_interest();
            }
            Message::Request(r) => self.on_request(r)?,
            Message::Cancel(r) => {
                // Only what may be queued: cancels of blocks never asked
                // for must not grow the set.
                let mut c = self.cancelled.lock().unwrap_or_else(|e| e.into_inner());
                if c.len() < self.queued.blocks.load(Ordering::Relaxed) {
                    c.insert(r);
                }
            }
            Message::Piece { index, begin, data } => {
                let len = data.len() as u64;
                self.bytes_this_tick += len;
                self.t.stats.downloaded.fetch_add(len, Ordering::Relaxed);
                let pos = self
                    .outstanding
                    .iter()
                    .position(|(r, _)| r.index == index && r.begin == begin);
                let Some(pos) = pos else {
                    // Cancelled or timed out earlier (its budget was given
                    // back then); a seller still counts it.
                    self.t.stats.wasted.fetch_add(len, Ordering::Relaxed);
                    self.waste_paid(len);
                    return Ok(());
                };
                let (asked, at) = self.outstanding.remove(pos).expect("position found");
                if len != asked.length as u64 {
                    // Not what we asked for: the request is freed at once
                    // (another peer gets the block) and the sender, which
                    // broke the protocol, is dropped and banned.
                    self.t.lock().picker.release(self.key, &asked);
                    self.t.stats.wasted.fetch_add(len, Ordering::Relaxed);
                    self.release_paid(asked.length as u64);
                    self.waste_paid(len);
                    self.t.ban(self.addr, "sent a block of the wrong length");
                    return Err(PeerError::Protocol(format!(
                        "block {index}/{begin} of {len} bytes, {} asked",
                        asked.length
                    )));
                }
                let rtt = at.elapsed();
                self.rtt = if self.rtt.is_zero() {
                    rtt
                } else {
                    (self.rtt * 7 + rtt) / 8
                };
                self.snubbed = false;
                let outcome = {
                    let mut st = self.t.lock();
                    if st.banned.contains(&self.addr.ip()) {
                        // Banned for corrupt data, not yet closed: whatever
                        // it still sends must not go into a piece.
                        BlockOutcome::Unwanted
                    } else {
                        st.picker.on_block(self.key, index, begin, &data)
                    }
                };
                match outcome {
                    BlockOutcome::Unwanted => {
                        // Whatever the reason, our ask is over: the block
                        // must not stay marked as asked of this peer.
                        self.t.lock().picker.release(self.key, &asked);
                        self.t.stats.wasted.fetch_add(len, Ordering::Relaxed);
                        self.release_paid(len);
                        self.waste_paid(len);
                    }
                    BlockOutcome::Accepted => {}
                    BlockOutcome::Complete { data, from } => {
                        self.t.verify(index as usize, data, from)
                    }
                }
                self.request_more();
            }
            Message::Reject(r) => {
                if !self.fast {
                    return Err(PeerError::Protocol(
                        "reject without the fast extension".into(),
                    ));
                }
                self.t.stats.rejected.fetch_add(1, Ordering::Relaxed);
                if let Some(pos) = self.outstanding.iter().position(|(o, _)| *o == r) {
                    self.outstanding.remove(pos);
                    self.t.lock().picker.release(self.key, &r);
                    self.release_paid(r.length as u64);
                }
            }
            Message::AllowedFast(i) => {
                if (i as usize) < n
                    && !self.allowed_fast.contains(&i)
                    && self.allowed_fast.len() < 64
                {
                    self.allowed_fast.push(i);
                }
            }
            Message::Extended { id: 0, payload } => {
                if !self.extended {
                    return Err(PeerError::Protocol(
                        "extended message without BEP 10 support".into(),
                    ));
                }
                match ExtHandshake::decode(&payload) {
                    Ok(h) => {
                        let name = self.t.pay_ext_name();
                        if let Some(id) = name.and_then(|n| h.m.get(n)) {
                            self.their_pay_id.store(*id, Ordering::Relaxed);
                            if let Some(info) = name.and_then(|n| h.extra.get(n)) {
                                self.seller_announced(*id, info);
                            }
                        }
                        if let Some(q) = h.reqq {
                            self.reqq = (q as usize).clamp(1, 2048);
                        }
                        self.their_metadata_id =
                            h.m.get(wire::metadata::NAME).copied().unwrap_or(0);
                        debug!(client = ?h.client, reqq = ?h.reqq, "extension handshake");
                    }
                    Err(e) => debug!(error = %e, "ignoring bad extension handshake"),
                }
            }
            Message::Extended { id, payload } if id == super::PAY_EXT_ID => {
                use super::SellerSaid;
                if let Some(p) = self.t.lock().peers.get_mut(&self.key) {
                    p.speaks_pay = true;
                }
                // A node that sells and buys gets both directions on one
                // connection: a seller's answer to our `resume` is the
                // buyer's, a buyer's message goes to the seller hook.
                let said = match (&self.t.cfg.buy, self.is_seller()) {
                    (Some(buy), true) => buy.0.seller_said(self.key, &payload),
                    _ => SellerSaid::NotForBuyer,
                };
                match said {
                    SellerSaid::State { open, unpaid } => self.channel_bound(open, unpaid),
                    SellerSaid::Refused(why) => {
                        warn!(reason = %why, "seller refused; not buying from it");
                        self.buy_state.store(seller::UNUSABLE, Ordering::Relaxed);
                    }
                    SellerSaid::Nothing => {}
                    SellerSaid::NotForBuyer => {
                        if let Some(tx) = &self.pay {
                            self.queued.pay.fetch_add(1, Ordering::Relaxed);
                            let _ = tx.send(payload);
                        }
                    }
                }
            }
            Message::Extended { id, payload } if id == super::METADATA_EXT_ID => {
                self.on_metadata_msg(&payload);
            }
            Message::Extended { .. } => {}
        }
        Ok(())
    }

    /// BEP 9: a peer with only the info-hash asks for the info dictionary.
    /// A reply waits in the writer's queue; while more than
    /// [`MAX_METADATA_QUEUED`] messages wait there, requests are refused, so
    /// a peer that asks and does not read holds at most that many pieces.
    fn on_metadata_msg(&mut self, payload: &Bytes) {
        use wire::metadata::{piece_of, MetadataMsg};
        let Ok(MetadataMsg::Request { piece }) = MetadataMsg::decode(payload) else {
            return; // data or rejects for us: we never ask an engine's peers
        };
        if self.their_metadata_id == 0 {
            return;
        }
        let info = &self.t.meta.info_bytes;
        let reply = match piece_of(info, piece) {
            Some(data) if self.queued.msgs.load(Ordering::Relaxed) <= MAX_METADATA_QUEUED => {
                MetadataMsg::Data {
                    piece,
                    total_size: info.len() as u64,
                    data: Bytes::copy_from_slice(data),
                }
            }
            _ => MetadataMsg::Reject { piece },
        };
        let id = self.their_metadata_id;
        self.send(Message::Extended {
            id,
            payload: Bytes::from(reply.encode()),
        });
    }

    fn on_request(&mut self, r: BlockRef) -> Result<(), PeerError> {
        let p = r.index as usize;
        let valid = p < self.t.meta.num_pieces()
            && r.length > 0
            && r.length <= MAX_SERVE_BLOCK
            && r.begin as u64 + r.length as u64 <= self.t.meta.piece_size(p);
        if !valid {
            return Err(PeerError::Protocol(format!("invalid request {r:?}")));
        }
        let (choking, have) = {
            let st = self.t.lock();
            (
                st.peers
                    .get(&self.key)
                    .map(|p| p.am_choking)
                    .unwrap_or(true),
                st.picker.have().get(p),
            )
        };
        let queued = self.queued.blocks.load(Ordering::Relaxed);
        let paid_ok = match &self.t.cfg.pay {
            Some(hook) if !choking && have && queued <= MAX_UPLOAD_QUEUE => hook.0.may_upload(
                self.addr,
                self.t.meta.info_hash.0,
                self.their_pay_id.load(Ordering::Relaxed) != 0,
                r.length,
            ),
            _ => true,
        };
        if choking || !have || queued > MAX_UPLOAD_QUEUE || !paid_ok {
            if self.fast {
                self.send(Message::Reject(r));
            }
            return Ok(());
        }
        self.cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&r);
        self.queued.push(r.length);
        let _ = self.out.send(Out::Upload(r));
        Ok(())
    }
}

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
    let their_pay_id = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let (pay_tx, pay_task) = match &t.cfg.pay {
        Some(hook) => {
            let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
            let (hook, out, id) = (hook.0.clone(), out_tx.clone(), their_pay_id.clone());
            let q = queued.clone();
            let close = pay_close.expect("a pay hook");
            let task = tokio::spawn(
                async move {
                    while let Some(first) = rx.recv().await {
                        // Whatever else is queued goes in the same batch.
                        let mut batch = vec![first.to_vec()];
                        while batch.len() < 256 {
                            match rx.try_recv() {
                                Ok(m) => batch.push(m.to_vec()),
                                Err(_) => break,
                            }
                        }
                        for _ in &batch {
                            dec(&q.pay);
                        }
                        let h = hook.clone();
                        let replies =
                            tokio::task::spawn_blocking(move || h.handle_batch(addr, &batch))
                                .await
                                .unwrap_or_default();
                        if hook.misbehaving(addr) {
                            let _ = close.send(PeerCmd::Close("malformed btt_pay messages".into()));
                            return;
                        }
                        let their = id.load(Ordering::Relaxed);
                        if their == 0 {
                            continue;
                        }
                        for r in replies {
                            q.msgs.fetch_add(1, Ordering::Relaxed);
                            let _ = out.send(Out::Msg(Message::Extended {
                                id: their,
                                payload: Bytes::from(r),
                            }));
                        }
                    }
                }
                .in_current_span(),
            );
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let mut s = Session {
        addr,
        buy_state: Arc::new(std::sync::atomic::AtomicU8::new(seller::NO)),
        pay: pay_tx,
        their_pay_id,
        wake: wake.clone(),
        key,
        out: out_tx,
        cancelled,
        queued,
        fast: theirs.supports_fast(),
        extended: theirs.supports_extensions(),
        has: Bitfield::new(t.meta.num_pieces()),
        they_choke: true,
        am_interested: false,
        allowed_fast: vec![],
        outstanding: VecDeque::new(),
        reqq: 250,
        snubbed: false,
        bytes_this_tick: 0,
        up_last: t.stats.uploaded.load(Ordering::Relaxed),
        rate: 0.0,
        rtt: Duration::ZERO,
        last_sent: Instant::now(),
        t: t.clone(),
        their_metadata_id: 0,
    };
    let result = session_loop(&mut s, &mut rd, &wake, &mut cmd_rx).await;
    writer_task.abort();
    if let Some(t) = pay_task {
        t.abort();
    }
    if let Some(hook) = &t.cfg.pay {
        let unsent = s.queued.bytes.load(Ordering::Relaxed);
        if unsent > 0 {
            hook.0.unserved(addr, t.meta.info_hash.0, unsent);
        }
        hook.0.disconnected(addr);
    }
    if let Some(buy) = &t.cfg.buy {
        if s.is_seller() {
            t.lock().picker.remove_paid_pieces(&s.has);
            // Requests never answered are not paid; blocks it delivered
            // into pieces in progress are, once those verify.
            let asked: u64 = s.outstanding.iter().map(|(r, _)| r.length as u64).sum();
            s.release_paid(asked);
        }
        buy.0.disconnected(key);
    }
    let outstanding: Vec<BlockRef> = s.outstanding.iter().map(|(r, _)| *r).collect();
    t.unregister_peer(key, &outstanding);
    match &result {
        Ok(()) => info!("peer closed"),
        Err(e) => info!(error = %e, "peer dropped"),
    }
    result
}

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
        let mut h = ExtHandshake {
            port: s.t.listen_addr().map(|a| a.port()),
            client: Some(concat!("btt ", env!("CARGO_PKG_VERSION")).into()),
            reqq: Some(MAX_UPLOAD_QUEUE as u32),
            metadata_size: Some(s.t.meta.info_bytes.len() as u64),
            ..Default::default()
        };
        h.m.insert(wire::metadata::NAME.into(), super::METADATA_EXT_ID);
        if let Some(hook) = &s.t.cfg.pay {
            let name = hook.0.ext_name().to_string();
            h.m.insert(name.clone(), super::PAY_EXT_ID);
            h.extra.insert(name, hook.0.handshake());
        } else if let Some(buy) = &s.t.cfg.buy {
            h.m.insert(buy.0.ext_name().to_string(), super::PAY_EXT_ID);
        }
        s.send(Message::Extended {
            id: 0,
            payload: Bytes::from(h.encode()),
        });
    }
    let mut stop = s.t.shutdown_signal();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut last_tick = Instant::now();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = rd.read_buf(&mut buf) => {
                if r? == 0 {
                    return Err(PeerError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                }
                last_heard = Instant::now();
                while let Some(m) = wire::decode(&mut buf, max)? {
                    s.handle(m)?;
                    if let Some(e) = s.overflowing() {
                        return Err(e);
                    }
                }
                if buf.capacity() - buf.len() < 64 * 1024 {
                    buf.reserve(256 * 1024);
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
                None => return Ok(()),
            },
            _ = wake.notified() => {
                s.update_interest();
                s.request_more();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                s.tick(now.duration_since(last_tick));
                last_tick = now;
                s.tidy_requests();
                s.update_interest();
                s.request_more();
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
