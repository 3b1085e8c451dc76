//! The paid swarm: btt-mount buying pieces from `btt seed --price` sellers on
//! a regtest chain, alone and beside free peers.

use crate::chain::*;
use crate::harness::*;
use std::path::Path;
use std::time::Duration;

mod chain_watch;
mod recovery;

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

impl Swarm {
    /// A buyer's mount in `dir` (see [`buy_mount`]) from which film.bin
    /// reads byte-exact.
    fn buy_and_read(&self, dir: &str, ports: &[u16], extra: &[&str]) -> Mount {
        let m = buy_mount(
            &self.d.path().join(dir),
            &self.torrent,
            &self.buyer,
            ports,
            extra,
        );
        self.reads_whole(&m);
        m
    }

    /// film.bin reads byte-exact from `m`.
    fn reads_whole(&self, m: &Mount) {
        let got = read_file_timeout(&m.mnt.join("film.bin"), Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
        assert_eq!(got, std::fs::read(self.data.join("film.bin")).unwrap());
    }

    /// `btt seed` of the swarm's torrent by its seller on `port`, with `args`.
    fn sell(&self, port: u16, log: &str, args: &[&str]) -> Proc {
        self.seller.sell_with(
            &self.torrent,
            &self.data,
            port,
            &self.d.path().join(log),
            args,
        )
    }
}

fn swarm(size: usize) -> Swarm {
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let buyer = Party::new(&rt, Backend::Rpc, BUYER);
    let seller = Party::new(&rt, Backend::Rpc, SELLER);
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
    let mut sp = s.sell(
        port,
        "seller.log",
        &["--price", PRICE, "--credit", "256KiB"],
    );
    let m = buy_mount(
        &s.d.path().join("m"),
        &s.torrent,
        &s.buyer,
        &[port],
        &[
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
    s.reads_whole(&m);
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

/// `buyer`'s mount in `dir` (mount point `dir/mnt`) dialing only 127.0.0.1
/// at `ports`, no trackers, with `extra` flags.
fn buy_mount(dir: &Path, torrent: &Path, buyer: &Party, ports: &[u16], extra: &[&str]) -> Mount {
    let peers: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut a = vec!["--no-trackers", "--home", buyer.home.to_str().unwrap()];
    for p in &peers {
        a.push("--peer");
        a.push(p);
    }
    a.extend_from_slice(extra);
    Mount::start(dir, torrent, &a)
}

fn buyer_channels(p: &Party) -> Vec<(String, u64)> {
    p.ok(&["channels", "list"])
        .lines()
        .filter(|l| l.starts_with("buyer"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[5].to_string(), f[2].parse().unwrap())
        })
        .collect()
}

/// Mount `m`'s line in `btt status`. Tests run side by side and share the
/// status directory, and many mount a film.bin: the line is found by its
/// mount point, never by the torrent's name.
fn mount_status(p: &Party, m: &Mount) -> Option<String> {
    let head = format!("mount {} [pid", m.mnt.display());
    p.ok(&["status"])
        .lines()
        .find(|l| l.starts_with(&head))
        .map(str::to_string)
}

/// The mount's `btt status` line mentions no rejected requests (the
/// seller's log, if given, is shown when it does).
fn assert_no_rejects(buyer: &Party, m: &Mount, seller_log: Option<&Path>) {
    // The status file is rewritten about once a second.
    std::thread::sleep(Duration::from_millis(1200));
    let line = mount_status(buyer, m).unwrap_or_else(|| panic!("{}", buyer.ok(&["status"])));
    let seller = seller_log
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    assert!(
        !line.contains("rejected"),
        "{line}\n{}\n--- seller ---\n{seller}",
        m.log()
    );
}

/// Bytes a seller served on a channel and was never paid for (a buyer that
/// stopped with requests in flight) still count against its credit: the
/// seller reports them in `state`, the next mount keeps within what is left,
/// and once too little is left it buys over a new channel. No rejects.
#[test]
fn unpaid_bytes_at_the_seller_are_respected() {
    use btt::pay::proto::Msg;
    use btt::wire::Message;
    let s = swarm(1_500_000);
    let port = free_port();
    // Two 64 KiB pieces of credit.
    let mut sp = s.sell(
        port,
        "seller.log",
        &["--price", PRICE, "--credit", "128KiB"],
    );
    let (ch, _) = s.buyer.open(port, &s.torrent, 100_000);
    let meta = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&s.torrent).unwrap()).unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let channel: btt::pay::bitcoin::OutPoint = ch.parse().unwrap();
    // A buyer that takes `n` blocks on the channel and goes away unpaid. It
    // asks only once unchoked, as a client must: requests sent while choked
    // are rejected, and that race once failed this test (3 rejects).
    let take_unpaid = |first: u32, n: u32| {
        let mut conn = btt::market::buyer::SellerConn::connect(addr, meta.info_hash.0).unwrap();
        conn.send_wire(Message::Interested).unwrap();
        conn.send(&Msg::Resume { channel }).unwrap();
        let (mut unpaid, mut unchoked) = (None, false);
        while unpaid.is_none() || !unchoked {
            match conn.recv_wire().unwrap() {
                Message::Unchoke => unchoked = true,
                Message::Extended { id, payload } if id == btt::pay::proto::LOCAL_EXT_ID => {
                    match Msg::decode(&payload).unwrap() {
                        Msg::State { unpaid: u, .. } => unpaid = Some(u),
                        other => panic!("{}", other.kind()),
                    }
                }
                _ => {}
            }
        }
        assert_eq!(crate::payments::request_blocks(&mut conn, first, n), (n, 0));
        unpaid.unwrap()
    };
    assert_eq!(take_unpaid(0, 3), 0);

    // 48 KiB unpaid leave 80 KiB of the 128: enough for a piece, so the
    // mount buys on this channel, keeping its requests within the 80.
    let m = s.buy_and_read(
        "m1",
        &[port],
        &["--max-price", PRICE, "--budget", "5000sat"],
    );
    assert!(
        m.log().contains("bound to a paid channel unpaid=49152"),
        "{}",
        m.log()
    );
    assert_no_rejects(&s.buyer, &m, Some(&s.d.path().join("seller.log")));
    let want = cost(s.size);
    assert!(
        wait_until(Duration::from_secs(20), || s.seller.channel(&ch).1 >= want),
        "{}",
        m.log()
    );
    drop(m);
    assert_eq!(buyer_channels(&s.buyer).len(), 1);

    // Now 7 more blocks: 160 KiB unpaid, beyond what credit plus the waste
    // allowance (1/32 of what is paid) leave for a piece. A new channel.
    assert_eq!(take_unpaid(3, 7), 3 * 16384);
    let m = s.buy_and_read(
        "m2",
        &[port],
        &["--max-price", PRICE, "--budget", "5000sat"],
    );
    assert!(m.log().contains("using another"), "{}", m.log());
    assert_no_rejects(&s.buyer, &m, Some(&s.d.path().join("seller.log")));
    let chans = buyer_channels(&s.buyer);
    assert_eq!(chans.len(), 2, "{chans:?}");
    let new = chans.iter().find(|c| c.0 != ch).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || buyer_channels(&s.buyer)
            .iter()
            .any(|c| c.0 == new.0 && c.1 == want)),
        "{:?}",
        buyer_channels(&s.buyer)
    );
    drop(m);
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30)).expect("seller stops");
}

/// With a budget for 10 % of the file, no more is paid; reads past it fail
/// under --read-timeout and the log says why.
#[test]
fn budget_is_never_exceeded() {
    let s = swarm(1_500_000);
    let port = free_port();
    let sp = s.sell(port, "seller.log", &["--price", PRICE]);
    let budget_sat = cost(s.size) / 1000 / 10;
    let budget = format!("{budget_sat}sat");
    let m = buy_mount(
        &s.d.path().join("m"),
        &s.torrent,
        &s.buyer,
        &[port],
        &[
            "--max-price",
            PRICE,
            "--budget",
            &budget,
            "--read-timeout",
            "4",
        ],
    );
    let r = read_file_timeout(&m.mnt.join("film.bin"), Duration::from_secs(30));
    assert!(
        r.is_err(),
        "the whole file cannot be bought with 10 % of its price"
    );
    std::thread::sleep(Duration::from_secs(1));
    let paid: u64 = buyer_channels(&s.buyer).iter().map(|(_, t)| t).sum();
    assert!(paid > 0, "something was bought");
    assert!(
        paid <= budget_sat * 1000,
        "paid {paid} msat, budget {budget_sat} sat"
    );
    assert!(m.log().contains("budget spent"), "{}", m.log());
    // `btt status` says so too, and shows the seller's earnings.
    std::thread::sleep(Duration::from_millis(1500));
    let st = s.buyer.ok(&["status"]);
    let line = mount_status(&s.buyer, &m).unwrap_or_else(|| panic!("{st}"));
    assert!(
        line.contains("budget spent: not buying") && line.contains("1 paid"),
        "{line}"
    );
    let seller = format!("sell [pid {}]", sp.pid());
    assert!(
        st.lines()
            .any(|l| l.starts_with(&seller) && l.contains("earned")),
        "{st}"
    );
    // What was bought is readable.
    let part = std::fs::File::open(m.mnt.join("film.bin")).unwrap();
    let mut buf = vec![0u8; 65536];
    use std::os::unix::fs::FileExt;
    part.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(
        buf,
        std::fs::read(s.data.join("film.bin")).unwrap()[..65536]
    );
}

/// A seller above --max-price is never paid; a cheaper one is used.
#[test]
fn price_ceiling_picks_the_cheaper_seller() {
    let s = swarm(800_000);
    let dear = Party::new(&s.rt, Backend::Rpc, SELLER);
    let (p1, p2) = (free_port(), free_port());
    let _cheap = s.sell(p1, "cheap.log", &["--price", PRICE]);
    let _dear = dear.sell_with(
        &s.torrent,
        &s.data,
        p2,
        &s.d.path().join("dear.log"),
        &["--price", "5000sat/MiB"],
    );
    let m = s.buy_and_read(
        "m",
        &[p2, p1],
        &["--max-price", "2000sat/MiB", "--read-timeout", "60"],
    );
    assert!(m.log().contains("above --max-price"), "{}", m.log());
    let out = dear.ok(&["channels", "list"]);
    assert_eq!(
        out.lines().count(),
        1,
        "the dear seller has no channel:\n{out}"
    );
    let chans = buyer_channels(&s.buyer);
    assert_eq!(chans.len(), 1);
    let want = cost(s.size);
    assert!(wait_until(Duration::from_secs(20), || s
        .seller
        .channel(&chans[0].0)
        .1
        >= want));
}

/// aria2c seeds half the pieces free; a paid seller has all. Reading the whole
/// file pays only for the pieces aria2c lacks (give or take pieces in flight).
#[test]
fn mixed_swarm_buys_only_what_free_peers_lack() {
    let s = swarm(2_097_152);
    let piece = 65536usize;
    let n = s.size as usize / piece;
    // aria2c's copy: every odd piece zeroed, so it verifies only the even ones.
    let partial = s.d.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    let mut bytes = std::fs::read(s.data.join("film.bin")).unwrap();
    for p in (1..n).step_by(2) {
        bytes[p * piece..(p + 1) * piece].fill(0);
    }
    std::fs::write(partial.join("film.bin"), &bytes).unwrap();
    let (pa, ps) = (free_port(), free_port());
    let _aria = aria2_seed(
        &s.torrent,
        &partial,
        pa,
        &s.d.path().join("aria.log"),
        false,
    );
    let m = buy_mount(
        &s.d.path().join("m"),
        &s.torrent,
        &s.buyer,
        &[pa, ps],
        &["--max-price", PRICE, "--read-timeout", "60"],
    );
    // aria2c must be serving before the seller appears (a listening aria2c
    // may still drop peers while it checks its data; meanwhile a seller with
    // a large credit would sell the whole file): the reader starts, and the
    // seller only once `btt status` shows a piece came from aria2c.
    let f = m.mnt.join("film.bin");
    let reader = std::thread::spawn(move || read_file_timeout(&f, Duration::from_secs(90)));
    let have = || {
        mount_status(&s.buyer, &m)
            .and_then(|l| {
                // "…: 12.5 % (4/32 pieces), …"
                let held = l.split(": ").nth(1)?.split_once('(')?.1;
                held.split('/').next()?.parse::<u32>().ok()
            })
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || have() >= 1),
        "aria2c never delivered\n{}",
        m.log()
    );
    let _sp = s.sell(
        ps,
        "seller.log",
        &["--price", PRICE, "--free-peers", "choke"],
    );
    let got = reader.join().unwrap().unwrap();
    assert_eq!(got, std::fs::read(s.data.join("film.bin")).unwrap());
    std::thread::sleep(Duration::from_secs(2));
    let paid: u64 = buyer_channels(&s.buyer).iter().map(|(_, t)| t).sum();
    let missing = (n / 2) as u64;
    let paid_pieces = paid as f64 / cost(piece as u64) as f64;
    println!("mixed swarm: paid for {paid_pieces:.1} pieces; aria2c lacked {missing} of {n}");
    assert!(
        paid >= cost(missing * piece as u64) - 1,
        "every missing piece is bought"
    );
    assert!(
        paid_pieces <= missing as f64 + 4.0,
        "paid for {paid_pieces:.1} pieces, aria2c lacked only {missing}"
    );
}

/// A seller sending bad data is detected, not paid and dropped; the file comes
/// whole from an honest seller.
#[test]
fn cheating_seller_is_not_paid() {
    let s = swarm(1_000_000);
    let cheat = Party::new(&s.rt, Backend::Rpc, SELLER);
    let bad = s.d.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let mut bytes = std::fs::read(s.data.join("film.bin")).unwrap();
    bytes.iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(bad.join("film.bin"), &bytes).unwrap();
    let (pc, ph) = (free_port(), free_port());
    // Bans are by address: the cheat has one of its own.
    let _c = cheat.sell_at(
        "127.0.0.2",
        &s.torrent,
        &bad,
        pc,
        &s.d.path().join("cheat.log"),
        &["--price", "500sat/MiB", "--seed-unverified"],
    );
    let cheat_addr = format!("127.0.0.2:{pc}");
    let m = buy_mount(
        &s.d.path().join("m"),
        &s.torrent,
        &s.buyer,
        &[ph],
        &[
            "--peer",
            &cheat_addr,
            "--max-price",
            PRICE,
            "--read-timeout",
            "60",
        ],
    );
    // Only the cheat is up at first; the honest seller comes once it is caught.
    let file = m.mnt.join("film.bin");
    let reader = std::thread::spawn(move || read_file_timeout(&file, Duration::from_secs(90)));
    assert!(
        wait_until(Duration::from_secs(30), || m
            .log()
            .contains("failed the hash check")),
        "{}",
        m.log()
    );
    let _h = s.sell(ph, "honest.log", &["--price", PRICE]);
    let got = reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert_eq!(got, std::fs::read(s.data.join("film.bin")).unwrap());
    assert!(m.log().contains("failed the hash check"), "{}", m.log());
    std::thread::sleep(Duration::from_secs(1));
    let cheat_out = cheat.ok(&["channels", "list"]);
    for row in cheat_out.lines().skip(1) {
        let total: u64 = row.split('\t').nth(2).unwrap().parse().unwrap();
        assert_eq!(total, 0, "the cheating seller was paid: {row}");
    }
}

/// Two buyers on one seller at once, each paying for what it read.
#[test]
fn two_buyers_on_one_seller() {
    let s = swarm(700_000);
    let other = Party::new(&s.rt, Backend::Rpc, BUYER);
    fund(&s.rt, &other, 2);
    let port = free_port();
    let _sp = s.sell(port, "seller.log", &["--price", PRICE]);
    let (d1, d2) = (s.d.path().join("m1"), s.d.path().join("m2"));
    let args = ["--max-price", PRICE, "--read-timeout", "60"];
    let m1 = buy_mount(&d1, &s.torrent, &s.buyer, &[port], &args);
    let m2 = buy_mount(&d2, &s.torrent, &other, &[port], &args);
    let want = std::fs::read(s.data.join("film.bin")).unwrap();
    let (p1, p2) = (m1.mnt.join("film.bin"), m2.mnt.join("film.bin"));
    let t1 = std::thread::spawn(move || read_file_timeout(&p1, Duration::from_secs(60)));
    let t2 = std::thread::spawn(move || read_file_timeout(&p2, Duration::from_secs(60)));
    assert_eq!(t1.join().unwrap().unwrap(), want);
    assert_eq!(t2.join().unwrap().unwrap(), want);
    let full = cost(s.size);
    for b in [&s.buyer, &other] {
        assert!(wait_until(Duration::from_secs(20), || {
            buyer_channels(b).iter().map(|(_, t)| t).sum::<u64>() == full
        }));
    }
    let seller_rows = s.seller.ok(&["channels", "list"]);
    assert_eq!(
        seller_rows
            .lines()
            .filter(|l| l.starts_with("seller"))
            .count(),
        2,
        "{seller_rows}"
    );
}

/// `btt get` restores a multi-file torrent byte-exact: interrupted midway with
/// SIGINT, resumed, never paying twice; with too small a budget it stops with
/// a clear error.
#[test]
fn get_restores_a_backup_resumably_without_paying_twice() {
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let buyer = Party::new(&rt, Backend::Rpc, BUYER);
    let seller = Party::new(&rt, Backend::Rpc, SELLER);
    fund(&rt, &buyer, 2);
    let full = d.path().join("full");
    let backup = full.join("backup");
    make_tree(
        &backup,
        &[
            ("a/one.bin", 900_000),
            ("b/two.bin", 650_000),
            ("c.txt", 1000),
        ],
    );
    let torrent = make_torrent(&backup, 65536, &[]);
    let total: u64 = 900_000 + 650_000 + 1000;
    // The first seller holds only the first file's pieces (the rest fail its check).
    let half = d.path().join("half");
    make_tree(&half.join("backup"), &[("a/one.bin", 0)]);
    std::fs::copy(backup.join("a/one.bin"), half.join("backup/a/one.bin")).unwrap();
    let port = free_port();
    let mut sp = seller.sell_with(
        &torrent,
        &half,
        port,
        &d.path().join("s1.log"),
        &["--price", PRICE],
    );
    let out = d.path().join("restore");
    let get = |extra: &[&str]| {
        let mut c = std::process::Command::new(BTT);
        c.arg("--home")
            .arg(&buyer.home)
            .args(["get", torrent.to_str().unwrap(), out.to_str().unwrap()])
            .args([
                "--peer",
                &format!("127.0.0.1:{port}"),
                "--no-trackers",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--max-price", PRICE])
            .args(extra);
        c
    };
    let mut first = Proc::spawn("btt get", &mut get(&[]), &d.path().join("get1.log"));
    // It holds 13 whole pieces (piece 13 spans into the missing file).
    assert!(
        wait_until(Duration::from_secs(30), || {
            buyer_channels(&buyer).iter().map(|(_, t)| t).sum::<u64>() >= cost(13 * 65536)
        }),
        "{}",
        first.log_text()
    );
    first.signal(libc::SIGINT);
    let st = first
        .wait_exit(Duration::from_secs(20))
        .expect("btt get stops on SIGINT");
    assert!(!st.success());
    assert!(
        first
            .log_text()
            .contains("run the same command again to resume"),
        "{}",
        first.log_text()
    );
    let paid_first: u64 = buyer_channels(&buyer).iter().map(|(_, t)| t).sum();
    sp.signal(libc::SIGKILL);
    sp.wait_exit(Duration::from_secs(5));

    // Too small a budget: a clear error, non-zero exit.
    let _sp = seller.sell_with(
        &torrent,
        &full,
        port,
        &d.path().join("s2.log"),
        &["--price", PRICE],
    );
    let o = get(&["--budget", "1sat", "--give-up-after", "2"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("budget of 1 sat spent"), "{err}");

    // Resumed with enough budget: complete, byte-exact, each byte paid once.
    let before: u64 = buyer_channels(&buyer).iter().map(|(_, t)| t).sum();
    let o = get(&["--budget", "5000sat"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_tree_eq(&out.join("backup"), &backup);
    std::thread::sleep(Duration::from_secs(1));
    let paid: u64 = buyer_channels(&buyer).iter().map(|(_, t)| t).sum();
    // What it says it paid is what the channels show, to the msat.
    let said = err
        .lines()
        .find_map(|l| l.strip_prefix("paid ")?.strip_suffix(" sat in this run"))
        .unwrap_or_else(|| panic!("no paid line in {err}"));
    let (sat, msat) = said.split_once('.').unwrap_or((said, "0"));
    let said = sat.parse::<u64>().unwrap() * 1000 + format!("{msat:0<3}").parse::<u64>().unwrap();
    assert_eq!(said, paid - before, "{err}");
    assert!(
        paid_first >= cost(13 * 65536),
        "first run paid {paid_first}"
    );
    assert!(
        paid <= cost(total) + 2,
        "paid {paid} msat in all for {total} bytes (price {} msat): something was paid twice",
        cost(total)
    );
    assert!(paid >= cost(total) - 2);
}

/// One buyer reading two torrents of the same seller at once, over one channel.
#[test]
fn two_torrents_one_channel() {
    let s = swarm(600_000);
    make_tree(&s.data, &[("other.bin", 500_000)]);
    let t2 = make_torrent(&s.data.join("other.bin"), 65536, &[]);
    let port = free_port();
    let sp = Proc::spawn(
        "btt seed (two torrents)",
        std::process::Command::new(BTT)
            .arg("--home")
            .arg(&s.seller.home)
            .arg("seed")
            .arg(&s.torrent)
            .arg(&t2)
            .arg("--data")
            .arg(&s.data)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--no-trackers",
                "--price",
                PRICE,
            ]),
        &s.d.path().join("seller.log"),
    );
    // One listener for both torrents.
    wait_port(port, Duration::from_secs(20));
    {
        // A peer for a torrent this seller does not serve is dropped
        // without a handshake.
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        c.write_all(&btt::wire::Handshake::new([9; 20], [7; 20]).encode())
            .unwrap();
        let mut buf = [0u8; 68];
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection closed, got {other:?}"),
        }
    }
    let args = ["--max-price", PRICE, "--read-timeout", "60"];
    // The first mount opens the channel; the second finds and reuses it.
    let (d1, d2) = (s.d.path().join("m1"), s.d.path().join("m2"));
    let m1 = buy_mount(&d1, &s.torrent, &s.buyer, &[port], &args);
    let a = read_file_timeout(&m1.mnt.join("film.bin"), Duration::from_secs(60)).unwrap();
    let m2 = buy_mount(&d2, &t2, &s.buyer, &[port], &args);
    let (f1, f2) = (m1.mnt.join("film.bin"), m2.mnt.join("other.bin"));
    let r1 = std::thread::spawn(move || read_file_timeout(&f1, Duration::from_secs(60)));
    let b = read_file_timeout(&f2, Duration::from_secs(60)).unwrap();
    assert_eq!(r1.join().unwrap().unwrap(), a);
    assert_eq!(a, std::fs::read(s.data.join("film.bin")).unwrap());
    assert_eq!(b, std::fs::read(s.data.join("other.bin")).unwrap());
    let want = cost(600_000) + cost(500_000);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let c = buyer_channels(&s.buyer);
            c.len() == 1 && c[0].1 == want
        }),
        "channels: {:?}, want one with {want} msat\n{}\n{}",
        buyer_channels(&s.buyer),
        m1.log(),
        m2.log()
    );
    // `btt status` gives each torrent's line its share of the channel, by
    // the bytes served for it: 600 000 and 500 000 bytes.
    let share = |name: &str| -> Option<f64> {
        let st = s.buyer.ok(&["status"]);
        let line = st.lines().find(|l| {
            l.starts_with("sell ") && l.contains(&format!("[pid {}]", sp.pid())) && l.contains(name)
        })?;
        let after = line.split("earned ").nth(1)?;
        after.split(' ').next()?.parse().ok()
    };
    let total = want as f64 / 1000.0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let (a, b) = (share("film.bin"), share("other.bin"));
            matches!((a, b), (Some(a), Some(b)) if (a + b - total).abs() < 2.0 && (a / b - 1.2).abs() < 0.05)
        }),
        "shares {:?} {:?} of {total} sat\n{}",
        share("film.bin"),
        share("other.bin"),
        s.buyer.ok(&["status"])
    );
}

/// A video mounted from a paid seller only: ffprobe and a full decode through
/// the mount; sats paid = price × bytes delivered; the seller's close is mined.
#[test]
fn video_from_a_paid_seller_only() {
    let rt = Regtest::start(Backend::Rpc);
    let d = tmpdir();
    let buyer = Party::new(&rt, Backend::Rpc, BUYER);
    let seller = Party::new(&rt, Backend::Rpc, SELLER);
    fund(&rt, &buyer, 2);
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    btt::demo::generate_video(&data.join("clip.mp4"), 12, 10).unwrap();
    let size = std::fs::metadata(data.join("clip.mp4")).unwrap().len();
    let torrent = make_torrent(&data.join("clip.mp4"), 256 * 1024, &[]);
    let port = free_port();
    let mut sp = seller.sell_with(
        &torrent,
        &data,
        port,
        &d.path().join("seller.log"),
        // A small credit: a buyer that asked beyond it would be rejected.
        &["--price", PRICE, "--credit", "256KiB"],
    );
    let http = format!("127.0.0.1:{}", free_port());
    let m = buy_mount(
        &d.path().join("m"),
        &torrent,
        &buyer,
        &[port],
        &[
            "--max-price",
            PRICE,
            "--budget",
            "20000sat",
            "--http",
            &http,
        ],
    );
    let f = m.mnt.join("clip.mp4");
    let probe = std::process::Command::new("timeout")
        .args([
            "60",
            "ffprobe",
            "-hide_banner",
            "-show_format",
            "-show_streams",
        ])
        .arg(&f)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout).to_string()
        + &String::from_utf8_lossy(&probe.stderr);
    assert!(
        probe.status.success() && text.contains("1920x1080"),
        "{text}\n{}",
        m.log()
    );
    // The page in the middle of the paid read: bought pieces, the paid
    // seller, the money spent (saved as target/web-page-paid.png).
    let body = std::process::Command::new("curl")
        .args(["-s", &format!("http://{http}/api/v1/torrents")])
        .output()
        .unwrap()
        .stdout;
    let api: serde_json::Value = serde_json::from_slice(&body).unwrap();
    // No key material: not the words, no extended private key.
    let words = std::fs::read_to_string(buyer.home.join("mnemonic")).unwrap();
    let text = String::from_utf8_lossy(&body);
    let two: Vec<&str> = words.split_whitespace().take(2).collect();
    assert!(
        !text.contains(&two.join(" ")) && !text.contains("prv"),
        "the API shows key material"
    );
    let t = &api[0];
    assert!(
        t["pieces"].as_str().is_some_and(|p| p.contains('b'))
            && t["money"]["spent_msat"].as_u64() > Some(0)
            && t["peers"][0]["paid"] == true,
        "the API shows the bought pieces, the paid seller and the money: {t}"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = root.join("target/web-page-paid.png");
    let out = std::process::Command::new("node")
        .arg(root.join("tests/browser/shot.js"))
        .arg(format!("http://{http}/"))
        .arg(&shot)
        .arg("spent [1-9].* sat")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("done"),
        "the page during a paid read: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dec = std::process::Command::new("timeout")
        .args([
            "120",
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-xerror",
            "-i",
        ])
        .arg(&f)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        dec.status.success(),
        "{}",
        String::from_utf8_lossy(&dec.stderr)
    );
    // Everything was read, so everything was bought, once.
    let want = cost(size);
    let ch = buyer_channels(&buyer);
    assert_eq!(ch.len(), 1);
    assert!(
        wait_until(Duration::from_secs(20), || buyer_channels(&buyer)[0].1
            == want),
        "paid {:?}, want {want} msat for {size} bytes",
        buyer_channels(&buyer)
    );
    assert_eq!(seller.channel(&ch[0].0).1, want);
    // The buyer kept its requests within the seller's credit: no rejects.
    assert_no_rejects(&buyer, &m, None);
    drop(m);
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30)).expect("seller stops");
    let close = seller.channel(&ch[0].0).2;
    mined_ok(&rt, &close);
    let seller_out = want / 1000;
    let outs: Vec<u64> = rt.tx(&close)["vout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["value"].as_f64().unwrap() * 1e8).round() as u64)
        .collect();
    assert!(
        outs.contains(&seller_out),
        "close pays the seller {seller_out} sat: {outs:?}"
    );
}

fn mined_ok(rt: &Regtest, txid: &str) {
    rt.mine(1, BURN);
    assert!(rt.confirmations(txid) >= 1, "{txid} not mined");
}

/// While free peers deliver, no channel is opened and nothing is paid (the
/// free peer is a plain `btt seed`).
#[test]
fn no_channel_while_free_peers_deliver() {
    let s = swarm(1_000_000);
    let (pa, ps) = (free_port(), free_port());
    let _free = btt_seed(
        &s.torrent,
        &s.data,
        pa,
        &s.d.path().join("free.log"),
        &["--no-trackers"],
    );
    let m = buy_mount(
        &s.d.path().join("m"),
        &s.torrent,
        &s.buyer,
        &[pa, ps],
        &["--max-price", PRICE],
    );
    // aria2c serves (the first bytes come from it); then the seller appears.
    let f = std::fs::File::open(m.mnt.join("film.bin")).unwrap();
    let mut head = vec![0u8; 65536];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).unwrap();
    let _sp = s.sell(ps, "seller.log", &["--price", PRICE]);
    assert!(
        wait_until(Duration::from_secs(30), || m
            .log()
            .contains("client=Some(\"btt")),
        "{}",
        m.log()
    );
    s.reads_whole(&m);
    assert!(buyer_channels(&s.buyer).is_empty(), "{}", m.log());
}
