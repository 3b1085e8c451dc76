//! `btt doctor`: what a mount, a download and a sale need from this
//! machine, checked one by one, each failure with the line that fixes it.
//!
//! Why: the first hour's failures ("Permission denied" from FUSE, a data
//! dir under an unwritable home, a wallet pointed at the wrong chain) each
//! surface late and in someone else's words. Each check here is what the
//! command that needs it would hit, asked up front.

use crate::config::Home;
use std::path::{Path, PathBuf};

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Works, but something people often want does not (or is not set up).
    Note,
    /// What needs it will fail.
    Fail,
}

/// One line of the report.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    /// What was found.
    pub found: String,
    /// What to do, when it is not fine.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, found: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Ok,
            found: found.into(),
            fix: None,
        }
    }
    fn bad(
        name: &'static str,
        outcome: Outcome,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            name,
            outcome,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Where the checks look (the defaults, or what the user pointed at).
pub struct Places {
    pub fuse_dev: PathBuf,
    pub fuse_conf: PathBuf,
    pub data_dir: PathBuf,
    pub home: Home,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Every check, in the order a newcomer meets them.
pub fn run(p: &Places) -> Vec<Check> {
    vec![
        fuse_device(&p.fuse_dev),
        fusermount(),
        allow_other(&p.fuse_conf),
        data_dir(&p.data_dir),
        wallet(&p.home),
    ]
}

fn fuse_device(dev: &Path) -> Check {
    const NAME: &str = "FUSE device";
    match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => Check::ok(NAME, format!("{} opens for reading and writing", dev.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Check::bad(
            NAME,
            Outcome::Fail,
            format!("{} does not exist", dev.display()),
            "load the fuse module (modprobe fuse); in a container, pass --device /dev/fuse",
        ),
        Err(e) => Check::bad(
            NAME,
            Outcome::Fail,
            format!("{}: {e}", dev.display()),
            format!(
                "ask for read and write access to {} (chmod 0666 is the usual mode), or mount as root",
                dev.display()
            ),
        ),
    }
}

fn fusermount() -> Check {
    const NAME: &str = "fusermount3";
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("fusermount3"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    let Some(path) = found else {
        return Check::bad(
            NAME,
            if is_root() {
                Outcome::Note
            } else {
                Outcome::Fail
            },
            "not found in PATH (unmounting by hand and mounting as a user need it)",
            "install it: apt install fuse3",
        );
    };
    use std::os::unix::fs::MetadataExt;
    let setuid = std::fs::metadata(&path).is_ok_and(|m| m.mode() & 0o4000 != 0 && m.uid() == 0);
    if setuid || is_root() {
        Check::ok(NAME, path.display().to_string())
    } else {
        Check::bad(
            NAME,
            Outcome::Fail,
            format!("{} is not setuid root: users cannot mount", path.display()),
            format!("chmod u+s {} (as root), or reinstall fuse3", path.display()),
        )
    }
}

/// Whether a fuse.conf's text enables `user_allow_other`.
pub fn allows_other(conf: &str) -> bool {
    conf.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .any(|l| l == "user_allow_other")
}

fn allow_other(conf: &Path) -> Check {
    const NAME: &str = "allow_other";
    if is_root() {
        return Check::ok(NAME, "root may mount with -o allow_other (other users, e.g. a player run as another user, can then read)");
    }
    match std::fs::read_to_string(conf) {
        Ok(t) if allows_other(&t) => Check::ok(NAME, format!("user_allow_other is set in {}", conf.display())),
        Ok(_) | Err(_) => Check::bad(
            NAME,
            Outcome::Note,
            format!("user_allow_other is not set in {}: only you can read your mounts", conf.display()),
            format!(
                "to let other users read them (-o allow_other), add a line user_allow_other to {} (as root)",
                conf.display()
            ),
        ),
    }
}

/// The nearest existing directory at or above `dir`.
fn existing_ancestor(dir: &Path) -> Option<&Path> {
    dir.ancestors().find(|a| a.is_dir())
}

fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // With the effective ids, as creating files there will use.
    // SAFETY: a valid NUL-terminated path; faccessat has no other preconditions.
    unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        ) == 0
    }
}

fn data_dir(dir: &Path) -> Check {
    const NAME: &str = "data dir";
    let fix = "pass --data-dir DIR (btt-mount) with a directory you can write, on a disk with room for the torrents";
    if dir.exists() && !dir.is_dir() {
        return Check::bad(
            NAME,
            Outcome::Fail,
            format!("{} is not a directory", dir.display()),
            fix,
        );
    }
    match existing_ancestor(dir) {
        Some(a) if writable(a) => {
            let what = if a == dir {
                format!("{} is writable", dir.display())
            } else {
                format!(
                    "{} will be created (in {}, writable)",
                    dir.display(),
                    a.display()
                )
            };
            Check::ok(NAME, what)
        }
        Some(a) => Check::bad(
            NAME,
            Outcome::Fail,
            format!("{}: {} is not writable by you", dir.display(), a.display()),
            fix,
        ),
        None => Check::bad(
            NAME,
            Outcome::Fail,
            format!("{}: no such directory", dir.display()),
            fix,
        ),
    }
}

fn wallet(home: &Home) -> Check {
    const NAME: &str = "wallet";
    let cfg = match home.load_config() {
        Ok(c) => c,
        Err(crate::config::ConfigError::NoWallet(_)) => {
            return Check::bad(
                NAME,
                Outcome::Note,
                format!("none in {} (needed only to buy or sell)", home.dir.display()),
                "btt wallet init --network NETWORK --electrum tcp://HOST:PORT (or --rpc http://HOST:PORT)",
            )
        }
        Err(e) => {
            return Check::bad(
                NAME,
                Outcome::Fail,
                e.to_string(),
                format!("fix or remove {}", home.config().display()),
            )
        }
    };
    let backend = cfg.backend.describe();
    match crate::chain::connect(&cfg).and_then(|b| Ok((b.network(), b.tip_height()?))) {
        Ok((net, tip)) => Check::ok(
            NAME,
            format!("{backend} answers: {net}, tip at block {tip}"),
        ),
        Err(e) => Check::bad(
            NAME,
            Outcome::Fail,
            one_line(&e.to_string()),
            format!(
                "start the server, or point the wallet at one of network {} (the backend in {})",
                cfg.network,
                home.config().display()
            ),
        ),
    }
}

/// A library's multi-line error on one line.
fn one_line(s: &str) -> String {
    s.split(['\n', '\t'])
        .map(|l| l.trim().trim_start_matches("- "))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_allow_other_counts_only_uncommented() {
        assert!(allows_other("# comment\nuser_allow_other\n"));
        assert!(allows_other("  user_allow_other  # yes\n"));
        assert!(!allows_other("#user_allow_other\nmount_max = 1000\n"));
        assert!(!allows_other(""));
    }

    #[test]
    fn a_missing_device_and_an_unwritable_dir_fail_with_a_fix() {
        let c = fuse_device(Path::new("/nonexistent/fuse"));
        assert_eq!(c.outcome, Outcome::Fail);
        assert!(c.fix.unwrap().contains("--device /dev/fuse"));
        let d = tempfile::tempdir().unwrap();
        let c = data_dir(&d.path().join("a/b"));
        assert_eq!(c.outcome, Outcome::Ok, "{c:?}");
        assert!(c.found.contains("will be created"));
    }
}
