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
//! A piece of more than 512 blocks (16 MiB and up) is asked for in spans
//! of 512 whose uncles reach up to the piece's node; each span that checks
//! out judges its own blocks, and the piece stops waiting once all did.
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
    /// The requests that check it, and which of them were judged.
    spans: Vec<(BlockSpan, bool)>,
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
    /// `spans` the requests whose answers check them (in block order).
    pub fn failed(
        &mut self,
        piece: usize,
        spans: Vec<BlockSpan>,
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
                spans: spans.into_iter().map(|s| (s, false)).collect(),
                blocks,
                asked: 0,
                asked_total: 0,
                since: now,
            },
        );
    }

    /// A peer holding `piece` may be asked for its block hashes: the
    /// requests to send (the spans not judged yet), if the piece still
    /// waits and fewer than [`ASKERS`] were asked.
    pub fn may_ask(&mut self, piece: usize) -> Vec<BlockSpan> {
        let Some(p) = self.pending.get_mut(&piece) else {
            return vec![];
        };
        if p.asked >= ASKERS || p.asked_total >= MAX_ASKED {
            return vec![];
        }
        p.asked += 1;
        p.asked_total += 1;
        p.spans
            .iter()
            .filter(|(_, judged)| !judged)
            .map(|(s, _)| *s)
            .collect()
    }

    /// A peer refused `span`: its slot is free for another. The piece, if
    /// another peer may now be asked.
    pub fn refused(&mut self, span: BlockSpan) -> Option<usize> {
        let piece = self.pending_piece(span)?;
        let p = self.pending.get_mut(&piece)?;
        // A peer refusing gets all of a piece's open spans refused: its
        // slot is freed once, on the first.
        if p.spans.iter().find(|(_, judged)| !judged).map(|(s, _)| *s) == Some(span) {
            p.asked = p.asked.saturating_sub(1);
        }
        (p.asked_total < MAX_ASKED).then_some(piece)
    }

    /// The piece waiting for `span`'s answer, if any (late, duplicate and
    /// unasked answers have none).
    pub fn pending_piece(&self, span: BlockSpan) -> Option<usize> {
        self.pending
            .iter()
            .find(|(_, p)| p.spans.contains(&(span, false)))
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
        differing(&p.blocks, 0, hashes)
    }

    /// `hashes`, the blocks of `span` (checked by the caller against the
    /// piece's hash with their proof), judge those blocks of the failed
    /// attempt of the piece waiting for it: their differing senders, as
    /// [`BlockHashes::judge`]. The piece stops waiting once every span is
    /// judged.
    pub fn judge_span(&mut self, span: BlockSpan, hashes: &[Hash]) -> Vec<(IpAddr, usize)> {
        let Some(piece) = self.pending_piece(span) else {
            return vec![];
        };
        let p = self.pending.get_mut(&piece).expect("pending");
        let first = p.spans.first().map_or(span.index, |(s, _)| s.index);
        for (s, judged) in &mut p.spans {
            *judged |= *s == span;
        }
        let from = (span.index - first) as usize;
        let liars = differing(
            &p.blocks,
            from,
            &hashes[..hashes.len().min(span.count as usize)],
        );
        if p.spans.iter().all(|(_, judged)| *judged) {
            self.pending.remove(&piece);
        }
        liars
    }
}

/// The senders of `blocks[from..]` that differ from `hashes`, once each,
/// with the block's index in the piece.
fn differing(
    blocks: &[(Option<IpAddr>, Hash)],
    from: usize,
    hashes: &[Hash],
) -> Vec<(IpAddr, usize)> {
    let mut liars: Vec<(IpAddr, usize)> = blocks
        .iter()
        .enumerate()
        .skip(from)
        .zip(hashes)
        .filter(|((_, (_, got)), want)| got != *want)
        .filter_map(|((i, (ip, _)), _)| ip.map(|ip| (ip, i)))
        .collect();
    liars.sort_unstable();
    liars.dedup_by_key(|(ip, _)| *ip);
    liars
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
            proof_layers: 0,
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
        b.failed(5, vec![span(8)], got, now);
        assert_eq!(b.may_ask(5), vec![span(8)]);
        assert_eq!(b.may_ask(5), vec![span(8)]);
        assert_eq!(b.may_ask(5), vec![], "two askers at most");
        assert_eq!(b.may_ask(6), vec![], "nothing pending");
        assert_eq!(b.pending_piece(span(8)), Some(5));
        assert_eq!(b.pending_piece(span(12)), None, "unasked");
        assert_eq!(b.judge(5, &good), vec![(ip(2).unwrap(), 1)]);
        // The second asker's answer comes too late.
        assert_eq!(b.pending_piece(span(8)), None);
    }

    #[test]
    fn a_refusal_frees_its_slot_a_few_times() {
        let mut b = BlockHashes::default();
        b.failed(5, vec![span(8)], vec![], Instant::now());
        let mut asked = 0;
        while !b.may_ask(5).is_empty() {
            asked += 1;
            if b.refused(span(8)).is_none() {
                break;
            }
        }
        assert_eq!(
            asked, MAX_ASKED as usize,
            "asked again after each refusal, up to the cap"
        );
        assert!(b.may_ask(5).is_empty());
    }

    /// A piece checked in two spans: each answer judges its own blocks,
    /// a second answer to a judged span is ignored, and the piece waits
    /// until both are judged.
    #[test]
    fn spans_are_judged_one_by_one() {
        let mut b = BlockHashes::default();
        let good: Vec<Hash> = (0..8u8).map(|i| [i; 32]).collect();
        let mut got: Vec<(Option<IpAddr>, Hash)> = good.iter().map(|h| (ip(1), *h)).collect();
        got[6] = (ip(3), [0xEE; 32]);
        got[1] = (ip(2), [0xEE; 32]);
        b.failed(5, vec![span(16), span(20)], got, Instant::now());
        assert_eq!(b.may_ask(5), vec![span(16), span(20)]);
        // The second span first; its uncle travels after its blocks.
        let mut answer = good[4..].to_vec();
        answer.push([0x77; 32]);
        assert_eq!(b.judge_span(span(20), &answer), vec![(ip(3).unwrap(), 6)]);
        assert!(b.judge_span(span(20), &answer).is_empty(), "judged once");
        assert!(b.is_pending(5));
        assert_eq!(b.may_ask(5), vec![span(16)], "only the open span");
        assert!(b.may_ask(5).is_empty(), "two asked");
        // A refusal of the open span frees a slot for another peer.
        assert_eq!(b.refused(span(16)), Some(5));
        assert_eq!(b.may_ask(5), vec![span(16)]);
        assert_eq!(
            b.judge_span(span(16), &good[..4]),
            vec![(ip(2).unwrap(), 1)]
        );
        assert!(!b.is_pending(5), "all spans judged");
    }

    #[test]
    fn pending_pieces_are_bounded_and_expire() {
        let mut b = BlockHashes::default();
        let t0 = Instant::now();
        for p in 0..PENDING + 5 {
            b.failed(
                p,
                vec![span(p as u32 * 4)],
                vec![],
                t0 + Duration::from_millis(p as u64),
            );
        }
        assert_eq!(b.pending.len(), PENDING);
        assert!(b.may_ask(0).is_empty(), "the oldest went first");
        b.failed(
            100,
            vec![span(400)],
            vec![],
            t0 + PATIENCE + Duration::from_secs(1),
        );
        assert_eq!(b.pending.len(), 1, "the stale ones expired");
        b.judge(100, &[]);
        assert!(b.may_ask(100).is_empty(), "judged: no longer pending");
    }
}
