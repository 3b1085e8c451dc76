//! The DHT (BEP 5), in a network namespace with only loopback made by each
//! test: libtorrent nodes (python3-libtorrent) and btt find each other with
//! no tracker and no --peer.

use crate::harness::*;
use std::path::Path;
use std::time::Duration;

const LT_NODE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lt_node.py");

/// A libtorrent node on 127.0.0.1:`port` in `ns`, seeding if asked.
fn lt_node(
    ns: &NetNs,
    port: u16,
    bootstrap: Option<u16>,
    seed: Option<(&Path, &Path)>,
    log: &Path,
) -> Proc {
    let mut args = Vec::new();
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap".to_string(), format!("127.0.0.1:{b}")]);
    }
    if let Some((t, d)) = seed {
        args.extend(["--seed".to_string(), path_str(t), path_str(d)]);
    }
    lt_peer(ns, port, &args, log)
}

fn path_str(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_string()
}

/// `tests/lt_node.py PORT ARGS` in `ns`, once it says it is ready.
pub(crate) fn lt_peer(ns: &NetNs, port: u16, args: &[String], log: &Path) -> Proc {
    let mut c = ns.command("/usr/bin/python3");
    c.arg(LT_NODE).arg(port.to_string()).args(args);
    let p = Proc::spawn("libtorrent node", &mut c, log);
    let ready = wait_until(Duration::from_secs(20), || p.log_text().contains("ready"));
    assert!(ready, "libtorrent node did not start: {}", p.log_text());
    p
}

fn dht_nodes(p: &Proc) -> u32 {
    p.log_text()
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("dht_nodes ")?.trim().parse().ok())
        .unwrap_or(0)
}

/// A local DHT: a bootstrap node and `n - 1` more libtorrent nodes that
/// started from it, all of which know someone before this returns (btt's
/// nodes bootstrap once, from what the bootstrap node knows then).
fn lt_dht(ns: &NetNs, n: usize, dir: &Path) -> (u16, Vec<Proc>) {
    let boot = free_port();
    let mut nodes = vec![lt_node(ns, boot, None, None, &dir.join("node0.log"))];
    for i in 1..n {
        nodes.push(lt_node(
            ns,
            free_port(),
            Some(boot),
            None,
            &dir.join(format!("node{i}.log")),
        ));
    }
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|p| dht_nodes(p) > 0)),
        "the libtorrent nodes never met"
    );
    (boot, nodes)
}

fn node_id(p: &Proc) -> [u8; 20] {
    let id = p
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("node_id ").map(str::to_string))
        .expect("the node's id");
    data_encoding::HEXLOWER
        .decode(id.as_bytes())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn a_magnet_with_only_its_info_hash_is_read_from_a_libtorrent_seeder_found_through_the_dht() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let hash = btt::metainfo::Metainfo::from_bytes(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info_hash;
    // Eight nodes: six libtorrent nodes, a libtorrent seeder, the mount.
    let (boot, _nodes) = lt_dht(&ns, 6, d);
    let seeder = lt_node(
        &ns,
        free_port(),
        Some(boot),
        Some((&torrent, &d.join("seed"))),
        &d.join("lt-seed.log"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || dht_nodes(&seeder) > 0),
        "the libtorrent seeder never joined the DHT: {}",
        seeder.log_text()
    );
    let magnet = format!("magnet:?xt=urn:btih:{}", hash.hex());
    let boot_addr = format!("127.0.0.1:{boot}");
    let data = d.join("data");
    let started = std::time::Instant::now();
    let (metadata, first) = {
        let mount = Mount::try_start_in(
            Some(&ns),
            &d.join("first"),
            Path::new(&magnet),
            &[
                "--no-trackers",
                "--dht-bootstrap",
                &boot_addr,
                "--data-dir",
                data.to_str().unwrap(),
            ],
            &[("BTT_NO_DHT", "false")],
        )
        .unwrap();
        let shown = wait_until(Duration::from_secs(60), || mount.mnt.join("tree").exists());
        assert!(shown, "no metadata through the DHT\n{}", mount.log());
        let metadata = started.elapsed();
        let mut f = std::fs::File::open(mount.mnt.join("tree/big file.bin")).unwrap();
        let mut buf = vec![0u8; 65536];
        std::io::Read::read_exact(&mut f, &mut buf).unwrap();
        let first = started.elapsed();
        assert_tree_eq(&mount.mnt.join("tree"), &content);
        let log = mount.log();
        assert!(log.contains("peers from the DHT"), "{log}");
        (metadata, first)
    };
    eprintln!(
        "magnet via the DHT: metadata after {:.2} s, first 64 KiB after {:.2} s",
        metadata.as_secs_f64(),
        first.as_secs_f64()
    );
    // A remount starts from the kept metadata and data, without the network.
    let again = Mount::try_start_in(
        Some(&ns),
        &d.join("again"),
        Path::new(&magnet),
        &[
            "--no-trackers",
            "--no-dht",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    assert!(
        again.mnt.join("tree").exists(),
        "shown at once on a remount"
    );
    assert_tree_eq(&again.mnt.join("tree"), &content);
}

/// A single-file torrent of `data` whose info-hash shares its first 16 bits
/// with `node` (a DHT node id), found by trying names: librqbit-dht
/// announces only to nodes that close to the info-hash, and this DHT has
/// eight nodes. Returns the torrent and the file's name.
fn torrent_near(node: &[u8; 20], data: &[u8], dir: &Path) -> (std::path::PathBuf, String) {
    use sha1::{Digest, Sha1};
    let piece = 64 * 1024;
    let hashes: Vec<u8> = data
        .chunks(piece)
        .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
        .collect();
    for n in 0u32.. {
        let name = format!("clip-{n}.bin");
        let mut info = format!(
            "d6:lengthi{}e4:name{}:{name}12:piece lengthi{piece}e6:pieces{}:",
            data.len(),
            name.len(),
            hashes.len()
        )
        .into_bytes();
        info.extend_from_slice(&hashes);
        info.push(b'e');
        let h = Sha1::digest(&info);
        if h[..2] == node[..2] {
            let mut t = b"d4:info".to_vec();
            t.extend_from_slice(&info);
            t.push(b'e');
            let path = dir.join(format!("{name}.torrent"));
            std::fs::write(&path, t).unwrap();
            return (path, name);
        }
    }
    unreachable!()
}

#[test]
fn libtorrent_reads_from_btt_seed_found_only_through_the_dht() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let (boot, nodes) = lt_dht(&ns, 6, d);
    let data = bytes(1_500_000, 7);
    let (torrent, name) = torrent_near(&node_id(&nodes[3]), &data, d);
    let seed_dir = d.join("seed");
    std::fs::create_dir_all(&seed_dir).unwrap();
    std::fs::write(seed_dir.join(&name), &data).unwrap();
    let boot_addr = format!("127.0.0.1:{boot}");
    let port = free_port();
    let mut seed = ns.command(BTT);
    seed.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(&seed_dir)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-trackers"])
        .args(["--dht-bootstrap", &boot_addr])
        .env("BTT_NO_DHT", "false")
        .env("HOME", d.join("home"))
        .env("RUST_LOG", "btt=debug,info");
    let seeder = Proc::spawn("btt seed", &mut seed, &d.join("seed.log"));
    assert!(
        wait_until(Duration::from_secs(30), || seeder
            .log_text()
            .contains("DHT node started")),
        "{}",
        seeder.log_text()
    );
    // libtorrent with the .torrent alone (no tracker in it, no peer given).
    let out = d.join("lt-down");
    std::fs::create_dir_all(&out).unwrap();
    let mut c = ns.command("/usr/bin/python3");
    c.arg(LT_NODE)
        .arg(free_port().to_string())
        .args(["--bootstrap", &boot_addr, "--get"])
        .arg(&torrent)
        .arg(&out);
    let leecher = Proc::spawn("libtorrent leecher", &mut c, &d.join("lt-get.log"));
    let done = wait_until(Duration::from_secs(120), || {
        leecher.log_text().contains("finished")
    });
    assert!(
        done,
        "libtorrent never got it from btt seed through the DHT\n--- seeder ---\n{}",
        seeder.log_text()
    );
    assert!(
        std::fs::read(out.join(&name)).unwrap() == data,
        "byte-exact"
    );
    // And a btt mount finds the same seeder there too.
    let mount = Mount::try_start_in(
        Some(&ns),
        &d.join("m"),
        &torrent,
        &["--no-trackers", "--dht-bootstrap", &boot_addr],
        &[("BTT_NO_DHT", "false")],
    )
    .unwrap();
    let read = read_file_timeout(&mount.mnt.join(&name), Duration::from_secs(90));
    assert!(
        read.as_deref() == Ok(&data[..]),
        "the mount read {:?}",
        read.map(|r| r.len())
    );
}
