//! Test helpers: processes and mounts that clean up after themselves (Drop), free
//! loopback ports, generated content, and launchers for the real peer programs.
//! Only 127.0.0.1 is ever contacted.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BTT: &str = env!("CARGO_BIN_EXE_btt");
pub const BTT_MOUNT: &str = env!("CARGO_BIN_EXE_btt-mount");

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        // No btt process speaks DHT outside a test's own network namespace
        // (the DHT tests set BTT_NO_DHT=false inside theirs).
        if !cmd.get_envs().any(|(k, _)| k == "BTT_NO_DHT") {
            cmd.env("BTT_NO_DHT", "true");
        }
        let out = std::fs::File::create(log).expect("log file");
        let err = out.try_clone().expect("dup");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {name}: {e} (is it installed? run tests/setup.sh)")
            });
        Proc {
            child,
            name: name.into(),
            log: log.to_path_buf(),
        }
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
    /// Waits up to `t` for the process to exit; its status if it did.
    pub fn wait_exit(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + t;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log_text();
            eprintln!(
                "--- {} log ---\n{}",
                self.name,
                &log[log.len().saturating_sub(3000)..]
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch dir, traversable by other users (opentracker and VLC run as `nobody`).
pub fn tmpdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    // Every test starts here: no btt process it starts speaks DHT unless
    // the test says so inside its own network namespace.
    static NO_DHT: std::sync::Once = std::sync::Once::new();
    // Logs in the full tracing format (a command's default is short human
    // lines), unless the run asks for its own.
    NO_DHT.call_once(|| {
        std::env::set_var("BTT_NO_DHT", "true");
        if std::env::var_os("RUST_LOG").is_none() {
            std::env::set_var("RUST_LOG", "info");
        }
    });
    let d = tempfile::Builder::new()
        .prefix("btt-e2e-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

pub fn free_port() -> u16 {
    // Bind to an ephemeral port and release it; collisions between parallel tests
    // are avoided by the kernel handing out distinct ports.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_until(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

pub fn wait_port(port: u16, t: Duration) {
    wait_addr("127.0.0.1", port, t)
}

pub fn wait_addr(ip: &str, port: u16, t: Duration) {
    assert!(
        wait_until(t, || std::net::TcpStream::connect((ip, port)).is_ok()),
        "nothing listening on {ip}:{port} after {t:?}"
    );
}

/// Deterministic pseudo-random bytes (xorshift), different per `seed`.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Writes files under `root` (paths relative, '/'-separated).
pub fn make_tree(root: &Path, files: &[(&str, usize)]) {
    for (i, (rel, len)) in files.iter().enumerate() {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes(*len, i as u64 + 1)).unwrap();
    }
}

/// A multi-file tree with nested dirs, spaces, unicode, an empty and a 1-byte file.
pub const TRICKY: &[(&str, usize)] = &[
    ("big file.bin", 3 * 1024 * 1024 + 12345),
    ("nested/deeper/still/x.dat", 700_000),
    ("nested/ünïcödé 文件.txt", 40_000),
    ("empty", 0),
    ("one", 1),
    ("z last.bin", 262_144),
];

pub fn make_torrent(content: &Path, piece: u64, trackers: &[String]) -> PathBuf {
    let opts = btt::create::CreateOptions {
        piece_length: Some(piece),
        trackers: trackers.iter().map(|t| vec![t.clone()]).collect(),
        ..Default::default()
    };
    let bytes = btt::create::create_torrent(content, &opts).expect("create torrent");
    let out = content.parent().unwrap().join(format!(
        "{}.torrent",
        content.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&out, bytes).unwrap();
    out
}

/// `btt create CONTENT -o OUT ARGS` (the command a user runs, for what
/// only the CLI does: --v2, --hybrid), and the torrent it made.
pub fn btt_create(content: &Path, out: &Path, args: &[&str]) -> btt::metainfo::Metainfo {
    let o = Command::new(BTT)
        .arg("create")
        .args(args)
        .arg(content)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "btt create {args:?}: {o:?}");
    btt::metainfo::Metainfo::from_bytes(&std::fs::read(out).unwrap()).unwrap()
}

/// All regular files under `root`, relative paths → contents, sorted.
pub fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut es: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        es.sort_by_key(|e| e.file_name());
        for e in es {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((
                    rel,
                    read_file_timeout(&p, Duration::from_secs(120))
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Reads a file in a child process (`cat`) with a time limit, so a stuck FUSE read
/// can never hang the test process itself.
pub fn read_file_timeout(p: &Path, t: Duration) -> Result<Vec<u8>, String> {
    let mut child = Command::new("cat")
        .arg(p)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let end = Instant::now() + t;
    loop {
        if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
            let data = reader.join().unwrap();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            return if st.success() {
                Ok(data)
            } else {
                Err(format!("cat failed ({st}): {err}"))
            };
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("read of {} timed out after {t:?}", p.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&want))
}

/// A `btt-mount --foreground` process; unmounted and killed on drop.
pub struct Mount {
    pub mnt: PathBuf,
    pub proc: Proc,
}

impl Mount {
    pub fn start(dir: &Path, torrent: &Path, args: &[&str]) -> Mount {
        Self::try_start(dir, torrent, args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(dir: &Path, torrent: &Path, args: &[&str]) -> Result<Mount, String> {
        Self::try_start_env(dir, torrent, args, &[])
    }

    /// [`Mount::try_start`] with extra environment variables.
    pub fn try_start_env(
        dir: &Path,
        torrent: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        Self::try_start_in(None, dir, torrent, args, env)
    }

    /// A mount whose process runs in network namespace `ns` (if given).
    pub fn try_start_in(
        ns: Option<&NetNs>,
        dir: &Path,
        torrent: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        Self::spawn_in(ns, dir, Some(torrent), args, env)
    }

    /// `btt-mount --library DIR/mnt ARGS`.
    pub fn library(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Mount {
        Self::library_in(None, dir, args, env)
    }

    /// [`Mount::library`] in network namespace `ns` (if given).
    pub fn library_in(
        ns: Option<&NetNs>,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Mount {
        Self::spawn_in(ns, dir, None, args, env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn spawn_in(
        ns: Option<&NetNs>,
        dir: &Path,
        torrent: Option<&Path>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Mount, String> {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        let mut cmd = match ns {
            Some(ns) => ns.command(BTT_MOUNT),
            None => Command::new(BTT_MOUNT),
        };
        match torrent {
            Some(t) => cmd.arg(t).arg(&mnt),
            None => cmd.arg("--library").arg(&mnt),
        };
        cmd.arg("--foreground")
            .arg("--log-file")
            .arg(dir.join("mount.log"));
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--data-dir") {
            cmd.arg("--data-dir").arg(dir.join("data"));
        }
        cmd.args(args).env("RUST_LOG", "btt=debug,info");
        cmd.envs(env.iter().copied());
        let mut proc = Proc::spawn("btt-mount", &mut cmd, &dir.join("mount.out"));
        let ok = wait_until(Duration::from_secs(15), || {
            is_mounted(&mnt) || proc.child.try_wait().ok().flatten().is_some()
        });
        if !ok || !is_mounted(&mnt) {
            return Err(format!(
                "mount failed: {}\n{}",
                proc.log_text(),
                std::fs::read_to_string(dir.join("mount.log")).unwrap_or_default()
            ));
        }
        Ok(Mount { mnt, proc })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.mnt.parent().unwrap().join("mount.log")).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            eprintln!(
                "--- mount log ({}) ---\n{}",
                self.mnt.display(),
                &log[log.len().saturating_sub(6000)..]
            );
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .args(["-u", "-z", "--"])
                .arg(&self.mnt)
                .status();
        }
        self.proc.signal(libc::SIGTERM);
        let _ = self.proc.wait_exit(Duration::from_secs(3));
    }
}

/// A network namespace with only loopback, made for one test (anything that
/// may speak DHT runs in one). Held by a sleeping process; others join it
/// with `nsenter`. If it cannot be made, the test fails.
pub struct NetNs {
    holder: Proc,
}

impl NetNs {
    pub fn new(dir: &Path) -> NetNs {
        let mut holder = Proc::spawn(
            "unshare",
            Command::new("unshare").args(["--net", "--", "sleep", "3600"]),
            &dir.join("netns.log"),
        );
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = format!("/proc/{}/ns/net", holder.pid());
        let made = wait_until(Duration::from_secs(10), || {
            std::fs::read_link(&theirs).is_ok_and(|l| l != ours)
        });
        if !made {
            let _ = holder.wait_exit(Duration::from_secs(1));
            panic!("cannot make a network namespace: {}", holder.log_text());
        }
        let ns = NetNs { holder };
        let up = ns
            .command("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(up.success(), "ip link set lo up in the namespace");
        let links = ns.command("ip").args(["-o", "link"]).output().unwrap();
        let links = String::from_utf8_lossy(&links.stdout).to_string();
        assert_eq!(links.lines().count(), 1, "only loopback: {links}");
        ns
    }

    /// `prog`, to be run inside the namespace.
    pub fn command(&self, prog: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.holder.pid()))
            .arg("--")
            .arg(prog);
        c
    }
}

// ---------------- real peers ----------------

/// opentracker on 127.0.0.1:`port` (TCP and UDP). Debian builds it with a
/// whitelist, so the torrents it should track are listed up front.
pub fn opentracker(dir: &Path, port: u16, torrents: &[&Path]) -> Proc {
    let hashes: String = torrents
        .iter()
        .map(|t| {
            btt::metainfo::Metainfo::from_bytes(&std::fs::read(t).unwrap())
                .unwrap()
                .info_hash
                .hex()
                + "\n"
        })
        .collect();
    // It changes to / and drops to `nobody` before reading the list: give it an
    // absolute path that `nobody` can read.
    let root = dir.join("opentracker");
    std::fs::create_dir_all(&root).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(root.join("whitelist"), hashes).unwrap();
    std::fs::set_permissions(
        root.join("whitelist"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let p = Proc::spawn(
        "opentracker",
        Command::new("opentracker")
            .current_dir(&root)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
                "-w",
            ])
            .arg(root.join("whitelist")),
        &dir.join("opentracker.log"),
    );
    wait_port(port, Duration::from_secs(10));
    p
}

/// aria2c seeding `torrent` from `dir` (which holds the content) on `port`.
pub fn aria2_seed(torrent: &Path, data: &Path, port: u16, log: &Path, unverified: bool) -> Proc {
    let mut cmd = Command::new("aria2c");
    cmd.arg(torrent)
        .arg(format!("--dir={}", data.display()))
        .args([
            "--seed-ratio=0.0",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
        ])
        .args([
            "--bt-external-ip=127.0.0.1",
            "--disable-ipv6=true",
            "--file-allocation=none",
            "--summary-interval=0",
            "--console-log-level=warn",
        ])
        .arg(format!("--listen-port={port}"));
    if unverified {
        cmd.args(["--bt-seed-unverified=true", "--check-integrity=false"]);
    } else {
        cmd.args(["--check-integrity=true"]);
    }
    let p = Proc::spawn("aria2c", &mut cmd, log);
    wait_port(port, Duration::from_secs(30));
    p
}

/// transmission-daemon seeding: the torrent is dropped in a watch dir.
pub fn transmission_seed(torrent: &Path, data: &Path, port: u16, dir: &Path) -> Proc {
    let conf = dir.join("tr-conf");
    let watch = dir.join("tr-watch");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&watch).unwrap();
    std::fs::write(
        conf.join("settings.json"),
        format!(
            r#"{{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "port-forwarding-enabled": false,
"utp-enabled": false, "peer-port": {port}, "peer-port-random-on-start": false, "rpc-enabled": true, "rpc-port": {rpc},
"rpc-bind-address": "127.0.0.1", "rpc-whitelist": "127.0.0.1", "bind-address-ipv4": "127.0.0.1",
"download-dir": "{data}", "watch-dir": "{watch}", "watch-dir-enabled": true, "start-added-torrents": true,
"ratio-limit-enabled": false, "idle-seeding-limit-enabled": false, "encryption": 1, "message-level": 2}}"#,
            rpc = free_port(),
            data = data.display(),
            watch = watch.display()
        ),
    )
    .unwrap();
    std::fs::copy(torrent, watch.join("t.torrent")).unwrap();
    let p = Proc::spawn(
        "transmission-daemon",
        Command::new("transmission-daemon")
            .arg("-f")
            .arg("-g")
            .arg(&conf)
            .args(["-O", "-Y", "-M"]),
        &dir.join("transmission.log"),
    );
    wait_port(port, Duration::from_secs(30));
    p
}

/// Where qbittorrent-nox listens. libtorrent bans the IP of a connection to
/// itself, and on loopback the tracker hands it its own 127.0.0.1 address, after
/// which it would refuse everyone on 127.0.0.1; so it lives on 127.0.0.2.
pub const QBT_IP: &str = "127.0.0.2";

/// qbittorrent-nox seeding from `data`.
pub fn qbittorrent_seed(torrent: &Path, data: &Path, port: u16, dir: &Path) -> Proc {
    let profile = dir.join("qbt");
    let conf = profile.join("qBittorrent/config");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("qBittorrent.conf"),
        format!(
            "[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\DHTEnabled=false\nSession\\LSDEnabled=false\nSession\\PeXEnabled=false\n\
Session\\Port={port}\nSession\\BTProtocol=TCP\nSession\\Interface=lo\nSession\\InterfaceName=lo\nSession\\InterfaceAddress={QBT_IP}\nSession\\AnonymousModeEnabled=false\nSession\\QueueingSystemEnabled=false\n\
Session\\GlobalMaxRatio=-1\n\n[Network]\nPortForwardingEnabled=false\n\n[Preferences]\nConnection\\UPnP=false\nGeneral\\Locale=en\nConnection\\ResolvePeerCountries=false\n\
WebUI\\Enabled=false\nWebUI\\Port={}\nWebUI\\Address=127.0.0.1\n",
            free_port()
        ),
    )
    .unwrap();
    let p = Proc::spawn(
        "qbittorrent-nox",
        Command::new("qbittorrent-nox")
            .arg(format!("--profile={}", profile.display()))
            .arg(format!("--save-path={}", data.display()))
            .arg("--add-paused=false")
            .arg("--skip-dialog=true")
            .arg(torrent)
            .env("QT_QPA_PLATFORM", "offscreen"),
        &dir.join("qbittorrent.log"),
    );
    wait_addr(QBT_IP, port, Duration::from_secs(30));
    p
}

pub fn btt_seed(torrent: &Path, data: &Path, port: u16, log: &Path, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(BTT);
    cmd.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra);
    let p = Proc::spawn("btt seed", &mut cmd, log);
    wait_port(port, Duration::from_secs(30));
    p
}

/// `btt seed` of `torrent` from `d/seed` without trackers; its `--peer` address.
pub fn seed_with_btt(d: &Path, torrent: &Path) -> (Proc, String) {
    let port = free_port();
    let p = btt_seed(
        torrent,
        &d.join("seed"),
        port,
        &d.join("seed.log"),
        &["--no-trackers"],
    );
    (p, format!("127.0.0.1:{port}"))
}

/// Asserts the mounted tree equals the source tree (names, sizes, bytes).
pub fn assert_tree_eq(mounted: &Path, source: &Path) {
    let a = read_tree(mounted);
    let b = read_tree(source);
    let names = |v: &[(String, Vec<u8>)]| {
        v.iter()
            .map(|(n, d)| (n.clone(), d.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&a), names(&b), "listing and sizes differ");
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{n}: contents differ");
    }
}

/// Runs `cmd`, panics (with its output) unless it succeeds; stdout and stderr.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
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
