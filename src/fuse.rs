//! Thin `fuser::Filesystem` adapter over [`crate::fs::Fs`].
//!
//! Metadata requests are answered inline (they are in-memory lookups). Each `read`
//! is handed to the tokio runtime and answered from there, so a read waiting on the
//! network never holds fuser's request thread and reads of different files progress
//! independently. Everything that would modify the tree gets EROFS; what
//! programs ask of every file (extended attributes, ioctls, fsync) gets the
//! answer of a read-only filesystem without attributes, quietly (fuser's
//! defaults log a warning per call).
//!
//! Two layouts. A mount of one torrent shows its tree at the root; a mount
//! of a magnet link appears before its metadata has arrived: until then its
//! [`Slot`] is empty and the root holds one small file that says what the
//! mount waits for (answered with no caching, so the torrent's files show as
//! soon as they are known). A library ([`Shelf`]) shows each torrent's top
//! entry at the root (a multi-file torrent's folder, a single file); its
//! torrents come and go, so the root's entries are never cached, and the
//! inodes of a torrent carry its shelf place in their high bits.
//!
//! A file whose pieces are all verified is opened in passthrough mode where
//! the kernel and our privileges allow it ([`crate::passthrough`]): its reads
//! then never reach us.

use crate::fs::{Attr, Fs, FsError, Kind};
use crate::passthrough::IoModes;
use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Content never changes, so the kernel may cache attributes and entries for long.
const TTL: Duration = Duration::from_secs(3600);
/// Largest read the kernel sends us (and its read-ahead), in bytes.
pub const MAX_READ: u32 = 1 << 20;

/// The name of the note shown while the metadata is on its way.
pub const NOTE_NAME: &str = "btt-waiting-for-metadata.txt";
/// Its inode: outside any torrent's table.
const NOTE_INO: u64 = u64::MAX - 1;
/// A library's inodes and handles: the shelf place (from 1) above these
/// bits, the torrent's own number below.
const SHIFT: u32 = 40;

/// The filesystem behind a mount, set once; until then a note.
pub struct Slot {
    fs: std::sync::OnceLock<Arc<Fs>>,
    note: std::sync::Mutex<String>,
    since: std::time::SystemTime,
}

impl Slot {
    pub fn ready(fs: Arc<Fs>) -> Arc<Slot> {
        let s = Slot::waiting(String::new());
        let _ = s.fs.set(fs);
        s
    }

    pub fn waiting(note: String) -> Arc<Slot> {
        Arc::new(Slot {
            fs: Default::default(),
            note: std::sync::Mutex::new(note),
            since: std::time::SystemTime::now(),
        })
    }

    /// The torrent's files replace the note.
    pub fn set(&self, fs: Arc<Fs>) {
        let _ = self.fs.set(fs);
    }

    pub fn set_note(&self, note: String) {
        *self.note.lock().unwrap_or_else(|e| e.into_inner()) = note;
    }

    fn note(&self) -> String {
        self.note.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Shelved {
    /// The root entry's name (the torrent's, made unique on the shelf).
    name: String,
    fs: Arc<Fs>,
    /// The torrent's own inode of its top entry.
    top: u64,
}

/// A library's torrents, each at a place that is never reused.
#[derive(Default)]
pub struct Shelf {
    places: RwLock<Vec<Option<Shelved>>>,
    since: std::sync::OnceLock<std::time::SystemTime>,
}

impl Shelf {
    pub fn new() -> Arc<Shelf> {
        let s = Shelf::default();
        let _ = s.since.set(std::time::SystemTime::now());
        Arc::new(s)
    }

    /// Puts a torrent's files on the shelf; its name there (`name (2)`
    /// when another torrent has the name).
    pub fn add(&self, fs: Arc<Fs>) -> String {
        let want = fs.torrent().meta.name.clone();
        let top = fs
            .lookup(crate::fs::ROOT_INO, &want)
            .map(|a| a.ino)
            .unwrap_or(crate::fs::ROOT_INO);
        let mut places = self.places.write().expect("shelf lock");
        let taken = |n: &str| places.iter().flatten().any(|s| s.name == n);
        let mut name = want.clone();
        let mut k = 2;
        while taken(&name) {
            name = format!("{want} ({k})");
            k += 1;
        }
        places.push(Some(Shelved {
            name: name.clone(),
            fs,
            top,
        }));
        name
    }

    /// Takes a torrent off (by its info-hash); its files vanish at once.
    pub fn remove(&self, info_hash: &crate::metainfo::InfoHash) {
        for p in self.places.write().expect("shelf lock").iter_mut() {
            if p.as_ref()
                .is_some_and(|s| s.fs.torrent().meta.info_hash == *info_hash)
            {
                *p = None;
            }
        }
    }

    pub fn names(&self) -> Vec<String> {
        let places = self.places.read().expect("shelf lock");
        places.iter().flatten().map(|s| s.name.clone()).collect()
    }

    fn at(&self, tag: u64) -> Option<Arc<Fs>> {
        let places = self.places.read().expect("shelf lock");
        places
            .get(tag.checked_sub(1)? as usize)?
            .as_ref()
            .map(|s| s.fs.clone())
    }
}

enum Layout {
    Single(Arc<Slot>),
    Library(Arc<Shelf>),
}

/// Where an inode (or handle) of the mount lives.
enum Route {
    /// A single mount still waiting for its metadata.
    Waiting,
    /// A library's root.
    Shelf(Arc<Shelf>),
    /// Number `inner` of a torrent's own table, at shelf place `tag` (0: a
    /// single mount).
    Fs(Arc<Fs>, u64, u64),
    Gone,
}

pub struct BttFuse {
    layout: Layout,
    rt: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
    /// Whether the kernel took passthrough and we may register files.
    passthrough: AtomicBool,
    modes: Mutex<IoModes<BackingId>>,
}

impl BttFuse {
    pub fn new(slot: Arc<Slot>, rt: tokio::runtime::Handle) -> Self {
        Self::with(Layout::Single(slot), rt)
    }

    /// A library mount of the torrents on `shelf`.
    pub fn library(shelf: Arc<Shelf>, rt: tokio::runtime::Handle) -> Self {
        Self::with(Layout::Library(shelf), rt)
    }

    fn with(layout: Layout, rt: tokio::runtime::Handle) -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        BttFuse {
            layout,
            rt,
            uid,
            gid,
            passthrough: AtomicBool::new(false),
            modes: Mutex::new(IoModes::default()),
        }
    }

    /// Registers the store's file `path` as the backing of an open, where
    /// passthrough works; a refusal for want of privilege or kernel support
    /// turns it off for the mount.
    fn backing(&self, path: Option<std::path::PathBuf>, reply: &ReplyOpen) -> Option<BackingId> {
        if !self.passthrough.load(Ordering::Relaxed) {
            return None;
        }
        let file = std::fs::File::open(path?).ok()?;
        match reply.open_backing(&file) {
            Ok(id) => Some(id),
            Err(e) => {
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPERM | libc::ENOTTY | libc::EOPNOTSUPP | libc::ENOSYS)
                ) {
                    self.passthrough.store(false, Ordering::Relaxed);
                }
                tracing::debug!(error = %e, "passthrough refused; reads go through btt");
                None
            }
        }
    }

    fn route(&self, n: u64) -> Route {
        match &self.layout {
            Layout::Single(slot) => match slot.fs.get() {
                Some(fs) => Route::Fs(fs.clone(), n, 0),
                None => Route::Waiting,
            },
            Layout::Library(shelf) if n == crate::fs::ROOT_INO => Route::Shelf(shelf.clone()),
            Layout::Library(shelf) => {
                let (tag, inner) = (n >> SHIFT, n & ((1 << SHIFT) - 1));
                match shelf.at(tag) {
                    Some(fs) => Route::Fs(fs, inner, tag),
                    None => Route::Gone,
                }
            }
        }
    }

    /// Where a handle of the mount lives (handles have no root).
    fn route_fh(&self, fh: u64) -> Route {
        match &self.layout {
            Layout::Library(shelf) => {
                let (tag, inner) = (fh >> SHIFT, fh & ((1 << SHIFT) - 1));
                match shelf.at(tag) {
                    Some(fs) => Route::Fs(fs, inner, tag),
                    None => Route::Gone,
                }
            }
            Layout::Single(_) => self.route(fh),
        }
    }

    /// The mount's handle for a torrent's own.
    fn outer_fh(tag: u64, fh: u64) -> u64 {
        match tag {
            0 => fh,
            t => (t << SHIFT) | fh,
        }
    }

    /// The mount's inode for a torrent's own `inner`.
    fn outer(tag: u64, inner: u64) -> u64 {
        match (tag, inner) {
            (0, n) => n,
            // A torrent's own root is the library's root.
            (_, crate::fs::ROOT_INO) => crate::fs::ROOT_INO,
            (t, n) => (t << SHIFT) | n,
        }
    }

    fn slot(&self) -> Option<&Arc<Slot>> {
        match &self.layout {
            Layout::Single(s) => Some(s),
            Layout::Library(_) => None,
        }
    }

    fn root_attr(&self, since: std::time::SystemTime) -> FileAttr {
        self.attr(&Attr {
            ino: crate::fs::ROOT_INO,
            kind: Kind::Dir,
            size: 0,
            nlink: 2,
            perm: 0o555,
            mtime: since,
        })
    }

    /// While waiting: the root and the note.
    fn waiting_attr(&self, ino: u64) -> Option<FileAttr> {
        let slot = self.slot()?;
        let (kind, size, nlink, perm) = match ino {
            1 => (Kind::Dir, 0, 2, 0o555),
            NOTE_INO => (Kind::File, slot.note().len() as u64, 1, 0o444),
            _ => return None,
        };
        Some(self.attr(&Attr {
            ino,
            kind,
            size,
            nlink,
            perm,
            mtime: slot.since,
        }))
    }

    fn attr(&self, a: &Attr) -> FileAttr {
        FileAttr {
            ino: INodeNo(a.ino),
            size: a.size,
            blocks: a.size.div_ceil(512),
            atime: a.mtime,
            mtime: a.mtime,
            ctime: a.mtime,
            crtime: a.mtime,
            kind: kind(a.kind),
            perm: a.perm,
            nlink: a.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn outer_attr(&self, mut a: Attr, tag: u64) -> FileAttr {
        a.ino = Self::outer(tag, a.ino);
        self.attr(&a)
    }

    fn shelf_since(shelf: &Shelf) -> std::time::SystemTime {
        *shelf.since.get().unwrap_or(&std::time::UNIX_EPOCH)
    }
}

fn kind(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

impl Filesystem for BttFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(MAX_READ);
        let _ = config.set_max_write(MAX_READ);
        // Backing files may themselves be on a stacked filesystem (overlayfs
        // in a container).
        if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(2).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        match self.route(parent.0) {
            Route::Waiting => match (parent.0, name) {
                (1, NOTE_NAME) => reply.entry(
                    &Duration::ZERO,
                    &self.waiting_attr(NOTE_INO).expect("the note"),
                    Generation(0),
                ),
                _ => reply.error(Errno::ENOENT),
            },
            Route::Shelf(shelf) => {
                let found = {
                    let places = shelf.places.read().expect("shelf lock");
                    places.iter().enumerate().find_map(|(k, p)| {
                        let s = p.as_ref().filter(|s| s.name == name)?;
                        Some((s.fs.clone(), s.top, k as u64 + 1))
                    })
                };
                let Some((fs, top, tag)) = found else {
                    return reply.error(Errno::ENOENT);
                };
                // Torrents come and go: the root's entries are not cached.
                match fs.getattr(top) {
                    Ok(a) => reply.entry(&Duration::ZERO, &self.outer_attr(a, tag), Generation(0)),
                    Err(e) => reply.error(errno(&e)),
                }
            }
            Route::Fs(fs, inner, tag) => match fs.lookup(inner, name) {
                Ok(a) => reply.entry(&TTL, &self.outer_attr(a, tag), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            },
            Route::Gone => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.route(ino.0) {
            Route::Waiting => match self.waiting_attr(ino.0) {
                Some(a) => reply.attr(&Duration::ZERO, &a),
                None => reply.error(Errno::ENOENT),
            },
            Route::Shelf(shelf) => {
                reply.attr(&Duration::ZERO, &self.root_attr(Self::shelf_since(&shelf)))
            }
            Route::Fs(fs, inner, tag) => match fs.getattr(inner) {
                Ok(a) => reply.attr(&TTL, &self.outer_attr(a, tag)),
                Err(e) => reply.error(errno(&e)),
            },
            Route::Gone => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write =
            !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0;
        match self.route(ino.0) {
            Route::Waiting => match (ino.0, write) {
                (NOTE_INO, false) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
                (NOTE_INO, true) => reply.error(Errno::EROFS),
                (1, _) => reply.error(Errno::EISDIR),
                _ => reply.error(Errno::ENOENT),
            },
            Route::Shelf(_) => reply.error(Errno::EISDIR),
            Route::Fs(fs, inner, tag) => match fs.open(inner, write) {
                Ok(fh) => {
                    let fh = FileHandle(Self::outer_fh(tag, fh));
                    let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
                    match modes.open(ino.0, || self.backing(fs.complete_file(inner), &reply)) {
                        Some(id) => {
                            tracing::debug!(ino = ino.0, "opened in passthrough");
                            reply.opened_passthrough(fh, FopenFlags::empty(), id)
                        }
                        // Immutable content: keep the page cache across opens.
                        None => reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE),
                    }
                }
                Err(e) => reply.error(errno(&e)),
            },
            Route::Gone => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (fs, inner) = match self.route_fh(fh.0) {
            Route::Fs(fs, inner, _) => (fs, inner),
            Route::Waiting => {
                let note = self
                    .slot()
                    .map(|s| s.note())
                    .unwrap_or_default()
                    .into_bytes();
                let start = (offset as usize).min(note.len());
                let end = start.saturating_add(size as usize).min(note.len());
                return reply.data(&note[start..end]);
            }
            Route::Shelf(_) | Route::Gone => return reply.error(Errno::EBADF),
        };
        let pid = req.pid();
        self.rt.spawn(async move {
            match fs.read(inner, offset, size, pid).await {
                Ok(data) => reply.data(&data),
                Err(e) => {
                    tracing::debug!(error = %e, offset, size, "read failed");
                    reply.error(errno(&e))
                }
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Route::Fs(fs, inner, _) = self.route_fh(fh.0) {
            fs.release(inner);
        }
        self.modes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(ino.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self.route(ino.0) {
            Route::Waiting => {
                if ino.0 != 1 {
                    return reply.error(Errno::ENOTDIR);
                }
                let entries = [
                    (1, ".", Kind::Dir),
                    (1, "..", Kind::Dir),
                    (NOTE_INO, NOTE_NAME, Kind::File),
                ];
                for (i, (ino, name, k)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*ino), i as u64 + 1, kind(*k), name) {
                        break;
                    }
                }
                reply.ok()
            }
            Route::Shelf(shelf) => {
                let mut entries: Vec<(u64, String, Kind)> =
                    vec![(1, ".".into(), Kind::Dir), (1, "..".into(), Kind::Dir)];
                {
                    let places = shelf.places.read().expect("shelf lock");
                    for (k, s) in places.iter().enumerate() {
                        let Some(s) = s else { continue };
                        let k_ = s.fs.getattr(s.top).map(|a| a.kind).unwrap_or(Kind::Dir);
                        entries.push((Self::outer(k as u64 + 1, s.top), s.name.clone(), k_));
                    }
                }
                for (i, (ino, name, k)) in entries.iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(*ino), i as u64 + 1, kind(*k), name) {
                        break;
                    }
                }
                reply.ok()
            }
            Route::Fs(fs, inner, tag) => {
                let listed = fs.readdir(inner, offset, |ino, next, k, name| {
                    reply.add(INodeNo(Self::outer(tag, ino)), next, kind(k), name)
                });
                match listed {
                    Ok(()) => reply.ok(),
                    Err(e) => reply.error(errno(&e)),
                }
            }
            Route::Gone => reply.error(Errno::ENOENT),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, files) = match &self.layout {
            Layout::Single(slot) => slot.fs.get().map_or((0, 1), |fs| fs.totals()),
            Layout::Library(shelf) => {
                let places = shelf.places.read().expect("shelf lock");
                places
                    .iter()
                    .flatten()
                    .map(|s| s.fs.totals())
                    .fold((0, 1), |(b, f), (b2, f2)| (b + b2, f + f2))
            }
        };
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    /// From the mode bits: nothing is writable, only directories are
    /// searchable (`[ -x file ]` and `find -executable` say what execve does).
    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let perm = match self.route(ino.0) {
            Route::Fs(fs, inner, _) => fs.getattr(inner).ok().map(|a| a.perm),
            Route::Waiting => self.waiting_attr(ino.0).map(|a| a.perm),
            Route::Shelf(_) => Some(0o555),
            Route::Gone => None,
        };
        let Some(perm) = perm else {
            return reply.error(Errno::ENOENT);
        };
        if mask.bits() & libc::W_OK != 0 {
            reply.error(Errno::EROFS)
        } else if mask.bits() & libc::X_OK != 0 && perm & 0o111 == 0 {
            reply.error(Errno::EACCES)
        } else {
            reply.ok()
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so nothing to flush: ENOSYS tells the
        // kernel to stop sending a FLUSH at every close (it counts as success).
        reply.error(Errno::ENOSYS);
    }

    // ---- everything that would write: EROFS ----
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }
    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }
    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }
    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }
    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(Errno::EROFS);
    }
    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _wf: fuser::WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }
    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }
    fn setxattr(
        &self,
        _req: &Request,
        _i: INodeNo,
        _n: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
    fn removexattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
    // No extended attributes (`ls` asks for security.selinux on every file).
    fn getxattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENODATA);
    }
    fn listxattr(&self, _req: &Request, _i: INodeNo, size: u32, reply: ReplyXattr) {
        match size {
            0 => reply.size(0),
            _ => reply.data(&[]),
        }
    }
    // Not a terminal nor a device: what players probe every file with.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in: &[u8],
        _out: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }
    // Nothing is ever written: there is nothing to sync.
    fn fsync(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _d: bool, reply: ReplyEmpty) {
        reply.ok();
    }
    fn fsyncdir(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _d: bool, reply: ReplyEmpty) {
        reply.ok();
    }
    // There are no symbolic links.
    fn readlink(&self, _req: &Request, _i: INodeNo, reply: ReplyData) {
        reply.error(Errno::EINVAL);
    }
}
