//! One peer session: what each message means. The connection around it
//! (handshakes, writer, flow control) is [`super::conn`]'s; BEP 10
//! extensions are handled in [`super::ext`], one module each. The session
//! asks the picker for blocks, answers requests and follows the torrent's
//! commands (have, choke). It is the one owner of what the peer has (its
//! bitfield), which it mirrors into the picker's availability counts.

use super::conn::{Link, Out, PeerError, MAX_OUT_MSGS};
use super::ext;
use super::picker::{BlockOutcome, PeerKey, PeerView};
use super::Torrent;
use crate::bitfield::Bitfield;
use crate::metainfo::v2;
use crate::wire::{self, BlockRef, ExtHandshake, Handshake, HashReq, Message};
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{debug, info};

/// Requests a peer may queue with us before we reject more, and the `reqq`
/// we advertise. Transmission keeps at most `reqq` requests in flight and
/// tops them up twice a second, so this bounds its rate (512 gave it 5 MB/s
/// on loopback); libtorrent advertises 2 000 too. A queued request is 16
/// bytes plus the channel's slot; the data is read when it is sent.
pub(super) const MAX_UPLOAD_QUEUE: usize = 2000;
/// Largest block we serve (most clients ask for 16 KiB; some up to 128 KiB).
const MAX_SERVE_BLOCK: u32 = 128 * 1024;
/// Block-layer hash requests a peer may have queued with us (each reads
/// and hashes up to 8 MiB).
const MAX_BLOCK_HASH_REQUESTS: usize = 4;

pub(super) struct Session {
    pub(super) t: Arc<Torrent>,
    pub(super) key: PeerKey,
    pub(super) link: Link,
    pub(super) fast: bool,
    pub(super) extended: bool,
    /// It set BEP 52's handshake bit: it may answer hash requests.
    pub(super) v2: bool,
    pub(super) has: Bitfield,
    pub(super) they_choke: bool,
    pub(super) am_interested: bool,
    pub(super) allowed_fast: Vec<u32>,
    /// Our requests in flight, oldest first, with when they were sent.
    pub(super) outstanding: VecDeque<(BlockRef, Instant)>,
    pub(super) reqq: usize,
    pub(super) snubbed: bool,
    pub(super) bytes_this_tick: u64,
    pub(super) up_last: u64,
    pub(super) rate: f64,
    /// Smoothed time from request to block.
    pub(super) rtt: Duration,
    pub(super) last_sent: Instant,
    pub(super) addr: SocketAddr,
    /// The `btt_pay` handler's state on this connection.
    pub(super) pay: ext::pay::PayState,
    /// Wakes this session (new pieces wanted, credit freed by a payment).
    pub(super) wake: Arc<Notify>,
    /// The `ut_metadata` handler's state on this connection.
    pub(super) metadata: ext::metadata::MetadataState,
    /// The `ut_pex` handler's state on this connection.
    pub(super) pex: ext::pex::PexState,
    /// Whether the peer dialed us.
    pub(super) incoming: bool,
}

/// Who a session is with.
pub(super) struct Remote {
    pub(super) key: PeerKey,
    pub(super) addr: SocketAddr,
    /// Whether it dialed us.
    pub(super) incoming: bool,
}

impl Session {
    pub(super) fn new(
        t: Arc<Torrent>,
        remote: Remote,
        link: Link,
        pay: ext::pay::PayState,
        wake: Arc<Notify>,
        theirs: &Handshake,
    ) -> Session {
        let Remote {
            key,
            addr,
            incoming,
        } = remote;
        Session {
            addr,
            pay,
            wake,
            key,
            link,
            fast: theirs.supports_fast(),
            extended: theirs.supports_extensions(),
            v2: theirs.supports_v2(),
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
            metadata: Default::default(),
            pex: Default::default(),
            incoming,
            t,
        }
    }

    /// The connection ended: hooks learn it, the picker forgets this peer's
    /// pieces and requests.
    pub(super) fn close(&mut self) {
        self.pay_closed();
        let outstanding: Vec<BlockRef> = self.outstanding.iter().map(|(r, _)| *r).collect();
        self.t.unregister_peer(self.key, &self.has, &outstanding);
    }

    pub(super) fn send(&mut self, m: Message) {
        self.last_sent = Instant::now();
        self.link.send(m);
    }

    /// A queue for this peer passed its bound: it sends faster than it
    /// reads, or floods us with what needs an answer.
    pub(super) fn overflowing(&self) -> Option<PeerError> {
        if self.link.queued.msgs.load(Ordering::Relaxed) > MAX_OUT_MSGS {
            return Some(PeerError::Protocol("does not read what we send".into()));
        }
        self.pay_overflowing()
    }

    fn depth(&self) -> usize {
        if self.snubbed {
            return 1;
        }
        // Keep about one second of data in flight, within the peer's queue limit.
        let by_rate = (self.rate / wire::BLOCK_SIZE as f64) as usize;
        by_rate.clamp(32, 1024).min(self.reqq)
    }

    pub(super) fn update_interest(&mut self) {
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

    pub(super) fn request_more(&mut self) {
        if self.they_choke && self.allowed_fast.is_empty() {
            return;
        }
        let paid = match self.pay.buy_state() {
            ext::pay::seller::NO => false,
            ext::pay::seller::BOUND => true,
            ext::pay::seller::IDLE => {
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
                    self.pay.set_buy_state(ext::pay::seller::IDLE);
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
    /// We did not read for `d` (blocks waited for the disk): what the peer
    /// sent meanwhile sits unread, so its requests' clocks move on by `d`.
    pub(super) fn postpone(&mut self, d: Duration) {
        for (_, at) in self.outstanding.iter_mut() {
            *at += d;
        }
    }

    pub(super) fn tidy_requests(&mut self) {
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

    pub(super) fn tick(&mut self, dt: Duration) {
        let inst = self.bytes_this_tick as f64 / dt.as_secs_f64().max(1e-3);
        self.rate = if self.rate == 0.0 {
            inst
        } else {
            0.6 * self.rate + 0.4 * inst
        };
        self.bytes_this_tick = 0;
        let up = self.t.stats.uploaded.load(Ordering::Relaxed);
        let mut st = self.t.lock();
        let seller = self.is_seller();
        if let Some(p) = st.peers.get_mut(&self.key) {
            p.rate_down = self.rate;
            p.rate_up = (up - self.up_last) as f64 / dt.as_secs_f64().max(1e-3);
            p.they_choke = self.they_choke;
            p.seller = seller;
        }
        self.up_last = up;
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
        drop(st);
        self.has = bf;
    }

    /// One message from the peer: each kind has its own handler.
    pub(super) fn handle(&mut self, m: Message) -> Result<(), PeerError> {
        match m {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::Unknown { .. } => Ok(()),
            Message::Choke => {
                self.on_choke();
                Ok(())
            }
            Message::Unchoke => {
                self.they_choke = false;
                self.request_more();
                Ok(())
            }
            Message::Interested => {
                self.on_interest(true);
                Ok(())
            }
            Message::NotInterested => {
                self.on_interest(false);
                Ok(())
            }
            Message::Have(i) => self.on_have(i),
            Message::Bitfield(b) => self.on_bitfield_msg(&b),
            Message::HaveAll => self.on_have_all_or_none(true),
            Message::HaveNone => self.on_have_all_or_none(false),
            Message::Request(r) => self.on_request(r),
            Message::Cancel(r) => {
                self.on_cancel(r);
                Ok(())
            }
            Message::Piece { index, begin, data } => self.on_piece(index, begin, data),
            Message::Reject(r) => self.on_reject(r),
            Message::AllowedFast(i) => {
                self.on_allowed_fast(i);
                Ok(())
            }
            Message::Extended { id, payload } => self.on_extended(id, payload),
            Message::HashRequest(r) => {
                self.on_hash_request(r);
                Ok(())
            }
            // Block hashes of a failed piece; the piece layers a magnet
            // needs are asked for on connections of their own.
            Message::Hashes { req, hashes } if req.base == 0 => {
                let span = v2::BlockSpan {
                    root: req.root,
                    index: req.index,
                    count: req.count,
                    proof_layers: req.proof_layers,
                };
                self.t.block_hashes_answered(self.addr, span, &hashes);
                Ok(())
            }
            Message::HashReject(req) if req.base == 0 => {
                self.t.block_hashes_refused(v2::BlockSpan {
                    root: req.root,
                    index: req.index,
                    count: req.count,
                    proof_layers: req.proof_layers,
                });
                Ok(())
            }
            Message::Hashes { .. } | Message::HashReject(_) => Ok(()),
        }
    }

    /// BEP 52: hashes of a file's piece layer (with their proof), from the
    /// layers the torrent holds; a reject for anything else.
    fn on_hash_request(&mut self, r: HashReq) {
        let pl_base = v2::piece_layer_base(self.t.meta.piece_length);
        if self.t.meta.v2.is_some() && r.base == 0 && r.base != pl_base {
            return self.on_block_hash_request(r);
        }
        let got = self
            .t
            .meta
            .v2
            .as_ref()
            .and_then(|v| v.answer(&r.root, r.base, r.index, r.count, r.proof_layers));
        match got {
            Some(h) => {
                debug!(
                    index = r.index,
                    count = r.count,
                    proof = r.proof_layers,
                    "hash request answered"
                );
                self.send(Message::Hashes {
                    req: r,
                    hashes: Bytes::from(h.concat()),
                })
            }
            None => {
                debug!(
                    index = r.index,
                    count = r.count,
                    base = r.base,
                    "hash request refused"
                );
                self.send(Message::HashReject(r));
            }
        }
    }

    /// The torrent wants a failed piece's block hashes: asked of this peer
    /// if it speaks v2 and has the piece (and not enough peers were asked).
    pub(super) fn ask_block_hashes(&mut self, piece: usize) {
        if !self.v2 || !self.has.get(piece) {
            return;
        }
        for span in self.t.may_ask_block_hashes(piece) {
            debug!(piece, index = span.index, "asking for block hashes");
            self.send(Message::HashRequest(HashReq {
                root: span.root,
                base: 0,
                index: span.index,
                count: span.count,
                proof_layers: span.proof_layers,
            }));
        }
    }

    /// BEP 52 block layer: the SHA-256 of each 16 KiB block of whole
    /// pieces we hold, read and hashed by the writer (a peer may have a few
    /// such requests queued; more are refused).
    fn on_block_hash_request(&mut self, r: HashReq) {
        let v2 = self.t.meta.v2.as_ref().expect("v2");
        let pieces = v2.block_request_pieces(&r.root, r.index, r.count, r.proof_layers);
        let ok = pieces.clone().is_some_and(|ps| {
            let st = self.t.lock();
            ps.into_iter().all(|p| st.picker.have().get(p))
        }) && self.link.queued.hashing.load(Ordering::Relaxed) < MAX_BLOCK_HASH_REQUESTS;
        match pieces {
            Some(ps) if ok => {
                self.link.queued.hashing.fetch_add(1, Ordering::Relaxed);
                let _ = self.link.out.send(Out::BlockHashes(r, ps));
            }
            _ => {
                debug!(
                    index = r.index,
                    count = r.count,
                    "block hash request refused"
                );
                self.send(Message::HashReject(r));
            }
        }
    }

    fn on_choke(&mut self) {
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
        // counts as waste (see `on_piece`).
        self.release_paid(dropped);
    }

    fn on_interest(&mut self, interested: bool) {
        if let Some(p) = self.t.lock().peers.get_mut(&self.key) {
            p.peer_interested = interested;
        }
        self.t.trigger_choker();
    }

    fn on_have(&mut self, i: u32) -> Result<(), PeerError> {
        let n = self.t.meta.num_pieces();
        if i as usize >= n {
            return Err(PeerError::Protocol(format!("have {i} ≥ {n} pieces")));
        }
        if self.has.set(i as usize) {
            let mut st = self.t.lock();
            st.picker.add_have(i as usize);
            if self.is_seller() {
                st.picker.add_paid_have(i as usize);
            }
        }
        self.update_interest();
        self.request_more();
        Ok(())
    }

    fn on_bitfield_msg(&mut self, b: &[u8]) -> Result<(), PeerError> {
        let bf = Bitfield::from_bytes(b, self.t.meta.num_pieces()).ok_or_else(|| {
            PeerError::Protocol("bitfield has the wrong length or spare bits".into())
        })?;
        self.on_bitfield(bf);
        self.update_interest();
        Ok(())
    }

    fn on_have_all_or_none(&mut self, all: bool) -> Result<(), PeerError> {
        if !self.fast {
            return Err(PeerError::Protocol(
                "have-all/none without the fast extension".into(),
            ));
        }
        let n = self.t.meta.num_pieces();
        self.on_bitfield(if all {
            Bitfield::full(n)
        } else {
            Bitfield::new(n)
        });
        self.update_interest();
        Ok(())
    }

    fn on_cancel(&mut self, r: BlockRef) {
        // Only what may be queued: cancels of blocks never asked for must
        // not grow the set.
        let mut c = self
            .link
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if c.len() < self.link.queued.blocks.load(Ordering::Relaxed) {
            c.insert(r);
        }
    }

    fn on_piece(&mut self, index: u32, begin: u32, data: Bytes) -> Result<(), PeerError> {
        let len = data.len() as u64;
        self.bytes_this_tick += len;
        self.t.stats.downloaded.fetch_add(len, Ordering::Relaxed);
        let pos = self
            .outstanding
            .iter()
            .position(|(r, _)| r.index == index && r.begin == begin);
        let Some(pos) = pos else {
            // Cancelled or timed out earlier (its budget was given back
            // then); a seller still counts it.
            self.t.stats.wasted.fetch_add(len, Ordering::Relaxed);
            self.waste_paid(len);
            return Ok(());
        };
        let (asked, at) = self.outstanding.remove(pos).expect("position found");
        if len != asked.length as u64 {
            // Not what we asked for: the request is freed at once (another
            // peer gets the block) and the sender, which broke the
            // protocol, is dropped and banned.
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
                // Banned for corrupt data, not yet closed: whatever it
                // still sends must not go into a piece.
                BlockOutcome::Unwanted
            } else {
                let outcome = st.picker.on_block(self.key, index, begin, data.len());
                // Queued for disk in the same step (see `disk`): a piece is
                // read back only after every block accepted before.
                let complete = match &outcome {
                    BlockOutcome::Unwanted => None,
                    BlockOutcome::Accepted => Some(None),
                    BlockOutcome::Complete { from } => Some(Some((index as usize, from.clone()))),
                };
                if let Some(complete) = complete {
                    if let Some(k) = st.known.get_mut(&self.addr).filter(|k| !k.served) {
                        k.served = true;
                    }
                    self.t.disk.push(super::disk::Job {
                        offset: self.t.meta.piece_offset(index as usize) + begin as u64,
                        // A copy of its own: a slice would keep the whole
                        // socket buffer it lies in alive while it waits,
                        // and the next read would need a new one.
                        data: Bytes::copy_from_slice(&data),
                        complete,
                    });
                }
                outcome
            }
        };
        match outcome {
            BlockOutcome::Unwanted => {
                // Whatever the reason, our ask is over: the block must not
                // stay marked as asked of this peer.
                self.t.lock().picker.release(self.key, &asked);
                self.t.stats.wasted.fetch_add(len, Ordering::Relaxed);
                self.release_paid(len);
                self.waste_paid(len);
            }
            BlockOutcome::Accepted | BlockOutcome::Complete { .. } => {}
        }
        self.request_more();
        Ok(())
    }

    fn on_reject(&mut self, r: BlockRef) -> Result<(), PeerError> {
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
        Ok(())
    }

    fn on_allowed_fast(&mut self, i: u32) {
        if (i as usize) < self.t.meta.num_pieces()
            && !self.allowed_fast.contains(&i)
            && self.allowed_fast.len() < 64
        {
            self.allowed_fast.push(i);
        }
    }

    /// BEP 10: the extension handshake, or a message for one of the
    /// extension handlers in [`super::ext`].
    fn on_extended(&mut self, id: u8, payload: Bytes) -> Result<(), PeerError> {
        if id == 0 {
            if !self.extended {
                return Err(PeerError::Protocol(
                    "extended message without BEP 10 support".into(),
                ));
            }
            match ExtHandshake::decode(&payload) {
                Ok(h) => self.on_ext_handshake(&h),
                Err(e) => debug!(error = %e, "ignoring bad extension handshake"),
            }
            return Ok(());
        }
        match ext::Ext::ours(id) {
            Some(ext::Ext::Metadata) => self.on_metadata_msg(&payload),
            Some(ext::Ext::Pay) => self.on_pay_msg(payload),
            Some(ext::Ext::Pex) => self.on_pex_msg(&payload),
            None => {}
        }
        Ok(())
    }

    fn on_ext_handshake(&mut self, h: &ExtHandshake) {
        self.pay_handshake(h);
        if let Some(q) = h.reqq {
            self.reqq = (q as usize).clamp(1, 2048);
        }
        self.metadata_handshake(h);
        self.pex_handshake(h);
        if let (Some(port), true) = (h.port, self.incoming) {
            // An incoming peer's own listening address, to pass on.
            self.t
                .set_listen(self.key, SocketAddr::new(self.addr.ip(), port));
        }
        debug!(client = ?h.client, reqq = ?h.reqq, "extension handshake");
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
        let queued = self.link.queued.blocks.load(Ordering::Relaxed);
        let paid_ok = match &self.t.cfg.pay {
            Some(hook) if !choking && have && queued <= MAX_UPLOAD_QUEUE => hook.0.may_upload(
                self.addr,
                self.t.meta.info_hash.0,
                self.pay.their_id() != 0,
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
        self.link
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&r);
        self.link.queued.push(r.length);
        let _ = self.link.out.send(Out::Upload(r));
        Ok(())
    }
}
