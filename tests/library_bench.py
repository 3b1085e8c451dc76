#!/usr/bin/env python3
"""How a library mount's cost grows with its torrents: N torrents of one
256 KiB file each (N = 10, 100, 1000 by default) dropped in the watch
folder of `btt-mount --library`, all seeded by one `btt seed`.

Run on demand as root (not part of the test suite):

    python3 tests/library_bench.py [--no-build] [--counts 10,100] [--runs 2] [--bin DIR]

Everything runs inside a network namespace with only loopback (no DHT, no
trackers: the seeder is given with --peer). Per case: seconds from the
mount's start until all N entries are listed, RSS then, seconds to read
every file once (`cat`, one after another), btt-mount's CPU for that read,
and its peak RSS; then both processes' CPU while nothing is read.

LIBRARY_BENCH_WRAP="heaptrack -o FILE" runs the mount under a profiler;
LIBRARY_BENCH_HOLD=SECONDS keeps each case running that long at its end.
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
NS, W = "bttlib", "/tmp/btt-library"
FILE = 256 << 10
IDLE = 5


def ns(cmd):
    return in_netns(NS, cmd)


def spawn(cmd, log, env=None):
    return spawn_in(NS, cmd, log, env)


def exit_time(p, end):
    """Seconds from `end()` (an unmount, a SIGTERM) until `p` exits (60 at most)."""
    t = time.perf_counter()
    end()
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        pass
    return time.perf_counter() - t


def make(n):
    """N files and their torrents under W/n{N}; the torrents' paths."""
    d = f"{W}/n{n}"
    os.makedirs(f"{d}/content")
    os.makedirs(f"{d}/torrents")
    out = []
    for i in range(n):
        f = f"{d}/content/f{i:05}.bin"
        with open(f, "wb") as h:
            h.write(os.urandom(FILE))
        t = f"{d}/torrents/f{i:05}.torrent"
        subprocess.run([os.path.join(REL, "btt"), "create", f, "-o", t], check=True,
                       capture_output=True)
        out.append(t)
    return d, out


def case(n, d, torrents, port, tag):
    btt, mount = os.path.join(REL, "btt"), os.path.join(REL, "btt-mount")
    c = f"{W}/{tag}"
    os.makedirs(f"{c}/mnt")
    shutil.copytree(f"{d}/torrents", f"{c}/watch")
    env = {"BTT_NO_DHT": "true", "HOME": c, "XDG_DATA_HOME": f"{c}/xdg"}
    seed = spawn([btt, "seed", *torrents, "--data", f"{d}/content", "--listen",
                  f"127.0.0.1:{port}", "--no-trackers", "--seed-unverified"],
                 f"{c}/seed.log", env)
    try:
        end = time.time() + 120
        while f":{port} " not in subprocess.run(ns(["ss", "-Hltn"]), capture_output=True,
                                                text=True).stdout:
            if time.time() > end:
                tail = open(f"{c}/seed.log", errors="replace").read()[-2000:]
                raise RuntimeError(f"the seeder did not listen:\n{tail}")
            time.sleep(0.2)
        # The seeder loads its torrents after it listens: the mount's
        # figures are taken once it has settled (under a third of a core).
        end = time.time() + 120
        while time.time() < end:
            c0 = cpu_s(str(seed.pid))
            time.sleep(0.5)
            if cpu_s(str(seed.pid)) - c0 < 0.15:
                break
        t0 = time.perf_counter()
        wrap = os.environ.get("LIBRARY_BENCH_WRAP", "").split()
        m = spawn([*wrap, mount, "--library", f"{c}/mnt", "--watch", f"{c}/watch", "--foreground",
                   "--no-trackers", "--data-dir", f"{c}/data", "--listen", "127.0.0.1:0",
                   "--peer", f"127.0.0.1:{port}"], f"{c}/mount.log", env)
        try:
            end = time.time() + 300
            while not os.path.ismount(f"{c}/mnt") or len(os.listdir(f"{c}/mnt")) < n:
                if time.time() > end or m.poll() is not None:
                    raise RuntimeError(f"not all {n} torrents showed; see {c}/mount.log")
                time.sleep(0.01)
            listed = time.perf_counter() - t0
            pid = mount_pid(f"{c}/mnt")
            rss_listed = status(pid, "VmRSS") / 1024
            before = cpu_s(pid)
            t = time.perf_counter()
            for name in sorted(os.listdir(f"{c}/mnt")):
                subprocess.run(["cat", f"{c}/mnt/{name}"], stdout=subprocess.DEVNULL,
                               check=True)
            read = time.perf_counter() - t
            cpu = cpu_s(pid) - before
            peak = status(pid, "VmHWM") / 1024
            # What N torrents cost while nothing is read: both processes'
            # CPU over IDLE seconds, as a share of one core.
            seed_pid = str(seed.pid)
            idle0 = (cpu_s(pid), cpu_s(seed_pid))
            time.sleep(IDLE)
            idle = ((cpu_s(pid) - idle0[0]) / IDLE, (cpu_s(seed_pid) - idle0[1]) / IDLE)
            hold = float(os.environ.get("LIBRARY_BENCH_HOLD", "0"))
            if hold:
                print(f"holding {hold:.0f} s: mount {pid}, seeder {seed_pid}", flush=True)
                time.sleep(hold)
            mount_exit = exit_time(m, lambda: subprocess.run(["fusermount3", "-u", f"{c}/mnt"]))
        finally:
            stop(m)
        seed_exit = exit_time(seed, lambda: seed.send_signal(15))
    finally:
        stop(seed)
    shutil.rmtree(c, ignore_errors=True)
    return {"listed_s": listed, "rss_listed_MiB": rss_listed, "read_s": read,
            "read_MBps": n * FILE / read / 1e6, "cpu_s": cpu, "peak_MiB": peak,
            "idle_mount": idle[0], "idle_seed": idle[1],
            "mount_exit_s": mount_exit, "seed_exit_s": seed_exit}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--counts", default="10,100,1000")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--bin", help="directory of btt and btt-mount (default target/release)")
    a = ap.parse_args()
    global REL
    if a.bin:
        REL, a.no_build = os.path.abspath(a.bin), True
    counts = [int(x) for x in a.counts.split(",")]
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    fresh_netns(NS)
    shutil.rmtree(W, ignore_errors=True)
    rows = {n: [] for n in counts}
    try:
        made = {n: make(n) for n in counts}
        port = 21000  # below the ephemeral range the connections draw from
        for run in range(a.runs):
            for n in counts:
                port += 1
                r = case(n, *made[n], port, f"r{run}-n{n}")
                rows[n].append(r)
                print(f"run {run + 1}: {n} torrents: listed after {r['listed_s']:.2f} s "
                      f"(RSS {r['rss_listed_MiB']:.0f} MiB), all read in {r['read_s']:.2f} s, "
                      f"CPU {r['cpu_s']:.2f} s, peak RSS {r['peak_MiB']:.0f} MiB, idle CPU "
                      f"{100 * r['idle_mount']:.1f} % / {100 * r['idle_seed']:.1f} %, exit after "
                      f"{r['mount_exit_s']:.2f} / {r['seed_exit_s']:.2f} s", flush=True)
    finally:
        drop_netns(NS)
        shutil.rmtree(W, ignore_errors=True)
    print("\n| torrents | all listed after (s) | RSS then (MiB) | every file read once (s) "
          "| btt-mount CPU for it (s) | peak RSS (MiB) | idle CPU, mount / seeder (% of a core) |")
    print("|---|---|---|---|---|---|---|")
    for n in counts:
        def pct(k):
            return f"{100 * statistics.median(r[k] for r in rows[n]):.1f}"

        def cell(k, f):
            v = [r[k] for r in rows[n]]
            return f"{statistics.median(v):{f}} ({min(v):{f}}–{max(v):{f}})"
        print(f"| {n} | {cell('listed_s', '.2f')} | {cell('rss_listed_MiB', '.0f')} | "
              f"{cell('read_s', '.2f')} | {cell('cpu_s', '.2f')} | {cell('peak_MiB', '.0f')} | "
              f"{pct('idle_mount')} / {pct('idle_seed')} |")


if __name__ == "__main__":
    main()
