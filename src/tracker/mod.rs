//! Tracker announces: HTTP and HTTPS (BEP 3, compact BEP 23) and UDP (BEP 15), tiered
//! per BEP 12.
//!
//! Request building and response parsing are pure functions in [`http`] and [`udp`];
//! the async `announce` functions only move those bytes. [`TrackerSet`] walks the
//! tiers: within a tier the tracker that answered is moved to the front; it keeps
//! each tracker's `tracker id` to send back. [`schedule`] says when to announce
//! again (the tracker's interval, back-off on failure). [`server`] is the
//! other side: `btt tracker`.

pub mod http;
pub mod schedule;
pub mod server;
pub mod udp;

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("bad tracker response: {0}")]
    BadResponse(String),
    #[error("unsupported tracker URL {0:?} (http://, https:// and udp:// are supported)")]
    Unsupported(String),
    #[error("tracker did not answer in time")]
    Timeout,
    #[error("tracker I/O: {0}")]
    Io(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Completed,
    Stopped,
}

#[derive(Clone, Debug)]
pub struct AnnounceRequest {
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub numwant: u32,
    /// Random per session (BEP 15 `key`) so trackers can recognise us across IP changes.
    pub key: u32,
    /// The `tracker id` this tracker gave in an earlier answer (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    /// The tracker's `min interval` (HTTP only): never announce sooner.
    pub min_interval: Option<Duration>,
    /// To be sent back in later announces to this tracker (HTTP only).
    pub tracker_id: Option<Vec<u8>>,
    pub peers: Vec<SocketAddr>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
}

/// One announce to one tracker URL, with a bounded wait.
pub async fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let fut = async {
        if url.starts_with("http://") || url.starts_with("https://") {
            http::announce(url, req).await
        } else if let Some(rest) = url.strip_prefix("udp://") {
            udp::announce(rest, req, timeout).await
        } else {
            Err(TrackerError::Unsupported(url.to_string()))
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| TrackerError::Timeout)?
}

/// BEP 12 tiers: try each tier in order, each URL within a tier in order; the first
/// that answers wins and moves to the front of its tier.
#[derive(Clone, Debug)]
pub struct TrackerSet {
    pub tiers: Vec<Vec<String>>,
    /// The `tracker id` each tracker gave (bounded by the torrent's trackers).
    ids: std::collections::HashMap<String, Vec<u8>>,
}

impl TrackerSet {
    pub fn new(mut tiers: Vec<Vec<String>>) -> Self {
        use rand::seq::SliceRandom;
        let mut rng = rand::rng();
        for t in &mut tiers {
            t.shuffle(&mut rng);
        }
        TrackerSet {
            tiers,
            ids: Default::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tiers.iter().all(|t| t.is_empty())
    }

    pub async fn announce(
        &mut self,
        req: &AnnounceRequest,
        timeout: Duration,
    ) -> Result<AnnounceResponse, TrackerError> {
        let mut last = TrackerError::Failure("no trackers".into());
        for tier in &mut self.tiers {
            for i in 0..tier.len() {
                let mut req = req.clone();
                req.tracker_id = self.ids.get(&tier[i]).cloned();
                match announce(&tier[i], &req, timeout).await {
                    Ok(r) => {
                        if let Some(id) = &r.tracker_id {
                            self.ids.insert(tier[i].clone(), id.clone());
                        }
                        let url = tier.remove(i);
                        tier.insert(0, url);
                        return Ok(r);
                    }
                    Err(e) => {
                        tracing::debug!(tracker = %tier[i], error = %e, "announce failed");
                        last = e;
                    }
                }
            }
        }
        Err(last)
    }
}

/// Compact peers (BEP 23): 6 bytes each, IPv4 + port.
pub fn parse_compact_v4(b: &[u8]) -> Vec<SocketAddr> {
    b.chunks_exact(6)
        .map(|c| SocketAddr::from(([c[0], c[1], c[2], c[3]], u16::from_be_bytes([c[4], c[5]]))))
        .filter(|a| a.port() != 0)
        .collect()
}

/// Compact IPv6 peers (BEP 7): 18 bytes each.
pub fn parse_compact_v6(b: &[u8]) -> Vec<SocketAddr> {
    b.chunks_exact(18)
        .map(|c| {
            let ip: [u8; 16] = c[..16].try_into().expect("16");
            SocketAddr::from((ip, u16::from_be_bytes([c[16], c[17]])))
        })
        .filter(|a| a.port() != 0)
        .collect()
}
