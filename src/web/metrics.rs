//! `GET /metrics`: every torrent's counters in Prometheus' text format
//! (version 0.0.4), labelled by info-hash and name. Formatting is pure.

use super::{App, Entry};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;

pub(super) async fn serve(State(app): State<App>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&app.reg.views(false)),
    )
}

/// A label value, escaped as the format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(super) fn render(entries: &[Entry]) -> String {
    type Get = fn(&crate::engine::view::TorrentView) -> f64;
    let metrics: [(&str, &str, &str, Get); 12] = [
        ("btt_pieces_have", "gauge", "Verified pieces held.", |v| {
            v.pieces_have as f64
        }),
        ("btt_pieces_total", "gauge", "Pieces of the torrent.", |v| {
            v.pieces_total as f64
        }),
        (
            "btt_bytes_have",
            "gauge",
            "Bytes in verified pieces.",
            |v| v.have_bytes as f64,
        ),
        ("btt_size_bytes", "gauge", "Size of the torrent.", |v| {
            v.size as f64
        }),
        (
            "btt_downloaded_bytes_total",
            "counter",
            "Bytes received from peers.",
            |v| v.downloaded as f64,
        ),
        (
            "btt_uploaded_bytes_total",
            "counter",
            "Bytes sent to peers.",
            |v| v.uploaded as f64,
        ),
        (
            "btt_download_bytes_per_second",
            "gauge",
            "Download rate over the last second.",
            |v| v.down_bytes_per_sec,
        ),
        (
            "btt_upload_bytes_per_second",
            "gauge",
            "Upload rate over the last second.",
            |v| v.up_bytes_per_sec,
        ),
        ("btt_peers", "gauge", "Connected peers.", |v| {
            v.peer_count as f64
        }),
        ("btt_paid_peers", "gauge", "Sellers in use.", |v| {
            v.paid_peers as f64
        }),
        (
            "btt_spent_msat_total",
            "counter",
            "Paid to sellers by this process (msat).",
            |v| v.money.spent_msat as f64,
        ),
        (
            "btt_waiting_reads",
            "gauge",
            "Pieces readers wait on.",
            |v| v.waiting.len() as f64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, get) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for e in entries {
            let Some(v) = e.view() else { continue };
            let _ = writeln!(
                out,
                "{name}{{info_hash=\"{}\",name=\"{}\"}} {}",
                e.info_hash(),
                label(e.name()),
                get(v)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_escaped_and_every_metric_has_help_and_type() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let out = super::render(&[]);
        let helps = out.lines().filter(|l| l.starts_with("# HELP")).count();
        let types = out.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!((helps, types), (12, 12));
    }
}
