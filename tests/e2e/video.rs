//! A generated 1080p video (mp4 with its index at the end, and mkv) through the
//! mount, probed, seeked, decoded by ffmpeg and played to the end by VLC.

use crate::harness::*;
use std::path::Path;
use std::process::Command;

fn ffmpeg_make(out: &Path) {
    btt::demo::generate_video(out, 36, 10).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn video_probe_seek_decode_and_play() {
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/videos");
    std::fs::create_dir_all(&content).unwrap();
    ffmpeg_make(&content.join("clip.mp4"));
    ffmpeg_make(&content.join("clip.mkv"));
    // mp4 muxed without faststart keeps its index (moov) after the data.
    let mp4 = std::fs::read(content.join("clip.mp4")).unwrap();
    let pos = |tag: &[u8]| mp4.windows(4).position(|w| w == tag).unwrap();
    assert!(pos(b"moov") > pos(b"mdat"), "the index must be at the end");
    let torrent = make_torrent(&content, 256 * 1024, &[]);
    let (_seed, peer) = seed_with_btt(d, &torrent);
    let m = Mount::start(
        d,
        &torrent,
        &["--no-trackers", "--peer", &peer, "-o", "allow_other"],
    );
    for name in ["clip.mp4", "clip.mkv"] {
        let f = m.mnt.join("videos").join(name);
        let probe = run_ok(
            Command::new("timeout")
                .args(["60", "ffprobe", "-hide_banner", "-show_format"])
                .arg(&f),
            "ffprobe",
        );
        assert!(probe.contains("1920x1080"), "{probe}");
        run_ok(
            Command::new("timeout")
                .args([
                    "60",
                    "ffmpeg",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-ss",
                    "30",
                    "-i",
                ])
                .arg(&f)
                .args(["-frames:v", "1", "-f", "null", "-"]),
            "seek and decode one frame",
        );
        run_ok(
            Command::new("timeout")
                .args([
                    "120",
                    "ffmpeg",
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-xerror",
                    "-i",
                ])
                .arg(&f)
                .args(["-f", "null", "-"]),
            "full decode",
        );
        // VLC refuses to run as root; play as `nobody` through allow_other.
        let out = run_ok(
            Command::new("timeout")
                .args([
                    "120",
                    "runuser",
                    "-u",
                    "nobody",
                    "--",
                    "cvlc",
                    "-vv",
                    "--play-and-exit",
                    "--no-video-title-show",
                    "--vout=dummy",
                    "--aout=dummy",
                    "--rate=4",
                ])
                .arg(&f)
                .env("HOME", "/tmp"),
            "cvlc",
        );
        assert!(
            out.contains("EOF reached"),
            "VLC did not play to the end:\n{}",
            &out[out.len().saturating_sub(3000)..]
        );
    }
}
