//! `btt wallet …` and `btt channels …`.
//!
//! Output is one fact per line, `key: value` or a table, so scripts and tests
//! can read it. Secrets are printed only by `wallet init` (the new mnemonic,
//! once, on stdout) and never logged.

use anyhow::{bail, Context, Result};
use btt::chain::{self, fee_rate_or, ChainBackend};
use btt::chanstore::{ChannelState, ChannelStore, Role};
use btt::config::{BackendConfig, ChannelConfig, Config, Home};
use btt::market::buyer::{self, OpenState, Session};
use btt::market::seller_node::close_channel;
use btt::pay::bitcoin::{Address, Amount, FeeRate, OutPoint};
use btt::pay::channel::Seller;
use btt::wallet::BttWallet;
use clap::{Args, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// `--home`, on the commands that use it (wallet, channels, selling,
/// buying), also accepted before the command.
#[derive(Args, Debug, Clone)]
pub struct HomeArg {
    /// btt's data directory [default: $BTT_HOME or ~/.local/share/btt].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

/// `--home` for a command with subcommands: accepted at any level below it.
#[derive(Args, Debug, Clone)]
pub struct HomeArgAll {
    /// btt's data directory [default: $BTT_HOME or ~/.local/share/btt].
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum WalletCmd {
    /// Create a wallet: a new BIP39 mnemonic (shown once) or an imported one.
    Init {
        /// bitcoin, testnet4, signet or regtest.
        #[arg(long, default_value = "bitcoin")]
        network: String,
        /// Electrum server, tcp://host:port or ssl://host:port.
        #[arg(long, conflicts_with = "rpc")]
        electrum: Option<String>,
        /// The ssl:// server's certificate (PEM), pinned: needed when it is
        /// self-signed, as most Electrum servers' are.
        #[arg(long, value_name = "FILE", requires = "electrum")]
        electrum_cert: Option<PathBuf>,
        /// Bitcoin Core JSON-RPC URL, http://host:port.
        #[arg(long)]
        rpc: Option<String>,
        /// JSON-RPC user (with --rpc-password).
        #[arg(long, default_value = "")]
        rpc_user: String,
        /// JSON-RPC password (stored in the wallet's config.toml).
        #[arg(long, default_value = "")]
        rpc_password: String,
        /// JSON-RPC cookie file (instead of a user and password).
        #[arg(long, value_name = "FILE")]
        rpc_cookie: Option<PathBuf>,
        /// Import the mnemonic from this file instead of generating one.
        #[arg(long, value_name = "FILE")]
        import: Option<PathBuf>,
        /// Seller: largest unconfirmed channel funding accepted (sat).
        #[arg(long, default_value_t = 0)]
        zero_conf_limit: u64,
        /// Seller: accepted channel lifetime from the tip, in blocks.
        #[arg(long, default_value_t = ChannelConfig::default().min_expiry_blocks)]
        min_expiry_blocks: u32,
        /// Seller: longest channel lifetime accepted, in blocks.
        #[arg(long, default_value_t = ChannelConfig::default().max_expiry_blocks)]
        max_expiry_blocks: u32,
        /// Seller: close this many blocks before a channel expires.
        #[arg(long, default_value_t = ChannelConfig::default().close_margin_blocks)]
        close_margin_blocks: u32,
        /// Buyer: lifetime of new channels, in blocks.
        #[arg(long, default_value_t = ChannelConfig::default().expiry_blocks)]
        expiry_blocks: u32,
    },
    /// A new receive address.
    Address,
    /// Sync, then show the balance.
    Balance,
    /// Sync the wallet with the chain backend.
    Sync,
    /// Send AMOUNT to ADDRESS.
    Send {
        /// A bitcoin address of the wallet's network.
        address: String,
        /// e.g. 25000sat, 25k or 0.00025BTC (a bare number is sat).
        #[arg(value_parser = btt::pay::amount::parse_sat)]
        amount: u64,
        /// Fee rate in sat/vB [default: the backend's estimate].
        #[arg(long)]
        fee_rate: Option<u64>,
    },
    /// Print the public descriptors (watch-only; no private keys).
    ExportDescriptor,
}

#[derive(Subcommand, Debug)]
pub enum ChannelsCmd {
    /// Every channel, as buyer and as seller.
    List,
    /// Open (fund) a channel with a seller reachable at ADDR.
    Open {
        /// The seller's BitTorrent address, HOST:PORT.
        addr: SocketAddr,
        /// A torrent the seller serves (the BitTorrent handshake needs one).
        #[arg(long)]
        torrent: PathBuf,
        /// Channel capacity, e.g. 100000sat or 0.001BTC.
        #[arg(long, value_parser = btt::pay::amount::parse_sat)]
        capacity: u64,
    },
    /// Pay a seller ahead of time: COUNT payments of MSAT each.
    Pay {
        /// The channel's id (see `btt channels list`).
        id: String,
        /// Each payment, in msat.
        #[arg(long)]
        msat: u64,
        /// How many payments.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Payments in flight before waiting for the seller's acks. After a
        /// crash the buyer's stored total is at most this many payments ahead
        /// of the seller's (and is re-sent on resume).
        #[arg(long, default_value_t = 1)]
        window: usize,
    },
    /// Close: a seller co-signs and broadcasts its best commitment; a buyer
    /// asks its seller to.
    Close {
        /// The channel's id (see `btt channels list`).
        id: String,
    },
    /// Buyer: reclaim a channel's funds after its expiry height.
    Refund {
        /// The channel's id (see `btt channels list`).
        id: String,
    },
}

fn backend(cfg: &Config) -> Result<Box<dyn ChainBackend>> {
    Ok(chain::connect(cfg)?)
}

pub fn wallet(home: &Home, cmd: WalletCmd) -> Result<()> {
    if let WalletCmd::Init {
        network,
        electrum,
        electrum_cert,
        rpc,
        rpc_user,
        rpc_password,
        rpc_cookie,
        import,
        zero_conf_limit,
        min_expiry_blocks,
        max_expiry_blocks,
        close_margin_blocks,
        expiry_blocks,
    } = cmd
    {
        let backend = match (electrum, rpc) {
            (Some(url), None) => {
                let cert = electrum_cert
                    .map(|c| -> Result<PathBuf> {
                        btt::chain::tls::read_pin(&c)?;
                        Ok(std::path::absolute(&c)?)
                    })
                    .transpose()?;
                BackendConfig::Electrum { url, cert }
            }
            (None, Some(url)) => BackendConfig::Rpc {
                url,
                user: rpc_user,
                password: rpc_password,
                cookie: rpc_cookie,
            },
            _ => {
                bail!("give a chain backend: --electrum tcp://HOST:PORT (or ssl://) or --rpc http://HOST:PORT")
            }
        };
        let cfg = Config {
            network,
            backend,
            channels: ChannelConfig {
                zero_conf_limit_sat: zero_conf_limit,
                min_expiry_blocks,
                max_expiry_blocks,
                close_margin_blocks,
                expiry_blocks,
                ..ChannelConfig::default()
            },
            buy: Default::default(),
        };
        let words = import
            .map(|f| {
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))
            })
            .transpose()?;
        let (w, mnemonic) = BttWallet::init(home, cfg, words.as_deref())?;
        println!("network: {}", w.network());
        println!("home: {}", home.dir.display());
        if words.is_none() {
            println!("mnemonic: {mnemonic}");
            eprintln!("Write these words down: they restore the wallet and every channel key.");
        }
        return Ok(());
    }
    let mut w = BttWallet::open(home)?;
    match cmd {
        WalletCmd::Init { .. } => unreachable!("handled above"),
        WalletCmd::Address => println!("{}", w.address()?),
        WalletCmd::Sync => {
            let b = backend(&w.config)?;
            w.sync(b.as_ref())?;
            println!("synced to height {}", w.wallet.latest_checkpoint().height());
            let store = ChannelStore::open(&home.channels_db())?;
            for c in btt::market::follow::follow(&store, b.as_ref(), Some(&w), |_| true)? {
                if c.changed {
                    println!("channel {} is now {}", c.id, state_name(&c));
                }
            }
        }
        WalletCmd::Balance => {
            let b = backend(&w.config)?;
            w.sync(b.as_ref())?;
            let bal = w.balance();
            let sat = |a: btt::pay::bitcoin::Amount| btt::cli::fmt_msat(a.to_sat() * 1000);
            println!("confirmed: {}", sat(bal.confirmed));
            println!(
                "unconfirmed: {}",
                sat(bal.trusted_pending + bal.untrusted_pending)
            );
            println!("immature: {}", sat(bal.immature));
            println!("total: {}", sat(bal.total()));
        }
        WalletCmd::Send {
            address,
            amount,
            fee_rate,
        } => {
            let to = w.check_address(
                address
                    .parse::<Address<_>>()
                    .with_context(|| format!("{address:?} is not a bitcoin address"))?,
            )?;
            let b = backend(&w.config)?;
            w.sync(b.as_ref())?;
            let rate = match fee_rate {
                Some(r) => FeeRate::from_sat_per_vb(r).context("fee rate too high")?,
                None => fee_rate_or(b.as_ref(), 6, w.config.channels.fallback_fee_rate),
            };
            let txid = w.send(b.as_ref(), to, Amount::from_sat(amount), rate)?;
            println!("{txid}");
        }
        WalletCmd::ExportDescriptor => {
            let (ext, int) = w.public_descriptors();
            println!("{ext}");
            println!("{int}");
        }
    }
    Ok(())
}

fn state_name(c: &btt::market::follow::Seen) -> String {
    let s = format!("{:?}", c.state).to_lowercase();
    match c.close_txid {
        Some(t) => format!("{s} ({t}, {} confirmation(s))", c.close_confirmations),
        None => s,
    }
}

fn parse_id(id: &str) -> Result<OutPoint> {
    id.parse::<OutPoint>()
        .with_context(|| format!("{id:?} is not a channel id (TXID:VOUT)"))
}

pub fn channels(home: &Home, cmd: ChannelsCmd) -> Result<()> {
    let mut store = ChannelStore::open(&home.channels_db())?;
    match cmd {
        ChannelsCmd::List => {
            // The chain has the last word: follow it first when reachable.
            let mut confs = std::collections::HashMap::new();
            let followed = BttWallet::open(home)
                .map_err(anyhow::Error::from)
                .and_then(|w| {
                    let b = backend(&w.config)?;
                    Ok(btt::market::follow::follow(
                        &store,
                        b.as_ref(),
                        Some(&w),
                        |_| true,
                    )?)
                });
            match followed {
                Ok(seen) => {
                    for c in seen {
                        confs.insert(c.id.clone(), c.close_confirmations);
                    }
                }
                Err(e) => eprintln!("the chain is not reachable ({e:#}): states as last recorded"),
            }
            println!("role\tstate\ttotal_msat\tcapacity_sat\texpiry\tid\tclose_txid\tclose_conf");
            let (mut earned, mut pending, mut spent) = (0u64, 0u64, 0u64);
            for r in store.list()? {
                match (r.role, r.state) {
                    (Role::Buyer, ChannelState::Failed) => {}
                    (Role::Buyer, _) => spent += r.total_msat,
                    (Role::Seller, ChannelState::Open | ChannelState::Closed) => {
                        earned += r.total_msat
                    }
                    (Role::Seller, ChannelState::Closing) => pending += r.total_msat,
                    (Role::Seller, _) => {}
                }
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    match r.role {
                        Role::Buyer => "buyer",
                        Role::Seller => "seller",
                    },
                    format!("{:?}", r.state).to_lowercase(),
                    r.total_msat,
                    r.terms.capacity_sat,
                    r.terms.expiry_height,
                    r.id,
                    r.close_txid
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    confs
                        .get(&r.id)
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".into()),
                );
            }
            eprintln!(
                "earned {} sat as seller (open channels and confirmed closes; {} sat more in closes not yet confirmed), paid {} sat as buyer",
                earned / 1000,
                pending / 1000,
                spent.div_ceil(1000)
            );
            return Ok(());
        }
        ChannelsCmd::Open {
            addr,
            torrent,
            capacity,
        } => {
            let meta = btt::mount::load_torrent(&torrent)?;
            let mut w = BttWallet::open(home)?;
            let b = backend(&w.config)?;
            w.sync(b.as_ref())?;
            let o =
                buyer::open_channel(&mut w, &store, b.as_ref(), addr, meta.info_hash.0, capacity)?;
            println!("channel: {}", o.id);
            match o.state {
                OpenState::Ready => println!("state: ready"),
                OpenState::Pending { have, need } => {
                    println!("state: pending ({have}/{need} confirmations)")
                }
            }
        }
        ChannelsCmd::Pay {
            id,
            msat,
            count,
            window,
        } => {
            parse_id(&id)?;
            let w = BttWallet::open(home)?;
            let b = backend(&w.config)?;
            let mut s = Session::resume(&w, &mut store, b.as_ref(), &id)?;
            let total = s.pay(&mut store, msat, count, window)?;
            println!("total_msat: {total}");
        }
        ChannelsCmd::Close { id } => {
            parse_id(&id)?;
            let r = store.get(&id)?;
            let w = BttWallet::open(home)?;
            let b = backend(&w.config)?;
            let txid = match r.role {
                Role::Seller => {
                    if !matches!(r.state, ChannelState::Open | ChannelState::Closing) {
                        bail!("channel {id} is {:?}", r.state);
                    }
                    let p = r.payment();
                    let seller = Seller::resume(r.terms, w.node_key(), p)?;
                    close_channel(&store, b.as_ref(), &seller)?
                }
                Role::Buyer => Session::resume(&w, &mut store, b.as_ref(), &id)?.close(&store)?,
            };
            println!("close_txid: {txid}");
        }
        ChannelsCmd::Refund { id } => {
            parse_id(&id)?;
            let w = BttWallet::open(home)?;
            let b = backend(&w.config)?;
            let txid = buyer::refund(&w, &store, b.as_ref(), &id)?;
            println!("refund_txid: {txid}");
        }
    }
    Ok(())
}

/// A running seller: the node answering `btt_pay` and its chain watcher.
pub struct Selling {
    pub node: std::sync::Arc<btt::market::seller_node::SellerNode>,
    watcher: std::thread::JoinHandle<()>,
}

pub fn start_selling(
    home: &Home,
    price: btt::pay::price::Price,
    credit: u64,
    free_peers: btt::market::seller_node::FreePeers,
    interval: std::time::Duration,
    zero_conf_timeout_blocks: u32,
) -> Result<Selling> {
    let w = BttWallet::open(home)?;
    let b: std::sync::Arc<dyn ChainBackend> = std::sync::Arc::from(backend(&w.config)?);
    let store = ChannelStore::open(&home.channels_db())?;
    let node = std::sync::Arc::new(
        btt::market::seller_node::SellerNode::new(w, store, b, price, credit, free_peers)?
            .with_zero_conf_timeout(zero_conf_timeout_blocks),
    );
    let n = node.clone();
    // Every interval, and whenever an unconfirmed channel asks: channels
    // nearing expiry are closed, unconfirmed fundings checked.
    let watcher = std::thread::spawn(move || {
        use btt::market::seller_node::Wake;
        let mut wake = Wake::Due;
        loop {
            if wake == Wake::Due {
                if let Err(e) = n.close_expiring() {
                    tracing::warn!(error = %e, "expiry check failed");
                }
            }
            if let Err(e) = n.watch_fundings() {
                tracing::warn!(error = %e, "funding check failed");
            }
            if wake == Wake::Due {
                if let Err(e) = n.follow_chain() {
                    tracing::warn!(error = %e, "following channels on chain failed");
                }
            }
            wake = n.wait_for_check(interval);
            if wake == Wake::Stop {
                break;
            }
        }
    });
    eprintln!(
        "selling at {price} (credit {credit} bytes) as node {}",
        node.info().node_key
    );
    Ok(Selling { node, watcher })
}

impl Selling {
    pub fn stop(self, close: bool) {
        self.node.stop_watching();
        let _ = self.watcher.join();
        if close {
            let n = self.node.close_all();
            eprintln!("closed {n} channel(s)");
        }
    }
}
