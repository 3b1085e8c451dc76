//! A real regtest chain for the payment tests: bcoin (tests/regtest/bcoin-node.js,
//! which makes it answer like Bitcoin Core) and, for the Electrum backend,
//! ElectrumX in front of it. Both on 127.0.0.1, killed on Drop. `tests/run.sh`
//! installs them (npm, a Python venv).

#![allow(dead_code)]

use crate::harness::*;
use bdk_bitcoind_rpc::bitcoincore_rpc::{self, Auth, RpcApi};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `btt wallet init` policy for sellers in tests: any unconfirmed funding up
/// to 0.01 BTC, channels from 10 blocks.
pub const SELLER: &[&str] = &["--zero-conf-limit", "1000000", "--min-expiry-blocks", "10"];
/// Buyers ask for 40-block channels.
pub const BUYER: &[&str] = &["--expiry-blocks", "40"];

/// Never spendable: coinbase rewards we do not want land here.
pub const BURN: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Electrum,
    Rpc,
}

pub struct Regtest {
    pub dir: tempfile::TempDir,
    pub rpc_port: u16,
    pub electrum_port: Option<u16>,
    /// ElectrumX's TLS port and its self-signed certificate (PEM).
    pub electrum_ssl: Option<(u16, PathBuf)>,
    pub client: bitcoincore_rpc::Client,
    _electrumx: Option<Proc>,
    _node: Proc,
}

fn regtest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regtest")
}

pub const API_KEY: &str = "btt-test";

impl Regtest {
    pub fn start(backend: Backend) -> Regtest {
        let rd = regtest_dir();
        assert!(
            rd.join("node_modules/bcoin").exists(),
            "bcoin is not installed in tests/regtest (run tests/run.sh, which runs npm ci there)"
        );
        let dir = tmpdir();
        let rpc_port = free_port();
        let node = Proc::spawn(
            "bcoin",
            Command::new("node").arg(rd.join("bcoin-node.js")).args([
                "--http-host=127.0.0.1".to_string(),
                format!("--http-port={rpc_port}"),
                format!("--api-key={API_KEY}"),
                "--no-wallet=true".into(),
                "--index-tx=true".into(),
            ]),
            &dir.path().join("bcoin.log"),
        );
        let url = format!("http://127.0.0.1:{rpc_port}/");
        let client = bitcoincore_rpc::Client::new(&url, Auth::UserPass("x".into(), API_KEY.into()))
            .expect("rpc client");
        assert!(
            wait_until(Duration::from_secs(30), || client
                .call::<u64>("getblockcount", &[])
                .is_ok()),
            "bcoin did not answer: {}",
            node.log_text()
        );
        let mut rt = Regtest {
            dir,
            rpc_port,
            electrum_port: None,
            electrum_ssl: None,
            client,
            _electrumx: None,
            _node: node,
        };
        // Segwit activates by BIP9 at height 432 on regtest.
        rt.mine(440, BURN);
        if backend == Backend::Electrum {
            let port = free_port();
            let db = rt.dir.path().join("electrumx");
            std::fs::create_dir_all(&db).unwrap();
            let py = rd.join(".venv/bin/python3");
            assert!(py.exists(), "ElectrumX venv missing (run tests/run.sh)");
            let ssl_port = free_port();
            let cert = rt.dir.path().join("electrumx-cert.pem");
            let key = rt.dir.path().join("electrumx-key.pem");
            self_signed(&cert, &key);
            let p = Proc::spawn(
                "electrumx",
                Command::new(py)
                    .arg(rd.join("run_electrumx.py"))
                    .env("COIN", "Bitcoin")
                    .env("NET", "regtest")
                    .env(
                        "DAEMON_URL",
                        format!("http://x:{API_KEY}@127.0.0.1:{rpc_port}/"),
                    )
                    .env("DB_ENGINE", "leveldb")
                    .env("DB_DIRECTORY", &db)
                    .env(
                        "SERVICES",
                        format!("tcp://127.0.0.1:{port},ssl://127.0.0.1:{ssl_port}"),
                    )
                    .env("SSL_CERTFILE", &cert)
                    .env("SSL_KEYFILE", &key)
                    .env("PEER_DISCOVERY", "off")
                    .env("PEER_ANNOUNCE", "")
                    .env("ALLOW_ROOT", "1")
                    .env("DAEMON_POLL_INTERVAL_BLOCKS", "100")
                    .env("DAEMON_POLL_INTERVAL_MEMPOOL", "100")
                    .env("LOG_LEVEL", "warning"),
                &rt.dir.path().join("electrumx.log"),
            );
            wait_addr("127.0.0.1", port, Duration::from_secs(60));
            wait_addr("127.0.0.1", ssl_port, Duration::from_secs(60));
            rt.electrum_port = Some(port);
            rt.electrum_ssl = Some((ssl_port, cert));
            rt._electrumx = Some(p);
            rt.wait_indexed();
        }
        rt
    }

    pub fn rpc<T: serde::de::DeserializeOwned>(&self, method: &str, args: &[Value]) -> T {
        let mut tries = 0;
        loop {
            match self.client.call(method, args) {
                Ok(v) => return v,
                // The client reuses its connection, which bcoin may have
                // closed meanwhile (reset on the next request: seen once
                // from a fresh clone); such a request never reached bcoin,
                // so it is sent again on a new connection.
                Err(e) if tries < 3 && e.to_string().contains("transport error") => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("{method}: {e}"),
            }
        }
    }

    pub fn height(&self) -> u32 {
        self.rpc::<u64>("getblockcount", &[]) as u32
    }

    /// Mines `n` blocks paying `addr`, then waits for the Electrum index.
    pub fn mine(&self, n: u32, addr: &str) {
        // bcoin mines slowly in big batches; keep each call short.
        let mut left = n;
        while left > 0 {
            let k = left.min(200);
            let _: Value = self.rpc("generatetoaddress", &[json!(k), json!(addr)]);
            left -= k;
        }
        self.wait_indexed();
    }

    /// Mines up to height `h`.
    pub fn mine_to(&self, h: u32) {
        let now = self.height();
        if h > now {
            self.mine(h - now, BURN);
        }
    }

    /// Waits until ElectrumX has indexed the node's tip and mempool.
    pub fn wait_indexed(&self) {
        let Some(port) = self.electrum_port else {
            return;
        };
        let want = self.height();
        let ok = wait_until(Duration::from_secs(30), || {
            electrum_height(port).is_some_and(|h| h >= want)
        });
        assert!(ok, "ElectrumX did not reach height {want}");
        // Mempool polling runs on its own 100 ms timer.
        std::thread::sleep(Duration::from_millis(400));
    }

    pub fn tx(&self, txid: &str) -> Value {
        self.rpc("getrawtransaction", &[json!(txid), json!(true)])
    }

    pub fn confirmations(&self, txid: &str) -> i64 {
        self.client
            .call::<Value>("getrawtransaction", &[json!(txid), json!(true)])
            .ok()
            .and_then(|v| v["confirmations"].as_i64())
            .unwrap_or(-1)
    }

    /// Arguments for `btt wallet init` using this chain.
    pub fn init_args(&self, backend: Backend) -> Vec<String> {
        let mut a = vec!["--network".to_string(), "regtest".into()];
        match backend {
            Backend::Electrum => {
                a.push("--electrum".into());
                a.push(format!(
                    "tcp://127.0.0.1:{}",
                    self.electrum_port.expect("electrum started")
                ));
            }
            Backend::Rpc => {
                a.push("--rpc".into());
                a.push(format!("http://127.0.0.1:{}", self.rpc_port));
                a.push("--rpc-user".into());
                a.push("x".into());
                a.push("--rpc-password".into());
                a.push(API_KEY.into());
            }
        }
        a
    }
}

/// A self-signed certificate for 127.0.0.1, as a server operator makes one.
pub fn self_signed(cert: &Path, key: &Path) {
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=electrum.test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(
        o.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn electrum_height(port: u16) -> Option<u32> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"{\"id\":1,\"method\":\"blockchain.headers.subscribe\",\"params\":[]}\n")
        .ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    v["result"]["height"].as_u64().map(|h| h as u32)
}

/// A btt home directory (wallet + channels), driven through the `btt` binary.
pub struct Party {
    pub home: PathBuf,
    _dir: tempfile::TempDir,
}

impl Party {
    pub fn new(rt: &Regtest, backend: Backend, extra: &[&str]) -> Party {
        let dir = tmpdir();
        let home = dir.path().join("home");
        let mut args = vec!["wallet".to_string(), "init".into()];
        let mut base = rt.init_args(backend);
        if extra.contains(&"--network") {
            base.drain(..2);
        } else if extra.contains(&"--electrum") {
            base.truncate(2);
        }
        args.extend(base);
        args.extend(extra.iter().map(|s| s.to_string()));
        let p = Party { home, _dir: dir };
        p.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        p
    }

    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(BTT)
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run btt")
    }

    /// Runs `btt ARGS`, panics unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            o.status.success(),
            "btt {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `btt ARGS`, panics if it succeeds; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.cmd(args);
        assert!(
            !o.status.success(),
            "btt {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// `key: value` from a command's output.
    pub fn field(out: &str, key: &str) -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no {key:?} in {out}"))
            .trim()
            .to_string()
    }

    pub fn address(&self) -> String {
        self.ok(&["wallet", "address"]).trim().to_string()
    }

    /// (confirmed, unconfirmed) sat after a sync (printed with their unit).
    pub fn balance(&self) -> (u64, u64) {
        let out = self.ok(&["wallet", "balance"]);
        let sat = |f: &str| {
            let v = Self::field(&out, f);
            v.strip_suffix(" sat")
                .unwrap_or_else(|| panic!("{f} without its unit: {out}"))
                .parse()
                .unwrap()
        };
        (sat("confirmed"), sat("unconfirmed"))
    }

    /// One channel's row from `btt channels list`: (state, total_msat, close_txid).
    pub fn channel(&self, id: &str) -> (String, u64, String) {
        let out = self.ok(&["channels", "list"]);
        let row = out
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no channel {id} in\n{out}"));
        let f: Vec<&str> = row.split('\t').collect();
        (f[1].to_string(), f[2].parse().unwrap(), f[6].to_string())
    }

    pub fn open(&self, seller: u16, torrent: &Path, capacity: u64) -> (String, String) {
        let out = self.ok(&[
            "channels",
            "open",
            &format!("127.0.0.1:{seller}"),
            "--torrent",
            torrent.to_str().unwrap(),
            "--capacity",
            &capacity.to_string(),
        ]);
        (Self::field(&out, "channel"), Self::field(&out, "state"))
    }

    pub fn pay(&self, id: &str, msat: u64, count: u64) -> u64 {
        let out = self.ok(&[
            "channels",
            "pay",
            id,
            "--msat",
            &msat.to_string(),
            "--count",
            &count.to_string(),
        ]);
        Self::field(&out, "total_msat").parse().unwrap()
    }

    /// `btt seed --sell` for `torrent` on `port`.
    pub fn sell(&self, torrent: &Path, data: &Path, port: u16, log: &Path) -> Proc {
        self.sell_with(torrent, data, port, log, &[])
    }

    pub fn sell_with(
        &self,
        torrent: &Path,
        data: &Path,
        port: u16,
        log: &Path,
        extra: &[&str],
    ) -> Proc {
        self.sell_at("127.0.0.1", torrent, data, port, log, extra)
    }

    /// [`Party::sell_with`] listening on `ip` (a peer banned by address
    /// must not share it with the honest ones).
    pub fn sell_at(
        &self,
        ip: &str,
        torrent: &Path,
        data: &Path,
        port: u16,
        log: &Path,
        extra: &[&str],
    ) -> Proc {
        let p = Proc::spawn(
            "btt seed --sell",
            Command::new(BTT)
                .arg("--home")
                .arg(&self.home)
                .args(["seed", torrent.to_str().unwrap(), "--data"])
                .arg(data)
                .args([
                    "--listen",
                    &format!("{ip}:{port}"),
                    "--no-trackers",
                    "--sell",
                    "--watch-interval",
                    "1",
                ])
                .args(extra),
            log,
        );
        wait_addr(ip, port, Duration::from_secs(20));
        p
    }
}

/// Funds `p` with `blocks` coinbase rewards, matured.
pub fn fund(rt: &Regtest, p: &Party, blocks: u32) {
    let a = p.address();
    rt.mine(blocks, &a);
    rt.mine(100, BURN);
}

/// A small torrent and its content for sellers to serve.
pub fn content(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    make_tree(&data, &[("paid.bin", 300_000)]);
    let t = make_torrent(&data.join("paid.bin"), 16384, &[]);
    (t, data)
}
