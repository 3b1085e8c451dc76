//! The disk side of downloading: blocks go to their files as they arrive,
//! and a piece whose last block is written is read back to be checked.
//!
//! Why: assembled in memory, every piece in progress held a buffer of its
//! size until it was hashed and written (16 MiB each with 16 MiB pieces,
//! which kept a mount above 100 MiB). Written at once, a block costs memory
//! only while it waits in this queue, and the queue is bounded: a connection
//! stops reading its socket while more than [`MAX_QUEUED`] bytes wait (TCP
//! then slows its sender). The check reads a piece back a chunk at a time
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
use std::collections::HashSet;
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
/// whole pieces in memory: then the piece is read whole, and kept).
const CHECK_CHUNK: u64 = 1 << 20;

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
    // Pieces a block of which could not be written: they fail when their
    // last block comes (kept until then; at most the pieces in progress).
    let mut unwritten: HashSet<usize> = HashSet::new();
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
        let store = t.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let r: Vec<Result<(), StoreError>> = batch
                .iter()
                .map(|j| store.write_block(j.offset, &j.data))
                .collect();
            (batch, r)
        })
        .await;
        let Ok((batch, results)) = written else {
            return; // the runtime is going away
        };
        t.disk.done(bytes);
        for (job, r) in batch.into_iter().zip(results) {
            let piece = (job.offset / t.meta.piece_length.max(1)) as usize;
            if let Err(e) = r {
                if unwritten.insert(piece) {
                    warn!(parent: &t.span, piece, error = %e, "writing a block failed; its piece is fetched again");
                }
            }
            if let Some((p, from)) = job.complete {
                if unwritten.remove(&p) {
                    t.piece_unwritten(p, &from);
                } else {
                    t.check(p, from);
                }
            }
        }
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
