#!/usr/bin/env python3
"""Peak RSS of btt-mount reading a 256 MiB file from `btt seed`: with the
default piece size, with 16 MiB pieces, and with the DHT on (bootstrapped
from a local libtorrent node). Run on demand as root:

    python3 tests/rss.py [--no-build]

Everything runs inside a network namespace with only loopback. Prints one
line per case: piece size, DHT, seconds, peak RSS (VmHWM) of the mount.
"""
import argparse
import os
import shutil
import subprocess
import time

from benchlib import stop

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
REL = os.path.join(ROOT, "target", "release")
BTT, MOUNT = os.path.join(REL, "btt"), os.path.join(REL, "btt-mount")
NS, W = "bttrss", "/tmp/btt-rss"
SIZE = 256 << 20


def ns(cmd):
    """The namespace's network only (`ip netns exec` would also hide the
    FUSE mount in a private mount namespace)."""
    return ["nsenter", f"--net=/var/run/netns/{NS}", *cmd]


def spawn(cmd, log, env=None):
    return subprocess.Popen(ns(cmd), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, **(env or {})})


def mount_pid(mnt):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"btt-mount") and mnt.encode() in cmd:
                return pid
    return None


def hwm(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def case(name, torrent, seed_port, dht_boot):
    d = f"{W}/{name}"
    os.makedirs(f"{d}/mnt")
    env = {"BTT_NO_DHT": "false" if dht_boot else "true"}
    args = [MOUNT, torrent, f"{d}/mnt", "--foreground", "--no-trackers", "--data-dir",
            f"{d}/data", "--peer", f"127.0.0.1:{seed_port}", "--listen", "127.0.0.1:0"]
    if dht_boot:
        args += ["--dht-bootstrap", f"127.0.0.1:{dht_boot}"]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(ns(["ip", "link", "set", "lo", "up"]), check=True)
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
        for piece in (None, 16 << 20):
            t = f"{W}/big-{piece or 'default'}.torrent"
            cmd = [BTT, "create", f"{W}/content/big.bin", "-o", t]
            if piece:
                cmd += ["--piece-size", f"{piece >> 20}MiB"]
            subprocess.run(cmd, check=True, capture_output=True)
            port = 31410 + len(rows)
            seed = spawn([BTT, "seed", t, "--data", f"{W}/content", "--listen",
                          f"127.0.0.1:{port}", "--no-trackers"], f"{W}/seed-{port}.log",
                         {"BTT_NO_DHT": "true"})
            time.sleep(2)
            for dht in (False, True):
                name = f"{piece or 'default'}-{'dht' if dht else 'nodht'}"
                secs, peak = case(name, t, port, boot if dht else None)
                rows.append((piece, dht, secs, peak))
                print(f"pieces {'16 MiB' if piece else 'default'}, DHT {'on' if dht else 'off'}: "
                      f"{secs:.1f} s, peak RSS {peak:.0f} MiB", flush=True)
            stop(seed)
    finally:
        for p in procs:
            stop(p)
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
