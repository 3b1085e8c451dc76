//! Mount orchestration shared by `btt-mount` and `btt demo`: load the torrent, open
//! the store, start the engine, mount through fuser, then wait for the end — a
//! signal, an unmount, or the mount disappearing (`umount -l`) — and shut down in
//! the order that lets blocked reads fail with EIO before the mount goes away.

use crate::engine::{EngineConfig, EngineError, Torrent};
use crate::fs::Fs;
use crate::fuse::{BttFuse, Slot};
use crate::magnet::{MagnetError, Want};
use crate::metainfo::{Magnet, Metainfo, MetainfoError};
use crate::store::{Store, StoreError};
use fuser::{Config, MountOption, SessionACL};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    #[error("cannot read torrent {path}: {source}")]
    ReadTorrent {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid torrent {path}: {source}")]
    Torrent {
        path: PathBuf,
        source: MetainfoError,
    },
    #[error("{path} is a folder, not a .torrent file: to share it, make a torrent of it with `btt create {path}`")]
    TorrentIsFolder { path: PathBuf },
    #[error("{path} is not a .torrent file (those start with `d`: bencode); a magnet link is given in quotes: 'magnet:?xt=urn:btih:…'")]
    NotATorrent { path: PathBuf },
    #[error("--data {path} {why}")]
    DataDir { path: PathBuf, why: String },
    #[error("cannot write the data folder {path} ({source}): give one you can write with --data-dir DIR")]
    DataDirNotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}, where btt seed keeps what it verified ({source}): set XDG_DATA_HOME (or HOME) to a folder you can write")]
    SeedStateNotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount point {path}: {why}")]
    Mountpoint { path: PathBuf, why: String },
    #[error("torrent {path} has {files} files, more than --max-files {max}; a mount holds about 120 bytes per file: raise --max-files if this machine has the memory")]
    TooManyFiles {
        path: PathBuf,
        files: usize,
        max: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("FUSE mount failed at {path}: {source}{}", fuse_hint(.source))]
    Fuse {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Magnet(#[from] MagnetError),
    #[error("cannot keep the metadata at {path}: {source}")]
    KeepMetadata {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug)]
pub struct MountConfig {
    /// A .torrent file, a magnet link, or a file holding a magnet link.
    pub torrent: PathBuf,
    /// How long a magnet link's metadata may take to arrive.
    pub metadata_timeout: Duration,
    pub mountpoint: PathBuf,
    /// Downloads go to `<data_dir>/<info-hash>/`.
    pub data_dir: PathBuf,
    pub cache_size: u64,
    /// Keep downloaded data after unmount (`--no-keep` clears it).
    pub keep: bool,
    pub read_timeout: Option<Duration>,
    /// Torrents with more files are refused (a torrent's size is an attack
    /// on memory too).
    pub max_files: usize,
    pub engine: EngineConfig,
    /// `-o` options, comma-separated lists already split.
    /// The web page, API and streams (`--http`; `None`: `--no-http`).
    pub web: Option<crate::web::WebConfig>,
    pub fuse_options: Vec<String>,
}

/// What `on_ready` learns once the mount answers.
pub struct Mounted {
    pub mountpoint: PathBuf,
    pub listen: Option<std::net::SocketAddr>,
    /// The torrent's name (a magnet's `dn=`, or its info-hash, while its
    /// metadata is on its way).
    pub name: String,
    /// The metadata is on its way (a magnet link).
    pub waiting: bool,
    /// The web page's address, with its token if it needs one.
    pub web: Option<String>,
}

/// What the user named: a torrent, or a magnet link to fetch it from.
pub enum Source {
    Torrent(Metainfo),
    Magnet(Magnet),
}

/// Reads `arg`: a magnet link, a file holding one, or a .torrent file. A
/// magnet whose metadata was fetched before is its kept .torrent (at
/// `kept(info-hash)`).
pub fn resolve(
    arg: &Path,
    kept: impl Fn(&crate::metainfo::InfoHash) -> PathBuf,
) -> Result<Source, MountError> {
    let bad = |source| MountError::Torrent {
        path: arg.to_path_buf(),
        source,
    };
    let magnet = match magnet_or_torrent(arg)? {
        Ok(magnet) => magnet,
        Err(bytes) => return Ok(Source::Torrent(parse_torrent_file(arg, &bytes)?)),
    };
    let m = Magnet::parse(&magnet).map_err(bad)?;
    let kept = kept(&m.info_hash);
    if let Ok(bytes) = std::fs::read(&kept) {
        match Metainfo::from_bytes(&bytes) {
            Ok(meta) if meta.info_hash == m.info_hash => return Ok(Source::Torrent(meta)),
            _ => warn!(path = %kept.display(), "kept metadata is unreadable; fetching it again"),
        }
    }
    Ok(Source::Magnet(m))
}

/// `arg` as a magnet link (itself, or a file holding one), or else the
/// bytes of the file it names.
fn magnet_or_torrent(arg: &Path) -> Result<Result<String, Vec<u8>>, MountError> {
    let text = arg.as_os_str().to_str().unwrap_or("");
    if text.starts_with("magnet:") {
        return Ok(Ok(text.to_string()));
    }
    let bytes = read_torrent_file(arg)?;
    if !bytes.starts_with(b"magnet:") {
        return Ok(Err(bytes));
    }
    Ok(Ok(String::from_utf8_lossy(&bytes).trim().to_string()))
}

/// The magnet link `arg` gives, if it is one (for its `so=`, which a kept
/// .torrent does not carry).
pub fn magnet_of(arg: &Path) -> Option<Magnet> {
    match magnet_or_torrent(arg) {
        Ok(Ok(text)) => Magnet::parse(&text).ok(),
        _ => None,
    }
}

/// The runtime a mount runs on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, MountError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("btt-rt")
        .build()
        .map_err(MountError::Runtime)
}

/// Runs the FUSE session on a thread of its own; the receiver resolves when
/// it ends (the mount was unmounted).
pub(crate) fn spawn_session<F: fuser::Filesystem + Send + 'static>(
    session: fuser::Session<F>,
) -> Result<
    (
        std::thread::JoinHandle<()>,
        tokio::sync::oneshot::Receiver<()>,
    ),
    MountError,
> {
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("btt-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                warn!(error = %e, "FUSE session ended with an error");
            }
            let _ = done_tx.send(());
        })
        .map_err(MountError::Runtime)?;
    Ok((thread, done_rx))
}

/// The session ends once the kernel lets go; readers that still hold files
/// open are not waited for long (the connection dies with our /dev/fuse fd
/// on exit).
pub(crate) fn let_session_go(thread: &std::thread::JoinHandle<()>) {
    let deadline = std::time::Instant::now() + Duration::from_millis(700);
    while !thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches our mount (lazily: readers still holding files let go later).
pub(crate) fn detach(mountpoint: &Path) {
    let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
        .expect("paths have no NUL");
    // SAFETY: c is a valid NUL-terminated path.
    let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if r != 0 {
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .status();
    }
}

/// Where a magnet link's fetched metadata is kept (as a .torrent file).
pub fn kept_metadata(data_dir: &Path, hash: &crate::metainfo::InfoHash) -> PathBuf {
    data_dir.join(format!("{}.torrent", hash.hex()))
}

/// Writes the fetched metadata to `path`, where the next run finds it
/// (atomically: a torn file is never taken for the torrent).
pub(crate) fn keep_metadata(path: &Path, meta: &Metainfo) -> Result<(), MountError> {
    let err = |source| MountError::KeepMetadata {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("torrent.tmp");
    std::fs::write(&tmp, meta.to_torrent_bytes()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The torrent `arg` named, as [`resolve`] found it (before any runtime
/// starts: a wrong argument fails at once); a magnet link's metadata is
/// fetched first, until Ctrl-C or `timeout`, and kept at `kept(info-hash)`.
/// For `btt get` and `btt seed`, which need the metadata before anything.
/// Also returns the peers known to have the torrent (the link's `x.pe=`
/// and the one that gave the metadata), for the engine to dial.
/// With `listener` (bound before, for the engine), the peers that dial it
/// meanwhile are asked too; it is handed back.
pub fn load_or_fetch(
    rt: &tokio::runtime::Runtime,
    source: Source,
    arg: &Path,
    kept: impl Fn(&crate::metainfo::InfoHash) -> PathBuf,
    engine: &EngineConfig,
    timeout: Duration,
    listener: Option<tokio::net::TcpListener>,
) -> Result<Fetched, MountError> {
    let m = match source {
        Source::Torrent(meta) => return Ok((meta, vec![], listener)),
        Source::Magnet(m) => m,
    };
    // The port we listen on (or will, if fixed) is what trackers should hand out.
    let own = match &listener {
        Some(l) => l.local_addr().ok(),
        None => (engine.listen.port() != 0).then_some(engine.listen),
    };
    let src = magnet_sources(&m, engine, own);
    let mut peers = src.peers.clone();
    if !crate::cli::quiet() {
        eprintln!(
            "fetching the metadata of {} from peers ({} given, {} trackers)…",
            m.display_name.as_deref().unwrap_or(&m.info_hash.hex()),
            src.peers.len(),
            src.trackers.len()
        );
    }
    let (info, listener) = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let want = Want::of(&m);
        let fetch = async {
            match listener {
                Some(l) => crate::magnet::fetch_listening(want, src, timeout, stop_rx, l).await,
                None => (
                    crate::magnet::fetch(want, src, timeout, stop_rx, None).await,
                    None,
                ),
            }
        };
        tokio::select! {
            r = fetch => r,
            _ = tokio::signal::ctrl_c() => {
                let _ = stop_tx.send(true);
                (Err(MagnetError::Stopped), None)
            }
        }
    });
    let info = info?;
    peers.push(info.from);
    let meta = info
        .into_metainfo(magnet_trackers(&m))
        .map_err(|source| MountError::Torrent {
            path: arg.to_path_buf(),
            source,
        })?;
    keep_metadata(&kept(&meta.info_hash), &meta)?;
    peers.sort();
    peers.dedup();
    Ok((meta, peers, listener))
}

/// What [`load_or_fetch`] gives: the torrent, the peers known to have it,
/// and the listener it was given.
pub type Fetched = (
    Metainfo,
    Vec<std::net::SocketAddr>,
    Option<tokio::net::TcpListener>,
);

/// A magnet's `tr=` trackers, one tier each.
pub(crate) fn magnet_trackers(m: &Magnet) -> Vec<Vec<String>> {
    m.trackers.iter().map(|t| vec![t.clone()]).collect()
}

/// The sources a magnet's metadata is fetched from.
pub(crate) fn magnet_sources(
    m: &Magnet,
    cfg: &EngineConfig,
    own: Option<std::net::SocketAddr>,
) -> crate::magnet::Sources {
    let mut peers = cfg.peers.clone();
    peers.extend(
        m.peers
            .iter()
            .filter_map(|p| p.parse::<std::net::SocketAddr>().ok()),
    );
    crate::magnet::Sources {
        peers,
        trackers: if cfg.use_trackers {
            magnet_trackers(m)
        } else {
            vec![]
        },
        peer_id: crate::new_peer_id(),
        port: own.map_or(0, |a| a.port()),
        own,
        announce_timeout: cfg.announce_timeout,
        dht: cfg.dht.clone(),
        lsd: cfg.lsd.clone(),
    }
}

/// `$XDG_DATA_HOME/btt`, else `~/.local/share/btt`.
/// What a user without the rights to mount can do about it.
fn fuse_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "; mounting needs read and write access to /dev/fuse, a mount point you own (or can write to), and for -o allow_other `user_allow_other` in /etc/fuse.conf"
        }
        _ => "",
    }
}

/// The data folder, made if missing; a folder the user cannot write is
/// said so with what to do, before anything starts.
pub(crate) fn ensure_data_dir(dir: &Path) -> Result<(), MountError> {
    ensure_writable(dir, |path, source| MountError::DataDirNotWritable {
        path,
        source,
    })
}

/// `dir`, made if missing, takes a file; else the error `err` makes.
pub(crate) fn ensure_writable(
    dir: &Path,
    err: impl Fn(PathBuf, std::io::Error) -> MountError,
) -> Result<(), MountError> {
    let err = |source| err(dir.to_path_buf(), source);
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".btt-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(err)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("btt");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    home.join(".local/share/btt")
}

pub fn load_torrent(path: &Path) -> Result<Metainfo, MountError> {
    parse_torrent_file(path, &read_torrent_file(path)?)
}

/// The bytes of the file the user named as the torrent (a folder is a
/// mistake worth its own message).
fn read_torrent_file(path: &Path) -> Result<Vec<u8>, MountError> {
    std::fs::read(path).map_err(|source| match source.raw_os_error() {
        Some(libc::EISDIR) => MountError::TorrentIsFolder {
            path: path.to_path_buf(),
        },
        _ => MountError::ReadTorrent {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// A .torrent file's bytes parsed; a file that is not bencode at all (a
/// text file, a video) is named as such rather than by a decoder's error.
pub(crate) fn parse_torrent_file(path: &Path, bytes: &[u8]) -> Result<Metainfo, MountError> {
    Metainfo::from_bytes(bytes).map_err(|source| match (&source, bytes.first()) {
        (MetainfoError::Bencode(_) | MetainfoError::NotADict, b) if b != Some(&b'd') => {
            MountError::NotATorrent {
                path: path.to_path_buf(),
            }
        }
        _ => MountError::Torrent {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Where a torrent's data and its persisted bitfield live under a data dir.
pub fn data_paths(data_dir: &Path, meta: &Metainfo) -> (PathBuf, PathBuf) {
    let hex = meta.info_hash.hex();
    (
        data_dir.join(&hex),
        data_dir.join(format!("{hex}.bitfield")),
    )
}

/// The mount point, made absolute, if it can take a mount: a directory, not
/// already a live btt mount, empty unless `-o nonempty`. A stale btt mount
/// (its btt-mount was killed) is cleared; another program's stale mount is
/// explained.
pub(crate) fn check_mountpoint(path: &Path, opts: &[String]) -> Result<PathBuf, MountError> {
    let refuse = |why: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        why,
    };
    // Where mountinfo would name it (the mount point itself may not answer).
    let named = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .map(|d| d.join(name))
        .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    };
    if mount_id(&named).is_some() {
        // A btt mount is there: live (its btt-mount answers), or stale (it
        // was killed; the kernel answers ENOTCONN once asked past its caches).
        match std::fs::read_dir(&named) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                let cleared = std::process::Command::new("fusermount3")
                    .args(["-u", "-z", "--"])
                    .arg(&named)
                    .status()
                    .is_ok_and(|s| s.success());
                if !cleared {
                    return Err(refuse(format!(
                        "a stale btt mount that could not be cleared: run `fusermount3 -u {}`",
                        named.display()
                    )));
                }
                info!(mountpoint = %named.display(), "cleared a stale btt mount left by a killed btt-mount");
            }
            _ => {
                return Err(refuse(format!(
                    "already a btt mount (`btt status` lists it): unmount it first (`fusermount3 -u {}`) or pick another directory",
                    named.display()
                )))
            }
        }
    }
    let mp = match std::fs::canonicalize(path) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(refuse(format!(
                "a stale FUSE mount (the program that served it is gone): run `fusermount3 -u {}` and mount again",
                named.display()
            )))
        }
        Err(e) => return Err(refuse(e.to_string())),
        Ok(p) => p,
    };
    if !mp.is_dir() {
        return Err(refuse("not a directory".into()));
    }
    let nonempty = opts
        .iter()
        .flat_map(|o| o.split(','))
        .any(|o| o == "nonempty");
    let has_entries = std::fs::read_dir(&mp)
        .map_err(|e| refuse(e.to_string()))?
        .next()
        .is_some();
    if has_entries && !nonempty {
        return Err(refuse(
            "not empty: mount on an empty directory, or add `-o nonempty` to hide its contents while mounted".into(),
        ));
    }
    Ok(mp)
}

pub(crate) fn fuse_config(opts: &[String], name: &str) -> Config {
    let mut c = Config::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(format!("btt:{name}")),
        MountOption::Subtype("btt".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    for o in opts
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        match o {
            "allow_other" => c.acl = SessionACL::All,
            "allow_root" => c.acl = SessionACL::RootAndOwner,
            "ro" | "rw" => {} // always read-only
            "nonempty" => {}  // checked before mounting; fuse3 mounts over anyway
            "auto_unmount" => c.mount_options.push(MountOption::AutoUnmount),
            "default_permissions" => c.mount_options.push(MountOption::DefaultPermissions),
            "noexec" => c.mount_options.push(MountOption::NoExec),
            "exec" => c.mount_options.push(MountOption::Exec),
            "noatime" => c.mount_options.push(MountOption::NoAtime),
            other => c.mount_options.push(MountOption::CUSTOM(other.to_string())),
        }
    }
    c.n_threads = Some(2);
    c
}

/// The mount id of the FUSE mount at `mountpoint` in /proc/self/mountinfo.
pub(crate) fn mount_id(mountpoint: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .rfind(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // fstype is `fuse` or `fuse.btt` depending on how the mount was made.
            f.len() > 4
                && f[4] == want
                && (l.contains(" - fuse btt:") || l.contains(" - fuse.btt "))
        })
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
}

pub(crate) fn still_mounted(id: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|s| s.lines().any(|l| l.split(' ').next() == Some(id)))
        .unwrap_or(true)
}

/// Why the mount ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Signal,
    Unmounted,
}

fn check_files(meta: &Metainfo, cfg: &MountConfig) -> Result<(), MountError> {
    if meta.files.len() > cfg.max_files {
        return Err(MountError::TooManyFiles {
            path: cfg.torrent.clone(),
            files: meta.files.len(),
            max: cfg.max_files,
        });
    }
    Ok(())
}

/// A mount's running torrent: its engine, store and files.
type Started = (Arc<Torrent>, Arc<Store>, Arc<Fs>);

/// The torrent's store, engine and files, on the listener bound before.
fn start_torrent(
    meta: Arc<Metainfo>,
    cfg: &MountConfig,
    listener: tokio::net::TcpListener,
) -> Result<Started, MountError> {
    let (root, state) = data_paths(&cfg.data_dir, &meta);
    let store = Arc::new(Store::open(meta.clone(), &root, &state, cfg.cache_size)?);
    let torrent = Torrent::start_on(meta, store.clone(), cfg.engine.clone(), listener)?;
    let fs = Arc::new(Fs::new(torrent.clone(), cfg.read_timeout));
    crate::memory::trim();
    Ok((torrent, store, fs))
}

/// What the note in a waiting mount says.
fn waiting_note(m: &Magnet, src: &crate::magnet::Sources, timeout: Duration) -> String {
    format!(
        "btt is fetching the metadata of torrent {hash}{name} from peers \
         ({peers} given, {trackers} trackers). The torrent's files appear here \
         when it arrives; after {secs} s without it the mount ends (see the \
         log, or give --peer HOST:PORT, or --metadata-timeout).\n",
        hash = m.info_hash,
        name = m
            .display_name
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        peers = src.peers.len(),
        trackers = src.trackers.len(),
        secs = timeout.as_secs(),
    )
}

/// Starts the process's DHT node (if the config asks for one) and hands it
/// to the engine config; its routing table is kept at `state_file`. The
/// LSD node too, with `--lsd`.
pub fn start_dht(rt: &tokio::runtime::Runtime, engine: &mut EngineConfig, state_file: PathBuf) {
    if engine.lsd_on {
        let _in_rt = rt.enter();
        engine.lsd = crate::lsd::LsdNode::start_or_warn().map(crate::lsd::LsdRef);
    }
    if let Some(s) = &engine.dht_settings {
        let s = crate::dht::DhtSettings {
            state_file,
            ..s.clone()
        };
        engine.dht = rt
            .block_on(crate::dht::DhtNode::start_or_warn(&s))
            .map(crate::dht::DhtRef);
    }
}

/// A runtime for `btt get` and `btt seed`, with the process's DHT node
/// started on it (see [`start_dht`]).
pub fn runtime_with_dht(
    engine: &mut EngineConfig,
    state_file: PathBuf,
) -> Result<tokio::runtime::Runtime, MountError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(MountError::Runtime)?;
    start_dht(&rt, engine, state_file);
    Ok(rt)
}

/// Stops the DHT node [`start_dht`] started.
pub fn stop_dht(engine: &EngineConfig) {
    if let Some(d) = &engine.dht {
        d.0.stop();
    }
    if let Some(l) = &engine.lsd {
        l.0.stop();
    }
}

/// Mounts and serves until the end; calls `on_ready` once the mount is up
/// (for a magnet link, at once: its files appear when the metadata arrives).
pub fn run(mut cfg: MountConfig, on_ready: impl FnOnce(&Mounted)) -> Result<Ended, MountError> {
    let source = resolve(&cfg.torrent, |h| kept_metadata(&cfg.data_dir, h))?;
    if let Source::Torrent(meta) = &source {
        check_files(meta, &cfg)?;
    }
    let mountpoint = check_mountpoint(&cfg.mountpoint, &cfg.fuse_options)?;
    ensure_data_dir(&cfg.data_dir)?;
    let rt = runtime()?;
    let listener = rt.block_on(Torrent::listen(cfg.engine.listen))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let registry = crate::web::Registry::new();
    registry.set_limits(cfg.engine.max_down.clone(), cfg.engine.max_up.clone());
    let web = match &cfg.web {
        Some(w) => Some(rt.block_on(crate::web::start(w, registry.clone(), stop_rx.clone()))?),
        None => None,
    };
    cfg.engine.http = web.as_ref().map(crate::web::Web::status_url);
    start_dht(&rt, &mut cfg.engine, cfg.data_dir.join("dht.json"));
    let local = listener.local_addr().ok();
    let mut started = None;
    let mut fetching = None;
    let mut listener = Some(listener);
    let (slot, name) = match source {
        Source::Torrent(meta) => {
            let name = meta.name.clone();
            let l = listener.take().expect("listener");
            let t = rt.block_on(async { start_torrent(Arc::new(meta), &cfg, l) })?;
            registry.put(crate::web::Item::Ready(t.0.clone()));
            let slot = Slot::ready(t.2.clone());
            started = Some(t);
            (slot, name)
        }
        Source::Magnet(m) => {
            let src = magnet_sources(&m, &cfg.engine, local);
            let note = waiting_note(&m, &src, cfg.metadata_timeout);
            let slot = Slot::waiting(note.clone());
            let name = m.display_name.clone().unwrap_or_else(|| m.info_hash.hex());
            registry.put(crate::web::Item::Waiting {
                info_hash: m.info_hash.hex(),
                name: name.clone(),
                note: note.trim().to_string(),
            });
            // Who has the torrent is who the engine dials first.
            cfg.engine.peers = src.peers.clone();
            // Peers that dial us meanwhile are asked too; the engine gets
            // the listener back when the metadata is here.
            let fetch = crate::magnet::fetch_listening(
                Want::of(&m),
                src,
                cfg.metadata_timeout,
                stop_rx,
                listener.take().expect("listener"),
            );
            fetching = Some((Box::pin(fetch), magnet_trackers(&m)));
            (slot, name)
        }
    };
    let adapter = BttFuse::new(slot.clone(), rt.handle().clone());
    let fcfg = fuse_config(&cfg.fuse_options, &name);
    let session = match fuser::Session::new(adapter, &mountpoint, &fcfg) {
        Ok(s) => s,
        Err(source) => {
            if let Some((torrent, _, _)) = &started {
                rt.block_on(torrent.shutdown());
            }
            return Err(MountError::Fuse {
                path: mountpoint,
                source,
            });
        }
    };
    let (session_thread, mut done_rx) = spawn_session(session)?;
    let id = mount_id(&mountpoint);
    info!(mountpoint = %mountpoint.display(), %name, waiting = fetching.is_some(), "mounted");
    on_ready(&Mounted {
        mountpoint: mountpoint.clone(),
        listen: local,
        name,
        waiting: fetching.is_some(),
        web: web.as_ref().map(crate::web::Web::url),
    });

    let ended = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).map_err(MountError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(MountError::Runtime)?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let fetch = async {
                match &mut fetching {
                    Some((f, _)) => f.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sigint.recv() => return Ok::<_, MountError>(Ok(Ended::Signal)),
                _ = sigterm.recv() => return Ok(Ok(Ended::Signal)),
                _ = &mut done_rx => return Ok(Ok(Ended::Unmounted)),
                (got, back) = fetch => {
                    let (_, trackers) = fetching.take().expect("fetching");
                    listener = back;
                    let meta = got.map_err(MountError::from).and_then(|info| {
                        if !cfg.engine.peers.contains(&info.from) {
                            cfg.engine.peers.push(info.from);
                        }
                        let meta = info.into_metainfo(trackers).map_err(|source| {
                            MountError::Torrent { path: cfg.torrent.clone(), source }
                        })?;
                        check_files(&meta, &cfg)?;
                        keep_metadata(&kept_metadata(&cfg.data_dir, &meta.info_hash), &meta)?;
                        Ok(meta)
                    });
                    let meta = match meta {
                        Ok(m) => m,
                        Err(e) => return Ok(Err(e)),
                    };
                    info!(name = %meta.name, files = meta.files.len(), "metadata arrived; the files are shown");
                    let Some(l) = listener.take() else {
                        return Ok(Err(MountError::Runtime(std::io::Error::other("the listener was lost"))));
                    };
                    match start_torrent(Arc::new(meta), &cfg, l) {
                        Ok(t) => {
                            slot.set(t.2.clone());
                            registry.put(crate::web::Item::Ready(t.0.clone()));
                            started = Some(t);
                        }
                        Err(e) => return Ok(Err(e)),
                    }
                }
                _ = tick.tick() => {
                    if let Some((_, _, fs)) = &started {
                        if fs.waiting_reads() > 0 {
                            fs.reap_killed_readers();
                        }
                    }
                    if let Some(id) = &id {
                        if !still_mounted(id) {
                            return Ok(Ok(Ended::Unmounted));
                        }
                    }
                }
            }
        }
    })?;
    let _ = stop_tx.send(true);
    let (ended, failed) = match ended {
        Ok(e) => (e, None),
        Err(e) => {
            warn!(error = %e, "giving up");
            (Ended::Signal, Some(e))
        }
    };
    info!(?ended, "unmounting");
    // Fail blocked reads first (they get EIO), then detach the mount.
    rt.block_on(async {
        if let Some((torrent, _, _)) = &started {
            torrent.shutdown().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    if let Some(buy) = &cfg.engine.buy {
        // Pieces that verified are paid for before we go (the seller served
        // them); bounded, so a seller that stopped answering cannot hold us.
        buy.0.settle(Duration::from_secs(5));
    }
    if ended == Ended::Signal {
        detach(&mountpoint);
    }
    let_session_go(&session_thread);
    if let (false, Some((_, store, _))) = (cfg.keep, &started) {
        if let Err(e) = store.delete() {
            warn!(error = %e, "could not delete data (--no-keep)");
        }
    }
    stop_dht(&cfg.engine);
    rt.shutdown_timeout(Duration::from_millis(200));
    match failed {
        Some(e) => Err(e),
        None => Ok(ended),
    }
}
