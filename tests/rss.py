#!/usr/bin/env python3
"""Peak RSS of btt-mount reading a 256 MiB file from `btt seed`: with the
default piece size, with 16 MiB pieces, and with the DHT on (bootstrapped
from a local libtorrent node). Run on demand as root:

    python3 tests/rss.py [--no-build] [--bin DIR]... [--mount-args ARGS]... [--runs N]

Everything runs inside a network namespace with only loopback. Prints one
line per case: piece size, DHT, seconds, peak RSS (VmHWM) of the mount.
With several `--bin` directories (builds side by side, e.g. before and
after a change) each run goes through all of them in turn; each build
seeds with its own `btt`. Each `--mount-args` (e.g. "--cache-size 4MiB")
is one more variant of every build, run in the same turn.
"""
import argparse
import os
import shutil
import subprocess
import time

from benchlib import mount_pid, drop_netns, fresh_netns, in_netns, spawn_in, stop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
NS, W = "bttrss", "/tmp/btt-rss"
SIZE = 256 << 20


def ns(cmd):
    return in_netns(NS, cmd)


def spawn(cmd, log, env=None):
    return spawn_in(NS, cmd, log, env)


def hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def case(name, torrent, seed_port, dht_boot, mount, extra):
    d = f"{W}/{name}"
    os.makedirs(f"{d}/mnt")
    env = {"BTT_NO_DHT": "false" if dht_boot else "true"}
    args = [mount, torrent, f"{d}/mnt", "--foreground", "--no-trackers", "--data-dir",
            f"{d}/data", "--peer", f"127.0.0.1:{seed_port}", "--listen", "127.0.0.1:0"]
    if dht_boot:
        args += ["--dht-bootstrap", f"127.0.0.1:{dht_boot}"]
    args += extra
    m = spawn(args, f"{d}/mount.log", env)
    for _ in range(100):
        if os.path.ismount(f"{d}/mnt"):
            break
        time.sleep(0.1)
    pid = mount_pid(f"{d}/mnt")
    t = time.perf_counter()
    subprocess.run(["cat", f"{d}/mnt/big.bin"], stdout=subprocess.DEVNULL, check=True)
    secs = time.perf_counter() - t
    peak = hwm(pid)
    subprocess.run(["fusermount3", "-u", f"{d}/mnt"])
    stop(m)
    return secs, peak


def build_cases(bindir, boot, port0, extra):
    """The cases with the build in `bindir` and mount arguments `extra`;
    one row each."""
    btt, mount = os.path.join(bindir, "btt"), os.path.join(bindir, "btt-mount")
    label = os.path.relpath(bindir, ROOT) if bindir.startswith(ROOT) else bindir
    if extra:
        label += " " + " ".join(extra)
    rows = []
    for piece in (None, 1 << 20, 16 << 20):
        t = f"{W}/big-{piece or 'default'}-{port0}.torrent"
        cmd = [btt, "create", f"{W}/content/big.bin", "-o", t]
        if piece:
            cmd += ["--piece-size", f"{piece >> 20}MiB"]
        subprocess.run(cmd, check=True, capture_output=True)
        port = port0 + len(rows)
        seed = spawn([btt, "seed", t, "--data", f"{W}/content", "--listen",
                      f"127.0.0.1:{port}", "--no-trackers"], f"{W}/seed-{port}.log",
                     {"BTT_NO_DHT": "true"})
        time.sleep(2)
        for dht in (False, True):
            name = f"{port}-{'dht' if dht else 'nodht'}"
            secs, peak = case(name, t, port, boot if dht else None, mount, extra)
            rows.append((piece, dht, secs, peak))
            print(f"{label}: pieces {f'{piece >> 20} MiB' if piece else 'default'}, "
                  f"DHT {'on' if dht else 'off'}: {secs:.1f} s, peak RSS {peak:.0f} MiB",
                  flush=True)
        stop(seed)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--bin", action="append", help="a build's directory (default target/release)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--mount-args", action="append", default=[],
                    help="one more variant: these btt-mount arguments")
    a = ap.parse_args()
    bins = [os.path.abspath(b) for b in (a.bin or [REL])]
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    fresh_netns(NS)
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(f"{W}/content")
    procs = []
    try:
        with open(f"{W}/content/big.bin", "wb") as f:
            for _ in range(SIZE >> 20):
                f.write(os.urandom(1 << 20))
        boot = 31400
        procs.append(spawn(["/usr/bin/python3", os.path.join(ROOT, "tests/lt_node.py"),
                            str(boot)], f"{W}/lt.log"))
        rows = []
        variants = [[]] + [v.split() for v in a.mount_args]
        turn = 0
        for run in range(a.runs):
            for b in bins:
                for extra in variants:
                    rows += build_cases(b, boot, 31410 + 10 * turn, extra)
                    turn += 1
    finally:
        for p in procs:
            stop(p)
        drop_netns(NS)


if __name__ == "__main__":
    main()
