//! BitTorrent peer wire protocol: BEP 3 messages, BEP 6 fast extension, BEP 10
//! extension protocol framing, BEP 52 hash requests.
//!
//! Sans-io: [`decode`] takes a buffer and returns a message, "need more" or an error;
//! it never panics, whatever the bytes (see the property tests), and refuses frames
//! longer than a caller-set maximum so a hostile peer cannot make us allocate.

mod ext;
pub mod metadata;
pub mod pex;
#[cfg(test)]
mod tests;

pub use ext::{ExtError, ExtHandshake};

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// The block size every client uses; larger requests are rejected by most peers.
pub const BLOCK_SIZE: u32 = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("handshake: not the BitTorrent protocol")]
    BadProtocol,
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("message id {id} has a bad length {len}")]
    BadLength { id: u8, len: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
}

impl Handshake {
    pub fn new(info_hash: [u8; 20], peer_id: [u8; 20]) -> Self {
        let mut reserved = [0u8; 8];
        reserved[5] |= 0x10; // BEP 10 extension protocol
        reserved[7] |= 0x04; // BEP 6 fast extension
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }
    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & 0x10 != 0
    }
    pub fn supports_fast(&self) -> bool {
        self.reserved[7] & 0x04 != 0
    }
    /// BEP 52: the sender speaks v2 (hash requests) for this torrent.
    pub fn with_v2(mut self, v2: bool) -> Self {
        if v2 {
            self.reserved[7] |= 0x10;
        }
        self
    }
    pub fn supports_v2(&self) -> bool {
        self.reserved[7] & 0x10 != 0
    }
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0] = 19;
        b[1..20].copy_from_slice(PROTOCOL);
        b[20..28].copy_from_slice(&self.reserved);
        b[28..48].copy_from_slice(&self.info_hash);
        b[48..68].copy_from_slice(&self.peer_id);
        b
    }
    pub fn decode(b: &[u8; HANDSHAKE_LEN]) -> Result<Self, WireError> {
        if b[0] != 19 || &b[1..20] != PROTOCOL {
            return Err(WireError::BadProtocol);
        }
        Ok(Handshake {
            reserved: b[20..28].try_into().expect("8"),
            info_hash: b[28..48].try_into().expect("20"),
            peer_id: b[48..68].try_into().expect("20"),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockRef {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// A BEP 52 hash request (and the header of its answer or refusal): of the
/// merkle tree of the file whose root is `root`, `count` hashes of layer
/// `base` (0: 16 KiB blocks) from `index`, with the uncle hashes of
/// `proof_layers` layers above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashReq {
    pub root: [u8; 32],
    pub base: u32,
    pub index: u32,
    pub count: u32,
    pub proof_layers: u32,
}

impl HashReq {
    const LEN: usize = 48;

    fn get(f: &mut Bytes) -> HashReq {
        let mut root = [0u8; 32];
        f.copy_to_slice(&mut root);
        HashReq {
            root,
            base: f.get_u32(),
            index: f.get_u32(),
            count: f.get_u32(),
            proof_layers: f.get_u32(),
        }
    }

    fn put(&self, out: &mut BytesMut) {
        out.put_slice(&self.root);
        for v in [self.base, self.index, self.count, self.proof_layers] {
            out.put_u32(v);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        index: u32,
        begin: u32,
        data: Bytes,
    },
    Cancel(BlockRef),
    Port(u16),
    // BEP 6
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    // BEP 52
    HashRequest(HashReq),
    /// The hashes asked for, then the uncle hashes (32 bytes each).
    Hashes {
        req: HashReq,
        hashes: Bytes,
    },
    HashReject(HashReq),
    // BEP 10: id 0 is the handshake, others are the ids the receiver assigned.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// An id we do not know; BEP 3 says to ignore it.
    Unknown {
        id: u8,
    },
}

/// Default maximum frame: a 16 KiB block plus header, or a bitfield for up to
/// ~1 M pieces, whichever is larger is set by the caller via [`max_frame_for`].
pub fn max_frame_for(num_pieces: usize) -> usize {
    (BLOCK_SIZE as usize + 13)
        .max(num_pieces.div_ceil(8) + 1)
        .max(1 << 17)
}

/// Length of the complete frame at the start of `buf`, if it is all there.
pub fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > max {
        return Err(WireError::TooLong { len, max });
    }
    Ok(if buf.len() >= 4 + len {
        Some(4 + len)
    } else {
        None
    })
}

/// Takes one message off the front of `buf`. `Ok(None)`: need more bytes.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Message>, WireError> {
    let Some(total) = frame_len(buf, max)? else {
        return Ok(None);
    };
    let mut frame = buf.split_to(total).freeze();
    frame.advance(4);
    if frame.is_empty() {
        return Ok(Some(Message::KeepAlive));
    }
    let id = frame.get_u8();
    let len = frame.len();
    let exact = |n: usize| {
        if len == n {
            Ok(())
        } else {
            Err(WireError::BadLength { id, len })
        }
    };
    let block = |f: &mut Bytes| BlockRef {
        index: f.get_u32(),
        begin: f.get_u32(),
        length: f.get_u32(),
    };
    Ok(Some(match id {
        0 => exact(0).map(|_| Message::Choke)?,
        1 => exact(0).map(|_| Message::Unchoke)?,
        2 => exact(0).map(|_| Message::Interested)?,
        3 => exact(0).map(|_| Message::NotInterested)?,
        4 => exact(4).map(|_| Message::Have(frame.get_u32()))?,
        5 => Message::Bitfield(frame),
        6 => exact(12).map(|_| Message::Request(block(&mut frame)))?,
        7 => {
            if len < 8 {
                return Err(WireError::BadLength { id, len });
            }
            let index = frame.get_u32();
            let begin = frame.get_u32();
            Message::Piece {
                index,
                begin,
                data: frame,
            }
        }
        8 => exact(12).map(|_| Message::Cancel(block(&mut frame)))?,
        9 => exact(2).map(|_| Message::Port(frame.get_u16()))?,
        0x0D => exact(4).map(|_| Message::Suggest(frame.get_u32()))?,
        0x0E => exact(0).map(|_| Message::HaveAll)?,
        0x0F => exact(0).map(|_| Message::HaveNone)?,
        0x10 => exact(12).map(|_| Message::Reject(block(&mut frame)))?,
        0x11 => exact(4).map(|_| Message::AllowedFast(frame.get_u32()))?,
        21 => exact(HashReq::LEN).map(|_| Message::HashRequest(HashReq::get(&mut frame)))?,
        22 => {
            if len < HashReq::LEN || !(len - HashReq::LEN).is_multiple_of(32) {
                return Err(WireError::BadLength { id, len });
            }
            let req = HashReq::get(&mut frame);
            Message::Hashes { req, hashes: frame }
        }
        23 => exact(HashReq::LEN).map(|_| Message::HashReject(HashReq::get(&mut frame)))?,
        20 => {
            if len < 1 {
                return Err(WireError::BadLength { id, len });
            }
            let ext = frame.get_u8();
            Message::Extended {
                id: ext,
                payload: frame,
            }
        }
        other => Message::Unknown { id: other },
    }))
}

impl Message {
    /// Appends the framed message to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let simple = |out: &mut BytesMut, id: u8| {
            out.put_u32(1);
            out.put_u8(id);
        };
        let with_u32 = |out: &mut BytesMut, id: u8, v: u32| {
            out.put_u32(5);
            out.put_u8(id);
            out.put_u32(v);
        };
        let with_block = |out: &mut BytesMut, id: u8, b: &BlockRef| {
            out.put_u32(13);
            out.put_u8(id);
            out.put_u32(b.index);
            out.put_u32(b.begin);
            out.put_u32(b.length);
        };
        match self {
            Message::KeepAlive => out.put_u32(0),
            Message::Choke => simple(out, 0),
            Message::Unchoke => simple(out, 1),
            Message::Interested => simple(out, 2),
            Message::NotInterested => simple(out, 3),
            Message::Have(i) => with_u32(out, 4, *i),
            Message::Bitfield(b) => {
                out.put_u32(1 + b.len() as u32);
                out.put_u8(5);
                out.put_slice(b);
            }
            Message::Request(b) => with_block(out, 6, b),
            Message::Piece { index, begin, data } => {
                out.put_u32(9 + data.len() as u32);
                out.put_u8(7);
                out.put_u32(*index);
                out.put_u32(*begin);
                out.put_slice(data);
            }
            Message::Cancel(b) => with_block(out, 8, b),
            Message::Port(p) => {
                out.put_u32(3);
                out.put_u8(9);
                out.put_u16(*p);
            }
            Message::Suggest(i) => with_u32(out, 0x0D, *i),
            Message::HaveAll => simple(out, 0x0E),
            Message::HaveNone => simple(out, 0x0F),
            Message::Reject(b) => with_block(out, 0x10, b),
            Message::AllowedFast(i) => with_u32(out, 0x11, *i),
            Message::HashRequest(r) | Message::HashReject(r) => {
                out.put_u32(1 + HashReq::LEN as u32);
                out.put_u8(if matches!(self, Message::HashRequest(_)) {
                    21
                } else {
                    23
                });
                r.put(out);
            }
            Message::Hashes { req, hashes } => {
                out.put_u32((1 + HashReq::LEN + hashes.len()) as u32);
                out.put_u8(22);
                req.put(out);
                out.put_slice(hashes);
            }
            Message::Extended { id, payload } => {
                out.put_u32(2 + payload.len() as u32);
                out.put_u8(20);
                out.put_u8(*id);
                out.put_slice(payload);
            }
            Message::Unknown { id } => simple(out, *id),
        }
    }

    /// Header of a piece message, so the payload can be written without copying it.
    pub fn piece_header(index: u32, begin: u32, len: usize) -> [u8; 13] {
        let mut h = [0u8; 13];
        h[..4].copy_from_slice(&(9 + len as u32).to_be_bytes());
        h[4] = 7;
        h[5..9].copy_from_slice(&index.to_be_bytes());
        h[9..13].copy_from_slice(&begin.to_be_bytes());
        h
    }
}

/// BEP 6 allowed-fast set: the pieces a peer at `ip` may request while choked.
pub fn allowed_fast_set(
    ip: std::net::Ipv4Addr,
    info_hash: &[u8; 20],
    num_pieces: usize,
    k: usize,
) -> Vec<u32> {
    use sha1::{Digest, Sha1};
    let mut out = Vec::new();
    if num_pieces == 0 {
        return out;
    }
    let o = ip.octets();
    let mut x = Vec::with_capacity(24);
    x.extend_from_slice(&[o[0], o[1], o[2], 0]);
    x.extend_from_slice(info_hash);
    let k = k.min(num_pieces);
    while out.len() < k {
        x = Sha1::digest(&x).to_vec();
        for i in 0..5 {
            if out.len() >= k {
                break;
            }
            let y = u32::from_be_bytes(x[i * 4..i * 4 + 4].try_into().expect("4"));
            let idx = (y as u64 % num_pieces as u64) as u32;
            if !out.contains(&idx) {
                out.push(idx);
            }
        }
    }
    out
}
