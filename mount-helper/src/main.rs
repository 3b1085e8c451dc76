//! `mount.btt`: the helper mount(8) runs for `mount -t btt TORRENT DIR -o …`
//! and for `/etc/fstab` lines of type `btt`.
//!
//! Why a helper of our own and not `fuse.btt` through mount.fuse3: mount.fuse3
//! passes every option it does not know to the filesystem program as `-o`, so
//! btt's own settings (peers, data dir, budget) would have to be FUSE options;
//! here they are plain mount options mapped to btt-mount flags, and options
//! that belong to mount(8) or systemd (`_netdev`, `nofail`, `x-systemd.*`,
//! `noauto`, `user`) are consumed instead of reaching the kernel.
//!
//! mount(8) calls `mount.btt SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]`. We exec
//! `btt-mount`, which returns once the filesystem answers (or with an error),
//! so `mount` reports failure properly; `umount MOUNTPOINT` stops it.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

/// Options that are mount(8)'s or systemd's business, not ours.
fn consumed(opt: &str) -> bool {
    matches!(
        opt,
        "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "users"
            | "nouser"
            | "owner"
            | "group"
            | "_netdev"
            | "nofail"
            | "ro"
            | "relatime"
            | "norelatime"
            | "strictatime"
            | "nosuid"
            | "nodev"
            | "sync"
            | "async"
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
}

/// FUSE options passed through to btt-mount's `-o`.
const FUSE: &[&str] = &[
    "allow_other",
    "allow_root",
    "default_permissions",
    "auto_unmount",
    "noexec",
    "exec",
    "noatime",
];

/// btt-mount flags taking a value: `name=value` → `--name value`.
const WITH_VALUE: &[&str] = &[
    "peer",
    "listen",
    "data_dir",
    "cache_size",
    "read_timeout",
    "log_file",
    "max_peers",
    "upload_slots",
];

/// btt-mount switches: `name` → `--name`.
const SWITCHES: &[&str] = &["no_trackers", "fetch_all", "no_keep", "verbose"];

#[derive(Debug, Default, PartialEq, Eq)]
struct Invocation {
    source: String,
    mountpoint: String,
    options: Vec<String>,
    sloppy: bool,
    fake: bool,
    verbose: bool,
}

fn parse_args(args: &[String]) -> Result<Invocation, String> {
    let mut inv = Invocation::default();
    let mut pos = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => {
                let o = it.next().ok_or("-o needs a value")?;
                inv.options
                    .extend(o.split(',').filter(|s| !s.is_empty()).map(str::to_string));
            }
            "-s" => inv.sloppy = true,
            "-f" => inv.fake = true,
            "-v" => inv.verbose = true,
            "-n" => {}
            // `-N namespace`: mount(8) has already entered it for us.
            "-N" => {
                it.next();
            }
            s if s.starts_with("-t") => {
                // `-t btt` may be passed on; the type is implied.
                if s == "-t" {
                    it.next();
                }
            }
            s if s.starts_with('-') && s.len() > 1 => {
                for c in s[1..].chars() {
                    match c {
                        's' => inv.sloppy = true,
                        'f' => inv.fake = true,
                        'v' => inv.verbose = true,
                        'n' => {}
                        _ => return Err(format!("unknown flag -{c}")),
                    }
                }
            }
            _ => pos.push(a.clone()),
        }
    }
    let [source, mountpoint] = <[String; 2]>::try_from(pos)
        .map_err(|_| "usage: mount.btt TORRENT MOUNTPOINT [-sfnv] [-o OPTIONS]".to_string())?;
    inv.source = source;
    inv.mountpoint = mountpoint;
    Ok(inv)
}

/// The btt-mount arguments for an invocation; warnings for ignored options.
fn btt_mount_args(inv: &Invocation) -> Result<(Vec<String>, Vec<String>), String> {
    let mut args = vec![inv.source.clone(), inv.mountpoint.clone()];
    let mut fuse = Vec::new();
    let mut warnings = Vec::new();
    for opt in &inv.options {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt.as_str(), None),
        };
        if name == "rw" {
            return Err("btt mounts are read-only: remove `rw`".into());
        }
        if consumed(opt) {
            continue;
        }
        if FUSE.contains(&name) && value.is_none() {
            fuse.push(name.to_string());
        } else if WITH_VALUE.contains(&name) {
            let v = value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("option {name} needs a value ({name}=…)"))?;
            args.push(format!("--{}", name.replace('_', "-")));
            args.push(v.to_string());
        } else if SWITCHES.contains(&name) && value.is_none() {
            args.push(format!("--{}", name.replace('_', "-")));
        } else if inv.sloppy {
            warnings.push(format!("ignoring unknown option {opt}"));
        } else {
            return Err(format!("unknown option {opt:?} (see mount.btt(8))"));
        }
    }
    if !fuse.is_empty() {
        args.push("-o".into());
        args.push(fuse.join(","));
    }
    Ok((args, warnings))
}

/// btt-mount next to this helper's package layout, else from PATH.
fn btt_mount_program() -> OsString {
    if let Some(p) = std::env::var_os("BTT_MOUNT") {
        return p;
    }
    for p in ["/usr/bin/btt-mount", "/usr/local/bin/btt-mount"] {
        if std::path::Path::new(p).exists() {
            return p.into();
        }
    }
    "btt-mount".into()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = || -> Result<(), String> {
        let inv = parse_args(&args)?;
        let (bargs, warnings) = btt_mount_args(&inv)?;
        for w in warnings {
            eprintln!("mount.btt: {w}");
        }
        let prog = btt_mount_program();
        if inv.verbose || inv.fake {
            eprintln!("mount.btt: {} {}", prog.to_string_lossy(), bargs.join(" "));
        }
        if inv.fake {
            return Ok(());
        }
        let err = std::process::Command::new(&prog).args(&bargs).exec();
        Err(format!("running {}: {err}", prog.to_string_lossy()))
    };
    if let Err(e) = run() {
        eprintln!("mount.btt: {e}");
        // mount(8) convention: 32 = mount failure, 1 = usage.
        std::process::exit(32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(args: &[&str]) -> Result<Vec<String>, String> {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        btt_mount_args(&parse_args(&a)?).map(|(a, _)| a)
    }

    #[test]
    fn maps_options_to_flags() {
        let got = map(&[
            "/t/x.torrent",
            "/mnt/x",
            "-o",
            "ro,allow_other,_netdev,nofail,x-systemd.automount,peer=127.0.0.1:6881,no_trackers,data_dir=/var/cache/btt,noatime",
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                "/t/x.torrent",
                "/mnt/x",
                "--peer",
                "127.0.0.1:6881",
                "--no-trackers",
                "--data-dir",
                "/var/cache/btt",
                "-o",
                "allow_other,noatime"
            ]
        );
    }

    #[test]
    fn flags_and_errors() {
        assert_eq!(map(&["a", "b", "-n", "-v"]).unwrap(), ["a", "b"]);
        assert!(map(&["a", "b", "-o", "rw"])
            .unwrap_err()
            .contains("read-only"));
        assert!(map(&["a", "b", "-o", "bogus"])
            .unwrap_err()
            .contains("bogus"));
        assert_eq!(map(&["a", "b", "-s", "-o", "bogus"]).unwrap(), ["a", "b"]);
        assert_eq!(map(&["a", "b", "-sfv", "-o", "bogus"]).unwrap(), ["a", "b"]);
        assert!(map(&["a", "b", "-o", "peer"])
            .unwrap_err()
            .contains("needs a value"));
        assert!(map(&["a"]).unwrap_err().contains("usage"));
        let inv = parse_args(&["a".into(), "b".into(), "-f".into()]).unwrap();
        assert!(inv.fake);
    }
}
