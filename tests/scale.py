#!/usr/bin/env python3
"""Torrents with many files: what a mount costs at 10^4, 10^5 and 10^6 files.

Run on demand as root (not part of the suite; release build):

    python3 tests/scale.py [--counts 10000,100000,1000000]

Each torrent has N one-byte files in one directory (the shape of the issue
that found it: 10^6 files, a 31 MB .torrent) and no peers: a mount must
list and stat it without the network. Per N: the mount's start-up (until
it says it is mounted), its RSS after mounting and its peak, `ls` of the
directory (sorted, as a user types it), `ls -f` (unsorted), `find`, and a
`stat` of the last file. Prints a Markdown table (the README's).
"""
import argparse
import hashlib
import os

import shutil
import subprocess
import sys
import time

# btt's DHT stays off in these runs.
os.environ["BTT_NO_DHT"] = "true"

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MOUNT = os.path.join(ROOT, "target", "release", "btt-mount")
W = "/tmp/btt-scale"


def torrent(n, path):
    """N one-byte files f0000000… in one directory, 16 KiB pieces."""
    piece = 16384
    data = b"x" * n
    pieces = b"".join(hashlib.sha1(data[i:i + piece]).digest() for i in range(0, n, piece))
    files = []
    for i in range(n):
        name = b"f%07d" % i
        files.append(b"d6:lengthi1e4:pathl%d:%see" % (len(name), name))
    info = (b"d5:filesl" + b"".join(files) + b"e4:name5:many!12:piece lengthi%de6:pieces%d:"
            % (piece, len(pieces)) + pieces + b"e")
    with open(path, "wb") as f:
        f.write(b"d4:info" + info + b"e")
    return os.path.getsize(path)


def rss(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024
    return out


def timed(cmd):
    t = time.time()
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=900)
    return time.time() - t, r.stdout.strip()


def measure(n):
    d = f"{W}/{n}"
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(f"{d}/mnt")
    size = torrent(n, f"{d}/t.torrent")
    log = open(f"{d}/mount.log", "w")
    t0 = time.time()
    p = subprocess.Popen([MOUNT, f"{d}/t.torrent", f"{d}/mnt", "--foreground", "--data-dir",
                          f"{d}/data", "--no-trackers"], stdout=log, stderr=subprocess.STDOUT)
    try:
        while time.time() - t0 < 300:
            if os.path.exists(f"{d}/mnt/many!"):
                break
            if p.poll() is not None:
                sys.exit(open(f"{d}/mount.log").read())
            time.sleep(0.05)
        start = time.time() - t0
        after_mount = rss(p.pid)
        ls_t, ls_n = timed(f"ls '{d}/mnt/many!' | wc -l")
        lsf_t, _ = timed(f"ls -f '{d}/mnt/many!' | wc -l")
        find_t, _ = timed(f"find '{d}/mnt' | wc -l")
        stat_t, _ = timed(f"stat -c %s '{d}/mnt/many!/f{n - 1:07d}'")
        peak = rss(p.pid)
        assert int(ls_n) == n, f"ls listed {ls_n} of {n}"
        return {"n": n, "torrent_MB": size / 1e6, "start_s": start,
                "rss_MiB": after_mount["VmRSS"], "peak_MiB": peak["VmHWM"],
                "ls_s": ls_t, "ls_f_s": lsf_t, "find_s": find_t, "stat_s": stat_t}
    finally:
        p.terminate()
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        subprocess.run(["umount", "-l", f"{d}/mnt"], stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="10000,100000,1000000")
    ap.add_argument("--quick", action="store_true", help="skip the release build")
    a = ap.parse_args()
    if not a.quick:
        subprocess.run(["cargo", "build", "--release", "--bins", "--quiet"], cwd=ROOT, check=True)
    rows = [measure(int(c)) for c in a.counts.split(",")]
    print("| files | .torrent (MB) | mount (s) | RSS after mount (MiB) | peak RSS (MiB) "
          "| `ls` (s) | `ls -f` (s) | `find` (s) | `stat` one file (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['torrent_MB']:.1f} | {r['start_s']:.2f} | {r['rss_MiB']:.0f} "
              f"| {r['peak_MiB']:.0f} | {r['ls_s']:.2f} | {r['ls_f_s']:.2f} | {r['find_s']:.2f} "
              f"| {r['stat_s']:.3f} |")


if __name__ == "__main__":
    main()
