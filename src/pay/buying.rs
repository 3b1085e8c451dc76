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
use crate::pay::bitcoin::PublicKey;
use crate::pay::buyer::{self, OpenState, Session};
use crate::pay::price::{self, Price};
use crate::pay::proto::{Msg, SellerInfo};
use crate::wallet::BttWallet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use tokio::sync::Notify;
use tracing::{info, warn};

/// The buyer settings for a mount or `btt get`: flags first, then the
/// `[buy]` section of config.toml. `None`: not buying (no price ceiling set).
pub fn buy_config(
    home: Option<&std::path::Path>,
    max_price: Option<Price>,
    budget_sat: Option<u64>,
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
    let budget_sat = budget_sat.or(prefs.budget_sat).unwrap_or(channel_sat);
    Ok(Some(BuyConfig {
        home,
        max_price,
        budget_msat: budget_sat.saturating_mul(1000),
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
    price: Price,
    node_key: PublicKey,
    /// Requested from this seller and not yet verified (or given back).
    reserved_bytes: u64,
    /// What the seller serves beyond payments (its announcement).
    credit: u64,
    wake: Arc<Notify>,
    channel: Option<String>,
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
    wakers: Mutex<Vec<std::sync::Weak<Notify>>>,
}

/// What binding a connection found out about its channel.
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

impl Flow {
    fn add_waker(&self, w: &Arc<Notify>) {
        let mut ws = lock(&self.wakers);
        ws.retain(|x| x.strong_count() > 0);
        if !ws.iter().any(|x| std::ptr::eq(x.as_ptr(), Arc::as_ptr(w))) {
            ws.push(Arc::downgrade(w));
        }
    }

    /// The seller acknowledged payment for `bytes`.
    fn paid(&self, bytes: u64) {
        let _ = self
            .paying_bytes
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(bytes)));
        for w in lock(&self.wakers).iter().filter_map(|w| w.upgrade()) {
            w.notify_one();
        }
    }
}

#[derive(Default)]
struct State {
    links: HashMap<SocketAddr, Link>,
    workers: HashMap<String, Worker>,
    /// Channels left to themselves for this process (see [`Bound::Exhausted`]).
    exhausted: std::collections::HashSet<String>,
    /// Channels this process opened.
    opened: std::collections::HashSet<String>,
    budget_said: bool,
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

/// `peer`'s link and the flow of the channel it is bound to.
fn channel_of(st: &State, peer: SocketAddr) -> Option<(&Link, &Flow)> {
    let link = st.links.get(&peer)?;
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
            peer,
            Link {
                price,
                node_key: info.node_key,
                reserved_bytes: 0,
                credit: info.credit,
                wake,
                channel: None,
            },
        );
        true
    }

    /// Blocking: a channel with this seller (reused or opened) and the
    /// `resume` message that binds the data connection to it.
    pub fn bind(&self, peer: SocketAddr, info_hash: [u8; 20]) -> Result<Vec<u8>, String> {
        let node_key = lock(&self.state)
            .links
            .get(&peer)
            .map(|l| l.node_key)
            .ok_or("unknown seller")?;
        let _one = lock(&self.opening);
        let home = &self.cfg.home;
        let mut wallet = BttWallet::open(home).map_err(|e| e.to_string())?;
        let mut store = ChannelStore::open(&home.channels_db()).map_err(|e| e.to_string())?;
        let chain = chain::connect(&wallet.config).map_err(|e| e.to_string())?;
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
        {
            let mut st = lock(&self.state);
            if !st.workers.contains_key(&id) {
                let session = Session::resume(&wallet, &mut store, chain.as_ref(), &id)
                    .map_err(|e| e.to_string())?;
                let (tx, rx) = mpsc::channel();
                let (price, credit) = st
                    .links
                    .get(&peer)
                    .map(|l| (l.price, l.credit))
                    .unwrap_or_default();
                let (spent, in_flight) = (self.spent.clone(), self.in_flight.clone());
                let wire = self.wire.clone();
                let flow = Arc::new(Flow::default());
                flow.total_msat.store(session.total_msat(), Relaxed);
                let (cid, wflow) = (id.clone(), flow.clone());
                std::thread::Builder::new()
                    .name("btt-pay".into())
                    .spawn(move || {
                        let counters = (spent, in_flight, wire);
                        pay_worker(session, store, rx, (price, credit), counters, wflow, cid)
                    })
                    .map_err(|e| e.to_string())?;
                st.workers.insert(id.clone(), Worker { tx, flow });
            }
            let State { links, workers, .. } = &mut *st;
            if let Some(l) = links.get_mut(&peer) {
                l.channel = Some(id.clone());
                if let Some(w) = workers.get(&id) {
                    w.flow.add_waker(&l.wake);
                }
            }
        }
        Ok(Msg::Resume { channel }.encode())
    }

    /// Bytes that may be requested from `peer` now: its credit plus the
    /// waste allowance, less the channel's unpaid bytes and what is
    /// requested, or verified and unacknowledged, on it (all connections
    /// bound to a channel share the seller's credit). No margin: the buyer
    /// pays only for verified pieces, so a credit of exactly one piece must
    /// still let a whole piece be asked for; the seller's rule holds at the
    /// boundary because ceil(a + b) ≤ ceil(a) + ceil(b) (property-tested in
    /// `price`).
    pub fn room(&self, peer: SocketAddr) -> u64 {
        let st = lock(&self.state);
        let Some((link, flow)) = channel_of(&st, peer) else {
            return 0;
        };
        let outstanding = outstanding(&st, link, flow);
        limit(link, flow).saturating_sub(outstanding)
    }

    /// The seller answered `resume` on `peer`'s connection: it counts `unpaid`
    /// bytes on the channel that no payment covers. Whether the channel still
    /// has room for a piece of `piece_len` bytes.
    pub fn bound(&self, peer: SocketAddr, unpaid: u64, piece_len: u64) -> Bound {
        let mut st = lock(&self.state);
        let Some((link, flow)) = channel_of(&st, peer) else {
            return Bound::TooSmall;
        };
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
        if let Some(l) = st.links.get_mut(&peer) {
            l.channel = None;
        }
        Bound::Exhausted
    }

    /// `bytes` from `peer` arrived and will not be paid for (a duplicate
    /// that lost, a block cancelled too late, a piece that failed): the seller
    /// counted them, so they take room under its credit.
    pub fn wasted(&self, peer: SocketAddr, bytes: u64) {
        let st = lock(&self.state);
        if let Some((_, flow)) = channel_of(&st, peer) {
            flow.unpaid.fetch_add(bytes, Relaxed);
        }
    }

    /// Reserves `bytes` from `peer` against the budget; false once it is spent.
    pub fn reserve(&self, peer: SocketAddr, bytes: u64) -> bool {
        let mut st = lock(&self.state);
        let spent = self.spent_msat() + self.in_flight.load(Relaxed);
        let committed: u64 = st
            .links
            .values()
            .map(|l| l.price.cost_msat(l.reserved_bytes) + 1)
            .sum();
        let Some(link) = st.links.get(&peer) else {
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
        if let Some(l) = st.links.get_mut(&peer) {
            l.reserved_bytes += bytes;
        }
        true
    }

    /// Drops a reservation that will not be paid.
    pub fn release(&self, peer: SocketAddr, bytes: u64) {
        if let Some(l) = lock(&self.state).links.get_mut(&peer) {
            l.reserved_bytes = l.reserved_bytes.saturating_sub(bytes);
        }
    }

    /// `bytes` from `peer` belong to a piece that verified: pay for them.
    pub fn verified(&self, peer: SocketAddr, bytes: u64) {
        let mut st = lock(&self.state);
        let Some(l) = st.links.get_mut(&peer) else {
            return;
        };
        l.reserved_bytes = l.reserved_bytes.saturating_sub(bytes);
        let Some(ch) = l.channel.clone() else {
            return;
        };
        let est = l.price.cost_msat(bytes) + 1;
        if let Some(w) = st.workers.get(&ch) {
            w.flow.paying_bytes.fetch_add(bytes, Relaxed);
            self.in_flight.fetch_add(est, Relaxed);
            let _ = w.tx.send((bytes, est));
        }
    }

    pub fn disconnected(&self, peer: SocketAddr) {
        lock(&self.state).links.remove(&peer);
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

/// (msat spent, msat in flight, (payments, wire bytes)) shared with the agent.
type Counters = (Arc<AtomicU64>, Arc<AtomicU64>, Arc<Mutex<(u64, u64)>>);

/// Pays for verified bytes on one channel, in order; the total is always
/// `start + cost(bytes so far)`, so rounding never adds up.
fn pay_worker(
    mut session: Session,
    mut store: ChannelStore,
    rx: mpsc::Receiver<(u64, u64)>,
    (price, credit): (Price, u64),
    (spent, in_flight, wire): Counters,
    flow: Arc<Flow>,
    id: String,
) {
    let gather = credit / 4;
    let mut last_wire = session.wire_bytes();
    // Payments are increments of cost(all bytes so far) − what this worker
    // paid already, so rounding happens once, and other processes paying on
    // the same channel add their own increments.
    let mut bytes = 0u64;
    let mut paid = 0u64;
    while let Ok((b, mut est)) = rx.recv() {
        let mut batch = b;
        // Gather what verifies over the next PAY_EVERY into the same payment
        // (fewer signatures and commits on both sides), but never hold a
        // quarter of the credit: the seller serves no more until paid.
        let due = std::time::Instant::now() + PAY_EVERY;
        while batch < gather {
            let left = due.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((more, e)) => {
                    batch += more;
                    est += e;
                }
                Err(_) => break,
            }
        }
        bytes += batch;
        let step = price.cost_msat(bytes).saturating_sub(paid);
        let result = if step == 0 {
            Ok(0)
        } else {
            session.pay_increment(&mut store, step)
        };
        paid += step;
        {
            let mut w = lock(&wire);
            w.0 += (step > 0) as u64;
            w.1 += session.wire_bytes() - last_wire;
            last_wire = session.wire_bytes();
        }
        spent.fetch_add(step, Relaxed);
        in_flight.fetch_sub(est.min(in_flight.load(Relaxed)), Relaxed);
        match result {
            Ok(total) => {
                if total > 0 {
                    flow.total_msat.fetch_max(total, Relaxed);
                }
                flow.paid(batch)
            }
            Err(e) => {
                warn!(channel = %id, error = %e, "payment failed; the seller will stop serving");
                return;
            }
        }
    }
}

impl crate::engine::BuyHook for BuyerAgent {
    fn consider(
        &self,
        peer: SocketAddr,
        info: &bendy::value::Value<'static>,
        wake: Arc<Notify>,
    ) -> bool {
        BuyerAgent::consider(self, peer, info, wake)
    }
    fn room(&self, peer: SocketAddr) -> u64 {
        BuyerAgent::room(self, peer)
    }
    fn bind(&self, peer: SocketAddr, info_hash: [u8; 20]) -> Result<Vec<u8>, String> {
        BuyerAgent::bind(self, peer, info_hash)
    }
    fn reserve(&self, peer: SocketAddr, bytes: u64) -> bool {
        BuyerAgent::reserve(self, peer, bytes)
    }
    fn release(&self, peer: SocketAddr, bytes: u64) {
        BuyerAgent::release(self, peer, bytes)
    }
    fn verified(&self, peer: SocketAddr, bytes: u64) {
        BuyerAgent::verified(self, peer, bytes)
    }
    fn bound(&self, peer: SocketAddr, unpaid: u64, piece_len: u64) -> Bound {
        BuyerAgent::bound(self, peer, unpaid, piece_len)
    }
    fn wasted(&self, peer: SocketAddr, bytes: u64) {
        BuyerAgent::wasted(self, peer, bytes)
    }
    fn settle(&self, t: std::time::Duration) {
        BuyerAgent::settle(self, t)
    }
    fn disconnected(&self, peer: SocketAddr) {
        BuyerAgent::disconnected(self, peer)
    }
    fn money(&self) -> crate::engine::status::Money {
        let wire = *lock(&self.wire);
        let st = lock(&self.state);
        crate::engine::status::Money {
            spent_msat: self.spent_msat(),
            budget_msat: Some(self.cfg.budget_msat),
            budget_spent: st.budget_said,
            earned_msat: 0,
            channels: st.workers.len(),
            payments: wire.0,
            pay_wire_bytes: wire.1,
        }
    }
    fn paid_peers(&self) -> usize {
        lock(&self.state).links.len()
    }
}

/// Parses an amount of sat: `25000`, `25000sat`, `25ksat`.
pub fn parse_sat(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("sat").unwrap_or(t).trim();
    let (num, mul) = match t.strip_suffix('k') {
        Some(n) => (n, 1000),
        None => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("{s:?} is not an amount in sat (e.g. 25000sat)"))
}
