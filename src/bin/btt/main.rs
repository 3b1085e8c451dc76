//! `btt`: seed (and sell), create, demo, wallet, channels.

mod money;

use anyhow::{Context, Result};
use btt::cli::{init_logging, PeerArgs};
use btt::create::{create_torrent, CreateOptions, Format};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "btt",
    version,
    about = "Stream torrents through a filesystem; seed and create torrents"
)]
struct Cli {
    /// More log detail.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Print nothing but errors (for scripts): no status lines, no progress bar.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(flatten)]
    home: money::HomeArg,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve torrents' data to peers (free, or sold with --price).
    Seed {
        /// The .torrent file(s) or magnet links, all served on the one --listen port.
        #[arg(required = true)]
        torrents: Vec<PathBuf>,
        /// Directory holding the content (DIR/<name>…).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        #[command(flatten)]
        peers: PeerArgs,
        #[command(flatten)]
        sell: SellArgs,
        /// Serve the data without hashing it first (you vouch for it).
        #[arg(long)]
        seed_unverified: bool,
        #[command(flatten)]
        home: money::HomeArg,
    },
    /// Fetch a whole torrent into DIR (resumable), buying from sellers when
    /// free peers cannot deliver.
    Get {
        /// The .torrent file, a magnet link (quote it), or a file holding one.
        torrent: PathBuf,
        /// Where the content goes (DIR/<name>…).
        dir: PathBuf,
        #[command(flatten)]
        peers: PeerArgs,
        /// Buy from sellers asking at most this, e.g. 2000sat/GiB.
        #[arg(long, value_name = "PRICE")]
        max_price: Option<btt::pay::price::Price>,
        /// Pay at most this much, e.g. 20000sat, 20k, 11718750msat or 0.0002BTC.
        #[arg(long, value_name = "AMOUNT", value_parser = btt::pay::amount::parse_msat)]
        budget: Option<u64>,
        /// Capacity of channels opened with sellers, e.g. 100000sat or 0.001BTC.
        #[arg(long, value_name = "SAT", value_parser = btt::pay::amount::parse_sat)]
        channel_size: Option<u64>,
        /// Once the budget is spent, give up after this many seconds without progress.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        give_up_after: u64,
        /// Replace files in DIR whose content differs from the torrent's
        /// (without it such files are left alone and the command stops).
        #[arg(long)]
        overwrite: bool,
        /// Fetch only the files whose path in the torrent matches this glob
        /// (repeatable), e.g. '*.mkv' or 'Season 1/*' [default: every file,
        /// or those a magnet's so= names].
        #[arg(long, value_name = "GLOB")]
        only: Vec<String>,
        #[command(flatten)]
        home: money::HomeArg,
    },
    /// Add a torrent to a running library mount (btt-mount --library).
    Add {
        /// The .torrent file, a magnet link (quote it), or a file holding one.
        torrent: String,
        /// The library's mount point [default: the only running library].
        #[arg(long, value_name = "MNT")]
        library: Option<PathBuf>,
    },
    /// What every running mount, seller and `btt get` is doing.
    Status {
        /// Print JSON: per torrent, the object its web API gives (or, where
        /// the API is out of reach, what its status file holds).
        #[arg(long)]
        json: bool,
        /// Redraw once a second until Ctrl-C.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Check what mounting, downloading and selling need here (FUSE, the
    /// data dir, the wallet's server), one line per check with its fix.
    Doctor {
        /// The data dir btt-mount will use [default: its default].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        home: money::HomeArg,
    },
    /// The on-chain wallet.
    Wallet {
        #[command(subcommand)]
        cmd: money::WalletCmd,
        #[command(flatten)]
        home: money::HomeArgAll,
    },
    /// Payment channels, as buyer and seller.
    Channels {
        #[command(subcommand)]
        cmd: money::ChannelsCmd,
        #[command(flatten)]
        home: money::HomeArgAll,
    },
    /// Make a .torrent from a file or directory.
    Create {
        /// File or directory to share.
        path: PathBuf,
        /// Output .torrent file [default: <name>.torrent].
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Piece size, a power of two ≥ 16KiB [default: chosen from the size].
        #[arg(long, value_parser = btt::cli::parse_bytes)]
        piece_size: Option<u64>,
        /// Tracker URL (repeatable; each becomes its own tier).
        #[arg(short, long = "tracker")]
        trackers: Vec<String>,
        /// Mark the torrent private (BEP 27).
        #[arg(long)]
        private: bool,
        /// A free-text comment stored in the torrent (clients show it).
        #[arg(long)]
        comment: Option<String>,
        /// A v2 torrent (BEP 52: SHA-256 merkle hashes; read by libtorrent
        /// 2 / qBittorrent 4.4 and later, not by v1-only clients).
        #[arg(long, conflicts_with = "hybrid")]
        v2: bool,
        /// A hybrid torrent: v1 and v2 hashes, read by every client.
        #[arg(long)]
        hybrid: bool,
    },
    /// Run a BitTorrent tracker (HTTP and UDP announces on one address).
    Tracker {
        /// Address for both HTTP (http://ADDR/announce) and UDP (udp://ADDR).
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6969")]
        listen: std::net::SocketAddr,
        /// Track only the info-hashes in FILE (40 hex digits per line).
        #[arg(long, value_name = "FILE")]
        allow: Option<PathBuf>,
        /// Seconds peers are asked to wait between announces; a peer is
        /// forgotten after two.
        #[arg(long, value_name = "SECS", default_value_t = 1800)]
        interval: u64,
        /// Peers kept in all (memory: about 100 bytes each).
        #[arg(long, value_name = "N", default_value_t = 1_000_000)]
        max_peers: usize,
    },
    /// Write man pages and shell completions for btt and btt-mount (packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Output directory (man/ and completions/ are created in it).
        out: PathBuf,
    },
    /// Generate a sample video, seed it on 127.0.0.1 and mount it.
    Demo {
        /// Working directory for the sample and torrent.
        #[arg(long, default_value = "/tmp/btt-demo")]
        dir: PathBuf,
        /// Mount point [default: <dir>/mnt].
        #[arg(long)]
        mountpoint: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum FreePeersArg {
    Serve,
    Choke,
}

#[derive(clap::Args, Debug)]
struct SellArgs {
    /// Sell: accept payment channels (btt_pay) from buyers, using the wallet
    /// in --home, at --price (default 1000sat/GiB).
    #[arg(long)]
    sell: bool,
    /// Sell at this price, e.g. 2000sat/GiB, 3sat/MiB, 500msat/MiB (implies --sell).
    #[arg(long, value_name = "PRICE")]
    price: Option<btt::pay::price::Price>,
    /// Bytes served to a buyer beyond what it has paid for: the seller's
    /// risk per channel (16 MiB at 1000sat/GiB is 16 sat, less than the fee
    /// of the funding a cheater must pay for each new channel). A buyer keeps
    /// at most this much requested-but-unpaid, so less credit means less
    /// throughput: it must cover the payment round trip at full speed.
    #[arg(long, default_value = "16MiB", value_parser = btt::cli::parse_bytes)]
    credit: u64,
    /// Peers that do not pay (no btt_pay extension): serve them free, or choke them.
    #[arg(long, value_enum, default_value = "serve")]
    free_peers: FreePeersArg,
    /// Seconds between checks of the channels on chain: expiry near, and
    /// unconfirmed fundings still in place (also checked each time half the
    /// credit is served on an unconfirmed channel).
    #[arg(long, default_value_t = 30)]
    watch_interval: u64,
    /// Blocks an unconfirmed (zero-conf) channel is served at all; after
    /// that it is served again only from a new, confirmed channel (0: no limit).
    #[arg(long, default_value_t = 6)]
    zero_conf_timeout_blocks: u32,
    /// Leave channels open on stop (default: close every paid channel).
    #[arg(long)]
    keep_channels_open: bool,
}

fn doctor(data_dir: Option<PathBuf>, home: btt::config::Home) -> Result<()> {
    use btt::doctor::{Outcome, Places};
    let places = Places {
        fuse_dev: "/dev/fuse".into(),
        fuse_conf: "/etc/fuse.conf".into(),
        data_dir: data_dir.unwrap_or_else(btt::mount::default_data_dir),
        home,
    };
    let checks = btt::doctor::run(&places);
    for c in &checks {
        let tag = match c.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Note => "note",
            Outcome::Fail => "FAIL",
        };
        println!("{tag}  {}: {}", c.name, c.found);
        if let Some(fix) = &c.fix {
            println!("      fix: {fix}");
        }
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} checks failed (see the fix under each)",
            checks.len()
        );
    }
    Ok(())
}

/// Errors are the user's to act on: one short text, each cause once, no
/// backtrace (whatever `RUST_BACKTRACE` says).
fn main() -> std::process::ExitCode {
    btt::cli::exit_code(real_main().map_err(|e| e.chain().map(|c| c.to_string()).collect()))
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    btt::engine::limit_connections_to_fds();
    if matches!(cli.cmd, Cmd::Get { .. }) {
        // A download, like a mount (see `btt::memory`); a seeder reads whole
        // pieces for upload and is faster with glibc's defaults.
        btt::memory::tune_allocator();
    }
    init_logging(cli.verbose, cli.quiet, None);
    // The command's own --home, else the one before the command.
    let top = cli.home.home;
    let home = |own: Option<PathBuf>| btt::config::Home::locate(own.or(top.clone()).as_deref());
    match cli.cmd {
        Cmd::Seed {
            torrents,
            data,
            peers,
            sell,
            seed_unverified,
            home: own,
        } => {
            let home = home(own.home);
            let mut engine = peers.engine(false);
            engine.role = if sell.sell || sell.price.is_some() {
                "sell".into()
            } else {
                "seed".into()
            };
            let seller = if sell.sell || sell.price.is_some() {
                Some(money::start_selling(
                    &home,
                    sell.price
                        .unwrap_or(btt::pay::price::Price::msat_per_gib(1_000_000)),
                    sell.credit,
                    match sell.free_peers {
                        FreePeersArg::Serve => btt::market::seller_node::FreePeers::Serve,
                        FreePeersArg::Choke => btt::market::seller_node::FreePeers::Choke,
                    },
                    std::time::Duration::from_secs(sell.watch_interval.max(1)),
                    sell.zero_conf_timeout_blocks,
                )?)
            } else {
                None
            };
            if let Some(s) = &seller {
                engine.pay = Some(btt::engine::PayHookRef(s.node.clone()));
            }
            let cfg = btt::seed::SeedConfig {
                torrents,
                metadata_timeout: std::time::Duration::from_secs_f64(
                    peers.metadata_timeout.max(1.0),
                ),
                data,
                engine,
                unverified: seed_unverified,
                credit: seller.as_ref().map(|_| sell.credit),
                web: peers.web(),
            };
            let res = btt::seed::run(cfg, |addr, have, total| {
                if !cli.quiet {
                    eprintln!("seeding {have}/{total} pieces on {addr}");
                }
            });
            if let Some(s) = seller {
                s.stop(!sell.keep_channels_open);
            }
            res?;
        }
        Cmd::Tracker {
            listen,
            allow,
            interval,
            max_peers,
        } => tracker(listen, allow, interval, max_peers)?,
        Cmd::GenerateDocs { out } => generate_docs(&out)?,
        Cmd::Get {
            torrent,
            dir,
            peers,
            max_price,
            budget,
            channel_size,
            give_up_after,
            overwrite,
            only,
            home: own,
        } => get(
            &home(own.home),
            torrent,
            dir,
            peers,
            (max_price, budget, channel_size),
            cli.quiet,
            (give_up_after, overwrite, only),
        )?,
        Cmd::Add { torrent, library } => add(&torrent, library.as_deref())?,
        Cmd::Status { json, watch } => match (json, watch) {
            (true, _) => status_json()?,
            (false, true) => loop {
                // Home, clear, then the same lines as once.
                print!("\x1b[H\x1b[2J");
                status();
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            (false, false) => status(),
        },
        Cmd::Doctor {
            data_dir,
            home: own,
        } => doctor(data_dir, home(own.home))?,
        Cmd::Wallet { cmd, home: own } => money::wallet(&home(own.home), cmd)?,
        Cmd::Channels { cmd, home: own } => money::channels(&home(own.home), cmd)?,
        Cmd::Create {
            path,
            output,
            piece_size,
            trackers,
            private,
            comment,
            v2,
            hybrid,
        } => {
            let opts = CreateOptions {
                piece_length: piece_size,
                trackers: trackers.into_iter().map(|t| vec![t]).collect(),
                private,
                comment,
                format: match (v2, hybrid) {
                    (true, _) => Format::V2,
                    (_, true) => Format::Hybrid,
                    _ => Format::V1,
                },
            };
            let bytes = create_torrent(&path, &opts)?;
            let meta = btt::metainfo::Metainfo::from_bytes(&bytes)?;
            let out = output.unwrap_or_else(|| PathBuf::from(format!("{}.torrent", meta.name)));
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} {} ({} pieces of {})\n{}",
                meta.info_hash,
                out.display(),
                meta.num_pieces(),
                btt::cli::fmt_bytes(meta.piece_length),
                meta.magnet()
            );
        }
        Cmd::Demo { dir, mountpoint } => {
            let exe = std::env::current_exe()?;
            eprintln!("preparing the sample video in {} (ffmpeg)…", dir.display());
            let prep = btt::demo::prepare(&exe, &dir)?;
            let mnt = mountpoint.unwrap_or_else(|| dir.join("mnt"));
            std::fs::create_dir_all(&mnt)?;
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let cfg = btt::mount::MountConfig {
                torrent: prep.torrent.clone(),
                metadata_timeout: std::time::Duration::from_secs(300),
                mountpoint: mnt.clone(),
                data_dir: dir.join("data"),
                cache_size: 32 << 20,
                keep: false,
                read_timeout: None,
                max_files: 1_000_000,
                engine: btt::engine::EngineConfig {
                    listen: "127.0.0.1:0".parse()?,
                    peers: vec![prep.seeder_addr],
                    use_trackers: false,
                    // Listed by `btt status` like any mount.
                    role: format!("mount {}", mnt.display()),
                    ..Default::default()
                },
                // Root's mount is readable by the user a player runs as.
                fuse_options: match root {
                    true => vec!["allow_other".into()],
                    false => vec![],
                },
                web: Some(btt::web::WebConfig {
                    listen: "127.0.0.1:0".parse()?,
                    token: None,
                }),
            };
            let name = prep.video_name.clone();
            btt::mount::run(cfg, |m| {
                println!("{}", btt::demo::play_lines(&m.mountpoint.join(&name), root));
                if let Some(url) = &m.web {
                    println!("its live page: {url}");
                }
            })?;
            drop(prep);
        }
    }
    Ok(())
}

/// Man pages (one per command and subcommand) and completions, rendered from
/// the same clap definitions the binaries parse with.
fn generate_docs(out: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    let man = out.join("man");
    let comp = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    for mut cmd in [Cli::command(), btt::cli::MountCli::command()] {
        cmd.build();
        write_man(&cmd, &man, cmd.get_name().to_string())?;
        let name = cmd.get_name().to_string();
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            clap_complete::generate_to(shell, &mut cmd, &name, &comp)?;
        }
    }
    Ok(())
}

fn write_man(cmd: &clap::Command, dir: &std::path::Path, name: String) -> Result<()> {
    if cmd.is_hide_set() || cmd.get_name() == "help" {
        return Ok(());
    }
    let cmd = cmd.clone().name(name.clone());
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    for sub in cmd.get_subcommands() {
        write_man(sub, dir, format!("{name}-{}", sub.get_name()))?;
    }
    Ok(())
}

type BuyFlags = (Option<btt::pay::price::Price>, Option<u64>, Option<u64>);

/// `btt tracker`: serves until Ctrl-C or SIGTERM.
fn tracker(
    listen: std::net::SocketAddr,
    allow: Option<PathBuf>,
    interval: u64,
    max_peers: usize,
) -> Result<()> {
    use btt::tracker::server;
    let allow = allow.map(|p| server::read_allow_list(&p)).transpose()?;
    let cfg = server::ServerConfig {
        listen,
        limits: server::table::Limits {
            interval: std::time::Duration::from_secs(interval.max(10)),
            max_peers,
            ..Default::default()
        },
        allow,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(server::serve(
        cfg,
        |addr| {
            if !btt::cli::quiet() {
                eprintln!("tracker on http://{addr}/announce and udp://{addr}");
            }
        },
        async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        },
    ))?;
    Ok(())
}

fn get(
    home: &btt::config::Home,
    torrent: PathBuf,
    dir: PathBuf,
    peers: PeerArgs,
    (max_price, budget, channel_size): BuyFlags,
    quiet: bool,
    (give_up_after, overwrite, only): (u64, bool, Vec<String>),
) -> Result<()> {
    let buyer = btt::market::buying::buy_config(Some(&home.dir), max_price, budget, channel_size)
        .map_err(anyhow::Error::msg)?
        .map(|c| std::sync::Arc::new(btt::market::buying::BuyerAgent::new(c)));
    let bar = indicatif::ProgressBar::new(0);
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        btt::cli::log_above(&bar);
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("template"),
    );
    let cfg = btt::get::GetConfig {
        torrent,
        metadata_timeout: std::time::Duration::from_secs_f64(peers.metadata_timeout.max(1.0)),
        dir: dir.clone(),
        engine: {
            let mut e = peers.engine(true);
            e.role = format!("get {}", dir.display());
            e
        },
        buyer,
        stall: std::time::Duration::from_secs(give_up_after),
        overwrite,
        only,
        web: peers.web(),
    };
    let paying = cfg.buyer.is_some();
    let mut spent = 0;
    let r = btt::get::run(cfg, |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
        spent = p.spent_msat;
        if paying && spent > 0 {
            bar.set_message(format!("{} spent", btt::cli::fmt_msat(p.spent_msat)));
        }
    });
    // Interrupted or failed: the bar stays where the download was.
    if r.is_ok() {
        bar.finish();
    } else {
        bar.abandon();
    }
    if spent > 0 && !quiet {
        eprintln!("paid {} in this run", btt::cli::fmt_msat(spent));
    }
    r?;
    Ok(())
}

/// `btt add`: finds the running library (its status file names its web
/// page) and posts the torrent to its API.
fn add(torrent: &str, library: Option<&std::path::Path>) -> Result<()> {
    use btt::engine::status;
    let body = match torrent.starts_with("magnet:") {
        true => torrent.as_bytes().to_vec(),
        false => std::fs::read(torrent).with_context(|| format!("reading {torrent}"))?,
    };
    let want = library.map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
    let libs: Vec<status::Report> = status::read_all()
        .into_iter()
        .filter(|r| r.info_hash == btt::library::LIBRARY_STATUS)
        .filter(|r| {
            let at = r.role.strip_prefix("library ").unwrap_or("");
            let at = std::fs::canonicalize(at).unwrap_or_else(|_| at.into());
            want.as_ref().is_none_or(|w| *w == at)
        })
        .collect();
    let lib = match libs.as_slice() {
        [one] => one,
        [] => anyhow::bail!(
            "no library mount is running{}: start one with `btt-mount --library MNT`",
            library
                .map(|l| format!(" at {}", l.display()))
                .unwrap_or_default()
        ),
        _ => anyhow::bail!(
            "{} libraries are running: say which with --library MNT",
            libs.len()
        ),
    };
    let Some(http) = lib.http.as_deref() else {
        anyhow::bail!(
            "the library at {} has no web API (started with --no-http)",
            lib.role.trim_start_matches("library ")
        );
    };
    let (base, needs_token) = match http.split_once(' ') {
        Some((u, _)) => (u, true),
        None => (http, false),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut req = client.post(format!("{base}api/v1/torrents")).body(body);
    if needs_token {
        let token = std::env::var("BTT_HTTP_TOKEN").context(
            "the library's page needs its token: set BTT_HTTP_TOKEN to the one it printed",
        )?;
        req = req.bearer_auth(token);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (code, text) = rt.block_on(async {
        let resp = req.send().await?;
        let code = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((code, text))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if !code.is_success() {
        anyhow::bail!(
            "the library refused it: {}",
            v["error"].as_str().unwrap_or(&text)
        );
    }
    if !btt::cli::quiet() {
        println!(
            "added {} to the library at {}",
            v["info_hash"].as_str().unwrap_or("?"),
            lib.role.trim_start_matches("library ")
        );
    }
    Ok(())
}

/// `btt status --json`: what each torrent's web API says, fetched from
/// the process (one GET each, 2 s at most); the status file where the API
/// is off, needs a token, or does not answer.
fn status_json() -> Result<()> {
    use btt::engine::status;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Fails only if a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(2))
        .build()?;
    let mut out = Vec::new();
    for r in status::read_all() {
        let api = r
            .http
            .as_deref()
            .filter(|u| !u.contains(' '))
            .map(|u| format!("{}api/v1/torrents/{}", u, r.info_hash));
        let view = api.and_then(|url| {
            rt.block_on(async {
                let resp = client.get(&url).send().await.ok()?;
                let body = resp.bytes().await.ok()?;
                serde_json::from_slice::<serde_json::Value>(&body).ok()
            })
        });
        let mut v = match view {
            Some(v) => v,
            None => serde_json::to_value(&r)?,
        };
        if let Some(o) = v.as_object_mut() {
            o.remove("history");
            o.insert("pid".into(), r.pid.into());
            o.insert("role".into(), r.role.clone().into());
            o.insert("http".into(), r.http.clone().into());
        }
        out.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

fn status() {
    use btt::engine::status;
    let reports = status::read_all();
    if reports.is_empty() {
        let dirs = status::dirs_to_read();
        let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        println!(
            "nothing running (looked in {}; a user's mounts, seeders and downloads are listed to that user and to root)",
            looked.join(", ")
        );
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for r in reports {
        if r.info_hash == btt::library::LIBRARY_STATUS {
            println!("{} [pid {}]: {}", r.role, r.pid, r.torrent);
            if let Some(url) = &r.http {
                println!("  web page: {url}");
            }
            continue;
        }
        let m = &r.money;
        let mut money = Vec::new();
        if let Some(b) = m.budget_msat {
            money.push(format!(
                "spent {} of {}{}",
                btt::cli::fmt_msat(m.spent_msat),
                btt::cli::fmt_msat(b),
                if m.budget_spent {
                    " (budget spent: not buying)"
                } else {
                    ""
                }
            ));
        }
        if m.earned_all_msat > m.earned_msat {
            // A channel paid for several torrents: this one's share.
            money.push(format!(
                "earned {} (its share of {} in open channels)",
                btt::cli::fmt_msat(m.earned_msat),
                btt::cli::fmt_msat(m.earned_all_msat)
            ));
        } else if m.earned_msat > 0 || r.role == "sell" {
            money.push(format!("earned {}", btt::cli::fmt_msat(m.earned_msat)));
        }
        if m.channels > 0 {
            money.push(format!("{} channel(s)", m.channels));
        }
        if r.rejected > 0 {
            money.push(format!("{} requests rejected", r.rejected));
        }
        let who = match r.uid == me {
            true => String::new(),
            false => format!(", user {}", status::user_name(r.uid)),
        };
        let mut rates = Vec::new();
        for (what, v) in [("down", r.down_bytes_per_sec), ("up", r.up_bytes_per_sec)] {
            if v >= 1.0 {
                rates.push(format!("{what} {}/s", btt::cli::fmt_bytes(v as u64)));
            }
        }
        let rates = match rates.is_empty() {
            true => String::new(),
            false => format!(", {}", rates.join(", ")),
        };
        let pct = match r.pieces_total {
            0 => 100.0,
            n => 100.0 * r.pieces_have as f64 / n as f64,
        };
        println!(
            "{} [pid {}{who}] {}: {pct:.1} % ({}/{} pieces), {} peers ({} paid){rates}{}{}",
            r.role,
            r.pid,
            r.torrent,
            r.pieces_have,
            r.pieces_total,
            r.peers,
            r.paid_peers,
            if money.is_empty() { "" } else { ", " },
            money.join(", ")
        );
        if let Some(note) = &r.note {
            println!("  {note}");
        }
        for w in &r.waiting {
            // With nobody connected the cause is the note just printed.
            match r.note.as_deref() == Some(w.cause.as_str()) {
                true => println!("  a read waits {:.1} s on piece {}", w.secs, w.piece),
                false => println!(
                    "  a read waits {:.1} s on piece {}: {}",
                    w.secs, w.piece, w.cause
                ),
            }
        }
        if let Some(url) = &r.http {
            println!("  web page: {url}");
        }
    }
}
