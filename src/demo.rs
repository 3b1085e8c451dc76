//! `btt demo`: the whole read path on one machine, with nothing but loopback.
//! Generates a sample 1080p video (ffmpeg), makes a torrent of it, starts
//! `btt seed` on 127.0.0.1 as a child process and mounts the torrent from it.

use crate::create::{create_torrent, CreateOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("ffmpeg failed to make the sample video (is ffmpeg installed?)")]
    Ffmpeg,
    #[error(transparent)]
    Create(#[from] crate::create::CreateError),
    #[error("the seeder did not start: {0}")]
    Seeder(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DemoError {
    let what = what.into();
    move |source| DemoError::Io { what, source }
}

/// The lines the demo prints once mounted: players to try, each as it
/// works for whoever runs the demo. VLC refuses to run as root, so as root
/// its line runs it as `nobody` (the mount is `allow_other` then).
pub fn play_lines(video: &Path, root: bool) -> String {
    let v = video.display();
    let vlc = match root {
        true => {
            format!("runuser -u nobody -- cvlc --play-and-exit {v}   (VLC will not run as root)")
        }
        false => format!("cvlc --play-and-exit {v}"),
    };
    format!(
        "\nThe sample is mounted; play it with any player, e.g.:\n  mpv {v}\n  {vlc}\n  ffprobe {v}\nPress Ctrl-C to unmount and stop the seeder."
    )
}

/// Kills the seeder when the demo ends, however it ends.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Prepared {
    pub torrent: PathBuf,
    pub seeder: ChildGuard,
    pub seeder_addr: std::net::SocketAddr,
    pub video_name: String,
}

/// Encodes a 1080p H.264 test pattern with a sine tone, `seconds` long at `fps`,
/// keyframes every two seconds; the container follows `out`'s extension (an mp4
/// keeps its index after the data, as ffmpeg writes it without faststart).
pub fn generate_video(out: &Path, seconds: u32, fps: u32) -> Result<(), DemoError> {
    let ok = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!(
            "testsrc=size=1920x1080:rate={fps}:duration={seconds}"
        ))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=frequency=440:duration={seconds}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
        ])
        .arg((2 * fps).to_string())
        .args(["-c:a", "aac", "-shortest"])
        .arg(out)
        .status()
        .map_err(io("running ffmpeg"))?
        .success();
    if ok {
        Ok(())
    } else {
        Err(DemoError::Ffmpeg)
    }
}

/// Makes `dir/content/sample.mp4` (40 s, 1080p H.264, index at the end) if missing.
pub fn make_sample(dir: &Path) -> Result<PathBuf, DemoError> {
    let content = dir.join("content");
    std::fs::create_dir_all(&content).map_err(io(content.display().to_string()))?;
    let video = content.join("sample.mp4");
    if !video.exists() {
        let tmp = content.join("sample.tmp.mp4");
        generate_video(&tmp, 40, 24)?;
        std::fs::rename(&tmp, &video).map_err(io("renaming sample"))?;
    }
    Ok(video)
}

/// Prepares content and torrent and starts a seeder (`exe seed …`) on 127.0.0.1.
pub fn prepare(exe: &Path, dir: &Path) -> Result<Prepared, DemoError> {
    let video = make_sample(dir)?;
    let torrent = dir.join("sample.torrent");
    let bytes = create_torrent(
        &video,
        &CreateOptions {
            piece_length: Some(256 * 1024),
            ..Default::default()
        },
    )?;
    std::fs::write(&torrent, bytes).map_err(io(torrent.display().to_string()))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(io("finding a free port"))?
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(exe);
    cmd.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(dir.join("content"))
        // Nothing but loopback: no DHT, no trackers.
        .args(["--listen", &addr.to_string(), "--no-trackers", "--no-dht"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // It ends with the demo, even one killed with -9.
    // SAFETY: prctl is async-signal-safe; it only sets this child's own
    // parent-death signal.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(io("starting the seeder"))?;
    let mut guard = ChildGuard(child);
    // Wait until it accepts connections.
    for _ in 0..100 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(Prepared {
                torrent,
                seeder: guard,
                seeder_addr: addr,
                video_name: "sample.mp4".into(),
            });
        }
        if let Ok(Some(st)) = guard.0.try_wait() {
            return Err(DemoError::Seeder(format!("exited with {st}")));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(DemoError::Seeder("not listening after 10 s".into()))
}
