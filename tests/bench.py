#!/usr/bin/env python3
"""End-to-end benchmark: btt-mount vs btfs on one loopback swarm seeded by aria2c.

Run on demand (not part of the test suite), as root:  python3 tests/bench.py [--runs N]
Everything runs inside a network namespace that has only loopback, so neither
btfs (libtorrent, DHT on by default) nor anything else can reach the outside.
Prints a markdown table and writes target/bench/results.json.
"""
import argparse, json, os, random, shutil, signal, statistics, subprocess, sys, time

NS = "bttbench"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "target", "bench")
W = "/tmp/btt-bench"
SIZE = 256 << 20
# libtorrent (btfs) bans the IP of a connection to itself; on loopback the tracker
# hands it its own 127.0.0.1 address, so the seeder lives on 127.0.0.2.
SEED_IP = "127.0.0.2"


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)


def ns(cmd):
    # nsenter joins only the network namespace: `ip netns exec` would also give
    # each command a private mount namespace, hiding the FUSE mounts.
    return f"nsenter --net=/var/run/netns/{NS} {cmd}"


def spawn(cmd, log):
    return subprocess.Popen(ns(cmd), shell=True, stdout=open(log, "w"), stderr=subprocess.STDOUT, preexec_fn=os.setsid)


def kill(p):
    if p and p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def wait_port(port, t=30, ip="127.0.0.1"):
    end = time.time() + t
    while time.time() < end:
        if subprocess.run(ns(f"bash -c 'exec 3<>/dev/tcp/{ip}/{port}'"), shell=True, stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} not listening")


def drop_caches():
    sh("sync; echo 3 > /proc/sys/vm/drop_caches")


def umount(mnt):
    subprocess.run(f"fusermount3 -u -z {mnt} 2>/dev/null || umount -l {mnt} 2>/dev/null", shell=True)


def timed(cmd):
    t = time.perf_counter()
    sh(ns(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def pid_of(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def rss_and_cpu(pid):
    if not pid:
        return None, None
    st = open(f"/proc/{pid}/status").read()
    hwm = int([l for l in st.splitlines() if l.startswith("VmHWM")][0].split()[1]) / 1024
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    cpu = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return hwm, cpu


def measure(kind, torrent, seeder_port, run):
    mnt = f"{W}/mnt-{kind}-{run}"
    data = f"{W}/data-{kind}-{run}"
    os.makedirs(mnt, exist_ok=True)
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    drop_caches()
    f = f"{mnt}/big.bin"
    t0 = time.perf_counter()
    if kind == "btt":
        # btt dials the seeder directly and also uses the tracker.
        sh(ns(f"{ROOT}/target/release/btt-mount {torrent} {mnt} --data-dir {data} --peer {SEED_IP}:{seeder_port} --listen 127.0.0.1:0"))
        pattern = f"btt-mount {torrent} {mnt}"
    else:
        sh(ns(f"btfs --data-directory={data} --min-port=20000 --max-port=20100 {torrent} {mnt}"))
        pattern = f"btfs --data-directory={data}"
    # btfs fills in its tree shortly after mounting; that wait is part of first byte.
    end = time.time() + 60
    while not os.path.exists(f) and time.time() < end:
        time.sleep(0.01)
    sh(ns(f"head -c 65536 {f}"), stdout=subprocess.DEVNULL)
    first = time.perf_counter() - t0
    seq = timed(f"dd if={f} of=/dev/null bs=1M")
    drop_caches()
    reread = timed(f"dd if={f} of=/dev/null bs=1M")
    rss, cpu = rss_and_cpu(pid_of(pattern))
    umount(mnt)
    time.sleep(1)
    # Random reads on a fresh mount (nothing local yet).
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    drop_caches()
    if kind == "btt":
        sh(ns(f"{ROOT}/target/release/btt-mount {torrent} {mnt} --data-dir {data} --peer {SEED_IP}:{seeder_port} --listen 127.0.0.1:0"))
    else:
        sh(ns(f"btfs --data-directory={data} --min-port=20000 --max-port=20100 {torrent} {mnt}"))
    end = time.time() + 60
    while not os.path.exists(f) and time.time() < end:
        time.sleep(0.01)
    sh(ns(f"head -c 1 {f}"), stdout=subprocess.DEVNULL)
    rnd = random.Random(run)
    lat = []
    for _ in range(20):
        off = rnd.randrange(0, SIZE - 65536) // 4096 * 4096
        lat.append(timed(f"dd if={f} of=/dev/null bs=65536 count=1 iflag=skip_bytes skip={off}"))
    rss2, _ = rss_and_cpu(pid_of(pattern))
    umount(mnt)
    time.sleep(1)
    lat.sort()
    return {
        "first_64k_s": first,
        "seq_MBps": SIZE / seq / 1e6,
        "reread_MBps": SIZE / reread / 1e6,
        "random_median_ms": statistics.median(lat) * 1e3,
        "random_p90_ms": lat[int(len(lat) * 0.9) - 1] * 1e3,
        "peak_rss_MiB": max(x for x in (rss, rss2) if x is not None) if (rss or rss2) else None,
        "cpu_s": cpu,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    sh(f"cd {ROOT} && cargo build --release --quiet")
    subprocess.run(f"ip netns del {NS}", shell=True, stderr=subprocess.DEVNULL)
    sh(f"ip netns add {NS} && ip netns exec {NS} ip link set lo up")
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(f"{W}/seed")
    os.makedirs(OUT, exist_ok=True)
    sh(f"head -c {SIZE} /dev/urandom > {W}/seed/big.bin")
    tport, sport = 16969, 40000
    sh(f"{ROOT}/target/release/btt create {W}/seed/big.bin -o {W}/big.torrent -t http://127.0.0.1:{tport}/announce > {W}/hash")
    ih = open(f"{W}/hash").read().split()[0]
    os.makedirs(f"{W}/ot")
    open(f"{W}/ot/whitelist", "w").write(ih + "\n")
    os.chmod(W, 0o755); os.chmod(f"{W}/ot", 0o755); os.chmod(f"{W}/ot/whitelist", 0o644)
    procs = []
    try:
        procs.append(spawn(f"opentracker -i 127.0.0.1 -p {tport} -P {tport} -w {W}/ot/whitelist", f"{W}/ot.log"))
        wait_port(tport)
        procs.append(spawn(f"aria2c {W}/big.torrent --dir={W}/seed --seed-ratio=0.0 --enable-dht=false --enable-dht6=false "
                           f"--bt-enable-lpd=false --enable-peer-exchange=false --interface={SEED_IP} --bt-external-ip={SEED_IP} --check-integrity=true "
                           f"--listen-port={sport} --summary-interval=0 --console-log-level=warn", f"{W}/aria2-seed.log"))
        wait_port(sport, 120, SEED_IP)
        time.sleep(2)
        results = {"aria2c": [], "btt": [], "btfs": []}
        for run in range(args.runs):
            shutil.rmtree(f"{W}/dl", ignore_errors=True)
            t = timed(f"aria2c {W}/big.torrent --dir={W}/dl --seed-time=0 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false "
                      f"--enable-peer-exchange=false --listen-port={sport+1+run} --summary-interval=0 --console-log-level=warn --file-allocation=none")
            results["aria2c"].append({"seq_MBps": SIZE / t / 1e6})
            for kind in ("btt", "btfs"):
                results[kind].append(measure(kind, f"{W}/big.torrent", sport, run))
                print(kind, results[kind][-1], flush=True)
        json.dump(results, open(f"{OUT}/results.json", "w"), indent=1)
        med = lambda k, m: statistics.median(r[m] for r in results[k]) if results[k] and results[k][0].get(m) is not None else float("nan")
        print("\n| metric | btt-mount | btfs | btt/btfs |\n|---|---|---|---|")
        for m in ("first_64k_s", "seq_MBps", "reread_MBps", "random_median_ms", "random_p90_ms", "peak_rss_MiB", "cpu_s"):
            a, b = med("btt", m), med("btfs", m)
            print(f"| {m} | {a:.3f} | {b:.3f} | {a / b if b else float('nan'):.2f} |")
        print(f"| aria2c plain download MB/s | {med('aria2c', 'seq_MBps'):.1f} | | |")
        print(f"\nbtt sequential / aria2c: {med('btt', 'seq_MBps') / med('aria2c', 'seq_MBps'):.2f}")
    finally:
        for p in procs:
            kill(p)
        subprocess.run(f"ip netns del {NS}", shell=True)


if __name__ == "__main__":
    main()
