//! The fault matrix: a buyer or seller process killed (`BTT_FAILPOINT`
//! aborts it, as `kill -9` would) at each named step of open, pay, resume
//! and close, then restarted. After each, the life of a channel goes on to
//! its close and the invariants hold: both sides agree on the total, the
//! total is what the buyer paid for, no channel is left open and unusable,
//! the close pays the seller its total and the rest (less a fee fixed at
//! open) to the buyer, and it passes Bitcoin Core's consensus checks.

use super::*;
use std::os::unix::process::ExitStatusExt;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Buyer,
    Seller,
}

struct World {
    rt: Regtest,
    d: tempfile::TempDir,
    buyer: Party,
    seller: Party,
    torrent: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    sp: Option<Proc>,
    runs: u32,
}

const CAPACITY: u64 = 100_000;

impl World {
    fn new() -> World {
        let rt = Regtest::start(Backend::Rpc);
        let d = tmpdir();
        let buyer = Party::new(&rt, Backend::Rpc, BUYER);
        let seller = Party::new(&rt, Backend::Rpc, &seller_args());
        fund(&rt, &buyer, 2);
        let (torrent, data) = content(d.path());
        World {
            rt,
            d,
            buyer,
            seller,
            torrent,
            data,
            port: free_port(),
            sp: None,
            runs: 0,
        }
    }

    /// (Re)starts the seller, with `fp` armed.
    fn sell(&mut self, fp: Option<&str>) {
        self.sp = None;
        self.runs += 1;
        let mut cmd = std::process::Command::new(BTT);
        cmd.arg("--home")
            .arg(&self.seller.home)
            .args(["seed", self.torrent.to_str().unwrap(), "--data"])
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--no-trackers", "--sell", "--watch-interval", "1"])
            .env("BTT_FAILPOINT", fp.unwrap_or(""));
        let log = self.d.path().join(format!("seller{}.log", self.runs));
        self.sp = Some(Proc::spawn("btt seed --sell", &mut cmd, &log));
        wait_port(self.port, Duration::from_secs(20));
    }

    /// Whether the seller aborted at its failpoint; restarts it unarmed if so.
    fn seller_restarted(&mut self) -> bool {
        let sp = self.sp.as_mut().expect("seller");
        let died = sp.wait_exit(Duration::from_millis(300)).is_some();
        if died {
            assert!(sp.log_text().contains("failpoint"), "{}", sp.log_text());
            self.sell(None);
        }
        died
    }

    /// `btt ARGS` as the buyer, with `fp` armed.
    fn buyer_run(&self, args: &[&str], fp: Option<&str>) -> std::process::Output {
        std::process::Command::new(BTT)
            .arg("--home")
            .arg(&self.buyer.home)
            .args(args)
            .env("BTT_FAILPOINT", fp.unwrap_or(""))
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run btt")
    }

    /// Runs a buyer step with `fp` armed; true if a process died at it (the
    /// buyer by abort, or the seller, then restarted).
    fn step(&mut self, args: &[&str], fp: Option<&str>) -> (bool, std::process::Output) {
        let o = self.buyer_run(args, fp);
        let buyer_died = o.status.signal() == Some(libc::SIGABRT);
        if buyer_died {
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("failpoint"),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let seller_died = self.seller_restarted();
        (buyer_died || seller_died, o)
    }

    fn rows(p: &Party) -> Vec<Vec<String>> {
        p.ok(&["channels", "list"])
            .lines()
            .skip(1)
            .map(|l| l.split('\t').map(String::from).collect())
            .collect()
    }
}

fn run(fp: &str, side: Side) {
    let mut w = World::new();
    let (bfp, sfp) = match side {
        Side::Buyer => (Some(fp), None),
        Side::Seller => (None, Some(fp)),
    };
    w.sell(sfp);
    let mut died = false;
    let seller_addr = format!("127.0.0.1:{}", w.port);
    let torrent = w.torrent.to_str().unwrap().to_string();
    let open = [
        "channels",
        "open",
        &seller_addr,
        "--torrent",
        &torrent,
        "--capacity",
        &CAPACITY.to_string(),
    ];

    // Open. A channel stored before a crash is either usable or, if its
    // funding never left, failed (the coins never left the wallet).
    let (d, o) = w.step(&open, bfp);
    died |= d;
    let id = if o.status.success() {
        Party::field(&String::from_utf8_lossy(&o.stdout), "channel")
    } else {
        let rows = World::rows(&w.buyer);
        match rows.iter().find(|r| r[1] == "open") {
            Some(r) => r[5].clone(),
            None => {
                assert!(rows.iter().all(|r| r[1] == "failed"), "{rows:?}");
                Party::field(&w.buyer.ok(&open), "channel")
            }
        }
    };

    // Pay 3 steps; a payment cut short is re-sent by the next one. Each
    // total is a whole number of steps: none is lost or counted twice.
    const STEP: u64 = 1_000_000;
    let (d, o) = w.step(
        &[
            "channels",
            "pay",
            &id,
            "--msat",
            &STEP.to_string(),
            "--count",
            "3",
        ],
        bfp,
    );
    died |= d;
    let total = Party::field(
        &w.buyer
            .ok(&["channels", "pay", &id, "--msat", &STEP.to_string()]),
        "total_msat",
    )
    .parse::<u64>()
    .unwrap();
    if o.status.success() {
        assert_eq!(total, 4 * STEP);
    } else {
        assert!(
            total % STEP == 0 && (STEP..=4 * STEP).contains(&total),
            "total {total} msat after a cut-short stream of 3 payments and one more"
        );
    }
    assert_eq!(
        w.seller.channel(&id).1,
        total,
        "both sides hold the same total"
    );

    // Close. A close the seller recorded is broadcast (again) when it
    // restarts; otherwise the buyer asks again.
    let (d, o) = w.step(&["channels", "close", &id], bfp);
    died |= d;
    let close = if o.status.success() {
        Party::field(&String::from_utf8_lossy(&o.stdout), "close_txid")
    } else {
        let st = w.seller.channel(&id);
        if st.0 == "closing" {
            st.2
        } else {
            Party::field(&w.buyer.ok(&["channels", "close", &id]), "close_txid")
        }
    };
    assert!(died, "the failpoint {fp} was never reached");
    assert!(
        wait_until(Duration::from_secs(10), || w
            .rt
            .rpc::<Value>("getrawtransaction", &[json!(close)])
            .is_string()),
        "the close {close} never reached the node"
    );
    mined(&w.rt, &close);
    let outs = outputs(&w.rt, &close);
    assert!(
        outs.contains(&(total / 1000)),
        "seller paid its total: {outs:?}"
    );
    let fee = CAPACITY - outs.iter().sum::<u64>();
    assert!(
        fee < 5_000,
        "nothing lost beyond the fee fixed at open: {outs:?}"
    );
    // True after a sync: a buyer that missed the seller's answer finds the
    // close in its wallet.
    for p in [&w.buyer, &w.seller] {
        p.ok(&["wallet", "sync"]);
        for r in World::rows(p) {
            assert!(
                r[1] == "closed" || r[1] == "failed",
                "no channel left open or half-closed: {r:?}"
            );
        }
    }
}

macro_rules! faults {
    ($($name:ident: $fp:literal, $side:ident;)*) => {$(
        #[test]
        fn $name() {
            run($fp, Side::$side);
        }
    )*};
}

faults! {
    buyer_killed_after_storing_a_channel: "buyer-open-stored", Buyer;
    buyer_killed_after_broadcasting_a_funding: "buyer-open-broadcast", Buyer;
    buyer_killed_after_storing_a_payment: "buyer-pay-stored", Buyer;
    buyer_killed_after_sending_a_payment: "buyer-pay-sent", Buyer;
    buyer_killed_after_asking_for_a_close: "buyer-close-sent", Buyer;
    seller_killed_after_storing_a_channel: "seller-funded-stored", Seller;
    seller_killed_after_storing_a_payment: "seller-pay-stored", Seller;
    seller_killed_after_recording_a_close: "seller-close-recorded", Seller;
    seller_killed_after_broadcasting_a_close: "seller-close-broadcast", Seller;
}
