//! HTTP `Range: bytes=…` (RFC 9110 §14) for one file of a known size. Pure.
//!
//! One range is served as 206; several ranges are answered with the whole
//! file (a server may ignore Range, and players ask for one at a time); a
//! range that starts beyond the end is 416.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No usable Range header: the whole file, 200.
    Whole,
    /// One satisfiable range: 206 with `Content-Range`.
    Part(Range<u64>),
    /// 416 with `Content-Range: bytes */SIZE`.
    Unsatisfiable,
}

/// What `header` (the Range header's value, if any) asks of a file of `size` bytes.
pub fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(h) = header else {
        return Wanted::Whole;
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        // Another unit: ignored, as the RFC allows.
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let num = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            return Some(None);
        }
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().map(Some)
    };
    let (Some(first), Some(last)) = (num(a), num(b)) else {
        return Wanted::Whole;
    };
    match (first, last) {
        // bytes=-N: the last N bytes.
        (None, Some(n)) => {
            if n == 0 || size == 0 {
                Wanted::Unsatisfiable
            } else {
                Wanted::Part(size - n.min(size)..size)
            }
        }
        (None, None) => Wanted::Whole,
        (Some(f), _) if f >= size => Wanted::Unsatisfiable,
        (Some(f), None) => Wanted::Part(f..size),
        (Some(f), Some(l)) if l < f => Wanted::Whole,
        (Some(f), Some(l)) => Wanted::Part(f..l.saturating_add(1).min(size)),
    }
}

/// The `Content-Range` value of a part.
pub fn content_range(r: &Range<u64>, size: u64) -> String {
    format!("bytes {}-{}/{size}", r.start, r.end - 1)
}

/// The `Content-Type` players expect, from the file's extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "avi" => "video/x-msvideo",
        "mov" => "video/quicktime",
        "ts" => "video/mp2t",
        "mpg" | "mpeg" => "video/mpeg",
        "ogv" => "video/ogg",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "flac" => "audio/flac",
        "ogg" | "oga" => "audio/ogg",
        "opus" => "audio/opus",
        "wav" => "audio/wav",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        "txt" | "nfo" => "text/plain; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_as_players_send_them() {
        let w = |h: &str| wanted(Some(h), 1000);
        assert_eq!(wanted(None, 1000), Wanted::Whole);
        assert_eq!(w("bytes=0-0"), Wanted::Part(0..1), "the first byte");
        assert_eq!(w("bytes=999-999"), Wanted::Part(999..1000), "the last byte");
        assert_eq!(w("bytes=-1"), Wanted::Part(999..1000), "suffix");
        assert_eq!(
            w("bytes=-5000"),
            Wanted::Part(0..1000),
            "a suffix longer than the file"
        );
        assert_eq!(w("bytes=100-"), Wanted::Part(100..1000), "open");
        assert_eq!(
            w("bytes=100-5000"),
            Wanted::Part(100..1000),
            "an end past the end is cut"
        );
        assert_eq!(w("bytes=1000-"), Wanted::Unsatisfiable, "beyond the end");
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(
            w("bytes=0-1,5-6"),
            Wanted::Whole,
            "several ranges: the whole file"
        );
        assert_eq!(w("bytes=5-1"), Wanted::Whole, "backwards: ignored");
        assert_eq!(w("items=0-1"), Wanted::Whole);
        assert_eq!(w("bytes=x-1"), Wanted::Whole);
        assert_eq!(w("bytes=+1-2"), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(
            w("bytes=0-18446744073709551615"),
            Wanted::Part(0..1000),
            "the largest end does not overflow"
        );
        assert_eq!(
            w("bytes=99999999999999999999999-"),
            Wanted::Whole,
            "not a u64: ignored"
        );
        assert_eq!(content_range(&(0..1), 1000), "bytes 0-0/1000");
        assert_eq!(content_type("a/B.MP4"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
