//! The durable record of which pieces are on disk: a snapshot and a journal.
//!
//! Why two files: a bought piece is recorded before it is paid for, so the
//! buyer makes a record for every group of pieces it writes, many a second.
//! Rewriting the whole bitfield each time costs a temp file, two syncs, a
//! rename and a directory sync; appending to a journal costs one
//! `fdatasync`. The snapshot (the bitfield, replaced through a temp file and a
//! rename) is rewritten only on the first record after opening and when the
//! journal has grown past its limit; the journal is then emptied.
//!
//! A journal record is a piece index and its complement, so a record torn by a
//! crash (or the zeros of an unfinished append) is recognised and the journal
//! is read up to it. Both files start with the torrent's info-hash: the record
//! of another torrent is never applied. Whatever the order a crash leaves the
//! two files in, what they say together is never more than what was synced
//! before it was recorded: the snapshot is durable before the journal is
//! emptied, and journal records are appended only after their data is synced.

use super::{io_err, StoreError};
use crate::bitfield::Bitfield;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

const SNAPSHOT_MAGIC: &[u8; 8] = b"bttbf001";
const JOURNAL_MAGIC: &[u8; 8] = b"bttjr001";
const HEADER: usize = 28;
const RECORD: usize = 8;

/// The journal is folded into the snapshot past this many records (32 KiB).
const COMPACT_AT: usize = 4096;

pub(super) struct Record {
    snapshot: PathBuf,
    journal: PathBuf,
    info_hash: [u8; 20],
    pieces: usize,
    compact_at: usize,
    /// The journal, open for appending since the last snapshot; `None` until
    /// the first record after opening, and after a failed append (whose torn
    /// tail the next snapshot makes harmless).
    open: Option<File>,
    records: usize,
}

impl Record {
    pub(super) fn new(snapshot: &Path, info_hash: [u8; 20], pieces: usize) -> Record {
        Record {
            snapshot: snapshot.to_path_buf(),
            journal: snapshot.with_extension("journal"),
            info_hash,
            pieces,
            compact_at: COMPACT_AT,
            open: None,
            records: 0,
        }
    }

    /// The pieces recorded as on disk (snapshot and journal together), or
    /// `None` if there is no record of this torrent.
    pub(super) fn load(&self) -> Option<Bitfield> {
        let mut bf = std::fs::read(&self.snapshot)
            .ok()
            .filter(|raw| self.header_ok(raw, SNAPSHOT_MAGIC))
            .and_then(|raw| Bitfield::from_bytes(&raw[HEADER..], self.pieces));
        let Some(raw) = std::fs::read(&self.journal)
            .ok()
            .filter(|raw| self.header_ok(raw, JOURNAL_MAGIC))
        else {
            return bf;
        };
        for r in raw[HEADER..].chunks_exact(RECORD) {
            let piece = u32::from_le_bytes(r[..4].try_into().expect("4 bytes"));
            let check = u32::from_le_bytes(r[4..].try_into().expect("4 bytes"));
            if check != !piece || piece as usize >= self.pieces {
                break; // torn by a crash: nothing after it was acknowledged
            }
            bf.get_or_insert_with(|| Bitfield::new(self.pieces))
                .set(piece as usize);
        }
        bf
    }

    fn header_ok(&self, raw: &[u8], magic: &[u8; 8]) -> bool {
        raw.len() >= HEADER && &raw[..8] == magic && raw[8..HEADER] == self.info_hash
    }

    /// Records `new` durably; `all` is every piece on disk including them
    /// (what a snapshot holds). The files of `new` must be synced already.
    pub(super) fn add(&mut self, all: &Bitfield, new: &[usize]) -> Result<(), StoreError> {
        if self.open.is_some() && self.records + new.len() <= self.compact_at {
            let r = self.append(new);
            if r.is_err() {
                self.open = None;
            }
            return r;
        }
        self.open = None;
        self.write_snapshot(all)?;
        self.empty_journal()
    }

    fn append(&mut self, new: &[usize]) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(new.len() * RECORD);
        for &p in new {
            let p = p as u32;
            buf.extend_from_slice(&p.to_le_bytes());
            buf.extend_from_slice(&(!p).to_le_bytes());
        }
        let f = self.open.as_mut().expect("checked by add");
        f.write_all(&buf)
            .and_then(|()| f.sync_data())
            .map_err(io_err(&self.journal))?;
        self.records += new.len();
        Ok(())
    }

    /// Replaces the snapshot: temp file, sync, rename, directory sync.
    fn write_snapshot(&self, all: &Bitfield) -> Result<(), StoreError> {
        let tmp = self.snapshot.with_extension("tmp");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(SNAPSHOT_MAGIC)
            .and_then(|()| f.write_all(&self.info_hash))
            .and_then(|()| f.write_all(all.as_bytes()))
            .and_then(|()| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &self.snapshot).map_err(io_err(&self.snapshot))?;
        // The rename is durable only once the directory is synced.
        self.sync_dir()
    }

    /// Empties the journal (in place: the snapshot now holds its records)
    /// and keeps it open for the records that follow.
    fn empty_journal(&mut self) -> Result<(), StoreError> {
        let existed = self.journal.exists();
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.journal)
            .map_err(io_err(&self.journal))?;
        f.write_all(JOURNAL_MAGIC)
            .and_then(|()| f.write_all(&self.info_hash))
            .and_then(|()| f.sync_data())
            .map_err(io_err(&self.journal))?;
        if !existed {
            // A new file's name must be durable before records go into it.
            self.sync_dir()?;
        }
        self.open = Some(f);
        self.records = 0;
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        match self.snapshot.parent() {
            Some(dir) => File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir)),
            None => Ok(()),
        }
    }

    /// Removes both files (`--no-keep`).
    pub(super) fn remove(&mut self) {
        self.open = None;
        let _ = std::fs::remove_file(&self.snapshot);
        let _ = std::fs::remove_file(&self.journal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: [u8; 20] = [7; 20];

    fn with(bf: &mut Bitfield, new: &[usize]) -> Bitfield {
        for &p in new {
            bf.set(p);
        }
        bf.clone()
    }

    #[test]
    fn records_survive_reopening_and_the_journal_is_folded_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bitfield");
        let mut r = Record::new(&path, HASH, 100);
        r.compact_at = 5;
        assert!(r.load().is_none(), "no record yet");
        let mut all = Bitfield::new(100);
        r.add(&with(&mut all, &[3]), &[3]).unwrap(); // snapshot
        r.add(&with(&mut all, &[4, 9]), &[4, 9]).unwrap(); // journal
        r.add(&with(&mut all, &[99]), &[99]).unwrap();
        assert_eq!(Record::new(&path, HASH, 100).load().unwrap(), all);
        let journal_len = std::fs::metadata(path.with_extension("journal"))
            .unwrap()
            .len();
        assert_eq!(journal_len as usize, HEADER + 3 * RECORD);
        // Past the limit, the snapshot takes all and the journal is emptied.
        r.add(&with(&mut all, &[10, 11, 12]), &[10, 11, 12])
            .unwrap();
        assert_eq!(
            std::fs::metadata(path.with_extension("journal"))
                .unwrap()
                .len() as usize,
            HEADER
        );
        assert_eq!(Record::new(&path, HASH, 100).load().unwrap(), all);
        // A new opening starts with a snapshot of what it is given.
        let mut again = Record::new(&path, HASH, 100);
        again.add(&with(&mut all, &[50]), &[50]).unwrap();
        assert_eq!(Record::new(&path, HASH, 100).load().unwrap(), all);
    }

    #[test]
    fn a_torn_record_ends_the_journal_and_another_torrents_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bitfield");
        let mut r = Record::new(&path, HASH, 100);
        let mut all = Bitfield::new(100);
        r.add(&with(&mut all, &[1]), &[1]).unwrap();
        r.add(&with(&mut all, &[2]), &[2]).unwrap();
        let journal = path.with_extension("journal");
        let mut raw = std::fs::read(&journal).unwrap();
        // An append the crash left as zeros, then a good-looking record after it.
        raw.extend_from_slice(&[0; RECORD]);
        raw.extend_from_slice(&5u32.to_le_bytes());
        raw.extend_from_slice(&(!5u32).to_le_bytes());
        std::fs::write(&journal, &raw).unwrap();
        let got = Record::new(&path, HASH, 100).load().unwrap();
        assert_eq!(got, all, "nothing after the torn record");
        // Half a record at the end is nothing either.
        raw.truncate(HEADER + RECORD + 3);
        std::fs::write(&journal, &raw).unwrap();
        assert_eq!(Record::new(&path, HASH, 100).load().unwrap(), all);
        // A piece index beyond the torrent is not a record of it.
        let mut bad = std::fs::read(&journal).unwrap();
        bad.truncate(HEADER);
        bad.extend_from_slice(&100u32.to_le_bytes());
        bad.extend_from_slice(&(!100u32).to_le_bytes());
        std::fs::write(&journal, &bad).unwrap();
        assert_eq!(Record::new(&path, HASH, 100).load().unwrap().count(), 1);
        // The same files read as another torrent's: nothing.
        assert!(Record::new(&path, [8; 20], 100).load().is_none());
    }

    #[test]
    fn a_journal_without_a_snapshot_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bitfield");
        let mut r = Record::new(&path, HASH, 10);
        let mut all = Bitfield::new(10);
        r.add(&with(&mut all, &[0]), &[0]).unwrap();
        r.add(&with(&mut all, &[7]), &[7]).unwrap();
        std::fs::remove_file(&path).unwrap();
        let got = Record::new(&path, HASH, 10).load().unwrap();
        assert!(got.get(7) && !got.get(0));
        r.remove();
        assert!(Record::new(&path, HASH, 10).load().is_none());
    }
}
