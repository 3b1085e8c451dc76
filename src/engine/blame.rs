//! Who sent the bad data when a piece fails its hash check, without blaming
//! an honest peer that shared the piece with a liar. Rules without I/O.
//!
//! Why: a piece's blocks come from several peers, so a failed hash says only
//! that one of them lied. Banning every contributor after a few shared
//! failures lets one corrupt peer get the good seeder banned too (the read
//! then hangs). Instead, as libtorrent's smart ban does:
//! - a piece with one sender (by IP: a peer that reconnects is still the
//!   same sender) that fails convicts that sender;
//! - a piece with several senders that fails is fetched again from one peer
//!   alone (the picker's `retry_alone`), and the digest of each block of the
//!   failed attempt is kept with the IP that sent it;
//! - when the piece finally verifies, every IP whose remembered block
//!   differs from the good data is convicted, and the others are cleared.
//!
//! Bans are by IP, not by port or peer id: a liar reconnecting from a new
//! port is the same liar, and a peer id is anyone's to present (one taken
//! from the good seeder must not get that seeder banned).

use sha1::{Digest, Sha1};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// Failed pieces whose blocks are remembered (the oldest are forgotten).
const REMEMBERED: usize = 256;
/// Failed attempts remembered per piece.
const ATTEMPTS: usize = 4;

pub type BlockDigest = [u8; 8];

/// The failed attempts of one piece: for each, every block's sender (if
/// known) and digest.
pub type Attempts = Vec<Vec<(Option<IpAddr>, BlockDigest)>>;

/// What a block is remembered by.
pub fn digest(data: &[u8]) -> BlockDigest {
    let d = Sha1::digest(data);
    let mut out = [0u8; 8];
    out.copy_from_slice(&d[..8]);
    out
}

/// What a failed piece tells.
#[derive(Debug, PartialEq, Eq)]
pub enum Failed {
    /// One IP sent every block: it lied.
    Convicted(IpAddr),
    /// Several did: fetch the piece again from one peer alone.
    RetryAlone,
}

#[derive(Default)]
pub struct Blame {
    /// Per failed piece still missing: each failed attempt's blocks (the IP
    /// that sent each, or none if it is not known, and its digest).
    failed: HashMap<usize, Attempts>,
    order: VecDeque<usize>,
}

impl Blame {
    /// Piece `piece` failed; `blocks` are its blocks' [`digest`]s in order
    /// with the IP that sent each (`None`: a peer gone before we knew its
    /// address).
    pub fn failed(&mut self, piece: usize, blocks: &[(Option<IpAddr>, BlockDigest)]) -> Failed {
        if let Some(&(Some(ip), _)) = blocks.first() {
            if blocks.iter().all(|(b, _)| *b == Some(ip)) {
                return Failed::Convicted(ip);
            }
        }
        let attempt = blocks.to_vec();
        let attempts = self.failed.entry(piece).or_default();
        if attempts.len() == ATTEMPTS {
            attempts.remove(0);
        }
        attempts.push(attempt);
        if !self.order.contains(&piece) {
            self.order.push_back(piece);
        }
        while self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.failed.remove(&old);
            }
        }
        Failed::RetryAlone
    }

    /// Whether `piece` failed before (its blocks will be judged when it
    /// verifies).
    pub fn has(&self, piece: usize) -> bool {
        self.failed.contains_key(&piece)
    }

    /// Piece `piece` verified: its failed attempts, if any, to judge with
    /// [`liars`] (off the caller's lock: it hashes the piece).
    pub fn take(&mut self, piece: usize) -> Option<Attempts> {
        let a = self.failed.remove(&piece)?;
        self.order.retain(|&p| p != piece);
        Some(a)
    }

    /// Failed pieces remembered (for tests and bounds).
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.failed.len()
    }
}

/// The IPs that sent, in a failed attempt, a block that differs from the
/// verified piece's (`good`: its blocks' [`digest`]s).
pub fn liars(attempts: &Attempts, good: &[BlockDigest]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = attempts
        .iter()
        .flat_map(|a| a.iter().zip(good))
        .filter(|((_, d), g)| d != *g)
        .filter_map(|((ip, _), _)| *ip)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, n]))
    }

    fn blocks(b: &[(Option<IpAddr>, &[u8])]) -> Vec<(Option<IpAddr>, BlockDigest)> {
        b.iter().map(|(ip, d)| (*ip, digest(d))).collect()
    }

    #[test]
    fn a_sole_sender_is_convicted() {
        let mut b = Blame::default();
        let sent = [(ip(2), &b"xx"[..]), (ip(2), &b"yy"[..])];
        assert_eq!(
            b.failed(0, &blocks(&sent)),
            Failed::Convicted(ip(2).unwrap())
        );
        assert_eq!(b.remembered(), 0);
    }

    #[test]
    fn a_shared_failure_convicts_only_the_liar_once_the_piece_verifies() {
        let mut b = Blame::default();
        let good = b"aaaabbbbcccc".to_vec();
        // Honest .1 sent blocks 0 and 2, the liar .2 block 1.
        let bad = [
            (ip(1), &b"aaaa"[..]),
            (ip(2), &b"XXXX"[..]),
            (ip(1), &b"cccc"[..]),
        ];
        assert_eq!(b.failed(7, &blocks(&bad)), Failed::RetryAlone);
        // A second try, the liar again with a peer gone meanwhile.
        let bad = [
            (ip(2), &b"YYYY"[..]),
            (None, &b"bbbb"[..]),
            (ip(3), &b"cccc"[..]),
        ];
        assert_eq!(b.failed(7, &blocks(&bad)), Failed::RetryAlone);
        let earlier = b.take(7).unwrap();
        let good: Vec<_> = good.chunks(4).map(digest).collect();
        assert_eq!(liars(&earlier, &good), vec![ip(2).unwrap()]);
        assert_eq!(b.remembered(), 0);
        assert!(b.take(7).is_none(), "forgotten once judged");
    }

    #[test]
    fn memory_is_bounded() {
        let mut b = Blame::default();
        for p in 0..REMEMBERED + 10 {
            for _ in 0..ATTEMPTS + 2 {
                b.failed(p, &blocks(&[(ip(1), &b"a"[..]), (ip(2), &b"b"[..])]));
            }
        }
        assert_eq!(b.remembered(), REMEMBERED);
        assert!(b.failed.values().all(|a| a.len() <= ATTEMPTS));
    }
}
