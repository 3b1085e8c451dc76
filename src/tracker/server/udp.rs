//! UDP tracker requests and answers (BEP 15), sans-io: a datagram in, a
//! datagram out. Connection ids hold no state: each is a keyed hash of the
//! sender's address and the minute, good for that minute and the next
//! (BEP 15 asks for at least one minute).

use super::table::{Announce, Counts, Event, Reply};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;
/// Info-hashes one scrape may ask for (BEP 15: about 74 fit a packet).
pub const MAX_SCRAPE: usize = 74;

/// What a datagram asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Connect {
        tid: u32,
    },
    Announce {
        tid: u32,
        announce: Announce,
    },
    Scrape {
        tid: u32,
        hashes: Vec<[u8; 20]>,
    },
    /// Answered with an error packet.
    Bad {
        tid: u32,
        why: &'static str,
    },
}

/// Makes and checks connection ids.
pub struct ConnIds {
    key: std::hash::RandomState,
}

impl Default for ConnIds {
    fn default() -> Self {
        ConnIds {
            key: std::hash::RandomState::new(),
        }
    }
}

impl ConnIds {
    pub fn make(&self, from: SocketAddr, minute: u64) -> u64 {
        self.key.hash_one((from, minute))
    }

    fn valid(&self, id: u64, from: SocketAddr, minute: u64) -> bool {
        id == self.make(from, minute) || id == self.make(from, minute.wrapping_sub(1))
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// Reads one datagram from `from` at `minute`; `None`: not worth an
/// answer (too short to carry a transaction id, or not a tracker packet).
pub fn parse(b: &[u8], from: SocketAddr, minute: u64, ids: &ConnIds) -> Option<Request> {
    if b.len() < 16 {
        return None;
    }
    let (conn, action, tid) = (u64_at(b, 0), u32_at(b, 8), u32_at(b, 12));
    if action == CONNECT {
        return (conn == PROTOCOL_ID).then_some(Request::Connect { tid });
    }
    if !ids.valid(conn, from, minute) {
        return Some(Request::Bad {
            tid,
            why: "unknown connection id",
        });
    }
    match action {
        ANNOUNCE if b.len() >= 98 => {
            let event = match u32_at(b, 80) {
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => Event::None,
            };
            let numwant = match u32_at(b, 92) as i32 {
                n if n < 0 => 50,
                n => n as usize,
            };
            let port = u16::from_be_bytes([b[96], b[97]]);
            Some(Request::Announce {
                tid,
                announce: Announce {
                    info_hash: b[16..36].try_into().expect("20 bytes"),
                    // The IP field is not trusted: the sender's address is.
                    addr: SocketAddr::new(from.ip(), port),
                    event,
                    left: u64_at(b, 64),
                    numwant,
                },
            })
        }
        SCRAPE => {
            let body = &b[16..];
            if !body.len().is_multiple_of(20) || body.len() / 20 > MAX_SCRAPE {
                return Some(Request::Bad {
                    tid,
                    why: "bad scrape",
                });
            }
            Some(Request::Scrape {
                tid,
                hashes: body
                    .chunks_exact(20)
                    .map(|c| c.try_into().expect("20 bytes"))
                    .collect(),
            })
        }
        _ => Some(Request::Bad {
            tid,
            why: "bad request",
        }),
    }
}

pub fn connect_reply(tid: u32, conn: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&CONNECT.to_be_bytes());
    v.extend_from_slice(&tid.to_be_bytes());
    v.extend_from_slice(&conn.to_be_bytes());
    v
}

/// The answer to an announce from an IPv4 or IPv6 sender: its family's
/// peers only (BEP 15 has one address size per packet).
pub fn announce_reply(tid: u32, r: &Reply, v6: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + r.peers.len() * 18);
    v.extend_from_slice(&ANNOUNCE.to_be_bytes());
    v.extend_from_slice(&tid.to_be_bytes());
    v.extend_from_slice(&(r.interval.as_secs() as u32).to_be_bytes());
    v.extend_from_slice(&r.incomplete.to_be_bytes());
    v.extend_from_slice(&r.complete.to_be_bytes());
    for p in r.peers.iter().filter(|p| p.is_ipv6() == v6) {
        match p.ip() {
            IpAddr::V4(ip) => v.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => v.extend_from_slice(&ip.octets()),
        }
        v.extend_from_slice(&p.port().to_be_bytes());
    }
    v
}

pub fn scrape_reply(tid: u32, counts: &[Counts]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + counts.len() * 12);
    v.extend_from_slice(&SCRAPE.to_be_bytes());
    v.extend_from_slice(&tid.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.complete.to_be_bytes());
        v.extend_from_slice(&c.downloaded.to_be_bytes());
        v.extend_from_slice(&c.incomplete.to_be_bytes());
    }
    v
}

pub fn error_reply(tid: u32, why: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + why.len());
    v.extend_from_slice(&ERROR.to_be_bytes());
    v.extend_from_slice(&tid.to_be_bytes());
    v.extend_from_slice(why.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::udp as client;
    use crate::tracker::AnnounceRequest;
    use std::time::Duration;

    #[test]
    fn the_client_and_the_server_understand_each_other() {
        let ids = ConnIds::default();
        let from: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let Some(Request::Connect { tid: 9 }) = parse(&client::connect_request(9), from, 100, &ids)
        else {
            panic!("a connect");
        };
        let conn = client::parse_connect(&connect_reply(9, ids.make(from, 100)), 9).unwrap();
        let req = AnnounceRequest {
            info_hash: [3; 20],
            peer_id: [4; 20],
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: crate::tracker::Event::Started,
            numwant: 30,
            key: 1,
            tracker_id: None,
        };
        // Still good the next minute, not the one after.
        let pkt = client::announce_request(conn, 10, &req);
        let Some(Request::Announce { tid: 10, announce }) = parse(&pkt, from, 101, &ids) else {
            panic!("an announce");
        };
        assert_eq!(announce.addr, "10.0.0.5:6881".parse().unwrap());
        assert_eq!(
            (announce.event, announce.left, announce.numwant),
            (Event::Started, 0, 30)
        );
        assert!(matches!(
            parse(&pkt, from, 102, &ids),
            Some(Request::Bad { tid: 10, .. })
        ));
        // Another sender cannot use it.
        let other: SocketAddr = "10.0.0.6:40000".parse().unwrap();
        assert!(matches!(
            parse(&pkt, other, 100, &ids),
            Some(Request::Bad { .. })
        ));
        let r = Reply {
            peers: vec!["10.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
            complete: 4,
            incomplete: 5,
            interval: Duration::from_secs(60),
            min_interval: Duration::from_secs(30),
        };
        let got = client::parse_announce(&announce_reply(10, &r, false), 10).unwrap();
        assert_eq!(got.peers, vec!["10.0.0.1:1".parse().unwrap()]);
        assert_eq!((got.seeders, got.leechers), (Some(4), Some(5)));
        assert!(client::parse_announce(&error_reply(10, "no"), 10).is_err());
        // Scrapes: whole hashes, a bounded number.
        let mut s = conn.to_be_bytes().to_vec();
        s.extend_from_slice(&SCRAPE.to_be_bytes());
        s.extend_from_slice(&11u32.to_be_bytes());
        s.extend_from_slice(&[1; 40]);
        assert_eq!(
            parse(&s, from, 100, &ids),
            Some(Request::Scrape {
                tid: 11,
                hashes: vec![[1; 20]; 2]
            })
        );
        s.push(0);
        assert!(matches!(
            parse(&s, from, 100, &ids),
            Some(Request::Bad { .. })
        ));
        assert_eq!(scrape_reply(11, &[Counts::default()]).len(), 20);
        assert_eq!(parse(&[0; 10], from, 100, &ids), None);
        assert_eq!(parse(&[0; 16], from, 100, &ids), None);
    }
}
