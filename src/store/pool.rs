//! Read buffers kept for reuse.
//!
//! Why: a buffer of 128 KiB or more (a FUSE read, a chunk of a piece being
//! checked) is above the allocator's mmap threshold (pinned at 128 KiB, see
//! `memory.rs`), so each fresh one is a new mapping whose every page is
//! faulted in and zeroed by the kernel, then unmapped when dropped: in a
//! profile of a sequential read those faults were a tenth of btt-mount's
//! CPU. A few buffers are kept instead; what a pool keeps is bounded by its
//! count and by each buffer's size.
//!
//! The pools are the process's, shared by all its torrents: one pair per
//! torrent kept 213 MiB in a library of a thousand torrents read once
//! each. A pool never keeps more buffers than were in use at once, and the
//! process keeps at most 4 + 8 of at most 1 MiB (12 MiB), where each
//! torrent could keep 2 + 4 before.

use bytes::Bytes;
use std::sync::{Arc, Mutex, OnceLock};

/// The largest buffer worth keeping: a FUSE read or a check chunk.
const KEPT_BUF_MAX: usize = 1 << 20;

/// The buffers pieces are checked in ([`super::Store::read_chunks`]).
pub fn chunks() -> &'static Arc<Pool> {
    static P: OnceLock<Arc<Pool>> = OnceLock::new();
    P.get_or_init(|| Pool::new(4, KEPT_BUF_MAX))
}

/// The buffers ranges are read from disk into ([`super::Store::read_range`]:
/// a FUSE read, 128 KiB as a rule), given back when their reply is sent.
pub fn reads() -> &'static Arc<Pool> {
    static P: OnceLock<Arc<Pool>> = OnceLock::new();
    P.get_or_init(|| Pool::new(8, KEPT_BUF_MAX))
}

pub struct Pool {
    bufs: Mutex<Vec<Vec<u8>>>,
    /// Buffers kept at most.
    keep: usize,
    /// Larger buffers are not kept.
    max_len: usize,
}

impl Pool {
    pub fn new(keep: usize, max_len: usize) -> Arc<Pool> {
        Arc::new(Pool {
            bufs: Mutex::new(Vec::new()),
            keep,
            max_len,
        })
    }

    /// A buffer of `len` zeros (a kept one if there is one).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut b = self.bufs.lock().expect("lock").pop().unwrap_or_default();
        b.clear();
        b.resize(len, 0);
        b
    }

    /// Keeps `b` for a later [`Pool::take`], if there is room and it is not
    /// too large.
    pub fn give(&self, b: Vec<u8>) {
        if b.capacity() > self.max_len {
            return;
        }
        let mut bufs = self.bufs.lock().expect("lock");
        if bufs.len() < self.keep {
            bufs.push(b);
        }
    }

    /// `b` as [`Bytes`] that give it back to `pool` once the last of them
    /// is dropped.
    pub fn freeze(pool: &Arc<Pool>, b: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf: b,
            pool: pool.clone(),
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    pool: Arc<Pool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_zeroed_and_the_pool_is_bounded() {
        let pool = Pool::new(2, 1 << 20);
        let mut a = pool.take(100);
        a.fill(7);
        let ptr = a.as_ptr();
        let bytes = Pool::freeze(&pool, a);
        let part = bytes.slice(10..20);
        drop(bytes);
        assert!(
            pool.bufs.lock().unwrap().is_empty(),
            "a slice still holds it"
        );
        assert_eq!(&part[..], &[7; 10]);
        drop(part);
        let b = pool.take(80);
        assert_eq!(b.as_ptr(), ptr, "the same buffer, reused");
        assert!(b.iter().all(|&x| x == 0), "and zeroed");
        for _ in 0..5 {
            pool.give(vec![0; 10]);
        }
        assert_eq!(pool.bufs.lock().unwrap().len(), 2, "two kept at most");
        let big = Pool::new(2, 1000);
        big.give(vec![0; 2000]);
        assert!(big.bufs.lock().unwrap().is_empty(), "too large to keep");
    }
}
