//! Hostile buyers against a seller's wallet and logs.

use super::*;
use btt::wire::Message;

/// 5 000 `propose` messages (they need no authentication) reveal no new
/// wallet address each: the seller offers its first unused address until a
/// close pays it, so a wallet restored from the words finds every payout.
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
    let mut conn = btt::market::buyer::SellerConn::connect(addr, meta.info_hash.0).unwrap();
    let tip = rt.height();
    let mut offered = std::collections::HashSet::new();
    for _ in 0..5000 {
        match conn
            .request(&Msg::Propose {
                network: "regtest".into(),
                capacity_sat: 100_000,
                expiry_height: tip + 40,
            })
            .unwrap()
        {
            Msg::Accept { seller_payout, .. } => {
                offered.insert(seller_payout);
            }
            other => panic!("{}", other.kind()),
        }
    }
    let _ = conn.send_wire(Message::KeepAlive);
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
