//! Hostile buyers against a seller's wallet and logs.

use super::*;
use btt::wire::Message;

/// 5 000 `propose` messages (they need no authentication) reveal no new
/// wallet address each: the seller offers its first unused address until a
/// close pays it, so a wallet restored from the words finds every payout.
/// And they cost the seller little: one IP gets a few answers a minute, the
/// rest are refused without a chain or wallet look-up, and a peer that keeps
/// on is dropped.
#[test]
fn proposals_do_not_drain_the_sellers_addresses() {
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let seller = Party::new(&rt, Backend::Rpc, &seller_args());
    let (torrent, data) = content(d.path());
    let port = free_port();
    let _sp = seller.sell(&torrent, &data, port, &d.path().join("seller.log"));
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let tip = rt.height();
    let propose = Msg::Propose {
        network: "regtest".into(),
        capacity_sat: 100_000,
        expiry_height: tip + 40,
    };
    let mut offered = std::collections::HashSet::new();
    let (mut accepted, mut refused, mut connections) = (0, 0, 0);
    'flood: while accepted + refused < 5000 && connections < 20 {
        let Ok(mut conn) = btt::market::buyer::SellerConn::connect(addr, meta.info_hash.0) else {
            break;
        };
        connections += 1;
        loop {
            match conn.request(&propose) {
                Ok(Msg::Accept { seller_payout, .. }) => {
                    accepted += 1;
                    offered.insert(seller_payout);
                }
                Ok(other) => panic!("{}", other.kind()),
                Err(btt::market::buyer::BuyError::Refused { code, .. }) if code == "policy" => {
                    refused += 1;
                }
                Err(_) => break, // dropped: connect again
            }
            if accepted + refused >= 5000 {
                break 'flood;
            }
        }
    }
    assert!(
        accepted <= btt::market::admit::PER_WINDOW as usize,
        "{accepted} proposals answered in a minute"
    );
    assert!(
        connections > 1 && refused <= 20 * 16,
        "a flooding peer is dropped ({connections} connections, {refused} refused)"
    );
    assert_eq!(
        offered.len(),
        1,
        "one payout address offered until it is used"
    );
    let w = BttWallet::open(&Home::locate(Some(&seller.home))).unwrap();
    let revealed = w
        .wallet
        .derivation_index(bdk_wallet::KeychainKind::External)
        .unwrap_or(0);
    assert!(revealed < 5, "the seller revealed {revealed} addresses");
}

/// 200 000 malformed `btt_pay` messages: a few log lines, not one per
/// message; the peer is dropped; the seller's memory stays flat.
#[test]
fn malformed_pay_messages_are_not_a_log_flood() {
    use std::io::Write;
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let seller = Party::new(&rt, Backend::Rpc, &seller_args());
    let (torrent, data) = content(d.path());
    let port = free_port();
    let log = d.path().join("seller.log");
    let sp = seller.sell(&torrent, &data, port, &log);
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap()).unwrap();
    let before = std::fs::read_to_string(format!("/proc/{}/status", sp.pid())).unwrap();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&btt::wire::Handshake::new(meta.info_hash.0, *b"-XX0001-garbage00000").encode())
        .unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut dropped = false;
    for i in 0..200_000u32 {
        Message::Extended {
            id: btt::engine::PAY_EXT_ID,
            payload: bytes::Bytes::from(format!("d1:xi{i}e").into_bytes()),
        }
        .encode(&mut buf);
        if buf.len() > 1 << 16 {
            if c.write_all(&buf).is_err() {
                dropped = true;
                break;
            }
            buf.clear();
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let lines = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("btt_pay"))
        .count();
    let rss = |s: &str| -> u64 {
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let after = std::fs::read_to_string(format!("/proc/{}/status", sp.pid())).unwrap();
    println!(
        "{lines} log lines; RSS {} → {} KiB; dropped {dropped}",
        rss(&before),
        rss(&after)
    );
    assert!(lines < 10, "{lines} log lines about bad btt_pay messages");
    assert!(rss(&after) < rss(&before) + 16 * 1024);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("malformed btt_pay messages")
            || dropped,
        "the peer was not dropped"
    );
}
