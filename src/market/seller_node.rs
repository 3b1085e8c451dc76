//! The seller's side of `btt_pay` around [`crate::pay::book`]: answers
//! buyers' messages by looking up what the book asks (tip, payout script,
//! store, chain) and making its effects durable before the replies leave;
//! runs the zero-conf watch, follows channels on chain, closes them on
//! request, on stop and before expiry.
//!
//! The book decides, this module does the I/O in the order the book gives.
//! Chain lookups and a plan's store writes run without the book's lock (a
//! payment's fsync does not hold up serving); a close keeps the lock until
//! it is recorded and broadcast, so no payment is acknowledged on a channel
//! while it is being closed. Chain calls block;
//! callers run [`SellerNode::handle`] off the async runtime.

use super::admit::Admit;
use crate::chain::{ChainBackend, OutputStatus, TxStatus};
use crate::chanstore::{channel_id, ChannelState, ChannelStore, Role, StoreError};
use crate::pay::bitcoin::secp256k1::SecretKey;
use crate::pay::bitcoin::{OutPoint, Transaction, Txid};
use crate::pay::book::{
    Book, BookConfig, CloseError, Effect, Facts, FundingCheck, OutputSeen, Query, Step, Stopped,
    Stored,
};
use crate::pay::channel::{Payment, Seller};
use crate::pay::funding::FundingSeen;
use crate::pay::price::Price;
use crate::pay::proto::{Code, Msg, SellerInfo};
use crate::pay::PayError;
use crate::wallet::BttWallet;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use tracing::{debug, info, info_span, warn};

#[derive(Debug, thiserror::Error)]
pub enum SellError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    #[error(transparent)]
    Pay(#[from] PayError),
    #[error(transparent)]
    Wallet(#[from] crate::wallet::WalletError),
    #[error("channel {0} is not an open channel of ours")]
    NotOpen(String),
    #[error(transparent)]
    Follow(#[from] crate::market::follow::FollowError),
}

pub struct SellerNode {
    info: SellerInfo,
    book: Mutex<Book<SocketAddr>>,
    store: Mutex<ChannelStore>,
    chain: Arc<dyn ChainBackend>,
    wallet: Mutex<BttWallet>,
    /// Wakes the watcher: to stop, or to check fundings now.
    watch: (Mutex<Watch>, Condvar),
    /// How many proposals each IP may still make.
    admit: Mutex<Admit>,
}

#[derive(Default)]
struct Watch {
    stop: bool,
    fundings: bool,
}

/// Why the watcher woke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Its interval passed: every check is due.
    Due,
    /// An unconfirmed channel was served half its credit since its last
    /// check: check fundings now.
    Fundings,
    Stop,
}

/// What a seller does with peers that do not pay over `btt_pay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreePeers {
    Serve,
    Choke,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SellerNode {
    /// Loads every open seller channel from `store`.
    pub fn new(
        wallet: BttWallet,
        store: ChannelStore,
        chain: Arc<dyn ChainBackend>,
        price: Price,
        credit: u64,
        free_peers: FreePeers,
    ) -> Result<SellerNode, SellError> {
        let c = &wallet.config.channels;
        let cfg = BookConfig {
            network: wallet.network(),
            price,
            credit,
            min_expiry_blocks: c.min_expiry_blocks,
            max_expiry_blocks: c.max_expiry_blocks,
            min_confirmations: c.min_confirmations,
            zero_conf_limit_sat: c.zero_conf_limit_sat,
            zero_conf_timeout_blocks: 0,
            close_margin_blocks: c.close_margin_blocks,
            serve_free_peers: free_peers == FreePeers::Serve,
        };
        let key = wallet.node_key();
        let mut book = Book::new(cfg, key);
        for r in store.list()? {
            if r.role == Role::Seller && r.state == ChannelState::Open {
                let p = r.payment();
                book.resume(r.terms, p)?;
            }
        }
        info!(open = book.open_channels(), "seller channels resumed");
        rebroadcast_closes(&store, chain.as_ref(), key);
        Ok(SellerNode {
            info: book.info().clone(),
            book: Mutex::new(book),
            store: Mutex::new(store),
            chain,
            wallet: Mutex::new(wallet),
            watch: (Mutex::new(Watch::default()), Condvar::new()),
            admit: Mutex::new(Admit::default()),
        })
    }

    /// Stops serving a channel whose funding is still unconfirmed `blocks`
    /// after it was accepted (0: never).
    pub fn with_zero_conf_timeout(self, blocks: u32) -> SellerNode {
        lock(&self.book).set_zero_conf_timeout(blocks);
        self
    }

    /// Watcher side: waits up to `t`, or until fundings should be checked
    /// now, or the watcher should stop.
    pub fn wait_for_check(&self, t: std::time::Duration) -> Wake {
        let (m, cv) = &self.watch;
        let g = lock(m);
        let (mut g, _) = cv
            .wait_timeout_while(g, t, |w| !w.stop && !w.fundings)
            .unwrap_or_else(|e| e.into_inner());
        if g.stop {
            Wake::Stop
        } else if std::mem::take(&mut g.fundings) {
            Wake::Fundings
        } else {
            Wake::Due
        }
    }

    pub fn stop_watching(&self) {
        let (m, cv) = &self.watch;
        lock(m).stop = true;
        cv.notify_all();
    }

    fn want_funding_check(&self) {
        let (m, cv) = &self.watch;
        lock(m).fundings = true;
        cv.notify_all();
    }

    /// Checks every unconfirmed funding on chain (zero-conf watch): a
    /// confirmed one is no longer watched; one that is gone from the node's
    /// mempool (double-spent or dropped), or unconfirmed past the timeout,
    /// stops being served at once and is marked failed.
    pub fn watch_fundings(&self) -> Result<(), SellError> {
        let watched = lock(&self.book).unconfirmed();
        if watched.is_empty() {
            return Ok(());
        }
        let tip = self.chain.tip_height()?;
        for c in watched {
            self.check_funding(&c, tip);
        }
        Ok(())
    }

    /// One unconfirmed funding against the chain at `tip`.
    fn check_funding(&self, c: &FundingCheck, tip: u32) {
        match self.funding_seen(c) {
            Ok(seen) => {
                let stopped = lock(&self.book).funding_seen(c, seen, tip);
                if let Some(s) = stopped {
                    self.stopped(s);
                }
            }
            Err(e) => {
                warn!(channel = %channel_id(&c.funding), error = %e, "could not check an unconfirmed funding")
            }
        }
    }

    /// What the chain says of an unconfirmed funding. Not found by id: a
    /// node without a transaction index finds only mempool transactions so,
    /// and an Electrum index can lag the node's mempool; gone only if its
    /// output and the node agree.
    fn funding_seen(&self, c: &FundingCheck) -> Result<FundingSeen, crate::chain::ChainError> {
        Ok(match self.chain.tx_status(&c.funding.txid, &c.spk)? {
            TxStatus::Confirmed { .. } => FundingSeen::Confirmed,
            TxStatus::Mempool => FundingSeen::Mempool,
            TxStatus::Unknown => match self.chain.output_status(&c.funding, &c.spk)? {
                OutputStatus::Unspent | OutputStatus::Spent => FundingSeen::Confirmed,
                OutputStatus::Unknown => match self.chain.get_tx(&c.funding.txid)? {
                    None => FundingSeen::Gone,
                    Some(_) => FundingSeen::Mempool,
                },
            },
        })
    }

    /// A channel the watch stopped: marked failed in the store (kept there:
    /// if the funding is mined after all, a close on stop still claims what
    /// was paid).
    fn stopped(&self, s: Stopped) {
        let id = channel_id(&s.funding);
        if let Err(e) = lock(&self.store).set_state(&id, ChannelState::Failed) {
            warn!(channel = %id, error = %e, "could not mark the channel failed");
        }
        warn!(
            channel = %id,
            reason = s.why,
            served_since_check = s.served_since_check,
            "stopped serving this channel"
        );
    }

    /// Follows this node's channels on chain (a close confirming, a refund
    /// by the buyer after expiry, a funding spent by anyone): channels that
    /// are no longer open stop being served.
    pub fn follow_chain(&self) -> Result<(), SellError> {
        let seen = {
            let store = lock(&self.store);
            let wallet = lock(&self.wallet);
            crate::market::follow::follow(&store, self.chain.as_ref(), Some(&wallet), |r| {
                r.role == Role::Seller
                    && matches!(r.state, ChannelState::Open | ChannelState::Closing)
            })?
        };
        for c in seen.into_iter().filter(|c| c.state != ChannelState::Open) {
            let Ok(o) = c.id.parse::<OutPoint>() else {
                continue;
            };
            if lock(&self.book).forget(&o) {
                warn!(channel = %c.id, state = ?c.state, "channel spent on chain: no longer served");
            }
        }
        Ok(())
    }

    /// What we announce in the extension handshake.
    pub fn info(&self) -> &SellerInfo {
        &self.info
    }

    /// Handles one message from `peer`; returns the reply, if any.
    pub fn handle(&self, peer: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        let msg = match Msg::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                // A flood must not become a flood of log lines.
                let s = lock(&self.book).malformed(&peer);
                if s.count == 1 {
                    warn!(%peer, error = %e, "bad btt_pay message");
                } else if s.log {
                    warn!(%peer, count = s.count, "bad btt_pay messages from this peer");
                }
                return s
                    .reply
                    .then(|| Msg::error(None, Code::Malformed, e.to_string()).encode());
            }
        };
        if let Msg::Error { code, message, .. } = &msg {
            warn!(%peer, %code, %message, "buyer reported an error");
            return None;
        }
        if matches!(msg, Msg::Propose { .. })
            && !lock(&self.admit).propose(peer.ip(), std::time::Instant::now())
        {
            // Refused without a look-up; a peer that keeps on is dropped.
            let s = lock(&self.book).malformed(&peer);
            if s.log {
                warn!(%peer, count = s.count, "too many channel proposals from this address; refused");
            }
            return Some(
                Msg::error(
                    None,
                    Code::Policy,
                    "too many proposals from this address; try again in a minute",
                )
                .encode(),
            );
        }
        let span = match &msg {
            Msg::Funded { terms, .. } => info_span!("channel", id = %channel_id(&terms.funding)),
            Msg::Resume { channel } | Msg::Close { channel } => {
                info_span!("channel", id = %channel_id(channel))
            }
            _ => tracing::Span::none(),
        };
        let _g = span.enter();
        self.answer(peer, |b, f| b.handle(&msg, f))
            .into_iter()
            .next()
            .map(|m| m.encode())
    }

    /// Handles a burst of messages from one peer in order; consecutive
    /// payments are committed together (one fsync), then acknowledged.
    pub fn handle_batch(&self, peer: SocketAddr, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pays = Vec::new();
        let flush = |pays: &mut Vec<(OutPoint, Payment)>, out: &mut Vec<Vec<u8>>| {
            if !pays.is_empty() {
                let batch = std::mem::take(pays);
                let replies = self.answer(peer, |b, f| b.pays(&batch, f));
                out.extend(replies.iter().map(Msg::encode));
            }
        };
        for p in payloads {
            match Msg::decode(p) {
                Ok(Msg::Pay {
                    channel,
                    total_msat,
                    signature,
                }) => pays.push((
                    channel,
                    Payment {
                        total_msat,
                        signature,
                    },
                )),
                _ => {
                    flush(&mut pays, &mut out);
                    out.extend(self.handle(peer, p));
                }
            }
        }
        flush(&mut pays, &mut out);
        out
    }

    /// Runs the book's steps for one answer: looks up each fact it asks
    /// for (without its lock), then makes the plan's effects durable and
    /// commits it (unlocked in between, unless
    /// [`crate::pay::book::Plan::holds_book`]).
    fn answer(
        &self,
        peer: SocketAddr,
        step: impl Fn(&Book<SocketAddr>, &Facts) -> Step,
    ) -> Vec<Msg> {
        let mut f = Facts::default();
        loop {
            let book = lock(&self.book);
            match step(&book, &f) {
                Step::Need(q) => {
                    drop(book);
                    if let Err(e) = self.look_up(q, &mut f) {
                        return vec![Msg::error(None, Code::Internal, e.to_string())];
                    }
                }
                Step::Done(plan) => {
                    let held = plan.holds_book().then_some(book);
                    return match self.apply(&plan.effects) {
                        Ok(()) => held
                            .unwrap_or_else(|| lock(&self.book))
                            .commit(Some(&peer), plan),
                        Err(e) => {
                            let code = match e {
                                SellError::Store(StoreError::NotOpen(..)) => Code::Closed,
                                // Another commit passed the total meanwhile.
                                SellError::Store(StoreError::NotIncreasing { .. }) => {
                                    Code::NotIncreasing
                                }
                                _ => Code::Internal,
                            };
                            plan.failed(code, &e.to_string())
                        }
                    };
                }
            }
        }
    }

    /// Answers one query of the book into `f`.
    fn look_up(&self, q: Query, f: &mut Facts) -> Result<(), SellError> {
        match q {
            Query::Tip => f.tip = Some(self.chain.tip_height()?),
            Query::PayoutScript => f.payout = Some(lock(&self.wallet).offered_payout_script()?),
            Query::IsOurs(spk) => f.is_ours = Some(lock(&self.wallet).wallet.is_mine(spk)),
            Query::Stored(ch) => {
                f.stored = Some(match lock(&self.store).get(&channel_id(&ch)) {
                    Ok(r) if r.role == Role::Seller => Some(Stored {
                        open: r.state == ChannelState::Open,
                        total_msat: r.total_msat,
                    }),
                    Ok(_) | Err(StoreError::NotFound(_)) => None,
                    Err(e) => return Err(e.into()),
                })
            }
            Query::Output { funding, spk } => {
                f.output = Some(match self.chain.output_status(&funding, &spk)? {
                    OutputStatus::Unspent => OutputSeen::Unspent,
                    OutputStatus::Spent => OutputSeen::Spent,
                    OutputStatus::Unknown => OutputSeen::Unknown,
                })
            }
            Query::Broadcast(tx) => {
                f.broadcast = Some(
                    self.chain
                        .broadcast(&tx)
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                )
            }
            Query::Funding(c) => {
                match self.chain.tip_height() {
                    Ok(tip) => self.check_funding(&c, tip),
                    Err(e) => {
                        warn!(channel = %channel_id(&c.funding), error = %e, "could not check an unconfirmed funding")
                    }
                }
                f.checked.insert(c.funding);
            }
            Query::Confirmations { txid, spk } => {
                let have = self.chain.tx_status(&txid, &spk)?.confirmations();
                if have == 0 {
                    info!("funding unconfirmed");
                }
                f.confirmations = Some(have);
            }
        }
        Ok(())
    }

    /// Makes a plan's effects durable, in order.
    fn apply(&self, effects: &[Effect]) -> Result<(), SellError> {
        for e in effects {
            match e {
                Effect::StoreChannel(terms) => {
                    lock(&self.store).insert(Role::Seller, terms)?;
                    crate::failpoint::hit("seller-funded-stored");
                    info!(
                        channel = %channel_id(&terms.funding),
                        capacity = terms.capacity_sat,
                        expiry = terms.expiry_height,
                        "channel open"
                    );
                }
                Effect::StorePayments(updates) => {
                    let updates: Vec<_> = updates
                        .iter()
                        .map(|(o, total, sig)| (channel_id(o), *total, Some(*sig)))
                        .collect();
                    lock(&self.store).advance_many(&updates)?;
                    crate::failpoint::hit("seller-pay-stored");
                }
                Effect::RecordClose { funding, txid } => {
                    record_close(&lock(&self.store), funding, txid)?
                }
                Effect::Broadcast(tx) => broadcast_close(self.chain.as_ref(), tx)?,
            }
        }
        Ok(())
    }

    /// Whether to serve `len` bytes to `peer` now (see [`Book::may_upload`]).
    pub fn may_upload(
        &self,
        peer: SocketAddr,
        torrent: [u8; 20],
        speaks_pay: bool,
        len: u32,
    ) -> bool {
        let (ok, check) = {
            let mut b = lock(&self.book);
            let ok = b.may_upload(&peer, torrent, speaks_pay, len);
            (ok, b.take_check_wanted())
        };
        if check {
            self.want_funding_check();
        }
        if !ok && speaks_pay {
            debug!(%peer, len, "not serving: no credit left on its channel, or none bound");
        }
        ok
    }

    /// `len` bytes allowed by [`SellerNode::may_upload`] were not sent after
    /// all (cancelled by the buyer, or the connection closed first).
    pub fn unserved(&self, peer: SocketAddr, torrent: [u8; 20], len: u64) {
        lock(&self.book).unserved(&peer, torrent, len)
    }

    pub fn disconnected(&self, peer: SocketAddr) {
        lock(&self.book).disconnected(&peer)
    }

    /// A peer that sent too many malformed messages is dropped.
    pub fn misbehaving(&self, peer: SocketAddr) -> bool {
        lock(&self.book).misbehaving(&peer)
    }

    /// Co-signs and broadcasts the best commitment of channel `ch`.
    pub fn close(&self, ch: &OutPoint) -> Result<Txid, SellError> {
        let mut book = lock(&self.book);
        let plan = book.close(ch).map_err(|e| match e {
            CloseError::NotOpen => SellError::NotOpen(channel_id(ch)),
            CloseError::Pay(p) => SellError::Pay(p),
        })?;
        let txid = plan.close_txid().expect("a close plan records its close");
        self.apply(&plan.effects)?;
        book.commit(None, plan);
        Ok(txid)
    }

    /// Closes every channel whose expiry is within the safety margin; returns
    /// how many were closed.
    pub fn close_expiring(&self) -> Result<usize, SellError> {
        let tip = self.chain.tip_height()?;
        let due = lock(&self.book).expiring(tip);
        let mut n = 0;
        for ch in due {
            match self.close(&ch) {
                Ok(txid) => {
                    info!(channel = %channel_id(&ch), %txid, tip, "closed before expiry");
                    n += 1;
                }
                Err(SellError::Pay(PayError::NothingToClose | PayError::Dust { .. })) => {
                    // Nothing worth claiming: the buyer refunds after expiry.
                    lock(&self.store).set_state(&channel_id(&ch), ChannelState::Closed)?;
                    lock(&self.book).forget(&ch);
                }
                Err(e) => warn!(channel = %channel_id(&ch), error = %e, "close failed"),
            }
        }
        Ok(n)
    }

    /// Closes every channel that holds a payment (on shutdown).
    pub fn close_all(&self) -> usize {
        let (mut all, stopped) = lock(&self.book).all();
        // A stopped channel whose funding was mined after all is claimed too.
        for (o, spk) in stopped {
            if matches!(
                self.chain.output_status(&o, &spk),
                Ok(OutputStatus::Unspent)
            ) {
                all.push(o);
            }
        }
        let mut n = 0;
        for ch in all {
            match self.close(&ch) {
                Ok(txid) => {
                    info!(channel = %channel_id(&ch), %txid, "closed on stop");
                    n += 1
                }
                Err(SellError::Pay(PayError::NothingToClose)) => {}
                Err(e) => warn!(channel = %channel_id(&ch), error = %e, "close failed"),
            }
        }
        n
    }
}

/// Records that channel `funding` closes with `txid` (before it is
/// broadcast: if we crash after broadcasting, the state says closing and a
/// rerun broadcasts the same transaction again).
fn record_close(store: &ChannelStore, funding: &OutPoint, txid: &Txid) -> Result<(), SellError> {
    store.set_closing(&channel_id(funding), ChannelState::Closing, txid)?;
    crate::failpoint::hit("seller-close-recorded");
    Ok(())
}

fn broadcast_close(chain: &dyn ChainBackend, tx: &Transaction) -> Result<(), SellError> {
    chain.broadcast(tx)?;
    crate::failpoint::hit("seller-close-broadcast");
    info!(txid = %tx.compute_txid(), "close broadcast");
    Ok(())
}

/// Co-signs, records and broadcasts the close of `seller`'s channel.
pub fn close_channel(
    store: &ChannelStore,
    chain: &dyn ChainBackend,
    seller: &Seller,
) -> Result<Txid, SellError> {
    let tx = seller.close()?;
    let txid = tx.compute_txid();
    record_close(store, &seller.terms().funding, &txid)?;
    broadcast_close(chain, &tx)?;
    Ok(txid)
}

/// Closes recorded but perhaps never broadcast (the seller stopped between
/// recording and broadcasting): the same transaction is rebuilt from the
/// stored payment (signatures are deterministic) and broadcast again.
fn rebroadcast_closes(store: &ChannelStore, chain: &dyn ChainBackend, key: SecretKey) {
    let Ok(list) = store.list() else { return };
    for r in list {
        let (Role::Seller, ChannelState::Closing, Some(txid)) = (r.role, r.state, r.close_txid)
        else {
            continue;
        };
        let spk = r.terms.funding_script_pubkey();
        if !matches!(
            chain.output_status(&r.terms.funding, &spk),
            Ok(OutputStatus::Unspent)
        ) {
            continue; // spent (our close, or anything else) or unknown
        }
        let p = r.payment();
        let tx = match Seller::resume(r.terms, key, p).and_then(|s| s.close()) {
            Ok(tx) if tx.compute_txid() == txid => tx,
            Ok(_) => {
                warn!(channel = %r.id, "the recorded close does not rebuild to the same transaction");
                continue;
            }
            Err(e) => {
                warn!(channel = %r.id, error = %e, "could not rebuild the recorded close");
                continue;
            }
        };
        match chain.broadcast(&tx) {
            Ok(_) => info!(channel = %r.id, %txid, "recorded close broadcast again"),
            Err(e) => warn!(channel = %r.id, error = %e, "broadcasting the recorded close failed"),
        }
    }
}

impl crate::engine::PayHook for SellerNode {
    fn ext_name(&self) -> &'static str {
        crate::pay::proto::EXT_NAME
    }
    fn handshake(&self) -> bendy::value::Value<'static> {
        self.info.to_value()
    }
    fn handle(&self, peer: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
        SellerNode::handle(self, peer, payload)
    }
    fn may_upload(&self, peer: SocketAddr, torrent: [u8; 20], speaks_pay: bool, len: u32) -> bool {
        SellerNode::may_upload(self, peer, torrent, speaks_pay, len)
    }
    fn unserved(&self, peer: SocketAddr, torrent: [u8; 20], len: u64) {
        SellerNode::unserved(self, peer, torrent, len)
    }
    fn disconnected(&self, peer: SocketAddr) {
        SellerNode::disconnected(self, peer)
    }
    fn misbehaving(&self, peer: SocketAddr) -> bool {
        SellerNode::misbehaving(self, peer)
    }
    fn money(&self, torrent: [u8; 20]) -> crate::engine::status::Money {
        let book = lock(&self.book);
        crate::engine::status::Money {
            earned_msat: book.share_msat(&torrent),
            earned_all_msat: book.held_msat(),
            channels: book.open_channels(),
            ..Default::default()
        }
    }
    fn handle_batch(&self, peer: SocketAddr, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        SellerNode::handle_batch(self, peer, payloads)
    }
}
