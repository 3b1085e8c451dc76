//! Micro-benchmarks of the hot paths that do not need the kernel or a
//! network: wire decode/encode, picker decisions, SHA-1 piece verification,
//! the store's in-memory read path (the LRU hit / pending piece), and the
//! filesystem read path over complete content (no kernel).
//! Run: `cargo bench --bench core`.

use btt::bitfield::Bitfield;
use btt::engine::picker::{PeerView, Picker};
use btt::wire::{self, BlockRef, Message};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sha1::{Digest, Sha1};
use std::time::Instant;

fn wire_codec(c: &mut Criterion) {
    let block = Bytes::from(vec![7u8; 16384]);
    let mut frames = BytesMut::new();
    for i in 0..64u32 {
        Message::Piece {
            index: i,
            begin: 0,
            data: block.clone(),
        }
        .encode(&mut frames);
        Message::Request(BlockRef {
            index: i,
            begin: 16384,
            length: 16384,
        })
        .encode(&mut frames);
        Message::Have(i).encode(&mut frames);
    }
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(frames.len() as u64));
    g.bench_function("decode 64 pieces + 128 small messages", |b| {
        b.iter_batched(
            || frames.clone(),
            |mut buf| {
                let mut n = 0;
                while let Some(m) = wire::decode(&mut buf, 1 << 20).unwrap() {
                    std::hint::black_box(&m);
                    n += 1;
                }
                assert_eq!(n, 192);
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("encode the same", |b| {
        b.iter(|| {
            let mut out = BytesMut::with_capacity(frames.len());
            for i in 0..64u32 {
                Message::Piece {
                    index: i,
                    begin: 0,
                    data: block.clone(),
                }
                .encode(&mut out);
                Message::Request(BlockRef {
                    index: i,
                    begin: 16384,
                    length: 16384,
                })
                .encode(&mut out);
                Message::Have(i).encode(&mut out);
            }
            std::hint::black_box(out)
        })
    });
    g.finish();
}

fn picker(c: &mut Criterion) {
    // A 4 GiB torrent of 1 MiB pieces, 40 peers, a reader waiting on a few
    // pieces and background fetching on: one `pick` of 64 blocks for a peer.
    let n = 4096;
    let piece = 1u64 << 20;
    let mut g = c.benchmark_group("picker");
    g.bench_function("pick 64 blocks (4096 pieces, 40 peers, fetch-all)", |b| {
        b.iter_batched(
            || {
                let mut p = Picker::new(piece, piece * n as u64, Bitfield::new(n));
                p.fetch_all = true;
                for k in 0..40 {
                    let mut has = Bitfield::new(n);
                    for i in (k % 3..n).step_by(2) {
                        has.set(i);
                    }
                    p.add_peer_pieces(&has);
                }
                for i in [10, 11, 2000] {
                    p.add_critical(i);
                }
                p
            },
            |mut p| {
                let has = Bitfield::full(n);
                let view = PeerView {
                    key: 1,
                    has: &has,
                    choked: false,
                    allowed_fast: &[],
                    slow: false,
                    paid: false,
                    may_start: true,
                };
                std::hint::black_box(p.pick(&view, 64, Instant::now()))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn sha1_verify(c: &mut Criterion) {
    let data = vec![0x5au8; 1 << 20];
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("SHA-1 of a 1 MiB piece", |b| {
        b.iter(|| std::hint::black_box(<[u8; 20]>::from(Sha1::digest(&data))))
    });
    // A v2 piece's check: SHA-256 of each 16 KiB block (its merkle leaves).
    g.bench_function("SHA-256 of a 1 MiB piece's 64 blocks", |b| {
        b.iter(|| {
            for block in data.chunks(16384) {
                std::hint::black_box(btt::metainfo::v2::sha256(block));
            }
        })
    });
    g.finish();
}

/// A store of an 8 MiB torrent of 1 MiB pieces (bytes `fill`), empty,
/// caching `cache` bytes; its torrent and its dir.
fn empty_store(
    fill: u8,
    cache: u64,
) -> (
    btt::store::Store,
    std::sync::Arc<btt::metainfo::Metainfo>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.bin");
    std::fs::write(&file, vec![fill; 8 << 20]).unwrap();
    let opts = btt::create::CreateOptions {
        piece_length: Some(1 << 20),
        ..Default::default()
    };
    let meta = std::sync::Arc::new(
        btt::metainfo::Metainfo::from_bytes(&btt::create::create_torrent(&file, &opts).unwrap())
            .unwrap(),
    );
    let store = btt::store::Store::open(
        meta.clone(),
        &dir.path().join("data"),
        &dir.path().join("state"),
        cache,
    )
    .unwrap();
    (store, meta, dir)
}

fn store_hit(c: &mut Criterion) {
    let (store, _, _dir) = empty_store(1, 16 << 20);
    store.keep(3, Bytes::from(vec![2u8; 1 << 20]));
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Bytes(128 << 10));
    g.bench_function("read 128 KiB of a piece held in memory", |b| {
        b.iter(|| std::hint::black_box(store.read_range((3 << 20) + 4096, 128 << 10).unwrap()))
    });
    g.finish();
}

/// A 1 MiB piece as it arrives: 64 blocks written to its file one by one
/// (the page cache), then read back a chunk at a time and hashed, as the
/// engine does instead of assembling the piece in memory.
fn piece_through_disk(c: &mut Criterion) {
    let (store, meta, _dir) = empty_store(4, 0);
    let block = vec![4u8; 16384];
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Bytes(1 << 20));
    // Read back whole, and in the engine's 256 KiB chunks.
    for (name, chunk) in [("1 MiB", 1u64 << 20), ("256 KiB", 256 << 10)] {
        let what = format!("1 MiB piece: 64 blocks written, read back in {name} chunks, SHA-1");
        g.bench_function(what, |b| {
            b.iter(|| {
                for k in 0..64u64 {
                    store.write_block((2 << 20) + k * 16384, &block).unwrap();
                }
                let mut check = meta.piece_check(2);
                store.read_chunks(2, chunk, |d| check.update(d)).unwrap();
                assert!(check.ok());
            })
        });
    }
    g.finish();
}

/// The filesystem's read path without the kernel: `Fs::read` (handle lookup,
/// read-ahead window, waiter bookkeeping, engine wait, store read) on a
/// complete 8 MiB torrent whose file sits in the page cache.
fn fs_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.bin");
    std::fs::write(&file, vec![3u8; 8 << 20]).unwrap();
    let opts = btt::create::CreateOptions {
        piece_length: Some(256 << 10),
        ..Default::default()
    };
    let meta = std::sync::Arc::new(
        btt::metainfo::Metainfo::from_bytes(&btt::create::create_torrent(&file, &opts).unwrap())
            .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = std::sync::Arc::new(
        btt::store::Store::open(meta.clone(), dir.path(), &dir.path().join("state"), 1 << 20)
            .unwrap(),
    );
    assert!(store.recheck().is_complete());
    let cfg = btt::engine::EngineConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        use_trackers: false,
        ..Default::default()
    };
    let torrent = rt
        .block_on(btt::engine::Torrent::start(meta, store.clone(), cfg))
        .unwrap();
    // Piece 1 in the store's LRU (as a piece just verified or read whole).
    store.read_piece(1).unwrap();
    let fs = btt::fs::Fs::new(torrent.clone(), None);
    let ino = fs.lookup(btt::fs::ROOT_INO, "x.bin").unwrap().ino;
    let fh = fs.open(ino, false).unwrap();
    let pid = std::process::id();
    let mut g = c.benchmark_group("fs");
    g.throughput(Throughput::Bytes(128 << 10));
    // The same 128 KiB again and again: the piece stays in the store's LRU.
    g.bench_function("read 128 KiB, piece in memory", |b| {
        b.iter(|| {
            let d = rt.block_on(fs.read(fh, 256 << 10, 128 << 10, pid)).unwrap();
            assert_eq!(d.len(), 128 << 10);
        })
    });
    // Sequential 128 KiB reads (the kernel's FUSE read size) over the file:
    // the cache holds 4 pieces, so most reads go to the (page-cached) file.
    let mut off = 0u64;
    g.bench_function("sequential 128 KiB reads, from the file", |b| {
        b.iter(|| {
            let d = rt.block_on(fs.read(fh, off, 128 << 10, pid)).unwrap();
            assert_eq!(d.len(), 128 << 10);
            off = (off + (128 << 10)) % (8 << 20);
        })
    });
    g.finish();
    rt.block_on(torrent.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2)).warm_up_time(std::time::Duration::from_millis(300));
    targets = wire_codec, picker, sha1_verify, piece_through_disk, store_hit, fs_read
}
criterion_main!(benches);
