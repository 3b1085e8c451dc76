//! Magnet URIs (BEP 9): `magnet:?xt=urn:btih:<hex or base32>&dn=…&tr=…&x.pe=…`.
//! Only parsing lives here; fetching the info dict from peers is the engine's job.

use super::{InfoHash, MetainfoError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    pub display_name: Option<String>,
    pub trackers: Vec<String>,
    pub peers: Vec<String>,
}

impl Magnet {
    pub fn parse(uri: &str) -> Result<Magnet, MetainfoError> {
        let err = |s: &str| MetainfoError::Magnet(s.to_string());
        let url = url::Url::parse(uri).map_err(|e| err(&e.to_string()))?;
        if url.scheme() != "magnet" {
            return Err(err("scheme is not `magnet:`"));
        }
        let mut info_hash = None;
        let mut m = Magnet {
            info_hash: InfoHash([0; 20]),
            display_name: None,
            trackers: vec![],
            peers: vec![],
        };
        for (k, v) in url.query_pairs() {
            match &*k {
                "xt" => {
                    if let Some(h) = v.strip_prefix("urn:btih:") {
                        let raw = match h.len() {
                            40 => data_encoding::HEXLOWER_PERMISSIVE.decode(h.as_bytes()),
                            32 => data_encoding::BASE32.decode(h.to_ascii_uppercase().as_bytes()),
                            _ => return Err(err("btih must be 40 hex or 32 base32 characters")),
                        }
                        .map_err(|_| err("btih is not valid hex/base32"))?;
                        info_hash = Some(InfoHash(raw.try_into().map_err(|_| err("btih length"))?));
                    }
                }
                "dn" => m.display_name = Some(v.into_owned()),
                "tr" => m.trackers.push(v.into_owned()),
                "x.pe" => m.peers.push(v.into_owned()),
                _ => {}
            }
        }
        m.info_hash = info_hash.ok_or_else(|| err("no `xt=urn:btih:` (v1 info-hash)"))?;
        Ok(m)
    }
}
