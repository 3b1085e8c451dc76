//! Payments per second with crash safety intact: the buyer signs and persists
//! its new total; the seller verifies and persists the payment (one fsync'd
//! SQLite transaction each). With group commit, a burst of payments shares one
//! transaction and every ack still waits for it. The signature and its check
//! alone are measured too. Run: `cargo bench --bench pay`.

use btt::chanstore::{channel_id, ChannelStore, Role};
use btt::pay::bitcoin::hashes::Hash;
use btt::pay::bitcoin::secp256k1::{Secp256k1, SecretKey};
use btt::pay::bitcoin::{Network, OutPoint, PublicKey, ScriptBuf, Txid};
use btt::pay::book::{Book, BookConfig, Effect, Facts, Step};
use btt::pay::channel::{Buyer, Payment, Seller};
use btt::pay::price::Price;
use btt::pay::proto::Msg;
use btt::pay::tx::Terms;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn terms() -> (Terms, SecretKey, SecretKey) {
    let secp = Secp256k1::new();
    let (b, s) = (
        SecretKey::from_slice(&[1; 32]).unwrap(),
        SecretKey::from_slice(&[2; 32]).unwrap(),
    );
    let (bp, sp) = (
        PublicKey::new(b.public_key(&secp)),
        PublicKey::new(s.public_key(&secp)),
    );
    let t = Terms {
        network: Network::Regtest,
        capacity_sat: 100_000_000,
        fee_sat: 1_000,
        expiry_height: 10_000,
        buyer: bp,
        seller: sp,
        buyer_payout: ScriptBuf::new_p2wpkh(&bp.wpubkey_hash().unwrap()),
        seller_payout: ScriptBuf::new_p2wpkh(&sp.wpubkey_hash().unwrap()),
        funding: OutPoint {
            txid: Txid::from_byte_array([7; 32]),
            vout: 0,
        },
    };
    (t, b, s)
}

fn payments(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (t, bk, sk) = terms();
    let mut bdb = ChannelStore::open(&dir.path().join("buyer.sqlite")).unwrap();
    let mut sdb = ChannelStore::open(&dir.path().join("seller.sqlite")).unwrap();
    let bid = bdb.insert(Role::Buyer, &t).unwrap();
    sdb.insert(Role::Seller, &t).unwrap();
    let mut buyer = Buyer::new(t.clone(), bk, 0).unwrap();
    let t_funding = t.funding;
    let seller = Seller::resume(t.clone(), sk, None).unwrap();
    let mut g = c.benchmark_group("payment");
    g.throughput(Throughput::Elements(1));
    let mut total = 0u64;
    // The signature alone (commitment transaction + ECDSA), then with the store.
    g.bench_function("buyer sign", |b| {
        b.iter(|| {
            total += 1_000;
            std::hint::black_box(buyer.pay(total).unwrap());
        })
    });
    g.bench_function("buyer sign+persist", |b| {
        b.iter(|| {
            total += 1_000;
            let p = buyer.pay(total).unwrap();
            bdb.advance(&bid, total, None).unwrap();
            std::hint::black_box(p);
        })
    });
    g.throughput(Throughput::Elements(32));
    g.bench_function("buyer sign+persist, 32 per commit", |b| {
        b.iter(|| {
            for _ in 0..32 {
                total += 1_000;
                std::hint::black_box(buyer.pay(total).unwrap());
            }
            bdb.advance(&bid, total, None).unwrap();
        })
    });
    // The seller verifies a fresh signature each time (signed outside the
    // measurement), then persists before acknowledging.
    let funding = t_funding;
    let signed = buyer.pay(total + 1_000).unwrap();
    total += 1_000;
    g.throughput(Throughput::Elements(1));
    g.bench_function("seller verify", |b| {
        b.iter(|| seller.verify_after(total - 1_000, &signed).unwrap())
    });
    let mut book: Book<()> = Book::new(
        BookConfig {
            network: Network::Regtest,
            price: Price::msat_per_gib(1_000_000),
            credit: 1 << 20,
            min_expiry_blocks: 144,
            max_expiry_blocks: 4032,
            min_confirmations: 1,
            zero_conf_limit_sat: 0,
            zero_conf_timeout_blocks: 0,
            close_margin_blocks: 12,
            serve_free_peers: false,
        },
        sk,
    );
    book.resume(t, None).unwrap();
    let mut next = total;
    let mut prepare = |n: u64| -> Vec<(OutPoint, Payment)> {
        (0..n)
            .map(|_| {
                next += 1_000;
                (funding, buyer.pay(next).unwrap())
            })
            .collect()
    };
    for group in [1u64, 32] {
        g.throughput(Throughput::Elements(group));
        let name = if group == 1 {
            "seller verify+persist".to_string()
        } else {
            format!("seller verify+persist, {group} per commit")
        };
        g.bench_function(name, |b| {
            b.iter_batched(
                || prepare(group),
                |batch| {
                    // What the seller node does: the book verifies, the
                    // store commits, the book takes the payments.
                    let Step::Done(plan) = book.pays(&batch, &Facts::default()) else {
                        panic!("a confirmed channel needs no chain check")
                    };
                    for e in &plan.effects {
                        if let Effect::StorePayments(u) = e {
                            let u: Vec<_> = u
                                .iter()
                                .map(|(o, t, s)| (channel_id(o), *t, Some(*s)))
                                .collect();
                            sdb.advance_many(&u).unwrap();
                        }
                    }
                    let replies = book.commit(None, plan);
                    assert!(replies.iter().all(|m| matches!(m, Msg::Ack { .. })));
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(300));
    targets = payments
}
criterion_main!(benches);
