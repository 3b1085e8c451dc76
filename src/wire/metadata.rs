//! BEP 9 `ut_metadata` messages: a peer sends the torrent's info dictionary
//! in 16 KiB pieces to a peer that has only the info-hash (a magnet link).
//!
//! The payload of the extended message is a bencoded dict (`msg_type`,
//! `piece`, and for data `total_size`) and, for data, the piece's bytes right
//! after the dict. Sans-io like the rest of the wire.

use bendy::decoding::{Decoder, Object};

/// The extension's name in the BEP 10 handshake.
pub const NAME: &str = "ut_metadata";
/// Metadata travels in pieces of this size (the last one shorter).
pub const PIECE: usize = 16 * 1024;
/// The largest info dictionary we fetch or serve: a torrent of a million
/// files has a 31 MB one.
pub const MAX_SIZE: usize = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMsg {
    Request {
        piece: u32,
    },
    Data {
        piece: u32,
        total_size: u64,
        data: bytes::Bytes,
    },
    Reject {
        piece: u32,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("ut_metadata: not a bencoded dict: {0}")]
    Bencode(String),
    #[error("ut_metadata: missing or bad `{0}`")]
    Field(&'static str),
    #[error("ut_metadata: unknown msg_type {0}")]
    Type(i64),
    #[error("ut_metadata: a data piece of {0} bytes (at most 16 KiB)")]
    TooLong(usize),
}

impl MetadataMsg {
    pub fn decode(payload: &bytes::Bytes) -> Result<MetadataMsg, MetadataError> {
        let bad = |e: bendy::decoding::Error| MetadataError::Bencode(e.to_string());
        let mut d = Decoder::new(payload).with_max_depth(4);
        let Some(Object::Dict(mut dict)) = d.next_object().map_err(bad)? else {
            return Err(MetadataError::Bencode("not a dict".into()));
        };
        let (mut ty, mut piece, mut total) = (None, None, None);
        while let Some((k, v)) = dict.next_pair().map_err(bad)? {
            let int = |v: Object| match v {
                Object::Integer(i) => i.parse::<i64>().ok(),
                _ => None,
            };
            match k {
                b"msg_type" => ty = Some(int(v).ok_or(MetadataError::Field("msg_type"))?),
                b"piece" => piece = Some(int(v).ok_or(MetadataError::Field("piece"))?),
                b"total_size" => total = Some(int(v).ok_or(MetadataError::Field("total_size"))?),
                _ => {}
            }
        }
        let dict_len = dict.into_raw().map_err(bad)?.len();
        let piece = piece
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(MetadataError::Field("piece"))?;
        match ty.ok_or(MetadataError::Field("msg_type"))? {
            0 => Ok(MetadataMsg::Request { piece }),
            1 => {
                let total_size = total
                    .and_then(|t| u64::try_from(t).ok())
                    .ok_or(MetadataError::Field("total_size"))?;
                let data = payload.slice(dict_len..);
                if data.len() > PIECE {
                    return Err(MetadataError::TooLong(data.len()));
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                })
            }
            2 => Ok(MetadataMsg::Reject { piece }),
            t => Err(MetadataError::Type(t)),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        match self {
            MetadataMsg::Request { piece } => {
                format!("d8:msg_typei0e5:piecei{piece}ee").into_bytes()
            }
            MetadataMsg::Reject { piece } => {
                format!("d8:msg_typei2e5:piecei{piece}ee").into_bytes()
            }
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                let mut v = format!("d8:msg_typei1e5:piecei{piece}e10:total_sizei{total_size}ee")
                    .into_bytes();
                v.extend_from_slice(data);
                v
            }
        }
    }
}

/// How many pieces metadata of `size` bytes has.
pub fn pieces(size: usize) -> u32 {
    size.div_ceil(PIECE) as u32
}

/// Piece `piece` of `info` (the raw info dictionary), if it exists.
pub fn piece_of(info: &[u8], piece: u32) -> Option<&[u8]> {
    let start = (piece as usize).checked_mul(PIECE)?;
    (start < info.len()).then(|| &info[start..(start + PIECE).min(info.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn messages_round_trip_and_hostile_ones_are_errors() {
        for m in [
            MetadataMsg::Request { piece: 3 },
            MetadataMsg::Reject { piece: 0 },
            MetadataMsg::Data {
                piece: 1,
                total_size: 20_000,
                data: Bytes::from(vec![7u8; 20_000 - PIECE]),
            },
        ] {
            assert_eq!(MetadataMsg::decode(&Bytes::from(m.encode())), Ok(m));
        }
        // Keys of other clients are skipped; data after the dict is the piece.
        let d = Bytes::from_static(b"d8:msg_typei1e5:piecei0e10:total_sizei3e1:xi5eeabc");
        assert!(
            matches!(MetadataMsg::decode(&d), Ok(MetadataMsg::Data { data, .. }) if &data[..] == b"abc")
        );
        for bad in [
            &b""[..],
            b"i1e",
            b"d8:msg_typei0ee",
            b"d5:piecei0ee",
            b"d8:msg_typei9e5:piecei0ee",
            b"d8:msg_typei0e5:piecei-1ee",
            b"d8:msg_typei1e5:piecei0ee",
            b"d8:msg_type1:x5:piecei0ee",
            b"d8:msg_typei0e5:piecei0e",
        ] {
            assert!(
                MetadataMsg::decode(&Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.extend(vec![0u8; PIECE + 1]);
        assert_eq!(
            MetadataMsg::decode(&Bytes::from(long)),
            Err(MetadataError::TooLong(PIECE + 1))
        );
    }

    #[test]
    fn pieces_of_the_info_dict() {
        let info = vec![1u8; PIECE * 2 + 5];
        assert_eq!(pieces(info.len()), 3);
        assert_eq!(piece_of(&info, 2).map(<[u8]>::len), Some(5));
        assert_eq!(piece_of(&info, 3), None);
        assert_eq!(piece_of(&info, u32::MAX), None);
        assert_eq!(pieces(0), 0);
    }
}
