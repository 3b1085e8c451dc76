//! Payment channels on a real regtest chain (bcoin), through both chain
//! backends (ElectrumX and JSON-RPC), with real `btt` processes as buyer and
//! seller talking `btt_pay` over a BitTorrent connection on 127.0.0.1.
//! Every transaction mined here is also run through Bitcoin Core's script
//! interpreter (`bitcoinconsensus`).

use crate::chain::*;
use crate::harness::*;
use btt::chain::{ChainBackend, ChainError};
use btt::chanstore::ChannelStore;
use btt::config::Home;
use btt::market::seller_node::SellerNode;
use btt::pay::bitcoin::consensus::encode;
use btt::pay::bitcoin::{Amount, OutPoint, Transaction};
use btt::pay::channel::Buyer;
use btt::pay::proto::{ChannelTerms, Msg};
use btt::pay::script::{funding_script_pubkey, funding_witness_script};
use btt::wallet::{public_key, BttWallet};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

mod faults;
mod hostile;

fn sat(v: &Value) -> u64 {
    (v.as_f64().expect("amount") * 1e8).round() as u64
}

/// Output values of a mined or mempool transaction, in sat.
fn outputs(rt: &Regtest, txid: &str) -> Vec<u64> {
    rt.tx(txid)["vout"]
        .as_array()
        .expect("vout")
        .iter()
        .map(|o| sat(&o["value"]))
        .collect()
}

/// Bitcoin Core's consensus check of every input of `txid`.
fn consensus_ok(rt: &Regtest, txid: &str) {
    let hex: String = rt.rpc("getrawtransaction", &[json!(txid)]);
    let tx: Transaction = encode::deserialize_hex(&hex).unwrap();
    let raw = encode::serialize(&tx);
    for (i, input) in tx.input.iter().enumerate() {
        let prev: String = rt.rpc(
            "getrawtransaction",
            &[json!(input.previous_output.txid.to_string())],
        );
        let prev: Transaction = encode::deserialize_hex(&prev).unwrap();
        let out = &prev.output[input.previous_output.vout as usize];
        bitcoinconsensus::verify(
            out.script_pubkey.as_bytes(),
            out.value.to_sat(),
            &raw,
            None,
            i,
        )
        .unwrap_or_else(|e| panic!("{txid} input {i} fails consensus: {e:?}"));
    }
}

fn mined(rt: &Regtest, txid: &str) {
    rt.mine(1, BURN);
    assert!(rt.confirmations(txid) >= 1, "{txid} was not mined");
    consensus_ok(rt, txid);
}

fn expiry_of(p: &Party, id: &str) -> u32 {
    let out = p.ok(&["channels", "list"]);
    let row = out.lines().find(|l| l.contains(id)).unwrap();
    row.split('\t').nth(4).unwrap().parse().unwrap()
}

fn seller_args() -> Vec<&'static str> {
    vec![
        "--zero-conf-limit",
        "150000",
        "--min-expiry-blocks",
        "10",
        "--max-expiry-blocks",
        "100",
        "--close-margin-blocks",
        "5",
    ]
}

/// The whole life of channels through one backend.
fn lifecycle(backend: Backend) {
    let rt = Regtest::start(backend);
    let d = tmpdir();
    let buyer = Party::new(&rt, backend, BUYER);
    let seller = Party::new(&rt, backend, &seller_args());
    fund(&rt, &buyer, 3);
    let before = buyer.balance().0;
    assert!(before > 0, "the buyer was not funded");
    let data_dir = d.path().join("mount-data");
    let doctor = buyer.ok(&["doctor", "--data-dir", data_dir.to_str().unwrap()]);
    let wallet = doctor.lines().find(|l| l.contains("wallet:")).unwrap_or("");
    assert!(
        wallet.starts_with("ok") && wallet.contains("regtest, tip at block"),
        "btt doctor reaches the wallet's server:\n{doctor}"
    );
    let (torrent, data) = content(d.path());
    let port = free_port();
    let mut sp = seller.sell(&torrent, &data, port, &d.path().join("seller.log"));

    // A: zero-conf open under the limit, 10 000 payments, cooperative close.
    let (a, state) = buyer.open(port, &torrent, 100_000);
    assert_eq!(
        state, "ready",
        "an unconfirmed channel under the zero-conf limit is accepted"
    );
    assert_eq!(buyer.pay(&a, 1000, 10_000), 10_000_000);
    assert_eq!(seller.channel(&a).1, 10_000_000);
    let close = Party::field(&buyer.ok(&["channels", "close", &a]), "close_txid");
    mined(&rt, &close);
    let funding_txid = a.split(':').next().unwrap();
    consensus_ok(&rt, funding_txid);
    let outs = outputs(&rt, &close);
    assert!(
        outs.contains(&10_000),
        "seller output of 10 000 sat in {outs:?}"
    );
    let fee_commit = 100_000 - outs.iter().sum::<u64>();
    assert!(fee_commit > 0 && fee_commit < 5_000);
    assert_eq!(
        seller.balance(),
        (10_000, 0),
        "the seller's wallet holds what it was paid"
    );
    let spent = before - buyer.balance().0;
    let funding_fee = spent - 10_000 - fee_commit;
    assert!(
        funding_fee > 0 && funding_fee < 5_000,
        "buyer lost {spent} sat"
    );

    // B (never paid, refunded) and C (paid, left to the seller's watcher).
    let (b, _) = buyer.open(port, &torrent, 50_000);
    let (c, _) = buyer.open(port, &torrent, 50_000);
    assert_eq!(buyer.pay(&c, 1000, 2000), 2_000_000);
    rt.mine(1, BURN);
    consensus_ok(&rt, b.split(':').next().unwrap());
    let expiry = expiry_of(&buyer, &b);
    let err = buyer.fails(&["channels", "refund", &b]);
    assert!(err.contains("not valid before height"), "{err}");
    // The node itself refuses the early refund (lock time not reached).
    {
        let home = Home::locate(Some(&buyer.home));
        let w = BttWallet::open(&home).unwrap();
        let store = ChannelStore::open(&home.channels_db()).unwrap();
        let r = store.get(&b).unwrap();
        let chain = btt::chain::connect(&w.config).unwrap();
        let early = Buyer::new(r.terms.clone(), w.channel_key(r.meta.key_index.unwrap()), 0)
            .unwrap()
            .refund_unchecked();
        match chain.broadcast(&early) {
            Err(ChainError::Rejected(reason)) => {
                assert!(reason.contains("non-final"), "{reason}")
            }
            other => panic!("early refund accepted: {other:?}"),
        }
    }
    rt.mine_to(expiry - 5);
    assert!(
        wait_until(Duration::from_secs(20), || seller.channel(&c).0
            == "closing"),
        "the seller did not close C before expiry:\n{}",
        sp.log_text()
    );
    let auto = seller.channel(&c).2;
    rt.wait_indexed();
    mined(&rt, &auto);
    assert!(outputs(&rt, &auto).contains(&2_000));
    rt.mine_to(expiry);
    let refund = Party::field(&buyer.ok(&["channels", "refund", &b]), "refund_txid");
    mined(&rt, &refund);
    assert_eq!(outputs(&rt, &refund).len(), 1);

    // D: above the zero-conf limit the seller waits for a confirmation.
    let (dch, state) = buyer.open(port, &torrent, 200_000);
    assert!(state.starts_with("pending (0/1"), "{state}");
    let err = buyer.fails(&["channels", "pay", &dch, "--msat", "1000"]);
    assert!(err.contains("confirmation"), "{err}");
    rt.mine(1, BURN);
    assert_eq!(buyer.pay(&dch, 1_000_000, 1), 1_000_000);

    // Stopping the seller closes what it holds.
    sp.signal(libc::SIGTERM);
    assert!(sp.wait_exit(Duration::from_secs(30)).is_some());
    assert!(
        sp.log_text().contains("closed 1 channel(s)"),
        "{}",
        sp.log_text()
    );
    let (st, _, on_stop) = seller.channel(&dch);
    assert_eq!(st, "closing");
    rt.wait_indexed();
    mined(&rt, &on_stop);
    assert!(outputs(&rt, &on_stop).contains(&1_000));

    // Secrets never reach the logs.
    let words = std::fs::read_to_string(seller.home.join("mnemonic")).unwrap();
    let first_words: String = words
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!sp.log_text().contains(&first_words));

    // Plain wallet use: send, import, wrong networks refused.
    let (seller_before, _) = seller.balance();
    let to = seller.address();
    let txid = buyer
        .ok(&["wallet", "send", &to, "12345"])
        .trim()
        .to_string();
    rt.wait_indexed();
    mined(&rt, &txid);
    assert_eq!(seller.balance().0, seller_before + 12_345);
    let err = buyer.fails(&[
        "wallet",
        "send",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        "1000",
    ]);
    assert!(err.contains("not a regtest address"), "{err}");
    let words_file = d.path().join("words");
    std::fs::write(
        &words_file,
        std::fs::read_to_string(buyer.home.join("mnemonic")).unwrap(),
    )
    .unwrap();
    let restored = Party::new(&rt, backend, &["--import", words_file.to_str().unwrap()]);
    assert_eq!(
        restored.balance().0,
        buyer.balance().0,
        "the mnemonic restores the wallet"
    );
    let other = Party::new(&rt, backend, &["--network", "testnet4"]);
    let err = other.fails(&["wallet", "balance"]);
    assert!(
        err.contains("testnet4"),
        "a backend on another network is refused: {err}"
    );
    let exported = buyer.ok(&["wallet", "export-descriptor"]);
    assert!(
        exported.starts_with("wpkh(") && !exported.contains("prv"),
        "{exported}"
    );
}

#[test]
fn channels_over_electrum() {
    lifecycle(Backend::Electrum);
}

#[test]
fn channels_over_rpc() {
    lifecycle(Backend::Rpc);
}

/// Most public Electrum servers speak TLS with a self-signed certificate:
/// `ssl://` is refused until that certificate is pinned, a different pinned
/// certificate is refused too, and a pinned wallet funds, opens, pays and
/// closes a channel over TLS.
#[test]
fn electrum_over_tls_with_a_pinned_certificate() {
    let rt = Regtest::start(Backend::Electrum);
    let d = tmpdir();
    let (ssl_port, cert) = rt.electrum_ssl.clone().expect("ElectrumX on TLS");
    let ssl = format!("ssl://127.0.0.1:{ssl_port}");

    let unpinned = Party::new(&rt, Backend::Electrum, &["--electrum", &ssl]);
    let err = unpinned.fails(&["wallet", "balance"]);
    assert!(
        err.contains("self-signed") && err.contains("--electrum-cert"),
        "an unpinned self-signed certificate is refused with what to do:\n{err}"
    );
    assert!(!err.contains("Caused by"), "one short message:\n{err}");

    let other = d.path().join("other.pem");
    self_signed(&other, &d.path().join("other-key.pem"));
    let wrong = Party::new(
        &rt,
        Backend::Electrum,
        &[
            "--electrum",
            &ssl,
            "--electrum-cert",
            other.to_str().unwrap(),
        ],
    );
    let err = wrong.fails(&["wallet", "balance"]);
    assert!(
        err.contains("not the pinned certificate"),
        "a server whose certificate differs from the pinned one is refused:\n{err}"
    );

    let mut args = vec![
        "--electrum",
        &ssl,
        "--electrum-cert",
        cert.to_str().unwrap(),
    ];
    args.extend_from_slice(BUYER);
    let buyer = Party::new(&rt, Backend::Electrum, &args);
    let doctor = buyer.ok(&["doctor"]);
    assert!(
        doctor
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("wallet:") && l.contains("regtest")),
        "btt doctor reaches the server over TLS:\n{doctor}"
    );
    fund(&rt, &buyer, 2);
    assert!(buyer.balance().0 > 0, "the wallet syncs over TLS");

    let seller = Party::new(&rt, Backend::Electrum, &seller_args());
    let (torrent, data) = content(d.path());
    let port = free_port();
    let _seller = seller.sell(&torrent, &data, port, &d.path().join("seller.log"));
    let (id, state) = buyer.open(port, &torrent, 50_000);
    assert_eq!(state, "ready", "the funding went out over TLS");
    assert_eq!(buyer.pay(&id, 100_000, 10), 1_000_000);
    let close = Party::field(&buyer.ok(&["channels", "close", &id]), "close_txid");
    mined(&rt, &close);
}

/// kill -9 of either side at the worst moment loses nothing.
#[test]
fn channels_survive_kill_9() {
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let buyer = Party::new(&rt, Backend::Rpc, BUYER);
    let seller = Party::new(&rt, Backend::Rpc, SELLER);
    fund(&rt, &buyer, 2);
    let (torrent, data) = content(d.path());
    let port = free_port();
    let log = d.path().join("seller.log");
    let mut sp = seller.sell(&torrent, &data, port, &log);

    // The seller is killed right after acknowledging payment N.
    let (a, _) = buyer.open(port, &torrent, 200_000);
    assert_eq!(buyer.pay(&a, 1000, 1000), 1_000_000);
    sp.signal(libc::SIGKILL);
    sp.wait_exit(Duration::from_secs(10))
        .expect("seller killed");
    let mut sp = seller.sell(&torrent, &data, port, &d.path().join("seller2.log"));
    assert_eq!(seller.channel(&a).1, 1_000_000);
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30))
        .expect("seller stopped");
    let close = seller.channel(&a).2;
    mined(&rt, &close);
    assert!(outputs(&rt, &close).contains(&1_000), "closed with total N");

    // The buyer is killed in the middle of a stream of payments.
    let mut sp = seller.sell(&torrent, &data, port, &d.path().join("seller3.log"));
    let (b, _) = buyer.open(port, &torrent, 200_000);
    let mut payer = Proc::spawn(
        "btt channels pay",
        std::process::Command::new(BTT)
            .arg("--home")
            .arg(&buyer.home)
            .args(["channels", "pay", &b, "--msat", "10000", "--count", "15000"]),
        &d.path().join("payer.log"),
    );
    assert!(wait_until(Duration::from_secs(60), || seller.channel(&b).1
        >= 1_000_000));
    payer.signal(libc::SIGKILL);
    payer
        .wait_exit(Duration::from_secs(10))
        .expect("payer killed");
    let ours = buyer.channel(&b).1;
    let theirs = seller.channel(&b).1;
    assert!(
        ours == theirs || ours == theirs + 10_000,
        "buyer {ours} msat, seller {theirs} msat"
    );
    // Resuming re-sends what the seller missed, then pays on.
    assert_eq!(buyer.pay(&b, 1000, 1), ours + 1000);
    assert_eq!(
        seller.channel(&b).1,
        ours + 1000,
        "the seller got the missed payment too"
    );
    let close = Party::field(&buyer.ok(&["channels", "close", &b]), "close_txid");
    mined(&rt, &close);
    let outs = outputs(&rt, &close);
    let seller_sat = (ours + 1000) / 1000;
    assert!(outs.contains(&seller_sat), "{outs:?}");
    let fee = 200_000 - outs.iter().sum::<u64>();
    assert!(
        fee < 5_000,
        "no funds lost beyond the fee fixed at open: {outs:?}"
    );
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30));
}

fn error_code(reply: Option<Vec<u8>>) -> String {
    match Msg::decode(&reply.expect("a reply")).unwrap() {
        Msg::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Bad messages are refused with a clear error and change nothing, against
/// a real node and wallet. Every refusal, one by one, is a unit test of the
/// seller's book (`pay::book`); these are the ones whose facts come from the
/// chain, the wallet or the store.
#[test]
fn seller_refuses_bad_channels_and_payments() {
    let rt = Regtest::start(Backend::Rpc);
    let buyer = Party::new(&rt, Backend::Rpc, &[]);
    let seller = Party::new(
        &rt,
        Backend::Rpc,
        &[
            "--zero-conf-limit",
            "1000000",
            "--min-expiry-blocks",
            "10",
            "--max-expiry-blocks",
            "100",
        ],
    );
    fund(&rt, &buyer, 2);
    let d = tmpdir();
    let shome = Home::locate(Some(&seller.home));
    let node_for = |db: &str| {
        let w = BttWallet::open(&shome).unwrap();
        let chain: Arc<dyn ChainBackend> = Arc::from(btt::chain::connect(&w.config).unwrap());
        let store = ChannelStore::open(&d.path().join(db)).unwrap();
        SellerNode::new(
            w,
            store,
            chain,
            btt::pay::price::Price::msat_per_gib(1_000_000),
            1 << 20,
            btt::market::seller_node::FreePeers::Serve,
        )
        .unwrap()
    };
    let node = node_for("a.sqlite");
    let peer = "127.0.0.1:1".parse().unwrap();
    let bhome = Home::locate(Some(&buyer.home));
    let mut bw = BttWallet::open(&bhome).unwrap();
    let chain = btt::chain::connect(&bw.config).unwrap();
    bw.sync(chain.as_ref()).unwrap();
    let tip = rt.height();

    // Propose: wrong network, expiry too soon.
    let propose = |net: &str, exp: u32| Msg::Propose {
        network: net.into(),
        capacity_sat: 100_000,
        expiry_height: exp,
    };
    assert_eq!(
        error_code(node.handle(peer, &propose("bitcoin", tip + 50).encode())),
        "wrong_network"
    );
    assert_eq!(
        error_code(node.handle(peer, &propose("regtest", tip + 2).encode())),
        "policy"
    );
    let Msg::Accept {
        seller_key,
        seller_payout,
    } = Msg::decode(
        &node
            .handle(peer, &propose("regtest", tip + 50).encode())
            .unwrap(),
    )
    .unwrap()
    else {
        panic!("no accept")
    };

    // Fund a channel for real.
    let key = bw.channel_key(0);
    let expiry = tip + 50;
    let spk = funding_script_pubkey(&funding_witness_script(
        &public_key(&key),
        &seller_key,
        expiry,
    ));
    let rate = btt::pay::bitcoin::FeeRate::from_sat_per_vb(2).unwrap();
    let tx = bw
        .build_payment(spk.clone(), Amount::from_sat(100_000), rate)
        .unwrap();
    bw.broadcast(chain.as_ref(), tx.clone()).unwrap();
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == spk)
        .unwrap() as u32;
    let terms = ChannelTerms {
        network: "regtest".into(),
        capacity_sat: 100_000,
        fee_sat: 500,
        expiry_height: expiry,
        buyer_key: public_key(&key),
        seller_key,
        buyer_payout: bw.payout_script().unwrap(),
        seller_payout,
        funding: OutPoint {
            txid: tx.compute_txid(),
            vout,
        },
    };
    let raw = encode::serialize(&tx);
    let funded = |t: &ChannelTerms| {
        Msg::Funded {
            terms: t.clone(),
            tx: raw.clone(),
        }
        .encode()
    };
    let store_a = ChannelStore::open(&d.path().join("a.sqlite")).unwrap();

    let mut t = terms.clone();
    t.network = "bitcoin".into();
    assert_eq!(error_code(node.handle(peer, &funded(&t))), "wrong_network");
    let mut t = terms.clone();
    t.capacity_sat = 90_000;
    assert_eq!(
        error_code(node.handle(peer, &funded(&t))),
        "wrong_funding",
        "wrong value"
    );
    let mut t = terms.clone();
    t.seller_payout = bw.payout_script().unwrap();
    assert_eq!(
        error_code(node.handle(peer, &funded(&t))),
        "policy",
        "a payout script the seller's wallet does not own"
    );
    assert!(
        store_a.list().unwrap().is_empty(),
        "no channel stored by a refused open"
    );
    assert!(matches!(
        Msg::decode(&node.handle(peer, &funded(&terms)).unwrap()).unwrap(),
        Msg::Ready { .. }
    ));

    // Payments.
    let id = btt::chanstore::channel_id(&terms.funding);
    let store_terms = store_a.get(&id).unwrap().terms;
    let mut good = Buyer::new(store_terms.clone(), key, 0).unwrap();
    let pay = |b: &mut Buyer, total: u64| {
        let p = b.pay(total).unwrap();
        node.handle(
            peer,
            &Msg::Pay {
                channel: terms.funding,
                total_msat: total,
                signature: p.signature,
            }
            .encode(),
        )
    };
    assert!(matches!(
        Msg::decode(&pay(&mut good, 600_000).unwrap()).unwrap(),
        Msg::Ack {
            total_msat: 600_000,
            ..
        }
    ));
    let mut forger = Buyer::new(
        btt::pay::tx::Terms {
            buyer: public_key(&bw.channel_key(9)),
            ..store_terms.clone()
        },
        bw.channel_key(9),
        0,
    )
    .unwrap();
    assert_eq!(error_code(pay(&mut forger, 700_000)), "bad_signature");
    let mut replay = Buyer::new(store_terms.clone(), key, 0).unwrap();
    assert_eq!(error_code(pay(&mut replay, 600_000)), "not_increasing");
    assert_eq!(
        store_a.get(&id).unwrap().total_msat,
        600_000,
        "refused payments change nothing"
    );

    // Funding already spent: close the channel, then offer it to a fresh seller store.
    let close = node.close(&terms.funding).unwrap();
    mined(&rt, &close.to_string());
    let fresh = node_for("b.sqlite");
    assert_eq!(
        error_code(fresh.handle(peer, &funded(&terms))),
        "funding_spent"
    );
    let store_b = ChannelStore::open(&d.path().join("b.sqlite")).unwrap();
    assert!(store_b.list().unwrap().is_empty());
    // A malformed message is an error, not a panic.
    assert_eq!(error_code(node.handle(peer, b"d1:t3:paye")), "malformed");
}

/// Counts (pieces, rejects) for `n` block requests starting at block `first`.
/// Requests block 0 of pieces `first..first + n` on a raw connection;
/// (pieces received, rejects).
pub fn request_blocks(conn: &mut btt::market::buyer::SellerConn, first: u32, n: u32) -> (u32, u32) {
    use btt::wire::{BlockRef, Message};
    for i in first..first + n {
        conn.send_wire(Message::Request(BlockRef {
            index: i,
            begin: 0,
            length: 16384,
        }))
        .unwrap();
    }
    let (mut pieces, mut rejects) = (0, 0);
    while pieces + rejects < n {
        match conn.recv_wire().unwrap() {
            Message::Piece { .. } => pieces += 1,
            Message::Reject(_) => rejects += 1,
            _ => {}
        }
    }
    (pieces, rejects)
}

/// A buyer that stops paying gets `credit` bytes beyond what it paid, then
/// rejects; paying opens more. A peer announcing btt_pay without a channel,
/// and (with --free-peers choke) one without the extension, get nothing.
#[test]
fn seller_serves_only_credit_beyond_payments() {
    use btt::wire::Message;
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let buyer = Party::new(&rt, Backend::Rpc, BUYER);
    let seller = Party::new(&rt, Backend::Rpc, SELLER);
    fund(&rt, &buyer, 2);
    let (torrent, data) = content(d.path());
    let port = free_port();
    // 1000 sat per MiB: a 16 KiB block costs 15 625 msat; credit is 4 blocks.
    let _sp = seller.sell_with(
        &torrent,
        &data,
        port,
        &d.path().join("seller.log"),
        &[
            "--price",
            "1000sat/MiB",
            "--credit",
            "64KiB",
            "--free-peers",
            "choke",
        ],
    );
    let (ch, _) = buyer.open(port, &torrent, 100_000);
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    // Unbound: speaks btt_pay but names no channel.
    let mut conn = btt::market::buyer::SellerConn::connect(addr, meta.info_hash.0).unwrap();
    conn.send_wire(Message::Interested).unwrap();
    assert_eq!(request_blocks(&mut conn, 0, 2), (0, 2));

    // Bound by `resume`, nothing paid: exactly the credit.
    let channel: OutPoint = ch.parse().unwrap();
    match conn.request(&Msg::Resume { channel }).unwrap() {
        Msg::State {
            total_msat: 0,
            open: true,
            ..
        } => {}
        other => panic!("{}", other.kind()),
    }
    assert_eq!(
        request_blocks(&mut conn, 0, 10),
        (4, 6),
        "credit is 4 blocks"
    );
    // Paying for two blocks opens two more.
    assert_eq!(buyer.pay(&ch, 31_250, 1), 31_250);
    assert_eq!(
        request_blocks(&mut conn, 4, 4),
        (2, 2),
        "paying two blocks opens two more"
    );
    drop(conn);

    // A reconnect keeps the channel's account, and `state` says what is
    // unpaid (6 blocks served, 2 paid): still no more than paid + credit.
    let mut conn = btt::market::buyer::SellerConn::connect(addr, meta.info_hash.0).unwrap();
    conn.send_wire(Message::Interested).unwrap();
    match conn.request(&Msg::Resume { channel }).unwrap() {
        Msg::State {
            total_msat: 31_250,
            unpaid,
            ..
        } => assert_eq!(unpaid, 4 * 16384, "4 blocks served and not paid"),
        other => panic!("{}", other.kind()),
    }
    assert_eq!(request_blocks(&mut conn, 8, 2), (0, 2));
}
