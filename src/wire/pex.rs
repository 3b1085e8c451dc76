//! BEP 11 `ut_pex` messages: peers tell each other which peers they are
//! connected to, so a swarm holds together without asking a tracker or the
//! DHT again.
//!
//! The payload is a bencoded dict of compact address lists (`added`,
//! `added6`, `dropped`, `dropped6`; 6 or 18 bytes per address) and one flag
//! byte per added address (`added.f`, `added6.f`). Sans-io like the rest of
//! the wire; what a list may hold is bounded here, whatever a peer sends.

use bendy::decoding::{Decoder, Object};
use bendy::value::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The extension's name in the BEP 10 handshake.
pub const NAME: &str = "ut_pex";
/// Addresses in one list of a message we send (libtorrent sends at most 50
/// added and 50 dropped).
pub const MAX_SEND: usize = 50;
/// Addresses taken from one list of a message we receive; the rest is
/// ignored.
pub const MAX_TAKE: usize = 100;
/// `added.f`: the peer prefers encryption (we do not speak it).
pub const FLAG_ENCRYPTION: u8 = 0x01;
/// `added.f`: the peer is a seed.
pub const FLAG_SEED: u8 = 0x02;
/// `added.f`: the peer accepts incoming connections.
pub const FLAG_CONNECTABLE: u8 = 0x10;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMsg {
    /// Peers the sender connected to since its last message, with flags.
    pub added: Vec<(SocketAddr, u8)>,
    /// Peers it disconnected from.
    pub dropped: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PexError {
    #[error("ut_pex: not a bencoded dict: {0}")]
    Bencode(String),
    #[error("ut_pex: `{0}` is not a list of compact addresses")]
    Field(&'static str),
}

/// Up to [`MAX_TAKE`] addresses of `bytes`, `len` bytes each (6: IPv4,
/// 18: IPv6).
fn addrs(bytes: &[u8], len: usize, field: &'static str) -> Result<Vec<SocketAddr>, PexError> {
    if !bytes.len().is_multiple_of(len) {
        return Err(PexError::Field(field));
    }
    Ok(bytes
        .chunks_exact(len)
        .take(MAX_TAKE)
        .map(|c| {
            let (ip, port) = c.split_at(len - 2);
            let ip = match <[u8; 4]>::try_from(ip) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(ip).expect("18-byte entries"),
                )),
            };
            SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
        })
        .collect())
}

fn compact(addrs: &[SocketAddr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in addrs {
        match a.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&a.port().to_be_bytes());
    }
    out
}

impl PexMsg {
    pub fn decode(payload: &[u8]) -> Result<PexMsg, PexError> {
        let bad = |e: bendy::decoding::Error| PexError::Bencode(e.to_string());
        let mut d = Decoder::new(payload).with_max_depth(4);
        let Some(Object::Dict(mut dict)) = d.next_object().map_err(bad)? else {
            return Err(PexError::Bencode("not a dict".into()));
        };
        let (mut added, mut flags, mut added6, mut flags6) = (vec![], vec![], vec![], vec![]);
        let mut dropped = vec![];
        while let Some((k, v)) = dict.next_pair().map_err(bad)? {
            let field: &'static str = match k {
                b"added" => "added",
                b"added.f" => "added.f",
                b"added6" => "added6",
                b"added6.f" => "added6.f",
                b"dropped" => "dropped",
                b"dropped6" => "dropped6",
                _ => continue,
            };
            let Object::Bytes(b) = v else {
                return Err(PexError::Field(field));
            };
            match field {
                "added" => added = addrs(b, 6, field)?,
                "added6" => added6 = addrs(b, 18, field)?,
                "dropped" => dropped.extend(addrs(b, 6, field)?),
                "dropped6" => dropped.extend(addrs(b, 18, field)?),
                "added.f" => flags = b.iter().take(MAX_TAKE).copied().collect(),
                _ => flags6 = b.iter().take(MAX_TAKE).copied().collect(),
            }
        }
        // A missing flag is no flag.
        let with_flags = |a: Vec<SocketAddr>, f: &[u8]| {
            a.into_iter()
                .enumerate()
                .map(|(i, a)| (a, f.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
        };
        let mut all = with_flags(added, &flags);
        all.extend(with_flags(added6, &flags6));
        Ok(PexMsg {
            added: all,
            dropped,
        })
    }

    /// The message as bencode (lists of more than [`MAX_SEND`] are the
    /// caller's to avoid).
    pub fn encode(&self) -> Vec<u8> {
        let (v4, v6): (Vec<_>, Vec<_>) = self.added.iter().partition(|(a, _)| a.is_ipv4());
        let (d4, d6): (Vec<SocketAddr>, Vec<SocketAddr>) =
            self.dropped.iter().partition(|a| a.is_ipv4());
        let bytes = |b: Vec<u8>| Value::Bytes(Cow::Owned(b));
        let addrs_of =
            |l: &[&(SocketAddr, u8)]| compact(&l.iter().map(|(a, _)| *a).collect::<Vec<_>>());
        let flags_of = |l: &[&(SocketAddr, u8)]| l.iter().map(|(_, f)| *f).collect::<Vec<u8>>();
        let mut d = BTreeMap::new();
        d.insert(Cow::Borrowed(&b"added"[..]), bytes(addrs_of(&v4)));
        d.insert(Cow::Borrowed(&b"added.f"[..]), bytes(flags_of(&v4)));
        d.insert(Cow::Borrowed(&b"dropped"[..]), bytes(compact(&d4)));
        if !v6.is_empty() || !d6.is_empty() {
            d.insert(Cow::Borrowed(&b"added6"[..]), bytes(addrs_of(&v6)));
            d.insert(Cow::Borrowed(&b"added6.f"[..]), bytes(flags_of(&v6)));
            d.insert(Cow::Borrowed(&b"dropped6"[..]), bytes(compact(&d6)));
        }
        crate::bencode::encode(&Value::Dict(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn messages_round_trip_and_hostile_ones_are_bounded_or_errors() {
        let m = PexMsg {
            added: vec![
                (a("10.0.0.1:6881"), FLAG_SEED | FLAG_CONNECTABLE),
                (a("[::1]:51413"), 0),
            ],
            dropped: vec![a("10.0.0.2:1"), a("[fe80::1]:2")],
        };
        assert_eq!(PexMsg::decode(&m.encode()), Ok(m));
        // libtorrent's shape: v4 only, flags shorter than the list.
        let mut raw = b"d5:added12:".to_vec();
        raw.extend([127, 0, 0, 1, 0x1a, 0xe1, 127, 0, 0, 2, 0, 80]);
        raw.extend(b"7:added.f1:\x027:dropped0:e");
        let got = PexMsg::decode(&raw).unwrap();
        assert_eq!(
            got.added,
            vec![(a("127.0.0.1:6881"), FLAG_SEED), (a("127.0.0.2:80"), 0)]
        );
        // A flood is cut to MAX_TAKE per list.
        let mut flood = format!("d5:added{}:", 6 * 10_000).into_bytes();
        flood.extend(std::iter::repeat_n([10u8, 0, 0, 1, 0, 1], 10_000).flatten());
        flood.push(b'e');
        assert_eq!(PexMsg::decode(&flood).unwrap().added.len(), MAX_TAKE);
        for bad in [
            &b""[..],
            b"le",
            b"d5:added5:12345e",
            b"d5:addedi1ee",
            b"d8:dropped63:123456789012345678e",
            b"d5:added6:123456",
        ] {
            assert!(PexMsg::decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(PexMsg::decode(b"d1:xi1ee"), Ok(PexMsg::default()));
    }
}
