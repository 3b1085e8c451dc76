//! Magnet URIs (BEP 9): `magnet:?xt=urn:btih:<hex or base32>&dn=…&tr=…&x.pe=…`,
//! and BEP 52's `xt=urn:btmh:1220<SHA-256 hex>` for v2 (a hybrid has both).
//! Only parsing lives here; fetching the info dict from peers is the engine's job.

use super::{InfoHash, MetainfoError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// The hash peers know the torrent by: the v1 info-hash, or for a
    /// v2-only link the v2 one cut to 20 bytes.
    pub info_hash: InfoHash,
    /// The full hashes the link names: what the fetched metadata must match.
    pub v1: Option<InfoHash>,
    pub v2: Option<[u8; 32]>,
    pub display_name: Option<String>,
    pub trackers: Vec<String>,
    pub peers: Vec<String>,
    /// BEP 53 `so=`: the files to fetch, by index (`None`: all of them).
    pub select: Option<Vec<std::ops::RangeInclusive<usize>>>,
}

impl Magnet {
    pub fn parse(uri: &str) -> Result<Magnet, MetainfoError> {
        let err = |s: &str| MetainfoError::Magnet(s.to_string());
        let url = url::Url::parse(uri).map_err(|e| err(&e.to_string()))?;
        if url.scheme() != "magnet" {
            return Err(err("scheme is not `magnet:`"));
        }
        let mut m = Magnet {
            info_hash: InfoHash([0; 20]),
            v1: None,
            v2: None,
            display_name: None,
            trackers: vec![],
            peers: vec![],
            select: None,
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
                        m.v1 = Some(InfoHash(raw.try_into().map_err(|_| err("btih length"))?));
                    } else if let Some(h) = v.strip_prefix("urn:btmh:") {
                        // A multihash: 0x12 (SHA-256), 0x20 (32 bytes), the hash.
                        let raw = data_encoding::HEXLOWER_PERMISSIVE
                            .decode(h.as_bytes())
                            .map_err(|_| err("btmh is not valid hex"))?;
                        match raw.strip_prefix(&[0x12, 0x20][..]) {
                            Some(d) if d.len() == 32 => {
                                m.v2 = Some(d.try_into().expect("32"));
                            }
                            _ => {
                                return Err(err(
                                    "btmh must be 1220 and a SHA-256 in hex (64 characters)",
                                ))
                            }
                        }
                    }
                }
                "dn" => m.display_name = Some(v.into_owned()),
                "tr" => m.trackers.push(v.into_owned()),
                "x.pe" => m.peers.push(v.into_owned()),
                "so" => {
                    let mut sel = m.select.take().unwrap_or_default();
                    for part in v.split(',').filter(|p| !p.is_empty()) {
                        let num = |s: &str| {
                            s.trim()
                                .parse::<usize>()
                                .map_err(|_| err("so= must be file indices like 0,2,4-6"))
                        };
                        let r = match part.split_once('-') {
                            Some((a, b)) => num(a)?..=num(b)?,
                            None => num(part)?..=num(part)?,
                        };
                        if r.is_empty() {
                            return Err(err("so= range runs backwards"));
                        }
                        if sel.len() >= 1024 {
                            return Err(err("so= has more than 1024 ranges"));
                        }
                        sel.push(r);
                    }
                    m.select = Some(sel);
                }
                _ => {}
            }
        }
        m.info_hash = match (m.v1, m.v2) {
            (Some(h), _) => h,
            (None, Some(h)) => InfoHash(h[..20].try_into().expect("20")),
            (None, None) => return Err(err("no `xt=urn:btih:` or `xt=urn:btmh:` (info-hash)")),
        };
        Ok(m)
    }

    /// Whether BEP 53's `so=` selects file `i` (no `so=`: every file).
    pub fn selects(&self, i: usize) -> bool {
        self.select
            .as_ref()
            .is_none_or(|s| s.iter().any(|r| r.contains(&i)))
    }
}
