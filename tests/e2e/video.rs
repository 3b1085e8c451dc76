//! A generated 1080p video (mp4 with its index at the end, and mkv) through the
//! mount, probed, seeked, decoded by ffmpeg and played to the end by VLC.

use crate::harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// The README's demo, as a new user runs it (as root, here): it prints
/// short lines, not tracing; the VLC line it prints works as printed (VLC
/// will not run as root: the line runs it as nobody, and the mount lets
/// other users read); the mount is in `btt status`; Ctrl-C ends it all.
#[test]
fn the_demo_plays_as_printed_and_is_in_btt_status() {
    let d = tmpdir();
    let d = d.path();
    let dir = d.join("demo");
    // A short sample made beforehand (the demo makes a 40 s one if missing).
    std::fs::create_dir_all(dir.join("content")).unwrap();
    btt::demo::generate_video(&dir.join("content/sample.mp4"), 4, 10).unwrap();
    let status = d.join("status");
    std::fs::create_dir_all(&status).unwrap();
    let mut c = Command::new(BTT);
    c.arg("demo")
        .arg("--dir")
        .arg(&dir)
        .env_remove("RUST_LOG")
        .env("BTT_STATUS_DIR", &status);
    // Unmounted however the test ends (the demo's seeder ends with it).
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if is_mounted(&self.0) {
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(&self.0)
                    .status();
            }
        }
    }
    let _unmount = Unmount(dir.join("mnt"));
    let mut demo = Proc::spawn("btt demo", &mut c, &d.join("demo.log"));
    assert!(
        wait_until(Duration::from_secs(60), || demo
            .log_text()
            .contains("Press Ctrl-C")),
        "{}",
        demo.log_text()
    );
    let out = demo.log_text();
    let video = dir.join("mnt/sample.mp4");
    let vlc = format!(
        "runuser -u nobody -- cvlc --play-and-exit {}",
        video.display()
    );
    assert!(out.contains(&vlc), "{out}");
    assert!(!out.contains("INFO") && !out.contains(" WARN "), "{out}");
    // As printed, with VLC's output to nowhere and no window.
    let st = Command::new("runuser")
        .args([
            "-u",
            "nobody",
            "--",
            "cvlc",
            "--play-and-exit",
            "--intf",
            "dummy",
        ])
        .args(["--vout", "dummy", "--aout", "dummy"])
        .arg(&video)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(st.status.success(), "{err}");
    assert!(
        !err.contains("Permission denied") && !err.contains("cannot open"),
        "{err}"
    );
    let st = Command::new(BTT)
        .arg("status")
        .env("BTT_STATUS_DIR", &status)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&st.stdout);
    assert!(
        listed.contains(&format!("mount {}", dir.join("mnt").display())),
        "{listed}"
    );
    demo.signal(libc::SIGINT);
    assert!(
        demo.wait_exit(Duration::from_secs(15)).is_some(),
        "the demo ends on Ctrl-C"
    );
    assert!(!is_mounted(&dir.join("mnt")));
}
