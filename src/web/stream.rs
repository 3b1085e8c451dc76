//! `GET /stream/{info_hash}/{path}`: one file of a torrent over HTTP, with
//! ranges, read through the engine like a mount's reads: each chunk waits
//! for its pieces (critical) while a read-ahead window, grown as the player
//! reads on and ending where its range ends, is fetched ahead of it. A
//! player that disconnects drops the stream, and with it its waits and its
//! window.

use super::range::{content_range, content_type, wanted, Wanted};
use super::{not_found, App};
use crate::engine::Torrent;
use crate::fs::readahead::{ReadAhead, ReadAheadConfig};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Bytes read per chunk of a stream.
const CHUNK: u64 = 256 << 10;

/// The URL path of a file, its components percent-encoded.
pub fn url_path(info_hash: &str, path: &str) -> String {
    let enc: Vec<String> = path
        .split('/')
        .map(|c| url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>())
        .map(|c| c.replace('+', "%20"))
        .collect();
    format!("/stream/{info_hash}/{}", enc.join("/"))
}

/// The file `path` names among the torrent's own files (never a disk path).
fn file_of(t: &Torrent, path: &str) -> Option<usize> {
    let m = &t.meta;
    (0..m.files.len()).find(|&i| {
        !m.files[i].padding
            && match m.path(i) {
                "" => m.name == path,
                p => p == path,
            }
    })
}

/// The torrent bytes to fetch ahead of a stream of a file at `base` that
/// has sent up to `at` (file offsets), `ahead` bytes of window, and whose
/// range ends at `end`: never past that end (a player that names its end,
/// in a bounded range, wants nothing after it).
fn ahead_of(base: u64, at: u64, ahead: u64, end: u64) -> std::ops::Range<u64> {
    base + at..base + (at + ahead).min(end)
}

/// Clears the stream's read-ahead window when the stream ends or is dropped.
struct Window {
    t: Arc<Torrent>,
    handle: u64,
}

impl Drop for Window {
    fn drop(&mut self) {
        self.t.clear_window(self.handle);
    }
}

pub(super) async fn serve(
    State(app): State<App>,
    method: Method,
    Path((ih, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(t) = app.reg.torrent(&ih) else {
        return not_found(format!("no torrent {ih} here"));
    };
    let Some(i) = file_of(&t, &path) else {
        return not_found(format!("no file {path:?} in {}", t.meta.name));
    };
    let f = &t.meta.files[i];
    let (size, base) = (f.length, f.offset);
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, part) = match wanted(range, size) {
        Wanted::Whole => (StatusCode::OK, 0..size),
        Wanted::Part(r) => (StatusCode::PARTIAL_CONTENT, r),
        Wanted::Unsatisfiable => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response()
        }
    };
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type(&path))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, part.end - part.start);
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(header::CONTENT_RANGE, content_range(&part, size));
    }
    if method == Method::HEAD {
        return b
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    }
    let handle = app.next_handle.fetch_add(1, Ordering::Relaxed);
    let window = Window {
        t: t.clone(),
        handle,
    };
    let state = (
        window,
        ReadAhead::new(ReadAheadConfig::default()),
        part.start,
        part.end,
    );
    let body = futures_util::stream::unfold(state, move |(w, mut ra, at, end)| async move {
        if at >= end {
            return None;
        }
        let len = CHUNK.min(end - at);
        let ahead = ra.on_read(at, len);
        let window = ahead_of(base, at + len, ahead, end);
        if !window.is_empty() {
            let pieces =
                w.t.meta
                    .pieces_for_range(window.start, window.end - window.start);
            w.t.set_window(w.handle, pieces);
        }
        match w.t.read(base + at, len).await {
            Ok(bytes) => Some((Ok::<Bytes, std::io::Error>(bytes), (w, ra, at + len, end))),
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), (w, ra, end, end))),
        }
    });
    b.body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn read_ahead_stops_at_the_end_of_the_range() {
        // An open range (to the file's end at 10 MiB): the whole window.
        assert_eq!(super::ahead_of(100, 1000, 5000, 10 << 20), 1100..6100);
        // A bounded 64 KiB range, all sent but its last 1 000 bytes.
        assert_eq!(
            super::ahead_of(100, 64_536, 1 << 20, 65_536),
            64_636..65_636
        );
        // All of it sent: nothing ahead.
        assert!(super::ahead_of(100, 65_536, 1 << 20, 65_536).is_empty());
    }

    #[test]
    fn stream_urls_encode_each_component() {
        assert_eq!(
            super::url_path("ab", "Season 1/ep 1 ü.mkv"),
            "/stream/ab/Season%201/ep%201%20%C3%BC.mkv"
        );
    }
}
