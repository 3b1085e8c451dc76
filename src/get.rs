//! `btt get`: fetch a whole torrent into a directory (backup retrieval),
//! from free peers and, when they cannot deliver, paid sellers.
//!
//! Resumable: verified pieces are recorded next to the content
//! (`DIR/.btt-<info-hash>.bitfield`, written only after the data is synced),
//! so an interrupted run continues where it stopped and never fetches — or
//! pays for — a piece twice. The budget is the buyer agent's; when it is spent
//! and nothing else arrives for `stall` the run ends with [`GetError::Budget`].

use crate::bitfield::Bitfield;
use crate::engine::{BuyHookRef, EngineConfig, Torrent};
use crate::market::buying::BuyerAgent;
use crate::mount::{load_or_fetch, MountError};
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("{dir} already holds files that differ from the torrent's: {files}; move them away, or pass --overwrite to replace them")]
    WouldOverwrite { dir: PathBuf, files: String },
    #[error("interrupted with {} of {} downloaded; run the same command again to resume", crate::cli::fmt_bytes(*.done), crate::cli::fmt_bytes(*.total))]
    Interrupted { done: u64, total: u64 },
    #[error("--only {glob:?} matches none of the torrent's {files} files (such as {some})")]
    NoMatch {
        glob: String,
        files: usize,
        some: String,
    },
    #[error("--only {glob:?} is not a glob: {msg}")]
    BadGlob { glob: String, msg: String },
    #[error("budget of {} spent with {} of {} downloaded and no free peer delivering the rest; raise --budget and run again to resume", crate::cli::fmt_msat(*.budget_msat), crate::cli::fmt_bytes(*.done), crate::cli::fmt_bytes(*.total))]
    Budget {
        budget_msat: u64,
        done: u64,
        total: u64,
    },
}

pub struct GetConfig {
    /// A .torrent file, a magnet link, or a file holding one.
    pub torrent: PathBuf,
    /// How long a magnet link's metadata may take to arrive.
    pub metadata_timeout: Duration,
    pub dir: PathBuf,
    pub engine: EngineConfig,
    pub buyer: Option<Arc<BuyerAgent>>,
    /// With the budget spent, give up after this long without progress.
    pub stall: Duration,
    /// Replace existing files whose content differs (`--overwrite`).
    pub overwrite: bool,
    /// `--only` globs: fetch only the files whose path matches one.
    pub only: Vec<String>,
    /// The web page, API and streams (`--http`).
    pub web: Option<crate::web::WebConfig>,
}

/// The files fetched: those matching an `--only` glob, else those a
/// magnet's `so=` names; `None`: every file. A glob is matched against the
/// file's path in the torrent and against that path under the torrent's
/// name (`*` crosses `/`), so `*.mkv`, `Season 1/*` and `Name/*.srt` work.
fn selection(
    meta: &crate::metainfo::Metainfo,
    globs: &[String],
    magnet: Option<&crate::metainfo::Magnet>,
) -> Result<Option<Vec<usize>>, GetError> {
    let real: Vec<usize> = (0..meta.files.len())
        .filter(|&i| !meta.files[i].padding)
        .collect();
    if globs.is_empty() {
        let chosen: Option<Vec<usize>> = magnet
            .filter(|m| m.select.is_some())
            .map(|m| real.iter().copied().filter(|&i| m.selects(i)).collect());
        if chosen.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(GetError::NoMatch {
                glob: "so=".into(),
                files: real.len(),
                some: "the magnet's so= names no file of them".into(),
            });
        }
        return Ok(chosen);
    }
    let shown = |i: usize| match meta.path(i) {
        "" => meta.name.clone(),
        p => p.to_string(),
    };
    let mut picked = vec![false; meta.files.len()];
    for g in globs {
        let m = globset::Glob::new(g)
            .map_err(|e| GetError::BadGlob {
                glob: g.clone(),
                msg: e.kind().to_string(),
            })?
            .compile_matcher();
        let mut any = false;
        for &i in &real {
            if m.is_match(shown(i)) || m.is_match(meta.rel_path(i)) {
                picked[i] = true;
                any = true;
            }
        }
        if !any {
            let some: Vec<String> = real.iter().take(3).map(|&i| shown(i)).collect();
            return Err(GetError::NoMatch {
                glob: g.clone(),
                files: real.len(),
                some: some.join(", "),
            });
        }
    }
    Ok(Some(real.into_iter().filter(|&i| picked[i]).collect()))
}

/// The pieces holding any byte of `files`.
fn pieces_of(meta: &crate::metainfo::Metainfo, files: &[usize]) -> Bitfield {
    let mut b = Bitfield::new(meta.num_pieces());
    for &i in files {
        let f = &meta.files[i];
        for p in meta.pieces_for_range(f.offset, f.length) {
            b.set(p);
        }
    }
    b
}

/// A first run into a folder that already holds some of the torrent's
/// files: what verifies is kept (and not fetched again, like a client's
/// recheck); a file that is there but differs is not overwritten unless
/// `overwrite`.
fn check_existing(
    meta: &crate::metainfo::Metainfo,
    store: &Store,
    dir: &std::path::Path,
    overwrite: bool,
    touched: &dyn Fn(usize) -> bool,
) -> Result<(), GetError> {
    let len = |rel: &std::path::Path| std::fs::metadata(dir.join(rel)).ok().map(|m| m.len());
    let any = (0..meta.files.len()).any(|i| {
        !meta.files[i].padding && meta.files[i].length > 0 && len(&meta.rel_path(i)).is_some()
    });
    if !any {
        return Ok(());
    }
    let have = store.recheck();
    let problems: Vec<_> = crate::store::check::file_problems(meta, &have, len)
        .into_iter()
        // A file not chosen is written only where it shares a piece with a
        // chosen one: elsewhere (or holding the edges of an earlier --only
        // run) it is never in the way; nor is a file whose unverified parts
        // are holes (that run's download).
        .filter(|(i, p)| *p != crate::store::check::Problem::Missing && touched(*i))
        .filter(|(i, p)| {
            *p != crate::store::check::Problem::Differs || !only_holes(meta, &have, dir, *i)
        })
        .collect();
    if !problems.is_empty() && !overwrite {
        return Err(GetError::WouldOverwrite {
            dir: dir.to_path_buf(),
            files: crate::store::check::describe(meta, &problems),
        });
    }
    let bytes: u64 = have.ones().map(|p| meta.piece_size(p)).sum();
    if !crate::cli::quiet() {
        eprintln!(
            "{} of {} pieces ({}) already in {}: kept",
            have.count(),
            meta.num_pieces(),
            crate::cli::fmt_bytes(bytes),
            dir.display()
        );
    }
    Ok(())
}

/// Whether file `i`'s bytes outside the verified pieces are all zero: what
/// a download that stopped (or an `--only` run that fetched a neighbour)
/// leaves, never content of the user's.
fn only_holes(
    meta: &crate::metainfo::Metainfo,
    have: &Bitfield,
    dir: &std::path::Path,
    i: usize,
) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let f = &meta.files[i];
    let Ok(mut file) = std::fs::File::open(dir.join(meta.rel_path(i))) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 16];
    for p in meta.pieces_for_range(f.offset, f.length) {
        if have.get(p) {
            continue;
        }
        for s in meta.piece_slices(p).into_iter().filter(|s| s.file == i) {
            if file.seek(SeekFrom::Start(s.file_offset)).is_err() {
                return false;
            }
            let mut left = s.len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                if file.read_exact(&mut buf[..n]).is_err() || buf[..n].iter().any(|&b| b != 0) {
                    return false;
                }
                left -= n as u64;
            }
        }
    }
    true
}

/// What the progress display gets, about four times a second.
pub struct Progress {
    pub done: u64,
    pub total: u64,
    pub spent_msat: u64,
}

pub fn run(mut cfg: GetConfig, mut progress: impl FnMut(&Progress)) -> Result<(), GetError> {
    let kept = |h: &crate::metainfo::InfoHash| cfg.dir.join(format!(".btt-{}.torrent", h.hex()));
    let source = crate::mount::resolve(&cfg.torrent, kept)?;
    let magnet = crate::mount::magnet_of(&cfg.torrent);
    let rt = crate::mount::runtime_with_dht(
        &mut cfg.engine,
        crate::mount::default_data_dir().join("dht.json"),
    )?;
    // Bound first: a magnet's metadata may come from a peer that dials us.
    let listener = rt
        .block_on(Torrent::listen(cfg.engine.listen))
        .map_err(MountError::from)?;
    let (meta, have_it, listener) = load_or_fetch(
        &rt,
        source,
        &cfg.torrent,
        kept,
        &cfg.engine,
        cfg.metadata_timeout,
        Some(listener),
    )?;
    let meta = Arc::new(meta);
    let files = selection(&meta, &cfg.only, magnet.as_ref())?;
    let chosen = |i: usize| files.as_ref().is_none_or(|f| f.contains(&i));
    if let Some(f) = &files {
        let bytes: u64 = f.iter().map(|&i| meta.files[i].length).sum();
        if !crate::cli::quiet() {
            let real = meta.files.iter().filter(|f| !f.padding).count();
            eprintln!(
                "fetching {} of {real} files ({})",
                f.len(),
                crate::cli::fmt_bytes(bytes)
            );
        }
        cfg.engine.only = Some(pieces_of(&meta, f));
    }
    for p in have_it {
        if !cfg.engine.peers.contains(&p) {
            cfg.engine.peers.push(p);
        }
    }
    let state = cfg
        .dir
        .join(format!(".btt-{}.bitfield", meta.info_hash.hex()));
    let fresh = !state.exists();
    let store =
        Arc::new(Store::open(meta.clone(), &cfg.dir, &state, 32 << 20).map_err(MountError::from)?);
    if fresh {
        // Files the chosen pieces write into: the chosen ones and the
        // neighbours sharing an edge piece with them.
        let wanted = cfg.engine.only.clone();
        let touched = |i: usize| {
            let f = &meta.files[i];
            wanted
                .as_ref()
                .is_none_or(|w| meta.pieces_for_range(f.offset, f.length).any(|p| w.get(p)))
        };
        check_existing(&meta, &store, &cfg.dir, cfg.overwrite, &touched)?;
    }
    cfg.engine.fetch_all = true;
    if let Some(b) = &cfg.buyer {
        cfg.engine.buy = Some(BuyHookRef(b.clone()));
    }
    let wanted = cfg.engine.only.clone();
    let counted = |have: &Bitfield| -> u64 {
        have.ones()
            .filter(|&p| wanted.as_ref().is_none_or(|w| w.get(p)))
            .map(|p| meta.piece_size(p))
            .sum()
    };
    let total = match &wanted {
        Some(w) => w.ones().map(|p| meta.piece_size(p)).sum(),
        None => meta.total_length,
    };
    let (stop_web, stop_rx) = tokio::sync::watch::channel(false);
    let result = rt.block_on(async {
        let registry = crate::web::Registry::new();
        registry.set_limits(cfg.engine.max_down.clone(), cfg.engine.max_up.clone());
        if let Some(w) = &cfg.web {
            let web = crate::web::start(w, registry.clone(), stop_rx)
                .await
                .map_err(MountError::from)?;
            cfg.engine.http = Some(web.status_url());
            if !crate::cli::quiet() {
                eprintln!("web page: {}", web.url());
            }
        }
        let t = match listener {
            Some(l) => Torrent::start_on(meta.clone(), store.clone(), cfg.engine.clone(), l),
            None => Torrent::start(meta.clone(), store.clone(), cfg.engine.clone()).await,
        }
        .map_err(MountError::from)?;
        registry.put(crate::web::Item::Ready(t.clone()));
        let done_bytes = |t: &Torrent| -> u64 { counted(&t.have()) };
        info!(have = done_bytes(&t), total, "fetching");
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).map_err(MountError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(MountError::Runtime)?;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let complete = t.wait_complete();
        tokio::pin!(complete);
        let mut last = (done_bytes(&t), Instant::now());
        let outcome = loop {
            tokio::select! {
                r = &mut complete => break r.map_err(|e| GetError::Mount(e.into())),
                _ = sigint.recv() => break Err(GetError::Interrupted { done: done_bytes(&t), total }),
                _ = sigterm.recv() => break Err(GetError::Interrupted { done: done_bytes(&t), total }),
                _ = tick.tick() => {
                    let done = done_bytes(&t);
                    let spent_msat = cfg.buyer.as_ref().map(|b| b.spent_msat()).unwrap_or(0);
                    progress(&Progress { done, total, spent_msat });
                    if done != last.0 {
                        last = (done, Instant::now());
                    } else if let Some(b) = &cfg.buyer {
                        if b.budget_spent() && last.1.elapsed() >= cfg.stall {
                            break Err(GetError::Budget {
                                budget_msat: b.budget_msat(),
                                done,
                                total,
                            });
                        }
                    }
                }
            }
        };
        let spent_msat = cfg.buyer.as_ref().map(|b| b.spent_msat()).unwrap_or(0);
        progress(&Progress {
            done: done_bytes(&t),
            total,
            spent_msat,
        });
        // Flushes the store: what verified is on disk and recorded.
        t.shutdown().await;
        if outcome.is_ok() {
            // No piece covers an empty file: made here, or it would be missing.
            store.create_empty_files(&chosen).map_err(MountError::from)?;
        }
        outcome
    });
    if let Some(b) = &cfg.buyer {
        // Let payments for pieces already verified go out, then report
        // what was actually paid.
        b.settle(Duration::from_secs(5));
        let done = counted(&store.on_disk());
        progress(&Progress {
            done,
            total,
            spent_msat: b.spent_msat(),
        });
    }
    let _ = stop_web.send(true);
    crate::mount::stop_dht(&cfg.engine);
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}
