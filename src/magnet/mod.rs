//! Magnet links: getting a torrent's info dictionary when all we have is its
//! info-hash (BEP 9).
//!
//! This runs before the torrent's engine exists, on connections of its own:
//! the engine needs the metadata for everything it does (piece count,
//! bitfields, the store), and a short first phase that ends with a verified
//! dictionary keeps the engine free of a "no metadata yet" state (with, for
//! a v2-only torrent, its piece layers: [`layers`]). Peers come
//! from the magnet's `x.pe=` and `--peer`, from its trackers (announced
//! to on the tracker's schedule), from the DHT and from LSD. Up to
//! [`PARALLEL`] peers are asked at once, each for the whole dictionary
//! ([`from_peer`]); the first verified copy wins. A peer that sends a wrong
//! copy is not asked again. A mount and `btt get` also ask the peers that
//! dial them meanwhile ([`fetch_listening`]): a seeder that heard of us
//! from a tracker, the DHT or LSD may be one we cannot dial.

pub mod from_peer;
pub mod layers;

use crate::metainfo::InfoHash;
use crate::tracker::{schedule::Schedule, AnnounceRequest, Event, TrackerSet};
use crate::wire::metadata::{MetadataMsg, NAME};
use crate::wire::{self, ExtHandshake, Handshake, Message};
use bytes::{Bytes, BytesMut};
pub use from_peer::Want;
use from_peer::{FetchError, FromPeer, Step};
use layers::{LayerError, LayerFetch};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tracing::{debug, info, warn, Instrument};

/// Peers asked at once.
pub const PARALLEL: usize = 8;
/// The id we receive `ut_metadata` on.
const OUR_ID: u8 = 3;
/// A peer that sends nothing useful for this long is let go.
const IDLE: Duration = Duration::from_secs(20);
/// An address that failed is tried again after this long.
const RETRY: Duration = Duration::from_secs(15);
/// Addresses remembered (tracker answers add to them).
const MAX_KNOWN: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum MagnetError {
    #[error("no metadata for {hash} within {secs} s ({why}); check the magnet's trackers and peers, or give --peer HOST:PORT, or a longer --metadata-timeout")]
    Timeout {
        hash: InfoHash,
        secs: u64,
        why: String,
    },
    #[error("stopped before the metadata arrived")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
enum PeerFail {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("not a BitTorrent peer: {0}")]
    Wire(#[from] wire::WireError),
    #[error("has another torrent")]
    OtherTorrent,
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Layers(#[from] LayerError),
}

/// What a magnet link's peers gave: the info dictionary and, for a v2-only
/// torrent, the piece layers it needs (pieces root, layer).
#[derive(Debug)]
pub struct Fetched {
    pub info: Vec<u8>,
    pub layers: Vec<LayerPair>,
    /// The peer that gave them: it has the torrent, so the engine dials it.
    pub from: SocketAddr,
}

impl Fetched {
    pub fn into_metainfo(
        self,
        trackers: Vec<Vec<String>>,
    ) -> Result<crate::metainfo::Metainfo, crate::metainfo::MetainfoError> {
        crate::metainfo::Metainfo::from_info_with_layers(&self.info, trackers, &self.layers)
    }
}

/// Where to look and who we are.
#[derive(Clone, Debug)]
pub struct Sources {
    pub peers: Vec<SocketAddr>,
    pub trackers: Vec<Vec<String>>,
    pub peer_id: [u8; 20],
    /// Our listening port, announced to trackers.
    pub port: u16,
    /// Our listening address: a tracker may hand it back to us.
    pub own: Option<SocketAddr>,
    pub announce_timeout: Duration,
    /// The process's DHT node, if it has one.
    pub dht: Option<crate::dht::DhtRef>,
    /// The process's local peer discovery node (`--lsd`), if it has one.
    pub lsd: Option<crate::lsd::LsdRef>,
}

#[derive(Default)]
struct Known {
    last_try: Option<Instant>,
    /// Sent a wrong copy: never again.
    liar: bool,
    busy: bool,
}

/// What the attempts so far ran into, for the timeout's message.
#[derive(Default)]
struct Tally {
    tried: usize,
    failures: HashMap<&'static str, usize>,
    tracker: Option<String>,
}

fn is_own(own: Option<SocketAddr>, a: SocketAddr) -> bool {
    own.is_some_and(|o| {
        o.port() == a.port()
            && (o.ip() == a.ip() || (o.ip().is_unspecified() && a.ip().is_loopback()))
    })
}

impl Tally {
    fn why(&self, known: usize) -> String {
        if known == 0 {
            return match &self.tracker {
                Some(e) => format!("no peers: the trackers failed ({e}), none from the DHT"),
                None => "no peers known".into(),
            };
        }
        let mut parts: Vec<String> = self
            .failures
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        parts.sort();
        format!("{} peers asked: {}", self.tried, parts.join(", "))
    }
}

fn kind(e: &PeerFail) -> &'static str {
    match e {
        PeerFail::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "refused the connection"
        }
        PeerFail::Io(_) => "dropped the connection",
        PeerFail::Timeout => "did not answer",
        PeerFail::Wire(_) => "spoke no BitTorrent",
        PeerFail::OtherTorrent => "have another torrent",
        PeerFail::Fetch(FetchError::NotServed) => "do not serve metadata",
        PeerFail::Fetch(FetchError::WrongHash) => "sent wrong metadata",
        PeerFail::Fetch(_) => "broke the metadata protocol",
        PeerFail::Layers(LayerError::Rejected) => "do not serve piece hashes",
        PeerFail::Layers(LayerError::WrongLayer) => "sent wrong piece hashes",
        PeerFail::Layers(_) => "broke the hash request protocol",
    }
}

/// Fetches and verifies the info dictionary of `want` (and the piece
/// layers a v2-only one needs), or gives up after `timeout` (or when
/// `stop` fires).
pub async fn fetch(
    want: Want,
    src: Sources,
    timeout: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut incoming: Option<Incoming>,
) -> Result<Fetched, MagnetError> {
    let hash = want.wire;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut known: HashMap<SocketAddr, Known> = HashMap::new();
    for p in &src.peers {
        known.entry(*p).or_default();
    }
    let (addr_tx, mut addr_rx) = tokio::sync::mpsc::channel::<Result<Vec<SocketAddr>, String>>(4);
    let dht = src.dht.clone().map(|node| {
        let (tx, port) = (addr_tx.clone(), (src.port != 0).then_some(src.port));
        tokio::spawn(
            async move {
                let mut peers = node.0.peers(hash.0, port);
                while let Some(a) = peers.next().await {
                    if tx.send(Ok(vec![a])).await.is_err() {
                        return;
                    }
                }
            }
            .in_current_span(),
        )
    });
    // Local peer discovery: who announces the hash on the local network,
    // and our port for those who look (every 5 minutes, as the engine).
    let lsd = src.lsd.clone().map(|node| {
        let (tx, port) = (addr_tx.clone(), src.port);
        tokio::spawn(
            async move {
                let mut found = node.0.subscribe(hash.0);
                let mut tick = tokio::time::interval(Duration::from_secs(300));
                loop {
                    tokio::select! {
                        _ = tick.tick(), if port != 0 => node.0.announce(hash.0, port).await,
                        a = found.recv() => {
                            let Some(a) = a else { return };
                            if tx.send(Ok(vec![a])).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
            .in_current_span(),
        )
    });
    let trackers = (!src.trackers.is_empty())
        .then(|| tokio::spawn(announce_loop(hash, src.clone(), addr_tx).in_current_span()));
    let mut tasks: JoinSet<(SocketAddr, Result<Fetched, PeerFail>)> = JoinSet::new();
    let mut answering: JoinSet<(SocketAddr, Result<Fetched, PeerFail>)> = JoinSet::new();
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    info!(
        peers = known.len(),
        trackers = src.trackers.len(),
        "fetching metadata"
    );
    let result = loop {
        // Dial whom we may.
        let now = Instant::now();
        for (addr, k) in known.iter_mut() {
            if tasks.len() >= PARALLEL {
                break;
            }
            if k.busy || k.liar || k.last_try.is_some_and(|t| now - t < RETRY) {
                continue;
            }
            k.busy = true;
            k.last_try = Some(now);
            tally.tried += 1;
            let (addr, src) = (*addr, src.clone());
            let span = tracing::debug_span!("metadata", %addr);
            tasks.spawn(async move { (addr, from_peer(addr, want, &src).await) }.instrument(span));
        }
        let dialed_us = async {
            match &mut incoming {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break Err(MagnetError::Stopped),
            peer = dialed_us => match peer {
                Some(p) if answering.len() < PARALLEL_INCOMING && !is_own(src.own, p.addr) => {
                    let (src, addr) = (src.clone(), p.addr);
                    let span = tracing::debug_span!("metadata", %addr, incoming = true);
                    answering.spawn(async move { (addr, from_incoming(p, want, &src).await) }.instrument(span));
                }
                Some(_) => {} // busy: it may dial again
                None => incoming = None,
            },
            _ = tokio::time::sleep_until(deadline) => break Err(MagnetError::Timeout {
                hash,
                secs: timeout.as_secs(),
                why: tally.why(known.len()),
            }),
            Some(done) = either(&mut tasks, &mut answering) => {
                let Ok((addr, r)) = done else { continue };
                match r {
                    Ok(got) => {
                        info!(%addr, bytes = got.info.len(), layers = got.layers.len(), "metadata received and verified");
                        break Ok(got);
                    }
                    Err(e) => {
                        debug!(%addr, error = %e, "no metadata from this peer");
                        if let Some(k) = known.get_mut(&addr) {
                            k.busy = false;
                            if matches!(e, PeerFail::Fetch(FetchError::WrongHash) | PeerFail::Layers(LayerError::WrongLayer)) {
                                warn!(%addr, error = %e, "not asking this peer again");
                                k.liar = true;
                            }
                        }
                        *tally.failures.entry(kind(&e)).or_default() += 1;
                    }
                }
            }
            Some(answer) = addr_rx.recv() => match answer {
                Ok(addrs) => {
                    for a in addrs.into_iter().filter(|a| !is_own(src.own, *a)) {
                        if known.len() < MAX_KNOWN {
                            known.entry(a).or_default();
                        }
                    }
                }
                Err(e) => tally.tracker = Some(e),
            },
            _ = tick.tick() => {}
        }
    };
    tasks.abort_all();
    answering.abort_all();
    for t in [trackers, dht, lsd].into_iter().flatten() {
        t.abort();
    }
    result
}

/// The next attempt to end, of those we dialed or those that dialed us.
async fn either<T: 'static>(
    a: &mut JoinSet<T>,
    b: &mut JoinSet<T>,
) -> Option<Result<T, tokio::task::JoinError>> {
    tokio::select! {
        Some(x) = a.join_next() => Some(x),
        Some(x) = b.join_next() => Some(x),
        else => None,
    }
}

/// Announces on the tracker's schedule and hands over what it learns.
async fn announce_loop(
    hash: InfoHash,
    src: Sources,
    tx: tokio::sync::mpsc::Sender<Result<Vec<SocketAddr>, String>>,
) {
    let mut set = TrackerSet::new(src.trackers.clone());
    let mut schedule = Schedule::default();
    let mut event = Event::Started;
    let key: u32 = rand::random();
    loop {
        let req = AnnounceRequest {
            info_hash: hash.0,
            peer_id: src.peer_id,
            port: src.port,
            uploaded: 0,
            downloaded: 0,
            // The size is not known yet; not zero, so we are not taken for a seeder.
            left: 16 * 1024,
            event,
            numwant: 50,
            key,
            tracker_id: None,
        };
        let wait = match set.announce(&req, src.announce_timeout).await {
            Ok(r) => {
                event = Event::None;
                // Ourselves only, or no one: ask again soon (once), as the
                // engine does when an answer leaves it without peers.
                let others = r.peers.iter().any(|a| !is_own(src.own, *a));
                info!(peers = r.peers.len(), "announced (for metadata)");
                if tx.send(Ok(r.peers)).await.is_err() {
                    return;
                }
                schedule.answered(r.interval, r.min_interval, others)
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string())).await;
                schedule.failed()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn send(s: &mut TcpStream, m: Message) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    m.encode(&mut out);
    s.write_all(&out).await
}

/// The peer's messages, one at a time, until it has been silent for [`IDLE`]
/// since it last moved the attempt on ([`Reader::progress`]).
struct Reader {
    s: TcpStream,
    buf: BytesMut,
    last_progress: tokio::time::Instant,
}

impl Reader {
    async fn next(&mut self) -> Result<Message, PeerFail> {
        let max = wire::max_frame_for(0);
        loop {
            if let Some(m) = wire::decode(&mut self.buf, max)? {
                return Ok(m);
            }
            let n =
                tokio::time::timeout_at(self.last_progress + IDLE, self.s.read_buf(&mut self.buf))
                    .await
                    .map_err(|_| PeerFail::Timeout)??;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    fn progress(&mut self) {
        self.last_progress = tokio::time::Instant::now();
    }
}

/// One peer's attempt: handshake, extension handshake, the dictionary's
/// pieces, then any piece layers it lacks.
async fn from_peer(addr: SocketAddr, want: Want, src: &Sources) -> Result<Fetched, PeerFail> {
    let hash = want.wire;
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| PeerFail::Timeout)??;
    let _ = s.set_nodelay(true);
    s.write_all(
        &Handshake::new(hash.0, src.peer_id)
            .with_v2(want.v2.is_some())
            .encode(),
    )
    .await?;
    let theirs = read_handshake(&mut s, want).await?;
    let (info, layers, _) = exchange(s, theirs, want, src).await?;
    Ok(Fetched {
        info,
        layers,
        from: addr,
    })
}

/// The attempt on a peer that dialed us: its handshake first, then ours
/// with the hash it named (either of a hybrid's), then as [`from_peer`].
/// The engine dials it later at the port its extension handshake gave.
async fn from_incoming(p: IncomingPeer, want: Want, src: &Sources) -> Result<Fetched, PeerFail> {
    let (mut s, addr) = (p.stream, p.addr);
    let _ = s.set_nodelay(true);
    let theirs = match p.handshake {
        Some(h) if names(&h, want) => h,
        Some(_) => return Err(PeerFail::OtherTorrent),
        None => read_handshake(&mut s, want).await?,
    };
    s.write_all(
        &Handshake::new(theirs.info_hash, src.peer_id)
            .with_v2(want.v2.is_some())
            .encode(),
    )
    .await?;
    let (info, layers, port) = exchange(s, theirs, want, src).await?;
    Ok(Fetched {
        info,
        layers,
        from: SocketAddr::new(addr.ip(), port.unwrap_or(addr.port())),
    })
}

/// The peer's handshake, if it names the torrent we want (a hybrid link's
/// peer may name the v2 hash: BEP 52's upgrade).
async fn read_handshake(s: &mut TcpStream, want: Want) -> Result<Handshake, PeerFail> {
    let mut hs = [0u8; wire::HANDSHAKE_LEN];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut hs))
        .await
        .map_err(|_| PeerFail::Timeout)??;
    let theirs = Handshake::decode(&hs)?;
    if !names(&theirs, want) {
        return Err(PeerFail::OtherTorrent);
    }
    Ok(theirs)
}

/// Whether a peer's handshake names the torrent we want.
fn names(theirs: &Handshake, want: Want) -> bool {
    want.hashes().contains(&theirs.info_hash)
}

/// After the handshakes: the extension handshake, the dictionary, any piece
/// layers; also the listening port the peer's extension handshake gave.
async fn exchange(
    mut s: TcpStream,
    theirs: Handshake,
    want: Want,
    src: &Sources,
) -> Result<(Vec<u8>, Vec<LayerPair>, Option<u16>), PeerFail> {
    if !theirs.supports_extensions() {
        return Err(FetchError::NotServed.into());
    }
    let mut ours = ExtHandshake {
        client: Some(concat!("btt ", env!("CARGO_PKG_VERSION")).into()),
        port: (src.port != 0).then_some(src.port),
        ..Default::default()
    };
    ours.m.insert(NAME.into(), OUR_ID);
    send(
        &mut s,
        Message::Extended {
            id: 0,
            payload: Bytes::from(ours.encode()),
        },
    )
    .await?;
    let mut r = Reader {
        s,
        buf: BytesMut::with_capacity(64 * 1024),
        last_progress: tokio::time::Instant::now(),
    };
    let (info, port) = info_from(&mut r, want).await?;
    let layers = match crate::metainfo::Metainfo::layers_wanted(&info) {
        Some((pl, wanted)) => layers_from(&mut r, pl, &wanted).await?,
        None => vec![],
    };
    Ok((info, layers, port))
}

type LayerPair = (crate::metainfo::v2::Hash, Vec<u8>);

/// Accepts the peers that dial us while [`fetch`] runs (a seeder that
/// learned of us from a tracker or the DHT, or one that cannot be dialed),
/// and gives the listener back once `fetch` is done with them (it drops
/// the receiver), for the engine.
fn accept_for_metadata(
    listener: tokio::net::TcpListener,
) -> (Incoming, tokio::task::JoinHandle<tokio::net::TcpListener>) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    biased;
                    _ = tx.closed() => return listener,
                    r = listener.accept() => match r {
                        Ok((stream, addr)) => {
                            let peer = IncomingPeer { stream, addr, handshake: None };
                            if tx.send(peer).await.is_err() {
                                return listener;
                            }
                        }
                        // Out of descriptors, say: not a reason to stop.
                        Err(e) => {
                            debug!(error = %e, "accepting a peer failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                }
            }
        }
        .in_current_span(),
    );
    (rx, task)
}

/// [`fetch`], asking also the peers that dial `listener` meanwhile; the
/// listener comes back with the result (`None` only if its task failed).
pub async fn fetch_listening(
    want: Want,
    src: Sources,
    timeout: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
    listener: tokio::net::TcpListener,
) -> (
    Result<Fetched, MagnetError>,
    Option<tokio::net::TcpListener>,
) {
    let (incoming, back) = accept_for_metadata(listener);
    // `fetch` drops the receiver when it ends, and the accept task stops.
    let r = fetch(want, src, timeout, stop, Some(incoming)).await;
    (r, back.await.ok())
}

/// Peers that dialed us, from [`accept_for_metadata`].
pub type Incoming = tokio::sync::mpsc::Receiver<IncomingPeer>;

/// A peer that dialed us; its handshake, if whoever accepted it read it
/// already (to know which torrent it named).
pub struct IncomingPeer {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub handshake: Option<Handshake>,
}

/// Incoming peers asked at once, beside the [`PARALLEL`] we dial.
const PARALLEL_INCOMING: usize = 4;

/// The info dictionary, over `ut_metadata` (BEP 9).
async fn info_from(r: &mut Reader, want: Want) -> Result<(Vec<u8>, Option<u16>), PeerFail> {
    let (mut f, their, mut reqs, port) = loop {
        if let Message::Extended { id: 0, payload } = r.next().await? {
            let h = ExtHandshake::decode(&payload).map_err(|_| FetchError::NotServed)?;
            let their = h.m.get(NAME).copied().filter(|&id| id != 0);
            let their = their.ok_or(FetchError::NotServed)?;
            let (f, first) = FromPeer::start(want, h.metadata_size)?;
            debug!(size = ?h.metadata_size, client = ?h.client, "peer serves metadata");
            break (f, their, first, h.port);
        }
    };
    loop {
        for q in reqs.drain(..) {
            let m = Message::Extended {
                id: their,
                payload: Bytes::from(q.encode()),
            };
            send(&mut r.s, m).await?;
        }
        if let Message::Extended {
            id: OUR_ID,
            payload,
        } = r.next().await?
        {
            let msg = MetadataMsg::decode(&payload)
                .map_err(|_| FetchError::Unasked { piece: u32::MAX })?;
            r.progress();
            match f.on_msg(msg)? {
                Step::Done(info) => return Ok((info, port)),
                Step::More(more) => reqs = more,
            }
        }
    }
}

/// A v2-only torrent's piece layers, over hash requests (BEP 52).
async fn layers_from(
    r: &mut Reader,
    piece_length: u64,
    wanted: &[(crate::metainfo::v2::Hash, u32)],
) -> Result<Vec<(crate::metainfo::v2::Hash, Vec<u8>)>, PeerFail> {
    debug!(files = wanted.len(), "asking for the piece layers");
    let (mut l, mut step) = LayerFetch::start(piece_length, wanted);
    loop {
        match step {
            layers::Step::Done(layers) => return Ok(layers),
            layers::Step::More(reqs) => {
                for q in reqs {
                    send(&mut r.s, Message::HashRequest(q)).await?;
                }
            }
        }
        step = match r.next().await? {
            Message::Hashes { req, hashes } => {
                r.progress();
                l.on_hashes(req, &hashes)?
            }
            Message::HashReject(req) => return Err(l.on_reject(req).into()),
            _ => layers::Step::More(vec![]),
        };
    }
}
