//! Which block to ask which peer for next. Pure logic, no I/O, no clock of its own
//! (callers pass `now`), so every rule below is unit-tested.
//!
//! Priorities: **critical** pieces have a reader waiting on them; **high** pieces lie
//! in a read-ahead window of an open file handle; **normal** pieces are fetched only
//! when the whole torrent is wanted (`fetch_all`, or its chosen pieces: `only`),
//! rarest first. Started pieces are finished before new ones are begun, to keep
//! memory bounded.
//!
//! Critical pieces go to fast peers: a peer flagged slow (far below the best peer's
//! rate) only gets a critical block when no other peer could take it. Once every
//! block of the critical pieces is asked for (end-game), a second request is sent to
//! another peer for blocks that have been out for a while or sit on a slow peer; the
//! first copy to arrive wins and the others are cancelled.

use crate::bitfield::Bitfield;
use crate::wire::{BlockRef, BLOCK_SIZE};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::{Duration, Instant};

pub type PeerKey = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Normal,
    High,
    Critical,
}

#[derive(Clone, Debug, PartialEq)]
enum Block {
    Free,
    Asked(Vec<(PeerKey, Instant)>),
    Done,
}

struct Active {
    blocks: Vec<Block>,
    /// Who sent each block, to blame the right peer when the hash fails.
    from: Vec<PeerKey>,
    remaining: usize,
}

/// What a peer looks like to the picker at the moment it asks for work.
pub struct PeerView<'a> {
    pub key: PeerKey,
    pub has: &'a Bitfield,
    /// Choked peers may only be asked for their allowed-fast pieces.
    pub choked: bool,
    pub allowed_fast: &'a [u32],
    /// Far slower than the best peer: kept off critical blocks while others can serve.
    pub slow: bool,
    /// A seller we pay: only asked for what free peers cannot deliver (no
    /// free peer has the piece, or a reader has waited on it `paid_after`).
    pub paid: bool,
    /// May begin new pieces; false once its IP holds much unverified data
    /// in pieces in progress (it may still finish those).
    pub may_start: bool,
}

pub enum BlockOutcome {
    /// Not asked for, already have it, or a duplicate that lost the race.
    Unwanted,
    Accepted,
    /// The last block of a piece: the peers that sent its blocks.
    Complete {
        from: Vec<PeerKey>,
    },
}

pub struct Picker {
    piece_length: u64,
    total_length: u64,
    have: Bitfield,
    availability: Vec<u32>,
    /// How many of `availability` are paid sellers.
    paid_availability: Vec<u32>,
    active: HashMap<usize, Active>,
    /// Complete pieces being hashed: not picked again meanwhile.
    verifying: HashSet<usize>,
    critical: BTreeMap<usize, u32>,
    /// When each critical piece became critical.
    critical_since: HashMap<usize, Instant>,
    windows: HashMap<u64, Range<usize>>,
    pub fetch_all: bool,
    /// With `fetch_all`: only these pieces in the background (`btt get
    /// --only`); readers still get whatever they ask for.
    pub only: Option<Bitfield>,
    /// A critical piece free peers have not delivered in this long may be bought.
    pub paid_after: Duration,
    /// Read-ahead pieces, and separately background pieces, in progress at once
    /// (memory bound: each holds a piece-sized buffer).
    pub max_active_normal: usize,
    /// How long a block may be out before another peer is asked too (end-game).
    pub dup_after: Duration,
    /// Every piece ordered rarest first, `(availability, index)`, kept across
    /// picks (sorting thousands of pieces per pick dominated `pick`): a HAVE
    /// moves one entry, a bitfield drops the order to be rebuilt on next use.
    /// Pieces we have stay in it and are skipped.
    rarest: Option<Vec<usize>>,
    /// Pieces that failed with several senders: fetched again from one peer
    /// alone, so that a second failure has one sender to blame (see
    /// `engine::blame`).
    alone: HashSet<usize>,
}

impl Picker {
    pub fn new(piece_length: u64, total_length: u64, have: Bitfield) -> Self {
        let n = have.len();
        Picker {
            piece_length,
            total_length,
            have,
            availability: vec![0; n],
            paid_availability: vec![0; n],
            active: HashMap::new(),
            verifying: HashSet::new(),
            critical: BTreeMap::new(),
            critical_since: HashMap::new(),
            windows: HashMap::new(),
            fetch_all: false,
            only: None,
            paid_after: Duration::from_millis(1500),
            max_active_normal: 16,
            dup_after: Duration::from_millis(300),
            rarest: None,
            alone: HashSet::new(),
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn piece_size(&self, p: usize) -> u64 {
        self.piece_length
            .min(self.total_length - p as u64 * self.piece_length)
    }

    fn num_blocks(&self, p: usize) -> usize {
        self.piece_size(p).div_ceil(BLOCK_SIZE as u64) as usize
    }

    fn block_ref(&self, p: usize, b: usize) -> BlockRef {
        let begin = b as u64 * BLOCK_SIZE as u64;
        let len = (self.piece_size(p) - begin).min(BLOCK_SIZE as u64);
        BlockRef {
            index: p as u32,
            begin: begin as u32,
            length: len as u32,
        }
    }

    // ---- availability ----
    pub fn add_peer_pieces(&mut self, has: &Bitfield) {
        for p in has.ones() {
            self.availability[p] += 1;
        }
        self.rarest = None;
    }
    pub fn remove_peer_pieces(&mut self, has: &Bitfield) {
        for p in has.ones() {
            self.availability[p] = self.availability[p].saturating_sub(1);
        }
        self.rarest = None;
    }
    pub fn add_have(&mut self, p: usize) {
        let Some(&a) = self.availability.get(p) else {
            return;
        };
        self.availability[p] = a + 1;
        let avail = &self.availability;
        if let Some(order) = &mut self.rarest {
            // Move p from (a, p) to (a + 1, p); the rest keeps its order.
            let key = |q: &usize| (if *q == p { a } else { avail[*q] }, *q);
            if let Ok(i) = order.binary_search_by_key(&(a, p), key) {
                order.remove(i);
                let j = order.partition_point(|q| (avail[*q], *q) < (a + 1, p));
                order.insert(j, p);
            } else {
                self.rarest = None;
            }
        }
    }
    /// Marks pieces as (also) held by a paid seller; they stay in
    /// `availability`, which counts every peer.
    pub fn add_paid_pieces(&mut self, has: &Bitfield) {
        for p in has.ones() {
            self.paid_availability[p] += 1;
        }
    }
    pub fn remove_paid_pieces(&mut self, has: &Bitfield) {
        for p in has.ones() {
            self.paid_availability[p] = self.paid_availability[p].saturating_sub(1);
        }
    }
    pub fn add_paid_have(&mut self, p: usize) {
        if let Some(a) = self.paid_availability.get_mut(p) {
            *a += 1;
        }
    }
    fn free_availability(&self, p: usize) -> u32 {
        self.availability[p].saturating_sub(self.paid_availability[p])
    }

    /// Whether a paid seller may be asked for piece `p` of priority `prio`.
    fn may_buy(&self, p: usize, prio: Priority, now: Instant) -> bool {
        if self.free_availability(p) == 0 {
            // A started piece no reader wants any more (a seek moved its
            // window) is still finished: its bought blocks are paid for only
            // once it verifies, and left half-done they would hold the
            // seller's credit for good.
            return prio != Priority::Normal || self.background(p) || self.active.contains_key(&p);
        }
        prio == Priority::Critical
            && self
                .critical_since
                .get(&p)
                .is_some_and(|t| now.duration_since(*t) >= self.paid_after)
    }

    /// Whether piece `p` is fetched with no reader asking.
    fn background(&self, p: usize) -> bool {
        self.fetch_all && self.only.as_ref().is_none_or(|o| o.get(p))
    }

    /// Since when a reader has waited on piece `p`, if one does.
    pub fn critical_since(&self, p: usize) -> Option<Instant> {
        self.critical_since.get(&p).copied()
    }

    /// Whether a reader waits on a piece.
    pub fn reader_waits(&self) -> bool {
        !self.critical.is_empty()
    }

    /// Whether piece `p` is in progress (some blocks asked or held).
    pub fn is_active(&self, p: usize) -> bool {
        self.active.contains_key(&p)
    }
    /// Connected peers that have piece `p`, and how many of them are sellers.
    pub fn availability(&self, p: usize) -> (u32, u32) {
        (self.availability[p], self.paid_availability[p])
    }

    // ---- priorities ----
    pub fn add_critical(&mut self, p: usize) {
        *self.critical.entry(p).or_default() += 1;
        self.critical_since.entry(p).or_insert_with(Instant::now);
    }
    pub fn remove_critical(&mut self, p: usize) {
        if let Some(c) = self.critical.get_mut(&p) {
            *c -= 1;
            if *c == 0 {
                self.critical.remove(&p);
                self.critical_since.remove(&p);
            }
        }
    }
    pub fn set_window(&mut self, handle: u64, pieces: Range<usize>) {
        self.windows.insert(handle, pieces);
    }
    /// Pieces the window started stay active and are finished (at normal
    /// priority): their requested blocks are on the way, and for a paid
    /// seller they are paid for only once the piece verifies.
    pub fn clear_window(&mut self, handle: u64) {
        self.windows.remove(&handle);
    }

    pub fn priority(&self, p: usize) -> Option<Priority> {
        if self.have.get(p) {
            None
        } else if self.critical.contains_key(&p) {
            Some(Priority::Critical)
        } else if self.windows.values().any(|w| w.contains(&p)) {
            Some(Priority::High)
        } else if self.background(p) || self.active.contains_key(&p) {
            Some(Priority::Normal)
        } else {
            None
        }
    }

    /// Whether any piece is wanted that this peer has (drives `interested`).
    pub fn interesting(&self, has: &Bitfield) -> bool {
        if self.fetch_all && self.only.is_none() {
            return (0..self.have.len()).any(|p| has.get(p) && !self.have.get(p));
        }
        if (0..self.have.len()).any(|p| self.background(p) && has.get(p) && !self.have.get(p)) {
            return true;
        }
        self.critical
            .keys()
            .chain(self.active.keys())
            .any(|&p| has.get(p) && !self.have.get(p))
            || self
                .windows
                .values()
                .flat_map(|w| w.clone())
                .any(|p| has.get(p) && !self.have.get(p))
    }

    /// Candidate pieces in order: critical, then high (windows interleaved by
    /// distance from their readers), then started normal pieces. Returns the
    /// list and the pieces in it; [`Picker::for_each_candidate`] adds the rest.
    fn candidates(&self) -> (Vec<(usize, Priority)>, HashSet<usize>) {
        let mut out: Vec<(usize, Priority)> = Vec::new();
        let mut seen = HashSet::new();
        for &p in self.critical.keys() {
            if !self.have.get(p) && seen.insert(p) {
                out.push((p, Priority::Critical));
            }
        }
        let longest = self.windows.values().map(|w| w.len()).max().unwrap_or(0);
        for k in 0..longest {
            for w in self.windows.values() {
                let p = w.start + k;
                if p < w.end && p < self.have.len() && !self.have.get(p) && seen.insert(p) {
                    out.push((p, Priority::High));
                }
            }
        }
        let mut started: Vec<usize> = self
            .active
            .keys()
            .copied()
            .filter(|p| !seen.contains(p))
            .collect();
        started.sort_unstable();
        for p in started {
            seen.insert(p);
            out.push((p, Priority::Normal));
        }
        (out, seen)
    }

    /// Every piece, rarest first (built once, then kept up to date).
    fn rarest_order(&mut self) -> Vec<usize> {
        match self.rarest.take() {
            Some(o) => o,
            None => {
                let mut o: Vec<usize> = (0..self.have.len()).collect();
                o.sort_unstable_by_key(|&p| (self.availability[p], p));
                o
            }
        }
    }

    /// The candidates, then (with `fetch_all`) the missing pieces not among
    /// them, rarest first, calling `f` on each until it returns false.
    fn for_each_candidate(&mut self, mut f: impl FnMut(&mut Self, usize, Priority) -> bool) {
        let (cands, seen) = self.candidates();
        for &(p, prio) in &cands {
            if !f(self, p, prio) {
                return;
            }
        }
        if !self.fetch_all {
            return;
        }
        let order = self.rarest_order();
        for &p in &order {
            if !self.have.get(p)
                && !seen.contains(&p)
                && self.background(p)
                && !f(self, p, Priority::Normal)
            {
                break;
            }
        }
        self.rarest = Some(order);
    }

    fn can_ask(&self, peer: &PeerView, p: usize) -> bool {
        !self.verifying.contains(&p)
            && peer.has.get(p)
            && (!peer.choked || peer.allowed_fast.contains(&(p as u32)))
    }

    /// Whether a paid seller holding `peer.has` would be given anything now
    /// (the buyer opens a channel only once it needs one).
    pub fn would_buy(&mut self, peer: &PeerView, now: Instant) -> bool {
        let mut found = false;
        self.for_each_candidate(|s, p, prio| {
            found = s.can_ask(peer, p) && s.may_buy(p, prio, now);
            !found
        });
        found
    }

    /// Up to `want` blocks for this peer.
    pub fn pick(&mut self, peer: &PeerView, want: usize, now: Instant) -> Vec<BlockRef> {
        let mut out = Vec::new();
        if want == 0 {
            return out;
        }
        let active_normal = self
            .active
            .keys()
            .filter(|&&p| {
                !self.critical.contains_key(&p) && !self.windows.values().any(|w| w.contains(&p))
            })
            .count();
        let mut new_normal = 0usize;
        let mut active_high = self
            .active
            .keys()
            .filter(|&&p| self.windows.values().any(|w| w.contains(&p)))
            .count();
        // Pass 1: free blocks.
        self.for_each_candidate(|s, p, prio| {
            if !s.can_ask(peer, p) || (peer.paid && !s.may_buy(p, prio, now)) {
                return true;
            }
            if !peer.may_start && !s.active.contains_key(&p) {
                return true;
            }
            if s.alone.contains(&p) && s.owner(p).is_some_and(|o| o != peer.key) {
                return true; // another peer is fetching it alone
            }
            if peer.slow && prio == Priority::Critical && s.availability[p] > 1 {
                return true; // leave it to faster peers that have it
            }
            if !s.active.contains_key(&p) {
                // Bound read-ahead and background pieces in progress (each
                // holds unverified data of its senders, and a started piece
                // is finished first); critical pieces are never held back.
                match prio {
                    Priority::Normal => {
                        if active_normal + new_normal >= s.max_active_normal {
                            return true;
                        }
                        new_normal += 1;
                    }
                    Priority::High => {
                        if active_high >= s.max_active_normal {
                            return true;
                        }
                        active_high += 1;
                    }
                    Priority::Critical => {}
                }
                let nb = s.num_blocks(p);
                s.active.insert(
                    p,
                    Active {
                        blocks: vec![Block::Free; nb],
                        from: vec![0; nb],
                        remaining: nb,
                    },
                );
            }
            let nb = s.num_blocks(p);
            for b in 0..nb {
                let a = s.active.get_mut(&p).expect("inserted above");
                if a.blocks[b] == Block::Free {
                    a.blocks[b] = Block::Asked(vec![(peer.key, now)]);
                    out.push(s.block_ref(p, b));
                    if out.len() >= want {
                        return false;
                    }
                }
            }
            true
        });
        if out.len() >= want {
            return out;
        }
        // Pass 2 (end-game for critical and read-ahead pieces): duplicate blocks that
        // another peer has held too long, at most two copies out at once. Only
        // critical and high candidates qualify; pass 1 did not change them.
        let (cands, _) = self.candidates();
        for &(p, prio) in &cands {
            if prio == Priority::Normal
                || self.alone.contains(&p)
                || !self.can_ask(peer, p)
                || (peer.paid && !self.may_buy(p, prio, now))
            {
                continue;
            }
            let Some(a) = self.active.get_mut(&p) else {
                continue;
            };
            for b in 0..a.blocks.len() {
                if let Block::Asked(who) = &mut a.blocks[b] {
                    let old = who
                        .iter()
                        .all(|&(_, t)| now.duration_since(t) >= self.dup_after);
                    if who.len() < 2 && old && !who.iter().any(|&(k, _)| k == peer.key) {
                        who.push((peer.key, now));
                        let r = BlockRef {
                            index: p as u32,
                            begin: b as u32 * BLOCK_SIZE,
                            length: ((self
                                .piece_length
                                .min(self.total_length - p as u64 * self.piece_length))
                                - b as u64 * BLOCK_SIZE as u64)
                                .min(BLOCK_SIZE as u64) as u32,
                        };
                        out.push(r);
                        if out.len() >= want {
                            return out;
                        }
                    }
                }
            }
        }
        out
    }

    /// A block of `len` bytes arrived from `peer` (its bytes go to disk,
    /// not here).
    pub fn on_block(&mut self, peer: PeerKey, index: u32, begin: u32, len: usize) -> BlockOutcome {
        let p = index as usize;
        if !begin.is_multiple_of(BLOCK_SIZE) || p >= self.have.len() {
            return BlockOutcome::Unwanted;
        }
        let b = (begin / BLOCK_SIZE) as usize;
        let size = self.piece_size(p);
        let Some(a) = self.active.get_mut(&p) else {
            return BlockOutcome::Unwanted;
        };
        if b >= a.blocks.len() || a.blocks[b] == Block::Done {
            return BlockOutcome::Unwanted;
        }
        let expect = (size - begin as u64).min(BLOCK_SIZE as u64);
        if len as u64 != expect {
            return BlockOutcome::Unwanted;
        }
        a.blocks[b] = Block::Done;
        a.from[b] = peer;
        a.remaining -= 1;
        if a.remaining > 0 {
            return BlockOutcome::Accepted;
        }
        let a = self.active.remove(&p).expect("present");
        self.verifying.insert(p);
        BlockOutcome::Complete { from: a.from }
    }

    /// The peer will not deliver this block (timeout, reject, choke, disconnect).
    pub fn release(&mut self, peer: PeerKey, r: &BlockRef) {
        let Some(a) = self.active.get_mut(&(r.index as usize)) else {
            return;
        };
        let b = (r.begin / BLOCK_SIZE) as usize;
        if let Some(Block::Asked(who)) = a.blocks.get_mut(b) {
            who.retain(|&(k, _)| k != peer);
            if who.is_empty() {
                a.blocks[b] = Block::Free;
            }
        }
        let p = r.index as usize;
        if self.alone.contains(&p) && self.owner(p).is_some_and(|o| o == peer) {
            let asks = self.active[&p]
                .blocks
                .iter()
                .any(|b| matches!(b, Block::Asked(w) if w.iter().any(|&(k, _)| k == peer)));
            if !asks {
                // Its owner asks nothing more of it (timed out, choked,
                // gone): another peer may fetch it, alone, from scratch.
                self.free_blocks_of(p, peer);
            }
        }
    }

    /// Who is fetching piece `p`: the peer with a block asked or done in it.
    fn owner(&self, p: usize) -> Option<PeerKey> {
        let a = self.active.get(&p)?;
        a.blocks.iter().enumerate().find_map(|(b, blk)| match blk {
            Block::Asked(who) => who.first().map(|&(k, _)| k),
            Block::Done => Some(a.from[b]),
            Block::Free => None,
        })
    }

    fn free_blocks_of(&mut self, p: usize, peer: PeerKey) {
        if let Some(a) = self.active.get_mut(&p) {
            for b in 0..a.blocks.len() {
                if a.blocks[b] == Block::Done && a.from[b] == peer {
                    a.blocks[b] = Block::Free;
                    a.remaining += 1;
                }
            }
        }
    }

    /// Piece `p` failed with several senders: it is fetched again from one
    /// peer alone.
    pub fn retry_alone(&mut self, p: usize) {
        self.alone.insert(p);
    }

    /// At most what pieces in progress can hold: a bound on
    /// [`Picker::unverified_from`] that costs nothing.
    pub fn unverified_bound(&self) -> u64 {
        self.active.len() as u64 * self.piece_length
    }

    /// Bytes of blocks `peers` delivered to pieces not yet complete.
    pub fn unverified_from(&self, peers: &[PeerKey]) -> u64 {
        let mut n = 0u64;
        for (&p, a) in &self.active {
            for (b, blk) in a.blocks.iter().enumerate() {
                if *blk == Block::Done && peers.contains(&a.from[b]) {
                    n += (self.piece_size(p) - b as u64 * BLOCK_SIZE as u64).min(BLOCK_SIZE as u64);
                }
            }
        }
        n
    }

    /// Still worth receiving (not done, piece not had)? Used to cancel duplicates.
    pub fn still_wanted(&self, r: &BlockRef) -> bool {
        let p = r.index as usize;
        match self.active.get(&p) {
            Some(a) => matches!(
                a.blocks.get((r.begin / BLOCK_SIZE) as usize),
                Some(Block::Asked(_))
            ),
            None => false,
        }
    }

    /// `peer` was caught sending corrupt data: the blocks it delivered to
    /// pieces still in progress are fetched again from others (kept, they
    /// would fail those pieces too and cast suspicion on whoever completes
    /// them).
    pub fn discard_from(&mut self, peer: PeerKey) {
        let started: Vec<usize> = self.active.keys().copied().collect();
        for p in started {
            self.free_blocks_of(p, peer);
        }
    }

    pub fn piece_verified(&mut self, p: usize) {
        self.verifying.remove(&p);
        self.alone.remove(&p);
        self.have.set(p);
    }

    /// Hash failed: the piece is fetched again from scratch.
    pub fn piece_failed(&mut self, p: usize) {
        self.verifying.remove(&p);
        self.active.remove(&p);
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PL: u64 = 4 * BLOCK_SIZE as u64;

    fn view<'a>(key: PeerKey, has: &'a Bitfield) -> PeerView<'a> {
        PeerView {
            key,
            has,
            choked: false,
            allowed_fast: &[],
            slow: false,
            paid: false,
            may_start: true,
        }
    }

    #[test]
    fn nothing_unless_wanted_then_critical_before_high_before_normal() {
        let all = Bitfield::full(10);
        let mut pk = Picker::new(PL, 10 * PL, Bitfield::new(10));
        let now = Instant::now();
        assert!(
            pk.pick(&view(1, &all), 10, now).is_empty(),
            "nothing is fetched unasked"
        );
        pk.fetch_all = true;
        pk.set_window(7, 5..7);
        pk.add_critical(8);
        let got: Vec<u32> = pk
            .pick(&view(1, &all), 12, now)
            .iter()
            .map(|b| b.index)
            .collect();
        assert_eq!(got, vec![8, 8, 8, 8, 5, 5, 5, 5, 6, 6, 6, 6]);
    }

    #[test]
    fn fetch_all_with_a_selection_fetches_only_the_selection_but_still_what_readers_ask() {
        let all = Bitfield::full(6);
        let mut pk = Picker::new(PL, 6 * PL, Bitfield::new(6));
        pk.fetch_all = true;
        let mut only = Bitfield::new(6);
        only.set(1);
        only.set(4);
        pk.only = Some(only);
        let now = Instant::now();
        let mut got: Vec<u32> = pk
            .pick(&view(1, &all), 64, now)
            .iter()
            .map(|b| b.index)
            .collect();
        got.dedup();
        assert_eq!(
            got,
            vec![1, 4],
            "only the selected pieces, in the background"
        );
        assert_eq!(pk.priority(2), None);
        let mut just0 = Bitfield::new(6);
        just0.set(0);
        assert!(
            !pk.interesting(&just0),
            "a peer with only unselected pieces is not interesting"
        );
        pk.add_critical(2);
        let got = pk.pick(&view(1, &all), 64, now);
        assert!(
            got.iter().all(|b| b.index == 2) && !got.is_empty(),
            "a reader still gets its piece"
        );
    }

    #[test]
    fn paid_peer_gets_what_free_peers_lack_and_finishes_what_it_started() {
        let all = Bitfield::full(4);
        let mut only3 = Bitfield::new(4);
        only3.set(3);
        let mut pk = Picker::new(PL, 4 * PL, Bitfield::new(4));
        pk.add_peer_pieces(&all);
        pk.add_paid_pieces(&all);
        pk.add_peer_pieces(&only3); // a free peer has piece 3
        let seller = PeerView {
            paid: true,
            ..view(1, &all)
        };
        let now = Instant::now();
        pk.set_window(9, 1..4);
        let got = pk.pick(&seller, 6, now);
        let idx: Vec<u32> = got.iter().map(|b| b.index).collect();
        assert_eq!(
            idx,
            vec![1, 1, 1, 1, 2, 2],
            "piece 3 is left to the free peer"
        );
        // One block of piece 2 arrives, then the reader goes away.
        assert!(matches!(
            pk.on_block(1, 2, 0, BLOCK_SIZE as usize),
            BlockOutcome::Accepted
        ));
        pk.clear_window(9);
        let rest: Vec<(u32, u32)> = pk
            .pick(&seller, 10, now)
            .iter()
            .map(|b| (b.index, b.begin / BLOCK_SIZE))
            .collect();
        assert_eq!(rest, vec![(2, 2), (2, 3)], "the started piece is finished");
        assert!(
            pk.pick(&seller, 10, now).is_empty(),
            "nothing new is bought"
        );
    }

    #[test]
    fn blocks_of_a_banned_peer_are_fetched_again() {
        let all = Bitfield::full(2);
        let mut pk = Picker::new(PL, 2 * PL, Bitfield::new(2));
        pk.add_critical(1);
        let now = Instant::now();
        assert_eq!(pk.pick(&view(1, &all), 2, now).len(), 2);
        for b in 0..2 {
            pk.on_block(1, 1, b * BLOCK_SIZE, BLOCK_SIZE as usize);
        }
        pk.discard_from(1);
        let again: Vec<u32> = pk
            .pick(&view(2, &all), 10, now)
            .iter()
            .map(|b| b.begin / BLOCK_SIZE)
            .collect();
        assert_eq!(again, vec![0, 1, 2, 3], "peer 1's blocks are asked again");
    }

    #[test]
    fn choked_peer_only_allowed_fast() {
        let all = Bitfield::full(4);
        let mut pk = Picker::new(PL, 4 * PL, Bitfield::new(4));
        pk.add_critical(0);
        pk.add_critical(2);
        let v = PeerView {
            key: 1,
            has: &all,
            choked: true,
            allowed_fast: &[2],
            slow: false,
            paid: false,
            may_start: true,
        };
        let got = pk.pick(&v, 10, Instant::now());
        assert!(got.iter().all(|b| b.index == 2) && got.len() == 4);
    }

    #[test]
    fn endgame_duplicates_only_old_critical_blocks_and_completion() {
        let all = Bitfield::full(2);
        let mut pk = Picker::new(PL, PL + 100, Bitfield::new(2));
        pk.add_critical(1);
        let t0 = Instant::now();
        let a = pk.pick(&view(1, &all), 10, t0);
        assert_eq!(
            a,
            vec![BlockRef {
                index: 1,
                begin: 0,
                length: 100
            }],
            "short last piece"
        );
        assert!(
            pk.pick(&view(2, &all), 10, t0).is_empty(),
            "too fresh to duplicate"
        );
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            pk.pick(&view(2, &all), 10, later).len(),
            1,
            "duplicated to a second peer"
        );
        assert!(
            pk.pick(&view(3, &all), 10, later).is_empty(),
            "at most two copies"
        );
        assert!(
            matches!(pk.on_block(2, 1, 0, 100), BlockOutcome::Complete { ref from, .. } if from == &vec![2])
        );
        assert!(
            matches!(pk.on_block(1, 1, 0, 100), BlockOutcome::Unwanted),
            "loser discarded"
        );
        pk.piece_verified(1);
        assert!(!pk.still_wanted(&a[0]));
    }

    #[test]
    fn slow_peer_kept_off_critical_when_others_have_it() {
        let all = Bitfield::full(2);
        let mut pk = Picker::new(PL, 2 * PL, Bitfield::new(2));
        pk.add_peer_pieces(&all);
        pk.add_peer_pieces(&all);
        pk.add_critical(0);
        let slow = PeerView {
            key: 1,
            has: &all,
            choked: false,
            allowed_fast: &[],
            slow: true,
            paid: false,
            may_start: true,
        };
        assert!(pk.pick(&slow, 10, Instant::now()).is_empty());
        assert_eq!(pk.pick(&view(2, &all), 10, Instant::now()).len(), 4);
    }

    #[test]
    fn release_and_bad_blocks() {
        let all = Bitfield::full(1);
        let mut pk = Picker::new(PL, PL, Bitfield::new(1));
        pk.add_critical(0);
        let now = Instant::now();
        let got = pk.pick(&view(1, &all), 1, now);
        pk.release(1, &got[0]);
        assert_eq!(
            pk.pick(&view(2, &all), 1, now),
            got,
            "released block is free again"
        );
        assert!(
            matches!(pk.on_block(2, 0, 1, 16384), BlockOutcome::Unwanted),
            "unaligned"
        );
        assert!(
            matches!(pk.on_block(2, 0, 0, 10), BlockOutcome::Unwanted),
            "wrong length"
        );
        assert!(
            matches!(pk.on_block(2, 5, 0, 10), BlockOutcome::Unwanted),
            "not active"
        );
        assert!(matches!(
            pk.on_block(2, 0, 0, 16384),
            BlockOutcome::Accepted
        ));
    }

    #[test]
    fn normal_pieces_bounded_and_rarest_first() {
        let all = Bitfield::full(40);
        let mut pk = Picker::new(PL, 40 * PL, Bitfield::new(40));
        pk.fetch_all = true;
        pk.max_active_normal = 2;
        let mut bytes = Bitfield::full(40).as_bytes().to_vec();
        bytes[0] &= !(0x80 >> 5); // everyone but piece 5
        let most = Bitfield::from_bytes(&bytes, 40).unwrap();
        pk.add_peer_pieces(&all);
        pk.add_peer_pieces(&most);
        let got: Vec<u32> = pk
            .pick(&view(1, &all), 100, Instant::now())
            .iter()
            .map(|b| b.index)
            .collect();
        assert_eq!(
            got,
            vec![5, 5, 5, 5, 0, 0, 0, 0],
            "rarest first, at most 2 pieces started"
        );
    }

    /// The rarest-first order kept between picks follows HAVEs (moved one
    /// entry at a time) and bitfields (rebuilt) exactly like a fresh sort.
    #[test]
    fn rarest_order_follows_haves_and_bitfields() {
        let n = 64;
        let mut pk = Picker::new(PL, n as u64 * PL, Bitfield::new(n));
        pk.fetch_all = true;
        pk.max_active_normal = 1;
        let mut rng = 7u64;
        let mut next = || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) as usize
        };
        let all = Bitfield::full(n);
        for step in 0..300 {
            if step % 50 == 0 {
                let mut bf = Bitfield::new(n);
                for _ in 0..n / 2 {
                    bf.set(next() % n);
                }
                pk.add_peer_pieces(&bf);
            } else {
                pk.add_have(next() % n);
            }
            // The piece a fresh sort says is rarest is the one picked.
            let rarest = (0..n).min_by_key(|&p| (pk.availability[p], p)).unwrap();
            let got = pk.pick(&view(1, &all), 1, Instant::now());
            assert_eq!(got[0].index as usize, rarest, "step {step}");
            pk.release(1, &got[0]);
            pk.active.clear();
            let fresh = {
                let mut o: Vec<usize> = (0..n).collect();
                o.sort_by_key(|&p| (pk.availability[p], p));
                o
            };
            assert_eq!(pk.rarest.as_ref().unwrap(), &fresh, "step {step}");
        }
    }

    #[test]
    fn a_piece_retried_alone_goes_to_one_peer_until_it_lets_go() {
        let all = Bitfield::full(2);
        let mut pk = Picker::new(PL, 2 * PL, Bitfield::new(2));
        pk.add_peer_pieces(&all);
        pk.add_peer_pieces(&all);
        pk.add_critical(0);
        pk.retry_alone(0);
        let now = Instant::now();
        let first = pk.pick(&view(1, &all), 2, now);
        assert!(first.iter().all(|b| b.index == 0) && first.len() == 2);
        // Peer 2 gets nothing of piece 0, not even an end-game copy later.
        let later = now + Duration::from_secs(5);
        assert!(pk
            .pick(&view(2, &all), 8, later)
            .iter()
            .all(|b| b.index != 0));
        // Peer 1 may ask the rest of it.
        let more = pk.pick(&view(1, &all), 8, now);
        assert_eq!(more.iter().filter(|b| b.index == 0).count(), 2);
        // One block delivered, then peer 1 lets go of the others (timed out):
        // its block is dropped and peer 2 fetches the whole piece alone.
        assert!(matches!(
            pk.on_block(1, 0, 0, BLOCK_SIZE as usize),
            BlockOutcome::Accepted
        ));
        for b in first
            .iter()
            .chain(&more)
            .filter(|b| b.index == 0 && b.begin != 0)
        {
            pk.release(1, b);
        }
        let taken = pk.pick(&view(2, &all), 8, later);
        assert_eq!(taken.iter().filter(|b| b.index == 0).count(), 4);
        pk.piece_verified(0);
        assert!(!pk.alone.contains(&0));
    }

    #[test]
    fn a_peer_over_its_unverified_share_only_finishes_started_pieces() {
        let all = Bitfield::full(3);
        let mut pk = Picker::new(PL, 3 * PL, Bitfield::new(3));
        pk.add_peer_pieces(&all);
        pk.fetch_all = true;
        let now = Instant::now();
        let got = pk.pick(&view(1, &all), 2, now);
        for b in &got {
            pk.on_block(1, b.index, b.begin, BLOCK_SIZE as usize);
        }
        assert_eq!(pk.unverified_from(&[1]), 2 * BLOCK_SIZE as u64);
        assert_eq!(pk.unverified_from(&[2]), 0);
        let capped = PeerView {
            may_start: false,
            ..view(1, &all)
        };
        let next = pk.pick(&capped, 10, now);
        assert_eq!(next.len(), 2, "the rest of the started piece only");
        assert!(next.iter().all(|b| b.index == got[0].index));
    }
}
