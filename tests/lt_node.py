#!/usr/bin/python3
"""A libtorrent (python3-libtorrent) peer and DHT node for the end-to-end
tests, run inside the test's loopback-only network namespace.

    lt_node.py PORT [--bootstrap HOST:PORT] [--seed TORRENT DATA_DIR]
                    [--get TORRENT|MAGNET DIR] [--connect HOST:PORT]...
                    [--reannounce SECS]

Listens for peers and DHT on 127.0.0.1:PORT (TCP and UDP), starts from the
bootstrap node if given, seeds TORRENT from DATA_DIR if given, or downloads
TORRENT into DIR (printing "finished" when it has it all), and dials the
--connect peers for it (and, with --reannounce, asks its trackers for
peers every SECS seconds, not only at their interval). Each peer it connects to is printed once, as
"peer IP:PORT SOURCE" (libtorrent's peer_info source flags: 4 is PEX).
Seeds keep connections to seeds (PEX passes them on). libtorrent's
checks that assume a real internet (one node per IP, BEP 42 ids, no
private addresses) are off: every node here is 127.0.0.1. Prints "ready"
once listening (after "node_id HEX", its DHT id), then the DHT node
count every second.
"""
import argparse
import sys
import time
import warnings

import libtorrent as lt

p = argparse.ArgumentParser()
p.add_argument("port", type=int)
p.add_argument("--bootstrap")
p.add_argument("--seed", nargs=2, metavar=("TORRENT", "DATA"))
p.add_argument("--get", nargs=2, metavar=("TORRENT", "DIR"))
p.add_argument("--connect", action="append", default=[])
p.add_argument("--reannounce", type=int, default=0)
a = p.parse_args()

settings = {
    "listen_interfaces": f"127.0.0.1:{a.port}",
    "enable_dht": True,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    # Bootstrap nodes are "routers", never kept in the routing table: the
    # node to start from is added as an ordinary node below.
    "dht_bootstrap_nodes": "",
    "dht_restrict_routing_ips": False,
    "dht_restrict_search_ips": False,
    "dht_prefer_verified_node_ids": False,
    "dht_ignore_dark_internet": False,
    "allow_multiple_connections_per_ip": True,
    "close_redundant_connections": False,
    "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.dht_notification,
}
s = lt.session(settings)
if a.bootstrap:
    host, port = a.bootstrap.rsplit(":", 1)
    s.add_dht_node((host, int(port)))
handle = None
if a.seed:
    torrent, data = a.seed
    handle = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": data,
                            "flags": lt.torrent_flags.seed_mode})
time.sleep(0.5)
ids = s.save_state().get(b"dht state", {}).get(b"node-id", [])
if ids:
    print("node_id", bytes(ids[0][:20]).hex(), flush=True)
got = None
if a.get:
    torrent, out = a.get
    if torrent.startswith("magnet:"):
        params = lt.parse_magnet_uri(torrent)
        params.save_path = out
        got = handle = s.add_torrent(params)
    else:
        got = handle = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": out})
for c in a.connect:
    host, port = c.rsplit(":", 1)
    handle.connect_peer((host, int(port)))
print("ready", flush=True)
seen = set()
ticks = 0
while True:
    time.sleep(1)
    ticks += 1
    if a.reannounce and handle is not None and ticks % a.reannounce == 0:
        handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = s.status()
    print("dht_nodes", st.dht_nodes, flush=True)
    if got is not None and got.status().is_seeding:
        print("finished", flush=True)
        got = None
    if handle is not None:
        for peer in handle.get_peer_info():
            if peer.ip not in seen:
                seen.add(peer.ip)
                print("peer %s:%d %d" % (peer.ip[0], peer.ip[1], peer.source), flush=True)
    for al in s.pop_alerts():
        if al.category() & lt.alert.category_t.error_notification:
            print("alert", al.message(), flush=True)
