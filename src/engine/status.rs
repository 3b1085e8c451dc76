//! Status files for `btt status`: every running torrent (in a mount, a
//! seller or `btt get`) rewrites `<status dir>/<pid>-<info-hash>.json` once
//! a second when its report changed or the file is gone, and removes it on
//! shutdown. A file whose process is gone is ignored (and removed) by the
//! reader, so a kill -9 leaves nothing misleading behind.
//!
//! Why files and not a socket: any number of btt processes, no daemon, and
//! `btt status` works for every user who can read the directory. Each user
//! has a directory of their own; root's `btt status` reads them all.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Money as the process sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Money {
    /// Buyer: msat paid by this process.
    pub spent_msat: u64,
    /// Buyer: the budget, if buying.
    pub budget_msat: Option<u64>,
    /// Buyer: the budget is spent; no more buying.
    pub budget_spent: bool,
    /// Seller: this torrent's share of what its open channels hold (msat;
    /// each channel's total split by the bytes of each torrent served on it
    /// in this run).
    pub earned_msat: u64,
    /// Seller: what all its open channels hold (msat).
    #[serde(default)]
    pub earned_all_msat: u64,
    /// Channels in use (buyer: with sellers it buys from; seller: open).
    pub channels: usize,
    /// Buyer: payments sent, and bytes their connections carried both ways.
    #[serde(default)]
    pub payments: u64,
    #[serde(default)]
    pub pay_wire_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub pid: u32,
    /// What runs it: "mount /mnt/x", "seed", "get DIR".
    pub role: String,
    pub torrent: String,
    pub info_hash: String,
    pub pieces_have: usize,
    pub pieces_total: usize,
    pub peers: usize,
    pub paid_peers: usize,
    pub down_bytes_per_sec: f64,
    pub up_bytes_per_sec: f64,
    pub downloaded: u64,
    pub uploaded: u64,
    /// Requests peers rejected.
    #[serde(default)]
    pub rejected: u64,
    pub money: Money,
    /// Why nothing comes in, when nobody is connected ("no peers yet: …").
    #[serde(default)]
    pub note: Option<String>,
    /// The process's web page (`http://127.0.0.1:PORT/`).
    #[serde(default)]
    pub http: Option<String>,
    /// The oldest reads waiting, and why (see [`super::view`]).
    #[serde(default)]
    pub waiting: Vec<super::view::Waiting>,
    /// The user the process runs as (the file's owner; not stored).
    #[serde(skip)]
    pub uid: u32,
}

/// `$BTT_STATUS_DIR`, else `$XDG_RUNTIME_DIR/btt`, else `/tmp/btt-status-<uid>`.
pub fn status_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BTT_STATUS_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(d).join("btt");
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    PathBuf::from(format!("/tmp/btt-status-{uid}"))
}

pub fn path_for(info_hash: &str) -> PathBuf {
    status_dir().join(format!("{}-{}.json", std::process::id(), info_hash))
}

/// Writes atomically (temp file + rename).
pub fn write(r: &Report) -> std::io::Result<()> {
    let dir = status_dir();
    std::fs::create_dir_all(&dir)?;
    let path = path_for(&r.info_hash);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(r).map_err(std::io::Error::other)?)?;
    std::fs::rename(tmp, path)
}

pub fn remove(info_hash: &str) {
    let _ = std::fs::remove_file(path_for(info_hash));
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// The directories `btt status` reads: the user's own, and for root every
/// user's (the default places: `/tmp/btt-status-<uid>`, `/run/user/<uid>/btt`).
pub fn dirs_to_read() -> Vec<PathBuf> {
    let mut dirs = vec![status_dir()];
    let chosen = std::env::var_os("BTT_STATUS_DIR").is_some();
    // SAFETY: geteuid has no preconditions.
    if !chosen && unsafe { libc::geteuid() } == 0 {
        let tmp = std::fs::read_dir("/tmp").into_iter().flatten().flatten();
        dirs.extend(
            tmp.filter(|e| e.file_name().to_string_lossy().starts_with("btt-status-"))
                .map(|e| e.path()),
        );
        let run = std::fs::read_dir("/run/user")
            .into_iter()
            .flatten()
            .flatten();
        dirs.extend(run.map(|e| e.path().join("btt")).filter(|p| p.is_dir()));
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

/// Every live report, oldest process first.
pub fn read_all() -> Vec<Report> {
    let mut out = Vec::new();
    let own = status_dir();
    for dir in dirs_to_read() {
        read_dir(&dir, dir == own, &mut out);
    }
    out.sort_by_key(|r| r.pid);
    out.dedup_by(|a, b| a.pid == b.pid && a.info_hash == b.info_hash);
    out
}

/// A status file's text: a regular file, not followed through a symlink,
/// never blocking (a FIFO), at most 64 KiB (root reads folders other users
/// control).
fn read_report(p: &std::path::Path) -> Option<(Report, u32)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() {
        return None;
    }
    let mut b = Vec::new();
    f.take(64 * 1024).read_to_end(&mut b).ok()?;
    let r = serde_json::from_slice::<Report>(&b).ok()?;
    Some((r, m.uid()))
}

/// The reports in `dir`; a dead process's file is removed only in our own
/// folder (`own`), never in another user's.
fn read_dir(dir: &std::path::Path, own: bool, out: &mut Vec<Report>) {
    if !own {
        // Another user's folder: a real directory, not a symlink to one.
        match std::fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {}
            _ => return,
        }
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Some((mut r, uid)) = read_report(&p) else {
            continue;
        };
        r.uid = uid;
        if alive(r.pid) {
            out.push(r);
        } else if own {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// The name of user `uid` (from /etc/passwd), or the number.
pub fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == uid.to_string())
        .map(|f| f[0].to_string())
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root reads folders other users control: a symlinked file, a FIFO
    /// and a huge file are skipped (not followed, not waited on, not read
    /// whole), and a dead process's file there is left alone.
    #[test]
    fn another_users_folder_is_read_with_care() {
        let d = tempfile::tempdir().unwrap();
        let live = Report {
            pid: std::process::id(),
            torrent: "live".into(),
            ..Default::default()
        };
        let dead = Report {
            pid: u32::MAX / 2,
            torrent: "dead".into(),
            ..Default::default()
        };
        std::fs::write(d.path().join("a.json"), serde_json::to_vec(&live).unwrap()).unwrap();
        std::fs::write(d.path().join("d.json"), serde_json::to_vec(&dead).unwrap()).unwrap();
        std::os::unix::fs::symlink(d.path().join("a.json"), d.path().join("b.json")).unwrap();
        let fifo =
            std::ffi::CString::new(d.path().join("c.json").as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::fs::write(d.path().join("e.json"), vec![b' '; 1 << 20]).unwrap();
        let mut out = Vec::new();
        read_dir(d.path(), false, &mut out);
        let names: Vec<&str> = out.iter().map(|r| r.torrent.as_str()).collect();
        assert_eq!(names, ["live"]);
        assert!(d.path().join("d.json").exists(), "not ours to remove");
        read_dir(d.path(), true, &mut Vec::new());
        assert!(
            !d.path().join("d.json").exists(),
            "ours: a dead process's file goes"
        );
    }
}
