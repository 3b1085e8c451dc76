//! Every transaction here is checked by Bitcoin Core's script interpreter
//! (`bitcoinconsensus`), and each deliberately broken one must fail it.

use super::*;
use crate::pay::bitcoin::consensus::encode::serialize;
use crate::pay::bitcoin::hashes::Hash;
use crate::pay::bitcoin::secp256k1::{Message, Secp256k1};
use crate::pay::bitcoin::sighash::{EcdsaSighashType, SighashCache};
use crate::pay::bitcoin::{
    absolute::LockTime, transaction::Version, Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut,
    Txid, Witness,
};
use crate::pay::tx::{sign, Terms};

const COIN: u64 = 1_000_000;
const CAP: u64 = 990_000;
const FEE: u64 = 500;
const EXPIRY: u32 = 1_500;

use crate::pay::testkit::{key, pubkey, wpkh};

fn consensus(
    spk: &ScriptBuf,
    amount: u64,
    tx: &Transaction,
) -> Result<(), bitcoinconsensus::Error> {
    bitcoinconsensus::verify(spk.as_bytes(), amount, &serialize(tx), None, 0)
}

struct Fixture {
    funding: Transaction,
    terms: Terms,
    buyer: SecretKey,
    seller: SecretKey,
}

/// The buyer funds the channel from a P2WPKH coin it owns.
fn fixture(network: Network) -> Fixture {
    let (buyer, seller, coin) = (key(1), key(2), key(3));
    let secp = Secp256k1::new();
    let mut terms = Terms {
        network,
        capacity_sat: CAP,
        fee_sat: FEE,
        expiry_height: EXPIRY,
        buyer: pubkey(&buyer),
        seller: pubkey(&seller),
        buyer_payout: wpkh(&buyer),
        seller_payout: wpkh(&seller),
        funding: OutPoint::null(),
    };
    let mut funding = Transaction {
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
            value: Amount::from_sat(CAP),
            script_pubkey: terms.funding_script_pubkey(),
        }],
    };
    let h = SighashCache::new(&funding)
        .p2wpkh_signature_hash(
            0,
            &wpkh(&coin),
            Amount::from_sat(COIN),
            EcdsaSighashType::All,
        )
        .unwrap();
    let sig = sign(&secp, &Message::from(h), &coin);
    funding.input[0].witness = Witness::p2wpkh(&sig, &pubkey(&coin).inner);
    consensus(&wpkh(&coin), COIN, &funding).expect("funding transaction passes consensus");
    terms.funding = OutPoint {
        txid: funding.compute_txid(),
        vout: 0,
    };
    Fixture {
        funding,
        terms,
        buyer,
        seller,
    }
}

fn policy() -> SellerPolicy {
    SellerPolicy {
        network: Network::Regtest,
        min_expiry_blocks: 144,
        max_expiry_blocks: 4032,
    }
}

#[test]
fn payments_close_and_refund_pass_consensus() {
    let f = fixture(Network::Regtest);
    let mut b = Buyer::new(f.terms.clone(), f.buyer, 0).unwrap();
    let mut s = Seller::open(f.terms.clone(), f.seller, &policy(), 1_000).unwrap();
    s.check_funding(&f.funding).unwrap();
    // 1000 payments of 1234 msat each (sub-satoshi totals included).
    for i in 1..=1000u64 {
        s.receive(b.pay(i * 1234).unwrap()).unwrap();
    }
    assert_eq!(s.total_msat(), 1_234_000);
    let close = s.close().unwrap();
    let spk = f.terms.funding_script_pubkey();
    consensus(&spk, CAP, &close).expect("cooperative close passes consensus");
    assert_eq!(close.output[0].value.to_sat(), 1_234);
    assert_eq!(close.output[0].script_pubkey, wpkh(&f.seller));
    assert_eq!(close.output[1].value.to_sat(), CAP - FEE - 1_234);
    let refund = b.refund(EXPIRY).unwrap();
    consensus(&spk, CAP, &refund).expect("refund passes consensus");
    assert_eq!(refund.output[0].value.to_sat(), CAP - FEE);
    assert_eq!(
        b.refund(EXPIRY - 1),
        Err(PayError::TooEarly {
            tip: EXPIRY - 1,
            expiry: EXPIRY
        })
    );
}

#[test]
fn broken_transactions_fail_consensus() {
    let f = fixture(Network::Regtest);
    let spk = f.terms.funding_script_pubkey();
    let secp = Secp256k1::new();
    let sign_refund = |tx: &mut Transaction, k: &SecretKey| {
        let sig = sign(&secp, &f.terms.sighash(tx), k);
        tx.input[0].witness = crate::pay::script::refund_witness(&sig, &f.terms.witness_script());
    };
    // Wrong key on the refund path.
    let mut tx = f.terms.refund();
    sign_refund(&mut tx, &f.seller);
    assert!(
        consensus(&spk, CAP, &tx).is_err(),
        "refund signed by the wrong key"
    );
    // Early refund: lock time below expiry.
    let mut tx = f.terms.refund();
    tx.lock_time = LockTime::from_height(EXPIRY - 1).unwrap();
    sign_refund(&mut tx, &f.buyer);
    assert!(consensus(&spk, CAP, &tx).is_err(), "refund before expiry");
    // Final sequence disables the lock time: CLTV must fail.
    let mut tx = f.terms.refund();
    tx.input[0].sequence = Sequence::MAX;
    sign_refund(&mut tx, &f.buyer);
    assert!(
        consensus(&spk, CAP, &tx).is_err(),
        "refund with a final sequence"
    );
    // A close whose outputs were changed after signing.
    let mut b = Buyer::new(f.terms.clone(), f.buyer, 0).unwrap();
    let mut s = Seller::resume(f.terms.clone(), f.seller, None).unwrap();
    s.receive(b.pay(600_000).unwrap()).unwrap();
    let mut close = s.close().unwrap();
    consensus(&spk, CAP, &close).unwrap();
    close.output[0].value = Amount::from_sat(700);
    assert!(consensus(&spk, CAP, &close).is_err(), "tampered close");
    // A close with only the buyer's signature in both slots.
    let mut one = f.terms.commitment(600_000);
    let bsig = sign(&secp, &f.terms.sighash(&one), &f.buyer);
    one.input[0].witness =
        crate::pay::script::commitment_witness(&bsig, &bsig, &f.terms.witness_script());
    assert!(
        consensus(&spk, CAP, &one).is_err(),
        "seller signature missing"
    );
}

#[test]
fn bad_payments_are_refused_without_state_change() {
    let f = fixture(Network::Regtest);
    let mut b = Buyer::new(f.terms.clone(), f.buyer, 0).unwrap();
    let mut s = Seller::open(f.terms.clone(), f.seller, &policy(), 1_000).unwrap();
    let p = b.pay(5_000_000).unwrap();
    s.receive(p.clone()).unwrap();
    // Same or lower total.
    assert_eq!(
        s.receive(p.clone()),
        Err(PayError::NotIncreasing {
            last: 5_000_000,
            got: 5_000_000
        })
    );
    // A signature for one total presented as another.
    let mut forged = b.pay(6_000_000).unwrap();
    forged.total_msat = 9_000_000;
    assert_eq!(s.receive(forged), Err(PayError::BadSignature));
    // Signed by someone else.
    let other = sign(
        &Secp256k1::new(),
        &f.terms.sighash(&f.terms.commitment(7_000_000)),
        &f.seller,
    );
    assert_eq!(
        s.receive(Payment {
            total_msat: 7_000_000,
            signature: other
        }),
        Err(PayError::BadSignature)
    );
    // Above capacity, on both sides.
    let max = (CAP - FEE) * 1000;
    assert_eq!(
        b.pay(max + 1),
        Err(PayError::OverCapacity { max, got: max + 1 })
    );
    assert_eq!(
        b.pay(6_000_000),
        Err(PayError::NotIncreasing {
            last: 6_000_000,
            got: 6_000_000
        }),
        "buyer total unchanged by refusals"
    );
    let mut rogue = Buyer::new(
        Terms {
            capacity_sat: CAP * 2,
            ..f.terms.clone()
        },
        f.buyer,
        0,
    )
    .unwrap();
    let over = rogue.pay(max + 1000).unwrap();
    assert_eq!(
        s.receive(over),
        Err(PayError::OverCapacity {
            max,
            got: max + 1000
        })
    );
    assert_eq!(
        s.total_msat(),
        5_000_000,
        "seller state unchanged by refusals"
    );
}

#[test]
fn opening_checks() {
    let f = fixture(Network::Regtest);
    let e = Seller::open(
        Terms {
            network: Network::Bitcoin,
            ..f.terms.clone()
        },
        f.seller,
        &policy(),
        1_000,
    )
    .err()
    .unwrap();
    assert!(matches!(e, PayError::WrongNetwork { .. }), "{e}");
    let e = Seller::open(f.terms.clone(), f.seller, &policy(), 1_400)
        .err()
        .unwrap();
    assert!(
        matches!(e, PayError::ExpiryOutOfRange { .. }),
        "too soon: {e}"
    );
    let near = SellerPolicy {
        max_expiry_blocks: 200,
        ..policy()
    };
    let e = Seller::open(f.terms.clone(), f.seller, &near, 1_000)
        .err()
        .unwrap();
    assert!(
        matches!(e, PayError::ExpiryOutOfRange { .. }),
        "too far: {e}"
    );
    let s = Seller::open(f.terms.clone(), f.seller, &policy(), 1_000).unwrap();
    let mut bad = f.funding.clone();
    bad.output[0].value = Amount::from_sat(CAP - 1);
    // Changing the value changes the txid: re-point the terms at the altered tx.
    let t2 = Terms {
        funding: OutPoint {
            txid: bad.compute_txid(),
            vout: 0,
        },
        ..f.terms.clone()
    };
    let s2 = Seller::resume(t2.clone(), f.seller, None).unwrap();
    assert_eq!(
        s2.check_funding(&bad),
        Err(PayError::WrongFundingValue {
            want: CAP,
            got: CAP - 1
        })
    );
    let mut wrong_script = f.funding.clone();
    wrong_script.output[0].script_pubkey = wpkh(&f.buyer);
    let t3 = Terms {
        funding: OutPoint {
            txid: wrong_script.compute_txid(),
            vout: 0,
        },
        ..f.terms.clone()
    };
    assert_eq!(
        Seller::resume(t3, f.seller, None)
            .unwrap()
            .check_funding(&wrong_script),
        Err(PayError::WrongFundingScript)
    );
    assert_eq!(
        s.check_funding(&bad),
        Err(PayError::NoSuchOutput(0)),
        "a different transaction"
    );
    assert!(s.must_close(EXPIRY - 6, 6) && !s.must_close(EXPIRY - 7, 6));
    assert_eq!(s.close(), Err(PayError::NothingToClose));
    let mut b = Buyer::new(f.terms.clone(), f.buyer, 0).unwrap();
    let mut s = s;
    s.receive(b.pay(100_000).unwrap()).unwrap();
    assert_eq!(s.close(), Err(PayError::Dust { sat: 100 }));
    assert!(Buyer::new(
        Terms {
            fee_sat: CAP,
            ..f.terms.clone()
        },
        f.buyer,
        0
    )
    .is_err());
    assert!(
        Buyer::new(f.terms.clone(), f.seller, 0).is_err(),
        "not the buyer's key"
    );
}
