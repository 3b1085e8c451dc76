//! What a running torrent looks like from outside: the objects the HTTP API
//! returns, the live page draws and `btt status --json` prints. Taken from
//! the engine's state in one lock, so a view is consistent with itself.
//!
//! A waiting read says why it waits, in the words a user can act on (no
//! peers and why, nobody has the piece, everyone who has it chokes us, only
//! sellers have it and there is no budget): the question users ask first
//! when a player stalls.

use super::{status, Torrent};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Waiting pieces listed, oldest first (`btt get` waits on every piece).
const MAX_WAITING: usize = 16;
/// Peers listed, fastest first.
const MAX_PEERS: usize = 50;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TorrentView {
    pub info_hash: String,
    pub name: String,
    /// What runs it: "mount /mnt/x", "seed", "get DIR".
    pub role: String,
    pub size: u64,
    pub piece_length: u64,
    pub pieces_have: usize,
    pub pieces_total: usize,
    /// Bytes held, of `size`.
    pub have_bytes: u64,
    pub files: Vec<FileView>,
    /// One character per piece: `1` held, `b` held and bought from a
    /// seller (this run), `f` being fetched, `c` a reader waits on it, `0`
    /// missing.
    pub pieces: String,
    pub peers: Vec<PeerInfo>,
    pub peer_count: usize,
    pub paid_peers: usize,
    pub down_bytes_per_sec: f64,
    pub up_bytes_per_sec: f64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub money: status::Money,
    pub waiting: Vec<Waiting>,
    /// Why nothing comes in, when nobody is connected.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileView {
    /// Path under the torrent's folder (the name, for a single file).
    pub path: String,
    pub size: u64,
    /// Bytes of it in verified pieces.
    pub have_bytes: u64,
    /// The pieces it spans, `first..end`.
    pub first_piece: usize,
    pub end_piece: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerInfo {
    pub addr: String,
    /// A seller we pay.
    pub paid: bool,
    pub choking_us: bool,
    pub incoming: bool,
    pub down_bytes_per_sec: f64,
    pub up_bytes_per_sec: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Waiting {
    pub piece: usize,
    pub readers: usize,
    pub secs: f64,
    pub cause: String,
}

/// Why nothing delivers piece `p` (see the module doc).
pub(crate) struct CauseInputs<'a> {
    pub peers: usize,
    pub have_it: u32,
    pub sellers_have_it: u32,
    pub unchoked_with_it: bool,
    pub in_progress: bool,
    pub buying: bool,
    pub budget_spent: bool,
    pub no_peers: &'a dyn Fn() -> String,
}

pub(crate) fn cause(c: &CauseInputs) -> String {
    if c.peers == 0 {
        return (c.no_peers)();
    }
    if c.have_it == 0 {
        return match c.peers {
            1 => "the one connected peer does not have this piece".into(),
            n => format!("none of the {n} connected peers has this piece"),
        };
    }
    let free = c.have_it.saturating_sub(c.sellers_have_it);
    if free == 0 {
        if !c.buying {
            return "only paid sellers have it, and buying is off (--max-price)".into();
        }
        if c.budget_spent {
            return "only paid sellers have it, and the budget is spent".into();
        }
    }
    let has = match c.have_it {
        1 => "1 peer has it".to_string(),
        n => format!("{n} peers have it"),
    };
    if !c.unchoked_with_it {
        return match c.have_it {
            1 => "choked by the one peer that has it".into(),
            n => format!("choked by the {n} peers that have it"),
        };
    }
    match c.in_progress {
        true => format!("being fetched ({has})"),
        false => format!("about to be asked for ({has})"),
    }
}

impl Torrent {
    /// The torrent as the API shows it; `rates`: (down, up) bytes per second
    /// over the last second, from whoever samples them.
    pub fn view(&self, rates: (f64, f64)) -> TorrentView {
        let meta = &self.meta;
        let money = self.money();
        let paid_peers = self.cfg.buy.as_ref().map_or(0, |b| b.0.paid_peers());
        let no_peers = || self.discovery().no_peers();
        let st = self.lock();
        let have = st.picker.have();
        let n = meta.num_pieces();
        let mut pieces = String::with_capacity(n);
        for p in 0..n {
            pieces.push(if have.get(p) {
                if st.bought.get(p) {
                    'b'
                } else {
                    '1'
                }
            } else if st.picker.critical_since(p).is_some() && st.waiters.contains_key(&p) {
                'c'
            } else if st.picker.is_active(p) {
                'f'
            } else {
                '0'
            });
        }
        let piece_bytes = |p: usize| if have.get(p) { meta.piece_size(p) } else { 0 };
        let have_bytes = (0..n).map(piece_bytes).sum();
        let files = (0..meta.files.len())
            .filter(|&i| !meta.files[i].padding)
            .map(|i| {
                let f = &meta.files[i];
                let range = meta.pieces_for_range(f.offset, f.length);
                let held = held_bytes(meta, have, f.offset, f.length);
                FileView {
                    path: match meta.path(i) {
                        "" => meta.name.clone(),
                        p => p.to_string(),
                    },
                    size: f.length,
                    have_bytes: held,
                    first_piece: range.start,
                    end_piece: range.end,
                }
            })
            .collect();
        let mut peers: Vec<PeerInfo> = st
            .peers
            .values()
            .map(|p| PeerInfo {
                addr: p.addr.to_string(),
                paid: p.seller,
                choking_us: p.they_choke,
                incoming: p.incoming,
                down_bytes_per_sec: p.rate_down,
                up_bytes_per_sec: p.rate_up,
            })
            .collect();
        peers.sort_by(|a, b| b.down_bytes_per_sec.total_cmp(&a.down_bytes_per_sec));
        let peer_count = peers.len();
        peers.truncate(MAX_PEERS);
        let waiting = self.waiting_in(&st, peer_count, &money, &no_peers);
        let pieces_have = have.count();
        let complete = have.is_complete();
        drop(st);
        TorrentView {
            info_hash: meta.info_hash.hex(),
            name: meta.name.clone(),
            role: self.cfg.role.clone(),
            size: meta.total_length,
            piece_length: meta.piece_length,
            pieces_have,
            pieces_total: n,
            have_bytes,
            files,
            pieces,
            peers,
            peer_count,
            paid_peers,
            down_bytes_per_sec: if peer_count == 0 { 0.0 } else { rates.0 },
            up_bytes_per_sec: if peer_count == 0 { 0.0 } else { rates.1 },
            downloaded: self.stats.downloaded.load(Ordering::Relaxed),
            uploaded: self.stats.uploaded.load(Ordering::Relaxed),
            money,
            waiting,
            note: (peer_count == 0 && !complete).then(no_peers),
        }
    }

    /// The oldest reads waiting and why (what `btt status` shows, without
    /// building the whole view).
    pub fn waiting(&self) -> Vec<Waiting> {
        let money = self.money();
        let no_peers = || self.discovery().no_peers();
        let st = self.lock();
        let peers = st.peers.len();
        self.waiting_in(&st, peers, &money, &no_peers)
    }

    fn waiting_in(
        &self,
        st: &super::State,
        peer_count: usize,
        money: &status::Money,
        no_peers: &dyn Fn() -> String,
    ) -> Vec<Waiting> {
        let have = st.picker.have();
        let now = Instant::now();
        let mut waiting: Vec<(usize, usize, Instant)> = st
            .waiters
            .iter()
            .filter(|(p, ws)| !have.get(**p) && !ws.is_empty())
            .map(|(p, ws)| {
                let since = st.picker.critical_since(*p).unwrap_or(now);
                (*p, ws.len(), since)
            })
            .collect();
        waiting.sort_by_key(|w| (w.2, w.0));
        waiting.truncate(MAX_WAITING);
        let buying = self.cfg.buy.is_some();
        let budget_spent = money.budget_spent;
        waiting
            .into_iter()
            .map(|(p, readers, since)| {
                let (have_it, sellers_have_it) = st.picker.availability(p);
                // Whether some peer that is not choking us could have it: the
                // engine counts availability, not who; any unchoked peer
                // with a piece count is the best it can say without asking
                // the sessions.
                let unchoked_with_it = have_it > 0 && st.peers.values().any(|e| !e.they_choke);
                Waiting {
                    piece: p,
                    readers,
                    secs: now.duration_since(since).as_secs_f64(),
                    cause: cause(&CauseInputs {
                        peers: peer_count,
                        have_it,
                        sellers_have_it,
                        unchoked_with_it,
                        in_progress: st.picker.is_active(p),
                        buying,
                        budget_spent,
                        no_peers,
                    }),
                }
            })
            .collect()
    }

    /// Buyer's and seller's money for this torrent.
    pub(crate) fn money(&self) -> status::Money {
        let mut money = status::Money::default();
        if let Some(b) = &self.cfg.buy {
            money = b.0.money();
        }
        if let Some(p) = &self.cfg.pay {
            let m = p.0.money(self.meta.info_hash.0);
            money.earned_msat = m.earned_msat;
            money.earned_all_msat = m.earned_all_msat;
            money.channels += m.channels;
        }
        money
    }
}

/// Bytes of `offset..offset+len` that lie in held pieces.
fn held_bytes(
    meta: &crate::metainfo::Metainfo,
    have: &crate::bitfield::Bitfield,
    offset: u64,
    len: u64,
) -> u64 {
    let end = offset + len;
    meta.pieces_for_range(offset, len)
        .filter(|&p| have.get(p))
        .map(|p| {
            let s = meta.piece_offset(p).max(offset);
            let e = (meta.piece_offset(p) + meta.piece_size(p)).min(end);
            e.saturating_sub(s)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(f: &'a dyn Fn() -> String) -> CauseInputs<'a> {
        CauseInputs {
            peers: 3,
            have_it: 2,
            sellers_have_it: 0,
            unchoked_with_it: true,
            in_progress: true,
            buying: false,
            budget_spent: false,
            no_peers: f,
        }
    }

    #[test]
    fn a_waiting_read_says_what_holds_it() {
        let np = || "no peers yet: 1 tracker failing (connection refused), DHT off".to_string();
        let c = |f: &dyn Fn(&mut CauseInputs)| {
            let mut i = inputs(&np);
            f(&mut i);
            cause(&i)
        };
        assert!(c(&|i| i.peers = 0).starts_with("no peers yet"));
        assert_eq!(
            c(&|i| i.have_it = 0),
            "none of the 3 connected peers has this piece"
        );
        assert!(c(&|i| i.sellers_have_it = 2).contains("buying is off"));
        assert!(c(&|i| {
            i.sellers_have_it = 2;
            i.buying = true;
            i.budget_spent = true
        })
        .contains("budget is spent"));
        assert_eq!(
            c(&|i| i.unchoked_with_it = false),
            "choked by the 2 peers that have it"
        );
        assert_eq!(c(&|_| {}), "being fetched (2 peers have it)");
        assert_eq!(c(&|i| i.have_it = 1), "being fetched (1 peer has it)");
    }
}
