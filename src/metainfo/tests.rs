use super::*;

fn single(len: u64, pl: u64) -> Vec<u8> {
    let n = len.div_ceil(pl) as usize;
    let pieces = vec![7u8; n * 20];
    let mut v = format!("d8:announce20:http://127.0.0.1:1/a4:infod6:lengthi{len}e4:name5:a.bin12:piece lengthi{pl}e6:pieces{}:", pieces.len()).into_bytes();
    v.extend_from_slice(&pieces);
    v.extend_from_slice(b"ee");
    v
}

fn multi(files: &[(&str, u64, bool)], pl: u64) -> Vec<u8> {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let n = total.div_ceil(pl) as usize;
    let mut list = String::new();
    for (p, len, pad) in files {
        let comps: String = p.split('/').map(|c| format!("{}:{}", c.len(), c)).collect();
        let attr = if *pad { "4:attr1:p" } else { "" };
        list += &format!("d{attr}6:lengthi{len}e4:pathl{comps}ee");
    }
    let mut v = format!(
        "d4:infod5:filesl{list}e4:name3:dir12:piece lengthi{pl}e6:pieces{}:",
        n * 20
    )
    .into_bytes();
    v.extend(std::iter::repeat_n(1u8, n * 20));
    v.extend_from_slice(b"ee");
    v
}

#[test]
fn single_file_and_info_hash_of_raw_bytes() {
    let t = single(100_000, 32768);
    let m = Metainfo::from_bytes(&t).unwrap();
    assert_eq!(m.num_pieces(), 4);
    assert_eq!(m.piece_size(3), 100_000 - 3 * 32768);
    assert_eq!(m.trackers, vec![vec!["http://127.0.0.1:1/a".to_string()]]);
    let start = t.windows(6).position(|w| w == b"4:info").unwrap() + 6;
    let raw = &t[start..t.len() - 1];
    assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(raw)));
    assert_eq!(m.info_bytes, raw);
}

#[test]
fn multi_file_zero_length_spanning_and_padding() {
    let t = multi(
        &[
            ("a", 10, false),
            ("empty", 0, false),
            ("pad", 6, true),
            ("sub/b c", 40, false),
            ("ü", 1, false),
        ],
        16,
    );
    let m = Metainfo::from_bytes(&t).unwrap();
    assert_eq!(m.total_length, 57);
    assert_eq!(m.num_pieces(), 4);
    let comps = |i| m.components(i).map(|(c, _)| c).collect::<Vec<_>>();
    assert_eq!(comps(3), vec!["dir", "sub", "b c"]);
    assert_eq!(m.path(3), "sub/b c");
    assert_eq!(comps(4), vec!["dir", "ü"]);
    assert_eq!(m.rel_path(3), std::path::Path::new("dir/sub/b c"));
    assert!(m.files[2].padding);
    // piece 0 covers a (10) + pad (6); the zero-length file is skipped.
    let s = m.piece_slices(0);
    assert_eq!(
        s.iter().map(|s| (s.file, s.len)).collect::<Vec<_>>(),
        vec![(0, 10), (2, 6)]
    );
    // piece 1 is inside `b c`
    assert_eq!(
        m.piece_slices(1),
        vec![FileSlice {
            file: 3,
            file_offset: 0,
            len: 16,
            torrent_offset: 16
        }]
    );
    // last piece spans `b c` and `ü`
    let s = m.piece_slices(3);
    assert_eq!(
        s.iter()
            .map(|s| (s.file, s.file_offset, s.len))
            .collect::<Vec<_>>(),
        vec![(3, 32, 8), (4, 0, 1)]
    );
    assert_eq!(m.pieces_for_range(15, 2), 0..2);
    assert_eq!(m.pieces_for_range(0, 0), 0..0);
}

#[test]
fn unsafe_paths_are_rejected() {
    for bad in ["..", "x/../..", "."] {
        let t = multi(&[(bad, 1, false)], 16);
        assert!(
            matches!(Metainfo::from_bytes(&t), Err(MetainfoError::UnsafePath(_))),
            "{bad}"
        );
    }
    let t = multi(&[("a\0b", 1, false)], 16);
    assert!(matches!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::UnsafePath(_))
    ));
    let mut t = single(10, 16);
    let at = t.windows(5).position(|w| w == b"a.bin").unwrap();
    t[at..at + 5].copy_from_slice(b"/etc/");
    assert!(matches!(
        Metainfo::from_bytes(&t),
        Err(MetainfoError::UnsafePath(_))
    ));
}

#[test]
fn corrupt_torrents_give_named_errors() {
    let t = single(100_000, 32768);
    for cut in [0, 1, 10, t.len() / 2, t.len() - 1] {
        let e = Metainfo::from_bytes(&t[..cut]).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
    assert_eq!(
        Metainfo::from_bytes(b"i3e").unwrap_err(),
        MetainfoError::NotADict
    );
    assert_eq!(
        Metainfo::from_bytes(b"d3:fooi1ee").unwrap_err(),
        MetainfoError::Missing("info")
    );
    let mut t2 = single(100_000, 65536);
    let at = t2.windows(7).position(|w| w == b"i65536e").unwrap();
    t2[at..at + 7].copy_from_slice(b"i32768e");
    let e = Metainfo::from_bytes(&t2).unwrap_err();
    assert!(
        matches!(e, MetainfoError::PieceCount { have: 2, need: 4 }),
        "{e}"
    );
    let e = Metainfo::from_bytes(b"d4:infod6:lengthi0e4:name1:a12:piece lengthi-5e6:pieces0:ee")
        .unwrap_err();
    assert!(e.to_string().contains("piece length"), "{e}");
}

#[test]
fn duplicate_paths_are_rejected() {
    let t = multi(&[("a", 1, false), ("a", 1, false)], 16);
    assert!(Metainfo::from_bytes(&t)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    for files in [
        [("a/b", 1, false), ("a", 1, false)],
        [("a", 1, false), ("a/b/c", 1, false)],
    ] {
        let e = Metainfo::from_bytes(&multi(&files, 16)).unwrap_err();
        assert!(e.to_string().contains("both a file and a directory"), "{e}");
    }
    let one = Metainfo::from_bytes(&single(10, 16)).unwrap();
    assert_eq!(one.path(0), "");
    assert_eq!(one.rel_path(0), std::path::Path::new("a.bin"));
}

#[test]
fn magnets() {
    let m = Magnet::parse("magnet:?xt=urn:btih:0123456789abcdef0123456789ABCDEF01234567&dn=x%20y&tr=udp%3A%2F%2F127.0.0.1%3A6969&x.pe=127.0.0.1:5000").unwrap();
    assert_eq!(
        m.info_hash.hex(),
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(m.display_name.as_deref(), Some("x y"));
    assert_eq!(m.trackers, vec!["udp://127.0.0.1:6969"]);
    assert_eq!(m.peers, vec!["127.0.0.1:5000"]);
    let b32 = Magnet::parse("magnet:?xt=urn:btih:AERUKZ4JVPG66AJDIVTYTK6N54ASGRLH").unwrap();
    assert_eq!(
        b32.info_hash.hex(),
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert!(m.selects(7) && m.select.is_none());
    let so =
        Magnet::parse("magnet:?xt=urn:btih:0123456789abcdef0123456789ABCDEF01234567&so=0,2,4-6")
            .unwrap();
    assert_eq!(so.select, Some(vec![0..=0, 2..=2, 4..=6]));
    assert!(so.selects(5) && !so.selects(3) && !so.selects(7));
    for bad in ["so=x", "so=5-2", "so=1-"] {
        let uri = format!("magnet:?xt=urn:btih:0123456789abcdef0123456789ABCDEF01234567&{bad}");
        assert!(Magnet::parse(&uri).is_err(), "{bad}");
    }
    assert!(Magnet::parse("magnet:?dn=x").is_err());
    assert!(Magnet::parse("http://x").is_err());
    assert!(Magnet::parse("magnet:?xt=urn:btih:zz").is_err());
    // A hybrid's magnet goes by its v1 hash and keeps both; a v2-only one
    // by its v2 hash cut to 20 bytes.
    let h2 = "d244125a5b91263698b7c3fd28a1b4bff0270ce06be1876d2097c5ee9220dfa9";
    let hy = format!(
        "magnet:?xt=urn:btih:0123456789abcdef0123456789ABCDEF01234567&xt=urn:btmh:1220{h2}"
    );
    assert_eq!(
        Magnet::parse(&hy).unwrap().info_hash.hex(),
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert_eq!(
        Magnet::parse(&hy).unwrap().v2.map(hex),
        Some(h2.to_string())
    );
    let v2 = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{h2}")).unwrap();
    assert_eq!(v2.info_hash.hex(), h2[..40]);
    assert_eq!((v2.v1, v2.v2.map(hex)), (None, Some(h2.to_string())));
    for bad in [
        format!("1114{h2}"),
        "1220abcd".into(),
        format!("1220{h2}00"),
    ] {
        let e = Magnet::parse(&format!("magnet:?xt=urn:btmh:{bad}")).unwrap_err();
        assert!(e.to_string().contains("btmh"), "{bad}: {e}");
    }
}

fn hex(h: [u8; 32]) -> String {
    data_encoding::HEXLOWER.encode(&h)
}

/// The file list is read as a stream: unknown keys (with nested values) in a
/// file's dict are skipped, and every wrong shape is still a named error.
#[test]
fn the_streamed_file_list_skips_unknown_keys_and_names_wrong_shapes() {
    let info = |files: &str| {
        let pieces = "x".repeat(20);
        format!("d4:infod5:files{files}4:name1:t12:piece lengthi16e6:pieces20:{pieces}ee")
            .into_bytes()
    };
    let t = info("ld6:lengthi3e4:pathl1:ae5:sha1xld1:ali1eeeeed4:attr1:p6:lengthi2e4:pathl1:beee");
    let m = Metainfo::from_bytes(&t).unwrap();
    assert_eq!(m.files.len(), 2);
    assert_eq!(m.rel_path(0), std::path::Path::new("t/a"));
    assert!(m.files[1].padding && m.total_length == 5);
    for (files, want) in [
        ("le", "empty list"),
        ("li1ee", "wrong type"),
        ("ld4:pathl1:aeee", "files.length"),
        ("ld6:lengthi1eee", "files.path"),
        ("ld6:length1:x4:pathl1:aeee", "files.length"),
        ("ld6:lengthi1e4:pathleee", "unsafe path"),
        ("ld6:lengthi1e4:pathli1eeee", "files.path"),
        ("ld6:lengthi-1e4:pathl1:aeee", "negative"),
        ("i5e", "wrong type"),
    ] {
        let e = Metainfo::from_bytes(&info(files)).unwrap_err().to_string();
        assert!(e.contains(want), "{files}: {e}");
    }
    let both = b"d4:infod5:filesld6:lengthi1e4:pathl1:aeee6:lengthi1e4:name1:t12:piece lengthi16e6:pieces20:xxxxxxxxxxxxxxxxxxxxee";
    let e = Metainfo::from_bytes(both).unwrap_err().to_string();
    assert!(e.contains("both"), "{e}");
}

#[test]
fn a_torrent_rebuilt_from_its_info_dict_is_the_same_torrent() {
    let t = multi(&[("a", 10, false), ("sub/b", 40, false)], 16);
    let m = Metainfo::from_bytes(&t).unwrap();
    let again = Metainfo::from_info(&m.info_bytes, vec![vec!["udp://127.0.0.1:1".into()]]).unwrap();
    assert_eq!(again.info_hash, m.info_hash);
    assert_eq!(
        (again.files.clone(), again.paths.clone()),
        (m.files.clone(), m.paths.clone())
    );
    let file = Metainfo::from_bytes(&again.to_torrent_bytes()).unwrap();
    assert_eq!(file.info_hash, m.info_hash);
    assert_eq!(file.trackers, again.trackers);
    let magnet = Magnet::parse(&file.magnet()).unwrap();
    assert_eq!(magnet.info_hash, m.info_hash);
    assert_eq!(magnet.display_name.as_deref(), Some("dir"));
    assert_eq!(magnet.trackers, vec!["udp://127.0.0.1:1"]);
}

/// The content of `testdata/lt_*.torrent`, which libtorrent 2.0.8 made
/// (`tests/lt_make.py fx OUT v2|hybrid 32768`): three pieces, one piece
/// under a block, and exactly one block in a subfolder.
pub(crate) fn lt_fixture() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "a.bin",
            (0..70000u32).map(|i| ((i * 7 + 3) % 256) as u8).collect(),
        ),
        ("b.txt", b"hello v2\n".to_vec()),
        ("sub/c.bin", vec![b'A'; 16384]),
    ]
}

/// The torrent's content as its pieces see it: files and padding.
fn content_of(m: &Metainfo, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, f) in m.files.iter().enumerate() {
        match f.padding {
            true => out.resize(out.len() + f.length as usize, 0),
            false => {
                let (_, data) = files.iter().find(|(p, _)| *p == m.path(i)).unwrap();
                out.extend_from_slice(data);
            }
        }
    }
    out
}

#[test]
fn libtorrent_v2_and_hybrid_torrents_parse_and_every_piece_checks() {
    for (raw, v1, v2) in [
        (
            &include_bytes!("testdata/lt_v2.torrent")[..],
            None,
            "d244125a5b91263698b7c3fd28a1b4bff0270ce06be1876d2097c5ee9220dfa9",
        ),
        (
            &include_bytes!("testdata/lt_hybrid.torrent")[..],
            Some("99897c7188ceacfe892c2d87dfbfc6ba32b2b5cb"),
            "3abfdfc301977a1f59652ecd685bb8c219128f2486d825809859c942c2f84e67",
        ),
    ] {
        let m = Metainfo::from_bytes(raw).unwrap();
        let h2 = data_encoding::HEXLOWER.encode(&m.v2.as_ref().unwrap().info_hash);
        assert_eq!(h2, v2);
        // A v2-only torrent goes by its v2 hash's first 20 bytes.
        assert_eq!(m.info_hash.hex(), v1.unwrap_or(&v2[..40]));
        assert_eq!(m.v2_only(), v1.is_none());
        // A hybrid is in two swarms, a v2-only torrent in one.
        let short: [u8; 20] = m.v2.as_ref().unwrap().info_hash[..20].try_into().unwrap();
        assert_eq!(m.swarms().len(), if v1.is_some() { 2 } else { 1 });
        assert!(m.answers_to(&short) && m.answers_to(&m.info_hash.0) && !m.answers_to(&[0; 20]));
        assert_eq!(m.num_pieces(), 5);
        assert_eq!(m.name, "fx");
        let shown: Vec<&str> = (0..m.files.len())
            .filter(|&i| !m.files[i].padding)
            .map(|i| m.path(i))
            .collect();
        assert_eq!(shown, vec!["a.bin", "b.txt", "sub/c.bin"]);
        let content = content_of(&m, &lt_fixture());
        assert_eq!(content.len() as u64, m.total_length);
        for p in 0..m.num_pieces() {
            let s = m.piece_offset(p) as usize;
            let mut piece = content[s..s + m.piece_size(p) as usize].to_vec();
            assert!(m.piece_ok(p, &piece), "piece {p}");
            // Fed a chunk at a time (odd sizes, blocks, whole), the same.
            let fed = |piece: &[u8], chunk: usize| {
                let mut c = m.piece_check(p);
                piece.chunks(chunk).for_each(|d| c.update(d));
                c.ok()
            };
            for chunk in [1000, 16384, 40000, piece.len().max(1)] {
                assert!(fed(&piece, chunk), "piece {p} in chunks of {chunk}");
            }
            piece[0] ^= 1;
            assert!(!m.piece_ok(p, &piece), "piece {p} altered");
            assert!(!fed(&piece, 16384), "piece {p} altered, in chunks");
            piece[0] ^= 1;
            let last = piece.len() - 1;
            piece[last] ^= 1;
            let padded = m.v2.as_ref().unwrap().data_len(p) < piece.len();
            assert_eq!(
                fed(&piece, 16384),
                m.piece_ok(p, &piece),
                "piece {p}, last byte"
            );
            assert!(padded || !fed(&piece, 16384));
        }
        assert!(m.magnet().contains(&format!("xt=urn:btmh:1220{v2}")));
        // Kept as a .torrent (a magnet's metadata), it is the same torrent.
        let again = Metainfo::from_bytes(&m.to_torrent_bytes()).unwrap();
        assert_eq!(again.info_hash, m.info_hash);
        assert_eq!(again.num_pieces(), 5);
    }
}

#[test]
fn v2_torrents_with_wrong_or_missing_layers_are_refused() {
    let raw = include_bytes!("testdata/lt_v2.torrent");
    let at = raw
        .windows(b"12:piece layers".len())
        .position(|w| w == b"12:piece layers")
        .unwrap();
    // Without its piece layers (the dict runs to the last byte but one).
    let mut none = raw[..at].to_vec();
    none.push(b'e');
    let e = Metainfo::from_bytes(&none).unwrap_err();
    assert!(e.to_string().contains("piece layers"), "{e}");
    // With one hash altered.
    let mut bad = raw.to_vec();
    let n = bad.len();
    bad[n - 3] ^= 1;
    let e = Metainfo::from_bytes(&bad).unwrap_err();
    assert!(e.to_string().contains("does not match its root"), "{e}");
    // An unknown meta version.
    let mut v3 = raw.to_vec();
    let at = v3
        .windows(18)
        .position(|w| w == b"12:meta versioni2e")
        .unwrap();
    v3[at + 16] = b'3';
    let e = Metainfo::from_bytes(&v3).unwrap_err();
    assert!(e.to_string().contains("version 3"), "{e}");
}
