//! Command-line flags shared by the binaries, defined once (clap derive), so
//! `btt-mount`, `btt seed` and the generated man pages agree.

use crate::engine::EngineConfig;
use clap::{Args, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A size for people, in binary units as `ls -h` gives them: `512 B`,
/// `3.2 MiB`, `1.46 GiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let (mut v, mut u) = (n as f64 / 1024.0, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    match v {
        v if v < 10.0 => format!("{v:.2} {}", UNITS[u]),
        v if v < 100.0 => format!("{v:.1} {}", UNITS[u]),
        v => format!("{v:.0} {}", UNITS[u]),
    }
}

/// An amount in sat with msat precision where it has any: `8143 sat`,
/// `8143.125 sat` — what was actually paid, not a rounding of it.
pub fn fmt_msat(msat: u64) -> String {
    crate::pay::amount::Msat(msat).to_string()
}

/// A byte size such as `64MiB`, `1G` or `4096`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size::parse_size(s).map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Args, Clone, Debug)]
pub struct PeerArgs {
    /// Add a peer directly (repeatable), e.g. 127.0.0.1:6881.
    #[arg(long = "peer", value_name = "HOST:PORT")]
    pub peers: Vec<SocketAddr>,
    /// Address to accept peer connections on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub listen: SocketAddr,
    /// Do not announce to the torrent's trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// Most peer connections at once.
    #[arg(long, default_value_t = 60)]
    pub max_peers: usize,
    /// Upload slots (peers unchoked at once).
    #[arg(long, default_value_t = 8)]
    pub upload_slots: usize,
    /// Do not use the DHT (peers then come from trackers and --peer only).
    #[arg(long, env = "BTT_NO_DHT")]
    pub no_dht: bool,
    /// A DHT node to start from (repeatable) [default: the public routers,
    /// or the nodes saved from the last run].
    #[arg(long, value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// Find peers on the local network too (BEP 14 multicast).
    #[arg(long)]
    pub lsd: bool,
    /// For a magnet link: give up when its metadata has not arrived in this
    /// many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    pub metadata_timeout: f64,
    /// Download at most this fast, all torrents and peers together, e.g.
    /// 5MiB (per second) [default: no limit].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_down: Option<u64>,
    /// Upload at most this fast, all torrents and peers together, e.g. 1MiB
    /// (per second) [default: no limit].
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_up: Option<u64>,
    /// Serve the live page, the API and streams here (anything but
    /// 127.0.0.1 or ::1 needs a token).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub http: SocketAddr,
    /// No web page, API or streams.
    #[arg(long, conflicts_with = "http_token")]
    pub no_http: bool,
    /// The token requests must carry [default: none on 127.0.0.1, else one
    /// made up and printed].
    #[arg(long, value_name = "TOKEN", env = "BTT_HTTP_TOKEN", value_parser = parse_token)]
    pub http_token: Option<String>,
}

/// `-o` options split into btt's own and FUSE's.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub fuse: Vec<String>,
    pub max_down: Option<u64>,
    pub max_up: Option<u64>,
}

/// Takes btt's own options (`max_down=`, `max_up=`) out of `-o` options;
/// the rest are FUSE's.
pub fn mount_options(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    for o in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        match o.split_once('=') {
            Some(("max_down", v)) => out.max_down = Some(parse_rate(v)?),
            Some(("max_up", v)) => out.max_up = Some(parse_rate(v)?),
            _ => out.fuse.push(o.to_string()),
        }
    }
    Ok(out)
}

/// A web token: long enough not to be guessed.
fn parse_token(s: &str) -> Result<String, String> {
    match s.len() >= 16 {
        true => Ok(s.to_string()),
        false => {
            Err("a token of at least 16 characters (leave it out and btt makes one up)".into())
        }
    }
}

/// A rate in bytes per second: `5MiB`, `5MiB/s`, `500KB/s`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    match parse_bytes(t)? {
        0 => Err(format!("{s:?}: a rate of 0 would stop all transfer")),
        n => Ok(n),
    }
}

impl PeerArgs {
    pub fn engine(&self, fetch_all: bool) -> EngineConfig {
        EngineConfig {
            listen: self.listen,
            peers: self.peers.clone(),
            use_trackers: !self.no_trackers,
            max_peers: self.max_peers.max(1),
            fetch_all,
            only: None,
            upload_slots: self.upload_slots.max(1),
            announce_timeout: Duration::from_secs(10),
            pay: None,
            buy: None,
            role: String::new(),
            dht_settings: (!self.no_dht).then(|| crate::dht::DhtSettings {
                bootstrap: if self.dht_bootstrap.is_empty() {
                    crate::dht::PUBLIC_BOOTSTRAP
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                } else {
                    self.dht_bootstrap.clone()
                },
                state_file: crate::mount::default_data_dir().join("dht.json"),
            }),
            dht: None,
            lsd_on: self.lsd,
            lsd: None,
            // Always a bucket (unlimited without a flag), so the web API
            // can set a limit later.
            max_down: Some(std::sync::Arc::new(crate::engine::rate::Bucket::with(
                self.max_down,
            ))),
            max_up: Some(std::sync::Arc::new(crate::engine::rate::Bucket::with(
                self.max_up,
            ))),
            http: None,
        }
    }

    /// The web face `--http` asks for (`None`: `--no-http`).
    pub fn web(&self) -> Option<crate::web::WebConfig> {
        (!self.no_http).then(|| crate::web::WebConfig {
            listen: self.http,
            token: self.http_token.clone(),
        })
    }
}

/// `btt-mount`'s command line (here so that `btt generate-docs` can render
/// its man page and completions too).
#[derive(Parser, Debug)]
#[command(
    name = "btt-mount",
    version,
    about = "Mount a torrent as a read-only filesystem; reads wait for verified pieces"
)]
pub struct MountCli {
    /// The .torrent file, a magnet link (quote it), or a file holding one.
    #[arg(required_unless_present = "library")]
    pub torrent: Option<PathBuf>,
    /// Where to mount it (an existing directory).
    #[arg(required_unless_present = "library")]
    pub mountpoint: Option<PathBuf>,
    /// Mount a library here instead: many torrents, each at MNT/<name>,
    /// kept across restarts (added from --watch, `btt add` or the web API).
    #[arg(long, value_name = "MNT", conflicts_with_all = ["torrent", "mountpoint"])]
    pub library: Option<PathBuf>,
    /// With --library: add the .torrent and .magnet files put in this
    /// folder, and remove each torrent whose file is deleted.
    #[arg(long, value_name = "DIR", requires = "library")]
    pub watch: Option<PathBuf>,
    /// Where downloaded pieces are kept [default: $XDG_DATA_HOME/btt].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Memory for hot pieces (pieces larger than a quarter of it are left
    /// to the kernel's page cache; by default all are, which measured
    /// faster and half the memory).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_bytes)]
    pub cache_size: u64,
    /// Delete the downloaded data when unmounting.
    #[arg(long)]
    pub no_keep: bool,
    /// A read waiting longer than this fails with EIO (default: wait forever).
    #[arg(long, value_name = "SECS")]
    pub read_timeout: Option<f64>,
    /// Refuse torrents with more files than this (each costs the mount about
    /// 400 bytes of memory, measured at a million files).
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_files: usize,
    /// Download the whole torrent in the background, not only what is read.
    #[arg(long)]
    pub fetch_all: bool,
    /// Stay in the foreground.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, e.g. -o allow_other; btt's own: max_down=RATE,
    /// max_up=RATE (as --max-down, --max-up; what fstab can pass).
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Log to this file (background mode logs nowhere otherwise).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// More log detail.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print nothing but errors (for scripts).
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(flatten)]
    pub peers: PeerArgs,
    /// Buy pieces from btt sellers asking at most this, e.g. 2000sat/GiB
    /// (default: the `[buy]` section of config.toml; without either, never buy).
    #[arg(long, value_name = "PRICE")]
    pub max_price: Option<crate::pay::price::Price>,
    /// Pay at most this much in all, e.g. 20000sat, 20k, 11718750msat or
    /// 0.0002BTC [default: one channel].
    #[arg(long, value_name = "AMOUNT", value_parser = crate::pay::amount::parse_msat)]
    pub budget: Option<u64>,
    /// Capacity of channels opened with sellers, e.g. 100000sat or 0.001BTC.
    #[arg(long, value_name = "SAT", value_parser = crate::pay::amount::parse_sat)]
    pub channel_size: Option<u64>,
    /// btt's wallet/channel directory [default: $BTT_HOME or ~/.local/share/btt].
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
}

/// Sets up `tracing` output. By default (no `-v`, no log file, no
/// `RUST_LOG`) the terminal gets short human lines: warnings and errors
/// only, as "warning: …", without timestamps or spans; what a command
/// wants to say otherwise it prints itself. `-v`, `--log-file` or
/// `RUST_LOG` give the full tracing format (`RUST_LOG`'s filter if set,
/// else `info`, or `debug` for btt with `-v`). fuser's warnings are left
/// out unless `RUST_LOG` names it: what it warns of, btt answers itself
/// (every request) or expects (its attempt to unmount a mount already gone
/// on exit). So are the TLS verifier's, whose refusals btt reports itself.
pub fn init_logging(verbose: bool, quiet: bool, file: Option<&std::path::Path>) {
    use tracing_subscriber::EnvFilter;
    // No status lines with -q, even when a log file takes the log.
    QUIET.store(quiet && !verbose, std::sync::atomic::Ordering::Relaxed);
    if quiet && !verbose && file.is_none() {
        // Errors only, whatever RUST_LOG says: a script asked for silence.
        tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("error,rustls_platform_verifier=off"))
            .event_format(Human)
            .with_writer(AboveBar)
            .init();
        return;
    }
    let env = std::env::var("RUST_LOG").ok().filter(|e| !e.is_empty());
    let human = !verbose && file.is_none() && env.is_none();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(match (human, verbose) {
            (true, _) => "warn,librqbit_dht=error",
            (false, true) => "btt=debug,info,electrum_client=warn",
            (false, false) => "info,electrum_client=warn,librqbit_dht=warn",
        })
    });
    if !env.as_ref().is_some_and(|e| e.contains("fuser")) {
        filter = filter.add_directive("fuser=error".parse().expect("a valid directive"));
    }
    // It logs each refused certificate as an error; the refusal reaches the
    // user as the command's own error, with what to do.
    if !env.is_some_and(|e| e.contains("rustls_platform_verifier")) {
        let quiet = "rustls_platform_verifier=off"
            .parse()
            .expect("a valid directive");
        filter = filter.add_directive(quiet);
    }
    if human {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .event_format(Human)
            .with_writer(AboveBar)
            .init();
        return;
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Some(path) = file {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
            return;
        }
    }
    builder.with_writer(AboveBar).init();
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `-q`: print nothing but errors (no status lines, no progress bar).
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The progress bar the terminal shows, if any (`btt get`'s).
static BAR: std::sync::OnceLock<indicatif::ProgressBar> = std::sync::OnceLock::new();

/// From now on, log lines go above `bar` (it is cleared, the line
/// printed, the bar drawn again) instead of being glued to it.
pub fn log_above(bar: &indicatif::ProgressBar) {
    let _ = BAR.set(bar.clone());
}

/// stderr, around the progress bar: one event's text, written whole when
/// the event is done.
struct AboveBar;

struct EventText(Vec<u8>);

impl std::io::Write for EventText {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventText {
    fn drop(&mut self) {
        use std::io::Write;
        let text = std::mem::take(&mut self.0);
        let out = || {
            let _ = std::io::stderr().write_all(&text);
        };
        match BAR.get() {
            Some(bar) => bar.suspend(out),
            None => out(),
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for AboveBar {
    type Writer = EventText;
    fn make_writer(&'a self) -> EventText {
        EventText(Vec::new())
    }
}

/// The terminal's format by default: "warning: message key=value".
struct Human;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Human
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        match *event.metadata().level() {
            tracing::Level::ERROR => write!(w, "error: ")?,
            tracing::Level::WARN => write!(w, "warning: ")?,
            _ => {}
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// The end of a binary's `main`: success, or [`error_text`] of the error's
/// chain of messages on stderr and exit status 1.
pub fn exit_code(r: Result<(), Vec<String>>) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(chain) => {
            eprintln!("{}", error_text(chain.into_iter()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// What a command that failed prints: the error, then each cause it does
/// not already say (most errors here carry their cause's text), one per
/// line. Never a backtrace: these are the user's errors, not btt's.
pub fn error_text(chain: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for msg in chain {
        if out.is_empty() {
            out = format!("error: {msg}");
        } else if !out.contains(&msg) {
            out += &format!("\n  because: {msg}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(super::parse_bytes("4096"), Ok(4096));
        assert!(super::parse_bytes("lots").is_err());
        assert_eq!(super::fmt_bytes(512), "512 B");
        assert_eq!(super::fmt_bytes(491_782_144), "469 MiB");
        assert_eq!(super::fmt_bytes(1_572_864_003), "1.46 GiB");
        assert_eq!(super::fmt_bytes(3 << 20 | 200 << 10), "3.20 MiB");
    }

    #[test]
    fn errors_say_each_cause_once() {
        let chain = [
            "invalid torrent x: not valid bencode",
            "not valid bencode",
            "disk full",
        ];
        assert_eq!(
            super::error_text(chain.iter().map(|s| s.to_string())),
            "error: invalid torrent x: not valid bencode\n  because: disk full"
        );
    }
}
