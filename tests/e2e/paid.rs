//! The paid swarm: btt-mount buying pieces from `btt seed --price` sellers on
//! a regtest chain, alone and beside free peers.

use crate::chain::*;
use crate::harness::*;
use std::time::Duration;

const PRICE: &str = "1000sat/MiB";

/// msat for `bytes` at 1000 sat/MiB, rounded up once (the rule in price.rs).
fn cost(bytes: u64) -> u64 {
    (bytes as u128 * 1_000_000).div_ceil(1 << 20) as u64
}

struct Swarm {
    rt: Regtest,
    d: tempfile::TempDir,
    buyer: Party,
    seller: Party,
    torrent: std::path::PathBuf,
    data: std::path::PathBuf,
    size: u64,
}

fn swarm(size: usize) -> Swarm {
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let buyer = Party::new(&rt, Backend::Rpc, &["--expiry-blocks", "40"]);
    let seller = Party::new(
        &rt,
        Backend::Rpc,
        &["--zero-conf-limit", "1000000", "--min-expiry-blocks", "10"],
    );
    fund(&rt, &buyer, 2);
    let data = d.path().join("data");
    make_tree(&data, &[("film.bin", size)]);
    let torrent = make_torrent(&data.join("film.bin"), 65536, &[]);
    Swarm {
        rt,
        d,
        buyer,
        seller,
        torrent,
        data,
        size: size as u64,
    }
}

#[test]
fn mount_buys_every_piece_from_a_paid_seller() {
    let s = swarm(1_500_000);
    let port = free_port();
    let mut sp = s.seller.sell_with(
        &s.torrent,
        &s.data,
        port,
        &s.d.path().join("seller.log"),
        &["--price", PRICE, "--credit", "256KiB"],
    );
    let md = s.d.path().join("m");
    std::fs::create_dir_all(&md).unwrap();
    let peer = format!("127.0.0.1:{port}");
    let home = s.buyer.home.to_str().unwrap().to_string();
    let m = Mount::start(
        &md,
        &s.torrent,
        &[
            "--peer",
            &peer,
            "--no-trackers",
            "--home",
            &home,
            "--max-price",
            "2000sat/MiB",
            "--budget",
            "5000sat",
            "--channel-size",
            "100000sat",
            "--read-timeout",
            "60",
        ],
    );
    let got = read_file_timeout(&m.mnt.join("film.bin"), Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert_eq!(got, std::fs::read(s.data.join("film.bin")).unwrap());
    // Payments follow verification asynchronously.
    let want = cost(s.size);
    let ch = {
        let out = s.buyer.ok(&["channels", "list"]);
        out.lines()
            .find(|l| l.starts_with("buyer"))
            .unwrap_or_else(|| panic!("no channel:\n{out}\n{}", m.log()))
            .split('\t')
            .nth(5)
            .unwrap()
            .to_string()
    };
    assert!(
        wait_until(Duration::from_secs(20), || s.seller.channel(&ch).1 >= want),
        "seller holds {} msat, expected {want}\n{}",
        s.seller.channel(&ch).1,
        m.log()
    );
    let paid = s.buyer.channel(&ch).1;
    assert_eq!(paid, want, "paid = price × bytes, rounded up once");
    drop(m);
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30)).expect("seller stops");
    let close = s.seller.channel(&ch).2;
    s.rt.mine(1, BURN);
    assert!(
        s.rt.confirmations(&close) >= 1,
        "the seller's close is mined"
    );
}
