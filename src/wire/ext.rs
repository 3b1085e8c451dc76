//! BEP 10 extension handshake: a bencoded dict in extended message id 0.
//!
//! Unknown keys are kept in `extra` so later extensions (the payment extension)
//! can read their own fields without this module knowing them.

use bendy::value::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExtError {
    #[error("extension handshake is not a bencoded dict: {0}")]
    Bencode(String),
    #[error("extension handshake is not a dict")]
    NotADict,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension name → the id the sender wants to receive it on (0 = disabled).
    pub m: BTreeMap<String, u8>,
    pub port: Option<u16>,
    pub client: Option<String>,
    pub reqq: Option<u32>,
    pub metadata_size: Option<u64>,
    pub extra: BTreeMap<String, Value<'static>>,
}

impl ExtHandshake {
    pub fn decode(payload: &[u8]) -> Result<Self, ExtError> {
        let v = crate::bencode::decode(payload).map_err(|e| ExtError::Bencode(e.to_string()))?;
        let Value::Dict(d) = v.into_owned() else {
            return Err(ExtError::NotADict);
        };
        let mut h = ExtHandshake::default();
        for (k, v) in d {
            let key = String::from_utf8_lossy(&k).into_owned();
            match (key.as_str(), v) {
                ("m", Value::Dict(m)) => {
                    for (name, id) in m {
                        if let Value::Integer(id) = id {
                            if (0..=255).contains(&id) {
                                h.m.insert(String::from_utf8_lossy(&name).into_owned(), id as u8);
                            }
                        }
                    }
                }
                ("p", Value::Integer(p)) if (1..=65535).contains(&p) => h.port = Some(p as u16),
                ("v", Value::Bytes(b)) => h.client = Some(String::from_utf8_lossy(&b).into_owned()),
                ("reqq", Value::Integer(q)) if q > 0 => {
                    h.reqq = Some(q.min(u32::MAX as i64) as u32)
                }
                ("metadata_size", Value::Integer(s)) if s >= 0 => h.metadata_size = Some(s as u64),
                (_, v) => {
                    h.extra.insert(key, v);
                }
            }
        }
        Ok(h)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut d: BTreeMap<Cow<'static, [u8]>, Value<'static>> = BTreeMap::new();
        for (k, v) in &self.extra {
            d.insert(Cow::Owned(k.as_bytes().to_vec()), v.clone());
        }
        let m = self
            .m
            .iter()
            .map(|(k, v)| (Cow::Owned(k.as_bytes().to_vec()), Value::Integer(*v as i64)))
            .collect();
        d.insert(Cow::Borrowed(b"m"), Value::Dict(m));
        if let Some(p) = self.port {
            d.insert(Cow::Borrowed(b"p"), Value::Integer(p as i64));
        }
        if let Some(c) = &self.client {
            d.insert(
                Cow::Borrowed(b"v"),
                Value::Bytes(Cow::Owned(c.as_bytes().to_vec())),
            );
        }
        if let Some(q) = self.reqq {
            d.insert(Cow::Borrowed(b"reqq"), Value::Integer(q as i64));
        }
        if let Some(s) = self.metadata_size {
            d.insert(Cow::Borrowed(b"metadata_size"), Value::Integer(s as i64));
        }
        crate::bencode::encode(&Value::Dict(d))
    }
}
