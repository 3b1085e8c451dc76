#!/usr/bin/env python3
"""Paid vs free reads through btt-mount on one loopback swarm (release build).

Run from the repository: `python3 tests/bench_paid.py [--size-mib 256] [--runs 3]`.
Needs what tests/run.sh installs (bcoin in tests/regtest). Starts a regtest
bcoin node, a buyer and a seller wallet, then for each run mounts the same
torrent twice on fresh data dirs: from `btt seed` (free) and from
`btt seed --price` (paid, the only peer). Measures mount → first 64 KiB,
sequential MB/s, btt-mount CPU seconds, the payment thread's CPU seconds, and
payment bytes on the wire per GiB. Writes target/bench/paid.json.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import base64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
BTT = os.path.join(REL, "btt")
MOUNT = os.path.join(REL, "btt-mount")
KEY = "bench"
BURN = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, t=30):
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def rpc(port, method, params):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=json.dumps({"method": method, "params": params}).encode(),
        headers={"Authorization": "Basic " + base64.b64encode(f"x:{KEY}".encode()).decode()},
    )
    return json.load(urllib.request.urlopen(req))["result"]


def btt(home, *args):
    return subprocess.run([BTT, "--home", home, *args], check=True, capture_output=True, text=True).stdout


def cpu_seconds(pid, comm=None):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    tasks = os.listdir(f"/proc/{pid}/task")
    for t in tasks:
        try:
            if comm and open(f"/proc/{pid}/task/{t}/comm").read().strip() != comm:
                continue
            f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
        except OSError:
            pass
    return total


def drop_caches():
    subprocess.run(["sync"])
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def one_mount(work, torrent, name, peer, home, paid):
    mnt = tempfile.mkdtemp(dir=work)
    data = tempfile.mkdtemp(dir=work)
    args = [MOUNT, torrent, mnt, "--foreground", "--no-trackers", "--peer", peer,
            "--listen", "127.0.0.1:0", "--data-dir", data]
    if paid:
        args += ["--home", home, "--max-price", "2000sat/GiB", "--budget", "90000sat",
                 "--channel-size", "100000sat"]
    env = dict(os.environ, BTT_STATUS_DIR=os.path.join(work, "status"))
    t0 = time.time()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    path = os.path.join(mnt, name)
    while not os.path.exists(path):
        time.sleep(0.002)
    with open(path, "rb") as f:
        f.read(65536)
    first = time.time() - t0
    t1 = time.time()
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            n += len(b)
    seq = n / (time.time() - t1) / 1e6
    time.sleep(1.5)  # payments for the last pieces, and one status write
    cpu = cpu_seconds(p.pid)
    pay_cpu = cpu_seconds(p.pid, "btt-pay")
    money = {}
    sd = os.path.join(work, "status")
    for fn in os.listdir(sd) if os.path.isdir(sd) else []:
        r = json.load(open(os.path.join(sd, fn)))
        if r["pid"] == p.pid:
            money = r["money"]
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    return {"first_64k_s": first, "seq_mb_s": seq, "cpu_s": cpu, "pay_thread_cpu_s": pay_cpu,
            "bytes": n, "money": money}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--credit", default="4MiB", help="the seller's --credit")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bins"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="btt-bench-paid-")
    procs = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen(
            ["node", os.path.join(ROOT, "tests/regtest/bcoin-node.js"), "--http-host=127.0.0.1",
             f"--http-port={rport}", f"--api-key={KEY}", "--no-wallet=true", "--index-tx=true"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(rport)
        time.sleep(0.5)
        rpc(rport, "generatetoaddress", [440, BURN])
        init = ["wallet", "init", "--network", "regtest", "--rpc", f"http://127.0.0.1:{rport}",
                "--rpc-user", "x", "--rpc-password", KEY]
        buyer, seller = os.path.join(work, "buyer"), os.path.join(work, "seller")
        btt(buyer, *init, "--expiry-blocks", "100")
        btt(seller, *init, "--zero-conf-limit", "10000000", "--min-expiry-blocks", "10")
        addr = btt(buyer, "wallet", "address").strip()
        rpc(rport, "generatetoaddress", [3, addr])
        rpc(rport, "generatetoaddress", [100, BURN])
        content = os.path.join(work, "content")
        os.makedirs(content)
        name = "big.bin"
        with open(os.path.join(content, name), "wb") as f:
            for _ in range(a.size_mib):
                f.write(os.urandom(1 << 20))
        torrent = os.path.join(work, "big.torrent")
        subprocess.run([BTT, "create", os.path.join(content, name), "-o", torrent], check=True,
                       capture_output=True)
        free_port_, paid_port = free_port(), free_port()
        procs.append(subprocess.Popen([BTT, "seed", torrent, "--data", content, "--listen",
                                       f"127.0.0.1:{free_port_}", "--no-trackers"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        seller_p = subprocess.Popen([BTT, "--home", seller, "seed", torrent, "--data", content,
                                     "--listen", f"127.0.0.1:{paid_port}", "--no-trackers",
                                     "--price", "1000sat/GiB", "--credit", a.credit],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(seller_p)
        wait_port(free_port_)
        wait_port(paid_port)
        runs = {"free": [], "paid": []}
        for _ in range(a.runs):
            for kind, port in (("free", free_port_), ("paid", paid_port)):
                drop_caches()
                runs[kind].append(one_mount(work, torrent, name, f"127.0.0.1:{port}", buyer, kind == "paid"))
        med = lambda kind, k: statistics.median(r[k] for r in runs[kind])
        paid = runs["paid"]
        wire_per_gib = statistics.median(
            r["money"].get("pay_wire_bytes", 0) / (r["bytes"] / (1 << 30)) for r in paid)
        payments_per_gib = statistics.median(
            r["money"].get("payments", 0) / (r["bytes"] / (1 << 30)) for r in paid)
        summary = {
            "size_mib": a.size_mib,
            "credit": a.credit,
            "runs": a.runs,
            "first_64k_s": {"free": med("free", "first_64k_s"), "paid": med("paid", "first_64k_s")},
            "seq_mb_s": {"free": med("free", "seq_mb_s"), "paid": med("paid", "seq_mb_s")},
            "paid_over_free_throughput": med("paid", "seq_mb_s") / med("free", "seq_mb_s"),
            "cpu_s": {"free": med("free", "cpu_s"), "paid": med("paid", "cpu_s")},
            "pay_thread_cpu_s": med("paid", "pay_thread_cpu_s"),
            "pay_thread_cpu_share": med("paid", "pay_thread_cpu_s") / med("paid", "cpu_s"),
            "payment_wire_bytes_per_gib": wire_per_gib,
            "payments_per_gib": payments_per_gib,
            "raw": runs,
        }
        os.makedirs(os.path.join(ROOT, "target", "bench"), exist_ok=True)
        with open(os.path.join(ROOT, "target", "bench", "paid.json"), "w") as f:
            json.dump(summary, f, indent=1)
        print(json.dumps({k: v for k, v in summary.items() if k != "raw"}, indent=1))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
