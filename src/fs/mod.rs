//! File semantics over the engine: an inode table built once from the metainfo,
//! open handles with a read-ahead window each, and `read` mapped onto torrent bytes.
//!
//! The inode table (`tree`) is sized for torrents with a million files.
//!
//! Nothing here knows fuser's types. Metadata calls (`lookup`, `getattr`, `readdir`,
//! `statfs`) answer from memory and never wait on the network. `read` waits for the
//! pieces under it; the read-ahead window grows while a handle reads sequentially
//! and snaps back after a seek (the shape of mountpoint-s3's prefetcher).

pub mod readahead;
mod tree;

pub use readahead::{ReadAhead, ReadAheadConfig};
use tree::Tree;

use crate::engine::{EngineError, Torrent};
use crate::metainfo::Metainfo;
use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

pub const ROOT_INO: u64 = 1;
/// Bytes at the end of a file fetched when it is opened (see [`Fs::open`]).
const TAIL: u64 = 1 << 20;
/// Smallest file whose tail is fetched on open (in smaller ones the first
/// reads' read-ahead soon gets there).
const TAIL_FROM: u64 = 4 << 20;
/// The picker window of a handle's tail, beside its read-ahead window.
const TAIL_KEY: u64 = 1 << 63;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only filesystem")]
    ReadOnly,
    #[error("bad file handle")]
    BadHandle,
    #[error("timed out waiting for pieces")]
    TimedOut,
    #[error("unmounting")]
    Shutdown,
    #[error("interrupted")]
    Interrupted,
    #[error("I/O error: {0}")]
    Io(String),
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle => libc::EBADF,
            FsError::Interrupted => libc::EINTR,
            FsError::TimedOut | FsError::Shutdown | FsError::Io(_) => libc::EIO,
        }
    }
}

impl From<EngineError> for FsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Shutdown => FsError::Shutdown,
            EngineError::TimedOut => FsError::TimedOut,
            other => FsError::Io(other.to_string()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

#[derive(Clone, Debug)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub nlink: u32,
    pub perm: u16,
    pub mtime: SystemTime,
}

struct Handle {
    file: usize,
    readahead: ReadAhead,
    /// When a read of this handle last timed out, and the bytes it wanted.
    timed_out: Option<(std::time::Instant, std::ops::Range<u64>)>,
}

/// How long a read waits that repeats one which just timed out: the kernel
/// reads a failed page again at once, which would otherwise double the
/// timeout the user set.
const RETRY_WAIT: Duration = Duration::from_millis(200);

/// A read waiting on the network, so a killed reader can be let go (see `watch_interrupts`).
struct Waiting {
    pid: u32,
    cancel: Option<oneshot::Sender<()>>,
}

pub struct Fs {
    meta: Arc<Metainfo>,
    torrent: Arc<Torrent>,
    tree: Tree,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiting>>,
    next_wait: AtomicU64,
    pub read_timeout: Option<Duration>,
    pub readahead: ReadAheadConfig,
    mtime: SystemTime,
}

impl Fs {
    pub fn new(torrent: Arc<Torrent>, read_timeout: Option<Duration>) -> Fs {
        let meta = torrent.meta.clone();
        let tree = Tree::new(meta.clone());
        let mtime = meta
            .creation_date
            .filter(|&d| d > 0)
            .map(|d| SystemTime::UNIX_EPOCH + Duration::from_secs(d as u64))
            .unwrap_or_else(SystemTime::now);
        Fs {
            meta,
            torrent,
            tree,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            next_wait: AtomicU64::new(1),
            read_timeout,
            readahead: ReadAheadConfig::default(),
            mtime,
        }
    }

    pub fn torrent(&self) -> &Arc<Torrent> {
        &self.torrent
    }

    pub fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let n = self.tree.info(ino)?;
        Ok(Attr {
            ino,
            kind: n.kind,
            size: n.size,
            nlink: n.nlink,
            perm: if n.kind == Kind::Dir { 0o555 } else { 0o444 },
            mtime: self.mtime,
        })
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr, FsError> {
        self.getattr(self.tree.lookup(parent, name)?)
    }

    /// The entries of directory `ino` from position `offset` on (0 is `.`,
    /// 1 is `..`, then the children by name), each given to `add` with the
    /// offset of the entry after it, until `add` says the reply is full.
    pub fn readdir(
        &self,
        ino: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, Kind, &str) -> bool,
    ) -> Result<(), FsError> {
        let parent = self.tree.info(ino)?.parent;
        let children = self
            .tree
            .children(ino, (offset as usize).saturating_sub(2))?;
        let dots = [(ino, "."), (parent, "..")];
        for (i, (c, name)) in dots.iter().enumerate().skip(offset as usize) {
            if add(*c, i as u64 + 1, Kind::Dir, name) {
                return Ok(());
            }
        }
        for (next, (c, kind, name)) in (offset.max(2) + 1..).zip(children) {
            if add(c, next, kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// (total bytes, number of files) for statfs.
    pub fn totals(&self) -> (u64, u64) {
        (self.meta.total_length, self.tree.node_count() as u64)
    }

    /// Opens a file. A large one also gets its last [`TAIL`] bytes fetched
    /// at once, beside what is read first: a player's first step after the
    /// header is a seek there (an mp4's index, written after the data; an
    /// mkv's cues), so that seek finds them here.
    pub fn open(&self, ino: u64, write: bool) -> Result<u64, FsError> {
        let n = self.tree.info(ino)?;
        if write {
            return Err(FsError::ReadOnly);
        }
        let file = n.file.ok_or(FsError::IsDir)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let f = &self.meta.files[file];
        if f.length >= TAIL_FROM {
            let tail = self.meta.pieces_for_range(f.end() - TAIL, TAIL);
            self.torrent.set_window(fh | TAIL_KEY, tail);
        }
        self.handles.lock().expect("lock").insert(
            fh,
            Handle {
                file,
                readahead: ReadAhead::new(self.readahead),
                timed_out: None,
            },
        );
        Ok(fh)
    }

    /// The store's file under `ino` when every piece under it is verified:
    /// its bytes there are final, and the kernel may read them itself (see
    /// [`crate::passthrough`]).
    pub fn complete_file(&self, ino: u64) -> Option<PathBuf> {
        let file = self.tree.info(ino).ok()?.file?;
        let f = &self.meta.files[file];
        let pieces = self.meta.pieces_for_range(f.offset, f.length);
        (f.length > 0 && !f.padding && self.torrent.has_pieces(pieces))
            .then(|| self.torrent.store.path_of(file))
    }

    pub fn release(&self, fh: u64) {
        self.handles.lock().expect("lock").remove(&fh);
        self.torrent.clear_window(fh);
        self.torrent.clear_window(fh | TAIL_KEY);
    }

    /// Reads `size` bytes at `offset` of the file open as `fh`. `pid` is the reading
    /// thread, watched so a killed reader stops waiting.
    pub async fn read(&self, fh: u64, offset: u64, size: u32, pid: u32) -> Result<Bytes, FsError> {
        let (file, window, retry) = {
            let mut hs = self.handles.lock().expect("lock");
            let h = hs.get_mut(&fh).ok_or(FsError::BadHandle)?;
            let window = h.readahead.on_read(offset, size as u64);
            let end = offset.saturating_add(size as u64);
            let retry = match (&h.timed_out, self.read_timeout) {
                (Some((at, r)), Some(t)) => at.elapsed() < t && r.start < end && offset < r.end,
                _ => false,
            };
            (h.file, window, retry)
        };
        let f = &self.meta.files[file];
        if offset >= f.length {
            return Ok(Bytes::new());
        }
        let len = (size as u64).min(f.length - offset);
        let start = f.offset + offset;
        let timeout = match retry {
            true => Some(RETRY_WAIT),
            false => self.read_timeout,
        };
        // Read-ahead: the window after this read, clipped to the file.
        let ra_start = start + len;
        let ra_end = (ra_start + window).min(f.end());
        let pieces = if ra_end > ra_start {
            self.meta.pieces_for_range(ra_start, ra_end - ra_start)
        } else {
            0..0
        };
        self.torrent.set_window(fh, pieces);

        let id = self.next_wait.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("lock").insert(
            id,
            Waiting {
                pid,
                cancel: Some(tx),
            },
        );
        let read = self.torrent.read(start, len);
        let res = tokio::select! {
            r = read => r.map_err(FsError::from),
            _ = rx => Err(FsError::Interrupted),
            _ = sleep_opt(timeout) => Err(FsError::TimedOut),
        };
        self.waiting.lock().expect("lock").remove(&id);
        if matches!(res, Err(FsError::TimedOut)) {
            if let Some(h) = self.handles.lock().expect("lock").get_mut(&fh) {
                h.timed_out = Some((std::time::Instant::now(), offset..offset + len));
            }
            if !retry {
                let why = self
                    .torrent
                    .waiting_for(self.meta.pieces_for_range(start, len));
                tracing::warn!(
                    file = %self.meta.rel_path(file).display(),
                    offset,
                    "a read timed out after {:?} (input/output error): {why}",
                    self.read_timeout.unwrap_or_default()
                );
            }
        }
        res
    }

    /// Lets go of reads whose thread has a fatal signal pending (killed while
    /// waiting). fuser 0.18 answers FUSE_INTERRUPT with ENOSYS itself, after which
    /// the kernel stops sending interrupts; a killed reader then sits in the kernel
    /// until its request is answered, so we look for it ourselves.
    pub fn reap_killed_readers(&self) {
        let mut w = self.waiting.lock().expect("lock");
        for wait in w.values_mut() {
            if wait.cancel.is_some() && fatal_signal_pending(wait.pid) {
                if let Some(c) = wait.cancel.take() {
                    let _ = c.send(());
                }
            }
        }
    }

    pub fn waiting_reads(&self) -> usize {
        self.waiting.lock().expect("lock").len()
    }
}

async fn sleep_opt(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// True if thread `tid` is gone or has SIGKILL pending (how the kernel marks a
/// thread whose process is dying from any fatal signal).
pub fn fatal_signal_pending(tid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    let sigkill = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|l| {
        let (k, v) = l.split_once(':').unwrap_or(("", ""));
        (k == "SigPnd" || k == "ShdPnd")
            && u64::from_str_radix(v.trim(), 16).is_ok_and(|m| m & sigkill != 0)
    })
}
