//! Naming the bad 16 KiB block of a failed v2 piece. Rules without I/O.
//!
//! Why: when a piece whose blocks came from several peers fails, v1 can
//! only fetch it again from one peer and compare ([`super::blame`]), which
//! costs a whole piece and time. A v2 torrent's merkle tree has a SHA-256
//! per block under each piece's hash, so we ask a peer that has the piece
//! for those block hashes (a BEP 52 hash request, base layer 0). The answer
//! is trusted only if it hashes up to the piece's hash we already hold;
//! then each block we got is compared with its hash and the sender of a
//! wrong one is convicted at once. If the piece verifies first (fetched
//! again meanwhile), its own data gives the true block hashes and the
//! failed attempt is judged the same way.
//!
//! Bounded: a few pieces are pending at once (the oldest is dropped), and
//! at most [`ASKERS`] peers are asked per piece.

use crate::metainfo::v2::{BlockSpan, Hash};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed pieces waiting for their block hashes.
const PENDING: usize = 16;
/// Peers asked at once for one piece's block hashes.
pub const ASKERS: u8 = 2;
/// Questions asked in all for one piece (a refusal frees its slot for
/// another peer, up to this).
const MAX_ASKED: u8 = 6;
/// A question nobody answered is forgotten after this.
const PATIENCE: Duration = Duration::from_secs(60);

struct Pending {
    span: BlockSpan,
    /// Each block of the failed attempt: who sent it and its SHA-256.
    blocks: Vec<(Option<IpAddr>, Hash)>,
    /// Questions out now, and asked in all.
    asked: u8,
    asked_total: u8,
    since: Instant,
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
                asked_total: 0,
                since: now,
            },
        );
    }

    /// A peer holding `piece` may be asked for its block hashes: the
    /// request to send, if the piece still waits and fewer than
    /// [`ASKERS`] were asked.
    pub fn may_ask(&mut self, piece: usize) -> Option<BlockSpan> {
        let p = self.pending.get_mut(&piece)?;
        (p.asked < ASKERS && p.asked_total < MAX_ASKED).then(|| {
            p.asked += 1;
            p.asked_total += 1;
            p.span
        })
    }

    /// A peer refused `span`: its slot is free for another. The piece, if
    /// another peer may now be asked.
    pub fn refused(&mut self, span: BlockSpan) -> Option<usize> {
        let piece = self.pending_piece(span)?;
        let p = self.pending.get_mut(&piece)?;
        p.asked = p.asked.saturating_sub(1);
        (p.asked_total < MAX_ASKED).then_some(piece)
    }

    /// The piece waiting for `span`'s answer, if any (late, duplicate and
    /// unasked answers have none).
    pub fn pending_piece(&self, span: BlockSpan) -> Option<usize> {
        self.pending
            .iter()
            .find(|(_, p)| p.span == span)
            .map(|(k, _)| *k)
    }

    /// Whether piece `piece` waits for its block hashes.
    pub fn is_pending(&self, piece: usize) -> bool {
        self.pending.contains_key(&piece)
    }

    /// `hashes`, checked against piece `piece`'s hash by the caller, judge
    /// its failed attempt: the senders of the blocks that differ, with the
    /// block's index in the piece (empty if every block matched). The piece
    /// is no longer pending.
    pub fn judge(&mut self, piece: usize, hashes: &[Hash]) -> Vec<(IpAddr, usize)> {
        let Some(p) = self.pending.remove(&piece) else {
            return vec![];
        };
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
        liars
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
        assert_eq!(b.pending_piece(span(8)), Some(5));
        assert_eq!(b.pending_piece(span(12)), None, "unasked");
        assert_eq!(b.judge(5, &good), vec![(ip(2).unwrap(), 1)]);
        // The second asker's answer comes too late.
        assert_eq!(b.pending_piece(span(8)), None);
    }

    #[test]
    fn a_refusal_frees_its_slot_a_few_times() {
        let mut b = BlockHashes::default();
        b.failed(5, span(8), vec![], Instant::now());
        let mut asked = 0;
        while b.may_ask(5).is_some() {
            asked += 1;
            if b.refused(span(8)).is_none() {
                break;
            }
        }
        assert_eq!(
            asked, MAX_ASKED as usize,
            "asked again after each refusal, up to the cap"
        );
        assert!(b.may_ask(5).is_none());
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
        b.judge(100, &[]);
        assert!(b.may_ask(100).is_none(), "judged: no longer pending");
    }
}
