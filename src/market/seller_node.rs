//! The seller's side of `btt_pay`: answers buyers' messages, keeps every open
//! channel, closes them on request, on stop and before expiry.
//!
//! Order of effects is the safety argument: a payment is verified, then
//! committed to the channel store, and only then acknowledged (and, in the
//! paid swarm, served past). A funding output is checked on chain (script,
//! value, unspent, confirmations or the zero-conf limit) before the channel is
//! stored. Chain calls block; callers run [`SellerNode::handle`] off the async
//! runtime.

use crate::chain::{ChainBackend, OutputStatus};
use crate::chanstore::{channel_id, ChannelState, ChannelStore, Role, StoreError};
use crate::config::ChannelConfig;
use crate::pay::bitcoin::secp256k1::SecretKey;
use crate::pay::bitcoin::{consensus::encode, Network, OutPoint, Transaction, Txid};
use crate::pay::channel::{Payment, Seller, SellerPolicy};
use crate::pay::funding::{self, FundingSeen, Verdict};
use crate::pay::price::{Account, Price};
use crate::pay::proto::{ChannelTerms, Code, Msg, SellerInfo};
use crate::pay::tx::Terms;
use crate::pay::PayError;
use crate::wallet::{public_key, BttWallet};
use std::collections::HashMap;
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
    network: Network,
    key: SecretKey,
    policy: ChannelConfig,
    store: Mutex<ChannelStore>,
    chain: Arc<dyn ChainBackend>,
    wallet: Mutex<BttWallet>,
    channels: Mutex<HashMap<OutPoint, Seller>>,
    price: Price,
    free_peers: FreePeers,
    /// Which channel pays for each data connection.
    conns: Mutex<HashMap<SocketAddr, OutPoint>>,
    /// Bytes served and msat recorded, per open channel.
    accounts: Mutex<HashMap<OutPoint, Account>>,
    /// Channels whose funding has not confirmed yet (see [`funding`]).
    unconfirmed: Mutex<HashMap<OutPoint, Unconfirmed>>,
    /// Wakes the watcher to stop.
    watch: (Mutex<bool>, Condvar),
    /// Blocks an unconfirmed funding is served at all (0: no limit).
    zero_conf_timeout_blocks: u32,
    /// Malformed messages per connected peer.
    strikes: Mutex<HashMap<SocketAddr, u32>>,
    /// Channels no longer served (funding gone or unconfirmed too long),
    /// kept so that a close on stop can still claim them.
    stopped: Mutex<HashMap<OutPoint, Seller>>,
}

/// Malformed `btt_pay` messages after which a peer is dropped.
const BAD_MESSAGES_DROP: u32 = 16;

/// An open channel whose funding is not confirmed yet.
#[derive(Clone, Copy, Debug, Default)]
struct Unconfirmed {
    /// Tip when it was first watched (set by the first check after a restart).
    since: Option<u32>,
    /// Bytes served on it when its funding was last seen in place.
    checked_served: u64,
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
        let network = wallet.network();
        let key = wallet.node_key();
        let policy = wallet.config.channels.clone();
        let info = SellerInfo {
            network: network.to_core_arg().to_string(),
            node_key: public_key(&key),
            msat_per_gib: price.msat_per_gib,
            credit,
            min_expiry_blocks: policy.min_expiry_blocks,
            max_expiry_blocks: policy.max_expiry_blocks,
            zero_conf_sat: policy.zero_conf_limit_sat,
        };
        let mut channels = HashMap::new();
        let mut accounts = HashMap::new();
        let mut unconfirmed = HashMap::new();
        for r in store.list()? {
            if r.role == Role::Seller && r.state == ChannelState::Open {
                let p = r.payment();
                let acc = Account::resumed(price, r.total_msat);
                // Until the watcher's first check says it is confirmed.
                unconfirmed.insert(
                    r.terms.funding,
                    Unconfirmed {
                        since: None,
                        checked_served: acc.served_bytes,
                    },
                );
                accounts.insert(r.terms.funding, acc);
                channels.insert(r.terms.funding, Seller::resume(r.terms, key, p)?);
            }
        }
        info!(open = channels.len(), "seller channels resumed");
        rebroadcast_closes(&store, chain.as_ref(), key);
        Ok(SellerNode {
            info,
            network,
            key,
            policy,
            store: Mutex::new(store),
            chain,
            wallet: Mutex::new(wallet),
            channels: Mutex::new(channels),
            price,
            free_peers,
            conns: Mutex::new(HashMap::new()),
            accounts: Mutex::new(accounts),
            unconfirmed: Mutex::new(unconfirmed),
            watch: (Mutex::new(false), Condvar::new()),
            zero_conf_timeout_blocks: 0,
            strikes: Mutex::new(HashMap::new()),
            stopped: Mutex::new(HashMap::new()),
        })
    }

    /// Stops serving a channel whose funding is still unconfirmed `blocks`
    /// after it was accepted (0: never).
    pub fn with_zero_conf_timeout(mut self, blocks: u32) -> SellerNode {
        self.zero_conf_timeout_blocks = blocks;
        self
    }

    /// Watcher side: waits up to `t`; false once
    /// [`SellerNode::stop_watching`] was called.
    pub fn wait_for_check(&self, t: std::time::Duration) -> bool {
        let (m, cv) = &self.watch;
        let g = lock(m);
        let (g, _) = cv
            .wait_timeout_while(g, t, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        !*g
    }

    pub fn stop_watching(&self) {
        let (m, cv) = &self.watch;
        *lock(m) = true;
        cv.notify_all();
    }

    /// Checks every unconfirmed funding on chain (zero-conf watch): a
    /// confirmed one is no longer watched; one that is gone from the node's
    /// mempool (double-spent or dropped), or unconfirmed past the timeout,
    /// stops being served at once and is marked failed.
    pub fn watch_fundings(&self) -> Result<(), SellError> {
        let watched: Vec<OutPoint> = lock(&self.unconfirmed).keys().copied().collect();
        if watched.is_empty() {
            return Ok(());
        }
        let tip = self.chain.tip_height()?;
        for o in watched {
            self.check_funding(&o, tip);
        }
        Ok(())
    }

    /// Before a payment on an unconfirmed channel is acknowledged (and so
    /// before more is served against it), its funding is checked: a buyer
    /// gets at most `credit` (plus the waste allowance) beyond the last
    /// acknowledged payment, so once a conflict is visible at most that much
    /// is served before the channel stops. False: the channel was stopped.
    fn funding_still_there(&self, o: &OutPoint) -> bool {
        let served = lock(&self.accounts).get(o).map_or(0, |a| a.served_bytes);
        match lock(&self.unconfirmed).get(o) {
            // Nothing served since the last check: this ack lets no more be
            // served than the gate in `may_upload` allows.
            Some(u) if served > u.checked_served => {}
            _ => return true,
        }
        match self.chain.tip_height() {
            Ok(tip) => self.check_funding(o, tip),
            Err(e) => {
                warn!(channel = %channel_id(o), error = %e, "could not check an unconfirmed funding");
                true
            }
        }
    }

    /// One unconfirmed funding against the chain at `tip`; false if the
    /// channel was stopped.
    fn check_funding(&self, o: &OutPoint, tip: u32) -> bool {
        let Some(spk) = lock(&self.channels)
            .get(o)
            .map(|s| s.terms().funding_script_pubkey())
        else {
            lock(&self.unconfirmed).remove(o);
            return false;
        };
        // What this check vouches for: what was served before it asked.
        let served = lock(&self.accounts).get(o).map_or(0, |a| a.served_bytes);
        let seen = match self.chain.tx_status(&o.txid, &spk) {
            Ok(crate::chain::TxStatus::Confirmed { .. }) => FundingSeen::Confirmed,
            Ok(crate::chain::TxStatus::Mempool) => FundingSeen::Mempool,
            // An index (Electrum) can lag the node's mempool: gone only if
            // the node itself no longer has it.
            // Not found by id: a node without a transaction index finds
            // only mempool transactions so, and an Electrum index can lag.
            // Gone only if its output and the node agree.
            Ok(crate::chain::TxStatus::Unknown) => match self.chain.output_status(o, &spk) {
                Ok(OutputStatus::Unspent | OutputStatus::Spent) => FundingSeen::Confirmed,
                Ok(OutputStatus::Unknown) => match self.chain.get_tx(&o.txid) {
                    Ok(None) => FundingSeen::Gone,
                    Ok(Some(_)) => FundingSeen::Mempool,
                    Err(e) => {
                        warn!(channel = %channel_id(o), error = %e, "could not check an unconfirmed funding");
                        return true;
                    }
                },
                Err(e) => {
                    warn!(channel = %channel_id(o), error = %e, "could not check an unconfirmed funding");
                    return true;
                }
            },
            Err(e) => {
                warn!(channel = %channel_id(o), error = %e, "could not check an unconfirmed funding");
                return true;
            }
        };
        let since = {
            let mut u = lock(&self.unconfirmed);
            let Some(e) = u.get_mut(o) else {
                return true;
            };
            *e.since.get_or_insert(tip)
        };
        match funding::verdict(seen, tip, since, self.zero_conf_timeout_blocks) {
            Verdict::Confirmed => {
                lock(&self.unconfirmed).remove(o);
                debug!(channel = %channel_id(o), "funding confirmed");
                true
            }
            Verdict::Wait => {
                if let Some(e) = lock(&self.unconfirmed).get_mut(o) {
                    e.checked_served = e.checked_served.max(served);
                }
                true
            }
            Verdict::Stop(why) => {
                self.stop_serving(o, &why);
                false
            }
        }
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
            if lock(&self.channels).remove(&o).is_some() {
                lock(&self.accounts).remove(&o);
                lock(&self.unconfirmed).remove(&o);
                warn!(channel = %c.id, state = ?c.state, "channel spent on chain: no longer served");
            }
        }
        Ok(())
    }

    /// Serves nothing more on channel `o` and marks it failed.
    fn stop_serving(&self, o: &OutPoint, why: &str) {
        // Kept aside, not forgotten: if the funding is mined after all, a
        // close on stop still claims what was paid.
        if let Some(s) = lock(&self.channels).remove(o) {
            lock(&self.stopped).insert(*o, s);
        }
        let served = lock(&self.accounts).remove(o).map_or(0, |a| a.served_bytes);
        let checked = lock(&self.unconfirmed)
            .remove(o)
            .map_or(0, |u| u.checked_served);
        let id = channel_id(o);
        if let Err(e) = lock(&self.store).set_state(&id, ChannelState::Failed) {
            warn!(channel = %id, error = %e, "could not mark the channel failed");
        }
        warn!(
            channel = %id,
            reason = why,
            served_since_check = served.saturating_sub(checked),
            "stopped serving this channel"
        );
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
                // One line for the first, then one per power of ten: a
                // flood must not become a flood of log lines.
                let n = {
                    let mut s = lock(&self.strikes);
                    let n = s.entry(peer).or_default();
                    *n += 1;
                    *n
                };
                if n == 1 {
                    warn!(%peer, error = %e, "bad btt_pay message");
                } else if n.is_power_of_two() && n >= 1024 || n == BAD_MESSAGES_DROP {
                    warn!(%peer, count = n, "bad btt_pay messages from this peer");
                }
                return (n <= 3).then(|| Msg::error(None, Code::Malformed, e.to_string()).encode());
            }
        };
        let reply = match msg {
            Msg::Propose {
                network,
                capacity_sat,
                expiry_height,
            } => self.on_propose(&network, capacity_sat, expiry_height),
            Msg::Funded { terms, tx } => self.on_funded(terms, &tx),
            Msg::Pay {
                channel,
                total_msat,
                signature,
            } => self.on_pay(
                channel,
                Payment {
                    total_msat,
                    signature,
                },
            ),
            Msg::Resume { channel } => self.on_resume(channel),
            Msg::Close { channel } => match self.close(&channel) {
                Ok(txid) => Msg::Closed { channel, txid },
                Err(e) => Msg::error(Some(channel), code_of(&e), e.to_string()),
            },
            // Seller-to-buyer messages are not for us.
            Msg::Accept { .. }
            | Msg::Ready { .. }
            | Msg::Pending { .. }
            | Msg::Ack { .. }
            | Msg::State { .. }
            | Msg::Closed { .. } => Msg::error(None, Code::Malformed, "message is for the buyer"),
            Msg::Error { code, message, .. } => {
                warn!(%peer, %code, %message, "buyer reported an error");
                return None;
            }
        };
        self.note_reply(peer, &reply);
        Some(reply.encode())
    }

    /// Binds the connection to the channel a reply confirms, and keeps the
    /// channel's paid total for the credit rule.
    fn note_reply(&self, peer: SocketAddr, reply: &Msg) {
        let ch = match reply {
            Msg::Ready { channel }
            | Msg::State {
                channel,
                open: true,
                ..
            } => *channel,
            Msg::Ack {
                channel,
                total_msat,
            } => {
                let mut acc = lock(&self.accounts);
                if lock(&self.stopped).contains_key(channel) {
                    return;
                }
                let a = acc.entry(*channel).or_default();
                a.paid_msat = a.paid_msat.max(*total_msat);
                *channel
            }
            _ => return,
        };
        {
            // A channel stopped meanwhile gets no account back.
            let mut acc = lock(&self.accounts);
            if lock(&self.stopped).contains_key(&ch) {
                return;
            }
            acc.entry(ch).or_default();
        }
        lock(&self.conns).insert(peer, ch);
    }

    /// Whether to serve `len` bytes to `peer` now (the credit rule; see
    /// `btt_pay.md` §7). `speaks_pay`: the peer announced `btt_pay`.
    pub fn may_upload(&self, peer: SocketAddr, speaks_pay: bool, len: u32) -> bool {
        let ch = lock(&self.conns).get(&peer).copied();
        let Some(ch) = ch else {
            return !speaks_pay && self.free_peers == FreePeers::Serve;
        };
        let mut acc = lock(&self.accounts);
        let Some(a) = acc.get_mut(&ch) else {
            return false;
        };
        if a.may_serve(self.price, self.info.credit, len as u64) {
            if let Some(u) = lock(&self.unconfirmed).get(&ch) {
                // Unconfirmed funding: never more than the credit (and the
                // waste allowance) beyond what a chain check vouched for. An
                // honest buyer never reaches it (each of its payments is
                // checked before it is acknowledged); one that prepays waits
                // for the watcher's next check.
                let since = a.served_bytes.saturating_sub(u.checked_served);
                let allowance = self
                    .price
                    .bytes_for(crate::pay::price::waste_allowance_msat(a.paid_msat));
                if since + len as u64 > self.info.credit + allowance {
                    debug!(%peer, channel = %channel_id(&ch), "unconfirmed funding: holding until it is checked on chain");
                    return false;
                }
            }
            a.served_bytes += len as u64;
            true
        } else {
            debug!(%peer, channel = %channel_id(&ch), served = a.served_bytes, paid_msat = a.paid_msat, "credit exhausted: refusing");
            false
        }
    }

    /// `len` bytes allowed by [`SellerNode::may_upload`] were not sent after
    /// all (cancelled by the buyer, or the connection closed first).
    pub fn unserved(&self, peer: SocketAddr, len: u64) {
        let ch = lock(&self.conns).get(&peer).copied();
        if let Some(ch) = ch {
            if let Some(a) = lock(&self.accounts).get_mut(&ch) {
                a.unserved(len);
            }
        }
    }

    pub fn disconnected(&self, peer: SocketAddr) {
        lock(&self.conns).remove(&peer);
        lock(&self.strikes).remove(&peer);
    }

    /// A peer that sent too many malformed messages is dropped.
    pub fn misbehaving(&self, peer: SocketAddr) -> bool {
        lock(&self.strikes)
            .get(&peer)
            .is_some_and(|&n| n >= BAD_MESSAGES_DROP)
    }

    fn policy(&self) -> SellerPolicy {
        SellerPolicy {
            network: self.network,
            min_expiry_blocks: self.policy.min_expiry_blocks,
            max_expiry_blocks: self.policy.max_expiry_blocks,
        }
    }

    fn on_propose(&self, network: &str, capacity_sat: u64, expiry: u32) -> Msg {
        if network != self.info.network {
            return Msg::error(
                None,
                Code::WrongNetwork,
                format!("seller is on {}, not {network}", self.info.network),
            );
        }
        let tip = match self.chain.tip_height() {
            Ok(t) => t,
            Err(e) => return Msg::error(None, Code::Internal, e.to_string()),
        };
        let (min, max) = (
            tip + self.policy.min_expiry_blocks,
            tip + self.policy.max_expiry_blocks,
        );
        if expiry < min || expiry > max {
            return Msg::error(
                None,
                Code::Policy,
                PayError::ExpiryOutOfRange { expiry, min, max }.to_string(),
            );
        }
        if capacity_sat <= crate::pay::DUST_SAT {
            return Msg::error(None, Code::Policy, "capacity below dust");
        }
        match lock(&self.wallet).offered_payout_script() {
            Ok(spk) => Msg::Accept {
                seller_key: self.info.node_key,
                seller_payout: spk,
            },
            Err(e) => Msg::error(None, Code::Internal, e.to_string()),
        }
    }

    fn on_funded(&self, t: ChannelTerms, raw_tx: &[u8]) -> Msg {
        let ch = t.funding;
        let span = info_span!("channel", id = %channel_id(&ch));
        let _g = span.enter();
        let err = |code, m: String| Msg::error(Some(ch), code, m);
        if t.network != self.info.network {
            return err(
                Code::WrongNetwork,
                format!("seller is on {}, not {}", self.info.network, t.network),
            );
        }
        if t.seller_key != self.info.node_key {
            return err(Code::Policy, "seller key is not this node's key".into());
        }
        if !lock(&self.wallet).wallet.is_mine(t.seller_payout.clone()) {
            return err(Code::Policy, "seller payout script is not ours".into());
        }
        if let Ok(r) = lock(&self.store).get(&channel_id(&ch)) {
            return if r.state == ChannelState::Open {
                Msg::Ready { channel: ch }
            } else {
                err(Code::Closed, format!("channel is {:?}", r.state))
            };
        }
        let terms = Terms {
            network: self.network,
            capacity_sat: t.capacity_sat,
            fee_sat: t.fee_sat,
            expiry_height: t.expiry_height,
            buyer: t.buyer_key,
            seller: t.seller_key,
            buyer_payout: t.buyer_payout,
            seller_payout: t.seller_payout,
            funding: ch,
        };
        let tip = match self.chain.tip_height() {
            Ok(t) => t,
            Err(e) => return err(Code::Internal, e.to_string()),
        };
        let seller = match Seller::open(terms.clone(), self.key, &self.policy(), tip) {
            Ok(s) => s,
            Err(e) => return err(code_of_pay(&e), e.to_string()),
        };
        let tx: Transaction = match encode::deserialize(raw_tx) {
            Ok(tx) => tx,
            Err(e) => return err(Code::Malformed, format!("funding transaction: {e}")),
        };
        if let Err(e) = seller.check_funding(&tx) {
            return err(Code::WrongFunding, e.to_string());
        }
        let spk = terms.funding_script_pubkey();
        match self.chain.output_status(&ch, &spk) {
            Ok(OutputStatus::Spent) => {
                return err(Code::FundingSpent, "funding output is already spent".into())
            }
            Ok(OutputStatus::Unspent) => {}
            Ok(OutputStatus::Unknown) => {
                // The buyer may not have broadcast yet; try it ourselves.
                if let Err(e) = self.chain.broadcast(&tx) {
                    return err(Code::FundingUnknown, e.to_string());
                }
            }
            Err(e) => return err(Code::Internal, e.to_string()),
        }
        let have = match self.chain.tx_status(&ch.txid, &spk) {
            Ok(s) => s.confirmations(),
            Err(e) => return err(Code::Internal, e.to_string()),
        };
        let need = self.policy.min_confirmations.max(1);
        if have < need && terms.capacity_sat > self.policy.zero_conf_limit_sat {
            info!(have, need, "funding needs confirmations");
            return Msg::Pending {
                channel: ch,
                have,
                need,
            };
        }
        if let Err(e) = lock(&self.store).insert(Role::Seller, &terms) {
            return err(Code::Internal, e.to_string());
        }
        crate::failpoint::hit("seller-funded-stored");
        info!(
            capacity = terms.capacity_sat,
            expiry = terms.expiry_height,
            confirmations = have,
            "channel open"
        );
        lock(&self.channels).insert(ch, seller);
        if have == 0 {
            lock(&self.unconfirmed).insert(
                ch,
                Unconfirmed {
                    since: Some(tip),
                    checked_served: 0,
                },
            );
        }
        Msg::Ready { channel: ch }
    }

    fn on_pay(&self, ch: OutPoint, p: Payment) -> Msg {
        let mut replies = self.on_pays(vec![(ch, p)]);
        replies.pop().expect("one reply per payment")
    }

    fn noted(&self, peer: SocketAddr, replies: Vec<Msg>) -> Vec<Vec<u8>> {
        replies
            .iter()
            .map(|r| {
                self.note_reply(peer, r);
                r.encode()
            })
            .collect()
    }

    fn on_pays(&self, batch: Vec<(OutPoint, Payment)>) -> Vec<Msg> {
        // A stopped channel is no longer in `channels`: its payments are refused.
        let mut seen = std::collections::HashSet::new();
        for (ch, _) in &batch {
            if seen.insert(*ch) {
                self.funding_still_there(ch);
            }
        }
        let mut channels = lock(&self.channels);
        accept_payments(&mut lock(&self.store), &mut channels, batch)
    }

    /// Handles a burst of messages from one peer in order; consecutive
    /// payments are committed together (one fsync), then acknowledged.
    pub fn handle_batch(&self, peer: SocketAddr, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pays = Vec::new();
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
                    if !pays.is_empty() {
                        let replies = self.on_pays(std::mem::take(&mut pays));
                        out.extend(self.noted(peer, replies));
                    }
                    out.extend(self.handle(peer, p));
                }
            }
        }
        if !pays.is_empty() {
            let replies = self.on_pays(pays);
            out.extend(self.noted(peer, replies));
        }
        out
    }

    fn on_resume(&self, ch: OutPoint) -> Msg {
        let unpaid = lock(&self.accounts)
            .get(&ch)
            .map_or(0, |a| a.unpaid_bytes(self.price));
        match lock(&self.store).get(&channel_id(&ch)) {
            Ok(r) if r.role == Role::Seller => Msg::State {
                channel: ch,
                total_msat: r.total_msat,
                open: r.state == ChannelState::Open,
                unpaid,
            },
            _ => Msg::error(Some(ch), Code::UnknownChannel, "no channel with this id"),
        }
    }

    /// Co-signs and broadcasts the best commitment of channel `ch`.
    pub fn close(&self, ch: &OutPoint) -> Result<Txid, SellError> {
        let mut channels = lock(&self.channels);
        let txid = match channels.get(ch) {
            Some(seller) => {
                let txid = close_channel(&lock(&self.store), self.chain.as_ref(), seller)?;
                channels.remove(ch);
                txid
            }
            None => {
                let mut stopped = lock(&self.stopped);
                let seller = stopped
                    .get(ch)
                    .ok_or_else(|| SellError::NotOpen(channel_id(ch)))?;
                let txid = close_channel(&lock(&self.store), self.chain.as_ref(), seller)?;
                stopped.remove(ch);
                txid
            }
        };
        drop(channels);
        // Nothing more is served against a closed channel.
        lock(&self.accounts).remove(ch);
        Ok(txid)
    }

    /// Closes every channel whose expiry is within the safety margin; returns
    /// how many were closed.
    pub fn close_expiring(&self) -> Result<usize, SellError> {
        let tip = self.chain.tip_height()?;
        let due: Vec<OutPoint> = lock(&self.channels)
            .iter()
            .filter(|(_, s)| s.must_close(tip, self.policy.close_margin_blocks))
            .map(|(o, _)| *o)
            .collect();
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
                    lock(&self.channels).remove(&ch);
                }
                Err(e) => warn!(channel = %channel_id(&ch), error = %e, "close failed"),
            }
        }
        Ok(n)
    }

    /// Closes every channel that holds a payment (on shutdown).
    pub fn close_all(&self) -> usize {
        let mut all: Vec<OutPoint> = lock(&self.channels).keys().copied().collect();
        // A stopped channel whose funding was mined after all is claimed too.
        let stopped: Vec<(OutPoint, crate::pay::bitcoin::ScriptBuf)> = lock(&self.stopped)
            .iter()
            .map(|(o, s)| (*o, s.terms().funding_script_pubkey()))
            .collect();
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

/// Verifies a group of payments in order, commits the newest total of each
/// channel in one durable transaction, and only then takes them: one reply
/// per payment (an ack, or the error that refused it). If the commit fails,
/// nothing is taken and every verified payment gets the error.
pub fn accept_payments(
    store: &mut ChannelStore,
    channels: &mut HashMap<OutPoint, Seller>,
    batch: Vec<(OutPoint, Payment)>,
) -> Vec<Msg> {
    let mut replies: Vec<Option<Msg>> = Vec::with_capacity(batch.len());
    // Newest verified payment per channel, and (reply slot, total) of each
    // verified payment waiting for the commit.
    let mut newest: HashMap<OutPoint, Payment> = HashMap::new();
    let mut waiting: Vec<(usize, OutPoint, u64)> = Vec::new();
    for (ch, p) in batch {
        let Some(seller) = channels.get(&ch) else {
            replies.push(Some(Msg::error(
                Some(ch),
                Code::UnknownChannel,
                "no open channel with this id",
            )));
            continue;
        };
        let last = newest
            .get(&ch)
            .map(|p| p.total_msat)
            .unwrap_or_else(|| seller.total_msat());
        match seller.verify_after(last, &p) {
            Ok(()) => {
                waiting.push((replies.len(), ch, p.total_msat));
                replies.push(None);
                newest.insert(ch, p);
            }
            Err(e) => replies.push(Some(Msg::error(Some(ch), code_of_pay(&e), e.to_string()))),
        }
    }
    if !newest.is_empty() {
        let updates: Vec<_> = newest
            .iter()
            .map(|(ch, p)| (channel_id(ch), p.total_msat, Some(p.signature)))
            .collect();
        // Durable before acknowledged.
        match store.advance_many(&updates) {
            Ok(()) => {
                crate::failpoint::hit("seller-pay-stored");
                for (ch, p) in newest {
                    if let Some(s) = channels.get_mut(&ch) {
                        s.record(p);
                    }
                }
                for (i, channel, total_msat) in waiting {
                    replies[i] = Some(Msg::Ack {
                        channel,
                        total_msat,
                    });
                }
            }
            Err(e) => {
                let code = match e {
                    StoreError::NotOpen(..) => Code::Closed,
                    _ => Code::Internal,
                };
                for (i, ch, _) in waiting {
                    replies[i] = Some(Msg::error(Some(ch), code, e.to_string()));
                }
            }
        }
    }
    replies
        .into_iter()
        .map(|r| r.expect("every payment has a reply"))
        .collect()
}

/// Co-signs, broadcasts and records the close of `seller`'s channel.
pub fn close_channel(
    store: &ChannelStore,
    chain: &dyn ChainBackend,
    seller: &Seller,
) -> Result<Txid, SellError> {
    let tx = seller.close()?;
    let id = channel_id(&seller.terms().funding);
    let txid = tx.compute_txid();
    // Record the intent first: if we crash after broadcasting, the state says
    // closing and a rerun rebroadcasts the same transaction.
    store.set_closing(&id, ChannelState::Closing, &txid)?;
    crate::failpoint::hit("seller-close-recorded");
    chain.broadcast(&tx)?;
    crate::failpoint::hit("seller-close-broadcast");
    info!(channel = %id, %txid, total_msat = seller.total_msat(), "close broadcast");
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

fn code_of_pay(e: &PayError) -> Code {
    match e {
        PayError::BadSignature => Code::BadSignature,
        PayError::NotIncreasing { .. } => Code::NotIncreasing,
        PayError::OverCapacity { .. } => Code::OverCapacity,
        PayError::WrongFundingScript
        | PayError::WrongFundingValue { .. }
        | PayError::NoSuchOutput(_) => Code::WrongFunding,
        PayError::WrongNetwork { .. } => Code::WrongNetwork,
        PayError::ExpiryOutOfRange { .. }
        | PayError::FeeTooHigh { .. }
        | PayError::Dust { .. }
        | PayError::NothingToClose => Code::Policy,
        PayError::TooEarly { .. } | PayError::Sign(_) => Code::Internal,
    }
}

fn code_of(e: &SellError) -> Code {
    match e {
        SellError::Pay(p) => code_of_pay(p),
        SellError::NotOpen(_) => Code::UnknownChannel,
        _ => Code::Internal,
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
    fn may_upload(&self, peer: SocketAddr, speaks_pay: bool, len: u32) -> bool {
        SellerNode::may_upload(self, peer, speaks_pay, len)
    }
    fn unserved(&self, peer: SocketAddr, len: u64) {
        SellerNode::unserved(self, peer, len)
    }
    fn disconnected(&self, peer: SocketAddr) {
        SellerNode::disconnected(self, peer)
    }
    fn misbehaving(&self, peer: SocketAddr) -> bool {
        SellerNode::misbehaving(self, peer)
    }
    fn money(&self) -> crate::engine::status::Money {
        let acc = lock(&self.accounts);
        crate::engine::status::Money {
            earned_msat: acc.values().map(|a| a.paid_msat).sum(),
            channels: lock(&self.channels).len(),
            ..Default::default()
        }
    }
    fn handle_batch(&self, peer: SocketAddr, payloads: &[Vec<u8>]) -> Vec<Vec<u8>> {
        SellerNode::handle_batch(self, peer, payloads)
    }
}
