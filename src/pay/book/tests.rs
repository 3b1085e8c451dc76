//! Every refusal of the seller's book, message by message, against a made-up
//! chain and store: what regtest tests used to check end to end, without a
//! node. Each case also checks that a refused message changes nothing.

use super::*;
use crate::pay::bitcoin::hashes::Hash;
use crate::pay::bitcoin::{
    absolute::LockTime, transaction::Version, Amount, Sequence, TxIn, TxOut, Witness,
};
use crate::pay::channel::Buyer;

const TIP: u32 = 1_000;
const CAP: u64 = 100_000;
const CREDIT: u64 = 64 * 1024;
/// Two torrents' info hashes.
const T1: [u8; 20] = [1; 20];
const T2: [u8; 20] = [2; 20];

use crate::pay::testkit::{key, pubkey, wpkh};

fn config() -> BookConfig {
    BookConfig {
        network: Network::Regtest,
        // 1 msat per byte: amounts below read as bytes.
        price: Price::msat_per_gib(1 << 30),
        credit: CREDIT,
        min_expiry_blocks: 10,
        max_expiry_blocks: 100,
        min_confirmations: 1,
        zero_conf_limit_sat: 1_000_000,
        zero_conf_timeout_blocks: 6,
        close_margin_blocks: 5,
        serve_free_peers: true,
    }
}

/// What the made-up chain, wallet and store answer.
#[derive(Clone)]
struct World {
    tip: u32,
    ours: bool,
    stored: Option<Stored>,
    output: OutputSeen,
    broadcast: Result<(), String>,
    confirmations: u32,
    funding: FundingSeen,
    /// Queries asked, in order.
    asked: Vec<&'static str>,
}

impl Default for World {
    fn default() -> World {
        World {
            tip: TIP,
            ours: true,
            stored: None,
            output: OutputSeen::Unspent,
            broadcast: Ok(()),
            confirmations: 1,
            funding: FundingSeen::Mempool,
            asked: Vec::new(),
        }
    }
}

/// A driver without I/O: answers the book's queries from `w` until it is
/// done, then commits the plan (as if every effect were durable).
fn drive(
    book: &mut Book<u8>,
    w: &mut World,
    step: impl Fn(&Book<u8>, &Facts) -> Step,
) -> (Vec<Effect>, Vec<Msg>) {
    let mut f = Facts::default();
    loop {
        match step(book, &f) {
            Step::Need(q) => match q {
                Query::Tip => {
                    w.asked.push("tip");
                    f.tip = Some(w.tip)
                }
                Query::PayoutScript => {
                    w.asked.push("payout");
                    f.payout = Some(wpkh(&key(2)))
                }
                Query::IsOurs(_) => {
                    w.asked.push("is_ours");
                    f.is_ours = Some(w.ours)
                }
                Query::Stored(_) => {
                    w.asked.push("stored");
                    f.stored = Some(w.stored)
                }
                Query::Output { .. } => {
                    w.asked.push("output");
                    f.output = Some(w.output)
                }
                Query::Broadcast(_) => {
                    w.asked.push("broadcast");
                    f.broadcast = Some(w.broadcast.clone())
                }
                Query::Funding(c) => {
                    w.asked.push("funding");
                    book.funding_seen(&c, w.funding, w.tip);
                    f.checked.insert(c.funding);
                }
                Query::Confirmations { .. } => {
                    w.asked.push("confirmations");
                    f.confirmations = Some(w.confirmations)
                }
            },
            Step::Done(plan) => {
                let effects = plan.effects.clone();
                return (effects, book.commit(Some(&1), plan));
            }
        }
    }
}

fn code(m: &Msg) -> &str {
    match m {
        Msg::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

struct Chan {
    terms: ChannelTerms,
    tx: Vec<u8>,
    buyer: SecretKey,
}

/// A channel from buyer key 1 to the book's key 2, funded by `tx`.
fn channel(capacity: u64, expiry: u32) -> Chan {
    let buyer = key(1);
    let mut t = Terms {
        network: Network::Regtest,
        capacity_sat: capacity,
        fee_sat: 500,
        expiry_height: expiry,
        buyer: pubkey(&buyer),
        seller: pubkey(&key(2)),
        buyer_payout: wpkh(&buyer),
        seller_payout: wpkh(&key(2)),
        funding: OutPoint::null(),
    };
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: Txid::from_byte_array([9; 32]),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(capacity),
            script_pubkey: t.funding_script_pubkey(),
        }],
    };
    t.funding = OutPoint {
        txid: tx.compute_txid(),
        vout: 0,
    };
    Chan {
        terms: ChannelTerms {
            network: "regtest".into(),
            capacity_sat: t.capacity_sat,
            fee_sat: t.fee_sat,
            expiry_height: t.expiry_height,
            buyer_key: t.buyer,
            seller_key: t.seller,
            buyer_payout: t.buyer_payout,
            seller_payout: t.seller_payout,
            funding: t.funding,
        },
        tx: encode::serialize(&tx),
        buyer,
    }
}

impl Chan {
    fn funded(&self) -> Msg {
        Msg::Funded {
            terms: self.terms.clone(),
            tx: self.tx.clone(),
        }
    }
    fn id(&self) -> OutPoint {
        self.terms.funding
    }
    fn buyer_at(&self, total: u64) -> Buyer {
        Buyer::new(self.terms.to_terms(Network::Regtest), self.buyer, total).unwrap()
    }
    fn pay(&self, from: u64, to: u64) -> (OutPoint, Payment) {
        (self.id(), self.buyer_at(from).pay(to).unwrap())
    }
}

fn book() -> Book<u8> {
    Book::new(config(), key(2))
}

/// A book with `c` open (confirmed unless `unconfirmed`) and connection 1
/// bound to it.
fn opened(c: &Chan, unconfirmed: bool) -> Book<u8> {
    let mut b = book();
    let mut w = World {
        confirmations: if unconfirmed { 0 } else { 1 },
        ..World::default()
    };
    let (effects, replies) = drive(&mut b, &mut w, |b, f| b.handle(&c.funded(), f));
    assert!(matches!(replies[..], [Msg::Ready { .. }]), "{replies:?}");
    assert!(matches!(effects[..], [Effect::StoreChannel(_)]));
    b
}

#[test]
fn propose_refusals() {
    let mut b = book();
    let mut w = World::default();
    let propose = |net: &str, cap: u64, exp: u32| Msg::Propose {
        network: net.into(),
        capacity_sat: cap,
        expiry_height: exp,
    };
    let mut ask = |m: Msg| drive(&mut b, &mut w, |b, f| b.handle(&m, f)).1;
    assert_eq!(
        code(&ask(propose("bitcoin", CAP, TIP + 50))[0]),
        "wrong_network"
    );
    assert_eq!(code(&ask(propose("regtest", CAP, TIP + 9))[0]), "policy");
    assert_eq!(code(&ask(propose("regtest", CAP, TIP + 101))[0]), "policy");
    assert_eq!(code(&ask(propose("regtest", 546, TIP + 50))[0]), "policy");
    let r = ask(propose("regtest", CAP, TIP + 50));
    assert!(
        matches!(&r[0], Msg::Accept { seller_payout, .. } if *seller_payout == wpkh(&key(2))),
        "{r:?}"
    );
    // The payout script is asked for only when everything else passed.
    assert_eq!(w.asked.iter().filter(|q| **q == "payout").count(), 1);
}

#[test]
fn funded_refusals_store_nothing() {
    let c = channel(CAP, TIP + 50);
    let refused = |m: Msg, w: &mut World| {
        let mut b = book();
        let (effects, replies) = drive(&mut b, w, |b, f| b.handle(&m, f));
        assert!(effects.is_empty(), "{effects:?}");
        assert_eq!(b.open_channels(), 0);
        code(&replies[0]).to_string()
    };
    let with = |edit: &dyn Fn(&mut ChannelTerms)| {
        let mut t = c.terms.clone();
        edit(&mut t);
        Msg::Funded {
            terms: t,
            tx: c.tx.clone(),
        }
    };
    let w = &mut World::default();
    assert_eq!(
        refused(with(&|t| t.network = "bitcoin".into()), w),
        "wrong_network"
    );
    assert_eq!(
        refused(with(&|t| t.seller_key = pubkey(&key(5))), w),
        "policy"
    );
    assert_eq!(
        refused(
            c.funded(),
            &mut World {
                ours: false,
                ..World::default()
            }
        ),
        "policy",
        "payout script not ours"
    );
    assert_eq!(
        refused(with(&|t| t.capacity_sat = 90_000), w),
        "wrong_funding"
    );
    assert_eq!(
        refused(with(&|t| t.buyer_key = pubkey(&key(7))), w),
        "wrong_funding"
    );
    assert_eq!(refused(with(&|t| t.expiry_height = TIP + 3), w), "policy");
    assert_eq!(refused(with(&|t| t.expiry_height = TIP + 400), w), "policy");
    assert_eq!(
        refused(
            Msg::Funded {
                terms: c.terms.clone(),
                tx: vec![1, 2, 3]
            },
            w
        ),
        "malformed"
    );
    assert_eq!(
        refused(
            c.funded(),
            &mut World {
                output: OutputSeen::Spent,
                ..World::default()
            }
        ),
        "funding_spent"
    );
    let mut w = World {
        output: OutputSeen::Unknown,
        broadcast: Err("missing inputs".into()),
        ..World::default()
    };
    assert_eq!(refused(c.funded(), &mut w), "funding_unknown");
    assert!(
        w.asked.contains(&"broadcast"),
        "an unknown funding is broadcast"
    );
    let mut w = World {
        stored: Some(Stored {
            open: false,
            total_msat: 5,
        }),
        ..World::default()
    };
    assert_eq!(refused(c.funded(), &mut w), "closed");
}

#[test]
fn funded_waits_for_confirmations_above_the_zero_conf_limit() {
    let c = channel(2_000_000, TIP + 50);
    let mut b = book();
    let mut w = World {
        confirmations: 0,
        ..World::default()
    };
    let (effects, replies) = drive(&mut b, &mut w, |b, f| b.handle(&c.funded(), f));
    assert!(effects.is_empty());
    assert!(matches!(
        replies[0],
        Msg::Pending {
            have: 0,
            need: 1,
            ..
        }
    ));
    assert_eq!(b.open_channels(), 0);
    // Confirmed: open.
    w.confirmations = 1;
    let (effects, replies) = drive(&mut b, &mut w, |b, f| b.handle(&c.funded(), f));
    assert!(matches!(effects[..], [Effect::StoreChannel(_)]));
    assert!(matches!(replies[0], Msg::Ready { .. }));
    assert_eq!(b.open_channels(), 1);
}

#[test]
fn a_failed_store_opens_nothing() {
    let c = channel(CAP, TIP + 50);
    let mut b = book();
    let mut f = Facts {
        tip: Some(TIP),
        is_ours: Some(true),
        stored: Some(None),
        output: Some(OutputSeen::Unspent),
        confirmations: Some(1),
        ..Facts::default()
    };
    let Step::Done(plan) = b.handle(&c.funded(), &f) else {
        panic!("every fact was given")
    };
    let replies = plan.failed(Code::Internal, "disk full");
    assert_eq!(code(&replies[0]), "internal");
    assert_eq!(b.open_channels(), 0);
    assert!(!b.may_upload(&1, T1, true, 1), "nothing bound");
    // Already stored and open: ready again, nothing stored twice.
    f.stored = Some(Some(Stored {
        open: true,
        total_msat: 0,
    }));
    let Step::Done(plan) = b.handle(&c.funded(), &f) else {
        panic!()
    };
    assert!(plan.effects.is_empty());
}

#[test]
fn payment_refusals_change_nothing() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, false);
    let mut w = World::default();
    let pay = |b: &mut Book<u8>, w: &mut World, p: (OutPoint, Payment)| {
        drive(b, w, |b, f| b.pays(std::slice::from_ref(&p), f))
    };
    let (e, r) = pay(&mut b, &mut w, c.pay(0, 600_000));
    assert!(matches!(e[..], [Effect::StorePayments(ref u)] if u.len() == 1 && u[0].1 == 600_000));
    assert!(matches!(
        r[0],
        Msg::Ack {
            total_msat: 600_000,
            ..
        }
    ));
    let refused = |b: &mut Book<u8>, w: &mut World, p| {
        let (e, r) = pay(b, w, p);
        assert!(e.is_empty(), "{e:?}");
        code(&r[0]).to_string()
    };
    // Signed by another key.
    let forged = {
        let mut t = c.buyer_at(0).terms().clone();
        t.buyer = pubkey(&key(9));
        Buyer::new(t, key(9), 0).unwrap().pay(700_000).unwrap()
    };
    assert_eq!(refused(&mut b, &mut w, (c.id(), forged)), "bad_signature");
    assert_eq!(refused(&mut b, &mut w, c.pay(0, 600_000)), "not_increasing");
    assert_eq!(refused(&mut b, &mut w, c.pay(0, 500_000)), "not_increasing");
    // A total beyond the channel, whatever its signature.
    let max = (CAP - 500) * 1000;
    let mut over = c.pay(0, max).1;
    over.total_msat = max + 1;
    assert_eq!(refused(&mut b, &mut w, (c.id(), over)), "over_capacity");
    let other = channel(CAP, TIP + 51);
    assert_eq!(
        refused(&mut b, &mut w, other.pay(0, 1000)),
        "unknown_channel"
    );
    assert_eq!(b.held_msat(), 600_000, "refused payments change nothing");
}

#[test]
fn a_batch_stores_each_channel_once_and_acks_after() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, false);
    let mut buyer = c.buyer_at(0);
    let batch: Vec<_> = (1..=5)
        .map(|i| (c.id(), buyer.pay(i * 1000).unwrap()))
        .chain([c.pay(0, 2500)]) // out of order: refused, the rest acked
        .collect();
    let Step::Done(plan) = b.pays(&batch, &Facts::default()) else {
        panic!()
    };
    assert!(
        matches!(&plan.effects[..], [Effect::StorePayments(u)] if u[..] == [(c.id(), 5000, batch[4].1.signature)])
    );
    // The store failed: nothing acked, nothing taken.
    let r = plan.failed(Code::Closed, "channel is closing");
    assert_eq!(r.len(), 6);
    assert!(r[..5].iter().all(|m| code(m) == "closed"));
    assert_eq!(code(&r[5]), "not_increasing");
    assert_eq!(b.held_msat(), 0);
    // Stored: all five acked, in order.
    let (_, r) = drive(&mut b, &mut World::default(), |b, f| b.pays(&batch, f));
    let acks: Vec<u64> = r
        .iter()
        .filter_map(|m| match m {
            Msg::Ack { total_msat, .. } => Some(*total_msat),
            _ => None,
        })
        .collect();
    assert_eq!(acks, [1000, 2000, 3000, 4000, 5000]);
    assert_eq!(b.held_msat(), 5000);
}

#[test]
fn the_credit_rule() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, false);
    // Connection 1 is bound; 2 speaks btt_pay without a channel; 3 does not.
    assert!(!b.may_upload(&2, T1, true, 1));
    assert!(b.may_upload(&3, T1, false, 1), "free peers are served");
    let mut cfg = config();
    cfg.serve_free_peers = false;
    assert!(!Book::<u8>::new(cfg, key(2)).may_upload(&3, T1, false, 1));
    // Credit: 64 KiB beyond what is paid, counted as it is allowed.
    for _ in 0..4 {
        assert!(b.may_upload(&1, T1, true, 16384));
    }
    assert!(!b.may_upload(&1, T1, true, 1), "credit exhausted");
    // What was allowed and not sent gives room back.
    b.unserved(&1, T1, 16384);
    assert!(b.may_upload(&1, T1, true, 16384));
    // Paying opens more.
    let (_, r) = drive(&mut b, &mut World::default(), |b, f| {
        b.pays(&[c.pay(0, 32768)], f)
    });
    assert!(matches!(r[0], Msg::Ack { .. }));
    assert!(b.may_upload(&1, T1, true, 32768));
    assert!(
        !b.may_upload(&1, T1, true, 1024 + 1),
        "waste allowance: paid / 32"
    );
    // A disconnected connection is unbound.
    b.disconnected(&1);
    assert!(!b.may_upload(&1, T1, true, 1));
}

#[test]
fn resume_says_what_is_held_and_unpaid() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, false);
    b.disconnected(&1);
    let resume = Msg::Resume { channel: c.id() };
    let mut w = World::default();
    let (_, r) = drive(&mut b, &mut w, |b, f| b.handle(&resume, f));
    assert_eq!(code(&r[0]), "unknown_channel", "the store does not know it");
    w.stored = Some(Stored {
        open: true,
        total_msat: 0,
    });
    let (_, r) = drive(&mut b, &mut w, |b, f| b.handle(&resume, f));
    assert!(
        matches!(
            r[0],
            Msg::State {
                open: true,
                unpaid: 0,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(
        b.may_upload(&1, T1, true, 16384),
        "resume binds the connection"
    );
    let (_, r) = drive(&mut b, &mut w, |b, f| b.handle(&resume, f));
    assert!(matches!(r[0], Msg::State { unpaid: 16384, .. }), "{r:?}");
    // Closed in the store: not open, and nothing bound.
    w.stored = Some(Stored {
        open: false,
        total_msat: 7,
    });
    let mut fresh = book();
    let (_, r) = drive(&mut fresh, &mut w, |b, f| b.handle(&resume, f));
    assert!(matches!(
        r[0],
        Msg::State {
            open: false,
            total_msat: 7,
            ..
        }
    ));
    assert!(!fresh.may_upload(&1, T1, true, 1));
}

#[test]
fn a_vanished_zero_conf_funding_stops_the_channel() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, true);
    let mut w = World::default();
    // Half the credit served since the last check: a check is asked for,
    // once; payments are acked without waiting for it.
    assert!(b.may_upload(&1, T1, true, 16384));
    assert!(!b.take_check_wanted());
    assert!(b.may_upload(&1, T1, true, 16384));
    assert!(b.take_check_wanted(), "half the credit served");
    assert!(b.may_upload(&1, T1, true, 16384));
    assert!(!b.take_check_wanted(), "asked once until checked");
    // The watch finds it in place: that vouches for the 48 KiB served, so
    // a payment for 32 KiB is acked without a check of its own.
    let check = &b.unconfirmed()[0];
    assert_eq!(b.funding_seen(check, FundingSeen::Mempool, TIP), None);
    let (_, r) = drive(&mut b, &mut w, |b, f| b.pays(&[c.pay(0, 32768)], f));
    assert!(matches!(r[0], Msg::Ack { .. }));
    assert!(!w.asked.contains(&"funding"));
    // At most credit + allowance beyond what that check vouched for, even
    // for a buyer that prepays.
    // One more block served: a payment covering it waits for a check.
    assert!(b.may_upload(&1, T1, true, 16384));
    let (_, r) = drive(&mut b, &mut w, |b, f| {
        b.pays(&[c.pay(32768, 10_000_000)], f)
    });
    assert!(matches!(r[0], Msg::Ack { .. }));
    assert_eq!(w.asked.iter().filter(|q| **q == "funding").count(), 1);
    let mut n = 0u64;
    while b.may_upload(&1, T1, true, 16384) {
        n += 16384;
        assert!(n < 1 << 30);
    }
    let allowance = 10_000_000 / 32;
    assert!(n <= CREDIT + allowance, "{n}");
    assert!(b.take_check_wanted(), "held: a check is wanted");
    // Gone from the mempool: stopped at the next check, nothing more.
    let check = &b.unconfirmed()[0];
    let stopped = b.funding_seen(check, FundingSeen::Gone, TIP).unwrap();
    assert_eq!(stopped.served_since_check, n);
    w.funding = FundingSeen::Gone;
    let (_, r) = drive(&mut b, &mut w, |b, f| {
        b.pays(&[c.pay(10_000_000, 10_001_000)], f)
    });
    assert_eq!(code(&r[0]), "unknown_channel");
    assert!(!b.may_upload(&1, T1, true, 1));
    assert_eq!(b.open_channels(), 0);
    assert!(b.unconfirmed().is_empty());
    // Still closable on stop, if the funding was mined after all.
    assert_eq!(b.all().1.len(), 1);
    assert!(b.close(&c.id()).is_ok());
}

#[test]
fn the_watch_stops_a_funding_unconfirmed_too_long() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, true);
    let checks = b.unconfirmed();
    assert_eq!(checks.len(), 1);
    assert_eq!(
        b.funding_seen(&checks[0], FundingSeen::Mempool, TIP + 5),
        None
    );
    let s = b
        .funding_seen(&checks[0], FundingSeen::Mempool, TIP + 6)
        .unwrap();
    assert!(s.why.contains("unconfirmed after 6 blocks"), "{}", s.why);
    assert_eq!(b.open_channels(), 0);
    // A confirmed one is no longer watched, and served on.
    let mut b = opened(&c, true);
    let checks = b.unconfirmed();
    assert_eq!(
        b.funding_seen(&checks[0], FundingSeen::Confirmed, TIP + 9),
        None
    );
    assert!(b.unconfirmed().is_empty());
    assert_eq!(b.funding_seen(&checks[0], FundingSeen::Gone, TIP + 9), None);
    assert_eq!(b.open_channels(), 1);
}

#[test]
fn close_records_before_it_broadcasts() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, false);
    assert_eq!(
        b.close(&c.id()).unwrap_err(),
        CloseError::Pay(PayError::NothingToClose)
    );
    let close = Msg::Close { channel: c.id() };
    let (_, r) = drive(&mut b, &mut World::default(), |b, f| b.handle(&close, f));
    assert_eq!(code(&r[0]), "policy", "nothing to close yet");
    drive(&mut b, &mut World::default(), |b, f| {
        b.pays(&[c.pay(0, 600_000)], f)
    });
    let (e, r) = drive(&mut b, &mut World::default(), |b, f| b.handle(&close, f));
    let Msg::Closed { txid, .. } = r[0] else {
        panic!("{r:?}")
    };
    assert!(
        matches!(&e[..], [Effect::RecordClose { txid: a, .. }, Effect::Broadcast(tx)] if *a == txid && tx.compute_txid() == txid)
    );
    assert_eq!(b.open_channels(), 0);
    assert!(
        !b.may_upload(&1, T1, true, 1),
        "nothing served after a close"
    );
    assert_eq!(b.close(&c.id()).unwrap_err(), CloseError::NotOpen);
}

#[test]
fn expiring_channels_are_due_for_a_close() {
    let c = channel(CAP, TIP + 50);
    let b = opened(&c, false);
    assert!(b.expiring(TIP + 44).is_empty());
    assert_eq!(b.expiring(TIP + 45), [c.id()]);
}

#[test]
fn malformed_messages_are_counted_not_logged_each() {
    let mut b = book();
    let strikes: Vec<Strike> = (0..2048).map(|_| b.malformed(&1)).collect();
    let logged: Vec<u32> = strikes.iter().filter(|s| s.log).map(|s| s.count).collect();
    assert_eq!(logged, [1, BAD_MESSAGES_DROP, 1024, 2048]);
    assert_eq!(strikes.iter().filter(|s| s.reply).count(), 3);
    assert!(b.misbehaving(&1));
    assert!(!b.misbehaving(&2));
    b.disconnected(&1);
    assert!(!b.misbehaving(&1));
}

#[test]
fn messages_for_the_buyer_are_refused() {
    let b = book();
    let m = Msg::Ack {
        channel: OutPoint::null(),
        total_msat: 1,
    };
    let Step::Done(plan) = b.handle(&m, &Facts::default()) else {
        panic!()
    };
    assert_eq!(code(&plan.failed(Code::Internal, "")[0]), "malformed");
}

#[test]
fn each_torrent_earns_its_share_of_a_channel() {
    let c = channel(CAP, TIP + 50);
    let mut b = opened(&c, false);
    for _ in 0..3 {
        assert!(b.may_upload(&1, T1, true, 16384));
    }
    assert!(b.may_upload(&1, T2, true, 16384));
    let (_, r) = drive(&mut b, &mut World::default(), |b, f| {
        b.pays(&[c.pay(0, 65536)], f)
    });
    assert!(matches!(r[0], Msg::Ack { .. }));
    assert_eq!(b.share_msat(&T1), 49152);
    assert_eq!(b.share_msat(&T2), 16384);
    assert_eq!(b.share_msat(&[3; 20]), 0);
    assert_eq!(b.held_msat(), 65536);
    // Bytes not sent after all are not the torrent's.
    assert!(b.may_upload(&1, T2, true, 16384));
    b.unserved(&1, T2, 16384);
    assert_eq!(b.share_msat(&T2), 16384);
}
