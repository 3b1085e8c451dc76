//! Fetching the info dictionary from one peer (BEP 9), sans-io.
//!
//! Each peer is asked for the whole dictionary on its own and the result is
//! checked against the info-hash: a peer that lies costs only its own
//! attempt, and blame needs no bookkeeping across peers. Memory grows only
//! with what the peer really sent, up to the size it announced (at most
//! [`MAX_SIZE`]), so a peer announcing a huge size and sending nothing costs
//! nothing.

use crate::metainfo::{InfoHash, Magnet};
use crate::wire::metadata::{pieces, MetadataMsg, MAX_SIZE, PIECE};
use sha1::{Digest, Sha1};

/// Requests kept in flight to one peer.
const WINDOW: u32 = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("the peer does not serve metadata (no ut_metadata or metadata_size)")]
    NotServed,
    #[error("the peer announces metadata of {0} bytes (the limit is 64 MiB)")]
    TooBig(u64),
    #[error("the peer refused metadata piece {0}")]
    Rejected(u32),
    #[error("the peer sent metadata piece {piece} we did not ask for or of the wrong size")]
    Unasked { piece: u32 },
    #[error("the metadata the peer sent does not match the info-hash")]
    WrongHash,
}

/// The torrent a link names: the hash peers know it by, and what its info
/// dictionary must hash to (SHA-1 for v1, SHA-256 for v2; a hybrid link
/// may give both, and both must match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    pub wire: InfoHash,
    pub v1: Option<InfoHash>,
    pub v2: Option<[u8; 32]>,
}

impl From<InfoHash> for Want {
    fn from(h: InfoHash) -> Want {
        Want {
            wire: h,
            v1: Some(h),
            v2: None,
        }
    }
}

impl Want {
    /// The hashes a peer may name it by in its handshake: ours on the
    /// wire, and a hybrid link's v2 one (BEP 52's upgrade), 20 bytes.
    pub fn hashes(&self) -> Vec<[u8; 20]> {
        let mut v = vec![self.wire.0];
        if let Some(h) = self.v2 {
            v.push(h[..20].try_into().expect("20"));
        }
        v
    }

    pub fn of(m: &Magnet) -> Want {
        Want {
            wire: m.info_hash,
            v1: m.v1,
            v2: m.v2,
        }
    }

    fn matches(&self, info: &[u8]) -> bool {
        (self.v1.is_some() || self.v2.is_some())
            && self
                .v1
                .is_none_or(|h| InfoHash(Sha1::digest(info).into()) == h)
            && self
                .v2
                .is_none_or(|h| crate::metainfo::v2::sha256(info) == h)
    }
}

/// One peer's attempt.
pub struct FromPeer {
    want: Want,
    size: usize,
    /// Pieces received in order so far are `got`; `asked` is the next to ask.
    got: Vec<u8>,
    asked: u32,
    /// Pieces that came early, out of order (a peer may answer so).
    early: std::collections::BTreeMap<u32, bytes::Bytes>,
}

impl FromPeer {
    /// From the peer's extension handshake: its `metadata_size`. Returns the
    /// attempt and the first requests to send.
    pub fn start(
        want: impl Into<Want>,
        size: Option<u64>,
    ) -> Result<(FromPeer, Vec<MetadataMsg>), FetchError> {
        let size = size.ok_or(FetchError::NotServed)?;
        if size == 0 || size > MAX_SIZE as u64 {
            return Err(FetchError::TooBig(size));
        }
        let mut f = FromPeer {
            want: want.into(),
            size: size as usize,
            got: Vec::new(),
            asked: 0,
            early: Default::default(),
        };
        let first = f.more();
        Ok((f, first))
    }

    fn received(&self) -> u32 {
        (self.got.len() / PIECE) as u32 + self.early.len() as u32
    }

    fn more(&mut self) -> Vec<MetadataMsg> {
        let mut out = Vec::new();
        while self.asked < pieces(self.size) && self.asked < self.received() + WINDOW {
            out.push(MetadataMsg::Request { piece: self.asked });
            self.asked += 1;
        }
        out
    }

    /// Bytes of metadata held so far, of the total.
    pub fn progress(&self) -> (usize, usize) {
        (
            self.got.len() + self.early.values().map(|d| d.len()).sum::<usize>(),
            self.size,
        )
    }

    /// A `ut_metadata` message from the peer: more requests to send, or the
    /// verified info dictionary once it is whole.
    pub fn on_msg(&mut self, m: MetadataMsg) -> Result<Step, FetchError> {
        match m {
            // Serving is the engine's job; a fetcher has nothing to give.
            MetadataMsg::Request { .. } => Ok(Step::More(vec![])),
            MetadataMsg::Reject { piece } => Err(FetchError::Rejected(piece)),
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } => {
                let next = (self.got.len() / PIECE) as u32;
                let ok = total_size == self.size as u64
                    && piece >= next
                    && piece < self.asked
                    && !self.early.contains_key(&piece)
                    && (piece as usize) < pieces(self.size) as usize
                    && data.len() == (self.size - piece as usize * PIECE).min(PIECE);
                if !ok {
                    return Err(FetchError::Unasked { piece });
                }
                self.early.insert(piece, data);
                while let Some(d) = self.early.remove(&((self.got.len() / PIECE) as u32)) {
                    if self.got.is_empty() {
                        self.got.reserve_exact(self.size);
                    }
                    self.got.extend_from_slice(&d);
                    if self.got.len() == self.size {
                        break;
                    }
                }
                if self.got.len() == self.size {
                    if !self.want.matches(&self.got) {
                        return Err(FetchError::WrongHash);
                    }
                    return Ok(Step::Done(std::mem::take(&mut self.got)));
                }
                Ok(Step::More(self.more()))
            }
        }
    }
}

pub enum Step {
    More(Vec<MetadataMsg>),
    Done(Vec<u8>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::metadata::piece_of;
    use bytes::Bytes;

    fn info(len: usize) -> (Vec<u8>, InfoHash) {
        let v: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let h = InfoHash(Sha1::digest(&v).into());
        (v, h)
    }

    fn data(info: &[u8], piece: u32) -> MetadataMsg {
        MetadataMsg::Data {
            piece,
            total_size: info.len() as u64,
            data: Bytes::copy_from_slice(piece_of(info, piece).unwrap()),
        }
    }

    #[test]
    fn a_whole_dictionary_in_any_order_is_checked_and_given() {
        let (v, h) = info(PIECE * 20 + 3);
        let (mut f, first) = FromPeer::start(h, Some(v.len() as u64)).unwrap();
        assert_eq!(first.len(), WINDOW as usize);
        // Answers out of order: piece 1 before 0.
        let mut asked: Vec<u32> = first
            .iter()
            .map(|m| match m {
                MetadataMsg::Request { piece } => *piece,
                _ => unreachable!(),
            })
            .collect();
        asked.swap(0, 1);
        let mut done = None;
        while let Some(p) = (!asked.is_empty()).then(|| asked.remove(0)) {
            match f.on_msg(data(&v, p)).unwrap() {
                Step::More(reqs) => asked.extend(reqs.iter().map(|m| match m {
                    MetadataMsg::Request { piece } => *piece,
                    _ => unreachable!(),
                })),
                Step::Done(d) => done = Some(d),
            }
        }
        assert_eq!(done.as_deref(), Some(&v[..]));
    }

    #[test]
    fn liars_are_caught() {
        let (v, h) = info(PIECE + 10);
        assert_eq!(FromPeer::start(h, None).err(), Some(FetchError::NotServed));
        assert_eq!(
            FromPeer::start(h, Some(MAX_SIZE as u64 + 1)).err(),
            Some(FetchError::TooBig(MAX_SIZE as u64 + 1))
        );
        assert_eq!(
            FromPeer::start(h, Some(0)).err(),
            Some(FetchError::TooBig(0))
        );
        // Wrong bytes: the hash says so.
        let (mut f, _) = FromPeer::start(h, Some(v.len() as u64)).unwrap();
        let mut bad = v.clone();
        bad[5] ^= 1;
        assert!(matches!(f.on_msg(data(&bad, 0)), Ok(Step::More(_))));
        assert_eq!(f.on_msg(data(&bad, 1)).err(), Some(FetchError::WrongHash));
        // A piece twice, a piece not asked, a short piece, another total.
        let (mut f, _) = FromPeer::start(h, Some(v.len() as u64)).unwrap();
        f.on_msg(data(&v, 0)).ok().unwrap();
        assert!(f.on_msg(data(&v, 0)).is_err());
        let (mut f, _) = FromPeer::start(h, Some(v.len() as u64)).unwrap();
        let beyond = MetadataMsg::Data {
            piece: 7,
            total_size: v.len() as u64,
            data: Bytes::from_static(b"abc"),
        };
        assert!(f.on_msg(beyond).is_err());
        let short = MetadataMsg::Data {
            piece: 0,
            total_size: v.len() as u64,
            data: Bytes::from_static(b"abc"),
        };
        assert!(f.on_msg(short).is_err());
        let other = MetadataMsg::Data {
            piece: 1,
            total_size: 5,
            data: Bytes::copy_from_slice(&v[PIECE..]),
        };
        assert!(f.on_msg(other).is_err());
        assert_eq!(
            f.on_msg(MetadataMsg::Reject { piece: 0 }).err(),
            Some(FetchError::Rejected(0))
        );
    }

    #[test]
    fn a_v2_link_checks_the_sha256_and_a_hybrid_one_both() {
        let (v, h1) = info(100);
        let h2 = crate::metainfo::v2::sha256(&v);
        let wire = InfoHash(h2[..20].try_into().unwrap());
        let whole = |want: Want| {
            let (mut f, _) = FromPeer::start(want, Some(v.len() as u64)).unwrap();
            f.on_msg(data(&v, 0))
        };
        let v2 = Want {
            wire,
            v1: None,
            v2: Some(h2),
        };
        assert!(matches!(whole(v2), Ok(Step::Done(_))));
        let hybrid = Want {
            wire: h1,
            v1: Some(h1),
            v2: Some(h2),
        };
        assert!(matches!(whole(hybrid), Ok(Step::Done(_))));
        let wrong = Want {
            v2: Some([1; 32]),
            ..hybrid
        };
        assert_eq!(whole(wrong).err(), Some(FetchError::WrongHash));
        // The 20 bytes on the wire are not a SHA-1 to check against.
        let none = Want {
            wire,
            v1: None,
            v2: None,
        };
        assert_eq!(whole(none).err(), Some(FetchError::WrongHash));
    }
}
