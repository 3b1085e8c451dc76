//! The channel lifecycle follows the chain: a zero-conf funding that
//! vanishes stops service, and closes that confirm show as closed.

use super::*;

/// A zero-conf channel whose funding leaves the node's mempool (what a node
/// restart without a persistent mempool does, after which the buyer may
/// spend its input elsewhere) stops being served within one block: the
/// seller logs why, marks the channel failed, and served at most its credit
/// (plus the waste allowance) after the funding was last seen in place. The buyer then buys over a new
/// channel and the read completes.
#[test]
fn vanished_zero_conf_funding_stops_service() {
    let s = swarm(12_000_000);
    let port = free_port();
    let credit = 256 * 1024;
    let sp = s.sell(
        port,
        "seller.log",
        &["--price", PRICE, "--credit", "256KiB"],
    );
    let m = buy_mount(
        &s.d.path().join("m"),
        &s.torrent,
        &s.buyer,
        &[port],
        &super::recovery::SLOW_BUY,
    );
    let reader = super::recovery::SlowRead::start(&m, Duration::from_millis(10), 1_000_000);
    let chans = buyer_channels(&s.buyer);
    assert_eq!(chans.len(), 1, "{chans:?}");
    let ch = chans[0].0.clone();
    let txid = ch.split(':').next().unwrap();
    let _: bool = s.rt.rpc("evictmempooltx", &[serde_json::json!(txid)]);
    s.rt.mine(1, BURN);
    assert!(
        wait_until(Duration::from_secs(20), || sp
            .log_text()
            .contains("stopped serving this channel")),
        "the seller goes on serving a vanished funding\n{}",
        sp.log_text()
    );
    let log = sp.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("stopped serving this channel"))
        .unwrap();
    assert!(line.contains("gone from the node's mempool"), "{line}");
    let served: u64 = line
        .split("served_since_check=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // The credit plus the waste allowance (1/32 of what the channel paid).
    let paid_bytes = s.seller.channel(&ch).1 as u128 * (1 << 20) / 1_000_000;
    let bound = credit + (paid_bytes / 32) as u64 + 1;
    assert!(
        served <= bound,
        "served {served} bytes past the last check (bound {bound}): {line}"
    );
    assert_eq!(s.seller.channel(&ch).0, "failed");
    // The buyer learns it on its next payment and buys on a new channel.
    let got = reader
        .finish()
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert_eq!(got, std::fs::read(s.data.join("film.bin")).unwrap());
    assert_ne!(s.buyer.channel(&ch).0, "open", "{}", m.log());
    assert_eq!(buyer_channels(&s.buyer).len(), 2);
    drop(m);
}

/// `channels list` follows the chain on both sides: the seller closes on
/// stop; the buyer, told nothing, lists the channel closing with the
/// seller's close once its wallet has seen it, and both list it closed once
/// the close is mined. Earnings count the confirmed close.
#[test]
fn channels_list_follows_the_chain() {
    // Above dust (546 sat) for the seller's output.
    let s = swarm(1_500_000);
    let port = free_port();
    let mut sp = s.sell(port, "seller.log", &["--price", PRICE]);
    drop(s.buy_and_read(
        "m",
        &[port],
        &["--max-price", PRICE, "--read-timeout", "60"],
    ));
    let ch = buyer_channels(&s.buyer)[0].0.clone();
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30)).expect("seller stops");
    let close = s.seller.channel(&ch).2;
    assert_eq!(s.seller.channel(&ch).0, "closing");
    s.buyer.ok(&["wallet", "sync"]);
    let (state, _, txid) = s.buyer.channel(&ch);
    assert_eq!((state.as_str(), txid.as_str()), ("closing", close.as_str()));
    s.rt.mine(1, BURN);
    let row = |p: &Party| {
        let out = p.ok(&["channels", "list"]);
        out.lines()
            .find(|l| l.contains(&ch))
            .unwrap_or_else(|| panic!("{out}"))
            .split('\t')
            .map(String::from)
            .collect::<Vec<_>>()
    };
    for p in [&s.buyer, &s.seller] {
        let r = row(p);
        assert_eq!(
            (r[1].as_str(), r[6].as_str(), r[7].as_str()),
            ("closed", close.as_str(), "1"),
            "{r:?}"
        );
    }
    let o = s.seller.cmd(&["channels", "list"]);
    let err = String::from_utf8_lossy(&o.stderr);
    let total = s.seller.channel(&ch).1;
    assert!(
        err.contains(&format!("earned {} sat", total / 1000)),
        "{err}"
    );
}

/// `channels list` (which follows every channel on the chain) run while a
/// mount has stored its new channel and not yet broadcast the funding (the
/// failpoint holds that window open) must not judge the funding gone: the
/// channel is listed as opening, then open, and the mount pays over it.
#[test]
fn channels_list_during_an_open_leaves_the_channel_alone() {
    let s = swarm(1_500_000);
    let port = free_port();
    let _sp = s.sell(port, "seller.log", &["--price", PRICE]);
    let dir = s.d.path().join("m");
    let mut args = vec!["--no-trackers", "--home", s.buyer.home.to_str().unwrap()];
    let peer = format!("127.0.0.1:{port}");
    args.extend(["--peer", &peer]);
    args.extend(super::recovery::SLOW_BUY);
    let m = Mount::try_start_env(
        &dir,
        &s.torrent,
        &args,
        &[("BTT_FAILPOINT", "buyer-open-stored=pause:4000")],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let path = m.mnt.join("film.bin");
    let reader = std::thread::spawn(move || read_file_timeout(&path, Duration::from_secs(90)));
    // Inside the window: the channel is stored, its funding not broadcast.
    let mut seen = Vec::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            seen = buyer_states(&s.buyer);
            !seen.is_empty()
        }),
        "no channel stored\n{}",
        m.log()
    );
    assert!(
        m.proc
            .log_text()
            .contains("failpoint buyer-open-stored: pausing")
            && !m.log().contains("funding broadcast"),
        "not inside the window: {seen:?}\n{}\n{}",
        m.proc.log_text(),
        m.log()
    );
    assert_eq!(seen[0].1, "opening", "{seen:?}");
    let got = reader
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", m.log()));
    assert_eq!(got, std::fs::read(s.data.join("film.bin")).unwrap());
    let rows = buyer_states(&s.buyer);
    assert_eq!(
        rows.len(),
        1,
        "one channel, not a second after a failed one: {rows:?}"
    );
    assert_eq!(rows[0].1, "open", "{rows:?}\n{}", m.log());
    assert!(
        wait_until(Duration::from_secs(20), || s.buyer.channel(&rows[0].0).1
            > 0),
        "nothing paid over the channel\n{}",
        m.log()
    );
    drop(m);
}

/// The buyer's channels as (id, state), following the chain.
fn buyer_states(p: &Party) -> Vec<(String, String)> {
    p.ok(&["channels", "list"])
        .lines()
        .filter(|l| l.starts_with("buyer"))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[5].to_string(), f[1].to_string())
        })
        .collect()
}

/// A buyer's channel judged failed because its zero-conf funding left the
/// mempool is followed again: when the same funding comes back (anyone may
/// rebroadcast it) and is mined, the coins sit in the channel, so `channels
/// list` lists it open and counts what was paid over it, and the seller's
/// close on stop settles it (closed on both sides).
#[test]
fn a_failed_channel_whose_funding_comes_back_is_followed_again() {
    let s = swarm(1_500_000);
    let port = free_port();
    let mut sp = s.sell(port, "seller.log", &["--price", PRICE]);
    drop(s.buy_and_read(
        "m",
        &[port],
        &["--max-price", PRICE, "--read-timeout", "60"],
    ));
    let ch = buyer_channels(&s.buyer)[0].0.clone();
    let txid = ch.split(':').next().unwrap().to_string();
    let raw: String = s.rt.rpc("getrawtransaction", &[serde_json::json!(txid)]);
    let _: bool = s.rt.rpc("evictmempooltx", &[serde_json::json!(txid)]);
    assert_eq!(s.buyer.channel(&ch).0, "failed", "the funding is gone");
    let _: String = s.rt.rpc("sendrawtransaction", &[serde_json::json!(raw)]);
    s.rt.mine(1, BURN);
    let (state, paid, _) = s.buyer.channel(&ch);
    assert_eq!(state, "open", "the funding is back and mined");
    let o = s.buyer.cmd(&["channels", "list"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("paid {} sat as buyer", paid.div_ceil(1000))),
        "{err}"
    );
    sp.signal(libc::SIGTERM);
    sp.wait_exit(Duration::from_secs(30)).expect("seller stops");
    let close = s.seller.channel(&ch).2;
    assert_ne!(close, "-", "the seller closes the channel on stop");
    s.rt.mine(1, BURN);
    // The buyer learns the close's id from its wallet.
    s.buyer.ok(&["wallet", "sync"]);
    for p in [&s.buyer, &s.seller] {
        let (state, _, txid) = p.channel(&ch);
        assert_eq!((state.as_str(), txid.as_str()), ("closed", close.as_str()));
    }
}
