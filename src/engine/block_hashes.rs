//! Naming the bad 16 KiB block of a failed v2 piece. Rules without I/O.
//!
//! Why: when a piece whose blocks came from several peers fails, v1 can
//! only fetch it again from one peer and compare ([`super::blame`]), which
//! costs a whole piece and time. A v2 torrent's merkle tree has a SHA-256
//! per block under each piece's hash, so we ask a peer that has the piece
//! for those block hashes (a BEP 52 hash request, base layer 0). The answer
//! is trusted only if it hashes up to the piece's hash we already hold;
//! then each block we got is compared with its hash and the sender of a
//! wrong one is convicted at once. The smart ban stays as the fallback
//! when no peer answers.
//!
//! Bounded: a few pieces are pending at once (the oldest is dropped), and
//! at most [`ASKERS`] peers are asked per piece.

use crate::metainfo::v2::{BlockSpan, Hash};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed pieces waiting for their block hashes.
const PENDING: usize = 16;
/// Peers asked for one piece's block hashes.
pub const ASKERS: u8 = 2;
/// A question nobody answered is forgotten after this.
const PATIENCE: Duration = Duration::from_secs(60);

struct Pending {
    span: BlockSpan,
    /// Each block of the failed attempt: who sent it and its SHA-256.
    blocks: Vec<(Option<IpAddr>, Hash)>,
    asked: u8,
    since: Instant,
}

/// What an answer to a block-hash request tells.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Nothing pending asked for this (late, duplicate or unasked).
    Unasked,
    /// The hashes do not hash up to the piece's: the answerer lied.
    Wrong,
    /// Checked: the senders of the blocks that differ, with the block's
    /// index in the piece (empty if every block matched).
    Judged {
        piece: usize,
        liars: Vec<(IpAddr, usize)>,
    },
}

#[derive(Default)]
pub struct BlockHashes {
    pending: HashMap<usize, Pending>,
}

impl BlockHashes {
    /// Piece `piece` failed; `blocks` are its blocks' senders and SHA-256,
    /// `span` the request whose answer checks them.
    pub fn failed(
        &mut self,
        piece: usize,
        span: BlockSpan,
        blocks: Vec<(Option<IpAddr>, Hash)>,
        now: Instant,
    ) {
        self.pending
            .retain(|_, p| now.duration_since(p.since) < PATIENCE);
        if self.pending.len() >= PENDING && !self.pending.contains_key(&piece) {
            if let Some(old) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.since)
                .map(|(k, _)| *k)
            {
                self.pending.remove(&old);
            }
        }
        self.pending.insert(
            piece,
            Pending {
                span,
                blocks,
                asked: 0,
                since: now,
            },
        );
    }

    /// A peer holding `piece` may be asked for its block hashes: the
    /// request to send, if the piece still waits and fewer than
    /// [`ASKERS`] were asked.
    pub fn may_ask(&mut self, piece: usize) -> Option<BlockSpan> {
        let p = self.pending.get_mut(&piece)?;
        (p.asked < ASKERS).then(|| {
            p.asked += 1;
            p.span
        })
    }

    /// The piece verified some other way: nothing more to learn.
    pub fn forget(&mut self, piece: usize) {
        self.pending.remove(&piece);
    }

    /// A peer answered `span` with `hashes`; `hashes_ok` checks them
    /// against the piece's hash.
    pub fn answered(
        &mut self,
        span: BlockSpan,
        hashes: &[Hash],
        hashes_ok: impl Fn(usize, &[Hash]) -> bool,
    ) -> Answered {
        let Some((&piece, _)) = self.pending.iter().find(|(_, p)| p.span == span) else {
            return Answered::Unasked;
        };
        if !hashes_ok(piece, hashes) {
            return Answered::Wrong;
        }
        let p = self.pending.remove(&piece).expect("found");
        let mut liars: Vec<(IpAddr, usize)> = p
            .blocks
            .iter()
            .zip(hashes)
            .enumerate()
            .filter(|(_, ((_, got), want))| got != *want)
            .filter_map(|(i, ((ip, _), _))| ip.map(|ip| (ip, i)))
            .collect();
        liars.sort_unstable();
        liars.dedup_by_key(|(ip, _)| *ip);
        Answered::Judged { piece, liars }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, n]))
    }

    fn span(index: u32) -> BlockSpan {
        BlockSpan {
            root: [9; 32],
            index,
            count: 4,
        }
    }

    #[test]
    fn a_checked_answer_names_only_the_sender_of_the_bad_block() {
        let mut b = BlockHashes::default();
        let now = Instant::now();
        let good = [[1; 32], [2; 32], [3; 32], [4; 32]];
        let got = vec![
            (ip(1), good[0]),
            (ip(2), [0xEE; 32]),
            (ip(1), good[2]),
            (None, [0xEE; 32]),
        ];
        b.failed(5, span(8), got, now);
        assert_eq!(b.may_ask(5), Some(span(8)));
        assert_eq!(b.may_ask(5), Some(span(8)));
        assert_eq!(b.may_ask(5), None, "two askers at most");
        assert_eq!(b.may_ask(6), None, "nothing pending");
        // Hashes that do not check out convict the answerer, keep the piece.
        assert_eq!(b.answered(span(8), &good, |_, _| false), Answered::Wrong);
        let judged = b.answered(span(8), &good, |p, h| p == 5 && h == good);
        assert_eq!(
            judged,
            Answered::Judged {
                piece: 5,
                liars: vec![(ip(2).unwrap(), 1)]
            }
        );
        // The second asker's answer comes too late.
        assert_eq!(b.answered(span(8), &good, |_, _| true), Answered::Unasked);
    }

    #[test]
    fn pending_pieces_are_bounded_and_expire() {
        let mut b = BlockHashes::default();
        let t0 = Instant::now();
        for p in 0..PENDING + 5 {
            b.failed(
                p,
                span(p as u32 * 4),
                vec![],
                t0 + Duration::from_millis(p as u64),
            );
        }
        assert_eq!(b.pending.len(), PENDING);
        assert!(b.may_ask(0).is_none(), "the oldest went first");
        b.failed(
            100,
            span(400),
            vec![],
            t0 + PATIENCE + Duration::from_secs(1),
        );
        assert_eq!(b.pending.len(), 1, "the stale ones expired");
        b.forget(100);
        assert!(b.may_ask(100).is_none());
    }
}
