//! Payments per second with crash safety intact: the buyer signs and persists
//! its new total; the seller verifies and persists the payment (one fsync'd
//! SQLite transaction each). Run: `cargo bench --bench pay`.

use btt::chanstore::{ChannelStore, Role};
use btt::pay::bitcoin::hashes::Hash;
use btt::pay::bitcoin::secp256k1::{Secp256k1, SecretKey};
use btt::pay::bitcoin::{Network, OutPoint, PublicKey, ScriptBuf, Txid};
use btt::pay::channel::{Buyer, Seller};
use btt::pay::tx::Terms;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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
    let sid = sdb.insert(Role::Seller, &t).unwrap();
    let mut buyer = Buyer::new(t.clone(), bk, 0).unwrap();
    let mut seller = Seller::resume(t, sk, None).unwrap();
    let mut g = c.benchmark_group("payment");
    g.throughput(Throughput::Elements(1));
    let mut total = 0u64;
    g.bench_function("buyer sign+persist", |b| {
        b.iter(|| {
            total += 1_000;
            let p = buyer.pay(total).unwrap();
            bdb.advance(&bid, total, None).unwrap();
            std::hint::black_box(p);
        })
    });
    // The seller verifies a fresh signature each time.
    let mut pending: Vec<_> = (1..=20_000u64)
        .map(|i| buyer.pay(total + i * 1_000).unwrap())
        .collect();
    pending.reverse();
    g.bench_function("seller verify+persist", |b| {
        b.iter(|| {
            // Verify, then persist before serving anything against it.
            let p = pending.pop().expect("enough prepared payments");
            let (total, sig) = (p.total_msat, p.signature);
            seller.receive(p).unwrap();
            sdb.advance(&sid, total, Some(&sig)).unwrap();
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(300));
    targets = payments
}
criterion_main!(benches);
