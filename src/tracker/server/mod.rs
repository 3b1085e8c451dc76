//! `btt tracker`: a BitTorrent tracker of our own, for people who share
//! inside a group. HTTP (BEP 3, compact BEP 23, scrape BEP 48) through axum
//! and UDP (BEP 15) on the same address, in memory, with an optional
//! allow-list of info-hashes. What it holds and hands out is [`table`]'s
//! (sans-io, bounded); the packets are [`http`]'s and [`udp`]'s; this
//! module only moves bytes and keeps time.

pub mod http;
pub mod table;
pub mod udp;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::response::IntoResponse;
use axum::routing::get;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use table::{Limits, Table};
use tokio::net::{TcpListener, UdpSocket};
use tracing::{debug, info};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("allow-list {path}: {why}")]
    AllowList { path: String, why: String },
    #[error("tracker stopped: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Only these torrents are tracked, if given.
    pub allow: Option<HashSet<[u8; 20]>>,
}

/// Reads an allow-list: one info-hash (40 hex digits) per line; blank
/// lines and `#` comments are skipped.
pub fn read_allow_list(path: &std::path::Path) -> Result<HashSet<[u8; 20]>, ServerError> {
    let err = |why: String| ServerError::AllowList {
        path: path.display().to_string(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut out = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let h = data_encoding::HEXLOWER_PERMISSIVE
            .decode(line.as_bytes())
            .ok()
            .and_then(|v| <[u8; 20]>::try_from(v).ok())
            .ok_or_else(|| err(format!("line {}: not a 40-digit info-hash", n + 1)))?;
        out.insert(h);
    }
    Ok(out)
}

struct Shared {
    table: Mutex<Table>,
    started: Instant,
    ids: udp::ConnIds,
}

impl Shared {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn minute(&self) -> u64 {
        self.started.elapsed().as_secs() / 60
    }
}

/// Binds HTTP and UDP on `cfg.listen` and serves until `stop` resolves;
/// `ready` learns the bound address.
pub async fn serve(
    cfg: ServerConfig,
    ready: impl FnOnce(SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listen_err = |source| ServerError::Listen {
        addr: cfg.listen,
        source,
    };
    let tcp = TcpListener::bind(cfg.listen).await.map_err(listen_err)?;
    let addr = tcp.local_addr()?;
    let udp_sock = UdpSocket::bind(addr).await.map_err(listen_err)?;
    let interval = cfg.limits.interval;
    let shared = Arc::new(Shared {
        table: Mutex::new(Table::new(cfg.limits, cfg.allow)),
        started: Instant::now(),
        ids: udp::ConnIds::default(),
    });
    info!(%addr, "tracker listening (HTTP and UDP)");
    ready(addr);
    let udp_task = tokio::spawn(udp_loop(udp_sock, shared.clone()));
    let expire = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval((interval / 4).max(Duration::from_secs(1)));
            loop {
                tick.tick().await;
                let gone = shared.table().expire(Instant::now());
                if gone > 0 {
                    debug!(gone, "peers expired");
                }
            }
        })
    };
    let app = axum::Router::new()
        .route("/announce", get(http_announce))
        .route("/scrape", get(http_scrape))
        .with_state(shared);
    let res = axum::serve(tcp, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stop)
        .await;
    udp_task.abort();
    expire.abort();
    Ok(res?)
}

fn log_announce(how: &str, a: &table::Announce) {
    debug!(
        how,
        peer = %a.addr,
        info_hash = %data_encoding::HEXLOWER.encode(&a.info_hash),
        event = ?a.event,
        left = a.left,
        "announce"
    );
}

fn bencode(body: Vec<u8>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain")], body)
}

async fn http_announce(
    State(s): State<Arc<Shared>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    RawQuery(q): RawQuery,
) -> impl IntoResponse {
    let from = from.ip().to_canonical();
    let body = match http::parse_announce(q.as_deref().unwrap_or(""), from) {
        Err(why) => http::failure_body(why),
        Ok(a) => {
            log_announce("http", &a.announce);
            let r = s
                .table()
                .announce(&a.announce, Instant::now(), |n| rand::random_range(0..n));
            match r {
                Ok(reply) => http::announce_body(&reply, a.compact),
                Err(why) => http::failure_body(&why.to_string()),
            }
        }
    };
    bencode(body)
}

async fn http_scrape(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> impl IntoResponse {
    let body = match http::parse_scrape(q.as_deref().unwrap_or("")) {
        Err(why) => http::failure_body(why),
        Ok(hashes) => {
            let t = s.table();
            let files: Vec<_> = hashes.iter().map(|h| (*h, t.scrape(h))).collect();
            http::scrape_body(&files)
        }
    };
    bencode(body)
}

async fn udp_loop(sock: UdpSocket, s: Arc<Shared>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, raw) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let from = SocketAddr::new(raw.ip().to_canonical(), raw.port());
        let Some(req) = udp::parse(&buf[..n], from, s.minute(), &s.ids) else {
            continue;
        };
        let reply = match req {
            udp::Request::Connect { tid } => udp::connect_reply(tid, s.ids.make(from, s.minute())),
            udp::Request::Announce { tid, announce } => {
                log_announce("udp", &announce);
                let r = s
                    .table()
                    .announce(&announce, Instant::now(), |n| rand::random_range(0..n));
                match r {
                    Ok(reply) => udp::announce_reply(tid, &reply, from.is_ipv6()),
                    Err(why) => udp::error_reply(tid, &why.to_string()),
                }
            }
            udp::Request::Scrape { tid, hashes } => {
                let t = s.table();
                let counts: Vec<_> = hashes.iter().map(|h| t.scrape(h)).collect();
                udp::scrape_reply(tid, &counts)
            }
            udp::Request::Bad { tid, why } => udp::error_reply(tid, why),
        };
        // The reply goes to the address as the socket saw it.
        let _ = sock.send_to(&reply, raw).await;
    }
}
