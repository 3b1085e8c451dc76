//! BEP 9 `ut_metadata`, serving side: a peer that has only the info-hash
//! asks for the info dictionary in 16 KiB pieces. (Fetching it is
//! [`crate::magnet`]'s job, before any engine exists.)

use crate::engine::peer::Session;
use crate::wire::{self, ExtHandshake, Message};
use bytes::Bytes;
use std::sync::atomic::Ordering;

/// Messages waiting for a peer beyond which its metadata requests are
/// refused (each reply holds a 16 KiB piece).
const MAX_METADATA_QUEUED: usize = 64;

/// `ut_metadata` on one connection.
#[derive(Debug, Default)]
pub(in crate::engine) struct MetadataState {
    /// The id the peer wants `ut_metadata` messages on (0: it does not).
    pub(in crate::engine) their_id: u8,
}

impl Session {
    pub(in crate::engine) fn metadata_handshake(&mut self, h: &ExtHandshake) {
        self.metadata.their_id = h.m.get(wire::metadata::NAME).copied().unwrap_or(0);
    }

    /// BEP 9: a peer with only the info-hash asks for the info dictionary.
    /// A reply waits in the writer's queue; while more than
    /// [`MAX_METADATA_QUEUED`] messages wait there, requests are refused, so
    /// a peer that asks and does not read holds at most that many pieces.
    pub(in crate::engine) fn on_metadata_msg(&mut self, payload: &Bytes) {
        use wire::metadata::{piece_of, MetadataMsg};
        let Ok(MetadataMsg::Request { piece }) = MetadataMsg::decode(payload) else {
            return; // data or rejects for us: we never ask an engine's peers
        };
        if self.metadata.their_id == 0 {
            return;
        }
        let info = &self.t.meta.info_bytes;
        let reply = match piece_of(info, piece) {
            Some(data) if self.link.queued.msgs.load(Ordering::Relaxed) <= MAX_METADATA_QUEUED => {
                MetadataMsg::Data {
                    piece,
                    total_size: info.len() as u64,
                    data: Bytes::copy_from_slice(data),
                }
            }
            _ => MetadataMsg::Reject { piece },
        };
        let id = self.metadata.their_id;
        self.send(Message::Extended {
            id,
            payload: Bytes::from(reply.encode()),
        });
    }
}
