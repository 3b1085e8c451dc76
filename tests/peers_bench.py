#!/usr/bin/env python3
"""How a mount's cost grows with its peers: btt-mount reads a 256 MiB file
from N `btt seed` processes at once (N = 1, 4, 16, 64, 200 by default).

Run on demand as root (not part of the test suite):

    python3 tests/peers_bench.py [--no-build] [--peers 1,4,16] [--runs 2]

Everything runs inside a network namespace with only loopback (no DHT, no
trackers: every seeder is given with --peer). The seeders serve without
re-hashing the file (--seed-unverified), each with a home of its own. Per
case: seconds for `cat` of the file, MB/s, btt-mount's CPU (user + system)
per GiB read, its peak RSS, and the TCP connections it had open at the end
of the read. Prints one line per case and a table.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import time

from benchlib import status, cpu_s, mount_pid, drop_netns, fresh_netns, in_netns, spawn_in, stop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
NS, W = "bttpeers", "/tmp/btt-peers"
SIZE = 256 << 20


def ns(cmd):
    return in_netns(NS, cmd)


def spawn(cmd, log, env=None):
    return spawn_in(NS, cmd, log, env)


def listening(ports):
    """How many of `ports` listen in the namespace."""
    out = subprocess.run(ns(["ss", "-Hltn"]), capture_output=True, text=True).stdout
    up = {int(l.split()[3].rsplit(":", 1)[1]) for l in out.splitlines() if l.strip()}
    return len(set(ports) & up)


def tcp_conns(pid):
    """Established TCP connections of `pid` (its sockets' inodes looked up
    in the namespace's table)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            t = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if t.startswith("socket:["):
            inodes.add(t[8:-1])
    n = 0
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        n += sum(1 for l in lines if l.split()[3] == "01" and l.split()[9] in inodes)
    return n


def case(n, torrent, port0, tag):
    """One read from `n` seeders; returns the figures."""
    btt, mount = os.path.join(REL, "btt"), os.path.join(REL, "btt-mount")
    d = f"{W}/{tag}"
    os.makedirs(f"{d}/mnt")
    seeds, ports = [], list(range(port0, port0 + n))
    try:
        for k, port in enumerate(ports):
            home = f"{d}/seed-home-{k}"
            os.makedirs(home)
            seeds.append(spawn([btt, "seed", torrent, "--data", f"{W}/content", "--listen",
                                f"127.0.0.1:{port}", "--no-trackers", "--seed-unverified"],
                               f"{d}/seed-{k}.log",
                               {"BTT_NO_DHT": "true", "HOME": home,
                                "XDG_DATA_HOME": f"{home}/data"}))
        end = time.time() + 120
        while listening(ports) < n:
            if time.time() > end:
                raise RuntimeError(f"only {listening(ports)} of {n} seeders listen; see {d}")
            time.sleep(0.2)
        args = [mount, torrent, f"{d}/mnt", "--foreground", "--no-trackers", "--data-dir",
                f"{d}/data", "--listen", "127.0.0.1:0", "--max-peers", str(n + 10)]
        for port in ports:
            args += ["--peer", f"127.0.0.1:{port}"]
        m = spawn(args, f"{d}/mount.log", {"BTT_NO_DHT": "true"})
        try:
            for _ in range(100):
                if os.path.ismount(f"{d}/mnt"):
                    break
                time.sleep(0.1)
            pid = mount_pid(f"{d}/mnt")
            # Let the connections be made before the read starts.
            end = time.time() + 30
            while tcp_conns(pid) < n and time.time() < end:
                time.sleep(0.1)
            before = cpu_s(pid)
            t = time.perf_counter()
            subprocess.run(["cat", f"{d}/mnt/big.bin"], stdout=subprocess.DEVNULL, check=True)
            secs = time.perf_counter() - t
            cpu = cpu_s(pid) - before
            conns = tcp_conns(pid)
            peak = status(pid, "VmHWM") / 1024
            subprocess.run(["fusermount3", "-u", f"{d}/mnt"])
        finally:
            stop(m)
    finally:
        for s in seeds:
            stop(s)
    shutil.rmtree(d, ignore_errors=True)
    return {"secs": secs, "MBps": SIZE / secs / 1e6, "cpu_per_GiB": cpu * (1 << 30) / SIZE,
            "rss_MiB": peak, "conns": conns}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--peers", default="1,4,16,64,200")
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    counts = [int(x) for x in a.peers.split(",")]
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    fresh_netns(NS)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(f"{W}/content")
    rows = {n: [] for n in counts}
    try:
        with open(f"{W}/content/big.bin", "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
        torrent = f"{W}/big.torrent"
        subprocess.run([os.path.join(REL, "btt"), "create", f"{W}/content/big.bin", "-o",
                        torrent], check=True, capture_output=True)
        port = 32000
        for run in range(a.runs):
            for n in counts:
                r = case(n, torrent, port, f"r{run}-n{n}")
                port += n
                rows[n].append(r)
                print(f"run {run + 1}: {n} peers: {r['secs']:.2f} s, {r['MBps']:.0f} MB/s, "
                      f"CPU {r['cpu_per_GiB']:.2f} s/GiB, peak RSS {r['rss_MiB']:.0f} MiB, "
                      f"{r['conns']} connections", flush=True)
    finally:
        drop_netns(NS)
        shutil.rmtree(W, ignore_errors=True)
    print("\n| seeders | MB/s | btt-mount CPU per GiB (s) | peak RSS (MiB) | connections |")
    print("|---|---|---|---|---|")
    for n in counts:
        med = lambda k: statistics.median(r[k] for r in rows[n])
        rng = lambda k, f: f"{min(r[k] for r in rows[n]):{f}}–{max(r[k] for r in rows[n]):{f}}"
        print(f"| {n} | {med('MBps'):.0f} ({rng('MBps', '.0f')}) | "
              f"{med('cpu_per_GiB'):.2f} ({rng('cpu_per_GiB', '.2f')}) | "
              f"{med('rss_MiB'):.0f} ({rng('rss_MiB', '.0f')}) | {med('conns'):.0f} |")


if __name__ == "__main__":
    main()
