#!/usr/bin/env python3
"""The web face's figures, in one run of the release build, on demand:

    python3 tests/web_bench.py [--no-build] [--runs N]

1. A 256 MiB file from `btt seed` on 127.0.0.1: the first 64 KiB and the
   whole file, sequentially, through a fresh mount's FUSE path and through a
   fresh mount's `/stream/` URL (N runs each, medians), and HTTP's ratio to
   FUSE.
2. The mount's CPU (utime + stime) over 20 s with the data held and nothing
   read: with no page open, then with one client subscribed to the event
   stream (what an open page costs).
3. Resident memory of a library mount holding 1 and 100 torrents (1 MiB
   each, dropped into its watch folder; no peers).

No DHT, no trackers: nothing leaves 127.0.0.1.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
import urllib.request

from benchlib import stop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
BTT, MOUNT = os.path.join(REL, "btt"), os.path.join(REL, "btt-mount")
W = "/tmp/btt-web-bench"
SIZE = 256 << 20
ENV = {**os.environ, "BTT_NO_DHT": "true", "BTT_STATUS_DIR": f"{W}/status"}


def spawn(cmd, log):
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env=ENV)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(f, t=60):
    end = time.time() + t
    while time.time() < end:
        v = f()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit("timed out")


def mounted(mnt):
    return any(l.split()[4] == mnt for l in open("/proc/self/mountinfo"))


class Mount:
    def __init__(self, name, args):
        self.dir = f"{W}/{name}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.mnt = f"{self.dir}/mnt"
        os.makedirs(self.mnt)
        self.http = f"127.0.0.1:{free_port()}"
        self.p = spawn([MOUNT, *args, "--foreground", "--data-dir", f"{self.dir}/data",
                        "--listen", "127.0.0.1:0", "--no-trackers", "--http", self.http],
                       f"{self.dir}/mount.log")
        wait_for(lambda: mounted(self.mnt))

    def cpu(self):
        f = open(f"/proc/{self.p.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self):
        for line in open(f"/proc/{self.p.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0

    def close(self):
        stop(self.p)
        if mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt])


def read_fuse(path, n=None):
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        if n:
            got = f.read(n)
            while len(got) < n:
                got += f.read(n - len(got))
        else:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - t0


def read_http(url, n=None):
    req = urllib.request.Request(url)
    if n:
        req.add_header("Range", f"bytes=0-{n - 1}")
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=300) as r:
        while r.read(1 << 20):
            pass
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(f"{W}/content/film")
    os.makedirs(f"{W}/status")
    procs, mounts = [], []
    try:
        with open(f"{W}/content/film/film.bin", "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
        t = f"{W}/film.torrent"
        subprocess.run([BTT, "create", f"{W}/content/film", "-o", t], check=True, capture_output=True)
        port = free_port()
        procs.append(spawn([BTT, "seed", t, "--data", f"{W}/content", "--listen",
                            f"127.0.0.1:{port}", "--no-trackers", "--no-http"], f"{W}/seed.log"))
        time.sleep(3)
        ih = subprocess.run([BTT, "create", f"{W}/content/film", "-o", f"{W}/again.torrent"],
                            capture_output=True, text=True).stdout.split()[0]
        rows = {"fuse": [], "http": []}
        for run in range(a.runs):
            for how in ("fuse", "http"):
                m = Mount(f"{how}{run}", [t, f"{W}/{how}{run}/mnt", "--peer", f"127.0.0.1:{port}"])
                mounts.append(m)
                path = f"{m.mnt}/film/film.bin"
                url = f"http://{m.http}/stream/{ih}/film.bin"
                first = read_fuse(path, 65536) if how == "fuse" else read_http(url, 65536)
                whole = read_fuse(path) if how == "fuse" else read_http(url)
                rows[how].append((first, SIZE / whole / 1e6))
                if how == "http" and run == 0:
                    # The page's cost, data held and nothing read.
                    time.sleep(2)
                    c0 = m.cpu()
                    time.sleep(20)
                    idle = m.cpu() - c0
                    sub = subprocess.Popen(["curl", "-s", "-N", f"http://{m.http}/api/v1/events"],
                                           stdout=subprocess.DEVNULL)
                    time.sleep(2)
                    c0 = m.cpu()
                    time.sleep(20)
                    page = m.cpu() - c0
                    sub.kill()
                    rows["cpu"] = (idle / 20 * 100, page / 20 * 100)
                m.close()
                mounts.remove(m)
        med = lambda how, i: statistics.median(r[i] for r in rows[how])
        for how in ("fuse", "http"):
            print(f"{how}: first 64 KiB {med(how, 0) * 1000:.1f} ms, sequential {med(how, 1):.0f} MB/s "
                  f"(median of {a.runs})")
        print(f"HTTP/FUSE: first 64 KiB {med('http', 0) / med('fuse', 0):.2f}x the time, "
              f"sequential {med('http', 1) / med('fuse', 1):.2f}x the rate")
        idle, page = rows["cpu"]
        print(f"btt-mount CPU, data held, nothing read: {idle:.2f} % without a page, "
              f"{page:.2f} % with one page subscribed")

        # A library of 1, then 100 torrents.
        os.makedirs(f"{W}/many")
        for i in range(100):
            d = f"{W}/many/t{i:03}"
            os.makedirs(d)
            with open(f"{d}/f.bin", "wb") as f:
                f.write(os.urandom(1 << 20))
            subprocess.run([BTT, "create", d, "-o", f"{W}/many/t{i:03}.torrent"], check=True,
                           capture_output=True)
        for n in (1, 100):
            watch = f"{W}/watch{n}"
            os.makedirs(watch)
            m = Mount(f"lib{n}", ["--library", f"{W}/lib{n}/mnt", "--watch", watch])
            mounts.append(m)
            for i in range(n):
                shutil.copy(f"{W}/many/t{i:03}.torrent", watch)
            wait_for(lambda: len(os.listdir(m.mnt)) == n, 120)
            time.sleep(5)
            print(f"library of {n} torrents: RSS {m.rss_mib():.1f} MiB")
            m.close()
            mounts.remove(m)
    finally:
        for m in mounts:
            m.close()
        for p in procs:
            stop(p)


if __name__ == "__main__":
    main()
