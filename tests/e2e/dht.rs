//! The DHT (BEP 5), in a network namespace with only loopback made by each
//! test: libtorrent nodes (python3-libtorrent) and btt find each other with
//! no tracker and no --peer.

use crate::harness::*;
use std::path::Path;
use std::process::Command;
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
    let mut c = ns.command("/usr/bin/python3");
    c.arg(LT_NODE).arg(port.to_string());
    if let Some(b) = bootstrap {
        c.args(["--bootstrap", &format!("127.0.0.1:{b}")]);
    }
    if let Some((t, d)) = seed {
        c.arg("--seed").arg(t).arg(d);
    }
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

#[test]
fn a_mount_finds_a_libtorrent_seeder_through_the_dht_alone() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    let content = d.join("seed/tree");
    make_tree(&content, TRICKY);
    let torrent = make_torrent(&content, 64 * 1024, &[]);
    let boot = free_port();
    let bootp = lt_node(&ns, boot, None, None, &d.join("boot.log"));
    let seeder = lt_node(
        &ns,
        free_port(),
        Some(boot),
        Some((&torrent, &d.join("seed"))),
        &d.join("lt-seed.log"),
    );
    // The seeder joins the DHT (and announces there) before the mount asks.
    assert!(
        wait_until(Duration::from_secs(30), || dht_nodes(&seeder) > 0
            && dht_nodes(&bootp) > 0),
        "the libtorrent seeder never joined the DHT: {}",
        seeder.log_text()
    );
    let boot_addr = format!("127.0.0.1:{boot}");
    let mount = Mount::try_start_in(
        Some(&ns),
        d,
        &torrent,
        &["--no-trackers", "--dht-bootstrap", &boot_addr],
        &[("BTT_NO_DHT", "false")],
    )
    .unwrap();
    let read = read_file_timeout(
        &mount.mnt.join("tree/big file.bin"),
        Duration::from_secs(60),
    );
    let log = mount.log();
    assert!(
        read.is_ok(),
        "no read through the DHT's peers: {read:?}\n{log}"
    );
    assert_tree_eq(&mount.mnt.join("tree"), &content);
    assert!(log.contains("peers from the DHT"), "{log}");
    assert!(log.contains("DHT node started"), "{log}");
    let _ = Command::new("true").status();
}

/// A single-file torrent of `data` whose info-hash shares its first 16 bits
/// with `node` (a DHT node id), found by trying names: librqbit-dht
/// announces only to nodes that close to the info-hash, and this DHT has
/// three nodes. Returns the torrent and the file's name.
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
fn btt_seed_announces_to_the_dht_and_a_mount_finds_it_there() {
    let d = tmpdir();
    let d = d.path();
    let ns = NetNs::new(d);
    // librqbit-dht keeps the nodes a bootstrap node tells of, not the
    // bootstrap node itself: a second libtorrent node is the one btt's
    // nodes will know, and the one the torrent is made close to.
    let boot = free_port();
    let bootp = lt_node(&ns, boot, None, None, &d.join("boot.log"));
    let near = lt_node(&ns, free_port(), Some(boot), None, &d.join("near.log"));
    // librqbit-dht bootstraps once: the bootstrap node must already know
    // the other one when btt asks.
    assert!(
        wait_until(Duration::from_secs(30), || dht_nodes(&near) > 0
            && dht_nodes(&bootp) > 0),
        "the libtorrent nodes never met: {}\n{}",
        bootp.log_text(),
        near.log_text()
    );
    let id = near
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("node_id ").map(str::to_string))
        .expect("the node's id");
    let id: [u8; 20] = data_encoding::HEXLOWER
        .decode(id.as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let data = bytes(1_500_000, 7);
    let (torrent, name) = torrent_near(&id, &data, d);
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
        "not found through the DHT ({:?})\n--- seeder ---\n{}\n--- mount ---\n{}",
        read.as_ref().map(|r| r.len()),
        seeder.log_text(),
        mount.log()
    );
}
