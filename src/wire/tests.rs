use super::*;
use proptest::prelude::*;

fn roundtrip(m: Message) {
    let mut b = BytesMut::new();
    m.encode(&mut b);
    let got = decode(&mut b, 1 << 20).unwrap().unwrap();
    assert_eq!(got, m);
    assert!(b.is_empty());
}

#[test]
fn all_messages_roundtrip() {
    let hr = HashReq {
        root: [9; 32],
        base: 1,
        index: 512,
        count: 2,
        proof_layers: 3,
    };
    let blk = BlockRef {
        index: 3,
        begin: 16384,
        length: 16384,
    };
    for m in [
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have(7),
        Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
        Message::Request(blk),
        Message::Piece {
            index: 1,
            begin: 2,
            data: Bytes::from_static(b"hello"),
        },
        Message::Cancel(blk),
        Message::Port(6881),
        Message::Suggest(4),
        Message::HaveAll,
        Message::HaveNone,
        Message::Reject(blk),
        Message::AllowedFast(9),
        Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"de"),
        },
        Message::HashRequest(hr),
        Message::HashReject(hr),
        Message::Hashes {
            req: hr,
            hashes: Bytes::from(vec![5u8; 64]),
        },
    ] {
        roundtrip(m);
    }
}

#[test]
fn need_more_and_limits() {
    let mut b = BytesMut::from(&[0u8, 0, 0, 5, 4, 0][..]);
    assert_eq!(decode(&mut b, 100), Ok(None));
    assert_eq!(b.len(), 6, "nothing consumed on short input");
    let mut b = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
    assert_eq!(
        decode(&mut b, 1 << 17),
        Err(WireError::TooLong {
            len: 0x7fff_ffff,
            max: 1 << 17
        })
    );
    let mut b = BytesMut::from(&[0u8, 0, 0, 2, 4, 1][..]);
    assert_eq!(
        decode(&mut b, 100),
        Err(WireError::BadLength { id: 4, len: 1 })
    );
    let mut b = BytesMut::from(&[0u8, 0, 0, 1, 99][..]);
    assert_eq!(decode(&mut b, 100), Ok(Some(Message::Unknown { id: 99 })));
    // BEP 52: a hash request of the wrong size, hashes not whole.
    let mut b = BytesMut::from(&[0u8, 0, 0, 2, 21, 0][..]);
    assert_eq!(
        decode(&mut b, 100),
        Err(WireError::BadLength { id: 21, len: 1 })
    );
    let mut frame = vec![0u8, 0, 0, 1 + 48 + 5, 22];
    frame.extend([0u8; 53]);
    let mut b = BytesMut::from(&frame[..]);
    assert_eq!(
        decode(&mut b, 200),
        Err(WireError::BadLength { id: 22, len: 53 })
    );
}

#[test]
fn handshake() {
    let h = Handshake::new([1; 20], [2; 20]);
    let e = h.encode();
    let d = Handshake::decode(&e).unwrap();
    assert!(d.supports_extensions() && d.supports_fast() && !d.supports_v2());
    assert_eq!(d, h);
    let v2 = Handshake::decode(&h.with_v2(true).encode()).unwrap();
    assert!(v2.supports_v2() && v2.supports_fast());
    assert_eq!(v2.reserved[7], 0x14, "BEP 52's bit beside BEP 6's");
    let mut bad = e;
    bad[3] = b'x';
    assert_eq!(Handshake::decode(&bad), Err(WireError::BadProtocol));
}

#[test]
fn bep6_allowed_fast_vector() {
    let set = allowed_fast_set("80.4.4.200".parse().unwrap(), &[0xaa; 20], 1313, 9);
    assert_eq!(set, vec![1059, 431, 808, 1217, 287, 376, 1188, 353, 508]);
}

#[test]
fn ext_handshake_roundtrip_and_extra() {
    let mut h = ExtHandshake {
        port: Some(6881),
        client: Some("btt".into()),
        reqq: Some(250),
        ..Default::default()
    };
    h.m.insert("ut_metadata".into(), 3);
    h.extra
        .insert("x_price".into(), bendy::value::Value::Integer(2000));
    let d = ExtHandshake::decode(&h.encode()).unwrap();
    assert_eq!(d, h);
    assert!(ExtHandshake::decode(b"i1e").is_err());
    assert!(ExtHandshake::decode(b"d1:m").is_err());
}

proptest! {
    #[test]
    fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..400) {
        let mut b = BytesMut::from(&data[..]);
        // Drain until error or need-more; must terminate and never panic.
        for _ in 0..400 {
            match decode(&mut b, max) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
        let _ = ExtHandshake::decode(&data);
    }

    #[test]
    fn piece_roundtrip(index: u32, begin: u32, data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let m = Message::Piece { index, begin, data: Bytes::from(data.clone()) };
        let mut b = BytesMut::new();
        m.encode(&mut b);
        let mut hdr = Message::piece_header(index, begin, data.len()).to_vec();
        hdr.extend_from_slice(&data);
        prop_assert_eq!(&b[..], &hdr[..]);
        prop_assert_eq!(decode(&mut b, 1 << 20).unwrap().unwrap(), m);
    }
}
