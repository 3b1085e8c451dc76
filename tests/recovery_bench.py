#!/usr/bin/env python3
"""How soon a read resumes once its only seeder is back. Run on demand as
root (release builds):

    python3 tests/recovery_bench.py [--away 20] [--runs 3] [--bin DIR]...

A mount reads a 64 MiB file from `btt seed` with `cat`; after the first
MiB the seeder is killed, and restarted `--away` seconds later. Printed:
seconds from the restarted seeder listening to the reader's next byte.
Builds given with `--bin` take turns run by run. Everything runs inside
a network namespace with only loopback.
"""
import argparse
import os
import shutil
import socket
import subprocess
import time

from benchlib import stop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NS, W = "bttrecov", "/tmp/btt-recovery"
SIZE = 64 << 20


def ns(cmd):
    return ["nsenter", f"--net=/var/run/netns/{NS}", *cmd]


def spawn(cmd, log, env=None):
    return subprocess.Popen(ns(cmd), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, **(env or {})})


def listening(port):
    """Whether something in the namespace accepts on 127.0.0.1:port."""
    r = subprocess.run(ns(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]),
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0


def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def one(bindir, run, away):
    btt, mount = os.path.join(bindir, "btt"), os.path.join(bindir, "btt-mount")
    d = f"{W}/{run}-{abs(hash(bindir)) % 1000}"
    os.makedirs(f"{d}/mnt")
    t = f"{d}/big.torrent"
    subprocess.run([btt, "create", f"{W}/content/big.bin", "-o", t, "--piece-size", "256KiB"],
                   check=True, capture_output=True)
    port = 32000 + run
    env = {"BTT_NO_DHT": "true"}
    seed_cmd = [btt, "seed", t, "--data", f"{W}/content", "--listen", f"127.0.0.1:{port}",
                "--no-trackers"]
    seed = spawn(seed_cmd, f"{d}/seed1.log", env)
    while not listening(port):
        time.sleep(0.05)
    m = spawn([mount, t, f"{d}/mnt", "--foreground", "--no-trackers", "--data-dir", f"{d}/data",
               "--peer", f"127.0.0.1:{port}", "--listen", "127.0.0.1:0",
               "--max-down", "8MiB"], f"{d}/mount.log", env)
    for _ in range(100):
        if os.path.ismount(f"{d}/mnt"):
            break
        time.sleep(0.1)
    out = f"{d}/out.bin"
    cat = subprocess.Popen(["dd", f"if={d}/mnt/big.bin", f"of={out}", "bs=64k"],
                           stderr=subprocess.DEVNULL)
    while size(out) < (1 << 20):
        time.sleep(0.01)
    stop(seed)
    time.sleep(1)
    held = size(out)
    time.sleep(away - 1)
    seed = spawn(seed_cmd, f"{d}/seed2.log", env)
    while not listening(port):
        time.sleep(0.01)
    back = time.perf_counter()
    while size(out) <= held and cat.poll() is None:
        time.sleep(0.01)
    secs = time.perf_counter() - back
    cat.kill()
    subprocess.run(["fusermount3", "-u", "-z", f"{d}/mnt"])
    stop(m)
    stop(seed)
    return secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--away", type=float, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", action="append")
    a = ap.parse_args()
    bins = [os.path.abspath(b) for b in (a.bin or [os.path.join(ROOT, "target", "release")])]
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(ns(["ip", "link", "set", "lo", "up"]), check=True)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(f"{W}/content")
    try:
        with open(f"{W}/content/big.bin", "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
        res = {b: [] for b in bins}
        for run in range(a.runs):
            for i, b in enumerate(bins):
                s = one(b, run * len(bins) + i, a.away)
                res[b].append(s)
                print(f"{b}: resumed {s:.2f} s after the seeder was back", flush=True)
        for b, v in res.items():
            v.sort()
            print(f"{b}: median {v[len(v) // 2]:.2f} s (min {v[0]:.2f}, max {v[-1]:.2f})")
    finally:
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
