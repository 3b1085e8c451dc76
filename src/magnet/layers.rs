//! Fetching a v2 torrent's piece layers from one peer (BEP 52 hash
//! requests), sans-io.
//!
//! A v2-only magnet link gives an info dictionary whose files carry only
//! their merkle roots; the per-piece hashes (the piece layers) are in a
//! `.torrent` beside it, which a magnet link does not have. So, on the
//! connection that gave the dictionary, each file of more than one piece
//! is asked for its piece layer, in chunks of [`MAX_HASHES`] as libtorrent
//! asks (no proof hashes: the whole layer is checked against the root once
//! it is in). The peer that gave the dictionary gives the layers, or its
//! attempt fails and the next peer is asked for both, so blame stays with
//! one peer and needs no bookkeeping across peers. Memory: the layers
//! themselves (32 bytes a piece), what the dictionary promises.

use crate::metainfo::v2::{layer_matches, piece_layer_base, Hash, MAX_HASHES};
use crate::wire::HashReq;
use std::collections::{HashMap, VecDeque};

/// Requests kept in flight to one peer.
const WINDOW: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayerError {
    #[error("the peer refused the piece hashes we asked for")]
    Rejected,
    #[error("the peer sent piece hashes we did not ask for")]
    Unasked,
    #[error("the piece hashes the peer sent do not match the file's root")]
    WrongLayer,
}

struct File {
    root: Hash,
    pieces: u32,
    /// The layer as it comes in, chunk by chunk.
    layer: Vec<Hash>,
    chunks_left: u32,
}

/// One peer's attempt at every layer a torrent needs.
pub struct LayerFetch {
    piece_length: u64,
    files: Vec<File>,
    by_root: HashMap<Hash, usize>,
    to_ask: VecDeque<HashReq>,
    asked: Vec<HashReq>,
}

pub enum Step {
    More(Vec<HashReq>),
    /// Every layer, checked: (pieces root, layer bytes).
    Done(Vec<(Hash, Vec<u8>)>),
}

impl LayerFetch {
    /// For files given as (pieces root, pieces), each of more than one
    /// piece. Returns the attempt and the first requests to send.
    pub fn start(piece_length: u64, wanted: &[(Hash, u32)]) -> (LayerFetch, Step) {
        let base = piece_layer_base(piece_length);
        let mut f = LayerFetch {
            piece_length,
            files: Vec::new(),
            by_root: HashMap::new(),
            to_ask: VecDeque::new(),
            asked: Vec::new(),
        };
        for &(root, pieces) in wanted {
            if pieces < 2 || f.by_root.contains_key(&root) {
                continue;
            }
            let mut chunks = 0;
            for index in (0..pieces).step_by(MAX_HASHES as usize) {
                let count = MAX_HASHES.min((pieces - index).next_power_of_two());
                f.to_ask.push_back(HashReq {
                    root,
                    base,
                    index,
                    count,
                    proof_layers: 0,
                });
                chunks += 1;
            }
            f.by_root.insert(root, f.files.len());
            f.files.push(File {
                root,
                pieces,
                layer: vec![[0; 32]; pieces as usize],
                chunks_left: chunks,
            });
        }
        let first = f.step();
        (f, first)
    }

    fn step(&mut self) -> Step {
        if self.to_ask.is_empty() && self.asked.is_empty() {
            let done = self
                .files
                .drain(..)
                .map(|f| (f.root, f.layer.concat()))
                .collect();
            return Step::Done(done);
        }
        let mut out = Vec::new();
        while self.asked.len() < WINDOW {
            let Some(r) = self.to_ask.pop_front() else {
                break;
            };
            self.asked.push(r);
            out.push(r);
        }
        Step::More(out)
    }

    /// The peer's answer to one of our requests.
    pub fn on_hashes(&mut self, req: HashReq, hashes: &[u8]) -> Result<Step, LayerError> {
        let at = self
            .asked
            .iter()
            .position(|r| *r == req)
            .ok_or(LayerError::Unasked)?;
        if hashes.len() != req.count as usize * 32 {
            return Err(LayerError::Unasked);
        }
        self.asked.swap_remove(at);
        let f = &mut self.files[self.by_root[&req.root]];
        // Hashes past the file's last piece are padding; the root check
        // pads by itself.
        let real = (f.pieces - req.index).min(req.count) as usize;
        for (slot, h) in f.layer[req.index as usize..][..real]
            .iter_mut()
            .zip(hashes.chunks_exact(32))
        {
            *slot = h.try_into().expect("32");
        }
        f.chunks_left -= 1;
        if f.chunks_left == 0 && !layer_matches(&f.root, self.piece_length, &f.layer) {
            return Err(LayerError::WrongLayer);
        }
        Ok(self.step())
    }

    /// The peer refused one of our requests: what ends the attempt.
    pub fn on_reject(&self, req: HashReq) -> LayerError {
        match self.asked.contains(&req) {
            true => LayerError::Rejected,
            false => LayerError::Unasked,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::v2::{data_root, pad_root, root, BLOCK, V2};

    /// A file of `pieces` pieces of 2 blocks: its layer and root.
    fn file(pieces: usize, seed: u8) -> (Vec<Hash>, Hash) {
        let layer: Vec<Hash> = (0..pieces)
            .map(|i| data_root(&[seed, i as u8, (i >> 8) as u8], 2))
            .collect();
        let r = root(&layer, pieces.next_power_of_two(), pad_root(2));
        (layer, r)
    }

    fn answer(layer: &[Hash], r: &HashReq) -> Vec<u8> {
        let mut out: Vec<Hash> = layer[r.index as usize..]
            .iter()
            .take(r.count as usize)
            .copied()
            .collect();
        out.resize(r.count as usize, pad_root(2));
        out.concat()
    }

    fn reqs(s: Step) -> Vec<HashReq> {
        match s {
            Step::More(r) => r,
            Step::Done(_) => panic!("done early"),
        }
    }

    #[test]
    fn layers_come_in_chunks_and_are_checked_against_their_roots() {
        let pl = 2 * BLOCK;
        let (a, ra) = file(1300, 1);
        let (b, rb) = file(3, 2);
        let (mut f, first) = LayerFetch::start(pl, &[(ra, 1300), (rb, 3), ([9; 32], 1)]);
        let mut pending = reqs(first);
        assert!(pending.iter().all(|r| r.base == 1 && r.proof_layers == 0));
        // 1300 pieces: 512, 512, then 276 asked as 512 (a power of two); 3 as 4.
        assert_eq!(pending.len(), 4);
        assert_eq!(
            pending
                .iter()
                .map(|r| (r.index, r.count))
                .collect::<Vec<_>>(),
            vec![(0, 512), (512, 512), (1024, 512), (0, 4)]
        );
        let mut done = None;
        while let Some(r) = pending.pop() {
            let layer = if r.root == ra { &a } else { &b };
            match f.on_hashes(r, &answer(layer, &r)).unwrap() {
                Step::More(more) => pending.extend(more),
                Step::Done(d) => done = Some(d),
            }
        }
        let done = done.expect("every layer");
        assert_eq!(done, vec![(ra, a.concat()), (rb, b.concat())]);
        // What V2 builds from them answers a request as we asked.
        let files = [
            crate::metainfo::v2::TreeFile {
                path: "a".into(),
                length: 1300 * pl,
                root: Some(ra),
            },
            crate::metainfo::v2::TreeFile {
                path: "b".into(),
                length: 3 * pl,
                root: Some(rb),
            },
        ];
        let layers: crate::metainfo::v2::Layers = done
            .iter()
            .map(|(r, l)| {
                (
                    std::borrow::Cow::Owned(r.to_vec()),
                    bendy::value::Value::Bytes(std::borrow::Cow::Borrowed(&l[..])),
                )
            })
            .collect();
        let v = V2::new([0; 32], pl, &files, Some(&layers), true).unwrap();
        let r = HashReq {
            root: ra,
            base: 1,
            index: 1024,
            count: 512,
            proof_layers: 0,
        };
        let got = v.answer(&r.root, r.base, r.index, r.count, 0).unwrap();
        assert_eq!(got.concat(), answer(&a, &r));
    }

    #[test]
    fn liars_and_refusals_end_the_attempt() {
        let pl = 2 * BLOCK;
        let (a, ra) = file(6, 1);
        let (mut f, first) = LayerFetch::start(pl, &[(ra, 6)]);
        let r = reqs(first)[0];
        // Not asked, short, wrong.
        let other = HashReq { index: 4, ..r };
        assert_eq!(
            f.on_hashes(other, &answer(&a, &other)).err(),
            Some(LayerError::Unasked)
        );
        assert_eq!(f.on_hashes(r, &[0; 32]).err(), Some(LayerError::Unasked));
        let mut bad = answer(&a, &r);
        bad[40] ^= 1;
        assert_eq!(f.on_hashes(r, &bad).err(), Some(LayerError::WrongLayer));
        let (f, first) = LayerFetch::start(pl, &[(ra, 6)]);
        let r = reqs(first)[0];
        assert_eq!(f.on_reject(r), LayerError::Rejected);
        assert_eq!(f.on_reject(HashReq { index: 4, ..r }), LayerError::Unasked);
        // Nothing wanted: done at once.
        assert!(matches!(LayerFetch::start(pl, &[]).1, Step::Done(d) if d.is_empty()));
    }
}
