//! BEP 10 extensions on a peer connection, one handler each: the registry
//! here names our message ids and writes our extension handshake; a
//! handler's module holds its per-connection state and answers its
//! messages (as methods of the session, whose state they share).
//!
//! - [`metadata`]: BEP 9 `ut_metadata`, serving the info dictionary.
//! - [`pay`]: `btt_pay`, the payment channel's messages (buyer and seller).
//! - [`pex`]: BEP 11 `ut_pex`, peers telling each other of peers.

pub(super) mod metadata;
pub(super) mod pay;
pub(super) mod pex;

use super::Torrent;
use crate::wire::{self, ExtHandshake};

/// The id we receive BEP 11 `ut_pex` on.
pub const PEX_EXT_ID: u8 = 1;
/// The id we receive BEP 9 `ut_metadata` on.
pub const METADATA_EXT_ID: u8 = 2;
/// Our id for the payment extension (whose name the hooks give): the
/// engine routes its messages and knows nothing of their content.
pub const PAY_EXT_ID: u8 = 7;

/// An extension of ours, by the id a peer sends it to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ext {
    Metadata,
    Pay,
    Pex,
}

impl Ext {
    pub(super) fn ours(id: u8) -> Option<Ext> {
        match id {
            METADATA_EXT_ID => Some(Ext::Metadata),
            PAY_EXT_ID => Some(Ext::Pay),
            PEX_EXT_ID => Some(Ext::Pex),
            _ => None,
        }
    }
}

/// Our extension handshake for torrent `t`, advertising `reqq` requests.
pub(super) fn our_handshake(t: &Torrent, reqq: usize) -> ExtHandshake {
    let mut h = ExtHandshake {
        port: t.listen_addr().map(|a| a.port()),
        client: Some(concat!("btt ", env!("CARGO_PKG_VERSION")).into()),
        reqq: Some(reqq as u32),
        metadata_size: Some(t.meta.info_bytes.len() as u64),
        ..Default::default()
    };
    h.m.insert(wire::metadata::NAME.into(), METADATA_EXT_ID);
    if !t.meta.private {
        h.m.insert(wire::pex::NAME.into(), PEX_EXT_ID);
    }
    pay::add_to_handshake(t, &mut h);
    h
}
