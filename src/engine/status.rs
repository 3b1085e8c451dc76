//! Status files for `btt status`: every running torrent (in a mount, a seller
//! or `btt get`) rewrites `<status dir>/<pid>-<info-hash>.json` once a second
//! and removes it on shutdown. A file whose process is gone is ignored (and
//! removed) by the reader, so a kill -9 leaves nothing misleading behind.
//!
//! Why files and not a socket: any number of btt processes, no daemon, and
//! `btt status` works for every user who can read the directory.

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

/// Every live report, oldest process first.
pub fn read_all() -> Vec<Report> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(status_dir()) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(r) = std::fs::read(&p)
            .map_err(|_| ())
            .and_then(|b| serde_json::from_slice::<Report>(&b).map_err(|_| ()))
        else {
            continue;
        };
        if alive(r.pid) {
            out.push(r);
        } else {
            let _ = std::fs::remove_file(&p);
        }
    }
    out.sort_by_key(|r| r.pid);
    out
}
