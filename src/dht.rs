//! The process's one DHT node (BEP 5, with BEP 32 for IPv6), shared by all
//! its torrents: peers for every torrent we read or seed come from
//! `get_peers`, and the same lookups announce our port (`announce_peer`).
//!
//! The node is librqbit-dht (rqbit's): it runs on tokio like the rest of
//! btt, speaks IPv4 and IPv6 from one dual-stack socket, and keeps its
//! routing table in a file of ours (`dht.json` in the data dir) so a restart
//! does not bootstrap from nothing. `mainline`, the other candidate, has its
//! own thread, IPv4 only, and pulls a second signature stack (ed25519) for
//! BEP 44, which we do not use. Known limit of librqbit-dht: it announces
//! only to nodes whose id shares the first 16 bits with the info-hash,
//! which in the public DHT (millions of nodes) are the closest ones, but
//! in a private DHT of a few nodes may be none.
//!
//! Private torrents (BEP 27) never use it: the engine asks only for public
//! ones.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use tracing::{info, warn};

/// The public routers a node starts from when it has no routing table yet.
pub const PUBLIC_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
];

/// How to start the node.
#[derive(Clone, Debug)]
pub struct DhtSettings {
    /// Where to start from (`--dht-bootstrap`); the public routers by default.
    pub bootstrap: Vec<String>,
    /// The routing table's file.
    pub state_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("DHT: {0}")]
pub struct DhtError(String);

/// A running node.
pub struct DhtNode {
    dht: librqbit_dht::Dht,
}

impl std::fmt::Debug for DhtNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DhtNode({})", self.dht.listen_addr())
    }
}

impl DhtNode {
    /// Starts the node on the port its routing table was saved with (a
    /// random one if that is taken, or the first time). Must run inside a
    /// tokio runtime.
    pub async fn start(s: &DhtSettings) -> Result<Arc<DhtNode>, DhtError> {
        let mut last = None;
        // The saved port first; another btt process may hold it.
        for port in [None, Some(0)] {
            let persistence = librqbit_dht::DhtPersistenceConfig {
                dump_interval: None,
                config_filename: Some(s.state_file.clone()),
            };
            match librqbit_dht::PersistentDht::create(
                persistence,
                port,
                false,
                Some(s.bootstrap.clone()),
                None,
                None,
            )
            .await
            {
                Ok(dht) => {
                    info!(listen = %dht.listen_addr(), bootstrap = ?s.bootstrap, "DHT node started");
                    return Ok(Arc::new(DhtNode { dht }));
                }
                Err(e) => last = Some(format!("{e:#}")),
            }
        }
        Err(DhtError(last.unwrap_or_default()))
    }

    /// Starts the node, or says why not and goes on without it.
    pub async fn start_or_warn(s: &DhtSettings) -> Option<Arc<DhtNode>> {
        match DhtNode::start(s).await {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(error = %e, "no DHT for this run");
                None
            }
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.dht.listen_addr()
    }

    /// Nodes in the routing table (IPv4 + IPv6).
    pub fn nodes(&self) -> usize {
        let s = self.dht.stats();
        s.routing_table_size + s.routing_table_size_v6
    }

    /// Peers of `info_hash`, found for as long as the stream lives; each
    /// lookup also announces `announce_port` (our listening port) to the
    /// nodes that give a token.
    pub fn peers(&self, info_hash: [u8; 20], announce_port: Option<u16>) -> PeerStream {
        PeerStream(
            self.dht
                .get_peers(librqbit_dht::Id20::new(info_hash), announce_port),
        )
    }

    pub fn stop(&self) {
        self.dht.cancellation_token().cancel();
    }
}

/// Addresses from a running `get_peers` (it stops when dropped).
pub struct PeerStream(librqbit_dht::RequestPeersStream);

impl PeerStream {
    pub async fn next(&mut self) -> Option<SocketAddr> {
        use futures_core::Stream;
        std::future::poll_fn(|cx| Pin::new(&mut self.0).poll_next(cx)).await
    }
}

/// An engine's handle on the process's node.
#[derive(Clone)]
pub struct DhtRef(pub Arc<DhtNode>);

impl std::fmt::Debug for DhtRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
