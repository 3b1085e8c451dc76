//! The torrent engine: peers, piece picking, verification, uploads.
//!
//! A [`Torrent`] owns the shared state (picker, peers, waiting readers) behind one
//! mutex that is only held for short, non-blocking sections. Each peer connection is
//! a task ([`peer`]); background tasks accept connections, dial known peers with
//! back-off, announce to trackers, run the choker and flush the store. Readers call
//! [`Torrent::read`], which marks the pieces under it critical and waits for them to
//! be verified. Nothing here knows about FUSE.

mod blame;
mod block_hashes;
pub mod choke;
mod conn;
pub mod discovery;
mod disk;
mod ext;
mod peer;
pub use conn::limit_connections_to_fds;
pub use ext::{METADATA_EXT_ID, PAY_EXT_ID};
pub mod picker;
pub mod rate;
mod redial;
pub mod status;
mod upload;
pub mod view;

use crate::bitfield::Bitfield;
use crate::metainfo::{v2, Metainfo};
use crate::store::{Store, StoreError};
use crate::tracker::{schedule::Schedule, AnnounceRequest, Event, TrackerSet};
use bytes::Bytes;
pub use picker::PeerKey;
use picker::Picker;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, info, warn, Instrument};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the torrent was shut down")]
    Shutdown,
    #[error("timed out waiting for data")]
    TimedOut,
    #[error("piece {0} could not be stored (is the data dir's disk full or read-only?)")]
    Unwritable(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Peer addresses a torrent keeps to dial.
pub const MAX_KNOWN: usize = 2000;

/// What a seller's payment-extension message means to the buyer side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SellerSaid {
    /// The answer to binding a connection: the channel is `open` and the
    /// seller counts `unpaid` bytes on it.
    State { open: bool, unpaid: u64 },
    /// The seller refused (why, for the log).
    Refused(String),
    /// For the buyer, nothing to do here.
    Nothing,
    /// Not a seller-to-buyer message: for the seller hook, if any.
    NotForBuyer,
}

/// The payment extension, seen from the engine: it adds an entry to our
/// extension handshake and answers the extension's messages. The engine
/// knows nothing of channels; `market::seller_node` implements this.
pub trait PayHook: Send + Sync {
    /// The extension's BEP 10 name.
    fn ext_name(&self) -> &'static str;
    /// The value of `btt_pay` in our extension handshake.
    fn handshake(&self) -> bendy::value::Value<'static>;
    /// Handles one message (may block on disk and chain); returns the reply.
    fn handle(&self, peer: SocketAddr, payload: &[u8]) -> Option<Vec<u8>>;
    /// Whether to upload `len` bytes of torrent `torrent` (its info hash)
    /// to `peer` (`speaks_pay`: it announced the extension). Refused
    /// requests get a BEP 6 reject.
    fn may_upload(&self, peer: SocketAddr, torrent: [u8; 20], speaks_pay: bool, len: u32) -> bool {
        let _ = (peer, torrent, speaks_pay, len);
        true
    }
    /// `len` bytes allowed by `may_upload` were never sent (cancelled, or
    /// still queued when the connection ended).
    fn unserved(&self, peer: SocketAddr, torrent: [u8; 20], len: u64) {
        let _ = (peer, torrent, len);
    }
    /// The connection to `peer` ended.
    fn disconnected(&self, peer: SocketAddr) {
        let _ = peer;
    }
    /// Whether `peer` broke the extension's rules often enough to be dropped.
    fn misbehaving(&self, peer: SocketAddr) -> bool {
        let _ = peer;
        false
    }
    /// Earnings, for `btt status`: torrent `torrent`'s share, and all.
    fn money(&self, torrent: [u8; 20]) -> status::Money {
        let _ = torrent;
        status::Money::default()
    }
    /// A burst of messages that arrived together, in order (lets payments
    /// share one durable commit); one reply list for all.
    fn handle_batch(&self, peer: SocketAddr, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        payloads
            .iter()
            .filter_map(|p| self.handle(peer, p))
            .collect()
    }
}

#[derive(Clone)]
pub struct PayHookRef(pub Arc<dyn PayHook>);

/// What binding a connection to a paid channel found out (the buyer's
/// answer to the seller's `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Room for at least one piece: buy.
    Usable,
    /// Unpaid bytes from earlier sessions leave less than a piece of room:
    /// bind again, to another channel.
    Exhausted,
    /// The seller's credit is below one piece: it cannot serve a buyer that
    /// pays after verifying.
    TooSmall,
}

/// The buyer's side, seen from the engine (implemented by
/// `market::buying::BuyerAgent`): which sellers to use, binding a connection to
/// a channel, the budget, and paying for verified bytes.
///
/// Connections are named by their [`PeerKey`], unique for the life of the
/// process: a seller that disconnects while blocks it sent sit in pieces in
/// progress is still paid for them when those pieces verify.
pub trait BuyHook: Send + Sync {
    /// The extension's BEP 10 name.
    fn ext_name(&self) -> &'static str;
    /// A message of the extension from `conn`, a seller we buy from.
    fn seller_said(&self, conn: PeerKey, payload: &[u8]) -> SellerSaid;
    /// The peer at `addr` announced `btt_pay` with `info`: use it as a paid
    /// seller? `wake` is notified when a payment frees credit for more
    /// requests.
    fn consider(
        &self,
        conn: PeerKey,
        addr: SocketAddr,
        info: &bendy::value::Value<'static>,
        wake: Arc<tokio::sync::Notify>,
    ) -> bool;
    /// Bytes that may still be requested on `conn` without going beyond
    /// the seller's credit (requested or verified but not yet paid for);
    /// `None`: its channel can no longer be used (closed), bind again.
    fn room(&self, conn: PeerKey) -> Option<u64>;
    /// Blocking: get a channel and return the message binding the connection.
    fn bind(&self, conn: PeerKey, info_hash: [u8; 20]) -> Result<Vec<u8>, String>;
    /// Reserve budget for `bytes` about to be requested on `conn`.
    fn reserve(&self, conn: PeerKey, bytes: u64) -> bool;
    /// A reservation that will not be paid (request dropped, data unused or bad).
    fn release(&self, conn: PeerKey, bytes: u64);
    /// Whether bytes from `conn` are paid for (it is bound to a channel):
    /// their piece is then made durable before [`BuyHook::verified`].
    fn pays(&self, conn: PeerKey) -> bool;
    /// `bytes` from `conn` are part of a verified piece held on disk: pay.
    fn verified(&self, conn: PeerKey, bytes: u64);
    /// The seller answered `conn`'s `resume`: the channel is `open` (else
    /// it closed it) and it counts `unpaid` bytes on it that no payment
    /// covers. Can it still serve a piece?
    fn bound(&self, conn: PeerKey, open: bool, unpaid: u64, piece_len: u64) -> Bound;
    /// `bytes` from `conn` arrived and will never be paid for.
    fn wasted(&self, conn: PeerKey, bytes: u64);
    /// Blocking: waits up to `t` for payments of verified bytes to go out.
    fn settle(&self, t: std::time::Duration);
    /// The connection ended; what it delivered may still be paid.
    fn disconnected(&self, conn: PeerKey);
    fn money(&self) -> status::Money;
    /// Sellers in use.
    fn paid_peers(&self) -> usize;
}

#[derive(Clone)]
pub struct BuyHookRef(pub Arc<dyn BuyHook>);

impl std::fmt::Debug for BuyHookRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuyHook")
    }
}

impl std::fmt::Debug for PayHookRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayHook")
    }
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Address to accept peers on (port 0: any free port).
    pub listen: SocketAddr,
    /// Peers to dial directly (`--peer`), retried with back-off if they go away.
    pub peers: Vec<SocketAddr>,
    /// Announce to the torrent's trackers.
    pub use_trackers: bool,
    pub max_peers: usize,
    /// Fetch every piece (`btt get`, `--fetch-all`), not only what readers need.
    pub fetch_all: bool,
    /// With `fetch_all`: only these pieces (`btt get --only`, a magnet's `so=`).
    pub only: Option<Bitfield>,
    pub upload_slots: usize,
    pub announce_timeout: Duration,
    /// Sell over `btt_pay` (seller side).
    pub pay: Option<PayHookRef>,
    /// Shown by `btt status` ("mount /mnt/x", "seed", "get DIR"); empty: no status file.
    pub role: String,
    /// Buy from `btt_pay` sellers (mount, `btt get`).
    pub buy: Option<BuyHookRef>,
    /// How to start the process's DHT node (`None`: `--no-dht`).
    pub dht_settings: Option<crate::dht::DhtSettings>,
    /// The process's DHT node, started by whoever runs the engines from
    /// `dht_settings` (one per process, shared by its torrents).
    pub dht: Option<crate::dht::DhtRef>,
    /// Start the process's LSD node (`--lsd`).
    pub lsd_on: bool,
    /// The process's LSD node (BEP 14), started like `dht`.
    pub lsd: Option<crate::lsd::LsdRef>,
    /// `--max-down`: what every connection of the process reads.
    pub max_down: rate::Limit,
    /// `--max-up`: what every connection of the process writes.
    pub max_up: rate::Limit,
    /// The process's web page and API (`--http`), as `btt status` shows it.
    pub http: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            listen: "0.0.0.0:0".parse().expect("literal"),
            peers: vec![],
            use_trackers: true,
            max_peers: 60,
            fetch_all: false,
            only: None,
            upload_slots: 8,
            announce_timeout: Duration::from_secs(10),
            pay: None,
            buy: None,
            role: String::new(),
            dht_settings: None,
            dht: None,
            lsd_on: false,
            lsd: None,
            max_down: None,
            max_up: None,
            http: None,
        }
    }
}

/// Counters for status output and benchmarks.
#[derive(Default)]
pub struct Stats {
    pub downloaded: AtomicU64,
    pub uploaded: AtomicU64,
    /// Bytes received that were not used (duplicates, unrequested, failed hashes).
    pub wasted: AtomicU64,
    pub hash_failures: AtomicU64,
    /// Our requests that peers rejected (BEP 6); from a paid seller, a sign
    /// the buyer asked beyond its credit.
    pub rejected: AtomicU64,
}

pub(crate) enum PeerCmd {
    Have(u32),
    Choke,
    Unchoke,
    Close(String),
    /// Ask the peer, if it has this piece, for its block hashes (a v2
    /// piece failed with several senders; see [`block_hashes`]).
    AskBlockHashes(usize),
}

pub(crate) struct PeerEntry {
    pub addr: SocketAddr,
    /// Where the peer accepts connections, if known (what PEX passes on):
    /// the address we dialed, or an incoming peer's announced port.
    pub listen: Option<SocketAddr>,
    pub peer_id: [u8; 20],
    pub wake: Arc<Notify>,
    pub cmd: mpsc::UnboundedSender<PeerCmd>,
    pub rate_down: f64,
    pub rate_up: f64,
    pub peer_interested: bool,
    pub am_choking: bool,
    /// It connected to us (we did not dial it).
    pub incoming: bool,
    /// It sent a payment-extension message (a buyer's payment connection
    /// sends nothing else, and is not idle).
    pub speaks_pay: bool,
    pub since: Instant,
    /// Mirrors of its session's state, refreshed each second for the views:
    /// it chokes us; it is a seller we pay.
    pub they_choke: bool,
    pub seller: bool,
}

impl PeerEntry {
    /// An incoming peer that has given nothing for a while: no data, no
    /// interest in ours. The first to go when slots are short.
    fn idle(&self, now: Instant) -> bool {
        self.incoming
            && !self.speaks_pay
            && !self.peer_interested
            && self.rate_down == 0.0
            && now.duration_since(self.since) >= IDLE_AFTER
    }
}

/// How long a connected peer may give nothing before it may be evicted.
const IDLE_AFTER: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Known {
    last_attempt: Option<Instant>,
    failures: u32,
    connected: bool,
    /// Found only in a hybrid's v2 swarm (DHT, LSD): dialed with that hash,
    /// which may be all it knows the torrent by.
    swarm: Option<[u8; 20]>,
    /// It has sent us a block we kept: redialed quickly while a reader
    /// waits (see [`redial`]).
    served: bool,
}

pub(crate) struct State {
    pub picker: Picker,
    pub peers: HashMap<PeerKey, PeerEntry>,
    waiters: HashMap<usize, Vec<oneshot::Sender<Result<(), EngineError>>>>,
    known: HashMap<SocketAddr, Known>,
    /// Addresses that sent corrupt data or broke the protocol: every
    /// connection from them is refused (see [`blame`]).
    banned: HashSet<IpAddr>,
    blame: blame::Blame,
    block_hashes: block_hashes::BlockHashes,
    closed: bool,
    optimistic: Option<PeerKey>,
    choke_round: u64,
    /// Pieces a paid seller sent part of, this run (the piece map shows them).
    bought: Bitfield,
}

impl State {
    /// The connections from `ip`.
    pub(crate) fn keys_of(&self, ip: IpAddr) -> Vec<PeerKey> {
        self.peers
            .iter()
            .filter(|(_, p)| p.addr.ip() == ip)
            .map(|(k, _)| *k)
            .collect()
    }
}

pub struct Torrent {
    pub meta: Arc<Metainfo>,
    pub store: Arc<Store>,
    pub peer_id: [u8; 20],
    cfg: EngineConfig,
    state: Mutex<State>,
    shutdown: watch::Sender<bool>,
    pub stats: Stats,
    connector_wake: Notify,
    choker_wake: Notify,
    listen_addr: Mutex<Option<SocketAddr>>,
    span: tracing::Span,
    /// Pieces being written, checked or made durable, which may have to
    /// be paid for (a shutdown waits for them, bounded).
    paying: std::sync::atomic::AtomicUsize,
    /// Blocks on their way to disk.
    pub(crate) disk: disk::DiskQueue,
    /// How the sources of peers fared, for "no peers yet" (own lock: the
    /// tracker task and dials write it, readers and logs read it).
    discovery: Mutex<discovery::Discovery>,
    /// The status file's writer, which removes the file when it stops: a
    /// shutdown waits for it, or the runtime ending right after may drop it
    /// first and leave the file behind.
    status_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Removes the critical mark of a waiting read when the read ends or is dropped.
struct CriticalGuard<'a> {
    t: &'a Torrent,
    pieces: Vec<usize>,
}

impl Drop for CriticalGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.t.lock();
        for &p in &self.pieces {
            st.picker.remove_critical(p);
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), EngineError> {
    let listen = |source| EngineError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
    let local = listener.local_addr().map_err(listen)?;
    Ok((listener, local))
}

/// The torrents behind one listener: an incoming peer goes to the one its
/// handshake names. A library adds and removes torrents while it listens.
pub struct Torrents {
    list: std::sync::RwLock<Vec<Arc<Torrent>>>,
    /// Magnets whose metadata is being fetched: a peer naming one of them
    /// is handed to its fetch (see [`Torrents::metadata_peers`]).
    fetching: Mutex<HashMap<[u8; 20], mpsc::Sender<crate::magnet::IncomingPeer>>>,
    local: SocketAddr,
    stop: watch::Sender<bool>,
}

/// Takes a magnet's hashes off [`Torrents`] when its fetch ends.
pub struct Fetching {
    torrents: Arc<Torrents>,
    hashes: Vec<[u8; 20]>,
    /// Its own sender: a later fetch of the same magnet (removed and added
    /// again meanwhile) keeps its own.
    tx: mpsc::Sender<crate::magnet::IncomingPeer>,
}

impl Drop for Fetching {
    fn drop(&mut self) {
        let mut f = self.torrents.fetching.lock().expect("fetching lock");
        for h in &self.hashes {
            if f.get(h).is_some_and(|tx| tx.same_channel(&self.tx)) {
                f.remove(h);
            }
        }
    }
}

impl Torrents {
    /// Binds `addr` and accepts peers for whatever torrents are added, until
    /// [`Torrents::stop`]. Must be called inside a tokio runtime.
    pub async fn listen(addr: SocketAddr) -> Result<Arc<Torrents>, EngineError> {
        let (listener, local) = bind(addr).await?;
        Ok(Torrents::on(listener, local, vec![]))
    }

    fn on(
        listener: tokio::net::TcpListener,
        local: SocketAddr,
        list: Vec<Arc<Torrent>>,
    ) -> Arc<Torrents> {
        let (stop, rx) = watch::channel(false);
        let set = Arc::new(Torrents {
            list: std::sync::RwLock::new(list),
            fetching: Mutex::new(HashMap::new()),
            local,
            stop,
        });
        tokio::spawn(conn::accept_loop(set.clone(), listener, rx));
        set
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Starts a torrent on this listener.
    pub fn start(&self, meta: Arc<Metainfo>, store: Arc<Store>, cfg: EngineConfig) -> Arc<Torrent> {
        let t = Torrent::build(meta, store, cfg, self.local);
        self.list.write().expect("torrents lock").push(t.clone());
        t
    }

    /// The peers that dial this listener naming one of `hashes` (a
    /// magnet's, while its metadata is fetched), for
    /// [`crate::magnet::fetch`]; until the [`Fetching`] is dropped. At most
    /// a few wait; more are refused (they may dial again).
    pub fn metadata_peers(
        self: &Arc<Self>,
        hashes: Vec<[u8; 20]>,
    ) -> (crate::magnet::Incoming, Fetching) {
        let (tx, rx) = mpsc::channel(4);
        let mut f = self.fetching.lock().expect("fetching lock");
        for h in &hashes {
            f.insert(*h, tx.clone());
        }
        drop(f);
        let guard = Fetching {
            torrents: self.clone(),
            hashes,
            tx,
        };
        (rx, guard)
    }

    /// Hands a peer that named `hash` to the fetch of that magnet's
    /// metadata; false (the peer dropped) if none wants it.
    fn to_fetch(&self, hash: &[u8; 20], peer: crate::magnet::IncomingPeer) -> bool {
        let tx = self
            .fetching
            .lock()
            .expect("fetching lock")
            .get(hash)
            .cloned();
        tx.is_some_and(|tx| tx.try_send(peer).is_ok())
    }

    /// Takes a torrent off the listener (the caller shuts it down).
    pub fn remove(&self, t: &Arc<Torrent>) {
        self.list
            .write()
            .expect("torrents lock")
            .retain(|x| !Arc::ptr_eq(x, t));
    }

    fn find(&self, info_hash: &[u8; 20]) -> Option<Arc<Torrent>> {
        self.list
            .read()
            .expect("torrents lock")
            .iter()
            .find(|t| t.meta.answers_to(info_hash) && !t.is_shut_down())
            .cloned()
    }

    /// Stops accepting.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Stops a listener's accept loop when its torrents stop (the single
/// torrent of a mount, the torrents of `btt seed`).
fn stop_with(set: Arc<Torrents>, first: &Arc<Torrent>) {
    let mut stop = first.shutdown_signal();
    tokio::spawn(async move {
        let _ = stop.changed().await;
        set.stop();
    });
}

impl Torrent {
    /// Starts the engine: binds the listener and spawns the background tasks.
    /// Must be called inside a tokio runtime.
    pub async fn start(
        meta: Arc<Metainfo>,
        store: Arc<Store>,
        cfg: EngineConfig,
    ) -> Result<Arc<Torrent>, EngineError> {
        let (listener, _) = bind(cfg.listen).await?;
        Torrent::start_on(meta, store, cfg, listener)
    }

    /// Binds `addr` for [`Self::start_on`] (a magnet's mount listens, and
    /// announces its port, before the torrent's metadata is known).
    pub async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, EngineError> {
        Ok(bind(addr).await?.0)
    }

    /// Starts the engine on a listener bound before.
    pub fn start_on(
        meta: Arc<Metainfo>,
        store: Arc<Store>,
        cfg: EngineConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<Arc<Torrent>, EngineError> {
        let addr = cfg.listen;
        let local = listener
            .local_addr()
            .map_err(|source| EngineError::Listen { addr, source })?;
        let t = Torrent::build(meta, store, cfg, local);
        stop_with(Torrents::on(listener, local, vec![t.clone()]), &t);
        Ok(t)
    }

    /// Starts one engine per torrent behind a single listener bound before
    /// (on `cfg.listen`): an incoming peer goes to the torrent its handshake
    /// names (as other clients serve many torrents on one port).
    pub fn start_many(
        torrents: Vec<(Arc<Metainfo>, Arc<Store>)>,
        cfg: EngineConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<Vec<Arc<Torrent>>, EngineError> {
        let addr = cfg.listen;
        let local = listener
            .local_addr()
            .map_err(|source| EngineError::Listen { addr, source })?;
        let all: Vec<Arc<Torrent>> = torrents
            .into_iter()
            .map(|(meta, store)| Torrent::build(meta, store, cfg.clone(), local))
            .collect();
        if let Some(first) = all.first() {
            stop_with(Torrents::on(listener, local, all.clone()), first);
        }
        Ok(all)
    }

    /// The torrent's state and background tasks, listening at `local`.
    fn build(
        meta: Arc<Metainfo>,
        store: Arc<Store>,
        cfg: EngineConfig,
        local: SocketAddr,
    ) -> Arc<Torrent> {
        let have = store.on_disk();
        let mut picker = Picker::new(meta.piece_length, meta.total_length, have);
        picker.fetch_all = cfg.fetch_all;
        picker.only = cfg.only.clone();
        // Read-ahead and background pieces in progress: about 8 MiB of each
        // kind (at least one piece). Their blocks are on disk, but each
        // holds its senders' unverified data, and one started is finished
        // before another is begun.
        picker.max_active_normal = ((8u64 << 20) / meta.piece_length.max(1)).clamp(1, 64) as usize;
        let span = tracing::info_span!("torrent", ih = %&meta.info_hash.hex()[..8]);
        let (shutdown, _) = watch::channel(false);
        let t = Arc::new(Torrent {
            peer_id: crate::new_peer_id(),
            state: Mutex::new(State {
                picker,
                peers: HashMap::new(),
                waiters: HashMap::new(),
                known: HashMap::new(),
                banned: HashSet::new(),
                blame: blame::Blame::default(),
                block_hashes: Default::default(),
                closed: false,
                optimistic: None,
                choke_round: 0,
                bought: Bitfield::new(meta.num_pieces()),
            }),
            shutdown,
            stats: Stats::default(),
            connector_wake: Notify::new(),
            choker_wake: Notify::new(),
            listen_addr: Mutex::new(Some(local)),
            span,
            paying: Default::default(),
            disk: disk::DiskQueue::new(),
            discovery: Mutex::new(discovery::Discovery::new(
                match cfg.use_trackers {
                    true => meta.trackers.iter().flatten().count(),
                    false => 0,
                },
                cfg.dht.is_some() && !meta.private,
                cfg.lsd.is_some() && !meta.private,
                cfg.peers.len(),
            )),
            status_task: Mutex::new(None),
            meta,
            store,
            cfg,
        });
        info!(parent: &t.span, listen = %local, pieces = t.meta.num_pieces(), have = t.lock().picker.have().count(), "engine started");
        for p in t.cfg.peers.clone() {
            t.add_peer(p);
        }
        tokio::spawn(t.clone().connector().instrument(t.span.clone()));
        tokio::spawn(t.clone().choker().instrument(t.span.clone()));
        tokio::spawn(t.clone().flusher().instrument(t.span.clone()));
        tokio::spawn(disk::writer(t.clone()).instrument(t.span.clone()));
        if !t.cfg.role.is_empty() {
            let task = tokio::spawn(t.clone().status_loop().instrument(t.span.clone()));
            *t.status_task.lock().expect("lock") = Some(task);
        }
        if t.cfg.use_trackers && !t.meta.trackers.is_empty() {
            // A hybrid announces itself in both of its swarms.
            for hash in t.meta.swarms() {
                tokio::spawn(t.clone().tracker_loop(hash).instrument(t.span.clone()));
            }
        }
        match &t.cfg.dht {
            // BEP 27: a private torrent's peers come from its trackers only.
            Some(_) if t.meta.private => info!(parent: &t.span, "private torrent: DHT not used"),
            // A hybrid looks for (and announces to) both of its swarms.
            Some(node) => {
                for hash in t.meta.swarms() {
                    tokio::spawn(
                        t.clone()
                            .dht_loop(node.0.clone(), hash)
                            .instrument(t.span.clone()),
                    );
                }
            }
            None => {}
        }
        match &t.cfg.lsd {
            Some(_) if t.meta.private => {}
            // A hybrid too is announced in both of its swarms.
            Some(node) => {
                for hash in t.meta.swarms() {
                    tokio::spawn(
                        t.clone()
                            .lsd_loop(node.0.clone(), hash)
                            .instrument(t.span.clone()),
                    );
                }
            }
            None => {}
        }
        t
    }

    /// BEP 14: announces our port to the local network every 5 minutes
    /// (first at once) and dials the peers announced for swarm `hash`.
    async fn lsd_loop(self: Arc<Self>, node: Arc<crate::lsd::LsdNode>, hash: [u8; 20]) {
        let mut stop = self.shutdown.subscribe();
        let mut found = node.subscribe(hash);
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {
                    if let Some(a) = self.listen_addr() {
                        node.announce(hash, a.port()).await;
                    }
                }
                a = found.recv() => {
                    let Some(a) = a else { return };
                    if Some(a) == self.listen_addr() {
                        continue;
                    }
                    n += 1;
                    if n == 1 || n.is_power_of_two() {
                        info!(found = n, "peers from local peer discovery");
                    }
                    self.add_peer_in(a, hash);
                }
            }
        }
    }

    /// Peers from the DHT of swarm `hash` for as long as the torrent runs;
    /// its lookups announce our port.
    async fn dht_loop(self: Arc<Self>, node: Arc<crate::dht::DhtNode>, hash: [u8; 20]) {
        let mut stop = self.shutdown.subscribe();
        let port = self.listen_addr().map(|a| a.port());
        let mut peers = node.peers(hash, port);
        let mut found = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                a = peers.next() => {
                    let Some(a) = a else { return };
                    if Some(a) == self.listen_addr() {
                        continue;
                    }
                    found += 1;
                    if found == 1 || found.is_power_of_two() {
                        info!(found, "peers from the DHT");
                    }
                    self.add_peer_in(a, hash);
                }
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The payment extension's name, if this torrent sells or buys.
    pub(crate) fn pay_ext_name(&self) -> Option<&'static str> {
        match (&self.cfg.pay, &self.cfg.buy) {
            (Some(p), _) => Some(p.0.ext_name()),
            (None, Some(b)) => Some(b.0.ext_name()),
            _ => None,
        }
    }

    pub fn listen_addr(&self) -> Option<SocketAddr> {
        *self.listen_addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Rewrites this torrent's status file once a second when it changed
    /// (see [`status`]).
    async fn status_loop(self: Arc<Self>) {
        let hex = self.meta.info_hash.hex();
        let mut stop = self.shutdown_signal();
        let mut iv = tokio::time::interval(Duration::from_secs(1));
        let mut last = (0u64, 0u64, Instant::now());
        let mut written: Option<status::Report> = None;
        // Nobody to ask: said in the log once alone for a while, then again
        // when the reason changes or every 5 minutes.
        let (mut alone_since, mut said) = (None::<Instant>, None::<(String, Instant)>);
        loop {
            tokio::select! {
                _ = iv.tick() => {}
                // The value, not only a change: a shutdown may come before
                // this task first runs (a shutdown waits for it).
                _ = stop.wait_for(|&down| down) => break,
            }
            let note = match self.peer_count() == 0 && !self.is_complete() {
                true => Some(self.discovery().no_peers()),
                false => None,
            };
            match &note {
                Some(text) => {
                    let since = *alone_since.get_or_insert_with(Instant::now);
                    let due = match &said {
                        None => since.elapsed() >= Duration::from_secs(10),
                        Some((t, at)) => t != text || at.elapsed() >= Duration::from_secs(300),
                    };
                    if due {
                        warn!(parent: &self.span, "{text}");
                        said = Some((text.clone(), Instant::now()));
                    }
                }
                None => (alone_since, said) = (None, None),
            }
            let (down, up) = (
                self.stats.downloaded.load(Ordering::Relaxed),
                self.stats.uploaded.load(Ordering::Relaxed),
            );
            let dt = last.2.elapsed().as_secs_f64().max(1e-3);
            let money = self.money();
            let paid_peers = self.cfg.buy.as_ref().map_or(0, |b| b.0.paid_peers());
            let peers = self.lock().peers.len();
            let r = status::Report {
                pid: std::process::id(),
                role: self.cfg.role.clone(),
                torrent: self.meta.name.clone(),
                info_hash: hex.clone(),
                pieces_have: self.have().count(),
                pieces_total: self.meta.num_pieces(),
                peers,
                paid_peers,
                // No connection, nothing moves (a rate left from the last
                // peer's final second would say otherwise).
                down_bytes_per_sec: if peers == 0 {
                    0.0
                } else {
                    (down - last.0) as f64 / dt
                },
                up_bytes_per_sec: if peers == 0 {
                    0.0
                } else {
                    (up - last.1) as f64 / dt
                },
                downloaded: down,
                uploaded: up,
                rejected: self.stats.rejected.load(Ordering::Relaxed),
                money,
                note,
                http: self.cfg.http.clone(),
                waiting: {
                    let mut w = self.waiting();
                    w.truncate(3);
                    w
                },
                uid: 0,
            };
            last = (down, up, Instant::now());
            // Only a change is written: a library of a thousand idle
            // torrents would otherwise create and rename a thousand files a
            // second (readers judge a file by its process, not its age).
            // A file removed by someone else (a /tmp cleaner) is written again.
            if written.is_some() && !status::path_for(&hex).exists() {
                written = None;
            }
            if written.as_ref() != Some(&r) {
                match status::write(&r) {
                    Ok(()) => written = Some(r),
                    Err(e) => {
                        debug!(parent: &self.span, error = %e, "writing the status file failed")
                    }
                }
            }
        }
        status::remove(&hex);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Adds a peer address to dial (up to [`MAX_KNOWN`] addresses are kept:
    /// trackers and the DHT may hand out many).
    pub fn add_peer(&self, addr: SocketAddr) {
        self.add_peer_in(addr, self.meta.info_hash.0)
    }

    /// [`Torrent::add_peer`], for a peer found in swarm `hash` (one of
    /// [`Metainfo::swarms`]).
    fn add_peer_in(&self, addr: SocketAddr, hash: [u8; 20]) {
        let mut st = self.lock();
        if st.banned.contains(&addr.ip()) {
            return;
        }
        if st.known.len() >= MAX_KNOWN && !st.known.contains_key(&addr) {
            return;
        }
        let v1 = hash == self.meta.info_hash.0;
        st.known
            .entry(addr)
            .and_modify(|k| {
                if v1 {
                    k.swarm = None;
                }
            })
            .or_insert_with(|| Known {
                swarm: (!v1).then_some(hash),
                ..Default::default()
            });
        drop(st);
        self.connector_wake.notify_one();
    }

    /// Addresses a peer told us of through PEX (see [`Torrent::add_peer`]);
    /// returns how many were new.
    pub(crate) fn add_peers_from_pex(&self, addrs: &[SocketAddr]) -> usize {
        let own = self.listen_addr();
        let mut st = self.lock();
        let mut new = 0;
        for a in addrs {
            if st.banned.contains(&a.ip()) || Some(*a) == own || st.known.contains_key(a) {
                continue;
            }
            if st.known.len() >= MAX_KNOWN {
                break;
            }
            st.known.entry(*a).or_default();
            new += 1;
        }
        drop(st);
        if new > 0 {
            self.connector_wake.notify_one();
        }
        new
    }

    /// An incoming peer announced where it listens.
    pub(crate) fn set_listen(&self, key: PeerKey, addr: SocketAddr) {
        if let Some(p) = self.lock().peers.get_mut(&key) {
            p.listen = Some(addr);
        }
    }

    /// What PEX tells peer `except` of: where our other peers listen, with
    /// BEP 11 flags (connectable: we reached it).
    pub(crate) fn pex_peers(&self, except: PeerKey) -> Vec<(SocketAddr, u8)> {
        let st = self.lock();
        st.peers
            .iter()
            .filter(|(k, _)| **k != except)
            .filter_map(|(_, p)| {
                let flags = match p.incoming {
                    false => crate::wire::pex::FLAG_CONNECTABLE,
                    true => 0,
                };
                p.listen.map(|a| (a, flags))
            })
            .filter(|(a, _)| !st.banned.contains(&a.ip()))
            .collect()
    }

    pub fn have(&self) -> Bitfield {
        self.lock().picker.have().clone()
    }

    pub fn is_complete(&self) -> bool {
        self.lock().picker.have().is_complete()
    }

    /// Whether every piece in `pieces` is verified.
    pub fn has_pieces(&self, mut pieces: Range<usize>) -> bool {
        let st = self.lock();
        pieces.all(|p| st.picker.have().get(p))
    }

    pub fn peer_count(&self) -> usize {
        self.lock().peers.len()
    }

    fn wake_peers(st: &State) {
        for p in st.peers.values() {
            p.wake.notify_one();
        }
    }

    /// Marks `pieces` as the read-ahead window of file handle `handle`.
    pub fn set_window(&self, handle: u64, pieces: Range<usize>) {
        let mut st = self.lock();
        st.picker.set_window(handle, pieces);
        Self::wake_peers(&st);
    }

    pub fn clear_window(&self, handle: u64) {
        let mut st = self.lock();
        st.picker.clear_window(handle);
    }

    /// Waits until every piece in `pieces` is verified (they are critical meanwhile).
    pub async fn wait_pieces(
        &self,
        pieces: impl IntoIterator<Item = usize>,
    ) -> Result<(), EngineError> {
        let mut rxs = Vec::new();
        let mut guard = CriticalGuard {
            t: self,
            pieces: Vec::new(),
        };
        {
            let mut st = self.lock();
            if st.closed {
                return Err(EngineError::Shutdown);
            }
            for p in pieces {
                if st.picker.have().get(p) {
                    continue;
                }
                st.picker.add_critical(p);
                guard.pieces.push(p);
                let (tx, rx) = oneshot::channel();
                st.waiters.entry(p).or_default().push(tx);
                rxs.push(rx);
            }
            if !rxs.is_empty() {
                Self::wake_peers(&st);
            }
        }
        for rx in rxs {
            match rx.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(EngineError::Shutdown),
            }
        }
        Ok(())
    }

    /// Reads torrent bytes `[offset, offset+len)`, waiting for the pieces under them.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes, EngineError> {
        let len = len.min(self.meta.total_length.saturating_sub(offset));
        if len == 0 {
            return Ok(Bytes::new());
        }
        let pieces = self.meta.pieces_for_range(offset, len);
        self.wait_pieces(pieces).await?;
        if let Some(b) = self.store.read_range_memory(offset, len) {
            return Ok(b);
        }
        let store = self.store.clone();
        Ok(
            tokio::task::spawn_blocking(move || store.read_range(offset, len))
                .await
                .map_err(|_| EngineError::Shutdown)??,
        )
    }

    /// Resolves when every piece (with `only`: every selected piece) is verified.
    pub async fn wait_complete(&self) -> Result<(), EngineError> {
        let n = self.meta.num_pieces();
        match &self.cfg.only {
            Some(only) => self.wait_pieces(only.ones().collect::<Vec<_>>()).await,
            None => self.wait_pieces(0..n).await,
        }
    }

    /// Stops everything: waiting reads fail, peers are closed, the store is flushed.
    pub async fn shutdown(&self) {
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            for (_, ws) in st.waiters.drain() {
                for w in ws {
                    let _ = w.send(Err(EngineError::Shutdown));
                }
            }
            for p in st.peers.values() {
                let _ = p.cmd.send(PeerCmd::Close("shutting down".into()));
            }
        }
        let _ = self.shutdown.send(true);
        let status = self.status_task.lock().expect("lock").take();
        if let Some(task) = status {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        // Bought pieces still being stored are paid for before we go (the
        // seller served them); bounded, a stuck disk cannot hold us.
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.paying.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let store = self.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.flush()).await;
        info!(parent: &self.span, "engine stopped");
    }

    /// A piece's blocks are all written: read it back and hash it off the
    /// runtime, then publish or retry it.
    pub(crate) fn check(self: &Arc<Self>, piece: usize, from: Vec<PeerKey>) {
        let t = self.clone();
        let judge = {
            let st = self.lock();
            st.blame.has(piece) || st.block_hashes.is_pending(piece)
        };
        // Counted as paying until settled: a shutdown waits for it.
        self.paying.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(
            async move {
                let c = t.clone();
                let checked = tokio::task::spawn_blocking(move || disk::check(&c, piece, judge)).await;
                match checked {
                    Ok(Ok(c)) if c.ok => t.piece_ok(piece, from, c),
                    Ok(Ok(c)) => {
                        t.settle_paid(piece, &from, false);
                        t.piece_bad(piece, from, c.blocks);
                    }
                    Ok(Err(e)) => {
                        warn!(piece, error = %e, "reading a piece back failed; it is fetched again");
                        t.piece_unwritten(piece, &from);
                    }
                    Err(_) => {}
                }
                t.paying.fetch_sub(1, Ordering::SeqCst);
            }
            .instrument(self.span.clone()),
        );
    }

    /// A piece whose blocks could not all be written (or read back): not
    /// paid for, nobody blamed, fetched again; reads waiting on it fail
    /// rather than wait on a disk that refuses it.
    pub(crate) fn piece_unwritten(&self, piece: usize, from: &[PeerKey]) {
        self.settle_paid(piece, from, false);
        let mut st = self.lock();
        st.picker.piece_failed(piece);
        if let Some(ws) = st.waiters.remove(&piece) {
            for w in ws {
                let _ = w.send(Err(EngineError::Unwritable(piece)));
            }
        }
        Self::wake_peers(&st);
    }

    /// Tells the buyer which connections sent the blocks of a checked piece:
    /// paid for if it verified (and is held), released if not.
    fn settle_paid(&self, piece: usize, from: &[PeerKey], ok: bool) {
        let Some(buy) = &self.cfg.buy else {
            return;
        };
        let size = self.meta.piece_size(piece);
        let mut per: HashMap<PeerKey, u64> = HashMap::new();
        for (b, k) in from.iter().enumerate() {
            let begin = b as u64 * crate::wire::BLOCK_SIZE as u64;
            let len = (size - begin).min(crate::wire::BLOCK_SIZE as u64);
            *per.entry(*k).or_default() += len;
        }
        for (conn, bytes) in per {
            if ok {
                buy.0.verified(conn, bytes);
            } else {
                buy.0.release(conn, bytes);
                buy.0.wasted(conn, bytes);
            }
        }
    }

    /// A piece passed its hash check: readable at once, written to disk, and
    /// — if a seller sent part of it — paid for only once it is durably
    /// held (synced and recorded), so a crash never pays twice.
    fn piece_ok(self: &Arc<Self>, piece: usize, from: Vec<PeerKey>, checked: disk::Checked) {
        if self.lock().picker.have().get(piece) {
            // A duplicate that raced the first copy: held already, and not
            // paid a second time.
            self.settle_paid(piece, &from, false);
            return;
        }
        if let Some(blocks) = &checked.blocks {
            // A v2 piece still waiting for its block hashes: its good data
            // has them.
            if self.lock().block_hashes.is_pending(piece) {
                let liars = self.lock().block_hashes.judge(piece, &blocks.v2);
                self.ban_block_liars(piece, liars, "the verified piece");
            }
            // A piece that failed before with several senders: whoever sent
            // a block that differs from the good data lied.
            let earlier = self.lock().blame.take(piece);
            if let Some(e) = earlier {
                for ip in blame::liars(&e, &blocks.blame) {
                    self.ban_ip(ip, "sent a bad block in a piece that failed its hash check");
                }
            }
        }
        if let Some(data) = checked.whole {
            self.store.keep(piece, data);
        }
        {
            let mut st = self.lock();
            st.picker.piece_verified(piece);
            if let Some(ws) = st.waiters.remove(&piece) {
                for w in ws {
                    let _ = w.send(Ok(()));
                }
            }
            for p in st.peers.values() {
                let _ = p.cmd.send(PeerCmd::Have(piece as u32));
            }
        }
        let paid = self
            .cfg
            .buy
            .as_ref()
            .is_some_and(|b| from.iter().any(|k| b.0.pays(*k)));
        if paid {
            self.lock().bought.set(piece);
        }
        let store = self.store.clone();
        let span = self.span.clone();
        if !paid {
            // Nothing to pay: reservations of its senders (a seller whose
            // channel was cleared) are only given back. Its bytes are on
            // disk; the flusher syncs and records it.
            self.settle_paid(piece, &from, true);
            store.written(piece);
            return;
        }
        self.paying.fetch_add(1, Ordering::SeqCst);
        let t = self.clone();
        tokio::spawn(async move {
            let r = tokio::task::spawn_blocking(move || store.write_durable(piece)).await;
            match r {
                Ok(Ok(())) => {
                    crate::failpoint::hit("buyer-piece-held");
                    t.settle_paid(piece, &from, true)
                }
                Ok(Err(e)) => {
                    warn!(parent: &span, piece, error = %e, "a bought piece could not be stored; not paying for it");
                    t.settle_paid(piece, &from, false);
                }
                Err(_) => t.settle_paid(piece, &from, false),
            }
            t.paying.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// A piece failed its hash check. `blocks`: for a v2 piece, the block
    /// hash request that names its bad blocks and each block's SHA-256.
    fn piece_bad(&self, piece: usize, from: Vec<PeerKey>, blocks: Option<disk::Blocks>) {
        self.stats.hash_failures.fetch_add(1, Ordering::Relaxed);
        self.stats
            .wasted
            .fetch_add(self.meta.piece_size(piece), Ordering::Relaxed);
        let mut st = self.lock();
        st.picker.piece_failed(piece);
        let Some(blocks) = blocks else {
            Self::wake_peers(&st);
            return;
        };
        // A v2 piece's block hashes will name its bad blocks (a hybrid's,
        // only if its v2 hashes too say it is wrong).
        let v2_blocks = self.meta.v2.as_ref().and_then(|v| {
            let spans = v.block_requests(piece);
            (!spans.is_empty() && !v.leaves_ok(piece, &blocks.v2)).then_some((spans, blocks.v2))
        });
        let blocks: Vec<_> = blocks
            .blame
            .into_iter()
            .zip(&from)
            .map(|(d, k)| (st.peers.get(k).map(|p| p.addr.ip()), d))
            .collect();
        match st.blame.failed(piece, &blocks) {
            blame::Failed::Convicted(ip) => {
                drop(st);
                self.ban_ip(ip, "sent data that failed the hash check");
                return;
            }
            blame::Failed::RetryAlone => {
                debug!(parent: &self.span, piece, "hash failure with several senders: fetching the piece again from one peer alone");
                st.picker.retry_alone(piece);
                if let Some((spans, digests)) = v2_blocks {
                    let senders = from.iter().map(|k| st.peers.get(k).map(|p| p.addr.ip()));
                    let blocks = senders.zip(digests).collect();
                    st.block_hashes.failed(piece, spans, blocks, Instant::now());
                    debug!(parent: &self.span, piece, "asking for the failed piece's block hashes");
                    for p in st.peers.values() {
                        let _ = p.cmd.send(PeerCmd::AskBlockHashes(piece));
                    }
                }
            }
        }
        Self::wake_peers(&st);
    }

    /// A peer asked for a failed piece's block hashes (see [`block_hashes`])
    /// may send the requests: those still wanted.
    pub(crate) fn may_ask_block_hashes(&self, piece: usize) -> Vec<v2::BlockSpan> {
        self.lock().block_hashes.may_ask(piece)
    }

    /// `from` answered a block-layer hash request: if it is one we asked
    /// and the hashes check out against the piece's hash, whoever sent a
    /// block that differs is banned at once; wrong hashes ban `from`.
    pub(crate) fn block_hashes_answered(
        &self,
        from: SocketAddr,
        span: v2::BlockSpan,
        hashes: &[u8],
    ) {
        let Some(v) = self.meta.v2.as_ref() else {
            return;
        };
        let hashes: Vec<v2::Hash> = hashes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32"))
            .collect();
        let Some(piece) = self.lock().block_hashes.pending_piece(span) else {
            return;
        };
        // Hashed off the lock.
        if !v.block_hashes_ok(piece, span, &hashes) {
            self.ban(from, "sent block hashes that do not match the piece's hash");
            return;
        }
        let liars = self.lock().block_hashes.judge_span(span, &hashes);
        self.ban_block_liars(piece, liars, "a peer's answer");
    }

    /// Bans the senders of the bad blocks of a failed v2 piece, as its
    /// block hashes (from `source`) showed them.
    fn ban_block_liars(&self, piece: usize, liars: Vec<(IpAddr, usize)>, source: &str) {
        debug!(parent: &self.span, piece, liars = liars.len(), source, "block hashes checked a failed piece");
        for (ip, block) in liars {
            let why = format!("sent block {block} of piece {piece}, which failed its block hash");
            self.ban_ip(ip, &why);
        }
    }

    /// A peer refused a block-layer hash request: another holding the
    /// piece may be asked in its place.
    pub(crate) fn block_hashes_refused(&self, span: v2::BlockSpan) {
        let mut st = self.lock();
        if let Some(piece) = st.block_hashes.refused(span) {
            for p in st.peers.values() {
                let _ = p.cmd.send(PeerCmd::AskBlockHashes(piece));
            }
        }
    }

    /// Bans `addr`'s IP for this torrent's life (it broke the protocol).
    pub(crate) fn ban(&self, addr: SocketAddr, why: &str) {
        self.ban_ip(addr.ip(), why);
    }

    /// Refuses every connection from `ip` from now on, closes those open,
    /// and fetches again the blocks they gave to pieces in progress.
    fn ban_ip(&self, ip: IpAddr, why: &str) {
        let mut st = self.lock();
        if !st.banned.insert(ip) {
            return;
        }
        warn!(parent: &self.span, %ip, reason = why, "peer banned, every connection from its address refused");
        for k in st.keys_of(ip) {
            st.picker.discard_from(k);
            if let Some(p) = st.peers.get(&k) {
                let _ = p.cmd.send(PeerCmd::Close(why.into()));
            }
        }
        Self::wake_peers(&st);
    }

    pub(crate) fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.lock().banned.contains(&addr.ip())
    }

    /// Bytes one IP may have delivered to pieces not yet verified before it
    /// may begin no new piece (it may still finish those it started): what
    /// a liar can spoil before a hash check catches it.
    pub(crate) fn unverified_cap(&self) -> u64 {
        (4 * self.meta.piece_length).max(8 << 20)
    }

    /// Registers a connected peer; `None` if it is a duplicate, ourselves or over the limit.
    pub(crate) fn register_peer(
        &self,
        addr: SocketAddr,
        peer_id: [u8; 20],
        wake: Arc<Notify>,
        cmd: mpsc::UnboundedSender<PeerCmd>,
        incoming: bool,
    ) -> Result<PeerKey, String> {
        let mut st = self.lock();
        if st.closed {
            return Err("shutting down".into());
        }
        if peer_id == self.peer_id {
            return Err("connected to ourselves".into());
        }
        if st.banned.contains(&addr.ip()) {
            return Err("banned".into());
        }
        // The same peer twice (we dialled each other) has the same address's
        // IP; a peer id on another IP may be stolen (anyone learns it by
        // connecting), so it must not shut out the real peer.
        if st
            .peers
            .values()
            .any(|p| p.peer_id == peer_id && p.addr.ip() == addr.ip())
        {
            return Err("already connected to this peer".into());
        }
        // Slots are kept for our own dials (peers we chose: trackers,
        // `--peer`), so a crowd connecting to us cannot shut them out; when
        // slots are short, an idle incoming peer makes room.
        let reserve = (self.cfg.max_peers / 4).max(2).min(self.cfg.max_peers / 2);
        let inbound = st.peers.values().filter(|p| p.incoming).count();
        let full = st.peers.len() >= self.cfg.max_peers
            || (incoming && inbound >= self.cfg.max_peers.saturating_sub(reserve));
        if full {
            let now = Instant::now();
            let victim = st
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.idle(now)
                        || (!incoming
                            && p.incoming
                            && !p.speaks_pay
                            && p.rate_down == 0.0
                            && !p.peer_interested)
                })
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| *k);
            match victim {
                Some(k) => {
                    if let Some(p) = st.peers.remove(&k) {
                        // Its pieces leave the picker when its session ends.
                        let _ = p.cmd.send(PeerCmd::Close(
                            "evicted: gave nothing while slots were short".into(),
                        ));
                        debug!(parent: &self.span, evicted = %p.addr, for_ = %addr, "peer slots short: evicted an idle peer");
                    }
                }
                None => return Err("too many peers".into()),
            }
        }
        // Unique in the process, not only in this torrent: one buyer agent
        // may serve several torrents and names connections by their key.
        static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        st.peers.insert(
            key,
            PeerEntry {
                addr,
                listen: (!incoming).then_some(addr),
                peer_id,
                wake,
                cmd,
                rate_down: 0.0,
                rate_up: 0.0,
                peer_interested: false,
                am_choking: true,
                incoming,
                speaks_pay: false,
                since: Instant::now(),
                they_choke: true,
                seller: false,
            },
        );
        if let Some(k) = st.known.get_mut(&addr) {
            k.connected = true;
            k.failures = 0;
        }
        Ok(key)
    }

    /// A session ended: its peer's pieces (`has`, which the session owns)
    /// and requests leave the picker.
    pub(crate) fn unregister_peer(
        &self,
        key: PeerKey,
        has: &Bitfield,
        outstanding: &[crate::wire::BlockRef],
    ) {
        let mut st = self.lock();
        st.picker.remove_peer_pieces(has);
        if let Some(p) = st.peers.remove(&key) {
            if let Some(k) = st.known.get_mut(&p.addr) {
                k.connected = false;
            }
        }
        for r in outstanding {
            st.picker.release(key, r);
        }
        Self::wake_peers(&st);
        drop(st);
        self.connector_wake.notify_one();
        self.choker_wake.notify_one();
    }

    fn discovery(&self) -> MutexGuard<'_, discovery::Discovery> {
        self.discovery.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why a wait for data may be long: "no peers yet: …" (see
    /// [`discovery`]), or how many peers are connected and whether any has
    /// the first piece of `pieces` still missing.
    pub fn waiting_for(&self, pieces: Range<usize>) -> String {
        let st = self.lock();
        if st.peers.is_empty() {
            drop(st);
            return self.discovery().no_peers();
        }
        let peers = discovery::plural(st.peers.len(), "peer");
        match pieces.into_iter().find(|&p| !st.picker.have().get(p)) {
            Some(p) => format!("{peers} connected, piece {p} not received yet"),
            None => format!("{peers} connected"),
        }
    }

    pub(crate) fn note_dial_error(&self, e: &conn::PeerError) {
        self.discovery().dial_failed(discovery::dial_error_text(e));
    }

    pub(crate) fn note_dial_failure(&self, addr: SocketAddr) {
        let mut st = self.lock();
        if let Some(k) = st.known.get_mut(&addr) {
            k.failures += 1;
            k.connected = false;
        }
    }

    pub(crate) fn trigger_choker(&self) {
        self.choker_wake.notify_one();
    }

    /// Dials known peers that are not connected, with exponential back-off per address.
    async fn connector(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            let now = Instant::now();
            let dial: Vec<(SocketAddr, Option<[u8; 20]>)> = {
                let mut st = self.lock();
                let room = self.cfg.max_peers.saturating_sub(st.peers.len());
                let own = self.listen_addr();
                let banned = st.banned.clone();
                let waiting = st.picker.reader_waits();
                let mut out = Vec::new();
                for (addr, k) in st.known.iter_mut() {
                    if out.len() >= room {
                        break;
                    }
                    if k.connected || banned.contains(&addr.ip()) || Some(*addr) == own {
                        continue;
                    }
                    let backoff = redial::after(k.failures, waiting && k.served);
                    if k.last_attempt
                        .is_some_and(|t| now.duration_since(t) < backoff)
                    {
                        continue;
                    }
                    k.last_attempt = Some(now);
                    k.connected = true; // until the dial fails or the session ends
                    out.push((*addr, k.swarm));
                }
                out
            };
            for (addr, swarm) in dial {
                let hash = swarm.unwrap_or(self.meta.info_hash.0);
                tokio::spawn(conn::dial(self.clone(), addr, hash));
            }
            // While a reader waits, rounds come as often as urgent redials.
            let round = match self.lock().picker.reader_waits() {
                true => redial::URGENT,
                false => Duration::from_millis(500),
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.connector_wake.notified() => {},
                _ = tokio::time::sleep(round) => {},
            }
        }
    }

    /// Re-evaluates upload slots every 10 s, or when interest changes.
    async fn choker(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            {
                let mut st = self.lock();
                st.choke_round += 1;
                let seeding = st.picker.have().is_complete();
                let cands: Vec<choke::Candidate> = st
                    .peers
                    .iter()
                    .map(|(&key, p)| choke::Candidate {
                        key,
                        interested: p.peer_interested,
                        rate: if seeding { p.rate_up } else { p.rate_down },
                    })
                    .collect();
                let rotate = st.choke_round.is_multiple_of(3);
                let (unchoke, opt) = choke::choose(
                    &cands,
                    self.cfg.upload_slots,
                    st.optimistic,
                    rotate,
                    rand::random::<u32>() as usize,
                );
                st.optimistic = opt;
                for (key, p) in st.peers.iter_mut() {
                    let want_unchoked = unchoke.contains(key);
                    if want_unchoked == p.am_choking {
                        p.am_choking = !want_unchoked;
                        let _ = p.cmd.send(if want_unchoked {
                            PeerCmd::Unchoke
                        } else {
                            PeerCmd::Choke
                        });
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.choker_wake.notified() => {},
                _ = tokio::time::sleep(Duration::from_secs(10)) => {},
            }
        }
    }

    /// Persists the on-disk bitfield once a second while pieces arrive.
    async fn flusher(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {},
            }
            let store = self.store.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.flush()).await {
                warn!(error = %e, "persisting progress failed");
            }
        }
    }

    fn announce_request(&self, hash: [u8; 20], event: Event, key: u32) -> AnnounceRequest {
        let left = {
            let st = self.lock();
            let have = st.picker.have();
            (0..have.len())
                .filter(|&p| !have.get(p))
                .map(|p| self.meta.piece_size(p))
                .sum()
        };
        AnnounceRequest {
            info_hash: hash,
            peer_id: self.peer_id,
            port: self.listen_addr().map(|a| a.port()).unwrap_or(0),
            uploaded: self.stats.uploaded.load(Ordering::Relaxed),
            downloaded: self.stats.downloaded.load(Ordering::Relaxed),
            left,
            event,
            numwant: 50,
            key,
            tracker_id: None,
        }
    }

    /// Announces `started` for swarm `hash`, then again on the tracker's
    /// interval; `stopped` at the end.
    async fn tracker_loop(self: Arc<Self>, hash: [u8; 20]) {
        let mut stop = self.shutdown.subscribe();
        let mut set = TrackerSet::new(self.meta.trackers.clone());
        let mut schedule = Schedule::default();
        let key: u32 = rand::random();
        let mut event = Event::Started;
        let mut completed_sent = self.is_complete();
        loop {
            let req = self.announce_request(hash, event, key);
            let wait = match set.announce(&req, self.cfg.announce_timeout).await {
                Ok(resp) => {
                    let (n, asked) = (resp.peers.len(), resp.interval);
                    for p in resp.peers {
                        self.add_peer(p);
                    }
                    event = Event::None;
                    // Connected peers only: an address may not answer.
                    let have_peers = self.peer_count() > 0;
                    let wait = schedule.answered(asked, resp.min_interval, have_peers);
                    info!(peers = n, interval = ?asked, next_in = ?wait, "announced");
                    self.discovery().tracker_answered();
                    wait
                }
                Err(e) => {
                    let wait = schedule.failed();
                    warn!(error = %e, retry_in = ?wait, "announce failed");
                    self.discovery().tracker_failed(e.to_string());
                    wait
                }
            };
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = stop.changed() => {
                        let req = self.announce_request(hash, Event::Stopped, key);
                        let _ = set.announce(&req, Duration::from_millis(500)).await;
                        return;
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if !completed_sent && self.is_complete() {
                            completed_sent = true;
                            event = Event::Completed;
                            break;
                        }
                    }
                }
            }
        }
    }
}
