//! The tracker's swarm table (sans-io): who announced what, whom to hand
//! out, and the counts a scrape reports. Time comes in as an argument.
//!
//! Every dimension has a bound, so an announce flood costs at most the
//! configured memory: torrents, peers per torrent, peers per IP in one
//! torrent (a flood from one host cannot push the others out), and peers in
//! all. A peer is forgotten two intervals after its last announce.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What an announce says of the announcing peer (the client's own type).
pub use crate::tracker::Event;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: [u8; 20],
    /// Where the peer listens: the sender's IP and the announced port.
    pub addr: SocketAddr,
    pub event: Event,
    /// Bytes it still lacks (0: a seed).
    pub left: u64,
    /// Peers it asks for (capped by [`Limits::max_numwant`]).
    pub numwant: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub peers: Vec<SocketAddr>,
    pub complete: u32,
    pub incomplete: u32,
    pub interval: Duration,
    pub min_interval: Duration,
}

/// Why an announce was refused (the message goes back as `failure reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("torrent not allowed on this tracker")]
    NotAllowed,
    #[error("tracker full")]
    Full,
    #[error("too many peers from this address")]
    TooManyFromIp,
    #[error("port 0")]
    BadPort,
}

/// A scrape's counts for one torrent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub complete: u32,
    pub downloaded: u32,
    pub incomplete: u32,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub interval: Duration,
    pub max_torrents: usize,
    pub max_peers_per_torrent: usize,
    pub max_peers_per_ip: usize,
    pub max_peers: usize,
    pub max_numwant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            interval: Duration::from_secs(1800),
            max_torrents: 100_000,
            max_peers_per_torrent: 20_000,
            max_peers_per_ip: 8,
            max_peers: 1_000_000,
            max_numwant: 200,
        }
    }
}

#[derive(Debug)]
struct Peer {
    seed: bool,
    last: Instant,
}

#[derive(Debug, Default)]
struct Swarm {
    peers: HashMap<SocketAddr, Peer>,
    per_ip: HashMap<IpAddr, u16>,
    seeds: u32,
    downloaded: u32,
}

impl Swarm {
    fn remove(&mut self, addr: &SocketAddr) -> bool {
        let Some(p) = self.peers.remove(addr) else {
            return false;
        };
        if p.seed {
            self.seeds -= 1;
        }
        if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
        true
    }

    fn counts(&self) -> Counts {
        Counts {
            complete: self.seeds,
            downloaded: self.downloaded,
            incomplete: self.peers.len() as u32 - self.seeds,
        }
    }
}

#[derive(Debug)]
pub struct Table {
    limits: Limits,
    allow: Option<HashSet<[u8; 20]>>,
    swarms: HashMap<[u8; 20], Swarm>,
    peers: usize,
}

impl Table {
    /// A table that tracks only `allow`'s torrents, if given.
    pub fn new(limits: Limits, allow: Option<HashSet<[u8; 20]>>) -> Table {
        Table {
            limits,
            allow,
            swarms: HashMap::new(),
            peers: 0,
        }
    }

    /// Records `a` and picks up to its `numwant` other peers at random
    /// (`pick` chooses an index below its argument).
    pub fn announce(
        &mut self,
        a: &Announce,
        now: Instant,
        mut pick: impl FnMut(usize) -> usize,
    ) -> Result<Reply, Refused> {
        if self
            .allow
            .as_ref()
            .is_some_and(|s| !s.contains(&a.info_hash))
        {
            return Err(Refused::NotAllowed);
        }
        if a.addr.port() == 0 {
            return Err(Refused::BadPort);
        }
        if !self.swarms.contains_key(&a.info_hash) {
            if a.event == Event::Stopped {
                return Ok(self.reply(&Swarm::default(), vec![]));
            }
            if self.swarms.len() >= self.limits.max_torrents {
                return Err(Refused::Full);
            }
        }
        let limits = self.limits.clone();
        let swarm = self.swarms.entry(a.info_hash).or_default();
        if a.event == Event::Stopped {
            if swarm.remove(&a.addr) {
                self.peers -= 1;
            }
            let reply = Self::reply_of(&limits, swarm, vec![]);
            if swarm.peers.is_empty() {
                self.swarms.remove(&a.info_hash);
            }
            return Ok(reply);
        }
        let seed = a.left == 0;
        match swarm.peers.get_mut(&a.addr) {
            Some(p) => {
                if p.seed != seed {
                    if seed {
                        swarm.seeds += 1;
                    } else {
                        swarm.seeds -= 1;
                    }
                }
                p.seed = seed;
                p.last = now;
            }
            None => {
                let from_ip = swarm.per_ip.get(&a.addr.ip()).copied().unwrap_or(0);
                let refused = if from_ip as usize >= limits.max_peers_per_ip {
                    Some(Refused::TooManyFromIp)
                } else if swarm.peers.len() >= limits.max_peers_per_torrent
                    || self.peers >= limits.max_peers
                {
                    Some(Refused::Full)
                } else {
                    None
                };
                if let Some(r) = refused {
                    if swarm.peers.is_empty() {
                        self.swarms.remove(&a.info_hash);
                    }
                    return Err(r);
                }
                swarm.peers.insert(a.addr, Peer { seed, last: now });
                *swarm.per_ip.entry(a.addr.ip()).or_default() += 1;
                if seed {
                    swarm.seeds += 1;
                }
                self.peers += 1;
            }
        }
        if a.event == Event::Completed {
            swarm.downloaded = swarm.downloaded.saturating_add(1);
        }
        // Random picks without repeats: a partial shuffle of the candidates.
        let mut candidates: Vec<SocketAddr> = swarm
            .peers
            .iter()
            .filter(|(addr, p)| **addr != a.addr && !(seed && p.seed))
            .map(|(addr, _)| *addr)
            .collect();
        let want = a.numwant.min(limits.max_numwant).min(candidates.len());
        for i in 0..want {
            let j = i + pick(candidates.len() - i);
            candidates.swap(i, j);
        }
        candidates.truncate(want);
        Ok(Self::reply_of(&limits, swarm, candidates))
    }

    fn reply(&self, swarm: &Swarm, peers: Vec<SocketAddr>) -> Reply {
        Self::reply_of(&self.limits, swarm, peers)
    }

    fn reply_of(limits: &Limits, swarm: &Swarm, peers: Vec<SocketAddr>) -> Reply {
        let c = swarm.counts();
        Reply {
            peers,
            complete: c.complete,
            incomplete: c.incomplete,
            interval: limits.interval,
            min_interval: limits.interval / 2,
        }
    }

    /// Counts for a scrape (unknown torrents count zero).
    pub fn scrape(&self, info_hash: &[u8; 20]) -> Counts {
        self.swarms
            .get(info_hash)
            .map(Swarm::counts)
            .unwrap_or_default()
    }

    /// Forgets peers not heard from for two intervals; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let ttl = self.limits.interval * 2;
        let mut gone = 0;
        self.swarms.retain(|_, s| {
            let old: Vec<SocketAddr> = s
                .peers
                .iter()
                .filter(|(_, p)| now.duration_since(p.last) > ttl)
                .map(|(a, _)| *a)
                .collect();
            for a in &old {
                s.remove(a);
            }
            gone += old.len();
            !s.peers.is_empty()
        });
        self.peers -= gone;
        gone
    }

    /// Torrents and peers held.
    pub fn size(&self) -> (usize, usize) {
        (self.swarms.len(), self.peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(h: u8, addr: &str, left: u64, event: Event) -> Announce {
        Announce {
            info_hash: [h; 20],
            addr: addr.parse().unwrap(),
            event,
            left,
            numwant: 50,
        }
    }

    fn first(_: usize) -> usize {
        0
    }

    #[test]
    fn peers_meet_and_counts_follow_events() {
        let mut t = Table::new(Limits::default(), None);
        let now = Instant::now();
        let r = t
            .announce(&ann(1, "10.0.0.1:1000", 0, Event::Started), now, first)
            .unwrap();
        assert!(r.peers.is_empty());
        assert_eq!((r.complete, r.incomplete), (1, 0));
        let r = t
            .announce(&ann(1, "10.0.0.2:2000", 500, Event::Started), now, first)
            .unwrap();
        assert_eq!(r.peers, vec!["10.0.0.1:1000".parse().unwrap()]);
        assert_eq!((r.complete, r.incomplete), (1, 1));
        // A seed is not handed other seeds.
        let r = t
            .announce(&ann(1, "10.0.0.3:3000", 0, Event::Started), now, first)
            .unwrap();
        assert_eq!(r.peers, vec!["10.0.0.2:2000".parse().unwrap()]);
        t.announce(&ann(1, "10.0.0.2:2000", 0, Event::Completed), now, first)
            .unwrap();
        assert_eq!(
            t.scrape(&[1; 20]),
            Counts {
                complete: 3,
                downloaded: 1,
                incomplete: 0
            }
        );
        t.announce(&ann(1, "10.0.0.3:3000", 0, Event::Stopped), now, first)
            .unwrap();
        assert_eq!(t.scrape(&[1; 20]).complete, 2);
        assert_eq!(t.scrape(&[9; 20]), Counts::default());
        assert_eq!(t.size(), (1, 2));
    }

    #[test]
    fn peers_expire_after_two_intervals() {
        let mut t = Table::new(
            Limits {
                interval: Duration::from_secs(10),
                ..Limits::default()
            },
            None,
        );
        let t0 = Instant::now();
        t.announce(&ann(1, "10.0.0.1:1", 5, Event::None), t0, first)
            .unwrap();
        t.announce(
            &ann(1, "10.0.0.2:1", 5, Event::None),
            t0 + Duration::from_secs(15),
            first,
        )
        .unwrap();
        assert_eq!(t.expire(t0 + Duration::from_secs(19)), 0);
        assert_eq!(t.expire(t0 + Duration::from_secs(21)), 1);
        assert_eq!(t.expire(t0 + Duration::from_secs(36)), 1);
        assert_eq!(t.size(), (0, 0));
    }

    #[test]
    fn floods_and_strangers_are_bounded() {
        let limits = Limits {
            max_torrents: 3,
            max_peers_per_torrent: 5,
            max_peers_per_ip: 2,
            max_peers: 8,
            ..Limits::default()
        };
        let now = Instant::now();
        // One host with many ports: two get in.
        let mut t = Table::new(limits.clone(), None);
        for port in 1..100 {
            let r = t.announce(
                &ann(1, &format!("10.0.0.1:{port}"), 1, Event::None),
                now,
                first,
            );
            assert_eq!(r.is_ok(), port <= 2, "port {port}");
        }
        // Many hosts: the torrent fills, then the table.
        for ip in 2..50u8 {
            let _ = t.announce(
                &ann(1, &format!("10.0.1.{ip}:1"), 1, Event::None),
                now,
                first,
            );
        }
        assert_eq!(t.size(), (1, 5));
        for h in 2..50u8 {
            for ip in 1..10u8 {
                let _ = t.announce(
                    &ann(h, &format!("10.0.2.{ip}:1"), 1, Event::None),
                    now,
                    first,
                );
            }
        }
        let (torrents, peers) = t.size();
        assert!(
            torrents <= 3 && peers <= 8,
            "{torrents} torrents, {peers} peers"
        );
        assert_eq!(
            t.announce(&ann(99, "10.9.9.9:1", 1, Event::None), now, first),
            Err(Refused::Full)
        );
        // numwant is capped and never repeats a peer.
        let mut t = Table::new(Limits::default(), None);
        for ip in 1..=250u8 {
            t.announce(
                &ann(1, &format!("10.3.0.{ip}:1"), 1, Event::None),
                now,
                first,
            )
            .unwrap();
        }
        let mut a = ann(1, "10.4.0.1:1", 1, Event::None);
        a.numwant = 10_000;
        let mut n = 0;
        let r = t
            .announce(&a, now, |k| {
                n += 1;
                n % k
            })
            .unwrap();
        assert_eq!(r.peers.len(), 200);
        assert_eq!(r.peers.iter().collect::<HashSet<_>>().len(), 200);
        // An allow-list refuses the rest.
        let mut t = Table::new(Limits::default(), Some([[1; 20]].into()));
        assert!(t
            .announce(&ann(1, "10.0.0.1:1", 1, Event::None), now, first)
            .is_ok());
        assert_eq!(
            t.announce(&ann(2, "10.0.0.1:1", 1, Event::None), now, first),
            Err(Refused::NotAllowed)
        );
        assert_eq!(
            t.announce(&ann(1, "10.0.0.1:0", 1, Event::None), now, first),
            Err(Refused::BadPort)
        );
    }
}
