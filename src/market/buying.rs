//! The buyer inside a mount or `btt get`: decides which sellers to use, gets
//! a channel with each (reusing an open one with the same seller key), keeps
//! the budget, and pays for verified bytes.
//!
//! Budget rule: bytes are *reserved* before they are requested from a seller
//! (`reserve` refuses once `spent + cost(reserved) + cost(new)` would pass the
//! budget), and paid only after the piece holding them verified. Paths that
//! drop a request without paying release its reservation; any path missed only
//! makes the agent more conservative, never pay more.
//!
//! Payments go over a separate `btt_pay` connection per channel, driven by a
//! worker thread (blocking I/O, fsync'd store), so the data path never waits
//! on them; the data connection is bound to the channel by `resume`.

use crate::chain;
use crate::chanstore::{ChannelState, ChannelStore, Role};
use crate::config::Home;
use crate::engine::{Bound, PeerKey};
use crate::market::buyer::{self, BuyError, OpenState, Session};
use crate::pay::bitcoin::PublicKey;
use crate::pay::price::{self, Price};
use crate::pay::proto::{Msg, SellerInfo};
use crate::wallet::BttWallet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// The buyer settings for a mount or `btt get`: flags first, then the
/// `[buy]` section of config.toml. `None`: not buying (no price ceiling set).
pub fn buy_config(
    home: Option<&std::path::Path>,
    max_price: Option<Price>,
    budget_msat: Option<u64>,
    channel_sat: Option<u64>,
) -> Result<Option<BuyConfig>, String> {
    let home = Home::locate(home);
    let prefs = match home.load_config() {
        Ok(c) => c.buy,
        Err(crate::config::ConfigError::NoWallet(_)) if max_price.is_none() => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let max_price = match max_price {
        Some(p) => p,
        None => match prefs.max_price.as_deref() {
            Some(p) => p
                .parse()
                .map_err(|e: crate::pay::price::PriceError| e.to_string())?,
            None => return Ok(None),
        },
    };
    let channel_sat = channel_sat.or(prefs.channel_size_sat).unwrap_or(100_000);
    let budget_msat = budget_msat
        .or(prefs.budget_sat.map(|s| s.saturating_mul(1000)))
        .unwrap_or(channel_sat.saturating_mul(1000));
    Ok(Some(BuyConfig {
        home,
        max_price,
        budget_msat,
        channel_sat,
    }))
}

#[derive(Clone, Debug)]
pub struct BuyConfig {
    pub home: Home,
    /// Sellers asking more are never used.
    pub max_price: Price,
    /// Most msat this process pays in all.
    pub budget_msat: u64,
    /// Capacity of channels it opens.
    pub channel_sat: u64,
}

struct Link {
    addr: SocketAddr,
    price: Price,
    node_key: PublicKey,
    /// Requested from this seller and not yet verified (or given back).
    reserved_bytes: u64,
    /// What the seller serves beyond payments (its announcement).
    credit: u64,
    wake: Arc<Notify>,
    channel: Option<String>,
    /// The connection ended: the link stays until what it delivered into
    /// pieces in progress is paid for or given back.
    gone: bool,
}

struct Worker {
    /// (bytes, the msat reserved for them)
    tx: mpsc::Sender<(u64, u64)>,
    flow: Arc<Flow>,
}

/// Credit flow of one channel: verified bytes whose payment the seller has not
/// acknowledged yet, bytes the seller counts that no payment will cover, the
/// channel's total, and the sessions to wake when an acknowledgement frees
/// room under the seller's credit.
#[derive(Default)]
struct Flow {
    paying_bytes: AtomicU64,
    /// Served by the seller and never to be paid for: what it reported when a
    /// connection was bound, plus what this process wasted since.
    unpaid: AtomicU64,
    /// The channel's total as last paid (the waste allowance grows with it).
    total_msat: AtomicU64,
    /// The seller closed the channel (or no longer knows it): bind again.
    closed: AtomicBool,
    wakers: Mutex<Vec<std::sync::Weak<Notify>>>,
}

impl Flow {
    fn add_waker(&self, w: &Arc<Notify>) {
        let mut ws = lock(&self.wakers);
        ws.retain(|x| x.strong_count() > 0);
        if !ws.iter().any(|x| std::ptr::eq(x.as_ptr(), Arc::as_ptr(w))) {
            ws.push(Arc::downgrade(w));
        }
    }

    fn wake_all(&self) {
        for w in lock(&self.wakers).iter().filter_map(|w| w.upgrade()) {
            w.notify_one();
        }
    }

    /// The seller acknowledged payment for `bytes`.
    fn paid(&self, bytes: u64) {
        let _ = self
            .paying_bytes
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
        self.wake_all();
    }

    fn close(&self) {
        self.closed.store(true, Relaxed);
        self.wake_all();
    }
}

#[derive(Default)]
struct State {
    links: HashMap<PeerKey, Link>,
    workers: HashMap<String, Worker>,
    /// Channels left to themselves for this process (see [`Bound::Exhausted`]),
    /// or closed by their seller.
    exhausted: std::collections::HashSet<String>,
    /// Channels this process opened.
    opened: std::collections::HashSet<String>,
    budget_said: bool,
}

impl State {
    /// Forgets a link that ended once nothing of it waits for payment.
    fn reap(&mut self, conn: PeerKey) {
        if self
            .links
            .get(&conn)
            .is_some_and(|l| l.gone && l.reserved_bytes == 0)
        {
            self.links.remove(&conn);
        }
    }
}

pub struct BuyerAgent {
    cfg: BuyConfig,
    state: Mutex<State>,
    /// Serialises channel opening (one wallet, one store).
    opening: Mutex<()>,
    spent: Arc<AtomicU64>,
    /// msat of verified bytes handed to a worker but not yet paid.
    in_flight: Arc<AtomicU64>,
    /// (payments sent, bytes on their connections), for figures.
    wire: Arc<Mutex<(u64, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `conn`'s link and the flow of the channel it is bound to.
fn channel_of(st: &State, conn: PeerKey) -> Option<(&Link, &Flow)> {
    let link = st.links.get(&conn)?;
    let w = st.workers.get(link.channel.as_ref()?)?;
    Some((link, &w.flow))
}

/// Requested, or verified and unacknowledged, on `link`'s channel (all
/// connections bound to a channel share the seller's credit).
fn outstanding(st: &State, link: &Link, flow: &Flow) -> u64 {
    let requested: u64 = st
        .links
        .values()
        .filter(|l| l.channel.is_some() && l.channel == link.channel)
        .map(|l| l.reserved_bytes)
        .sum();
    requested + flow.paying_bytes.load(Relaxed)
}

/// Most bytes outstanding on `link`'s channel before the seller rejects.
fn limit(link: &Link, flow: &Flow) -> u64 {
    price::buyer_room(
        link.price,
        link.credit,
        flow.total_msat.load(Relaxed),
        flow.unpaid.load(Relaxed),
    )
}

/// A payment error no retry on this channel can cure: the total would pass
/// the capacity, or the channel is no longer open in our store.
fn finished(e: &BuyError) -> bool {
    matches!(
        e,
        BuyError::Pay(_)
            | BuyError::NotOpen { .. }
            | BuyError::Store(crate::chanstore::StoreError::NotOpen(..))
    )
}

/// The seller says the channel is closed (`resume` answered `open: false`)
/// or no longer knows a channel it was paid on.
fn seller_closed(e: &BuyError) -> bool {
    matches!(e, BuyError::Refused { code, .. } if code == "closed" || code == "unknown_channel" || code == "funding_spent")
}

/// Records that the seller closed channel `id`: closed if its funding is
/// spent on chain, else closing (the seller's close is on its way).
fn mark_closed(store: &ChannelStore, chain: &dyn chain::ChainBackend, id: &str) {
    let Ok(r) = store.get(id) else { return };
    if r.state != ChannelState::Open {
        return;
    }
    let spent = chain
        .output_status(&r.terms.funding, &r.terms.funding_script_pubkey())
        .is_ok_and(|s| s == chain::OutputStatus::Spent);
    let state = if spent {
        ChannelState::Closed
    } else {
        ChannelState::Closing
    };
    match store.set_state(id, state) {
        Ok(()) => {
            info!(channel = %id, ?state, "the seller closed this channel; a new one is opened when needed")
        }
        Err(e) => warn!(channel = %id, error = %e, "could not record the channel's close"),
    }
}

impl BuyerAgent {
    pub fn new(cfg: BuyConfig) -> BuyerAgent {
        BuyerAgent {
            cfg,
            state: Mutex::new(State::default()),
            opening: Mutex::new(()),
            spent: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(AtomicU64::new(0)),
            wire: Arc::new(Mutex::new((0, 0))),
        }
    }

    /// msat paid so far by this process.
    pub fn spent_msat(&self) -> u64 {
        self.spent.load(Relaxed)
    }

    pub fn budget_msat(&self) -> u64 {
        self.cfg.budget_msat
    }

    /// A peer announced `btt_pay`: whether we will buy from it. `wake` is
    /// notified whenever a payment on its channel frees credit.
    pub fn consider(
        &self,
        conn: PeerKey,
        peer: SocketAddr,
        info: &bendy::value::Value<'static>,
        wake: Arc<Notify>,
    ) -> bool {
        let info = match SellerInfo::from_value(info) {
            Ok(i) => i,
            Err(e) => {
                warn!(%peer, error = %e, "ignoring a bad btt_pay announcement");
                return false;
            }
        };
        let price = Price::msat_per_gib(info.msat_per_gib);
        if price > self.cfg.max_price {
            info!(%peer, %price, max = %self.cfg.max_price, "seller above --max-price: not buying from it");
            return false;
        }
        lock(&self.state).links.insert(
            conn,
            Link {
                addr: peer,
                price,
                node_key: info.node_key,
                reserved_bytes: 0,
                credit: info.credit,
                wake,
                channel: None,
                gone: false,
            },
        );
        true
    }

    /// Blocking: a channel with this seller (reused or opened) and the
    /// `resume` message that binds the data connection to it. A channel the
    /// seller closed is recorded as such and another one is used or opened.
    pub fn bind(&self, conn: PeerKey, info_hash: [u8; 20]) -> Result<Vec<u8>, String> {
        let (node_key, peer) = lock(&self.state)
            .links
            .get(&conn)
            .map(|l| (l.node_key, l.addr))
            .ok_or("unknown seller")?;
        let _one = lock(&self.opening);
        let home = &self.cfg.home;
        let mut wallet = BttWallet::open(home).map_err(|e| e.to_string())?;
        let mut store = ChannelStore::open(&home.channels_db()).map_err(|e| e.to_string())?;
        let chain = chain::connect(&wallet.config).map_err(|e| e.to_string())?;
        // A closed channel costs one round; a seller closing every channel
        // we open is not followed for ever.
        for _ in 0..3 {
            // Workers whose seller closed their channel are done (the
            // chain is asked with no lock held).
            let closed: Vec<String> = {
                let mut st = lock(&self.state);
                let ids: Vec<String> = st
                    .workers
                    .iter()
                    .filter(|(_, w)| w.flow.closed.load(Relaxed))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in &ids {
                    st.workers.remove(id);
                    st.exhausted.insert(id.clone());
                }
                ids
            };
            for id in closed {
                mark_closed(&store, chain.as_ref(), &id);
            }
            // What the chain says first: a funding spent (the seller closed,
            // or a refund) is not reused.
            if let Err(e) =
                crate::market::follow::follow(&store, chain.as_ref(), Some(&wallet), |r| {
                    r.role == Role::Buyer
                        && matches!(r.state, ChannelState::Open | ChannelState::Opening)
                        && r.terms.seller == node_key
                })
            {
                warn!(error = %e, "could not follow the channels on chain");
            }
            let exhausted = lock(&self.state).exhausted.clone();
            let reuse = store
                .list()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|r| {
                    r.role == Role::Buyer
                        && r.state == ChannelState::Open
                        && r.terms.seller == node_key
                        && r.total_msat < r.terms.max_total_msat() / 2
                        && !exhausted.contains(&r.id)
                });
            let id = match reuse {
                Some(r) => r.id,
                None => {
                    wallet.sync(chain.as_ref()).map_err(|e| e.to_string())?;
                    let o = buyer::open_channel(
                        &mut wallet,
                        &store,
                        chain.as_ref(),
                        peer,
                        info_hash,
                        self.cfg.channel_sat,
                    )
                    .map_err(|e| e.to_string())?;
                    if let OpenState::Pending { have, need } = o.state {
                        return Err(format!(
                            "channel {} waits for {need} confirmation(s), has {have}",
                            o.id
                        ));
                    }
                    info!(%peer, channel = %o.id, capacity = self.cfg.channel_sat, "opened a channel");
                    lock(&self.state).opened.insert(o.id.clone());
                    o.id
                }
            };
            let channel: crate::pay::bitcoin::OutPoint =
                id.parse().map_err(|_| format!("bad channel id {id}"))?;
            if !lock(&self.state).workers.contains_key(&id) {
                let session = match Session::resume(&wallet, &mut store, chain.as_ref(), &id) {
                    Ok(s) => s,
                    Err(e) if seller_closed(&e) => {
                        mark_closed(&store, chain.as_ref(), &id);
                        lock(&self.state).exhausted.insert(id);
                        continue;
                    }
                    Err(e) => return Err(e.to_string()),
                };
                self.start_worker(conn, &id, session, store)?;
                return self.link_to(conn, &id, channel);
            }
            return self.link_to(conn, &id, channel);
        }
        Err("the seller closed every channel we tried".into())
    }

    /// Binds `conn` to channel `id`'s worker; the `resume` message to send.
    fn link_to(
        &self,
        conn: PeerKey,
        id: &str,
        channel: crate::pay::bitcoin::OutPoint,
    ) -> Result<Vec<u8>, String> {
        {
            let mut st = lock(&self.state);
            let State { links, workers, .. } = &mut *st;
            if let Some(l) = links.get_mut(&conn) {
                l.channel = Some(id.to_string());
                if let Some(w) = workers.get(id) {
                    w.flow.add_waker(&l.wake);
                }
            }
        }
        Ok(Msg::Resume { channel }.encode())
    }

    /// Starts the payment worker of channel `id` over `session`.
    fn start_worker(
        &self,
        conn: PeerKey,
        id: &str,
        session: Session,
        store: ChannelStore,
    ) -> Result<(), String> {
        let mut st = lock(&self.state);
        let (tx, rx) = mpsc::channel();
        let (price, credit) = st
            .links
            .get(&conn)
            .map(|l| (l.price, l.credit))
            .unwrap_or_default();
        let flow = Arc::new(Flow::default());
        flow.total_msat.store(session.total_msat(), Relaxed);
        let w = PayWorker {
            home: self.cfg.home.clone(),
            id: id.to_string(),
            price,
            gather: credit / 4,
            spent: self.spent.clone(),
            in_flight: self.in_flight.clone(),
            wire: self.wire.clone(),
            flow: flow.clone(),
        };
        std::thread::Builder::new()
            .name("btt-pay".into())
            .spawn(move || w.run(session, store, rx))
            .map_err(|e| e.to_string())?;
        st.workers.insert(id.to_string(), Worker { tx, flow });
        Ok(())
    }

    /// Bytes that may be requested on `conn` now: its credit plus the
    /// waste allowance, less the channel's unpaid bytes and what is
    /// requested, or verified and unacknowledged, on it (all connections
    /// bound to a channel share the seller's credit). No margin: the buyer
    /// pays only for verified pieces, so a credit of exactly one piece must
    /// still let a whole piece be asked for; the seller's rule holds at the
    /// boundary because ceil(a + b) ≤ ceil(a) + ceil(b) (property-tested in
    /// `price`). `None` once the seller closed the channel.
    pub fn room(&self, conn: PeerKey) -> Option<u64> {
        let st = lock(&self.state);
        let Some((link, flow)) = channel_of(&st, conn) else {
            // Bound to a channel whose worker is gone (closed): bind again.
            let bound = st.links.get(&conn).is_some_and(|l| l.channel.is_some());
            return if bound { None } else { Some(0) };
        };
        if flow.closed.load(Relaxed) {
            return None;
        }
        let outstanding = outstanding(&st, link, flow);
        Some(limit(link, flow).saturating_sub(outstanding))
    }

    /// The seller answered `resume` on `conn`: the channel is `open` and it
    /// counts `unpaid` bytes on it that no payment covers. Whether the
    /// channel still has room for a piece of `piece_len` bytes.
    pub fn bound(&self, conn: PeerKey, open: bool, unpaid: u64, piece_len: u64) -> Bound {
        let mut st = lock(&self.state);
        let Some((link, flow)) = channel_of(&st, conn) else {
            return Bound::TooSmall;
        };
        let peer = link.addr;
        if !open {
            warn!(%peer, channel = ?link.channel, "the seller has closed this channel: using another");
            flow.close();
            if let Some(l) = st.links.get_mut(&conn) {
                l.channel = None;
            }
            return Bound::Exhausted;
        }
        if link.credit < piece_len {
            warn!(%peer, credit = link.credit, piece_len, "the seller's credit is smaller than a piece: it cannot serve a buyer that pays after verifying");
            return Bound::TooSmall;
        }
        // What other connections have outstanding is in the seller's count too.
        let mine = unpaid.saturating_sub(outstanding(&st, link, flow));
        flow.unpaid.store(mine, Relaxed);
        if limit(link, flow) >= piece_len {
            return Bound::Usable;
        }
        let ch = link.channel.clone().unwrap_or_default();
        if st.opened.contains(&ch) {
            // Nothing was bought on it before this process: a seller saying
            // otherwise would have us open channel after channel.
            warn!(%peer, channel = %ch, unpaid, "the seller claims unpaid bytes on a channel we just opened; not buying from it");
            return Bound::TooSmall;
        }
        warn!(%peer, channel = %ch, unpaid = mine, credit = link.credit, "the seller counts too many unpaid bytes on this channel: using another");
        st.exhausted.insert(ch);
        if let Some(l) = st.links.get_mut(&conn) {
            l.channel = None;
        }
        Bound::Exhausted
    }

    /// `bytes` from `conn` arrived and will not be paid for (a duplicate
    /// that lost, a block cancelled too late, a piece that failed): the seller
    /// counted them, so they take room under its credit.
    pub fn wasted(&self, conn: PeerKey, bytes: u64) {
        let st = lock(&self.state);
        if let Some((_, flow)) = channel_of(&st, conn) {
            flow.unpaid.fetch_add(bytes, Relaxed);
        }
    }

    /// Reserves `bytes` from `conn` against the budget; false once it is spent.
    pub fn reserve(&self, conn: PeerKey, bytes: u64) -> bool {
        let mut st = lock(&self.state);
        let spent = self.spent_msat() + self.in_flight.load(Relaxed);
        let committed: u64 = st
            .links
            .values()
            .map(|l| l.price.cost_msat(l.reserved_bytes) + 1)
            .sum();
        let Some(link) = st.links.get(&conn) else {
            return false;
        };
        let new = link.price.cost_msat(bytes) + 1;
        if spent + committed + new > self.cfg.budget_msat {
            if !st.budget_said {
                st.budget_said = true;
                warn!(
                    spent_msat = spent,
                    budget_msat = self.cfg.budget_msat,
                    "budget spent: no more buying; reads wait for free peers"
                );
            }
            return false;
        }
        if let Some(l) = st.links.get_mut(&conn) {
            l.reserved_bytes += bytes;
        }
        true
    }

    /// Drops a reservation that will not be paid.
    pub fn release(&self, conn: PeerKey, bytes: u64) {
        let mut st = lock(&self.state);
        if let Some(l) = st.links.get_mut(&conn) {
            l.reserved_bytes = l.reserved_bytes.saturating_sub(bytes);
        }
        st.reap(conn);
    }

    /// Whether bytes from `conn` are bought (it is bound to a channel).
    pub fn pays(&self, conn: PeerKey) -> bool {
        lock(&self.state)
            .links
            .get(&conn)
            .is_some_and(|l| l.channel.is_some())
    }

    /// `bytes` from `conn` belong to a piece that verified and is held on
    /// disk: pay for them, also when the connection has ended since.
    pub fn verified(&self, conn: PeerKey, bytes: u64) {
        let mut st = lock(&self.state);
        let Some(l) = st.links.get_mut(&conn) else {
            return;
        };
        l.reserved_bytes = l.reserved_bytes.saturating_sub(bytes);
        let (ch, est) = (l.channel.clone(), l.price.cost_msat(bytes) + 1);
        if let Some(w) = ch.and_then(|ch| st.workers.get(&ch)) {
            w.flow.paying_bytes.fetch_add(bytes, Relaxed);
            // Counted before the worker can see it (it subtracts when paid).
            self.in_flight.fetch_add(est, Relaxed);
            if w.tx.send((bytes, est)).is_err() {
                let _ = self
                    .in_flight
                    .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(est)));
            }
        }
        st.reap(conn);
    }

    pub fn disconnected(&self, conn: PeerKey) {
        let mut st = lock(&self.state);
        if let Some(l) = st.links.get_mut(&conn) {
            l.gone = true;
        }
        st.reap(conn);
    }

    /// Waits up to `t` for payments of verified bytes still in flight.
    pub fn settle(&self, t: std::time::Duration) {
        let end = std::time::Instant::now() + t;
        while self.in_flight.load(Relaxed) > 0 && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Whether the budget is spent (for status and logs).
    pub fn budget_spent(&self) -> bool {
        lock(&self.state).budget_said
    }
}

/// Longest a verified byte waits for its payment to be gathered with others.
/// Payments cost CPU on both sides (a signature each way, a durable commit
/// each side); the credit window absorbs the wait (16 MiB at 200 MB/s is
/// 80 ms).
const PAY_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Longest wait between two attempts to reach a seller that went away.
const RECONNECT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Pays for verified bytes on one channel, in order; the total is always
/// `start + cost(bytes so far)`, so rounding happens once per worker. When
/// the seller goes away (killed, restarted, the connection broke) it
/// reconnects with `resume`, which re-sends the last stored payment; when
/// the seller says the channel is closed it records that and stops, and the
/// connections bound to it bind again.
struct PayWorker {
    home: Home,
    id: String,
    price: Price,
    /// Most bytes gathered into one payment (a quarter of the credit).
    gather: u64,
    spent: Arc<AtomicU64>,
    /// msat of verified bytes handed to a worker but not yet paid.
    in_flight: Arc<AtomicU64>,
    /// (payments sent, bytes on their connections).
    wire: Arc<Mutex<(u64, u64)>>,
    flow: Arc<Flow>,
}

impl PayWorker {
    fn run(self, session: Session, mut store: ChannelStore, rx: mpsc::Receiver<(u64, u64)>) {
        let mut session = Some(session);
        let mut last_wire = 0u64;
        // Verified bytes handed to us so far, and msat paid for them.
        let (mut bytes, mut paid) = (0u64, 0u64);
        // A batch not yet paid (bytes, reserved msat), e.g. after a failure
        // before its total was stored.
        let mut carry: Option<(u64, u64)> = None;
        // Paid and stored but not acknowledged: resume's re-send covers it.
        let mut unacked = 0u64;
        loop {
            let Some(s) = session.as_mut() else {
                match self.reconnect(&mut store, &rx, &mut carry) {
                    Some(s) => {
                        last_wire = s.wire_bytes();
                        self.flow.total_msat.fetch_max(s.total_msat(), Relaxed);
                        self.flow.paid(std::mem::take(&mut unacked));
                        session = Some(s);
                        continue;
                    }
                    None => return,
                }
            };
            let (mut batch, mut est) = match carry.take() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(x) => x,
                    Err(_) => return,
                },
            };
            // Gather what verifies over the next PAY_EVERY into the same
            // payment (fewer signatures and commits on both sides), but never
            // hold a quarter of the credit: the seller serves no more until
            // paid.
            let due = std::time::Instant::now() + PAY_EVERY;
            while batch < self.gather {
                let left = due.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok((more, e)) => {
                        batch += more;
                        est += e;
                    }
                    Err(_) => break,
                }
            }
            let step = self.price.cost_msat(bytes + batch).saturating_sub(paid);
            let result = if step == 0 {
                Ok(0)
            } else {
                s.pay_increment(&mut store, step)
            };
            {
                let mut w = lock(&self.wire);
                w.0 += (step > 0) as u64;
                w.1 += s.wire_bytes().saturating_sub(last_wire);
                last_wire = s.wire_bytes();
            }
            match result {
                Ok(total) => {
                    self.settled(&mut bytes, &mut paid, batch, step, est);
                    if total > 0 {
                        self.flow.total_msat.fetch_max(total, Relaxed);
                    }
                    self.flow.paid(batch);
                }
                Err(e) if e.stored() => {
                    // Stored before it was sent: the seller gets it on resume.
                    warn!(channel = %self.id, error = %e, "payment not acknowledged; reconnecting to the seller");
                    self.settled(&mut bytes, &mut paid, batch, step, est);
                    unacked += batch;
                    session = None;
                }
                Err(e) if finished(&e) => {
                    // The channel is full or no longer open here: no retry
                    // can pay on it. Its connections bind another.
                    warn!(channel = %self.id, error = %e, "this channel can take no more payments; using another");
                    self.give_up(Some((batch, est)), &rx);
                    return;
                }
                Err(e) => {
                    warn!(channel = %self.id, error = %e, "payment failed; reconnecting to the seller");
                    carry = Some((batch, est));
                    session = None;
                    // Not at once again, should the seller answer a resume
                    // and fail the next payment the same way.
                    std::thread::sleep(std::time::Duration::from_millis(250));
                }
            }
        }
    }

    /// The channel takes no more payments: what waits for payment on it is
    /// given back (in flight no more) and its connections bind again.
    fn give_up(&self, carry: Option<(u64, u64)>, rx: &mpsc::Receiver<(u64, u64)>) {
        self.flow.close();
        let left = carry.map_or(0, |c| c.1) + rx.try_iter().map(|(_, e)| e).sum::<u64>();
        let _ = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(left)));
    }

    /// A batch of `batch` bytes is paid with `step` msat.
    fn settled(&self, bytes: &mut u64, paid: &mut u64, batch: u64, step: u64, est: u64) {
        *bytes += batch;
        *paid += step;
        self.spent.fetch_add(step, Relaxed);
        let _ = self
            .in_flight
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(est)));
    }

    /// Resumes the channel with its seller, retrying with back-off while
    /// gathering what verifies meanwhile into `carry`. `None`: the channel
    /// is closed, or the process is ending.
    fn reconnect(
        &self,
        store: &mut ChannelStore,
        rx: &mpsc::Receiver<(u64, u64)>,
        carry: &mut Option<(u64, u64)>,
    ) -> Option<Session> {
        let mut wait = std::time::Duration::from_millis(250);
        loop {
            let attempt = BttWallet::open(&self.home)
                .map_err(|e| e.to_string())
                .and_then(|w| {
                    let chain = chain::connect(&w.config).map_err(|e| e.to_string())?;
                    match Session::resume(&w, store, chain.as_ref(), &self.id) {
                        Ok(s) => Ok(Ok(s)),
                        Err(e) if seller_closed(&e) => {
                            mark_closed(store, chain.as_ref(), &self.id);
                            Ok(Err(e))
                        }
                        Err(e) => Err(e.to_string()),
                    }
                });
            match attempt {
                Ok(Ok(s)) => {
                    info!(channel = %self.id, "payments resumed with the seller");
                    return Some(s);
                }
                Ok(Err(e)) => {
                    warn!(channel = %self.id, error = %e, "the seller closed this channel; verified bytes not yet paid stay unpaid");
                    self.give_up(carry.take(), rx);
                    return None;
                }
                Err(e) => debug!(channel = %self.id, error = %e, "seller not reachable yet"),
            }
            let until = std::time::Instant::now() + wait;
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok((b, e)) => {
                        let c = carry.get_or_insert((0, 0));
                        c.0 += b;
                        c.1 += e;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => break,
                    Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                }
            }
            wait = (wait * 2).min(RECONNECT_MAX);
        }
    }
}

impl crate::engine::BuyHook for BuyerAgent {
    fn ext_name(&self) -> &'static str {
        crate::pay::proto::EXT_NAME
    }
    fn seller_said(&self, _conn: PeerKey, payload: &[u8]) -> crate::engine::SellerSaid {
        use crate::engine::SellerSaid;
        match Msg::decode(payload) {
            Ok(Msg::State { open, unpaid, .. }) => SellerSaid::State { open, unpaid },
            Ok(Msg::Error { code, message, .. }) => {
                SellerSaid::Refused(format!("{code}: {message}"))
            }
            // Payments go over the worker's own connection.
            Ok(Msg::Ack { .. }) => SellerSaid::Nothing,
            Ok(_) => SellerSaid::NotForBuyer,
            Err(e) => {
                debug!(error = %e, "bad btt_pay message from a seller");
                SellerSaid::Nothing
            }
        }
    }
    fn consider(
        &self,
        conn: PeerKey,
        peer: SocketAddr,
        info: &bendy::value::Value<'static>,
        wake: Arc<Notify>,
    ) -> bool {
        BuyerAgent::consider(self, conn, peer, info, wake)
    }
    fn room(&self, conn: PeerKey) -> Option<u64> {
        BuyerAgent::room(self, conn)
    }
    fn bind(&self, conn: PeerKey, info_hash: [u8; 20]) -> Result<Vec<u8>, String> {
        BuyerAgent::bind(self, conn, info_hash)
    }
    fn reserve(&self, conn: PeerKey, bytes: u64) -> bool {
        BuyerAgent::reserve(self, conn, bytes)
    }
    fn release(&self, conn: PeerKey, bytes: u64) {
        BuyerAgent::release(self, conn, bytes)
    }
    fn pays(&self, conn: PeerKey) -> bool {
        BuyerAgent::pays(self, conn)
    }
    fn verified(&self, conn: PeerKey, bytes: u64) {
        BuyerAgent::verified(self, conn, bytes)
    }
    fn bound(&self, conn: PeerKey, open: bool, unpaid: u64, piece_len: u64) -> Bound {
        BuyerAgent::bound(self, conn, open, unpaid, piece_len)
    }
    fn wasted(&self, conn: PeerKey, bytes: u64) {
        BuyerAgent::wasted(self, conn, bytes)
    }
    fn settle(&self, t: std::time::Duration) {
        BuyerAgent::settle(self, t)
    }
    fn disconnected(&self, conn: PeerKey) {
        BuyerAgent::disconnected(self, conn)
    }
    fn money(&self) -> crate::engine::status::Money {
        let wire = *lock(&self.wire);
        let st = lock(&self.state);
        crate::engine::status::Money {
            spent_msat: self.spent_msat(),
            budget_msat: Some(self.cfg.budget_msat),
            budget_spent: st.budget_said,
            channels: st.workers.len(),
            payments: wire.0,
            pay_wire_bytes: wire.1,
            ..Default::default()
        }
    }
    fn paid_peers(&self) -> usize {
        lock(&self.state).links.values().filter(|l| !l.gone).count()
    }
}
