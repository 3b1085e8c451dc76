//! Mount orchestration shared by `btt-mount` and `btt demo`: load the torrent, open
//! the store, start the engine, mount through fuser, then wait for the end — a
//! signal, an unmount, or the mount disappearing (`umount -l`) — and shut down in
//! the order that lets blocked reads fail with EIO before the mount goes away.

use crate::engine::{EngineConfig, EngineError, Torrent};
use crate::fs::Fs;
use crate::fuse::BttFuse;
use crate::metainfo::{Metainfo, MetainfoError};
use crate::store::{Store, StoreError};
use fuser::{Config, MountOption, SessionACL};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
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
    #[error("mount point {path}: {why}")]
    Mountpoint { path: PathBuf, why: String },
    #[error("torrent {path} has {files} files, more than --max-files {max}; a mount holds about 400 bytes per file: raise --max-files if this machine has the memory")]
    TooManyFiles {
        path: PathBuf,
        files: usize,
        max: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("FUSE mount failed at {path}: {source}")]
    Fuse {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("async runtime: {0}")]
    Runtime(std::io::Error),
}

#[derive(Clone, Debug)]
pub struct MountConfig {
    pub torrent: PathBuf,
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
    pub fuse_options: Vec<String>,
}

/// What `on_ready` learns once the mount answers.
pub struct Mounted {
    pub mountpoint: PathBuf,
    pub listen: Option<std::net::SocketAddr>,
    pub meta: Arc<Metainfo>,
}

/// `$XDG_DATA_HOME/btt`, else `~/.local/share/btt`.
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
    let bytes = std::fs::read(path).map_err(|source| MountError::ReadTorrent {
        path: path.to_path_buf(),
        source,
    })?;
    Metainfo::from_bytes(&bytes).map_err(|source| MountError::Torrent {
        path: path.to_path_buf(),
        source,
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

fn fuse_config(opts: &[String], name: &str) -> Config {
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
fn mount_id(mountpoint: &Path) -> Option<String> {
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

fn still_mounted(id: &str) -> bool {
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

/// Mounts and serves until the end; calls `on_ready` once the mount is up.
pub fn run(cfg: MountConfig, on_ready: impl FnOnce(&Mounted)) -> Result<Ended, MountError> {
    let meta = Arc::new(load_torrent(&cfg.torrent)?);
    if meta.files.len() > cfg.max_files {
        return Err(MountError::TooManyFiles {
            path: cfg.torrent.clone(),
            files: meta.files.len(),
            max: cfg.max_files,
        });
    }
    let mountpoint =
        std::fs::canonicalize(&cfg.mountpoint).map_err(|e| MountError::Mountpoint {
            path: cfg.mountpoint.clone(),
            why: e.to_string(),
        })?;
    if !mountpoint.is_dir() {
        return Err(MountError::Mountpoint {
            path: mountpoint,
            why: "not a directory".into(),
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("btt-rt")
        .build()
        .map_err(MountError::Runtime)?;
    let (root, state) = data_paths(&cfg.data_dir, &meta);
    let store = Arc::new(Store::open(meta.clone(), &root, &state, cfg.cache_size)?);
    let torrent = rt.block_on(Torrent::start(
        meta.clone(),
        store.clone(),
        cfg.engine.clone(),
    ))?;
    let fs = Arc::new(Fs::new(torrent.clone(), cfg.read_timeout));
    crate::memory::trim();
    let adapter = BttFuse::new(fs.clone(), rt.handle().clone());
    let fcfg = fuse_config(&cfg.fuse_options, &meta.name);
    let session = match fuser::Session::new(adapter, &mountpoint, &fcfg) {
        Ok(s) => s,
        Err(source) => {
            rt.block_on(torrent.shutdown());
            return Err(MountError::Fuse {
                path: mountpoint,
                source,
            });
        }
    };
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let session_thread = std::thread::Builder::new()
        .name("btt-fuse".into())
        .spawn(move || {
            if let Err(e) = session.run() {
                warn!(error = %e, "FUSE session ended with an error");
            }
            let _ = done_tx.send(());
        })
        .map_err(MountError::Runtime)?;
    let id = mount_id(&mountpoint);
    info!(mountpoint = %mountpoint.display(), name = %meta.name, "mounted");
    on_ready(&Mounted {
        mountpoint: mountpoint.clone(),
        listen: torrent.listen_addr(),
        meta: meta.clone(),
    });

    let ended = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt()).map_err(MountError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(MountError::Runtime)?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = sigint.recv() => return Ok::<_, MountError>(Ended::Signal),
                _ = sigterm.recv() => return Ok(Ended::Signal),
                _ = &mut done_rx => return Ok(Ended::Unmounted),
                _ = tick.tick() => {
                    if fs.waiting_reads() > 0 {
                        fs.reap_killed_readers();
                    }
                    if let Some(id) = &id {
                        if !still_mounted(id) {
                            return Ok(Ended::Unmounted);
                        }
                    }
                }
            }
        }
    })?;
    info!(?ended, "unmounting");
    // Fail blocked reads first (they get EIO), then detach the mount.
    rt.block_on(async {
        torrent.shutdown().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    if let Some(buy) = &cfg.engine.buy {
        // Pieces that verified are paid for before we go (the seller served
        // them); bounded, so a seller that stopped answering cannot hold us.
        buy.0.settle(Duration::from_secs(5));
    }
    if ended == Ended::Signal {
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes())
            .expect("paths have no NUL");
        // SAFETY: c is a valid NUL-terminated path.
        let r = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if r != 0 {
            let _ = std::process::Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(&mountpoint)
                .status();
        }
    }
    // The session ends once the kernel lets go; do not wait long for readers that
    // still hold files open (the connection dies with our /dev/fuse fd on exit).
    let deadline = std::time::Instant::now() + Duration::from_millis(700);
    while !session_thread.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !cfg.keep {
        if let Err(e) = store.delete() {
            warn!(error = %e, "could not delete data (--no-keep)");
        }
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    Ok(ended)
}
