//! Local Service Discovery (BEP 14), behind `--lsd`: peers on the same
//! network find each other without a tracker, by multicasting a small
//! HTTP-like message ("BT-SEARCH") to 239.192.152.143:6771.
//!
//! One node per process, shared by its torrents like the DHT: it listens
//! on the group (with the port shared, so several btt processes and other
//! clients on one host can all listen), hands each torrent the peers
//! announced for its info-hash, and sends our announces. A message names at
//! most [`MAX_HASHES`] torrents; each torrent's queue of found peers is
//! bounded; our own messages are recognised by a random cookie. Private
//! torrents (BEP 27) never use it. The message codec is sans-io.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// BEP 14's IPv4 group and port.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
pub const PORT: u16 = 6771;
/// Info-hashes taken from one message.
pub const MAX_HASHES: usize = 16;
/// Found peers waiting for one torrent to take them.
const QUEUE: usize = 64;

/// One announce as sent or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Search {
    pub port: u16,
    pub hashes: Vec<[u8; 20]>,
    pub cookie: Option<String>,
}

impl Search {
    pub fn encode(&self) -> Vec<u8> {
        let mut s = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: {GROUP}:{PORT}\r\nPort: {}\r\n",
            self.port
        );
        for h in &self.hashes {
            s.push_str(&format!(
                "Infohash: {}\r\n",
                data_encoding::HEXLOWER.encode(h)
            ));
        }
        if let Some(c) = &self.cookie {
            s.push_str(&format!("cookie: {c}\r\n"));
        }
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    /// A datagram as BEP 14 describes it; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Search> {
        let text = std::str::from_utf8(b).ok()?;
        let mut lines = text.split("\r\n");
        if !lines.next()?.starts_with("BT-SEARCH * HTTP/1.") {
            return None;
        }
        let (mut port, mut hashes, mut cookie) = (None, Vec::new(), None);
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "port" => port = v.parse::<u16>().ok().filter(|p| *p != 0),
                "infohash" if hashes.len() < MAX_HASHES => {
                    let h = data_encoding::HEXLOWER_PERMISSIVE
                        .decode(v.as_bytes())
                        .ok()?;
                    hashes.push(<[u8; 20]>::try_from(h).ok()?);
                }
                "cookie" => cookie = Some(v.chars().take(64).collect()),
                _ => {}
            }
        }
        Some(Search {
            port: port?,
            hashes,
            cookie,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("local peer discovery: {0}")]
pub struct LsdError(String);

type Subs = Arc<Mutex<HashMap<[u8; 20], mpsc::Sender<SocketAddr>>>>;

/// The process's LSD node.
pub struct LsdNode {
    sock: Arc<UdpSocket>,
    cookie: String,
    subs: Subs,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LsdNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LsdNode({})", self.cookie)
    }
}

impl LsdNode {
    /// Joins the group on every interface's default; must run inside a
    /// tokio runtime.
    pub fn start() -> Result<Arc<LsdNode>, LsdError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let e = |what: &str, err: std::io::Error| LsdError(format!("{what}: {err}"));
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|x| e("socket", x))?;
        s.set_reuse_address(true).map_err(|x| e("reuse", x))?;
        s.set_reuse_port(true).map_err(|x| e("reuse", x))?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT).into())
            .map_err(|x| e(&format!("bind port {PORT}"), x))?;
        s.join_multicast_v4(&GROUP, &Ipv4Addr::UNSPECIFIED)
            .map_err(|x| e("join the group", x))?;
        s.set_multicast_loop_v4(true).map_err(|x| e("loop", x))?;
        s.set_multicast_ttl_v4(1).map_err(|x| e("ttl", x))?;
        s.set_nonblocking(true).map_err(|x| e("nonblocking", x))?;
        let sock =
            Arc::new(UdpSocket::from_std(std::net::UdpSocket::from(s)).map_err(|x| e("tokio", x))?);
        let cookie = format!("btt-{:016x}", rand::random::<u64>());
        let subs: Subs = Arc::default();
        let task = tokio::spawn(receive(sock.clone(), cookie.clone(), subs.clone()));
        info!("local peer discovery on {GROUP}:{PORT}");
        Ok(Arc::new(LsdNode {
            sock,
            cookie,
            subs,
            task,
        }))
    }

    /// [`LsdNode::start`], or a warning and `None`.
    pub fn start_or_warn() -> Option<Arc<LsdNode>> {
        match Self::start() {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(error = %e, "local peer discovery is off");
                None
            }
        }
    }

    /// Peers announced for `info_hash` from now on (one subscriber each).
    pub fn subscribe(&self, info_hash: [u8; 20]) -> mpsc::Receiver<SocketAddr> {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info_hash, tx);
        rx
    }

    /// Tells the group we serve `info_hash` on `port`.
    pub async fn announce(&self, info_hash: [u8; 20], port: u16) {
        let msg = Search {
            port,
            hashes: vec![info_hash],
            cookie: Some(self.cookie.clone()),
        }
        .encode();
        if let Err(e) = self.sock.send_to(&msg, (GROUP, PORT)).await {
            debug!(error = %e, "LSD announce not sent");
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn receive(sock: Arc<UdpSocket>, cookie: String, subs: Subs) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let Some(s) = Search::decode(&buf[..n]) else {
            continue;
        };
        if s.cookie.as_deref() == Some(cookie.as_str()) {
            continue;
        }
        let peer = SocketAddr::new(from.ip(), s.port);
        let subs = subs.lock().unwrap_or_else(|e| e.into_inner());
        for h in &s.hashes {
            if let Some(tx) = subs.get(h) {
                // A full queue drops the news: the peer announces again.
                let _ = tx.try_send(peer);
            }
        }
    }
}

/// The engine's handle on the node.
#[derive(Clone)]
pub struct LsdRef(pub Arc<LsdNode>);

impl std::fmt::Debug for LsdRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_round_trip_and_strangers_are_bounded() {
        let s = Search {
            port: 6881,
            hashes: vec![[0xab; 20], [1; 20]],
            cookie: Some("btt-1".into()),
        };
        assert_eq!(Search::decode(&s.encode()), Some(s));
        // libtorrent's shape (upper-case hex, no cookie).
        let lt = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 51413\r\nInfohash: {}\r\n\r\n\r\n",
            "AB".repeat(20)
        );
        let got = Search::decode(lt.as_bytes()).unwrap();
        assert_eq!(
            (got.port, got.hashes, got.cookie),
            (51413, vec![[0xab; 20]], None)
        );
        let mut many = "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n".to_string();
        for _ in 0..1000 {
            many.push_str(&format!("Infohash: {}\r\n", "01".repeat(20)));
        }
        assert_eq!(
            Search::decode(many.as_bytes()).unwrap().hashes.len(),
            MAX_HASHES
        );
        for bad in [
            "GET / HTTP/1.1\r\nPort: 1\r\n\r\n",
            "BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n\r\n",
            "BT-SEARCH * HTTP/1.1\r\n\r\n",
            "BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: xyz\r\n\r\n",
        ] {
            assert_eq!(Search::decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
