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
//! A mount of a magnet link appears before its metadata has arrived: until
//! then its [`Slot`] is empty and the root holds one small file that says
//! what the mount waits for (answered with no caching, so the torrent's
//! files show as soon as they are known).

use crate::fs::{Attr, Fs, FsError, Kind};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request,
};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

/// Content never changes, so the kernel may cache attributes and entries for long.
const TTL: Duration = Duration::from_secs(3600);
/// Largest read the kernel sends us (and its read-ahead), in bytes.
pub const MAX_READ: u32 = 1 << 20;

/// The name of the note shown while the metadata is on its way.
pub const NOTE_NAME: &str = "btt-waiting-for-metadata.txt";
/// Its inode: outside any torrent's table.
const NOTE_INO: u64 = u64::MAX - 1;

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

pub struct BttFuse {
    slot: Arc<Slot>,
    rt: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
}

impl BttFuse {
    pub fn new(slot: Arc<Slot>, rt: tokio::runtime::Handle) -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        BttFuse { slot, rt, uid, gid }
    }

    fn fs(&self) -> Option<&Arc<Fs>> {
        self.slot.fs.get()
    }

    /// While waiting: the root and the note.
    fn waiting_attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, nlink, perm) = match ino {
            1 => (Kind::Dir, 0, 2, 0o555),
            NOTE_INO => (Kind::File, self.slot.note().len() as u64, 1, 0o444),
            _ => return None,
        };
        Some(self.attr(&Attr {
            ino,
            kind,
            size,
            nlink,
            perm,
            mtime: self.slot.since,
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
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        let Some(fs) = self.fs() else {
            return match (parent.0, name) {
                (1, NOTE_NAME) => reply.entry(
                    &Duration::ZERO,
                    &self.waiting_attr(NOTE_INO).expect("the note"),
                    Generation(0),
                ),
                _ => reply.error(Errno::ENOENT),
            };
        };
        match fs.lookup(parent.0, name) {
            Ok(a) => reply.entry(&TTL, &self.attr(&a), Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let Some(fs) = self.fs() else {
            return match self.waiting_attr(ino.0) {
                Some(a) => reply.attr(&Duration::ZERO, &a),
                None => reply.error(Errno::ENOENT),
            };
        };
        match fs.getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &self.attr(&a)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let write =
            !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY) || flags.0 & libc::O_TRUNC != 0;
        let Some(fs) = self.fs() else {
            return match (ino.0, write) {
                (NOTE_INO, false) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
                (NOTE_INO, true) => reply.error(Errno::EROFS),
                (1, _) => reply.error(Errno::EISDIR),
                _ => reply.error(Errno::ENOENT),
            };
        };
        match fs.open(ino.0, write) {
            // Immutable content: keep the page cache across opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
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
        let Some(fs) = self.fs().cloned() else {
            let note = self.slot.note().into_bytes();
            let start = (offset as usize).min(note.len());
            let end = start.saturating_add(size as usize).min(note.len());
            return reply.data(&note[start..end]);
        };
        let pid = req.pid();
        self.rt.spawn(async move {
            match fs.read(fh.0, offset, size, pid).await {
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
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(fs) = self.fs() {
            fs.release(fh.0);
        }
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
        let Some(fs) = self.fs() else {
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
            return reply.ok();
        };
        let listed = fs.readdir(ino.0, offset, |ino, next, k, name| {
            reply.add(INodeNo(ino), next, kind(k), name)
        });
        match listed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, files) = self.fs().map_or((0, 1), |fs| fs.totals());
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }

    /// From the mode bits: nothing is writable, only directories are
    /// searchable (`[ -x file ]` and `find -executable` say what execve does).
    fn access(&self, _req: &Request, ino: INodeNo, mask: fuser::AccessFlags, reply: ReplyEmpty) {
        let perm = match self.fs() {
            Some(fs) => fs.getattr(ino.0).ok().map(|a| a.perm),
            None => self.waiting_attr(ino.0).map(|a| a.perm),
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
        reply.ok();
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
