//! The Debian package, installed on this machine for real: lintian, `man`,
//! `mount -t btt`, an /etc/fstab line, `umount`, `systemd-analyze verify`,
//! and a clean purge. `tests/run.sh` builds the package first
//! (`packaging/build-deb.sh`); the test builds it itself if it is missing.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn deb() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/deb");
    let find = || {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
    };
    if let Some(p) = find() {
        return p;
    }
    let st = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/build-deb.sh"))
        .status()
        .expect("packaging/build-deb.sh");
    assert!(st.success(), "building the .deb failed");
    find().expect("the .deb")
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Purges the package and restores /etc/fstab, also when the test fails.
struct Installed {
    fstab: String,
    mounts: Vec<PathBuf>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for m in &self.mounts {
            if is_mounted(m) {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
        let _ = std::fs::write("/etc/fstab", &self.fstab);
        let _ = Command::new("dpkg").args(["--purge", "btt"]).output();
    }
}

fn unmount_and_wait(mnt: &Path) {
    run(Command::new("umount").arg(mnt));
    assert!(
        wait_until(Duration::from_secs(10), || !is_mounted(mnt)),
        "{} still mounted",
        mnt.display()
    );
}

#[test]
fn deb_installs_mounts_through_mount_8_and_purges() {
    let deb = deb();
    // lintian: no errors (warnings are printed for the reader).
    let lint = Command::new("lintian")
        .args(["--fail-on", "error", "--allow-root"])
        .arg(&deb)
        .output()
        .expect("lintian (tests/run.sh installs it)");
    println!("{}", String::from_utf8_lossy(&lint.stdout));
    assert!(
        lint.status.success(),
        "lintian reports errors:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    let mut guard = Installed {
        fstab: std::fs::read_to_string("/etc/fstab").unwrap_or_default(),
        mounts: vec![],
    };
    run(Command::new("dpkg").arg("-i").arg(&deb));
    for f in ["/usr/bin/btt", "/usr/bin/btt-mount", "/usr/sbin/mount.btt"] {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let v = run(Command::new("/usr/bin/btt-mount").arg("--version"));
    assert!(v.starts_with("btt-mount "), "{v}");
    let man = run(Command::new("man")
        .args(["-P", "cat", "btt-mount"])
        .env("MANWIDTH", "80"));
    assert!(
        man.contains("btt-mount") && man.contains("--read-timeout"),
        "{man}"
    );
    let man8 = run(Command::new("man").args(["-P", "cat", "8", "mount.btt"]));
    assert!(man8.contains("x-systemd.automount"));
    assert!(Path::new("/usr/share/bash-completion/completions/btt").exists());
    let verify = Command::new("systemd-analyze")
        .args(["verify", "btt-seed@example.service"])
        .output()
        .unwrap();
    let verr = String::from_utf8_lossy(&verify.stderr).to_string();
    // Without systemd as PID 1 some checks cannot run; the unit itself must
    // produce no complaints.
    assert!(
        verify.status.success() && !verr.lines().any(|l| l.contains("btt-seed@")),
        "systemd-analyze verify: {verr}"
    );

    // A seeder, and mounts made by mount(8) through the installed helper.
    let d = tmpdir();
    let content = d.path().join("seed");
    make_tree(&content, &[("disk.img", 1_500_000)]);
    let torrent = make_torrent(&content.join("disk.img"), 32768, &[]);
    let (_seeder, peer) = seed_with_btt(d.path(), &torrent);
    let mnt = d.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    guard.mounts.push(mnt.clone());
    let opts = format!(
        "ro,_netdev,nofail,peer={peer},no_trackers,data_dir={},read_timeout=30",
        d.path().join("data1").display()
    );
    run(Command::new("mount")
        .args(["-t", "btt"])
        .arg(&torrent)
        .arg(&mnt)
        .args(["-o", &opts]));
    assert!(is_mounted(&mnt));
    assert_eq!(
        std::fs::read(mnt.join("disk.img")).unwrap(),
        std::fs::read(content.join("disk.img")).unwrap()
    );
    unmount_and_wait(&mnt);

    // The same through /etc/fstab.
    let line = format!(
        "{} {} btt ro,noauto,nofail,x-systemd.automount,peer={peer},no_trackers,data_dir={} 0 0\n",
        torrent.display(),
        mnt.display(),
        d.path().join("data2").display()
    );
    std::fs::write("/etc/fstab", format!("{}{line}", guard.fstab)).unwrap();
    run(Command::new("mount").arg(&mnt));
    assert_eq!(
        std::fs::read(mnt.join("disk.img")).unwrap(),
        std::fs::read(content.join("disk.img")).unwrap()
    );
    unmount_and_wait(&mnt);
    // A bad option is a clear mount error.
    let bad = Command::new("mount")
        .args(["-t", "btt", "-o", "rw"])
        .arg(&torrent)
        .arg(&mnt)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("read-only"));

    run(Command::new("dpkg").args(["--purge", "btt"]));
    for f in [
        "/usr/bin/btt",
        "/usr/sbin/mount.btt",
        "/lib/systemd/system/btt-seed@.service",
    ] {
        assert!(!Path::new(f).exists(), "{f} left behind");
    }
}
