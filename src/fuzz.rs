//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly), one
//! per parser that reads bytes from a peer, a tracker or a file. Each must
//! return for any input, never panic, and decoded messages must encode back
//! to what decodes the same. On stable, a unit test below replays every
//! input in `fuzz/corpus/` through them, so what a fuzzing run found stays
//! checked by the suite.

use bytes::BytesMut;

/// A .torrent file (bencode, then the metainfo rules).
pub fn metainfo(data: &[u8]) {
    let _ = crate::bencode::decode(data);
    if let Ok(m) = crate::metainfo::Metainfo::from_bytes(data) {
        // What a mount does with it: every file's pieces, and checks of
        // the first and last piece (v1 or v2 hashes).
        for f in &m.files {
            let _ = m.pieces_for_range(f.offset, f.length);
        }
        let last = m.num_pieces().saturating_sub(1);
        for p in [0, last] {
            let _ = m.piece_ok(p, &vec![0u8; m.piece_size(p).min(1 << 20) as usize]);
        }
        // Kept as a .torrent (a magnet's metadata), it is the same torrent.
        let again = crate::metainfo::Metainfo::from_bytes(&m.to_torrent_bytes());
        assert_eq!(
            again.map(|a| a.info_hash).ok(),
            Some(m.info_hash),
            "re-keeps"
        );
    }
}

/// A magnet link.
pub fn magnet(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::metainfo::Magnet::parse(s);
    }
}

/// The peer wire: a handshake, then frames until the buffer runs out.
pub fn wire(data: &[u8]) {
    if let Ok(h) = <&[u8; crate::wire::HANDSHAKE_LEN]>::try_from(
        data.get(..crate::wire::HANDSHAKE_LEN).unwrap_or_default(),
    ) {
        let _ = crate::wire::Handshake::decode(h);
    }
    let mut buf = BytesMut::from(data);
    while let Ok(Some(m)) = crate::wire::decode(&mut buf, 1 << 20) {
        if let crate::wire::Message::Extended { id: 0, payload } = &m {
            let _ = crate::wire::ExtHandshake::decode(payload);
        }
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let again = crate::wire::decode(&mut out, 1 << 20);
        assert!(
            matches!(again, Ok(Some(ref n)) if *n == m),
            "{m:?} re-encodes"
        );
    }
}

/// A `btt_pay` message, and the seller info in an extension handshake.
pub fn pay_msg(data: &[u8]) {
    if let Ok(m) = crate::pay::proto::Msg::decode(data) {
        let again = crate::pay::proto::Msg::decode(&m.encode());
        assert_eq!(again.as_ref().ok(), Some(&m), "re-encodes");
    }
    if let Ok(v) = crate::bencode::decode(data) {
        let _ = crate::pay::proto::SellerInfo::from_value(&v);
    }
}

/// Tracker answers: an HTTP announce body, UDP connect and announce packets.
pub fn tracker(data: &[u8]) {
    let _ = crate::tracker::http::parse_response(data);
    let tid = u32::from_be_bytes([0, 0, 0, 7]);
    let _ = crate::tracker::udp::parse_connect(data, tid);
    let _ = crate::tracker::udp::parse_announce(data, tid);
    let _ = crate::tracker::parse_compact_v4(data);
    let _ = crate::tracker::parse_compact_v6(data);
}

/// BEP 9 `ut_metadata` messages; then the input, split at `|`, as the
/// messages a peer sends to a fetch of a 40 000-byte info dictionary.
pub fn ut_metadata(data: &[u8]) {
    use crate::wire::metadata::MetadataMsg;
    let decode = |b: &[u8]| MetadataMsg::decode(&bytes::Bytes::copy_from_slice(b));
    if let Ok(m) = decode(data) {
        assert_eq!(decode(&m.encode()).ok(), Some(m), "re-encodes");
    }
    let hash = crate::metainfo::InfoHash([0; 20]);
    let (mut fetch, _) =
        crate::magnet::from_peer::FromPeer::start(hash, Some(40_000)).expect("a valid size");
    for part in data.split(|&b| b == b'|') {
        if let Ok(m) = decode(part) {
            if fetch.on_msg(m).is_err() {
                break;
            }
        }
    }
    let (held, total) = fetch.progress();
    assert!(held <= total, "never more than the announced size");
}

/// BEP 11 `ut_pex` messages: bounded whatever they claim, and what decodes
/// re-encodes to the same peers.
pub fn ut_pex(data: &[u8]) {
    use crate::wire::pex::{PexMsg, MAX_TAKE};
    if let Ok(m) = PexMsg::decode(data) {
        assert!(m.added.len() <= 2 * MAX_TAKE && m.dropped.len() <= 2 * MAX_TAKE);
        let again = PexMsg::decode(&m.encode()).expect("re-encodes");
        let sorted = |m: &PexMsg| {
            let (mut a, mut d) = (m.added.clone(), m.dropped.clone());
            a.sort();
            d.sort();
            (a, d)
        };
        assert_eq!(sorted(&again), sorted(&m), "the same peers");
    }
}

/// A target: it must return for any input.
pub type Target = fn(&[u8]);

/// Every target by the name of its folder in `fuzz/corpus`.
pub const TARGETS: &[(&str, Target)] = &[
    ("metainfo", metainfo),
    ("magnet", magnet),
    ("wire", wire),
    ("pay_msg", pay_msg),
    ("tracker", tracker),
    ("ut_metadata", ut_metadata),
    ("ut_pex", ut_pex),
];

#[cfg(test)]
mod tests {
    /// Every corpus input, through its target, on stable.
    #[test]
    fn the_fuzz_corpus_replays() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut n = 0;
        for (name, target) in super::TARGETS {
            let dir = root.join(name);
            let entries =
                std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            for e in entries {
                let p = e.unwrap().path();
                target(&std::fs::read(&p).unwrap());
                n += 1;
            }
        }
        assert!(n >= super::TARGETS.len(), "a corpus for each target");
    }
}
