#!/usr/bin/env python3
"""What a player does first, through the mount and on local disk: ffprobe of
an mp4 (index after its data) and of an mkv, then a seek to 60 s and one
decoded frame. Run on demand as root (not part of the test suite):

    python3 tests/probe_bench.py [--runs 5] [--bin DIR]... [--no-build]

Makes a 2-minute 1080p H.264 video in both containers (cached in
target/bench/content), seeds them with `btt seed` on 127.0.0.1 (no tracker,
no DHT), and for each run and each set of binaries (`--bin DIR` holding btt
and btt-mount, repeatable, to compare builds; default target/release) mounts
afresh with an empty data dir and the page cache dropped, then times the
readers. Local disk is timed the same way (page cache dropped). Prints
medians with min–max and the ratio to local disk.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from benchlib import stop

os.environ["BTT_NO_DHT"] = "true"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONTENT = os.path.join(ROOT, "target", "bench", "content", "probe")
NAMES = ("video.mp4", "video.mkv")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def make_content():
    os.makedirs(CONTENT, exist_ok=True)
    for name in NAMES:
        out = os.path.join(CONTENT, name)
        if os.path.exists(out):
            continue
        tmp = out + ".tmp" + os.path.splitext(name)[1]
        sh(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=24:duration=120",
            "-f", "lavfi", "-i", "sine=frequency=440:duration=120",
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "8M", "-maxrate", "8M",
            "-bufsize", "16M", "-pix_fmt", "yuv420p", "-g", "48", "-c:a", "aac",
            "-shortest", tmp])
        os.rename(tmp, out)


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def timed(cmd):
    t = time.perf_counter()
    sh(["timeout", "120", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def readers(path):
    return {
        "ffprobe": timed(["ffprobe", "-v", "error", "-show_format", "-show_streams", path]),
        "seek+frame": timed(["ffmpeg", "-v", "error", "-ss", "60", "-i", path,
                             "-frames:v", "1", "-f", "null", "-"]),
    }


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def through_mount(bindir, torrent, peer, name, work):
    mnt, data = os.path.join(work, "mnt"), os.path.join(work, "data")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    drop_caches()
    p = subprocess.Popen([os.path.join(bindir, "btt-mount"), torrent, mnt, "--foreground",
                          "--no-trackers", "--peer", peer, "--listen", "127.0.0.1:0",
                          "--no-http", "--data-dir", data],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        path = os.path.join(mnt, "probe", name)
        end = time.time() + 20
        while not os.path.exists(path):
            if time.time() > end or p.poll() is not None:
                raise SystemExit("the mount did not come up")
            time.sleep(0.02)
        return readers(path)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL)
        stop(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", action="append", default=[])
    ap.add_argument("--no-build", action="store_true")
    a = ap.parse_args()
    bins = a.bin or [os.path.join(ROOT, "target", "release")]
    if not a.bin and not a.no_build:
        sh(["cargo", "build", "--release", "--bins"], cwd=ROOT)
    make_content()
    work = tempfile.mkdtemp(prefix="btt-probe-")
    torrent = os.path.join(work, "probe.torrent")
    sh([os.path.join(bins[0], "btt"), "create", CONTENT, "-o", torrent],
       stdout=subprocess.DEVNULL)
    port = free_port()
    seed = subprocess.Popen([os.path.join(bins[0], "btt"), "seed", torrent, "--data",
                             os.path.dirname(CONTENT), "--listen", f"127.0.0.1:{port}",
                             "--no-trackers", "--no-http", "-q"],
                            start_new_session=True)
    results = {}
    try:
        time.sleep(1)
        for _ in range(a.runs):
            for name in NAMES:
                drop_caches()
                for k, v in readers(os.path.join(CONTENT, name)).items():
                    results.setdefault(("local disk", name, k), []).append(v)
                for b in bins:
                    for k, v in through_mount(b, torrent, f"127.0.0.1:{port}", name,
                                              work).items():
                        results.setdefault((b, name, k), []).append(v)
    finally:
        stop(seed)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{a.runs} runs, seconds: median (min–max), × local disk")
    print("| reader | " + " | ".join(["local disk", *bins]) + " |")
    print("|---|" + "---|" * (1 + len(bins)))
    for name in NAMES:
        for k in ("ffprobe", "seek+frame"):
            local = statistics.median(results[("local disk", name, k)])
            cells = []
            for who in ["local disk", *bins]:
                v = results[(who, name, k)]
                m = statistics.median(v)
                cell = f"{m:.2f} ({min(v):.2f}–{max(v):.2f})"
                if who != "local disk":
                    cell += f" ×{m / local:.2f}"
                cells.append(cell)
            print(f"| {name} {k} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
