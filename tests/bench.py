#!/usr/bin/env python3
"""End-to-end benchmark: btt-mount (free, paid, own seeder, HTTP) vs rqbit vs btfs vs aria2c.

Run on demand as root (not part of the test suite):

    python3 tests/bench.py [--runs 5] [--quick]

Installs what it needs (tests/setup.sh btfs; rqbit RQBIT_VERSION from
crates.io into target/bench/rqbit), builds release, makes content
(a 256 MiB random file and a 1080p H.264 video, cached in target/bench/content)
and starts, inside a network namespace that has only loopback:
opentracker, one aria2c seeder per torrent (separate folders of hard links:
aria2c will not seed one file from two torrents), `btt seed` (free, our own
ceiling) and `btt seed --price` with a regtest bcoin node (the paid seller).

Filesystems, each on fresh mounts and data dirs with the page cache dropped:
  btt       btt-mount, swarm = tracker + aria2c (what btfs gets)
  btt-paid  btt-mount, the paid `btt seed` as its only peer
  btt-own   btt-mount, the free `btt seed` as its only peer
  btfs      btfs (libtorrent), swarm = tracker + aria2c
  btt-c0    btt with `--cache-size 0` (no piece cache: what the cache is worth;
            not in the default kinds)
  btt-http  btt-mount's own HTTP streaming (`--http`, `/stream/…`), same swarm
  rqbit     `rqbit download` (DHT, UPnP, LSD off), same swarm, read through
            its `/torrents/{info-hash}/stream/0` URL
and aria2c's own download of the 256 MiB torrent (the swarm's ceiling).
The two HTTP kinds get the same readers over HTTP: the first 64 KiB as a
Range request, curl for the sequential passes, the same 20 offsets as
Range requests on one keep-alive connection, ffprobe and ffmpeg on the URL.

Per run and filesystem: mount → first 64 KiB; sequential MB/s; re-read MB/s
with the page cache warm and dropped; 20 random 64 KiB reads on a fresh mount
(median, p90); on a fresh mount of the video: ffprobe, then seek to 60 s and
decode one frame; peak RSS and CPU seconds of the mount process.

Readers run in child processes with time-outs; a reader stuck in a FUSE read
gets the connection aborted through /sys/fs/fuse/connections/N/abort.
Writes target/bench/e2e.json and target/bench/e2e.md (the README table).
"""
import argparse
import base64
import http.client
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

# btt's DHT stays off in these runs (rqbit's and aria2c's are off too).
os.environ["BTT_NO_DHT"] = "true"

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "target", "bench")
REL = os.path.join(ROOT, "target", "release")
BTT, MOUNT = os.path.join(REL, "btt"), os.path.join(REL, "btt-mount")
PERF_DIR = os.path.join(ROOT, "target/bench/perf")
NS = "bttbench"
W = "/tmp/btt-bench"
BIG, BIG_SIZE = "big.bin", 256 << 20
VIDEO = "video.mp4"
# libtorrent (btfs) keeps one connection per IP and bans its own address: the
# aria2c seeders live on 127.0.0.2, high ports; mounts use 127.0.0.1.
SEED_IP = "127.0.0.2"
TRACKER_PORT, ARIA_PORT, OWN_PORT, PAID_PORT, RPC_PORT = 16969, 40000, 30010, 30020, 30030
RPC_KEY = "bench"
BURN = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
READ_TIMEOUT = 600
RQBIT_VERSION = "9.1.0"
RQBIT = os.path.join(OUT, "rqbit", "bin", "rqbit")
# Kinds read over HTTP rather than through a FUSE mount.
HTTP_KINDS = ("btt-http", "rqbit")


# ---------------------------------------------------------------- helpers

def ns(cmd):
    """Run in the benchmark's network namespace only: `ip netns exec` would
    also give the command a private mount namespace and hide FUSE mounts."""
    return ["nsenter", f"--net=/var/run/netns/{NS}", *cmd]


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def spawn(cmd, log):
    env = dict(os.environ, BTT_STATUS_DIR=f"{W}/status")
    return subprocess.Popen(ns(cmd), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            preexec_fn=os.setsid, env=env)


def stop(p, sig=signal.SIGTERM, t=30):
    if p is None or p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
        p.wait(t)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def wait_port(port, ip="127.0.0.1", t=120):
    end = time.time() + t
    while time.time() < end:
        probe = ns(["bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"])
        if subprocess.run(probe, stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{ip}:{port} never listened")


def drop_caches():
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")


def fuse_conn(mnt):
    """The FUSE connection number (device minor) of the mount at `mnt`, from
    mountinfo: stat() on a stuck mount could block."""
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        if f[4] == mnt:
            return int(f[2].split(":")[1])
    return None


def abort_mount(mnt):
    n = fuse_conn(mnt)
    if n is not None and os.path.exists(f"/sys/fs/fuse/connections/{n}/abort"):
        open(f"/sys/fs/fuse/connections/{n}/abort", "w").write("1")


def umount(mnt):
    subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
    if fuse_conn(mnt) is not None:
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def wait_reader(p, mnt, timeout=READ_TIMEOUT):
    """Waits for a reader process; on time-out aborts the FUSE connection so
    that neither it nor later readers hang in uninterruptible sleep. Returns
    stdout + stderr."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        abort_mount(mnt)
        p.kill()
        p.communicate(timeout=30)
        raise RuntimeError(f"{' '.join(p.args[:3])} timed out after {timeout} s on {mnt}")
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(p.args)} failed ({p.returncode}): {(err or '')[-500:]}")
    return out + (err or "")


def child(cmd, mnt):
    """Runs a reader to its end. Returns (seconds, its output)."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = wait_reader(p, mnt)
    return time.perf_counter() - t, out


def reader(*args):
    """This script as a reader child (timings measured inside the child)."""
    return [sys.executable, os.path.abspath(__file__), "--reader", *map(str, args)]


def seq_read(m):
    """MB/s of one pass of dd over the file, or of curl over its URL (dd: a
    Python loop tops out below the page cache's speed)."""
    if m.url:
        s, out = child(ns(["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{size_download}",
                           m.url]), m.mnt)
        n = int(out.strip())
    else:
        s, out = child(["dd", f"if={m.path}", "of=/dev/null", "bs=1M"], m.mnt)
        n = int(out.strip().splitlines()[-1].split()[0])
    assert n == BIG_SIZE, out
    return BIG_SIZE / s / 1e6


def run_reader(argv):
    kind, path = argv[0], argv[1]
    if kind == "first":
        # Started before the mount (so its own start-up is not counted): waits
        # for the file to appear, reads 64 KiB, prints the wall clock.
        end = time.time() + 120
        while not os.path.exists(path) and time.time() < end:
            time.sleep(0.001)
        fd = os.open(path, os.O_RDONLY)
        n = len(os.pread(fd, 65536, 0))
        print(json.dumps({"end": time.time(), "bytes": n}))
    elif kind == "first-url":
        # The same over HTTP: asks until the server answers (not listening
        # yet, or the torrent not added yet), then reads 64 KiB.
        end = time.time() + 120
        while True:
            try:
                n = len(http_get(path, 0, 65536, timeout=120))
                break
            except (OSError, http.client.HTTPException):
                if time.time() > end:
                    raise
                time.sleep(0.001)
        print(json.dumps({"end": time.time(), "bytes": n}))
    elif kind == "random-url":
        size, seed = int(argv[2]), int(argv[3])
        rnd = random.Random(seed)
        u = urllib.parse.urlsplit(path)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        lat = []
        for _ in range(20):
            off = rnd.randrange(0, size - 65536) // 4096 * 4096
            t = time.perf_counter()
            c.request("GET", u.path, headers={"Range": f"bytes={off}-{off + 65535}"})
            r = c.getresponse()
            assert r.status == 206 and len(r.read()) == 65536, r.status
            lat.append(time.perf_counter() - t)
        print(json.dumps({"lat": lat}))
    elif kind == "random":
        size, seed = int(argv[2]), int(argv[3])
        rnd = random.Random(seed)
        fd = os.open(path, os.O_RDONLY)
        lat = []
        for _ in range(20):
            off = rnd.randrange(0, size - 65536) // 4096 * 4096
            t = time.perf_counter()
            assert len(os.pread(fd, 65536, off)) == 65536
            lat.append(time.perf_counter() - t)
        print(json.dumps({"lat": lat}))


def http_get(url, off, n, timeout=30):
    """Bytes `off..off+n` of `url` (a Range request; 200 or 206)."""
    req = urllib.request.Request(url, headers={"Range": f"bytes={off}-{off + n - 1}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def http_ok(url):
    """Whether `url` answers 200 (from inside the namespace)."""
    return subprocess.run(ns(["curl", "-s", "-f", "-o", "/dev/null", url]),
                          stderr=subprocess.DEVNULL).returncode == 0


def proc_figures(pid):
    """(peak RSS MiB, CPU seconds) of a process and its threads."""
    try:
        st = open(f"/proc/{pid}/status").read()
        hwm = int([l for l in st.splitlines() if l.startswith("VmHWM")][0].split()[1]) / 1024
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return hwm, (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return None, None


def idle_seconds():
    """The machine's idle CPU seconds so far (all cores), from /proc/stat."""
    f = open("/proc/stat").readline().split()
    return (int(f[4]) + int(f[5])) / os.sysconf("SC_CLK_TCK")


def rpc(method, params):
    """A JSON-RPC call to the regtest node, from inside the namespace."""
    auth = "Basic " + base64.b64encode(f"x:{RPC_KEY}".encode()).decode()
    code = ("import sys,urllib.request as u;print(u.urlopen(u.Request(sys.argv[1],"
            "data=sys.argv[2].encode(),headers={'Authorization':sys.argv[3]})).read().decode())")
    body = json.dumps({"method": method, "params": params})
    out = sh(ns([sys.executable, "-c", code, f"http://127.0.0.1:{RPC_PORT}/", body, auth]),
             capture_output=True, text=True).stdout
    return json.loads(out)["result"]


def btt(home, *args):
    return sh(ns([BTT, "--home", home, *args]), capture_output=True, text=True).stdout


# ---------------------------------------------------------------- setup

def make_content():
    content = os.path.join(OUT, "content")
    os.makedirs(content, exist_ok=True)
    big = os.path.join(content, BIG)
    if not os.path.exists(big) or os.path.getsize(big) != BIG_SIZE:
        with open(big + ".tmp", "wb") as f:
            for _ in range(BIG_SIZE >> 20):
                f.write(os.urandom(1 << 20))
        os.rename(big + ".tmp", big)
    video = os.path.join(content, VIDEO)
    if not os.path.exists(video):
        # 1080p H.264 + AAC, 2 min, index (moov) at the end as a camera or a
        # non-faststart mux leaves it: the player must read the tail first.
        sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=24:duration=120",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=120",
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "8M", "-maxrate", "8M",
            "-bufsize", "16M", "-pix_fmt", "yuv420p", "-g", "48", "-c:a", "aac", "-shortest",
            video + ".tmp.mp4"])
        os.rename(video + ".tmp.mp4", video)
    return content


class Swarm:
    def __init__(self, content):
        self.procs = []
        self.content = content

    def start(self):
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
        sh(["ip", "netns", "add", NS])
        sh(ns(["ip", "link", "set", "lo", "up"]))
        shutil.rmtree(W, ignore_errors=True)
        os.makedirs(W)
        os.chmod(W, 0o755)
        self.torrents = {}
        for name in (BIG, VIDEO):
            t = f"{W}/{name}.torrent"
            ih = sh([BTT, "create", os.path.join(self.content, name), "-o", t, "-t",
                     f"http://127.0.0.1:{TRACKER_PORT}/announce"],
                    capture_output=True, text=True).stdout.split()[0]
            self.torrents[name] = (t, ih)
        os.makedirs(f"{W}/ot")
        with open(f"{W}/ot/whitelist", "w") as f:
            f.write("".join(ih + "\n" for _, ih in self.torrents.values()))
        for p in (f"{W}/ot", f"{W}/ot/whitelist"):
            os.chmod(p, 0o755)
        self.procs.append(spawn(["opentracker", "-i", "127.0.0.1", "-p", str(TRACKER_PORT), "-P",
                                 str(TRACKER_PORT), "-w", f"{W}/ot/whitelist"], f"{W}/ot.log"))
        wait_port(TRACKER_PORT)
        for i, name in enumerate((BIG, VIDEO)):
            d = f"{W}/aria-seed-{i}"
            os.makedirs(d)
            os.link(os.path.join(self.content, name), f"{d}/{name}")
            self.procs.append(spawn(
                ["aria2c", self.torrents[name][0], f"--dir={d}", "--seed-ratio=0.0",
                 "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                 "--enable-peer-exchange=false", f"--interface={SEED_IP}",
                 f"--bt-external-ip={SEED_IP}", "--check-integrity=true",
                 f"--listen-port={ARIA_PORT + i}", "--summary-interval=0",
                 "--console-log-level=warn"], f"{W}/aria-seed-{i}.log"))
        for i in range(2):
            wait_port(ARIA_PORT + i, SEED_IP)
        torrents = [t for t, _ in self.torrents.values()]
        self.own_seed = spawn([BTT, "seed", *torrents, "--data", self.content, "--listen",
                               f"127.0.0.1:{OWN_PORT}", "--no-trackers"], f"{W}/own-seed.log")
        self.procs.append(self.own_seed)
        wait_port(OWN_PORT)
        # The paid seller: a regtest chain and two wallets.
        node = os.path.join(ROOT, "tests/regtest/bcoin-node.js")
        self.node = spawn(["node", node, "--http-host=127.0.0.1", f"--http-port={RPC_PORT}",
                           f"--api-key={RPC_KEY}", "--no-wallet=true", "--index-tx=true"],
                          f"{W}/bcoin.log")
        self.procs.append(self.node)
        wait_port(RPC_PORT)
        time.sleep(0.5)
        rpc("generatetoaddress", [440, BURN])
        init = ["wallet", "init", "--network", "regtest", "--rpc", f"http://127.0.0.1:{RPC_PORT}",
                "--rpc-user", "x", "--rpc-password", RPC_KEY]
        self.buyer, seller = f"{W}/buyer", f"{W}/seller"
        btt(self.buyer, *init, "--expiry-blocks", "100")
        btt(seller, *init, "--zero-conf-limit", "10000000", "--min-expiry-blocks", "10")
        rpc("generatetoaddress", [3, btt(self.buyer, "wallet", "address").strip()])
        rpc("generatetoaddress", [100, BURN])
        self.paid_seed = spawn([BTT, "--home", seller, "seed", *torrents, "--data",
                                self.content, "--listen", f"127.0.0.1:{PAID_PORT}",
                                "--no-trackers", "--price", "1000sat/GiB",
                                *(["--credit", os.environ["BTT_BENCH_CREDIT"]]
                                  if os.environ.get("BTT_BENCH_CREDIT") else [])],
                               f"{W}/paid-seed.log")
        self.procs.append(self.paid_seed)
        wait_port(PAID_PORT)
        time.sleep(2)  # aria2c seeders announce

    def stop(self):
        for p in reversed(self.procs):
            stop(p)
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- one mount

_next_port = [31000]


def next_port():
    """A port not used before in this run (the namespace is ours alone)."""
    _next_port[0] += 1
    return _next_port[0]


class Mount:
    """One fresh mount of `name` by filesystem `kind` on a fresh data dir
    (for rqbit: a fresh `rqbit download` of it, read over HTTP)."""

    def __init__(self, swarm, kind, name, tag, first_reader=False):
        self.kind, self.swarm = kind, swarm
        self.mnt = f"{W}/mnt-{tag}"
        self.data = f"{W}/data-{tag}"
        for d in (self.mnt, self.data):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        self.path = f"{self.mnt}/{name}"
        torrent, ih = swarm.torrents[name]
        port_of = OWN_PORT if kind == "btt-own" else PAID_PORT
        self.url = self.ready_url = None
        if kind in HTTP_KINDS:
            http = f"127.0.0.1:{next_port()}"
        if kind == "rqbit":
            self.url = f"http://{http}/torrents/{ih}/stream/0"
            self.ready_url = f"http://{http}/torrents/{ih}"
            cmd = [RQBIT, "--disable-dht", "--disable-dht-persistence",
                   "--disable-upnp-port-forward", "--disable-lsd", "--ipv4-only",
                   "--listen-port", str(next_port()), "--http-api-listen-addr", http,
                   "download", torrent, "-o", self.data]
        elif kind == "btt-http":
            self.url = f"http://{http}/stream/{ih}/{name}"
            self.ready_url = f"http://{http}/api/v1/torrents/{ih}"
            cmd = [MOUNT, torrent, self.mnt, "--foreground", "--data-dir", self.data,
                   "--listen", "127.0.0.1:0", "--http", http]
        elif kind == "btfs":
            cmd = ["btfs", "-f", f"--data-directory={self.data}", "--min-port=20000",
                   "--max-port=20100", torrent, self.mnt]
        else:
            cmd = [MOUNT, torrent, self.mnt, "--foreground", "--data-dir", self.data,
                   "--listen", "127.0.0.1:0"]
            if kind == "btt-own":
                cmd += ["--peer", f"127.0.0.1:{port_of}", "--no-trackers"]
            elif kind == "btt-c0":
                cmd += ["--cache-size", "0"]
            elif kind == "btt-paid":
                cmd += ["--peer", f"127.0.0.1:{port_of}", "--no-trackers",
                        "--home", swarm.buyer, "--max-price", "2000sat/GiB",
                        "--budget", "90000sat", "--channel-size", "100000sat"]
        drop_caches()
        self.log = f"{W}/{tag}.log"
        self.first = None
        if first_reader:
            self.first = subprocess.Popen(self.reader("first"), stdout=subprocess.PIPE,
                                          text=True)
            time.sleep(0.5)
        self.t0 = time.time()
        self.p = spawn(cmd, self.log)
        end = time.time() + 120
        # btfs fills in its tree shortly after mounting: part of first byte.
        # An HTTP kind is ready once it knows the torrent (nothing read yet).
        ready = ((lambda: http_ok(self.ready_url)) if self.url
                 else (lambda: os.path.exists(self.path)))
        while not ready():
            if self.p.poll() is not None or time.time() > end:
                raise RuntimeError(f"{kind} did not mount; see {self.log}")
            time.sleep(0.002)

    def reader(self, what, *args):
        """This script's reader `what` on this mount's file or URL (an HTTP
        reader runs inside the namespace, where the server listens)."""
        if self.url:
            return ns(reader(f"{what}-url", self.url, *args))
        return reader(what, self.path, *args)

    def target(self):
        """What a player opens: the file, or its URL."""
        return self.url or self.path

    def first_byte(self):
        """Seconds from starting the mount to the first 64 KiB read."""
        j = json.loads(wait_reader(self.first, self.mnt))
        assert j["bytes"] == 65536, j
        return j["end"] - self.t0

    def figures(self):
        return proc_figures(self.p.pid)

    def status(self):
        """This mount's `btt status` report (written once a second)."""
        d = f"{W}/status"
        for fn in os.listdir(d) if os.path.isdir(d) else []:
            if fn.startswith(f"{self.p.pid}-") and fn.endswith(".json"):
                return json.load(open(os.path.join(d, fn)))
        return None

    def close(self):
        if self.first is not None and self.first.poll() is None:
            abort_mount(self.mnt)
            self.first.kill()
        umount(self.mnt)
        stop(self.p, signal.SIGTERM, 30)
        shutil.rmtree(self.data, ignore_errors=True)


def profile_start(tag):
    """With BTT_BENCH_PERF=1, a system-wide `perf record -g` (every process:
    mount, seeders, kernel) around one sequential read, for `perf report`."""
    if not os.environ.get("BTT_BENCH_PERF"):
        return None
    os.makedirs(PERF_DIR, exist_ok=True)
    p = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "999", "-o",
                          f"{PERF_DIR}/{tag}.data"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p


def profile_stop(p):
    if p is not None:
        p.send_signal(signal.SIGINT)
        p.wait(60)


def measure_stream(swarm, kind, run):
    r = {}
    m = Mount(swarm, kind, BIG, f"{kind}-{run}-a", first_reader=True)
    try:
        r["first_64k_s"] = m.first_byte()
        prof = profile_start(f"{kind}-{run}")
        others = {"btt-paid": [swarm.paid_seed, swarm.node],
                  "btt-own": [swarm.own_seed]}.get(kind, [])
        before = [proc_figures(p.pid)[1] or 0 for p in others]
        idle0 = idle_seconds()
        r["seq_MBps"] = seq_read(m)
        idle1 = idle_seconds()
        after = [proc_figures(p.pid)[1] or 0 for p in others]
        profile_stop(prof)
        if others:
            r["seller_cpu_s"] = after[0] - before[0]
        if kind == "btt-paid":
            r["node_cpu_s"] = after[1] - before[1]
        r["idle_share"] = (idle1 - idle0) / (os.cpu_count() * BIG_SIZE / 1e6 / r["seq_MBps"])
        r["rss_MiB"], r["cpu_s"] = m.figures()
        if kind == "btt-paid":
            time.sleep(1.5)  # the last payments, and a status write
            st = m.status() or {"money": {}}
            gib = BIG_SIZE / (1 << 30)
            r["paid_sat_per_GiB"] = st["money"].get("spent_msat", 0) / 1000 / gib
            r["payments_per_GiB"] = st["money"].get("payments", 0) / gib
            r["pay_wire_bytes_per_GiB"] = st["money"].get("pay_wire_bytes", 0) / gib
            r["rejected"] = st.get("rejected", 0)
        r["reread_warm_MBps"] = seq_read(m)
        drop_caches()
        r["reread_cold_MBps"] = seq_read(m)
        rss, _ = m.figures()
        r["rss_MiB"] = max(r["rss_MiB"] or 0, rss or 0)
    finally:
        m.close()
    m = Mount(swarm, kind, BIG, f"{kind}-{run}-b")
    try:
        child(m.reader("first"), m.mnt)
        _, out = child(m.reader("random", BIG_SIZE, run), m.mnt)
        lat = sorted(json.loads(out)["lat"])
        r["random_median_ms"] = statistics.median(lat) * 1e3
        r["random_p90_ms"] = lat[17] * 1e3  # 18th of 20
        rss, _ = m.figures()
        r["rss_MiB"] = max(r["rss_MiB"], rss or 0)
    finally:
        m.close()
    m = Mount(swarm, kind, VIDEO, f"{kind}-{run}-v")
    try:
        # A player's open: probe (reads the head and the moov at the tail),
        # then a seek into the middle and one decoded frame.
        r["ffprobe_s"], _ = child(ns(["ffprobe", "-v", "error", "-show_format",
                                      "-show_streams", m.target()]), m.mnt)
        r["seek_decode_s"], _ = child(ns(["ffmpeg", "-v", "error", "-ss", "60", "-i",
                                          m.target(), "-frames:v", "1", "-f", "null", "-"]),
                                      m.mnt)
        rss, _ = m.figures()
        r["rss_MiB"] = max(r["rss_MiB"], rss or 0)
    finally:
        m.close()
    return r


def aria2c_download(swarm, run):
    d = f"{W}/aria-dl-{run}"
    shutil.rmtree(d, ignore_errors=True)
    drop_caches()
    t = time.perf_counter()
    sh(ns(["aria2c", swarm.torrents[BIG][0], f"--dir={d}", "--seed-time=0", "--enable-dht=false",
           "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
           f"--listen-port={ARIA_PORT + 10 + run}", "--summary-interval=0",
           "--console-log-level=warn", "--file-allocation=none"]), stdout=subprocess.DEVNULL)
    s = time.perf_counter() - t
    shutil.rmtree(d, ignore_errors=True)
    return {"seq_MBps": BIG_SIZE / s / 1e6}


# ---------------------------------------------------------------- report

METRICS = [
    ("first_64k_s", "mount → first 64 KiB (s)", 3),
    ("seq_MBps", "sequential read (MB/s)", 0),
    ("reread_warm_MBps", "re-read, page cache warm (MB/s)", 0),
    ("reread_cold_MBps", "re-read, page cache dropped (MB/s)", 0),
    ("random_median_ms", "20 random 64 KiB reads, median (ms)", 1),
    ("random_p90_ms", "20 random 64 KiB reads, p90 (ms)", 1),
    ("ffprobe_s", "ffprobe of the 1080p mp4 (s)", 2),
    ("seek_decode_s", "then seek to 60 s + decode a frame (s)", 2),
    ("rss_MiB", "peak RSS (MiB)", 0),
    ("cpu_s", "CPU for mount + sequential read (s)", 2),
    ("seller_cpu_s", "CPU of the btt seeder during the sequential read (s)", 2),
    ("node_cpu_s", "CPU of the chain node during the sequential read (s)", 2),
    ("idle_share", "machine idle during the sequential read (share of 2 cores)", 2),
    ("paid_sat_per_GiB", "paid: sat per GiB read (price 1000 sat/GiB)", 0),
    ("payments_per_GiB", "paid: payments per GiB", 0),
    ("pay_wire_bytes_per_GiB", "paid: payment bytes on the wire per GiB", 0),
    ("rejected", "paid: requests the seller rejected", 0),
]
KINDS = ["btt", "btt-paid", "btt-own", "btt-http", "rqbit", "btfs"]
# Measured only when asked for with --kinds.
EXTRA_KINDS = ["btt-c0"]
# Ratio columns: (numerator, denominator) kinds.
RATIOS = [("btt", "rqbit"), ("btt-http", "rqbit"), ("btt", "btfs")]


def stats(rows, key):
    xs = [r[key] for r in rows if r.get(key) is not None]
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def fmt(x, d):
    return "–" if x is None else f"{x:.{d}f}"


def report(results, meta):
    shown = KINDS + [k for k in EXTRA_KINDS if results.get(k)]
    s = {k: {m: stats(results[k], m) for m, _, _ in METRICS} for k in shown}
    s["aria2c"] = {"seq_MBps": stats(results["aria2c"], "seq_MBps")}
    heads = [f"{a}/{b}" for a, b in RATIOS]
    lines = [f"| metric | {' | '.join(shown)} | {' | '.join(heads)} |",
             "|---|" + "---|" * (len(shown) + len(RATIOS))]
    for m, label, d in METRICS:
        cells = []
        for k in shown:
            v = s[k][m]
            cells.append("–" if v is None else f"{fmt(v['median'], d)} ({fmt(v['min'], d)}–{fmt(v['max'], d)})")
        for a, b in RATIOS:
            x, y = s[a][m], s[b][m]
            cells.append(f"{x['median'] / y['median']:.2f}" if x and y and y["median"] else "–")
        if any(c != "–" for c in cells):
            lines.append(f"| {label} | {' | '.join(cells)} |")
    ar = s["aria2c"]["seq_MBps"]
    if ar:
        lines.append(f"| aria2c's own download of the same torrent (MB/s) | {fmt(ar['median'], 0)} "
                     f"({fmt(ar['min'], 0)}–{fmt(ar['max'], 0)}) |" + " |" * (len(shown) + len(RATIOS) - 1))
    def ratio(a, b):
        x = s[a]["seq_MBps"] if a in s else None
        y = s[b]["seq_MBps"] if b != "aria2c" else ar
        return x["median"] / y["median"] if x and y and y["median"] else None
    ratios = {
        "btt_seq_over_aria2c": ratio("btt", "aria2c"),
        "btt_seq_over_btfs": ratio("btt", "btfs"),
        "paid_seq_over_own_free": ratio("btt-paid", "btt-own"),
        "btt_seq_over_rqbit": ratio("btt", "rqbit"),
    }
    lines.append("")
    lines.append(f"Sequential, ratios of medians: btt / aria2c's download "
                 f"{fmt(ratios['btt_seq_over_aria2c'], 2)}; btt / btfs "
                 f"{fmt(ratios['btt_seq_over_btfs'], 1)}; paid / free from a btt seeder "
                 f"{fmt(ratios['paid_seq_over_own_free'], 2)}; btt / rqbit "
                 f"{fmt(ratios['btt_seq_over_rqbit'], 2)}.")
    md = "\n".join(lines)
    json.dump({"meta": meta, "summary": s, "ratios": ratios, "runs": results},
              open(f"{OUT}/e2e.json", "w"), indent=1)
    open(f"{OUT}/e2e.md", "w").write(md + "\n")
    print(md)


def machine():
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
    mem = int(open("/proc/meminfo").readline().split()[1]) // (1 << 20)
    return {"cpu": cpu[0] if cpu else platform.processor(), "cores": os.cpu_count(),
            "mem_GiB": mem, "kernel": platform.release(),
            "date": time.strftime("%Y-%m-%d"),
            "btfs": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "btfs"],
                                   capture_output=True, text=True).stdout,
            "aria2c": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "aria2"],
                                     capture_output=True, text=True).stdout,
            "rqbit": RQBIT_VERSION}


def install_rqbit():
    """rqbit RQBIT_VERSION from crates.io (its lock file; TLS by rustls, no
    web UI, no postgres) into target/bench/rqbit, once."""
    if os.path.exists(RQBIT):
        return
    sh(["cargo", "install", "rqbit", "--version", RQBIT_VERSION, "--locked",
        "--no-default-features", "--features", "default-tls", "--root",
        os.path.dirname(os.path.dirname(RQBIT))])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        return run_reader(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset")
    ap.add_argument("--quick", action="store_true", help="skip setup and the release build")
    a = ap.parse_args()
    if os.getuid() != 0:
        sys.exit("run as root: mounts, network namespace, drop_caches")
    if not a.quick:
        sh(["bash", os.path.join(ROOT, "tests/setup.sh"), "btfs"])
        if "rqbit" in a.kinds.split(","):
            install_rqbit()
        sh(["cargo", "build", "--release", "--bins", "--quiet"], cwd=ROOT)
    os.makedirs(OUT, exist_ok=True)
    content = make_content()
    swarm = Swarm(content)
    kinds = a.kinds.split(",")
    results = {k: [] for k in KINDS + EXTRA_KINDS + ["aria2c"]}
    try:
        swarm.start()
        for run in range(a.runs):
            results["aria2c"].append(aria2c_download(swarm, run))
            print(f"run {run + 1}: aria2c {results['aria2c'][-1]['seq_MBps']:.0f} MB/s", flush=True)
            for k in kinds:
                results[k].append(measure_stream(swarm, k, run))
                print(f"run {run + 1}: {k} " + json.dumps(
                    {m: round(v, 3) for m, v in results[k][-1].items() if v is not None}), flush=True)
    finally:
        swarm.stop()
    report(results, machine())


if __name__ == "__main__":
    sys.exit(main())
