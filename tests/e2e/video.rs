//! A generated 1080p video (mp4 with its index at the end, and mkv) through the
//! mount, probed, seeked, decoded by ffmpeg and played to the end by VLC; a
//! file's tail (where a player seeks second) fetched when it is opened.

use crate::harness::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn ffmpeg_make(out: &Path) {
    btt::demo::generate_video(out, 36, 10).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
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

/// The demo as a newcomer runs it: in a terminal (tmux), the VLC line it
/// prints run exactly as printed (through `sh -c`) plays the sample to the
/// end, and Ctrl-C typed into that terminal (to the whole foreground
/// process group, as a terminal sends it) leaves nothing mounted and no
/// btt process of the demo running.
#[test]
fn the_demo_in_a_terminal_plays_as_printed_and_ctrl_c_leaves_nothing() {
    let d = tmpdir();
    let d = d.path();
    let dir = d.join("demo");
    std::fs::create_dir_all(dir.join("content")).unwrap();
    btt::demo::generate_video(&dir.join("content/sample.mp4"), 4, 10).unwrap();
    let session = format!("btt-demo-{}", std::process::id());
    struct Cleanup(String, std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["kill-session", "-t", &self.0])
                .status();
            if is_mounted(&self.1) {
                let _ = Command::new("fusermount3").arg("-uz").arg(&self.1).status();
            }
        }
    }
    let _cleanup = Cleanup(session.clone(), dir.join("mnt"));
    let cmd = format!(
        "env -u RUST_LOG BTT_STATUS_DIR={} {BTT} demo --dir {}",
        d.join("status").display(),
        dir.display()
    );
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "200",
            "-y",
            "50",
            "-s",
            &session,
            &cmd,
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let pane = || {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-J", "-t", &session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut shown = String::new();
    let ready = wait_until(Duration::from_secs(60), || {
        shown = pane();
        shown.contains("Press Ctrl-C")
    });
    assert!(ready, "{shown}");
    let printed = shown
        .lines()
        .find(|l| l.contains("cvlc --play-and-exit"))
        .unwrap_or_else(|| panic!("no VLC line:\n{shown}"));
    let line = printed.split("   (").next().unwrap().trim();
    // The mount's pieces, as `btt status` lists them: (held, all).
    let pieces = || {
        std::thread::sleep(Duration::from_millis(1200));
        let st = Command::new(BTT)
            .arg("status")
            .env("BTT_STATUS_DIR", d.join("status"))
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&st.stdout).into_owned();
        let head = format!("mount {}", dir.join("mnt").display());
        let mount = listed
            .lines()
            .find(|l| l.starts_with(&head))
            .unwrap_or_else(|| panic!("the demo's mount in btt status: {listed}"));
        let (had, all) = mount
            .split(": ")
            .nth(1)
            .and_then(|r| r.split_once('('))
            .and_then(|(_, r)| r.split(" pieces").next())
            .and_then(|p| p.split_once('/'))
            .unwrap_or_else(|| panic!("{mount}"));
        (had.parse::<u32>().unwrap(), all.parse::<u32>().unwrap())
    };
    assert_eq!(pieces().0, 0, "nothing read before VLC");
    let o = Command::new("sh").args(["-c", line]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{line}: {err}");
    // (No display or sound card here: VLC says so; what matters is that it
    // could open and read the file.)
    assert!(
        !err.contains("Permission denied") && !err.contains("unable to open the MRL"),
        "{line}: {err}"
    );
    // VLC read the sample to its end: every piece came to the mount.
    let (had, all) = pieces();
    assert_eq!(had, all, "VLC played to the end");
    let st = Command::new("tmux")
        .args(["send-keys", "-t", &session, "C-c"])
        .status()
        .unwrap();
    assert!(st.success());
    let gone = wait_until(Duration::from_secs(20), || {
        let alive = Command::new("tmux")
            .args(["has-session", "-t", &session])
            .status()
            .is_ok_and(|s| s.success());
        !alive
    });
    assert!(gone, "the demo ended on Ctrl-C:\n{}", pane());
    assert!(!is_mounted(&dir.join("mnt")), "nothing mounted");
    let procs = Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    assert!(
        procs.stdout.is_empty(),
        "nothing of the demo runs: {}",
        String::from_utf8_lossy(&procs.stdout)
    );
}

/// Opening a large file fetches its last MiB at once, where a player seeks
/// second (an mp4's index after its data, an mkv's cues): with the only
/// seeder gone after the open, and nothing read yet, the tail still reads,
/// the middle does not.
#[test]
fn opening_a_large_file_fetches_its_tail_before_it_is_read() {
    use std::os::unix::fs::FileExt;
    let d = tmpdir();
    let d = d.path();
    let content = d.join("seed/film");
    make_tree(&content, &[("movie.mkv", 8 << 20)]);
    let source = std::fs::read(content.join("movie.mkv")).unwrap();
    let torrent = make_torrent(&content, 256 * 1024, &[]);
    let (mut seed, peer) = seed_with_btt(d, &torrent);
    let m = Mount::start(
        d,
        &torrent,
        &["--no-trackers", "--peer", &peer, "--read-timeout", "2"],
    );
    let held = std::fs::File::open(m.mnt.join("film/movie.mkv")).unwrap();
    // The store writes a piece once it verified: the tail on disk is the
    // sign it came (the file is sparse until then).
    let stored = || -> Option<Vec<u8>> {
        let mut dirs = vec![d.join("data")];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).ok()?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.file_name() == Some("movie.mkv".as_ref()) {
                    return std::fs::read(p).ok();
                }
            }
        }
        None
    };
    let tail = source.len() - (1 << 20);
    let came = wait_until(Duration::from_secs(20), || {
        stored().is_some_and(|b| b.len() == source.len() && b[tail..] == source[tail..])
    });
    assert!(came, "the tail was not fetched on open\n{}", m.log());
    seed.signal(libc::SIGKILL);
    let _ = seed.wait_exit(Duration::from_secs(5));
    let mut buf = vec![0u8; 1 << 20];
    held.read_exact_at(&mut buf, tail as u64).unwrap();
    assert!(buf == source[tail..], "the tail reads byte-exact");
    let mut mid = vec![0u8; 65536];
    let err = held.read_exact_at(&mut mid, 4 << 20).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "only the tail was fetched: {err}"
    );
}
