//! Verified pieces on disk and in memory.
//!
//! Layout: the torrent's files live under a content root exactly as other clients
//! lay them out (`root/<name>` or `root/<name>/<path…>`), created sparse at full size
//! on first write, so a finished download is a normal directory tree. The set of
//! pieces known to be on disk is recorded next to it ([`record`]: a snapshot and
//! a journal) and reloaded on remount.
//!
//! All methods block (they do file I/O); the engine calls them from
//! `spawn_blocking`. Blocks are written where they belong as they arrive
//! ([`Store::write_block`]), and a piece is checked by reading it back
//! ([`Store::read_chunks`]), so no piece is ever held whole in memory while
//! it is assembled: with 16 MiB pieces that is what kept memory high. The
//! bytes of a piece not yet verified lie in its files but count for nothing:
//! reads are only of verified pieces, and only pieces checked, synced and
//! recorded are persisted as present (unverified bytes found by a remount
//! are fetched and written over). A bought piece goes through
//! [`Store::write_durable`] before it is paid for, so that what a remount
//! finds on disk is everything that was paid (the buyer never pays twice).

use crate::bitfield::Bitfield;
use crate::metainfo::Metainfo;
use bytes::Bytes;
use lru::LruCache;
use std::fs::{File, OpenOptions};
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod check;
mod pool;
mod record;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("piece {0} is not available")]
    Missing(usize),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct Store {
    meta: Arc<Metainfo>,
    root: PathBuf,
    /// Open handles by file index, and whether each was opened for writing
    /// (a file first opened to read, by a remount serving pieces it has, is
    /// reopened to write). At most [`MAX_OPEN_FILES`], least recently used
    /// closed first: a torrent of a million files read one after another
    /// would otherwise hold a million descriptors.
    files: Mutex<LruCache<usize, Handle>>,
    /// Verified pieces kept in memory, read without a trip to the blocking
    /// pool; `None` when pieces are too large for the cache to hold
    /// [`MIN_CACHED`] of them (the kernel's page cache keeps them then).
    cache: Option<Mutex<LruCache<usize, Bytes>>>,
    on_disk: Mutex<Bitfield>,
    dirty: Mutex<Vec<usize>>,
    /// The record of pieces on disk; also makes flushes one at a time (each
    /// syncs what was written before it, then records it), in order.
    record: Mutex<record::Record>,
}

/// An open file of the torrent, and whether it was opened for writing.
type Handle = (Arc<File>, bool);

/// Most files a store keeps open at once.
const MAX_OPEN_FILES: usize = 256;
/// Fewest pieces worth caching: a cache of one 16 MiB piece costs 16 MiB
/// and spares little (the next read is of another piece).
const MIN_CACHED: u64 = 4;

impl Store {
    /// Opens (creating directories as needed) and loads the persisted bitfield.
    /// `cache_bytes` caps the in-memory piece cache.
    pub fn open(
        meta: Arc<Metainfo>,
        root: &Path,
        state_file: &Path,
        cache_bytes: u64,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        if let Some(dir) = state_file.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let n = meta.num_pieces();
        let entries = cache_bytes / meta.piece_length.max(1);
        let cache = (entries >= MIN_CACHED).then(|| {
            Mutex::new(LruCache::new(
                NonZeroUsize::new(entries as usize).expect("at least MIN_CACHED"),
            ))
        });
        let store = Store {
            files: Mutex::new(LruCache::new(
                NonZeroUsize::new(MAX_OPEN_FILES).expect("not zero"),
            )),
            cache,
            on_disk: Mutex::new(Bitfield::new(n)),
            dirty: Mutex::new(Vec::new()),
            record: Mutex::new(record::Record::new(state_file, meta.info_hash.0, n)),
            root: root.to_path_buf(),
            meta,
        };
        let recorded = store.record.lock().expect("lock").load();
        if let Some(bf) = recorded {
            *store.on_disk.lock().expect("lock") = store.drop_missing(bf);
        }
        Ok(store)
    }

    /// Forgets pieces whose files are gone or too short (deleted behind our back).
    fn drop_missing(&self, bf: Bitfield) -> Bitfield {
        let mut out = Bitfield::new(bf.len());
        for p in bf.ones() {
            let ok = self.meta.piece_slices(p).iter().all(|s| {
                let f = &self.meta.files[s.file];
                f.padding
                    || std::fs::metadata(self.path_of(s.file))
                        .map(|m| m.len() >= f.length)
                        .unwrap_or(false)
            });
            if ok {
                out.set(p);
            }
        }
        out
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path_of(&self, file: usize) -> PathBuf {
        self.root.join(self.meta.rel_path(file))
    }

    /// Pieces persisted as present on disk.
    pub fn on_disk(&self) -> Bitfield {
        self.on_disk.lock().expect("lock").clone()
    }

    fn file(&self, idx: usize, create: bool) -> Result<Arc<File>, StoreError> {
        // Opened under the lock: opens are rare next to reads and writes,
        // and two callers must not open the same file twice.
        let mut open = self.files.lock().expect("lock");
        if let Some((f, writable)) = open.get(&idx) {
            if *writable || !create {
                return Ok(f.clone());
            }
        }
        let path = self.path_of(idx);
        let f = if create {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err(&path))?;
            let len = self.meta.files[idx].length;
            if f.metadata().map_err(io_err(&path))?.len() < len {
                f.set_len(len).map_err(io_err(&path))?;
            }
            f
        } else {
            // Read-only use (seeding someone else's files) must not need write access.
            OpenOptions::new()
                .read(true)
                .open(&path)
                .map_err(io_err(&path))?
        };
        let f = Arc::new(f);
        open.put(idx, (f.clone(), create));
        Ok(f)
    }

    /// Creates every (non-padding) file at full size, sparse: zero-length files
    /// exist at once, and readers of the data dir see the final layout.
    pub fn create_files(&self) -> Result<(), StoreError> {
        for (i, f) in self.meta.files.iter().enumerate() {
            if !f.padding {
                self.file(i, true)?;
            }
        }
        Ok(())
    }

    /// Creates the torrent's empty files (no piece covers them) that `chosen`.
    pub fn create_empty_files(&self, chosen: &dyn Fn(usize) -> bool) -> Result<(), StoreError> {
        for (i, f) in self.meta.files.iter().enumerate() {
            if !f.padding && f.length == 0 && chosen(i) {
                self.file(i, true)?;
            }
        }
        Ok(())
    }

    /// Writes torrent bytes at `offset` (a block as it arrives, checked or
    /// not) to the files under them, creating them as needed.
    pub fn write_block(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        for s in self.meta.slices(offset, data.len() as u64) {
            if self.meta.files[s.file].padding {
                continue;
            }
            let f = self.file(s.file, true)?;
            let from = (s.torrent_offset - offset) as usize;
            f.write_all_at(&data[from..from + s.len as usize], s.file_offset)
                .map_err(io_err(&self.path_of(s.file)))?;
        }
        Ok(())
    }

    /// Whether a verified piece read back whole is worth keeping in memory
    /// (see [`Store::keep`]).
    pub fn caches_pieces(&self) -> bool {
        self.cache.is_some()
    }

    /// Keeps a verified piece, read back whole, in the cache.
    pub fn keep(&self, piece: usize, data: Bytes) {
        self.cache_put(piece, data);
    }

    /// A piece whose blocks are all written verified: the next
    /// [`Store::flush`] syncs and records it.
    pub fn written(&self, piece: usize) {
        self.dirty.lock().expect("lock").push(piece);
    }

    /// Reads `piece` from its files in order, `chunk` bytes at a time (the
    /// last chunk shorter) into one buffer, handing each to `f`: a piece is
    /// checked this way without being held whole.
    pub fn read_chunks(
        &self,
        piece: usize,
        chunk: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        let (base, size) = (self.meta.piece_offset(piece), self.meta.piece_size(piece));
        let mut buf = pool::chunks().take(chunk.max(1).min(size) as usize);
        let r = self.read_chunks_into(&mut buf, base, size, &mut f);
        pool::chunks().give(buf);
        r
    }

    /// [`Store::read_chunks`] of the `size` bytes at `base`, a `buf` at a time.
    fn read_chunks_into(
        &self,
        buf: &mut [u8],
        base: u64,
        size: u64,
        f: &mut impl FnMut(&[u8]),
    ) -> Result<(), StoreError> {
        let mut at = 0;
        while at < size {
            let len = (buf.len() as u64).min(size - at) as usize;
            self.read_disk_into(base + at, &mut buf[..len])?;
            f(&buf[..len]);
            at += len as u64;
        }
        Ok(())
    }

    /// The whole piece, from memory or disk (caching it).
    pub fn read_piece(&self, piece: usize) -> Result<Bytes, StoreError> {
        if let Some(b) = self.in_memory(piece) {
            return Ok(b);
        }
        let data = self.read_disk(piece)?;
        self.cache_put(piece, data.clone());
        Ok(data)
    }

    fn cache_put(&self, piece: usize, data: Bytes) {
        if let Some(c) = &self.cache {
            c.lock().expect("lock").put(piece, data);
        }
    }

    fn in_memory(&self, piece: usize) -> Option<Bytes> {
        self.cache
            .as_ref()
            .and_then(|c| c.lock().expect("lock").get(&piece).cloned())
    }

    /// Torrent bytes `[offset, offset+len)` if every piece under them is in
    /// memory (zero-copy within one piece); `None` if any part needs the disk.
    /// Lets the engine answer cache hits without a trip to the blocking pool.
    pub fn read_range_memory(&self, offset: u64, len: u64) -> Option<Bytes> {
        self.read_range_from(offset, len, false).ok().flatten()
    }

    /// Torrent bytes `[offset, offset+len)` of verified pieces, in one call: from
    /// memory where the piece is there (cached, zero-copy for a single
    /// piece), else only the requested range straight from the files — not cached
    /// here, since the kernel's page cache already keeps it.
    pub fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        Ok(self
            .read_range_from(offset, len, true)?
            .expect("the disk may be read"))
    }

    /// [`Store::read_range`]; without `disk`, `None` at the first piece not in memory.
    fn read_range_from(
        &self,
        offset: u64,
        len: u64,
        disk: bool,
    ) -> Result<Option<Bytes>, StoreError> {
        let pieces = self.meta.pieces_for_range(offset, len);
        let single = pieces.len() == 1;
        // Taken when the first piece is copied (none for a single piece in
        // memory, sliced without a copy).
        let mut out: Option<Vec<u8>> = None;
        let mut at = 0usize;
        for p in pieces {
            let base = self.meta.piece_offset(p);
            let from = offset.max(base);
            let to = (offset + len).min(base + self.meta.piece_size(p));
            let (a, b) = ((from - base) as usize, (to - base) as usize);
            let n = b - a;
            if let Some(data) = self.in_memory(p) {
                if single {
                    return Ok(Some(data.slice(a..b)));
                }
                let buf = out.get_or_insert_with(|| pool::reads().take(len as usize));
                buf[at..at + n].copy_from_slice(&data[a..b]);
            } else {
                if !disk {
                    if let Some(buf) = out {
                        pool::reads().give(buf);
                    }
                    return Ok(None);
                }
                let buf = out.get_or_insert_with(|| pool::reads().take(len as usize));
                self.read_disk_into(from, &mut buf[at..at + n])?;
            }
            at += n;
        }
        Ok(Some(match out {
            Some(mut buf) => {
                // A range past the torrent's end is cut where it ends.
                buf.truncate(at);
                pool::Pool::freeze(pool::reads(), buf)
            }
            None => Bytes::new(),
        }))
    }

    /// Torrent bytes `[offset, offset+len)` from the files, whatever the
    /// cache holds.
    fn read_disk_range(&self, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let mut buf = vec![0u8; len as usize];
        self.read_disk_into(offset, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Fills `buf` with the torrent bytes at `offset` from the files
    /// (padding files read as zeros).
    fn read_disk_into(&self, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        for sl in self.meta.slices(offset, buf.len() as u64) {
            let at = (sl.torrent_offset - offset) as usize;
            if self.meta.files[sl.file].padding {
                buf[at..at + sl.len as usize].fill(0);
                continue;
            }
            self.file(sl.file, false)?
                .read_exact_at(&mut buf[at..at + sl.len as usize], sl.file_offset)
                .map_err(io_err(&self.path_of(sl.file)))?;
        }
        Ok(())
    }

    /// Reads a piece from disk without touching the cache.
    pub fn read_disk(&self, piece: usize) -> Result<Bytes, StoreError> {
        self.read_disk_range(self.meta.piece_offset(piece), self.meta.piece_size(piece))
    }

    /// Hashes a piece on disk; used to check existing data before seeding.
    pub fn verify_on_disk(&self, piece: usize) -> bool {
        match self.read_disk(piece) {
            Ok(d) => self.meta.piece_ok(piece, &d),
            Err(_) => false,
        }
    }

    /// Hashes every piece whose files exist; marks the good ones as on disk.
    pub fn recheck(&self) -> Bitfield {
        let mut bf = Bitfield::new(self.meta.num_pieces());
        for p in 0..self.meta.num_pieces() {
            if self.verify_on_disk(p) {
                bf.set(p);
            }
        }
        *self.on_disk.lock().expect("lock") = bf.clone();
        bf
    }

    /// Treats every piece as present without hashing (`btt seed
    /// --seed-unverified`, like aria2c's option of that name): for data the
    /// operator vouches for, and for tests of peers that send bad data.
    pub fn assume_complete(&self) -> Bitfield {
        let bf = Bitfield::full(self.meta.num_pieces());
        *self.on_disk.lock().expect("lock") = bf.clone();
        bf
    }

    /// Syncs files written since the last call, then records their pieces
    /// durably, so a crash never records unwritten data.
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut record = self.record.lock().expect("lock");
        let written: Vec<usize> = std::mem::take(&mut *self.dirty.lock().expect("lock"));
        if written.is_empty() {
            return Ok(());
        }
        // Pieces count as on disk only once the record of them is durable;
        // if any step fails they stay dirty for the next flush.
        match self.persist(&mut record, &written) {
            Ok(()) => {
                let mut bf = self.on_disk.lock().expect("lock");
                for &p in &written {
                    bf.set(p);
                }
                Ok(())
            }
            Err(e) => {
                self.dirty.lock().expect("lock").extend(written);
                Err(e)
            }
        }
    }

    /// Syncs the files of `written`, then records them.
    fn persist(&self, record: &mut record::Record, written: &[usize]) -> Result<(), StoreError> {
        let mut files = std::collections::BTreeSet::new();
        for &p in written {
            for s in self.meta.piece_slices(p) {
                if !self.meta.files[s.file].padding {
                    files.insert(s.file);
                }
            }
        }
        for i in files {
            self.file(i, true)?
                .sync_data()
                .map_err(io_err(&self.path_of(i)))?;
        }
        let mut all = self.on_disk.lock().expect("lock").clone();
        for &p in written {
            all.set(p);
        }
        record.add(&all, written)
    }

    /// Makes a verified piece, all of whose blocks are written, durable:
    /// synced and recorded in the state file before this returns. The buyer
    /// pays for a piece only after this, so a crash at any point never
    /// leaves a paid piece unrecorded (which a remount would buy again).
    /// Concurrent callers share flushes (group commit).
    pub fn write_durable(&self, piece: usize) -> Result<(), StoreError> {
        self.written(piece);
        self.start_writeback(piece);
        self.flush()?;
        if self.on_disk.lock().expect("lock").get(piece) {
            Ok(())
        } else {
            Err(StoreError::Missing(piece))
        }
    }

    /// Starts writing `piece`'s pages to disk without waiting for them, so
    /// that while another flush syncs, this piece's I/O is under way and its
    /// own sync finds little left. Errors are left to that sync to report.
    fn start_writeback(&self, piece: usize) {
        use std::os::fd::AsRawFd;
        for s in self.meta.piece_slices(piece) {
            if self.meta.files[s.file].padding {
                continue;
            }
            if let Ok(f) = self.file(s.file, true) {
                // SAFETY: `f` is an open file for the whole call; the call
                // only queues its pages for writing.
                unsafe {
                    libc::sync_file_range(
                        f.as_raw_fd(),
                        s.file_offset as libc::off64_t,
                        s.len as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
        }
    }

    /// `--no-keep`: remove the downloaded data and state.
    pub fn delete(&self) -> Result<(), StoreError> {
        self.files.lock().expect("lock").clear();
        self.record.lock().expect("lock").remove();
        std::fs::remove_dir_all(&self.root).map_err(io_err(&self.root))
    }
}

#[cfg(test)]
impl Store {
    /// A verified piece's bytes written as the engine writes them.
    fn put_verified(&self, piece: usize, data: &[u8]) -> Result<(), StoreError> {
        self.write_block(self.meta.piece_offset(piece), data)?;
        self.written(piece);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::create::{create_torrent, CreateOptions};

    /// A buffer one torrent's store read into and gave back is the next
    /// one another torrent's store reads into: the pools are shared, not
    /// a pair per torrent. (Other tests share the pools too, so a few
    /// tries.)
    #[test]
    fn stores_of_different_torrents_share_their_kept_buffers() {
        let src = tempfile::tempdir().unwrap();
        let stores: Vec<Store> = (0..2u8)
            .map(|i| {
                let f = src.path().join(format!("f{i}"));
                std::fs::write(&f, vec![i; 40_000]).unwrap();
                let opts = CreateOptions {
                    piece_length: Some(16384),
                    ..Default::default()
                };
                let meta =
                    Arc::new(Metainfo::from_bytes(&create_torrent(&f, &opts).unwrap()).unwrap());
                let st =
                    Store::open(meta, src.path(), &src.path().join(format!("s{i}")), 1).unwrap();
                assert!(st.recheck().is_complete());
                st
            })
            .collect();
        let shared = (0..50).any(|_| {
            let a = stores[0].read_range(0, 20_000).unwrap();
            let at = a.as_ptr();
            drop(a);
            let b = stores[1].read_range(0, 20_000).unwrap();
            assert_eq!(&b[..], &[1u8; 20_000][..]);
            b.as_ptr() == at
        });
        assert!(
            shared,
            "the second store never reused the first one's buffer"
        );
    }

    #[test]
    fn write_read_persist_and_resume() {
        let src = tempfile::tempdir().unwrap();
        let dir = src.path().join("t");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let a: Vec<u8> = (0..40_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(dir.join("a"), &a).unwrap();
        std::fs::write(dir.join("sub/b"), b"xyz").unwrap();
        std::fs::write(dir.join("z"), b"").unwrap();
        let t = create_torrent(
            &dir,
            &CreateOptions {
                piece_length: Some(16384),
                ..Default::default()
            },
        )
        .unwrap();
        let meta = Arc::new(Metainfo::from_bytes(&t).unwrap());
        // Seeding from the source tree: all pieces verify.
        let seed = Store::open(
            meta.clone(),
            src.path(),
            &src.path().join("s.state"),
            1 << 20,
        )
        .unwrap();
        assert!(seed.recheck().is_complete());

        let out = tempfile::tempdir().unwrap();
        let state = out.path().join("state");
        let st = Store::open(meta.clone(), &out.path().join("data"), &state, 1 << 20).unwrap();
        st.create_files().unwrap();
        assert_eq!(
            std::fs::metadata(out.path().join("data/t/z"))
                .unwrap()
                .len(),
            0
        );
        for p in 0..meta.num_pieces() {
            let d = seed.read_piece(p).unwrap();
            st.put_verified(p, &d).unwrap();
            assert_eq!(st.read_piece(p).unwrap(), d, "readable once written");
        }
        st.flush().unwrap();
        assert_eq!(std::fs::read(out.path().join("data/t/a")).unwrap(), a);
        // Read back in chunks (across files, the last one short), the same.
        for p in 0..meta.num_pieces() {
            let mut back = Vec::new();
            st.read_chunks(p, 5000, |c| back.extend_from_slice(c))
                .unwrap();
            assert_eq!(back, seed.read_piece(p).unwrap(), "piece {p}");
        }
        // Ranges across pieces and files, from memory and from disk alike.
        let all: Vec<u8> = [&a[..], b"xyz"].concat();
        for (off, len) in [
            (0u64, 10u64),
            (16380, 10),
            (39_999, 4),
            (0, 40_003),
            (20_000, 20_003),
        ] {
            let got = st.read_range(off, len).unwrap();
            assert_eq!(
                &got[..],
                &all[off as usize..(off + len) as usize],
                "{off}+{len}"
            );
        }
        let cold = Store::open(meta.clone(), &out.path().join("data"), &state, 1 << 20).unwrap();
        assert_eq!(
            &cold.read_range(16_000, 20_000).unwrap()[..],
            &all[16_000..36_000]
        );
        assert_eq!(
            std::fs::read(out.path().join("data/t/sub/b")).unwrap(),
            b"xyz"
        );
        drop(st);
        let again = Store::open(meta.clone(), &out.path().join("data"), &state, 1 << 20).unwrap();
        assert!(again.on_disk().is_complete(), "bitfield resumes");
        std::fs::remove_file(out.path().join("data/t/sub/b")).unwrap();
        let again = Store::open(meta, &out.path().join("data"), &state, 1 << 20).unwrap();
        assert!(
            !again.on_disk().is_complete(),
            "pieces of a deleted file are forgotten"
        );
    }
}

#[cfg(test)]
mod write_after_read {
    use super::*;
    use crate::create::{create_torrent, CreateOptions};

    /// A remount reads pieces it has from disk (opening the file for
    /// reading), then writes new pieces of the same file: the writes must not
    /// go to the read-only handle ("Bad file descriptor").
    #[test]
    fn writes_after_a_disk_read_of_the_same_file() {
        let src = tempfile::tempdir().unwrap();
        let a: Vec<u8> = (0..65_536u32).map(|i| (i * 13) as u8).collect();
        std::fs::write(src.path().join("a"), &a).unwrap();
        let t = create_torrent(
            &src.path().join("a"),
            &CreateOptions {
                piece_length: Some(16384),
                ..Default::default()
            },
        )
        .unwrap();
        let meta = Arc::new(Metainfo::from_bytes(&t).unwrap());
        let seed = Store::open(meta.clone(), src.path(), &src.path().join("s"), 1).unwrap();
        assert!(seed.recheck().is_complete());
        let out = tempfile::tempdir().unwrap();
        let (root, state) = (out.path().join("data"), out.path().join("state"));
        let st = Store::open(meta.clone(), &root, &state, 1).unwrap();
        st.put_verified(0, &seed.read_piece(0).unwrap()).unwrap();
        st.flush().unwrap();
        drop(st);
        // The remount: piece 0 from disk, then pieces 1..4 written.
        let st = Store::open(meta.clone(), &root, &state, 1).unwrap();
        assert!(st.on_disk().get(0));
        assert_eq!(&st.read_range(0, 100).unwrap()[..], &a[..100]);
        for p in 1..4 {
            st.put_verified(p, &seed.read_piece(p).unwrap())
                .expect("write after a read-only open");
        }
        st.flush().unwrap();
        drop(st);
        let st = Store::open(meta, &root, &state, 1).unwrap();
        assert!(st.on_disk().is_complete(), "every piece recorded");
        assert_eq!(std::fs::read(root.join("a")).unwrap(), a);
    }
}

#[cfg(test)]
mod many_files {
    use super::*;
    use crate::create::{create_torrent, CreateOptions};

    /// More files than the store keeps open: each is opened when needed,
    /// the least recently used closed, and reads and writes stay right.
    #[test]
    fn open_files_are_bounded() {
        let src = tempfile::tempdir().unwrap();
        let dir = src.path().join("t");
        let n = MAX_OPEN_FILES + 44;
        for i in 0..n {
            std::fs::create_dir_all(dir.join(format!("d{}", i % 7))).unwrap();
            let body: Vec<u8> = (0..1000u32).map(|j| (i as u32 * 31 + j) as u8).collect();
            std::fs::write(dir.join(format!("d{}/f{i}", i % 7)), body).unwrap();
        }
        let t = create_torrent(
            &dir,
            &CreateOptions {
                piece_length: Some(16384),
                ..Default::default()
            },
        )
        .unwrap();
        let meta = Arc::new(Metainfo::from_bytes(&t).unwrap());
        let seed = Store::open(meta.clone(), src.path(), &src.path().join("s"), 1).unwrap();
        assert!(seed.recheck().is_complete());
        assert!(seed.files.lock().unwrap().len() <= MAX_OPEN_FILES);
        let out = tempfile::tempdir().unwrap();
        let st = Store::open(meta.clone(), out.path(), &out.path().join("state"), 1).unwrap();
        st.create_files().unwrap();
        for p in 0..meta.num_pieces() {
            st.put_verified(p, &seed.read_piece(p).unwrap()).unwrap();
        }
        st.flush().unwrap();
        assert!(st.files.lock().unwrap().len() <= MAX_OPEN_FILES);
        for i in 0..n {
            let rel = format!("t/d{}/f{i}", i % 7);
            assert_eq!(
                std::fs::read(out.path().join(&rel)).unwrap(),
                std::fs::read(src.path().join(&rel)).unwrap(),
                "{rel}"
            );
        }
    }
}
