#!/usr/bin/env python3
"""How fast other clients download from `btt seed`, in one run.

Run on demand as root (not part of the test suite):

    python3 tests/upload.py [--runs 2] [--size-mib 256]

Builds release, makes two random files, and starts inside a network
namespace that has only loopback: opentracker, `btt seed` of one, and two
reference seeders of the others: aria2c, and libtorrent (python3-libtorrent,
`tests/lt_node.py`; Transmission dials no peer on 127.0.0.x and an aria2c
seed dials nobody, so Transmission, on 127.0.0.3, meets only the seeders
that dial it: btt and libtorrent). Then aria2c,
transmission-daemon and qbittorrent-nox each download both files (fresh
state every time; they meet through the tracker) and the seconds to the
complete file are measured. Prints MB/s per downloader from each seeder
and the ratio of btt's to the better reference's (the issue's bar: at
least 0.8 for Transmission and qBittorrent). Writes target/bench/upload.json.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

from benchlib import stop

os.environ["BTT_NO_DHT"] = "true"
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "target", "bench")
BTT = os.path.join(ROOT, "target", "release", "btt")
NS = "bttupload"
W = "/tmp/btt-upload"
TRACKER, BTT_PORT, ARIA_PORT, LT_PORT = 16970, 30110, 30111, 30112
SEED_IP = "127.0.0.1"
# libtorrent refuses its own address: qBittorrent lives on 127.0.0.2, and
# Transmission, which dials no peer on 127.0.0.1 (its own address there),
# on 127.0.0.3, where libtorrent dials it.
QBT_IP = "127.0.0.2"
TR_IP = "127.0.0.3"


def ns(cmd):
    return ["ip", "netns", "exec", NS, *cmd]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def spawn(cmd, log, **kw):
    return subprocess.Popen(ns(cmd), stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)


def wait_port(port, ip="127.0.0.1", t=60):
    end = time.time() + t
    while time.time() < end:
        if subprocess.run(ns(["bash", "-c", f"exec 3<>/dev/tcp/{ip}/{port}"]),
                          stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"nothing on {ip}:{port}")


def wait_file(path, size, t, proc):
    end = time.time() + t
    while time.time() < end:
        if os.path.exists(path) and os.path.getsize(path) == size:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# Below the ephemeral range (32768 and up), which outgoing connections in
# the namespace take from.
def free_port(base=[21000]):
    base[0] += 1
    return base[0]


def aria2c_get(torrent, d, size, name):
    t = time.perf_counter()
    sh(ns(["aria2c", torrent, f"--dir={d}", "--seed-time=0", "--enable-dht=false",
           "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
           f"--listen-port={free_port()}", "--summary-interval=0",
           "--console-log-level=warn", "--file-allocation=none"]), stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def transmission_get(torrent, d, size, name):
    conf, watch, dl = f"{d}/conf", f"{d}/watch", f"{d}/dl"
    rpc_port = free_port()
    for x in (conf, watch, dl):
        os.makedirs(x)
    with open(f"{conf}/settings.json", "w") as f:
        json.dump({"dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
                   "port-forwarding-enabled": False, "utp-enabled": False,
                   "peer-port": free_port(), "peer-port-random-on-start": False,
                   "rpc-enabled": True, "rpc-port": rpc_port, "rpc-bind-address": "127.0.0.1",
                   "rpc-whitelist": "127.0.0.1", "bind-address-ipv4": TR_IP,
                   "download-dir": dl, "watch-dir": watch, "watch-dir-enabled": True,
                   "start-added-torrents": True, "rename-partial-files": True,
                   "ratio-limit-enabled": False, "encryption": 1, "message-level": 1}, f)
    p = spawn(["transmission-daemon", "-f", "-g", conf], f"{d}/transmission.log")
    time.sleep(1)
    shutil.copy(torrent, f"{watch}/t.torrent")
    # Transmission preallocates the file: its progress comes over RPC. The
    # time counted starts at its first byte (when a seeder first met it
    # depends on when that seeder announced, not on how it serves).
    rpc = TransmissionRpc(rpc_port)
    start, end = None, time.time() + 240
    while time.time() < end and p.poll() is None:
        done = rpc.downloaded()
        now = time.perf_counter()
        if done and start is None:
            start = (now, done)
        if done is not None and done >= size:
            stop(p)
            return (now - start[0]) * size / (size - start[1])
        time.sleep(0.05)
    stop(p)
    print(f"transmission: no complete file; its log ends: {open(f'{d}/transmission.log').read()[-500:]}")
    return None


class TransmissionRpc:
    """`downloadedEver` of the daemon's one torrent, over its RPC."""

    def __init__(self, port):
        self.url, self.sid = f"http://127.0.0.1:{port}/transmission/rpc", ""

    def downloaded(self):
        body = json.dumps({"method": "torrent-get",
                           "arguments": {"fields": ["haveValid", "haveUnchecked"]}}).encode()
        for _ in range(2):
            out = subprocess.run(ns(["curl", "-s", "-i", "-H", f"X-Transmission-Session-Id: {self.sid}",
                                     "--data-binary", "@-", self.url]),
                                 input=body, capture_output=True)
            head, _, rest = out.stdout.decode(errors="replace").partition("\r\n\r\n")
            sid = [l.split(":", 1)[1].strip() for l in head.splitlines()
                   if l.lower().startswith("x-transmission-session-id:")]
            if sid and head.startswith("HTTP/1.1 409"):
                self.sid = sid[0]
                continue
            try:
                ts = json.loads(rest)["arguments"]["torrents"]
            except (ValueError, KeyError):
                return None
            return (ts[0]["haveValid"] + ts[0]["haveUnchecked"]) if ts else None
        return None


def qbittorrent_get(torrent, d, size, name):
    conf, dl = f"{d}/qbt/qBittorrent/config", f"{d}/dl"
    os.makedirs(conf)
    os.makedirs(dl)
    with open(f"{conf}/qBittorrent.conf", "w") as f:
        f.write("[LegalNotice]\nAccepted=true\n\n[BitTorrent]\nSession\\DHTEnabled=false\n"
                "Session\\LSDEnabled=false\nSession\\PeXEnabled=false\n"
                f"Session\\Port={free_port()}\nSession\\BTProtocol=TCP\nSession\\Interface=lo\n"
                f"Session\\InterfaceName=lo\nSession\\InterfaceAddress={QBT_IP}\n"
                "Session\\AddExtensionToIncompleteFiles=true\n"
                "Session\\QueueingSystemEnabled=false\n\n[Network]\nPortForwardingEnabled=false\n\n"
                "[Preferences]\nConnection\\UPnP=false\nWebUI\\Enabled=false\n")
    t = time.perf_counter()
    p = spawn(["qbittorrent-nox", f"--profile={d}/qbt", f"--save-path={dl}",
               "--add-paused=false", "--skip-dialog=true", torrent], f"{d}/qbt.log",
              env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    ok = wait_file(f"{dl}/{name}", size, 600, p)
    s = time.perf_counter() - t
    stop(p)
    return s if ok else None


SEEDERS = ("btt", "aria2c", "libtorrent")
# Transmission dials no peer on 127.0.0.x, and an aria2c seed dials nobody.
NEVER_MEET = {("transmission", "aria2c")}
CLIENTS = {"aria2c": aria2c_get, "transmission": transmission_get,
           "qbittorrent": qbittorrent_get}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--clients", default=",".join(CLIENTS),
                    help="downloaders to run, comma-separated (default: all)")
    a = ap.parse_args()
    if not a.no_build:
        sh(["cargo", "build", "--release", "--bins"], cwd=ROOT)
    size = a.size_mib << 20
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)
    sh(["ip", "netns", "add", NS])
    sh(ns(["ip", "link", "set", "lo", "up"]))
    shutil.rmtree(W, ignore_errors=True)
    os.makedirs(f"{W}/data")
    os.chmod(W, 0o755)
    procs = []
    seeder = None
    try:
        for kind in SEEDERS:
            with open(f"{W}/data/from-{kind}.bin", "wb") as f:
                for _ in range(a.size_mib):
                    f.write(os.urandom(1 << 20))
        torrents, hashes = {}, []
        for kind in SEEDERS:
            t = f"{W}/{kind}.torrent"
            out = subprocess.run([BTT, "create", f"{W}/data/from-{kind}.bin", "-o", t, "-t",
                                  f"http://127.0.0.1:{TRACKER}/announce"],
                                 check=True, capture_output=True, text=True).stdout
            hashes.append(out.split()[0])
            torrents[kind] = t
        os.makedirs(f"{W}/ot")
        with open(f"{W}/ot/whitelist", "w") as f:
            f.write("".join(h + "\n" for h in hashes))
        procs.append(spawn(["opentracker", "-i", "127.0.0.1", "-p", str(TRACKER), "-P",
                            str(TRACKER), "-w", f"{W}/ot/whitelist"], f"{W}/ot.log"))
        wait_port(TRACKER)
        def btt_seed():
            p = spawn([BTT, "seed", torrents["btt"], "--data", f"{W}/data", "--listen",
                       f"{SEED_IP}:{BTT_PORT}"], f"{W}/btt-seed.log")
            wait_port(BTT_PORT, SEED_IP)
            return p
        seeder = btt_seed()
        procs.append(spawn(["aria2c", torrents["aria2c"], f"--dir={W}/data", "--seed-ratio=0.0",
                            "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                            "--enable-peer-exchange=false", "--disable-ipv6=true",
                            "--file-allocation=none", "--summary-interval=0",
                            "--console-log-level=warn", "--check-integrity=true",
                            f"--listen-port={ARIA_PORT}"], f"{W}/aria2c-seed.log"))
        wait_port(ARIA_PORT, SEED_IP)
        procs.append(spawn(["/usr/bin/python3", os.path.join(ROOT, "tests", "lt_node.py"),
                            str(LT_PORT), "--seed", torrents["libtorrent"], f"{W}/data",
                            # It dials Transmission only once it has heard of it.
                            "--reannounce", "2"],
                           f"{W}/lt-seed.log"))
        wait_port(LT_PORT, SEED_IP)
        time.sleep(3)  # announced
        results = {}
        for run in range(a.runs):
            for client, get in CLIENTS.items():
                if client not in a.clients.split(","):
                    continue
                for kind in SEEDERS:
                    if (client, kind) in NEVER_MEET:
                        continue
                    if (client, kind) == ("transmission", "btt") and run > 0:
                        # Only a seeder that dials it meets Transmission here,
                        # and btt seed asks its tracker for new peers once
                        # early, then at the tracker's interval (half an
                        # hour): a fresh one meets the new Transmission.
                        stop(seeder)
                        seeder = btt_seed()
                    d = f"{W}/dl-{client}-{kind}-{run}"
                    os.makedirs(d)
                    os.chmod(d, 0o755)
                    s = get(torrents[kind], d, size, f"from-{kind}.bin")
                    mbps = size / s / 1e6 if s else None
                    results.setdefault(client, {}).setdefault(kind, []).append(mbps)
                    print(f"run {run}: {client} from {kind}: "
                          f"{'failed' if mbps is None else f'{mbps:.1f} MB/s'}", flush=True)
                    shutil.rmtree(d, ignore_errors=True)
        rows = []
        med = lambda v: statistics.median([x for x in v if x] or [0])
        for client, by in results.items():
            b = med(by["btt"])
            refs = {k: med(by.get(k, [])) for k in SEEDERS if k != "btt"}
            best = max(refs.values())
            rows.append({"client": client, "from_btt_MBps": b, **{f"from_{k}_MBps": v for k, v in refs.items()},
                         "ratio": b / best if best else None, "runs": by})
        print("\n| downloader | from btt seed (MB/s) | from aria2c (MB/s) | from libtorrent (MB/s) | btt / best reference |")
        print("|---|---|---|---|---|")
        for r in rows:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            print(f"| {r['client']} | {r['from_btt_MBps']:.1f} | {r['from_aria2c_MBps']:.1f} | "
                  f"{r['from_libtorrent_MBps']:.1f} | {ratio} |")
        os.makedirs(OUT, exist_ok=True)
        with open(os.path.join(OUT, "upload.json"), "w") as f:
            json.dump({"size_mib": a.size_mib, "rows": rows}, f, indent=1)
    finally:
        for p in reversed(procs):
            stop(p)
        if seeder is not None:
            stop(seeder)
        subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
