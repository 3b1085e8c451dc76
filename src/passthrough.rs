//! Which opens of a mounted file go straight to its file in the store.
//!
//! Once every piece under a file is verified, its bytes in the store are the
//! torrent's and never change, so the kernel may read them itself: FUSE
//! passthrough (Linux 6.9 and later, and CAP_SYS_ADMIN to register a file)
//! answers reads of such an open from the store's file without a round trip
//! through btt, and re-reads from that file's page cache.
//!
//! The kernel holds each inode in one mode at a time: while any open of it is
//! cached (a file opened before it was complete), a passthrough open of it
//! fails, and while any is passthrough, a cached open fails, both with EIO for
//! the reader. [`IoModes`] keeps that rule per inode: a passthrough open only
//! when no cached open of the inode is live, one registered backing file per
//! inode shared by all its passthrough opens (as the kernel asks), dropped
//! with the last. Our count of live opens falls on RELEASE, after the kernel's
//! own, so it errs towards cached opens, which always work.

use std::collections::HashMap;

enum Mode<B> {
    Cached(usize),
    Through(usize, B),
}

/// Open handles by inode and how they were opened; `B` is the registered
/// backing file (a `fuser::BackingId` in the mount).
pub struct IoModes<B> {
    inodes: HashMap<u64, Mode<B>>,
}

impl<B> Default for IoModes<B> {
    fn default() -> Self {
        IoModes {
            inodes: HashMap::new(),
        }
    }
}

impl<B> IoModes<B> {
    /// Counts an open of `ino`; its backing file if it is to be passthrough.
    /// `backing` registers one (None: it cannot, the open is cached) and is
    /// called only when the inode has no open at all.
    pub fn open(&mut self, ino: u64, backing: impl FnOnce() -> Option<B>) -> Option<&B> {
        let mode = match self.inodes.remove(&ino) {
            Some(Mode::Cached(n)) => Mode::Cached(n + 1),
            Some(Mode::Through(n, b)) => Mode::Through(n + 1, b),
            None => match backing() {
                Some(b) => Mode::Through(1, b),
                None => Mode::Cached(1),
            },
        };
        match self.inodes.entry(ino).or_insert(mode) {
            Mode::Through(_, b) => Some(b),
            Mode::Cached(_) => None,
        }
    }

    /// An open of `ino` was released; the last passthrough one drops the
    /// backing file.
    pub fn release(&mut self, ino: u64) {
        let left = match self.inodes.get_mut(&ino) {
            Some(Mode::Cached(n) | Mode::Through(n, _)) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => return,
        };
        if left == 0 {
            self.inodes.remove(&ino);
        }
    }

    /// Inodes with a live open (bounded by the kernel's open files).
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn an_inode_open_cached_stays_cached_until_its_last_release() {
        let mut m = IoModes::default();
        // Opened while incomplete.
        assert!(m.open(7, || None).is_none());
        // Complete now, but a cached open is live: cached again, and no
        // backing file is registered for nothing.
        let asked = Cell::new(0);
        let reg = || {
            asked.set(asked.get() + 1);
            Some("backing")
        };
        assert!(m.open(7, reg).is_none());
        assert_eq!(asked.get(), 0);
        m.release(7);
        assert!(m.open(7, reg).is_none(), "one cached open is left");
        m.release(7);
        m.release(7);
        assert!(m.is_empty());
        // All closed: the next open goes through.
        assert_eq!(m.open(7, reg), Some(&"backing"));
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn passthrough_opens_of_an_inode_share_one_backing_file() {
        let mut m = IoModes::default();
        let n = Cell::new(0);
        let reg = || {
            n.set(n.get() + 1);
            Some(n.get())
        };
        assert_eq!(m.open(3, reg), Some(&1));
        assert_eq!(m.open(3, reg), Some(&1), "the first one's, not a new one");
        assert_eq!(m.open(4, reg), Some(&2), "another inode has its own");
        m.release(3);
        assert_eq!(m.len(), 2);
        m.release(3);
        assert_eq!(m.len(), 1, "the last release drops the backing file");
        assert_eq!(m.open(3, reg), Some(&3));
        // A release of what was never opened changes nothing.
        m.release(99);
        assert_eq!(m.len(), 2);
    }
}
