//! The disk side of downloading: blocks go to their files as they arrive,
//! and a piece whose last block is written is read back to be checked.
//!
//! Why: assembled in memory, every piece in progress held a buffer of its
//! size until it was hashed and written (16 MiB each with 16 MiB pieces,
//! which kept a mount above 100 MiB). Written at once, a block costs memory
//! only while it waits in this queue, and the queue is bounded: a connection
//! does not read its socket while [`MAX_QUEUED`] bytes or more wait (TCP
//! then slows its sender), so at most that plus one socket buffer (120 KiB)
//! per connection wait. Meanwhile its requests do not time out (the stall
//! is ours, not the peer's). The check reads a piece back a chunk at a time
//! ([`CHECK_CHUNK`]), from the page cache as a rule.
//!
//! Order: a piece must not be read back before every block of it accepted
//! earlier (perhaps from another peer) is written. Blocks are queued under
//! the torrent's lock, in the same step as the picker accepts them, and one
//! task writes them in that order, a batch at a time off the runtime.

use super::blame::{self, BlockDigest};
use super::picker::PeerKey;
use super::Torrent;
use crate::metainfo::v2;
use crate::store::StoreError;
use crate::wire::BLOCK_SIZE;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// Bytes of blocks that may wait to be written before connections stop
/// reading.
const MAX_QUEUED: u64 = 2 << 20;
/// Bytes written in one trip to the blocking pool, at most.
const BATCH: u64 = 1 << 20;
/// Bytes of a piece read back at once to check it (unless the store keeps
/// whole pieces in memory: then the piece is read whole, and kept). The
/// store keeps two such buffers: at 1 MiB they were 1.5 MiB more of a
/// mount's peak RSS with 1 MiB pieces, and hashed no faster (criterion,
/// `verify` group: 540 µs a MiB either way).
const CHECK_CHUNK: u64 = 256 << 10;

/// A block to write: at `offset` in the torrent. The last block of a
/// piece carries the piece and who sent its blocks.
pub(crate) struct Job {
    pub offset: u64,
    pub data: Bytes,
    pub complete: Option<(usize, Vec<PeerKey>)>,
}

/// The torrent's queue of blocks to write.
pub(crate) struct DiskQueue {
    tx: mpsc::UnboundedSender<Job>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Job>>>,
    queued: AtomicU64,
    room: Notify,
}

impl DiskQueue {
    pub fn new() -> DiskQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        DiskQueue {
            tx,
            rx: Mutex::new(Some(rx)),
            queued: AtomicU64::new(0),
            room: Notify::new(),
        }
    }

    /// Queues a block the picker just accepted; called under the torrent's
    /// lock (see the module doc). Never blocks: the bound is kept by
    /// [`DiskQueue::room`], awaited before a connection reads more.
    pub fn push(&self, job: Job) {
        self.queued
            .fetch_add(job.data.len() as u64, Ordering::SeqCst);
        let _ = self.tx.send(job);
    }

    /// Whether [`MAX_QUEUED`] bytes or more wait: connections do not read
    /// until there is [`DiskQueue::room`].
    pub fn full(&self) -> bool {
        self.queued.load(Ordering::SeqCst) >= MAX_QUEUED
    }

    /// Returns once fewer than [`MAX_QUEUED`] bytes wait.
    pub async fn room(&self) {
        loop {
            let freed = self.room.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if !self.full() {
                return;
            }
            freed.await;
        }
    }

    fn done(&self, bytes: u64) {
        self.queued.fetch_sub(bytes, Ordering::SeqCst);
        self.room.notify_waiters();
    }
}

/// Writes the torrent's blocks until it stops.
pub(crate) async fn writer(t: Arc<Torrent>) {
    let Some(mut rx) = t.disk.rx.lock().expect("lock").take() else {
        return;
    };
    let mut stop = t.shutdown_signal();
    // Blocks that could not be written, by piece: the piece fails when its
    // last block comes, unless each was written since (fetched again from
    // another peer). At most the pieces in progress.
    let mut unwritten: HashMap<usize, HashSet<u64>> = HashMap::new();
    let piece_of = |offset: u64| (offset / t.meta.piece_length.max(1)) as usize;
    loop {
        let first = tokio::select! {
            _ = stop.changed() => return,
            j = rx.recv() => match j {
                Some(j) => j,
                None => return,
            },
        };
        let mut bytes = first.data.len() as u64;
        let mut batch = vec![first];
        while bytes < BATCH {
            match rx.try_recv() {
                Ok(j) => {
                    bytes += j.data.len() as u64;
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        // Counted as paying: a shutdown waits for the checks this batch
        // completes (a bought piece among them is paid before we go).
        t.paying.fetch_add(1, Ordering::SeqCst);
        let (blocks, ends): (Vec<(u64, Bytes)>, Vec<_>) = batch
            .into_iter()
            .map(|j| ((j.offset, j.data), j.complete))
            .unzip();
        let offsets: Vec<u64> = blocks.iter().map(|(o, _)| *o).collect();
        let store = t.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            blocks
                .iter()
                .map(|(offset, data)| store.write_block(*offset, data))
                .collect::<Vec<Result<(), StoreError>>>()
        })
        .await
        .unwrap_or_else(|e| {
            // A panic while writing: none of the batch counts as written.
            warn!(parent: &t.span, error = %e, "writing blocks failed");
            let lost = || StoreError::Io {
                path: t.store.root().to_path_buf(),
                source: std::io::Error::other("the write was interrupted"),
            };
            offsets.iter().map(|_| Err(lost())).collect()
        });
        t.disk.done(bytes);
        for ((offset, r), end) in offsets.into_iter().zip(written).zip(ends) {
            let piece = piece_of(offset);
            match r {
                Ok(()) => {
                    if let Some(bad) = unwritten.get_mut(&piece) {
                        bad.remove(&offset);
                    }
                }
                Err(e) => {
                    let bad = unwritten.entry(piece).or_default();
                    if bad.is_empty() {
                        warn!(parent: &t.span, piece, error = %e, "writing a block failed; its piece is fetched again");
                    }
                    bad.insert(offset);
                }
            }
            if let Some((p, from)) = end {
                match unwritten.remove(&p).is_some_and(|bad| !bad.is_empty()) {
                    true => t.piece_unwritten(p, &from),
                    false => t.check(p, from),
                }
            }
        }
        t.paying.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What reading a piece back found.
pub(crate) struct Checked {
    pub ok: bool,
    /// The whole piece, when the store keeps pieces in memory.
    pub whole: Option<Bytes>,
    /// Each block's digest, when asked for or the piece failed.
    pub blocks: Option<Blocks>,
}

/// A piece's blocks as the blame rules (and a v2 torrent's block hashes)
/// see them.
pub(crate) struct Blocks {
    pub blame: Vec<BlockDigest>,
    /// A v2 or hybrid torrent's SHA-256 of each block of file data.
    pub v2: Vec<v2::Hash>,
}

/// Reads `piece` back from the store and checks it; with `judge`, also
/// digests its blocks (a failed piece's are always digested, by a second
/// read). Blocking.
pub(crate) fn check(t: &Torrent, piece: usize, judge: bool) -> Result<Checked, StoreError> {
    let first = read_back(t, piece, judge)?;
    if first.ok || judge {
        return Ok(first);
    }
    let blocks = read_back(t, piece, true)?.blocks;
    Ok(Checked {
        ok: false,
        whole: None,
        blocks,
    })
}

fn read_back(t: &Torrent, piece: usize, judge: bool) -> Result<Checked, StoreError> {
    let v2_len = t.meta.v2.as_ref().map(|v| v.data_len(piece));
    let mut check = t.meta.piece_check(piece);
    let mut blocks = judge.then(|| Blocks {
        blame: Vec::new(),
        v2: Vec::new(),
    });
    let mut at = 0usize;
    let mut feed = |data: &[u8]| {
        check.update(data);
        if let Some(b) = blocks.as_mut() {
            // Chunks are whole blocks but the piece's last.
            for (i, block) in data.chunks(BLOCK_SIZE as usize).enumerate() {
                b.blame.push(blame::digest(block));
                if let Some(len) = v2_len {
                    let start = at + i * BLOCK_SIZE as usize;
                    if start < len {
                        b.v2.push(v2::sha256(&block[..block.len().min(len - start)]));
                    }
                }
            }
        }
        at += data.len();
    };
    let whole = match t.store.caches_pieces() {
        true => {
            let data = t.store.read_disk(piece)?;
            feed(&data);
            Some(data)
        }
        false => {
            t.store.read_chunks(piece, CHECK_CHUNK, &mut feed)?;
            None
        }
    };
    let ok = check.ok();
    Ok(Checked {
        ok,
        whole: whole.filter(|_| ok),
        blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Full at the bound; a connection waiting for room wakes once the
    /// writer has written enough, not before.
    #[test]
    fn the_queue_is_full_at_its_bound_and_wakes_waiters_when_written() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let q = Arc::new(DiskQueue::new());
        let block = Bytes::from(vec![0u8; BLOCK_SIZE as usize]);
        let n = MAX_QUEUED / BLOCK_SIZE as u64;
        for k in 0..n {
            assert!(!q.full());
            q.push(Job {
                offset: k * BLOCK_SIZE as u64,
                data: block.clone(),
                complete: None,
            });
        }
        assert!(q.full());
        rt.block_on(async {
            let waiter = tokio::spawn({
                let q = q.clone();
                async move { q.room().await }
            });
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            assert!(!waiter.is_finished(), "no room yet");
            q.done(BLOCK_SIZE as u64);
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap();
        });
        assert!(!q.full());
    }
}
