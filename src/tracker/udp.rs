//! UDP tracker protocol (BEP 15): connect, then announce with the connection id.

use super::{parse_compact_v4, AnnounceRequest, AnnounceResponse, Event, TrackerError};
use std::time::Duration;
use tokio::net::UdpSocket;

const PROTOCOL_ID: u64 = 0x0417_2710_1980;
const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const ERROR: u32 = 3;

pub fn connect_request(tid: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    b[8..12].copy_from_slice(&CONNECT.to_be_bytes());
    b[12..].copy_from_slice(&tid.to_be_bytes());
    b
}

fn header(b: &[u8], tid: u32, want: u32) -> Result<(), TrackerError> {
    if b.len() < 8 {
        return Err(TrackerError::BadResponse(format!("{} bytes", b.len())));
    }
    let action = u32::from_be_bytes(b[..4].try_into().expect("4"));
    let got = u32::from_be_bytes(b[4..8].try_into().expect("4"));
    if got != tid {
        return Err(TrackerError::BadResponse("transaction id mismatch".into()));
    }
    if action == ERROR {
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(&b[8..]).into_owned(),
        ));
    }
    if action != want {
        return Err(TrackerError::BadResponse(format!(
            "action {action}, expected {want}"
        )));
    }
    Ok(())
}

pub fn parse_connect(b: &[u8], tid: u32) -> Result<u64, TrackerError> {
    header(b, tid, CONNECT)?;
    if b.len() < 16 {
        return Err(TrackerError::BadResponse("short connect response".into()));
    }
    Ok(u64::from_be_bytes(b[8..16].try_into().expect("8")))
}

pub fn announce_request(conn: u64, tid: u32, r: &AnnounceRequest) -> [u8; 98] {
    let mut b = [0u8; 98];
    b[..8].copy_from_slice(&conn.to_be_bytes());
    b[8..12].copy_from_slice(&ANNOUNCE.to_be_bytes());
    b[12..16].copy_from_slice(&tid.to_be_bytes());
    b[16..36].copy_from_slice(&r.info_hash);
    b[36..56].copy_from_slice(&r.peer_id);
    b[56..64].copy_from_slice(&r.downloaded.to_be_bytes());
    b[64..72].copy_from_slice(&r.left.to_be_bytes());
    b[72..80].copy_from_slice(&r.uploaded.to_be_bytes());
    let ev: u32 = match r.event {
        Event::None => 0,
        Event::Completed => 1,
        Event::Started => 2,
        Event::Stopped => 3,
    };
    b[80..84].copy_from_slice(&ev.to_be_bytes());
    // 84..88: IP 0 = use the sender's address
    b[88..92].copy_from_slice(&r.key.to_be_bytes());
    b[92..96].copy_from_slice(&(r.numwant as i32).to_be_bytes());
    b[96..98].copy_from_slice(&r.port.to_be_bytes());
    b
}

pub fn parse_announce(b: &[u8], tid: u32) -> Result<AnnounceResponse, TrackerError> {
    header(b, tid, ANNOUNCE)?;
    if b.len() < 20 {
        return Err(TrackerError::BadResponse("short announce response".into()));
    }
    let u = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4"));
    Ok(AnnounceResponse {
        interval: Duration::from_secs(u(8).max(1) as u64),
        min_interval: None,
        tracker_id: None,
        leechers: Some(u(12)),
        seeders: Some(u(16)),
        peers: parse_compact_v4(&b[20..]),
    })
}

async fn exchange(
    sock: &UdpSocket,
    msg: &[u8],
    per_try: Duration,
    tries: u32,
) -> Result<Vec<u8>, TrackerError> {
    let mut buf = vec![0u8; 2048];
    let mut wait = per_try;
    for _ in 0..tries {
        sock.send(msg)
            .await
            .map_err(|e| TrackerError::Io(e.to_string()))?;
        match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
            Ok(Ok(n)) => return Ok(buf[..n].to_vec()),
            Ok(Err(e)) => return Err(TrackerError::Io(e.to_string())),
            Err(_) => wait *= 2,
        }
    }
    Err(TrackerError::Timeout)
}

/// `hostport` is what follows `udp://` (a path after it is ignored).
pub async fn announce(
    hostport: &str,
    req: &AnnounceRequest,
    total: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let sock = UdpSocket::bind("0.0.0.0:0")
        .await
        .map_err(|e| TrackerError::Io(e.to_string()))?;
    sock.connect(hostport)
        .await
        .map_err(|e| TrackerError::Io(format!("{hostport}: {e}")))?;
    // BEP 15 retries at 15·2ⁿ s; we scale that to the caller's budget.
    let per_try = (total / 4).max(Duration::from_millis(200));
    let tid: u32 = rand::random();
    let resp = exchange(&sock, &connect_request(tid), per_try, 2).await?;
    let conn = parse_connect(&resp, tid)?;
    let tid: u32 = rand::random();
    let resp = exchange(&sock, &announce_request(conn, tid, req), per_try, 2).await?;
    parse_announce(&resp, tid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        let c = connect_request(7);
        assert_eq!(&c[..8], &[0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80]);
        let mut resp = vec![0, 0, 0, 0, 0, 0, 0, 7];
        resp.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(parse_connect(&resp, 7).unwrap(), 42);
        assert!(parse_connect(&resp, 8).is_err());
        let mut a = vec![0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 60, 0, 0, 0, 1, 0, 0, 0, 2];
        a.extend_from_slice(&[127, 0, 0, 1, 0x1a, 0xe1]);
        let r = parse_announce(&a, 9).unwrap();
        assert_eq!(r.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!(r.interval, Duration::from_secs(60));
        let mut e = vec![0, 0, 0, 3, 0, 0, 0, 9];
        e.extend_from_slice(b"denied");
        assert!(parse_announce(&e, 9)
            .unwrap_err()
            .to_string()
            .contains("denied"));
        assert!(parse_announce(&[1, 2], 9).is_err());
    }
}
