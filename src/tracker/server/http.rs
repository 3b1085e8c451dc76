//! HTTP tracker requests and answers (BEP 3, compact peers BEP 23, IPv6
//! peers BEP 7, scrape BEP 48), sans-io: a query string in, bencode out.

use super::table::{Announce, Counts, Event, Reply};
use bendy::value::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// Info-hashes one scrape may ask for.
pub const MAX_SCRAPE: usize = 64;

/// An announce as asked, before the table sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnnounce {
    pub announce: Announce,
    /// `compact=0` asked for the dictionary form.
    pub compact: bool,
}

/// `k=v&…` with each part percent-decoded to bytes (info-hashes are binary).
fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (
            percent_encoding::percent_decode_str(k).into(),
            percent_encoding::percent_decode_str(v).into(),
        )
    })
}

fn number<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Parses `/announce`'s query; `from` is the sender's address (its IP is
/// the peer's: an `ip=` parameter is not trusted).
pub fn parse_announce(query: &str, from: IpAddr) -> Result<HttpAnnounce, &'static str> {
    let (mut hash, mut port, mut left, mut event) = (None, None, None, Event::None);
    let (mut compact, mut numwant) = (true, 50usize);
    for (k, v) in pairs(query) {
        match &k[..] {
            b"info_hash" => hash = Some(<[u8; 20]>::try_from(&v[..]).map_err(|_| "bad info_hash")?),
            b"port" => port = Some(number::<u16>(&v).ok_or("bad port")?),
            b"left" => left = Some(number::<u64>(&v).ok_or("bad left")?),
            b"event" => {
                event = match &v[..] {
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    b"" | b"empty" => Event::None,
                    _ => return Err("bad event"),
                }
            }
            b"compact" => compact = &v[..] != b"0",
            b"numwant" => numwant = number(&v).unwrap_or(50),
            _ => {}
        }
    }
    let port = port.ok_or("missing port")?;
    Ok(HttpAnnounce {
        announce: Announce {
            info_hash: hash.ok_or("missing info_hash")?,
            addr: SocketAddr::new(from, port),
            event,
            left: left.unwrap_or(1),
            numwant,
        },
        compact,
    })
}

/// The info-hashes of `/scrape`'s query (at most [`MAX_SCRAPE`]).
pub fn parse_scrape(query: &str) -> Result<Vec<[u8; 20]>, &'static str> {
    let mut out = Vec::new();
    for (k, v) in pairs(query) {
        if &k[..] == b"info_hash" {
            if out.len() == MAX_SCRAPE {
                return Err("too many info_hash");
            }
            out.push(<[u8; 20]>::try_from(&v[..]).map_err(|_| "bad info_hash")?);
        }
    }
    Ok(out)
}

fn key(k: &'static str) -> Cow<'static, [u8]> {
    Cow::Borrowed(k.as_bytes())
}

fn int(i: u64) -> Value<'static> {
    Value::Integer(i as i64)
}

fn compact(peers: &[SocketAddr], v6: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for p in peers.iter().filter(|p| p.is_ipv6() == v6) {
        match p.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&p.port().to_be_bytes());
    }
    out
}

/// The bencoded answer to an announce.
pub fn announce_body(r: &Reply, compact_form: bool) -> Vec<u8> {
    let mut d = BTreeMap::new();
    d.insert(key("complete"), int(r.complete as u64));
    d.insert(key("incomplete"), int(r.incomplete as u64));
    d.insert(key("interval"), int(r.interval.as_secs()));
    d.insert(key("min interval"), int(r.min_interval.as_secs()));
    if compact_form {
        d.insert(key("peers"), Value::Bytes(compact(&r.peers, false).into()));
        let v6 = compact(&r.peers, true);
        if !v6.is_empty() {
            d.insert(key("peers6"), Value::Bytes(v6.into()));
        }
    } else {
        let list = r
            .peers
            .iter()
            .map(|p| {
                let mut e = BTreeMap::new();
                e.insert(
                    key("ip"),
                    Value::Bytes(p.ip().to_string().into_bytes().into()),
                );
                e.insert(key("port"), int(p.port() as u64));
                Value::Dict(e)
            })
            .collect();
        d.insert(key("peers"), Value::List(list));
    }
    crate::bencode::encode(&Value::Dict(d))
}

/// The bencoded answer to a scrape.
pub fn scrape_body(files: &[([u8; 20], Counts)]) -> Vec<u8> {
    let mut f = BTreeMap::new();
    for (h, c) in files {
        let mut e = BTreeMap::new();
        e.insert(key("complete"), int(c.complete as u64));
        e.insert(key("downloaded"), int(c.downloaded as u64));
        e.insert(key("incomplete"), int(c.incomplete as u64));
        f.insert(Cow::Owned(h.to_vec()), Value::Dict(e));
    }
    let mut d = BTreeMap::new();
    d.insert(key("files"), Value::Dict(f));
    crate::bencode::encode(&Value::Dict(d))
}

/// A refusal, as BEP 3 says to give one.
pub fn failure_body(reason: &str) -> Vec<u8> {
    let mut d = BTreeMap::new();
    d.insert(
        key("failure reason"),
        Value::Bytes(reason.as_bytes().to_vec().into()),
    );
    crate::bencode::encode(&Value::Dict(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn announces_parse_and_answers_are_what_clients_read() {
        let from: IpAddr = "10.0.0.7".parse().unwrap();
        let q = "info_hash=%01%02%03%04%05%06%07%08%09%0a%0b%0c%0d%0e%0f%10%11%12%13%14\
                 &peer_id=-AR1000-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=0\
                 &event=completed&compact=1&numwant=20&ip=1.2.3.4";
        let a = parse_announce(q, from).unwrap();
        assert_eq!(a.announce.info_hash[0], 1);
        assert_eq!(a.announce.info_hash[19], 0x14);
        assert_eq!(a.announce.addr, "10.0.0.7:6881".parse().unwrap());
        assert_eq!(
            (
                a.announce.event,
                a.announce.left,
                a.announce.numwant,
                a.compact
            ),
            (Event::Completed, 0, 20, true)
        );
        for bad in [
            "port=1",
            "info_hash=abc&port=1",
            "info_hash=aaaaaaaaaaaaaaaaaaaa",
            "info_hash=aaaaaaaaaaaaaaaaaaaa&port=99999",
            "info_hash=aaaaaaaaaaaaaaaaaaaa&port=1&event=jump",
        ] {
            assert!(parse_announce(bad, from).is_err(), "{bad}");
        }
        let r = Reply {
            peers: vec!["10.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
            complete: 1,
            incomplete: 2,
            interval: Duration::from_secs(60),
            min_interval: Duration::from_secs(30),
        };
        let body = announce_body(&r, true);
        let parsed = crate::tracker::http::parse_response(&body).unwrap();
        assert_eq!(parsed.peers, r.peers);
        assert_eq!((parsed.seeders, parsed.leechers), (Some(1), Some(2)));
        let dict = crate::tracker::http::parse_response(&announce_body(&r, false)).unwrap();
        assert_eq!(dict.peers, r.peers);
        assert!(crate::tracker::http::parse_response(&failure_body("no")).is_err());
        let hashes = parse_scrape(&"info_hash=aaaaaaaaaaaaaaaaaaaa&".repeat(3)).unwrap();
        assert_eq!(hashes, vec![[b'a'; 20]; 3]);
        assert!(parse_scrape(&"info_hash=aaaaaaaaaaaaaaaaaaaa&".repeat(65)).is_err());
        assert_eq!(
            scrape_body(&[(
                [b'a'; 20],
                Counts {
                    complete: 1,
                    downloaded: 2,
                    incomplete: 3
                }
            )]),
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei1e10:downloadedi2e10:incompletei3eeee"
        );
    }
}
