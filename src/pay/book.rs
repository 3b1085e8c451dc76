//! The seller's book: every channel a seller serves, the credit rule, the
//! zero-conf watch, and its answer to each `btt_pay` message, as rules
//! without I/O.
//!
//! Why sans-io: the order of effects is the seller's safety argument (a
//! funding checked on chain before its channel is stored, a channel stored
//! before `ready`, a payment stored before `ack`, a close recorded before it
//! is broadcast), and here every message can be tested against made-up chain
//! facts, without a node. [`Book::handle`] answers in steps: either it needs
//! a fact ([`Query`]: the tip, a payout script, what the chain or the store
//! says), which the driver looks up and passes back in [`Facts`], or it is
//! done with a [`Plan`]: the replies, and the [`Effect`]s the driver makes
//! durable (in order) before it calls [`Book::commit`] and sends them.
//! Nothing in the book changes before that commit, so a failed effect leaves
//! it as it was ([`Plan::failed`] gives the replies then). The driver,
//! [`crate::market::seller_node`], owns the store, the wallet and the chain.

use super::bitcoin::secp256k1::SecretKey;
use super::bitcoin::{consensus::encode, ecdsa, Network, OutPoint, ScriptBuf, Transaction, Txid};
use super::channel::{Payment, Seller, SellerPolicy};
use super::funding::{self, FundingSeen, Verdict};
use super::price::{waste_allowance_msat, Account, Price};
use super::proto::{ChannelTerms, Code, Msg, SellerInfo};
use super::tx::Terms;
use super::{PayError, DUST_SAT};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Malformed `btt_pay` messages after which a peer is dropped.
pub const BAD_MESSAGES_DROP: u32 = 16;

/// What a seller accepts and announces.
#[derive(Clone, Debug)]
pub struct BookConfig {
    pub network: Network,
    pub price: Price,
    /// Bytes served beyond the last payment.
    pub credit: u64,
    pub min_expiry_blocks: u32,
    pub max_expiry_blocks: u32,
    /// Confirmations a funding above the zero-conf limit needs.
    pub min_confirmations: u32,
    /// The largest funding served unconfirmed (sat).
    pub zero_conf_limit_sat: u64,
    /// Blocks an unconfirmed funding is served at all (0: no limit).
    pub zero_conf_timeout_blocks: u32,
    /// Channels are closed this many blocks before expiry.
    pub close_margin_blocks: u32,
    /// Whether peers that do not pay over `btt_pay` are served.
    pub serve_free_peers: bool,
}

/// A channel as the store holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    pub open: bool,
    pub total_msat: u64,
}

/// What the chain says of a funding output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputSeen {
    Unspent,
    Spent,
    /// Not (yet) known to the chain.
    Unknown,
}

/// A fact [`Book::handle`] needs before it can answer.
#[derive(Clone, Debug)]
pub enum Query {
    /// The chain's tip height ([`Facts::tip`]).
    Tip,
    /// A payout script of ours to offer ([`Facts::payout`]).
    PayoutScript,
    /// Whether the wallet owns this script ([`Facts::is_ours`]).
    IsOurs(ScriptBuf),
    /// The stored channel with this funding ([`Facts::stored`]).
    Stored(OutPoint),
    /// The funding output's state ([`Facts::output`]).
    Output { funding: OutPoint, spk: ScriptBuf },
    /// Make the chain know a funding the buyer may not have broadcast yet
    /// ([`Facts::broadcast`]).
    Broadcast(Transaction),
    /// Confirmations of the funding ([`Facts::confirmations`]).
    Confirmations { txid: Txid, spk: ScriptBuf },
    /// An unconfirmed funding checked before a payment on it is
    /// acknowledged: answer with [`Book::funding_seen`], then add the
    /// channel to [`Facts::checked`].
    Funding(FundingCheck),
}

/// Answers to [`Query`]s, filled in by the driver as they are asked.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub tip: Option<u32>,
    pub payout: Option<ScriptBuf>,
    pub is_ours: Option<bool>,
    pub stored: Option<Option<Stored>>,
    pub output: Option<OutputSeen>,
    pub broadcast: Option<Result<(), String>>,
    pub confirmations: Option<u32>,
    pub checked: HashSet<OutPoint>,
}

/// A check of an unconfirmed funding: what the chain is asked about, and
/// what it vouches for (the bytes served before the question).
#[derive(Clone, Debug)]
pub struct FundingCheck {
    pub funding: OutPoint,
    pub spk: ScriptBuf,
    served: u64,
}

/// What the driver makes durable before the replies of a [`Plan`] are sent.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Store a channel just opened.
    StoreChannel(Terms),
    /// Store the newest total and signature of each channel.
    StorePayments(Vec<(OutPoint, u64, ecdsa::Signature)>),
    /// Record that the channel closes with this transaction.
    RecordClose { funding: OutPoint, txid: Txid },
    /// Broadcast a close recorded by the effect before.
    Broadcast(Transaction),
}

/// Where an answer stands.
#[derive(Debug)]
pub enum Step {
    Need(Query),
    Done(Plan),
}

/// Replies that wait for effects, and what the book takes once they are
/// durable.
#[derive(Debug)]
pub struct Plan {
    pub effects: Vec<Effect>,
    replies: Vec<Msg>,
    /// Reply slots that depend on the effects, with their channel.
    waiting: Vec<(usize, OutPoint)>,
    commit: Commit,
}

#[derive(Debug)]
enum Commit {
    Nothing,
    Open {
        seller: Box<Seller>,
        unconfirmed_since: Option<u32>,
    },
    Pays(Vec<(OutPoint, Payment)>),
    Closed(OutPoint),
}

impl Plan {
    fn reply(m: Msg) -> Plan {
        Plan {
            effects: Vec::new(),
            replies: vec![m],
            waiting: Vec::new(),
            commit: Commit::Nothing,
        }
    }

    fn with(effects: Vec<Effect>, reply: Msg, channel: OutPoint, commit: Commit) -> Plan {
        Plan {
            effects,
            replies: vec![reply],
            waiting: vec![(0, channel)],
            commit,
        }
    }

    /// The replies when an effect could not be made durable: everything
    /// that waited on it is refused, and the book is unchanged.
    pub fn failed(mut self, code: Code, why: &str) -> Vec<Msg> {
        for (i, ch) in self.waiting {
            self.replies[i] = Msg::error(Some(ch), code, why);
        }
        self.replies
    }

    /// Whether the book must stay locked until the plan is committed: a
    /// close, so that no payment is acknowledged on the channel between its
    /// close being built and recorded (the close would not claim it). Other
    /// plans may make their effects durable unlocked, so that a payment's
    /// fsync does not hold up serving: a payment verified against a total
    /// another commit has since passed is refused by the store.
    pub fn holds_book(&self) -> bool {
        matches!(self.commit, Commit::Closed(_))
    }

    /// The close transaction's id, for a close plan.
    pub fn close_txid(&self) -> Option<Txid> {
        self.effects.iter().find_map(|e| match e {
            Effect::RecordClose { txid, .. } => Some(*txid),
            _ => None,
        })
    }
}

fn refuse(ch: Option<OutPoint>, code: Code, why: impl Into<String>) -> Step {
    Step::Done(Plan::reply(Msg::error(ch, code, why)))
}

/// An unconfirmed funding's watch.
#[derive(Clone, Copy, Debug, Default)]
struct Unconfirmed {
    /// Tip when first watched (set by the first check after a restart).
    since: Option<u32>,
    /// Bytes served when the funding was last seen in place.
    checked_served: u64,
    /// A check was asked for since the last one.
    asked: bool,
}

struct Entry {
    seller: Seller,
    account: Account,
    unconfirmed: Option<Unconfirmed>,
    /// False once stopped (funding gone or unconfirmed too long): nothing is
    /// served, but a close on stop may still claim what was paid.
    live: bool,
    /// Bytes served in this run, per torrent (info hash).
    served_by: HashMap<[u8; 20], u64>,
}

/// What a malformed message costs the peer that sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct Strike {
    /// Malformed messages from this peer so far.
    pub count: u32,
    /// Whether this one is worth a log line (the first, one per power of two
    /// from 1 024, and the one that drops the peer).
    pub log: bool,
    /// Whether to answer it (the first three only).
    pub reply: bool,
}

/// A channel the watch stopped serving.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped {
    pub funding: OutPoint,
    pub why: String,
    /// Bytes served after the last check that found the funding in place.
    pub served_since_check: u64,
}

/// The seller's channels and connections. `P` names a connection.
pub struct Book<P> {
    cfg: BookConfig,
    key: SecretKey,
    info: SellerInfo,
    channels: HashMap<OutPoint, Entry>,
    /// Which channel pays for each connection.
    conns: HashMap<P, OutPoint>,
    strikes: HashMap<P, u32>,
    /// An unconfirmed channel was served half its credit since its last
    /// check: the driver should check fundings now.
    check_wanted: bool,
}

impl<P: Hash + Eq + Clone> Book<P> {
    pub fn new(cfg: BookConfig, key: SecretKey) -> Book<P> {
        let secp = super::bitcoin::secp256k1::Secp256k1::signing_only();
        let info = SellerInfo {
            network: cfg.network.to_core_arg().to_string(),
            node_key: super::bitcoin::PublicKey::new(key.public_key(&secp)),
            msat_per_gib: cfg.price.msat_per_gib,
            credit: cfg.credit,
            min_expiry_blocks: cfg.min_expiry_blocks,
            max_expiry_blocks: cfg.max_expiry_blocks,
            zero_conf_sat: cfg.zero_conf_limit_sat,
        };
        Book {
            cfg,
            key,
            info,
            channels: HashMap::new(),
            conns: HashMap::new(),
            strikes: HashMap::new(),
            check_wanted: false,
        }
    }

    /// What the seller announces in the extension handshake.
    pub fn info(&self) -> &SellerInfo {
        &self.info
    }

    /// Blocks an unconfirmed funding is served at all (0: no limit).
    pub fn set_zero_conf_timeout(&mut self, blocks: u32) {
        self.cfg.zero_conf_timeout_blocks = blocks;
    }

    /// Takes back an open channel after a restart: watched as unconfirmed
    /// until the first check, and counted as served exactly what was paid.
    pub fn resume(&mut self, terms: Terms, best: Option<Payment>) -> Result<(), PayError> {
        let paid = best.as_ref().map_or(0, |p| p.total_msat);
        let account = Account::resumed(self.cfg.price, paid);
        let funding = terms.funding;
        let seller = Seller::resume(terms, self.key, best)?;
        self.channels.insert(
            funding,
            Entry {
                seller,
                account,
                unconfirmed: Some(Unconfirmed {
                    since: None,
                    checked_served: account.served_bytes,
                    asked: false,
                }),
                live: true,
                served_by: HashMap::new(),
            },
        );
        Ok(())
    }

    /// Channels served now.
    pub fn open_channels(&self) -> usize {
        self.channels.values().filter(|e| e.live).count()
    }

    /// What open channels hold (msat).
    pub fn held_msat(&self) -> u64 {
        self.channels
            .values()
            .filter(|e| e.live)
            .map(|e| e.account.paid_msat)
            .sum()
    }

    /// Torrent `torrent`'s share of what open channels hold: each channel's
    /// total split by the bytes of each torrent it paid for in this run
    /// (bytes served before a restart count for no torrent).
    pub fn share_msat(&self, torrent: &[u8; 20]) -> u64 {
        self.channels
            .values()
            .filter(|e| e.live && e.account.served_bytes > 0)
            .map(|e| {
                let mine = e.served_by.get(torrent).copied().unwrap_or(0);
                let share = e.account.paid_msat as u128 * mine.min(e.account.served_bytes) as u128
                    / e.account.served_bytes as u128;
                share as u64
            })
            .sum()
    }

    /// The answer to `msg`, given the facts so far.
    pub fn handle(&self, msg: &Msg, f: &Facts) -> Step {
        match msg {
            Msg::Propose {
                network,
                capacity_sat,
                expiry_height,
            } => self.on_propose(network, *capacity_sat, *expiry_height, f),
            Msg::Funded { terms, tx } => self.on_funded(terms, tx, f),
            Msg::Pay {
                channel,
                total_msat,
                signature,
            } => self.pays(
                &[(
                    *channel,
                    Payment {
                        total_msat: *total_msat,
                        signature: *signature,
                    },
                )],
                f,
            ),
            Msg::Resume { channel } => self.on_resume(*channel, f),
            Msg::Close { channel } => match self.close(channel) {
                Ok(plan) => Step::Done(plan),
                Err(e) => refuse(Some(*channel), e.code(), e.to_string()),
            },
            Msg::Accept { .. }
            | Msg::Ready { .. }
            | Msg::Pending { .. }
            | Msg::Ack { .. }
            | Msg::State { .. }
            | Msg::Closed { .. } => refuse(None, Code::Malformed, "message is for the buyer"),
            // The driver logs it; nothing to answer.
            Msg::Error { .. } => Step::Done(Plan {
                effects: Vec::new(),
                replies: Vec::new(),
                waiting: Vec::new(),
                commit: Commit::Nothing,
            }),
        }
    }

    fn on_propose(&self, network: &str, capacity_sat: u64, expiry: u32, f: &Facts) -> Step {
        if network != self.info.network {
            return refuse(
                None,
                Code::WrongNetwork,
                format!("seller is on {}, not {network}", self.info.network),
            );
        }
        let Some(tip) = f.tip else {
            return Step::Need(Query::Tip);
        };
        let (min, max) = (
            tip + self.cfg.min_expiry_blocks,
            tip + self.cfg.max_expiry_blocks,
        );
        if expiry < min || expiry > max {
            return refuse(
                None,
                Code::Policy,
                PayError::ExpiryOutOfRange { expiry, min, max }.to_string(),
            );
        }
        if capacity_sat <= DUST_SAT {
            return refuse(None, Code::Policy, "capacity below dust");
        }
        let Some(spk) = &f.payout else {
            return Step::Need(Query::PayoutScript);
        };
        Step::Done(Plan::reply(Msg::Accept {
            seller_key: self.info.node_key,
            seller_payout: spk.clone(),
        }))
    }

    fn on_funded(&self, t: &ChannelTerms, raw_tx: &[u8], f: &Facts) -> Step {
        let ch = t.funding;
        let err = |code, m: String| refuse(Some(ch), code, m);
        if t.network != self.info.network {
            return err(
                Code::WrongNetwork,
                format!("seller is on {}, not {}", self.info.network, t.network),
            );
        }
        if t.seller_key != self.info.node_key {
            return err(Code::Policy, "seller key is not this node's key".into());
        }
        match f.is_ours {
            None => return Step::Need(Query::IsOurs(t.seller_payout.clone())),
            Some(false) => return err(Code::Policy, "seller payout script is not ours".into()),
            Some(true) => {}
        }
        match f.stored {
            None => return Step::Need(Query::Stored(ch)),
            Some(Some(s)) if s.open => {
                return Step::Done(Plan::with(
                    Vec::new(),
                    Msg::Ready { channel: ch },
                    ch,
                    Commit::Nothing,
                ))
            }
            Some(Some(_)) => return err(Code::Closed, "channel is no longer open".into()),
            Some(None) => {}
        }
        let terms = t.to_terms(self.cfg.network);
        let Some(tip) = f.tip else {
            return Step::Need(Query::Tip);
        };
        let policy = SellerPolicy {
            network: self.cfg.network,
            min_expiry_blocks: self.cfg.min_expiry_blocks,
            max_expiry_blocks: self.cfg.max_expiry_blocks,
        };
        let seller = match Seller::open(terms.clone(), self.key, &policy, tip) {
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
        match f.output {
            None => {
                return Step::Need(Query::Output {
                    funding: ch,
                    spk: spk.clone(),
                })
            }
            Some(OutputSeen::Spent) => {
                return err(Code::FundingSpent, "funding output is already spent".into())
            }
            Some(OutputSeen::Unspent) => {}
            // The buyer may not have broadcast yet: the driver does.
            Some(OutputSeen::Unknown) => match &f.broadcast {
                None => return Step::Need(Query::Broadcast(tx)),
                Some(Err(e)) => return err(Code::FundingUnknown, e.clone()),
                Some(Ok(())) => {}
            },
        }
        let Some(have) = f.confirmations else {
            return Step::Need(Query::Confirmations { txid: ch.txid, spk });
        };
        let need = self.cfg.min_confirmations.max(1);
        if have < need && terms.capacity_sat > self.cfg.zero_conf_limit_sat {
            return Step::Done(Plan::reply(Msg::Pending {
                channel: ch,
                have,
                need,
            }));
        }
        Step::Done(Plan::with(
            vec![Effect::StoreChannel(terms)],
            Msg::Ready { channel: ch },
            ch,
            Commit::Open {
                seller: Box::new(seller),
                unconfirmed_since: (have == 0).then_some(tip),
            },
        ))
    }

    /// Payments from one peer, in order: each is verified against the one
    /// before it, and the newest total of each channel is stored (one
    /// durable write) before any is acked. An unconfirmed funding is checked
    /// before an ack only if its last check vouched for fewer of the bytes
    /// served than the ack pays for (else the buyer's room after the ack would pass what
    /// [`Book::may_upload`] allows); with checks asked for at half the
    /// credit, that is rare unless the credit is small.
    pub fn pays(&self, batch: &[(OutPoint, Payment)], f: &Facts) -> Step {
        for (ch, p) in batch {
            if f.checked.contains(ch) {
                continue;
            }
            let Some(e) = self.channels.get(ch).filter(|e| e.live) else {
                continue;
            };
            if let Some(u) = e.unconfirmed {
                // What the ack would vouch for, of what was served.
                let covers = self
                    .cfg
                    .price
                    .bytes_for(p.total_msat)
                    .min(e.account.served_bytes);
                if u.checked_served < covers {
                    return Step::Need(Query::Funding(self.check_of(ch, e)));
                }
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut waiting = Vec::new();
        let mut newest: HashMap<OutPoint, Payment> = HashMap::new();
        for (ch, p) in batch {
            let Some(e) = self.channels.get(ch).filter(|e| e.live) else {
                replies.push(Msg::error(
                    Some(*ch),
                    Code::UnknownChannel,
                    "no open channel with this id",
                ));
                continue;
            };
            let last = newest
                .get(ch)
                .map_or_else(|| e.seller.total_msat(), |p| p.total_msat);
            match e.seller.verify_after(last, p) {
                Ok(()) => {
                    waiting.push((replies.len(), *ch));
                    replies.push(Msg::Ack {
                        channel: *ch,
                        total_msat: p.total_msat,
                    });
                    newest.insert(*ch, p.clone());
                }
                Err(e) => replies.push(Msg::error(Some(*ch), code_of_pay(&e), e.to_string())),
            }
        }
        let mut newest: Vec<(OutPoint, Payment)> = newest.into_iter().collect();
        newest.sort_by_key(|(o, _)| *o);
        let effects = if newest.is_empty() {
            Vec::new()
        } else {
            vec![Effect::StorePayments(
                newest
                    .iter()
                    .map(|(o, p)| (*o, p.total_msat, p.signature))
                    .collect(),
            )]
        };
        Step::Done(Plan {
            effects,
            replies,
            waiting,
            commit: Commit::Pays(newest),
        })
    }

    fn on_resume(&self, ch: OutPoint, f: &Facts) -> Step {
        let Some(stored) = f.stored else {
            return Step::Need(Query::Stored(ch));
        };
        let Some(s) = stored else {
            return refuse(Some(ch), Code::UnknownChannel, "no channel with this id");
        };
        let unpaid = self
            .channels
            .get(&ch)
            .filter(|e| e.live)
            .map_or(0, |e| e.account.unpaid_bytes(self.cfg.price));
        let open = s.open && self.channels.get(&ch).is_some_and(|e| e.live);
        let reply = Msg::State {
            channel: ch,
            total_msat: s.total_msat,
            open,
            unpaid,
        };
        Step::Done(if open {
            Plan::with(Vec::new(), reply, ch, Commit::Nothing)
        } else {
            Plan::reply(reply)
        })
    }

    /// A close of channel `ch` with its best payment: recorded, then
    /// broadcast, then the channel is no longer served. A stopped channel
    /// can be closed too (its funding may have been mined after all).
    pub fn close(&self, ch: &OutPoint) -> Result<Plan, CloseError> {
        let e = self.channels.get(ch).ok_or(CloseError::NotOpen)?;
        let tx = e.seller.close().map_err(CloseError::Pay)?;
        let txid = tx.compute_txid();
        Ok(Plan::with(
            vec![
                Effect::RecordClose { funding: *ch, txid },
                Effect::Broadcast(tx),
            ],
            Msg::Closed { channel: *ch, txid },
            *ch,
            Commit::Closed(*ch),
        ))
    }

    /// Takes a plan whose effects are durable; returns its replies, and
    /// binds `peer`'s connection to the channel a reply confirms.
    pub fn commit(&mut self, peer: Option<&P>, plan: Plan) -> Vec<Msg> {
        match plan.commit {
            Commit::Nothing => {}
            Commit::Open {
                seller,
                unconfirmed_since,
            } => {
                let funding = seller.terms().funding;
                self.channels.insert(
                    funding,
                    Entry {
                        seller: *seller,
                        account: Account::default(),
                        unconfirmed: unconfirmed_since.map(|since| Unconfirmed {
                            since: Some(since),
                            checked_served: 0,
                            asked: false,
                        }),
                        live: true,
                        served_by: HashMap::new(),
                    },
                );
            }
            Commit::Pays(newest) => {
                for (ch, p) in newest {
                    if let Some(e) = self.channels.get_mut(&ch) {
                        if p.total_msat > e.seller.total_msat() {
                            e.account.paid_msat = e.account.paid_msat.max(p.total_msat);
                            e.seller.record(p);
                        }
                    }
                }
            }
            Commit::Closed(ch) => {
                self.channels.remove(&ch);
            }
        }
        if let Some(peer) = peer {
            // A connection pays with the last live channel a reply names.
            let bound = plan
                .waiting
                .iter()
                .rev()
                .map(|(_, ch)| *ch)
                .find(|ch| self.channels.get(ch).is_some_and(|e| e.live));
            if let Some(ch) = bound {
                self.conns.insert(peer.clone(), ch);
            }
        }
        plan.replies
    }

    /// Whether to serve `len` bytes to `peer` now, and if so count them (the
    /// credit rule, `btt_pay.md` §7). `speaks_pay`: the peer announced
    /// `btt_pay`. An unconfirmed funding is served at most the credit (and
    /// the waste allowance) beyond what its last check vouched for, and half
    /// the credit after a check the next one is asked for
    /// ([`Book::take_check_wanted`]): it completes long before the other
    /// half is served, so an honest buyer does not wait on it, and once a
    /// conflict is visible at most the credit is served before the channel
    /// stops. If the chain is slow to answer, serving waits, never the
    /// bound.
    pub fn may_upload(&mut self, peer: &P, torrent: [u8; 20], speaks_pay: bool, len: u32) -> bool {
        let Some(ch) = self.conns.get(peer) else {
            return !speaks_pay && self.cfg.serve_free_peers;
        };
        let Some(e) = self.channels.get_mut(ch).filter(|e| e.live) else {
            return false;
        };
        let (price, credit) = (self.cfg.price, self.cfg.credit);
        if !e.account.may_serve(price, credit, len as u64) {
            return false;
        }
        if let Some(u) = &mut e.unconfirmed {
            let since = e.account.served_bytes.saturating_sub(u.checked_served);
            let allowance = price.bytes_for(waste_allowance_msat(e.account.paid_msat));
            if since + len as u64 > credit + allowance {
                self.check_wanted = true;
                return false;
            }
            if since + len as u64 >= credit / 2 && !u.asked {
                u.asked = true;
                self.check_wanted = true;
            }
        }
        e.account.served_bytes += len as u64;
        *e.served_by.entry(torrent).or_default() += len as u64;
        true
    }

    /// `len` bytes allowed by [`Book::may_upload`] were not sent after all
    /// (cancelled by the buyer, or the connection closed first).
    pub fn unserved(&mut self, peer: &P, torrent: [u8; 20], len: u64) {
        if let Some(e) = self
            .conns
            .get(peer)
            .and_then(|ch| self.channels.get_mut(ch))
        {
            e.account.unserved(len);
            if let Some(n) = e.served_by.get_mut(&torrent) {
                *n = n.saturating_sub(len);
            }
        }
    }

    pub fn disconnected(&mut self, peer: &P) {
        self.conns.remove(peer);
        self.strikes.remove(peer);
    }

    /// Counts a message from `peer` that broke the rules: malformed, or
    /// refused as part of a flood (the driver's limits).
    pub fn malformed(&mut self, peer: &P) -> Strike {
        let n = self.strikes.entry(peer.clone()).or_default();
        *n = n.saturating_add(1);
        let count = *n;
        Strike {
            count,
            log: count == 1
                || count == BAD_MESSAGES_DROP
                || count >= 1024 && count.is_power_of_two(),
            reply: count <= 3,
        }
    }

    /// A peer that sent too many malformed messages is dropped.
    pub fn misbehaving(&self, peer: &P) -> bool {
        self.strikes
            .get(peer)
            .is_some_and(|&n| n >= BAD_MESSAGES_DROP)
    }

    /// Whether fundings should be checked now (and forgets that it was
    /// asked).
    pub fn take_check_wanted(&mut self) -> bool {
        std::mem::take(&mut self.check_wanted)
    }

    fn check_of(&self, ch: &OutPoint, e: &Entry) -> FundingCheck {
        FundingCheck {
            funding: *ch,
            spk: e.seller.terms().funding_script_pubkey(),
            served: e.account.served_bytes,
        }
    }

    /// Every unconfirmed funding still served, for the watch.
    pub fn unconfirmed(&self) -> Vec<FundingCheck> {
        self.channels
            .iter()
            .filter(|(_, e)| e.live && e.unconfirmed.is_some())
            .map(|(o, e)| self.check_of(o, e))
            .collect()
    }

    /// What the chain said of an unconfirmed funding at `tip`: confirmed
    /// ends the watch, still there vouches for what was served before the
    /// check, gone (or unconfirmed past the timeout) stops the channel.
    pub fn funding_seen(
        &mut self,
        c: &FundingCheck,
        seen: FundingSeen,
        tip: u32,
    ) -> Option<Stopped> {
        let timeout = self.cfg.zero_conf_timeout_blocks;
        let e = self.channels.get_mut(&c.funding).filter(|e| e.live)?;
        let u = e.unconfirmed.as_mut()?;
        let since = *u.since.get_or_insert(tip);
        match funding::verdict(seen, tip, since, timeout) {
            Verdict::Confirmed => {
                e.unconfirmed = None;
                None
            }
            Verdict::Wait => {
                u.checked_served = u.checked_served.max(c.served);
                u.asked = false;
                None
            }
            Verdict::Stop(why) => {
                let served_since_check = e.account.served_bytes.saturating_sub(u.checked_served);
                e.live = false;
                e.unconfirmed = None;
                Some(Stopped {
                    funding: c.funding,
                    why,
                    served_since_check,
                })
            }
        }
    }

    /// A channel spent on chain (closed, refunded, conflicted): no longer
    /// served or closed by us. True if it was in the book.
    pub fn forget(&mut self, ch: &OutPoint) -> bool {
        self.channels.remove(ch).is_some()
    }

    /// Open channels whose expiry is within the close margin at `tip`.
    pub fn expiring(&self, tip: u32) -> Vec<OutPoint> {
        let margin = self.cfg.close_margin_blocks;
        self.channels
            .iter()
            .filter(|(_, e)| e.live && e.seller.must_close(tip, margin))
            .map(|(o, _)| *o)
            .collect()
    }

    /// Open channels, then stopped ones with their funding scripts (a close
    /// on stop claims those whose funding was mined after all).
    pub fn all(&self) -> (Vec<OutPoint>, Vec<(OutPoint, ScriptBuf)>) {
        let mut open = Vec::new();
        let mut stopped = Vec::new();
        for (o, e) in &self.channels {
            if e.live {
                open.push(*o);
            } else {
                stopped.push((*o, e.seller.terms().funding_script_pubkey()));
            }
        }
        (open, stopped)
    }
}

/// Why a channel cannot be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloseError {
    #[error("not an open channel of ours")]
    NotOpen,
    #[error(transparent)]
    Pay(PayError),
}

impl CloseError {
    fn code(&self) -> Code {
        match self {
            CloseError::NotOpen => Code::UnknownChannel,
            CloseError::Pay(p) => code_of_pay(p),
        }
    }
}

/// The `error` code for a refused payment or channel.
pub fn code_of_pay(e: &PayError) -> Code {
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

#[cfg(test)]
mod tests;
