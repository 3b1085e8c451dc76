//! HTTP and HTTPS tracker announce (BEP 3), compact (BEP 23) and dictionary
//! peer lists.

use super::{
    parse_compact_v4, parse_compact_v6, AnnounceRequest, AnnounceResponse, Event, TrackerError,
};
use bendy::value::Value;
use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The full announce URL (query appended with `?` or `&`).
pub fn announce_url(base: &str, r: &AnnounceRequest) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let event = match r.event {
        Event::None => "",
        Event::Started => "&event=started",
        Event::Completed => "&event=completed",
        Event::Stopped => "&event=stopped",
    };
    let tracker_id = r
        .tracker_id
        .as_ref()
        .map(|id| format!("&trackerid={}", percent_encode(id, NON_ALPHANUMERIC)))
        .unwrap_or_default();
    format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}{tracker_id}{event}",
        percent_encode(&r.info_hash, NON_ALPHANUMERIC),
        percent_encode(&r.peer_id, NON_ALPHANUMERIC),
        r.port,
        r.uploaded,
        r.downloaded,
        r.left,
        r.numwant,
        r.key,
    )
}

pub fn parse_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let bad = |s: &str| TrackerError::BadResponse(s.to_string());
    let v = crate::bencode::decode(body).map_err(|e| TrackerError::BadResponse(e.to_string()))?;
    let Value::Dict(d) = v else {
        return Err(bad("not a dict"));
    };
    if let Some(Value::Bytes(reason)) = d.get(&b"failure reason"[..]) {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(reason).into_owned(),
        ));
    }
    let interval = match d.get(&b"interval"[..]) {
        Some(Value::Integer(i)) if *i > 0 => Duration::from_secs(*i as u64),
        _ => Duration::from_secs(1800),
    };
    let min_interval = match d.get(&b"min interval"[..]) {
        Some(Value::Integer(i)) if *i > 0 => Some(Duration::from_secs(*i as u64)),
        _ => None,
    };
    let tracker_id = match d.get(&b"tracker id"[..]) {
        Some(Value::Bytes(b)) if !b.is_empty() && b.len() <= 256 => Some(b.to_vec()),
        _ => None,
    };
    let mut peers = Vec::new();
    match d.get(&b"peers"[..]) {
        Some(Value::Bytes(b)) => peers.extend(parse_compact_v4(b)),
        Some(Value::List(list)) => {
            for p in list {
                let Value::Dict(pd) = p else { continue };
                let ip = match pd.get(&b"ip"[..]) {
                    Some(Value::Bytes(ip)) => std::str::from_utf8(ip)
                        .ok()
                        .and_then(|s| s.parse::<IpAddr>().ok()),
                    _ => None,
                };
                let port = match pd.get(&b"port"[..]) {
                    Some(Value::Integer(p)) if (1..=65535).contains(p) => Some(*p as u16),
                    _ => None,
                };
                if let (Some(ip), Some(port)) = (ip, port) {
                    peers.push(SocketAddr::new(ip, port));
                }
            }
        }
        None => {}
        Some(_) => return Err(bad("`peers` has the wrong type")),
    }
    if let Some(Value::Bytes(b)) = d.get(&b"peers6"[..]) {
        peers.extend(parse_compact_v6(b));
    }
    let count = |k: &[u8]| match d.get(k) {
        Some(Value::Integer(i)) if *i >= 0 => Some(*i as u32),
        _ => None,
    };
    Ok(AnnounceResponse {
        interval,
        min_interval,
        tracker_id,
        peers,
        seeders: count(b"complete"),
        leechers: count(b"incomplete"),
    })
}

/// Largest tracker answer read (200 compact peers are 1.2 KB): a tracker
/// that sends more is answering something else, or attacking.
const MAX_BODY: usize = 1 << 20;

/// One HTTP(S) client for the process (TLS: rustls with ring).
fn client() -> Result<&'static reqwest::Client, TrackerError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    // Fails only if a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("btt/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TrackerError::Io(human(&e)))?;
    Ok(CLIENT.get_or_init(|| c))
}

pub async fn announce(base: &str, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    let url = announce_url(base, req);
    let mut resp = client()?
        .get(&url)
        .send()
        .await
        .map_err(|e| TrackerError::Io(human(&e)))?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| TrackerError::Io(human(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(TrackerError::BadResponse("answer larger than 1 MiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(TrackerError::BadResponse(format!("HTTP {status}")));
    }
    parse_response(&body)
}

/// A short reason for a failed request, without the URL: its query holds
/// the info-hash and our peer id, and it is long.
fn human(e: &reqwest::Error) -> String {
    use std::error::Error;
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut innermost: Option<&dyn Error> = None;
    let mut next = e.source();
    while let Some(x) = next {
        innermost = Some(x);
        next = x.source();
    }
    match innermost {
        Some(x) => match x.downcast_ref::<std::io::Error>().map(|io| io.kind()) {
            Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
            Some(std::io::ErrorKind::TimedOut) => "timed out".into(),
            _ => x.to_string(),
        },
        // reqwest's own text would name the URL.
        None if e.is_decode() || e.is_body() => "bad answer".into(),
        None => "request failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: [0xab; 20],
            peer_id: *b"-BT0100-abcdefghijkl",
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            numwant: 50,
            key: 0x1234,
            tracker_id: None,
        }
    }

    #[test]
    fn url_is_percent_encoded() {
        let u = announce_url("http://127.0.0.1:6969/announce", &req());
        assert!(
            u.starts_with("http://127.0.0.1:6969/announce?info_hash=%AB%AB"),
            "{u}"
        );
        assert!(u.contains("peer_id=%2DBT0100%2Dabcdefghijkl"));
        assert!(u.contains("&left=3&compact=1") && u.ends_with("&event=started"));
        assert!(announce_url("http://x/a?k=1", &req()).starts_with("http://x/a?k=1&info_hash="));
    }

    #[test]
    fn compact_and_dict_peers() {
        let r = parse_response(
            b"d8:intervali900e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x00\x50e",
        )
        .unwrap();
        assert_eq!(r.interval, Duration::from_secs(900));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "127.0.0.2:80".parse().unwrap()
            ]
        );
        let r = parse_response(
            b"d8:intervali60e5:peersld2:ip9:127.0.0.14:porti7000eed2:ip3:bad4:porti1eeee",
        )
        .unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:7000".parse().unwrap()]);
        let e = parse_response(b"d14:failure reason9:not founde").unwrap_err();
        assert!(e.to_string().contains("not found"));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn min_interval_and_tracker_id_are_read_and_the_id_sent_back() {
        let r =
            parse_response(b"d8:intervali1800e12:min intervali900e10:tracker id3:a&be").unwrap();
        assert_eq!(r.min_interval, Some(Duration::from_secs(900)));
        assert_eq!(r.tracker_id.as_deref(), Some(&b"a&b"[..]));
        let mut q = req();
        q.tracker_id = r.tracker_id;
        let u = announce_url("http://127.0.0.1:6969/announce", &q);
        assert!(u.contains("&trackerid=a%26b&event=started"), "{u}");
        let r = parse_response(b"d8:intervali60e12:min intervali0ee").unwrap();
        assert_eq!((r.min_interval, r.tracker_id), (None, None));
    }
}
