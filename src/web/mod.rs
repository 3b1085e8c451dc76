//! The web face of a running btt process (mount, `btt seed`, `btt get`): a
//! live page, a JSON API, HTTP range streaming and Prometheus metrics, on
//! `--http ADDR` (default 127.0.0.1, a free port).
//!
//! Why in every process: there is no daemon; whoever runs a mount has its
//! window at the address `btt status` prints. Streams read through the same
//! engine as the mount (read-ahead window, critical pieces, paid fallback),
//! so a player on another host sees what a local player would.
//!
//! Safety: on 127.0.0.1 or ::1 without a token, only its own user (and
//! root) is served, and only requests naming this host (no DNS rebinding,
//! no cross-site changes); bound anywhere else, every request must carry the
//! token (`Authorization: Bearer`, `?token=`, or the cookie the page sets);
//! stream paths are looked up among the torrent's own files, never on disk;
//! nothing here can reach keys, words or signatures (the views hold none).

mod metrics;
mod peer_uid;
pub mod range;
mod stream;

use crate::engine::view::TorrentView;
use crate::engine::Torrent;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Seconds of rate history kept per torrent (the page's chart).
const HISTORY: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot listen for the web page on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What `--http` asked for.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub listen: SocketAddr,
    /// Required when `listen` is not 127.0.0.1 or ::1 (generated if not given).
    pub token: Option<String>,
}

/// Whether `addr` keeps the page to this host's own user programs.
pub fn local_only(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(ip) => ip == std::net::Ipv6Addr::LOCALHOST,
    }
}

/// A torrent of the process, as the web face knows it.
#[derive(Clone)]
pub enum Item {
    /// A magnet whose metadata has not arrived: its name and what it waits for.
    Waiting {
        info_hash: String,
        name: String,
        note: String,
    },
    Ready(Arc<Torrent>),
}

#[derive(Default)]
struct Rates {
    last: Option<(u64, u64, Instant)>,
    now: (f64, f64),
    history: VecDeque<(f64, f64)>,
}

/// What the API asks of a library (its owner does it and answers).
pub enum Command {
    /// A .torrent file's bytes, or a magnet link's text: the info-hash added.
    Add(
        Vec<u8>,
        tokio::sync::oneshot::Sender<Result<String, String>>,
    ),
    /// Remove the torrent with this info-hash.
    Remove(String, tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The torrents a process shows (one owner: the process adds and removes;
/// the server only reads).
#[derive(Default)]
pub struct Registry {
    items: RwLock<Vec<Item>>,
    rates: Mutex<HashMap<String, Rates>>,
    /// A library's commands (`POST`, `DELETE`); none for one torrent.
    control: std::sync::OnceLock<tokio::sync::mpsc::Sender<Command>>,
    /// The process's rate limits (down, up), which `PUT /api/v1/limits` sets.
    limits: std::sync::OnceLock<(crate::engine::rate::Limit, crate::engine::rate::Limit)>,
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// Adds `item`, replacing one with the same info-hash (a magnet's
    /// waiting entry once its torrent starts).
    pub fn put(&self, item: Item) {
        let ih = item_hash(&item);
        let mut items = self.items.write().expect("registry lock");
        items.retain(|i| item_hash(i) != ih);
        items.push(item);
    }

    /// Lets the API read and set the process's rate limits.
    pub fn set_limits(&self, down: crate::engine::rate::Limit, up: crate::engine::rate::Limit) {
        let _ = self.limits.set((down, up));
    }

    /// Lets the API add and remove torrents, through `tx`.
    pub fn set_control(&self, tx: tokio::sync::mpsc::Sender<Command>) {
        let _ = self.control.set(tx);
    }

    pub fn remove(&self, info_hash: &str) {
        self.items
            .write()
            .expect("registry lock")
            .retain(|i| item_hash(i) != info_hash);
        self.rates.lock().expect("rates lock").remove(info_hash);
    }

    fn items(&self) -> Vec<Item> {
        self.items.read().expect("registry lock").clone()
    }

    fn torrent(&self, info_hash: &str) -> Option<Arc<Torrent>> {
        self.items().into_iter().find_map(|i| match i {
            Item::Ready(t) if t.meta.info_hash.hex().eq_ignore_ascii_case(info_hash) => Some(t),
            _ => None,
        })
    }

    /// Samples every torrent's counters (once a second).
    fn sample(&self) {
        let now = Instant::now();
        let mut rates = self.rates.lock().expect("rates lock");
        for item in self.items() {
            let Item::Ready(t) = item else { continue };
            use std::sync::atomic::Ordering::Relaxed;
            let (down, up) = (
                t.stats.downloaded.load(Relaxed),
                t.stats.uploaded.load(Relaxed),
            );
            let r = rates.entry(t.meta.info_hash.hex()).or_default();
            if let Some((d0, u0, at)) = r.last {
                let dt = now.duration_since(at).as_secs_f64().max(1e-3);
                r.now = (
                    down.saturating_sub(d0) as f64 / dt,
                    up.saturating_sub(u0) as f64 / dt,
                );
                if r.history.len() == HISTORY {
                    r.history.pop_front();
                }
                r.history.push_back(r.now);
            }
            r.last = Some((down, up, now));
        }
    }

    fn rates_of(&self, ih: &str) -> ((f64, f64), Vec<(f64, f64)>) {
        let rates = self.rates.lock().expect("rates lock");
        match rates.get(ih) {
            Some(r) => (r.now, r.history.iter().copied().collect()),
            None => ((0.0, 0.0), vec![]),
        }
    }

    /// Every torrent's view (the API's and the page's objects).
    pub fn views(&self, with_history: bool) -> Vec<Entry> {
        self.items()
            .into_iter()
            .map(|i| match i {
                Item::Waiting {
                    info_hash,
                    name,
                    note,
                } => Entry::Waiting {
                    info_hash,
                    name,
                    waiting_for_metadata: note,
                },
                Item::Ready(t) => {
                    let (now, history) = self.rates_of(&t.meta.info_hash.hex());
                    Entry::Ready {
                        view: Box::new(t.view(now)),
                        history: if with_history { history } else { vec![] },
                    }
                }
            })
            .collect()
    }
}

fn item_hash(i: &Item) -> String {
    match i {
        Item::Waiting { info_hash, .. } => info_hash.clone(),
        Item::Ready(t) => t.meta.info_hash.hex(),
    }
}

/// One torrent in the API: its view once its metadata is known.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Entry {
    Ready {
        #[serde(flatten)]
        view: Box<TorrentView>,
        /// (down, up) bytes per second, one pair a second, oldest first.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        history: Vec<(f64, f64)>,
    },
    /// A magnet link still fetching its metadata, and what it waits for.
    Waiting {
        info_hash: String,
        name: String,
        waiting_for_metadata: String,
    },
}

impl Entry {
    pub fn info_hash(&self) -> &str {
        match self {
            Entry::Ready { view, .. } => &view.info_hash,
            Entry::Waiting { info_hash, .. } => info_hash,
        }
    }
    pub fn name(&self) -> &str {
        match self {
            Entry::Ready { view, .. } => &view.name,
            Entry::Waiting { name, .. } => name,
        }
    }
    pub fn view(&self) -> Option<&TorrentView> {
        match self {
            Entry::Ready { view, .. } => Some(view),
            Entry::Waiting { .. } => None,
        }
    }
}

#[derive(Clone)]
struct App {
    reg: Arc<Registry>,
    token: Option<Arc<str>>,
    /// The port it listens on (the Host requests must name, without a token).
    port: u16,
    /// Where it listens (a client's socket names it as its remote end).
    addr: SocketAddr,
    subscribers: Arc<std::sync::atomic::AtomicUsize>,
    next_handle: Arc<std::sync::atomic::AtomicU64>,
}

/// A running web face: where it listens and the token it requires.
pub struct Web {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

impl Web {
    /// The page's address without its token, for `btt status`.
    pub fn status_url(&self) -> String {
        let url = self.url();
        match url.split_once('?') {
            Some((u, _)) => format!("{u} (with its token)"),
            None => url,
        }
    }

    /// The page's address, with the token a browser needs.
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        match &self.token {
            Some(t) => format!("http://{host}:{}/?token={t}", self.addr.port()),
            None => format!("http://{host}:{}/", self.addr.port()),
        }
    }
}

/// A fresh token: 128 random bits, hex.
fn new_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Binds `cfg.listen` and serves `reg` until `stop` turns true. Must be
/// called inside a tokio runtime.
pub async fn start(
    cfg: &WebConfig,
    reg: Arc<Registry>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<Web, WebError> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| WebError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| WebError::Listen {
        addr: cfg.listen,
        source,
    })?;
    let token = match (local_only(&addr), &cfg.token) {
        (_, Some(t)) => Some(t.clone()),
        (false, None) => Some(new_token()),
        (true, None) => None,
    };
    let app = App {
        reg: reg.clone(),
        token: token.as_deref().map(Arc::from),
        port: addr.port(),
        addr,
        subscribers: Default::default(),
        next_handle: Arc::new(std::sync::atomic::AtomicU64::new(1 << 63)),
    };
    let router = Router::new()
        .route("/", get(page))
        .route("/api/v1/torrents", get(list).post(add))
        .route("/api/v1/torrents/{info_hash}", get(one).delete(remove))
        .route("/api/v1/events", get(events))
        .route("/api/v1/limits", get(limits).put(set_limits))
        .route("/stream/{info_hash}/{*path}", get(stream::serve))
        .route("/playlist.m3u", get(playlist))
        .route("/metrics", get(metrics::serve))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ADD + 1))
        .layer(axum::middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app);
    let sampler = reg.clone();
    let mut stop_sampler = stop.clone();
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = iv.tick() => sampler.sample(),
                _ = stop_sampler.changed() => break,
            }
        }
    });
    tokio::spawn(async move {
        let serve = axum::serve(
            NoDelay(listener),
            router.into_make_service_with_connect_info::<Client>(),
        )
        .with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        });
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "the web page stopped");
        }
    });
    Ok(Web { addr, token })
}

/// Equal in time whatever the bytes (a token is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn given_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    if let Some(q) = query {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            if k == "token" {
                return Some(v.into_owned());
            }
        }
    }
    let cookies = headers.get(header::COOKIE).and_then(|v| v.to_str().ok())?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix("btt_token="))
        .map(str::to_string)
        .next()
}

/// Without a token, only this host's own names: a page of another site
/// (DNS rebinding, a cross-site form or fetch) is refused.
fn own_origin(app: &App, headers: &HeaderMap, method: &axum::http::Method) -> bool {
    let own = |v: &str| {
        let p = app.port;
        [
            format!("127.0.0.1:{p}"),
            format!("localhost:{p}"),
            format!("[::1]:{p}"),
        ]
        .iter()
        .any(|o| v.eq_ignore_ascii_case(o))
    };
    let host_ok = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_none_or(own);
    let reads = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    let origin_ok = reads
        || headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|o| o.strip_prefix("http://").is_some_and(own));
    host_ok && origin_ok
}

/// One connection's client: its address and, once asked, the user owning
/// its socket. Looked up once per connection, not per request: reading the
/// kernel's socket table takes milliseconds (4.4 ms a request here), and a
/// player sends many range requests on one connection.
#[derive(Clone)]
struct Client {
    peer: SocketAddr,
    uid: Arc<tokio::sync::OnceCell<Option<u32>>>,
}

/// The web face's listener: each connection without Nagle's delay (a
/// response's head and body go in separate writes; with it, the second
/// may wait for the client's delayed ACK).
struct NoDelay(tokio::net::TcpListener);

impl axum::serve::Listener for NoDelay {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = io.set_nodelay(true);
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, NoDelay>> for Client {
    fn connect_info(s: axum::serve::IncomingStream<'_, NoDelay>) -> Client {
        Client {
            peer: *s.remote_addr(),
            uid: Default::default(),
        }
    }
}

/// Without a token: whether the client is our own user (or root).
async fn own_user(app: &App, client: Option<Client>) -> bool {
    let Some(c) = client else {
        return false;
    };
    let (peer, us) = (c.peer, app.addr);
    let uid = c
        .uid
        .get_or_init(|| async move {
            tokio::task::spawn_blocking(move || peer_uid::of(&peer, &us))
                .await
                .ok()
                .flatten()
        })
        .await;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    uid.is_some_and(|uid| uid == me || uid == 0)
}

async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    let Some(want) = &app.token else {
        let client = req
            .extensions()
            .get::<axum::extract::ConnectInfo<Client>>()
            .map(|c| c.0.clone());
        if !own_user(&app, client).await {
            return (
                StatusCode::FORBIDDEN,
                "this btt page is its user's only (like the mount); another user needs --http-token\n",
            )
                .into_response();
        }
        if !own_origin(&app, req.headers(), req.method()) {
            return (
                StatusCode::FORBIDDEN,
                "this btt page answers requests for 127.0.0.1 only, not from other sites\n",
            )
                .into_response();
        }
        return next.run(req).await;
    };
    let given = given_token(req.headers(), req.uri().query());
    if !given.as_deref().is_some_and(|g| same(g, want)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this btt page needs its token: add ?token=… as printed when it started\n",
        )
            .into_response();
    }
    let from_query = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
    let mut resp = next.run(req).await;
    if from_query {
        // The page's own requests (its event stream) then carry it.
        let cookie = format!("btt_token={want}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn list(State(app): State<App>) -> Json<Vec<Entry>> {
    Json(app.reg.views(false))
}

fn not_found(what: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

async fn one(State(app): State<App>, Path(ih): Path<String>) -> Response {
    match app
        .reg
        .views(true)
        .into_iter()
        .find(|e| e.info_hash().eq_ignore_ascii_case(&ih))
    {
        Some(e) => Json(e).into_response(),
        None => not_found(format!("no torrent {ih} here")),
    }
}

fn refused(code: StatusCode, what: String) -> Response {
    (code, Json(serde_json::json!({ "error": what }))).into_response()
}

/// Largest body `POST /api/v1/torrents` takes (a .torrent of a huge torrent
/// is a few MiB).
const MAX_ADD: usize = 16 << 20;

/// `POST /api/v1/torrents`: a .torrent file's bytes, or a magnet link.
async fn add(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let Some(tx) = app.reg.control.get() else {
        return refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "this process serves its own torrents; a library mount (btt-mount --library) takes new ones".into(),
        );
    };
    if body.len() > MAX_ADD {
        return refused(StatusCode::PAYLOAD_TOO_LARGE, "larger than 16 MiB".into());
    }
    let (reply, rx) = tokio::sync::oneshot::channel();
    if tx.send(Command::Add(body.to_vec(), reply)).await.is_err() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the library is stopping".into(),
        );
    }
    match rx.await {
        Ok(Ok(ih)) => (
            StatusCode::CREATED,
            Json(serde_json::json!({ "info_hash": ih })),
        )
            .into_response(),
        Ok(Err(e)) => refused(StatusCode::BAD_REQUEST, e),
        Err(_) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the library is stopping".into(),
        ),
    }
}

/// `DELETE /api/v1/torrents/{info_hash}`: off the library (its data stays).
async fn remove(State(app): State<App>, Path(ih): Path<String>) -> Response {
    let Some(tx) = app.reg.control.get() else {
        return refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "this process serves its own torrents; only a library mount removes them".into(),
        );
    };
    let (reply, rx) = tokio::sync::oneshot::channel();
    if tx.send(Command::Remove(ih, reply)).await.is_err() {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the library is stopping".into(),
        );
    }
    match rx.await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => refused(StatusCode::NOT_FOUND, e),
        Err(_) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the library is stopping".into(),
        ),
    }
}

fn limits_json(app: &App) -> serde_json::Value {
    let rate = |l: &crate::engine::rate::Limit| l.as_ref().and_then(|b| b.rate());
    match app.reg.limits.get() {
        Some((down, up)) => serde_json::json!({
            "max_down_bytes_per_sec": rate(down),
            "max_up_bytes_per_sec": rate(up),
        }),
        None => serde_json::json!({ "max_down_bytes_per_sec": null, "max_up_bytes_per_sec": null }),
    }
}

/// `GET /api/v1/limits`: the rate limits, in bytes per second (`null`: none).
async fn limits(State(app): State<App>) -> Json<serde_json::Value> {
    Json(limits_json(&app))
}

/// `PUT /api/v1/limits` with `{"max_down": "5MiB", "max_up": null}`: each
/// key given is set (a rate as `--max-down` takes it, a number of bytes per
/// second, or `null` for none); the limits after.
async fn set_limits(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let Some((down, up)) = app.reg.limits.get() else {
        return refused(
            StatusCode::METHOD_NOT_ALLOWED,
            "this process has no adjustable limits".into(),
        );
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "expected JSON like {\"max_down\": \"5MiB\", \"max_up\": null}".into(),
        );
    };
    let mut set = Vec::new();
    for (key, limit) in [("max_down", down), ("max_up", up)] {
        let Some(x) = v.get(key) else { continue };
        let rate = match x {
            serde_json::Value::Null => None,
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(0) | None => {
                    return refused(
                        StatusCode::BAD_REQUEST,
                        format!("{key}: a rate above 0, or null"),
                    )
                }
                Some(n) => Some(n),
            },
            serde_json::Value::String(t) => match crate::cli::parse_rate(t) {
                Ok(n) => Some(n),
                Err(e) => return refused(StatusCode::BAD_REQUEST, format!("{key}: {e}")),
            },
            _ => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    format!("{key}: a rate such as \"5MiB\", or null"),
                )
            }
        };
        set.push((limit.clone(), rate));
    }
    for (limit, rate) in set {
        if let Some(b) = limit {
            b.set_rate(rate);
        }
    }
    Json(limits_json(&app)).into_response()
}

/// Event streams open at once (each builds every view once a second).
const MAX_SUBSCRIBERS: usize = 16;

/// Counts an open event stream; dropped with it.
struct Subscriber(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The live stream: every torrent's view once a second, as `torrents` events.
async fn events(State(app): State<App>) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use std::sync::atomic::Ordering;
    if app.subscribers.fetch_add(1, Ordering::SeqCst) >= MAX_SUBSCRIBERS {
        app.subscribers.fetch_sub(1, Ordering::SeqCst);
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_SUBSCRIBERS} pages are open already"),
        );
    }
    let sub = Subscriber(app.subscribers.clone());
    let reg = app.reg.clone();
    let ticks = futures_util::stream::unfold(
        (tokio::time::interval(Duration::from_secs(1)), reg, sub),
        |(mut iv, reg, sub)| async move {
            iv.tick().await;
            let views = reg.views(true);
            let ev = Event::default()
                .event("torrents")
                .json_data(&views)
                .unwrap_or_else(|_| Event::default().comment("unencodable"));
            Some((Ok::<_, std::convert::Infallible>(ev), (iv, reg, sub)))
        },
    );
    Sse::new(ticks)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Every file of every torrent as an M3U playlist of stream URLs.
async fn playlist(State(app): State<App>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let mut out = String::from("#EXTM3U\n");
    for item in app.reg.items() {
        let Item::Ready(t) = item else { continue };
        for i in 0..t.meta.files.len() {
            let f = &t.meta.files[i];
            if f.padding || f.length == 0 {
                continue;
            }
            let path = match t.meta.path(i) {
                "" => t.meta.name.clone(),
                p => p.to_string(),
            };
            out.push_str(&format!("#EXTINF:-1,{path}\n"));
            let token = app
                .token
                .as_deref()
                .map(|t| format!("?token={t}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "http://{host}{}{token}\n",
                stream::url_path(&t.meta.info_hash.hex(), &path)
            ));
        }
    }
    ([(header::CONTENT_TYPE, "audio/x-mpegurl")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering::Relaxed;

    /// Reads one HTTP/1.1 response (with a Content-Length) off `r`: its
    /// status code.
    fn response(r: &mut BufReader<std::net::TcpStream>) -> u16 {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        status
    }

    /// Accepted connections go without Nagle's delay (with it, a reply's
    /// body may wait for the client's delayed ACK).
    #[test]
    fn connections_are_accepted_without_nagle() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let mut l = NoDelay(l);
            let _c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (io, _) = axum::serve::Listener::accept(&mut l).await;
            assert!(io.nodelay().unwrap());
        });
    }

    /// The user behind a connection is looked up in the socket table once
    /// per connection, however many requests it carries (each lookup cost
    /// 4.4 ms; a player's range requests share one connection).
    #[test]
    fn the_client_user_is_looked_up_once_per_connection() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let cfg = WebConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            token: None,
        };
        let web = rt.block_on(start(&cfg, Registry::new(), stop)).unwrap();
        let before = peer_uid::LOOKUPS.load(Relaxed);
        for conn in 1..=2 {
            let c = std::net::TcpStream::connect(web.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            for _ in 0..3 {
                let req = format!(
                    "GET /api/v1/torrents HTTP/1.1\r\nHost: {}\r\n\r\n",
                    web.addr
                );
                (&c).write_all(req.as_bytes()).unwrap();
                assert_eq!(response(&mut r), 200, "our own user is let in");
            }
            assert_eq!(
                peer_uid::LOOKUPS.load(Relaxed) - before,
                conn,
                "one lookup per connection"
            );
        }
    }
}
