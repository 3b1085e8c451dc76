//! `btt-mount TORRENT|MAGNET MOUNTPOINT`: mount a torrent read-only.
//!
//! Goes to the background once the mount answers (unless `--foreground`): the
//! parent re-executes itself in the foreground as a detached child and waits on a
//! pipe for "ready" or an error, so the shell prompt returns with the mount usable
//! and the exit status tells whether it worked.

use anyhow::{bail, Context, Result};
use btt::cli::{init_logging, MountCli as Cli};
use btt::mount::{default_data_dir, run, MountConfig};
use clap::Parser;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::time::Duration;

const READY_FD: &str = "BTT_MOUNT_READY_FD";

fn daemonize(quiet: bool) -> Result<()> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    let (r, w) = (fds[0], fds[1]);
    let mut cmd =
        std::process::Command::new(std::env::current_exe().context("finding own executable")?);
    cmd.args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env(READY_FD, w.to_string());
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid and close are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            libc::close(r);
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the background mount")?;
    // SAFETY: w is our copy of the pipe's write end; the child has its own.
    unsafe { libc::close(w) };
    // SAFETY: r is an open fd we own from here on.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(r) };
    let mut msg = String::new();
    let _ = pipe.read_to_string(&mut msg);
    if let Some(rest) = msg.strip_prefix("ok") {
        if !quiet {
            print!("{}", rest.trim_start());
        }
        return Ok(());
    }
    let status = child.try_wait().ok().flatten();
    let why = msg.strip_prefix("err ").unwrap_or(&msg).trim().to_string();
    if why.is_empty() {
        bail!("the background mount exited ({status:?}) before it was ready");
    }
    bail!("{why}");
}

/// Errors are the user's to act on: one short text, each cause once, no
/// backtrace (whatever `RUST_BACKTRACE` says).
fn main() -> std::process::ExitCode {
    btt::cli::exit_code(real_main().map_err(|e| e.chain().map(|c| c.to_string()).collect()))
}

fn real_main() -> Result<()> {
    btt::memory::tune_allocator();
    btt::engine::limit_connections_to_fds();
    // glibc gives each thread that allocates its own 64 MiB arena; with the tokio
    // and blocking-pool threads that multiplies peak RSS for no gain here.
    // SAFETY: mallopt only adjusts allocator tuning; called before other threads start.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let mut cli = Cli::parse();
    let o = btt::cli::mount_options(&cli.options).map_err(|e| anyhow::anyhow!("-o: {e}"))?;
    cli.options = o.fuse;
    cli.peers.max_down = o.max_down.or(cli.peers.max_down);
    cli.peers.max_up = o.max_up.or(cli.peers.max_up);
    let ready_fd: Option<i32> = std::env::var(READY_FD).ok().and_then(|v| v.parse().ok());
    if !cli.foreground && ready_fd.is_none() {
        return daemonize(cli.quiet);
    }
    init_logging(cli.verbose, cli.quiet, cli.log_file.as_deref());
    // SAFETY: the fd was handed to us by our parent for exactly this.
    let mut ready = ready_fd.map(|fd| unsafe { std::fs::File::from_raw_fd(fd) });
    let mountpoint = cli
        .library
        .clone()
        .or(cli.mountpoint.clone())
        .expect("clap requires a mount point");
    let mut engine = cli.peers.engine(cli.fetch_all);
    engine.role = match cli.library {
        Some(_) => format!("library {}", mountpoint.display()),
        None => format!("mount {}", mountpoint.display()),
    };
    if let Some(b) = btt::market::buying::buy_config(
        cli.home.as_deref(),
        cli.max_price,
        cli.budget,
        cli.channel_size,
    )
    .map_err(anyhow::Error::msg)?
    {
        tracing::info!(max_price = %b.max_price, budget_msat = b.budget_msat, "buying from sellers when free peers cannot deliver");
        engine.buy = Some(btt::engine::BuyHookRef(std::sync::Arc::new(
            btt::market::buying::BuyerAgent::new(b),
        )));
    }
    let read_timeout = cli
        .read_timeout
        .filter(|s| *s > 0.0)
        .map(Duration::from_secs_f64);
    let metadata_timeout = Duration::from_secs_f64(cli.peers.metadata_timeout.max(1.0));
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let ready_line = |m: &btt::mount::Mounted| {
        let mut line = match m.waiting {
            false => format!("mounted {} at {}\n", m.name, m.mountpoint.display()),
            true => format!(
                "mounted {} at {}; its files appear when the metadata arrives from peers\n",
                m.name,
                m.mountpoint.display()
            ),
        };
        if let Some(url) = &m.web {
            line.push_str(&format!("web page: {url}\n"));
        }
        line
    };
    if cli.library.is_some() {
        let cfg = btt::library::LibraryConfig {
            mountpoint,
            data_dir,
            watch: cli.watch.clone(),
            cache_size: cli.cache_size,
            read_timeout,
            metadata_timeout,
            engine,
            fuse_options: cli.options.clone(),
            web: cli.peers.web(),
        };
        let res = btt::library::run(cfg, |m| {
            let line = ready_line(m);
            match ready.take() {
                Some(mut f) => {
                    let _ = f.write_all(format!("ok {line}").as_bytes());
                }
                None => eprint!("{line}"),
            }
        });
        return match res {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(mut f) = ready.take() {
                    let _ = f.write_all(format!("err {e}\n").as_bytes());
                }
                Err(e.into())
            }
        };
    }
    let cfg = MountConfig {
        torrent: cli.torrent.clone().expect("clap requires a torrent"),
        metadata_timeout,
        mountpoint,
        data_dir,
        cache_size: cli.cache_size,
        keep: !cli.no_keep,
        read_timeout,
        max_files: cli.max_files,
        engine,
        fuse_options: cli.options.clone(),
        web: cli.peers.web(),
    };
    let res = run(cfg, |m| {
        let line = ready_line(m);
        match ready.take() {
            Some(mut f) => {
                let _ = f.write_all(format!("ok {line}").as_bytes());
            }
            None => eprint!("{line}"),
        }
    });
    match res {
        Ok(_) => Ok(()),
        Err(e) => {
            if let Some(mut f) = ready.take() {
                let _ = f.write_all(format!("err {e}\n").as_bytes());
            }
            Err(e.into())
        }
    }
}
