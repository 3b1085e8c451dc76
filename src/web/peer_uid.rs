//! Who is asking, on this host: the user owning the other end of a loopback
//! TCP connection, from the kernel's socket table (`/proc/net/tcp`,
//! `/proc/net/tcp6`). Without a token the web face is its user's alone,
//! like the mount itself without `allow_other`: another local user (any
//! account can reach 127.0.0.1) is refused.

use std::net::{IpAddr, SocketAddr};

/// An address as the socket table prints it (`0100007F:1F90`).
fn hex(a: &SocketAddr) -> String {
    let ip = match a.ip() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_ne_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
            .collect(),
    };
    format!("{ip}:{:04X}", a.port())
}

/// The uid in the table's line whose local end is `peer` and remote end is
/// `us` (the client's socket).
fn find(table: &str, peer: &SocketAddr, us: &SocketAddr) -> Option<u32> {
    let (p, u) = (hex(peer), hex(us));
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == p && f[2] == u).then(|| f[7].parse().ok())?
    })
}

/// Socket-table lookups so far (tests count them).
#[cfg(test)]
pub static LOOKUPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The user that owns the client socket `peer` connected to `us`, if it is
/// on this host.
pub fn of(peer: &SocketAddr, us: &SocketAddr) -> Option<u32> {
    #[cfg(test)]
    LOOKUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let table = match peer {
        SocketAddr::V4(_) => "/proc/net/tcp",
        SocketAddr::V6(_) => "/proc/net/tcp6",
    };
    find(&std::fs::read_to_string(table).ok()?, peer, us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_socket_line_gives_its_user() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000 65534        0 2 1\n\
   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        let us: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        assert_eq!(hex(&us), "0100007F:1F90");
        assert_eq!(
            find(table, &peer, &us),
            Some(65534),
            "the client's own line"
        );
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(find(table, &other, &us), None);
        assert_eq!(
            hex(&"[::1]:80".parse().unwrap()),
            "00000000000000000000000001000000:0050"
        );
    }
}
