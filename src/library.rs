//! `btt-mount --library MNT [--watch DIR]`: many torrents in one mount,
//! each at `MNT/<name>` (a clash becomes `<name> (2)`), behind one
//! listener, one DHT node, one buyer agent and one web page.
//!
//! Torrents come from `.torrent` and `.magnet` files in the watch folder
//! (added when they appear, removed when they are deleted), and from the
//! API (`POST /api/v1/torrents`, which `btt add` uses). The set survives a
//! restart: each entry is a small file in `DATA_DIR/library/` (where it came
//! from, and the magnet link if it is one) beside the kept metadata, so a
//! restart needs no network for metadata it had.
//!
//! One owner: the library task holds every entry and does every change;
//! the watch folder poller and the API send it commands over bounded
//! channels.

use crate::engine::{EngineConfig, Torrent, Torrents};
use crate::fs::Fs;
use crate::fuse::{BttFuse, Shelf};
use crate::metainfo::{InfoHash, Magnet, Metainfo};
use crate::mount::{Ended, MountError};
use crate::store::Store;
use crate::web::{Command, Item, Registry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How often the watch folder is looked at.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The library's status file's name in place of an info-hash.
pub const LIBRARY_STATUS: &str = "library";
/// Torrents in one library.
const MAX_TORRENTS: usize = 10_000;

pub struct LibraryConfig {
    pub mountpoint: PathBuf,
    pub data_dir: PathBuf,
    pub watch: Option<PathBuf>,
    pub cache_size: u64,
    pub read_timeout: Option<Duration>,
    pub metadata_timeout: Duration,
    pub engine: EngineConfig,
    pub fuse_options: Vec<String>,
    pub web: Option<crate::web::WebConfig>,
}

/// What the library remembers of an entry (`DATA_DIR/library/<hash>.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    /// The watch folder's file it came from (removed with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    watch: Option<PathBuf>,
    /// A magnet link, until (and after) its metadata arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    magnet: Option<String>,
}

/// A magnet's metadata and the peer that gave it, or why it did not come.
type Fetched = Result<(Metainfo, SocketAddr), String>;

struct Running {
    torrent: Arc<Torrent>,
}

struct Entry {
    record: Record,
    /// `None` while a magnet's metadata is on its way.
    running: Option<Running>,
}

/// A file's time and size.
type Stamp = (std::time::SystemTime, u64);

/// A torrent file's or a magnet link's bytes, read.
enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

fn parse(bytes: &[u8]) -> Result<Source, String> {
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    if text.starts_with("magnet:") {
        return Magnet::parse(text)
            .map(Source::Magnet)
            .map_err(|e| format!("not a magnet link: {e}"));
    }
    Metainfo::from_bytes(bytes)
        .map(Source::Torrent)
        .map_err(|e| format!("not a .torrent file: {e}"))
}

struct Library {
    cfg: LibraryConfig,
    torrents: Arc<Torrents>,
    shelf: Arc<Shelf>,
    registry: Arc<Registry>,
    entries: HashMap<String, Entry>,
    /// Watch folder files seen: the info-hash each added, or, for one that
    /// was not (half-written, say), its size and time then, to try again
    /// once they change.
    watched: HashMap<PathBuf, (Option<String>, Option<Stamp>)>,
    fetched: tokio::sync::mpsc::Sender<(String, Fetched)>,
    stop: tokio::sync::watch::Receiver<bool>,
    /// Entries whose watch folder file was deleted, to remove.
    pending_removals: Vec<String>,
}

fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("library")
}

impl Library {
    fn record_path(&self, ih: &str) -> PathBuf {
        state_dir(&self.cfg.data_dir).join(format!("{ih}.json"))
    }

    fn save(&self, ih: &str, r: &Record) -> Result<(), String> {
        let path = self.record_path(ih);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Adds a torrent (or a magnet, whose metadata is fetched first); the
    /// info-hash.
    fn add(&mut self, bytes: &[u8], watch: Option<PathBuf>) -> Result<String, String> {
        let source = parse(bytes)?;
        let (ih, magnet) = match &source {
            Source::Torrent(m) => (m.info_hash.hex(), None),
            Source::Magnet(m) => (
                m.info_hash.hex(),
                Some(String::from_utf8_lossy(bytes).trim().to_string()),
            ),
        };
        if self.entries.contains_key(&ih) {
            // Known already (added through the API, then dropped in the
            // watch folder, say): it stays where it came from first.
            let waiting = self.entries.get(&ih).is_some_and(|e| e.running.is_none());
            if let (true, Source::Torrent(meta)) = (waiting, source) {
                // A magnet still waiting for its metadata: here it is.
                let kept = crate::mount::kept_metadata(&self.cfg.data_dir, &meta.info_hash);
                crate::mount::keep_metadata(&kept, &meta).map_err(|e| e.to_string())?;
                let running = self.start(Arc::new(meta))?;
                if let Some(e) = self.entries.get_mut(&ih) {
                    e.running = Some(running);
                }
            }
            return Ok(ih);
        }
        if self.entries.len() >= MAX_TORRENTS {
            return Err(format!("the library holds {MAX_TORRENTS} torrents already"));
        }
        let record = Record { watch, magnet };
        self.save(&ih, &record)?;
        match source {
            Source::Torrent(meta) => {
                let kept = crate::mount::kept_metadata(&self.cfg.data_dir, &meta.info_hash);
                crate::mount::keep_metadata(&kept, &meta).map_err(|e| e.to_string())?;
                let running = self.start(Arc::new(meta))?;
                self.entries.insert(
                    ih.clone(),
                    Entry {
                        record,
                        running: Some(running),
                    },
                );
            }
            Source::Magnet(m) => {
                self.fetch(&m);
                self.entries.insert(
                    ih.clone(),
                    Entry {
                        record,
                        running: None,
                    },
                );
            }
        }
        Ok(ih)
    }

    fn start(&self, meta: Arc<Metainfo>) -> Result<Running, String> {
        let (root, state) = crate::mount::data_paths(&self.cfg.data_dir, &meta);
        let store = Store::open(meta.clone(), &root, &state, self.cfg.cache_size)
            .map_err(|e| e.to_string())?;
        let torrent = self
            .torrents
            .start(meta.clone(), Arc::new(store), self.cfg.engine.clone());
        let fs = Arc::new(Fs::new(torrent.clone(), self.cfg.read_timeout));
        let name = self.shelf.add(fs);
        self.registry.put(Item::Ready(torrent.clone()));
        info!(torrent = %meta.name, at = %name, "in the library");
        Ok(Running { torrent })
    }

    /// Fetches a magnet's metadata in the background; the result comes back
    /// on `fetched`.
    fn fetch(&self, m: &Magnet) {
        let own = Some(self.torrents.local_addr());
        let src = crate::mount::magnet_sources(m, &self.cfg.engine, own);
        let name = m.display_name.clone().unwrap_or_else(|| m.info_hash.hex());
        self.registry.put(Item::Waiting {
            info_hash: m.info_hash.hex(),
            name,
            note: format!(
                "fetching the metadata from peers ({} given, {} trackers)",
                src.peers.len(),
                src.trackers.len()
            ),
        });
        let want = crate::magnet::Want::of(m);
        let trackers = crate::mount::magnet_trackers(m);
        let ih = m.info_hash.hex();
        let tx = self.fetched.clone();
        let timeout = self.cfg.metadata_timeout;
        let stop = self.stop.clone();
        // Peers that dial the library's port naming the magnet are asked too.
        let (incoming, fetching) = self.torrents.metadata_peers(want.hashes());
        info!(info_hash = %ih, "fetching a magnet's metadata");
        tokio::spawn(async move {
            let got = crate::magnet::fetch(want, src, timeout, stop, Some(incoming)).await;
            drop(fetching);
            let got = got.map_err(|e| e.to_string()).and_then(|info| {
                let from = info.from;
                let meta = info.into_metainfo(trackers).map_err(|e| e.to_string())?;
                Ok((meta, from))
            });
            let _ = tx.send((ih, got)).await;
        });
    }

    fn fetched(&mut self, ih: String, got: Fetched) {
        let Some(e) = self.entries.get(&ih) else {
            return; // removed meanwhile
        };
        if e.running.is_some() {
            return;
        }
        let (meta, from) = match got {
            Ok(m) => m,
            Err(err) => {
                warn!(info_hash = %ih, error = %err, "a magnet's metadata did not come; it stays in the library and is asked for again at the next start");
                return;
            }
        };
        let kept = crate::mount::kept_metadata(&self.cfg.data_dir, &meta.info_hash);
        if let Err(err) = crate::mount::keep_metadata(&kept, &meta) {
            warn!(error = %err, "keeping a magnet's metadata failed");
        }
        match self.start(Arc::new(meta)) {
            Ok(r) => {
                // The peer that gave the metadata (perhaps one that dialed
                // us, which nothing else names) has the torrent.
                r.torrent.add_peer(from);
                if let Some(e) = self.entries.get_mut(&ih) {
                    e.running = Some(r);
                }
            }
            Err(err) => warn!(info_hash = %ih, error = %err, "starting a torrent failed"),
        }
    }

    async fn remove(&mut self, ih: &str) -> Result<(), String> {
        let ih = ih.to_ascii_lowercase();
        let Some(e) = self.entries.remove(&ih) else {
            return Err(format!("no torrent {ih} in the library"));
        };
        let _ = std::fs::remove_file(self.record_path(&ih));
        self.registry.remove(&ih);
        if let Some(r) = e.running {
            self.shelf.remove(&r.torrent.meta.info_hash);
            self.torrents.remove(&r.torrent);
            r.torrent.shutdown().await;
            info!(torrent = %r.torrent.meta.name, "out of the library");
        }
        Ok(())
    }

    /// The entries of an earlier run.
    fn restore(&mut self) {
        let dir = state_dir(&self.cfg.data_dir);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        names.sort();
        for path in names {
            let Some(ih) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            let Ok(record) = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            else {
                warn!(path = %path.display(), "an unreadable library entry; skipped");
                continue;
            };
            if record.watch.as_ref().is_some_and(|w| !w.exists()) {
                // Its file left the watch folder while we were down.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(w) = &record.watch {
                self.watched.insert(w.clone(), (Some(ih.clone()), None));
            }
            let kept = InfoHash::from_hex(&ih)
                .map(|h| crate::mount::kept_metadata(&self.cfg.data_dir, &h))
                .and_then(|p| std::fs::read(p).ok())
                .and_then(|b| Metainfo::from_bytes(&b).ok());
            let running = match kept {
                Some(meta) => match self.start(Arc::new(meta)) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        warn!(info_hash = %ih, error = %e, "a library torrent did not start");
                        continue;
                    }
                },
                None => {
                    match record.magnet.as_deref().map(Magnet::parse) {
                        Some(Ok(m)) => self.fetch(&m),
                        _ => {
                            warn!(info_hash = %ih, "a library entry without its metadata; skipped");
                            continue;
                        }
                    }
                    None
                }
            };
            self.entries.insert(ih, Entry { record, running });
        }
    }

    /// New and deleted files of the watch folder.
    fn scan(&mut self) {
        let Some(dir) = self.cfg.watch.clone() else {
            return;
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let now: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("torrent" | "magnet")
                )
            })
            .collect();
        for p in &now {
            let stamp = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            match self.watched.get(p) {
                Some((Some(_), _)) => continue,
                Some((None, seen)) if *seen == stamp => continue,
                _ => {}
            }
            let added = match std::fs::read(p) {
                Ok(bytes) => match self.add(&bytes, Some(p.clone())) {
                    Ok(ih) => Some(ih),
                    Err(e) => {
                        warn!(file = %p.display(), error = %e, "not added to the library (tried again when the file changes)");
                        None
                    }
                },
                Err(_) => continue, // being written: next time
            };
            self.watched.insert(p.clone(), (added, stamp));
        }
        // Looked up in a set: in the list that was quadratic, a second's
        // work every second at 10 000 torrents.
        let present: std::collections::HashSet<&PathBuf> = now.iter().collect();
        let gone: Vec<(PathBuf, Option<String>)> = self
            .watched
            .iter()
            .filter(|(p, _)| !present.contains(p))
            .map(|(p, (ih, _))| (p.clone(), ih.clone()))
            .collect();
        for (p, ih) in gone {
            self.watched.remove(&p);
            let from_here = ih
                .as_ref()
                .and_then(|ih| self.entries.get(ih))
                .is_some_and(|e| e.record.watch.as_deref() == Some(p.as_path()));
            if let (true, Some(ih)) = (from_here, ih) {
                self.pending_removals.push(ih);
            }
        }
    }

    /// The library's own line in `btt status` (each torrent has its own
    /// too): how `btt add` finds it, even empty.
    fn write_status(&self) {
        let r = crate::engine::status::Report {
            pid: std::process::id(),
            role: self.cfg.engine.role.clone(),
            torrent: format!("{} torrents", self.entries.len()),
            info_hash: LIBRARY_STATUS.into(),
            http: self.cfg.engine.http.clone(),
            ..Default::default()
        };
        let _ = crate::engine::status::write(&r);
    }

    /// Removes what left the watch folder.
    async fn drain_removals(&mut self) {
        for ih in std::mem::take(&mut self.pending_removals) {
            let _ = self.remove(&ih).await;
        }
    }
}

/// Runs a library mount until unmounted or signalled.
pub fn run(
    mut cfg: LibraryConfig,
    on_ready: impl FnOnce(&crate::mount::Mounted),
) -> Result<Ended, MountError> {
    let mountpoint = crate::mount::check_mountpoint(&cfg.mountpoint, &cfg.fuse_options)?;
    crate::mount::ensure_data_dir(&cfg.data_dir)?;
    std::fs::create_dir_all(state_dir(&cfg.data_dir)).map_err(|source| {
        MountError::KeepMetadata {
            path: state_dir(&cfg.data_dir),
            source,
        }
    })?;
    if let Some(w) = &cfg.watch {
        if !w.is_dir() {
            return Err(MountError::DataDir {
                path: w.clone(),
                why: "is not a folder (--watch)".into(),
            });
        }
    }
    let rt = crate::mount::runtime()?;
    let torrents = rt.block_on(Torrents::listen(cfg.engine.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let registry = Registry::new();
    registry.set_limits(cfg.engine.max_down.clone(), cfg.engine.max_up.clone());
    let web = match &cfg.web {
        Some(w) => Some(rt.block_on(crate::web::start(w, registry.clone(), stop_rx.clone()))?),
        None => None,
    };
    cfg.engine.http = web.as_ref().map(crate::web::Web::status_url);
    crate::mount::start_dht(&rt, &mut cfg.engine, cfg.data_dir.join("dht.json"));
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::channel::<Command>(64);
    registry.set_control(cmd_tx);
    let shelf = Shelf::new();
    let adapter = BttFuse::library(shelf.clone(), rt.handle().clone());
    let fcfg = crate::mount::fuse_config(&cfg.fuse_options, "library");
    let session =
        fuser::Session::new(adapter, &mountpoint, &fcfg).map_err(|source| MountError::Fuse {
            path: mountpoint.clone(),
            source,
        })?;
    let (session_thread, mut done_rx) = crate::mount::spawn_session(session)?;
    let id = crate::mount::mount_id(&mountpoint);
    let (fetched_tx, mut fetched_rx) = tokio::sync::mpsc::channel(64);
    let mut lib = Library {
        cfg,
        torrents: torrents.clone(),
        shelf: shelf.clone(),
        registry: registry.clone(),
        entries: HashMap::new(),
        watched: HashMap::new(),
        fetched: fetched_tx,
        stop: stop_rx,
        pending_removals: Vec::new(),
    };
    let ended = rt.block_on(async {
        lib.restore();
        lib.scan();
        lib.drain_removals().await;
        lib.write_status();
        info!(mountpoint = %mountpoint.display(), torrents = lib.entries.len(), "library mounted");
        on_ready(&crate::mount::Mounted {
            mountpoint: mountpoint.clone(),
            listen: Some(torrents.local_addr()),
            name: format!("a library of {} torrents", lib.entries.len()),
            waiting: false,
            web: web.as_ref().map(crate::web::Web::url),
        });
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).map_err(MountError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(MountError::Runtime)?;
        let mut tick = tokio::time::interval(WATCH_EVERY);
        let ended = loop {
            tokio::select! {
                _ = sigint.recv() => break Ended::Signal,
                _ = sigterm.recv() => break Ended::Signal,
                _ = &mut done_rx => break Ended::Unmounted,
                Some(cmd) = cmd_rx.recv() => match cmd {
                    Command::Add(bytes, reply) => {
                        let _ = reply.send(lib.add(&bytes, None));
                    }
                    Command::Remove(ih, reply) => {
                        let _ = reply.send(lib.remove(&ih).await);
                    }
                },
                Some((ih, got)) = fetched_rx.recv() => lib.fetched(ih, got),
                _ = tick.tick() => {
                    lib.scan();
                    lib.drain_removals().await;
                    lib.write_status();
                    if let Some(id) = &id {
                        if !crate::mount::still_mounted(id) {
                            break Ended::Unmounted;
                        }
                    }
                }
            }
        };
        for e in lib.entries.values() {
            if let Some(r) = &e.running {
                r.torrent.shutdown().await;
            }
        }
        crate::engine::status::remove(LIBRARY_STATUS);
        torrents.stop();
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, MountError>(ended)
    })?;
    let _ = stop_tx.send(true);
    if let Some(buy) = &lib.cfg.engine.buy {
        buy.0.settle(Duration::from_secs(5));
    }
    if ended == Ended::Signal {
        crate::mount::detach(&mountpoint);
    }
    crate::mount::let_session_go(&session_thread);
    crate::mount::stop_dht(&lib.cfg.engine);
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(ended)
}
