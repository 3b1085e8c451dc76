//! `btt seed`: serve a torrent's existing data to any peer, free of charge.
//!
//! The data is hashed piece by piece before serving, so we never upload bytes that
//! do not match the torrent. The engine runs as for a mount, minus the filesystem.

use crate::engine::{EngineConfig, Torrent};
use crate::mount::{default_data_dir, load_or_fetch, MountError};
use crate::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct SeedConfig {
    /// One or more torrents, served by one process (and, when selling, one
    /// seller node: a buyer's channel pays for all of them).
    pub torrents: Vec<PathBuf>,
    /// How long a magnet link's metadata may take to arrive.
    pub metadata_timeout: Duration,
    /// Directory holding the content (`DIR/<name>…`), as other clients lay it out.
    pub data: PathBuf,
    /// All torrents share one listener on `engine.listen`; a peer reaches
    /// the torrent its handshake names.
    pub engine: EngineConfig,
    /// Serve without hashing the data first (`--seed-unverified`).
    pub unverified: bool,
    /// When selling: bytes a buyer gets beyond what it paid (`--credit`).
    pub credit: Option<u64>,
    /// The web page, API and streams (`--http`).
    pub web: Option<crate::web::WebConfig>,
}

/// Verifies the data, then serves until SIGINT/SIGTERM. `on_ready` gets, per
/// torrent, the listen address and how many pieces verified.
pub fn run(
    mut cfg: SeedConfig,
    mut on_ready: impl FnMut(std::net::SocketAddr, usize, usize),
) -> Result<(), MountError> {
    let kept = |h: &crate::metainfo::InfoHash| {
        default_data_dir()
            .join("seed")
            .join(format!("{}.torrent", h.hex()))
    };
    // Every argument is checked before anything starts.
    let sources = cfg
        .torrents
        .iter()
        .map(|p| crate::mount::resolve(p, kept))
        .collect::<Result<Vec<_>, _>>()?;
    check_data_dir(&cfg.data, &sources)?;
    crate::mount::ensure_writable(&default_data_dir().join("seed"), |path, source| {
        MountError::SeedStateNotWritable { path, source }
    })?;
    let rt = crate::mount::runtime_with_dht(
        &mut cfg.engine,
        default_data_dir().join("seed").join("dht.json"),
    )?;
    // Bound first: a magnet's metadata may come from a peer that dials us.
    let mut listener = Some(
        rt.block_on(Torrent::listen(cfg.engine.listen))
            .map_err(MountError::from)?,
    );
    let mut prepared = Vec::new();
    for (path, source) in cfg.torrents.iter().zip(sources) {
        // A seeder waits for those who lack the torrent: the peers that
        // have it are of no use to it.
        let (meta, _have_it, back) = load_or_fetch(
            &rt,
            source,
            path,
            kept,
            &cfg.engine,
            cfg.metadata_timeout,
            listener.take(),
        )?;
        listener = back;
        let meta = Arc::new(meta);
        if cfg.credit.is_some_and(|c| c < meta.piece_length) {
            // A buyer pays after a piece verifies: it needs a piece on credit.
            warn!(
                torrent = %meta.name,
                credit = cfg.credit,
                piece_length = meta.piece_length,
                "--credit is below the piece length: buyers cannot buy this torrent"
            );
        }
        let state = default_data_dir()
            .join("seed")
            .join(format!("{}.bitfield", meta.info_hash.hex()));
        let store = Arc::new(Store::open(meta.clone(), &cfg.data, &state, 32 << 20)?);
        let started = std::time::Instant::now();
        let have = if cfg.unverified {
            warn!("serving without verifying the data (--seed-unverified)");
            store.assume_complete()
        } else {
            store.recheck()
        };
        info!(
            torrent = %meta.name,
            verified = have.count(),
            of = meta.num_pieces(),
            secs = started.elapsed().as_secs_f32(),
            "checked existing data"
        );
        if !have.is_complete() {
            let problems = crate::store::check::file_problems(&meta, &have, |rel| {
                std::fs::metadata(cfg.data.join(rel)).ok().map(|m| m.len())
            });
            let files = crate::store::check::describe(&meta, &problems);
            warn!(
                torrent = %meta.name,
                missing = meta.num_pieces() - have.count(),
                "data is incomplete in {}: {files}; serving the pieces that verified",
                cfg.data.display()
            );
        }
        prepared.push((meta, store, have.count()));
    }
    rt.block_on(async {
        let counts: Vec<(usize, usize)> = prepared
            .iter()
            .map(|(meta, _, have)| (*have, meta.num_pieces()))
            .collect();
        let items = prepared.into_iter().map(|(m, s, _)| (m, s)).collect();
        let (stop_web, stop_rx) = tokio::sync::watch::channel(false);
        let registry = crate::web::Registry::new();
        registry.set_limits(cfg.engine.max_down.clone(), cfg.engine.max_up.clone());
        if let Some(w) = &cfg.web {
            let web = crate::web::start(w, registry.clone(), stop_rx).await?;
            cfg.engine.http = Some(web.status_url());
            if !crate::cli::quiet() {
                eprintln!("web page: {}", web.url());
            }
        }
        let listener = match listener {
            Some(l) => l,
            // Not handed back by a metadata fetch: bound again.
            None => Torrent::listen(cfg.engine.listen).await?,
        };
        let running = Torrent::start_many(items, cfg.engine.clone(), listener)?;
        for t in &running {
            registry.put(crate::web::Item::Ready(t.clone()));
        }
        for (t, (have, n)) in running.iter().zip(counts) {
            on_ready(t.listen_addr().expect("bound"), have, n);
        }
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).map_err(MountError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(MountError::Runtime)?;
        tokio::select! {
            _ = sigint.recv() => {},
            _ = sigterm.recv() => {},
        }
        for t in &running {
            t.shutdown().await;
        }
        let _ = stop_web.send(true);
        Ok::<_, MountError>(())
    })?;
    crate::mount::stop_dht(&cfg.engine);
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(())
}

/// `--data` must exist, and hold the torrents' content under their names:
/// a `--data` that is the torrent's own folder (its files right inside) is
/// the usual slip, and said so.
fn check_data_dir(
    data: &std::path::Path,
    sources: &[crate::mount::Source],
) -> Result<(), MountError> {
    if !data.is_dir() {
        return Err(MountError::DataDir {
            path: data.to_path_buf(),
            why: "does not exist or is not a folder".into(),
        });
    }
    for s in sources {
        let crate::mount::Source::Torrent(meta) = s else {
            continue;
        };
        let first = (0..meta.files.len()).find(|&i| !meta.files[i].padding);
        let (Some(i), true) = (first, meta.multi_file) else {
            continue;
        };
        let inside = meta.path(i);
        if !data.join(&meta.name).exists() && data.join(inside).exists() {
            let parent = data
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "..".into());
            return Err(MountError::DataDir {
                path: data.to_path_buf(),
                why: format!(
                    "holds {inside} itself, not a folder {:?}: give the folder above it, --data {parent}",
                    meta.name
                ),
            });
        }
    }
    Ok(())
}
