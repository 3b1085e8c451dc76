//! The `btt_pay` BEP 10 extension messages (spec: `src/pay/btt_pay.md`, included below).
//!
//! Sans-io: bencoded dicts in, typed messages out, and back. Every field is
//! checked for type and size here, so the seller and buyer logic only ever see
//! well-formed values; a malformed message is an error naming the field.
//!
#![doc = include_str!("btt_pay.md")]

use crate::pay::bitcoin::hashes::Hash;
use crate::pay::bitcoin::{ecdsa, OutPoint, PublicKey, ScriptBuf, Txid};
use bendy::value::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The extension's name in the BEP 10 `m` dict.
pub const EXT_NAME: &str = "btt_pay";
/// The id we ask peers to send `btt_pay` messages on.
pub const LOCAL_EXT_ID: u8 = 7;
pub const VERSION: i64 = 1;
/// Payout scripts longer than this are refused (standard scripts are ≤ 34 bytes).
pub const MAX_SCRIPT: usize = 64;
/// A funding transaction larger than this is refused.
pub const MAX_TX: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("btt_pay message is not bencode: {0}")]
    Bencode(String),
    #[error("btt_pay message is not a dict")]
    NotADict,
    #[error("btt_pay message has no valid field {0:?}")]
    Field(&'static str),
    #[error("unknown btt_pay message type {0:?}")]
    UnknownType(String),
}

/// What a seller announces in its extension handshake under `btt_pay`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SellerInfo {
    pub network: String,
    pub node_key: PublicKey,
    /// Price in msat per GiB (see [`crate::pay::price`]).
    pub msat_per_gib: u64,
    /// Bytes served beyond what is paid.
    pub credit: u64,
    pub min_expiry_blocks: u32,
    pub max_expiry_blocks: u32,
    /// Largest capacity accepted unconfirmed, sat.
    pub zero_conf_sat: u64,
}

/// Everything that defines a channel, as the buyer states it in `funded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelTerms {
    pub network: String,
    pub capacity_sat: u64,
    pub fee_sat: u64,
    pub expiry_height: u32,
    pub buyer_key: PublicKey,
    pub seller_key: PublicKey,
    pub buyer_payout: ScriptBuf,
    pub seller_payout: ScriptBuf,
    pub funding: OutPoint,
}

impl ChannelTerms {
    /// The channel's terms on `network` (the wire names it by string; the
    /// receiver checks that string against its own network first).
    pub fn to_terms(&self, network: crate::pay::bitcoin::Network) -> crate::pay::tx::Terms {
        crate::pay::tx::Terms {
            network,
            capacity_sat: self.capacity_sat,
            fee_sat: self.fee_sat,
            expiry_height: self.expiry_height,
            buyer: self.buyer_key,
            seller: self.seller_key,
            buyer_payout: self.buyer_payout.clone(),
            seller_payout: self.seller_payout.clone(),
            funding: self.funding,
        }
    }
}

/// Error codes (`code` field of `error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Malformed,
    WrongNetwork,
    Policy,
    WrongFunding,
    FundingSpent,
    FundingUnknown,
    BadSignature,
    NotIncreasing,
    OverCapacity,
    UnknownChannel,
    Closed,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Malformed => "malformed",
            Code::WrongNetwork => "wrong_network",
            Code::Policy => "policy",
            Code::WrongFunding => "wrong_funding",
            Code::FundingSpent => "funding_spent",
            Code::FundingUnknown => "funding_unknown",
            Code::BadSignature => "bad_signature",
            Code::NotIncreasing => "not_increasing",
            Code::OverCapacity => "over_capacity",
            Code::UnknownChannel => "unknown_channel",
            Code::Closed => "closed",
            Code::Internal => "internal",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// Buyer → seller: ask for a payout script before funding.
    Propose {
        network: String,
        capacity_sat: u64,
        expiry_height: u32,
    },
    /// Seller → buyer: the seller's key and a fresh payout script.
    Accept {
        seller_key: PublicKey,
        seller_payout: ScriptBuf,
    },
    /// Buyer → seller: the channel is funded; `tx` is the funding transaction.
    Funded { terms: ChannelTerms, tx: Vec<u8> },
    /// Seller → buyer: the channel accepts payments.
    Ready { channel: OutPoint },
    /// Seller → buyer: funding seen but needs `need` confirmations (has `have`).
    Pending {
        channel: OutPoint,
        have: u32,
        need: u32,
    },
    /// Buyer → seller: a signature for a new cumulative total.
    Pay {
        channel: OutPoint,
        total_msat: u64,
        signature: ecdsa::Signature,
    },
    /// Seller → buyer: `total_msat` is durably recorded.
    Ack { channel: OutPoint, total_msat: u64 },
    /// Buyer → seller: what total do you hold?
    Resume { channel: OutPoint },
    /// Seller → buyer: the total it holds, whether the channel is open, and
    /// the bytes it served on the channel that no payment covers yet.
    State {
        channel: OutPoint,
        total_msat: u64,
        open: bool,
        unpaid: u64,
    },
    /// Buyer → seller: please co-sign and broadcast the best commitment.
    Close { channel: OutPoint },
    /// Seller → buyer: the closing transaction was broadcast.
    Closed { channel: OutPoint, txid: Txid },
    Error {
        channel: Option<OutPoint>,
        code: String,
        message: String,
    },
}

type Dict = BTreeMap<Cow<'static, [u8]>, Value<'static>>;

fn put(d: &mut Dict, k: &'static str, v: Value<'static>) {
    d.insert(Cow::Borrowed(k.as_bytes()), v);
}
fn bytes(b: impl Into<Vec<u8>>) -> Value<'static> {
    Value::Bytes(Cow::Owned(b.into()))
}
fn int(i: u64) -> Value<'static> {
    Value::Integer(i.min(i64::MAX as u64) as i64)
}

pub fn outpoint_bytes(o: &OutPoint) -> Vec<u8> {
    let mut v = o.txid.to_byte_array().to_vec();
    v.extend_from_slice(&o.vout.to_be_bytes());
    v
}

struct Reader(Dict);

impl Reader {
    fn raw(&self, k: &'static str) -> Option<&Value<'static>> {
        self.0.get(k.as_bytes())
    }
    fn bytes(&self, k: &'static str, max: usize) -> Result<&[u8], ProtoError> {
        match self.raw(k) {
            Some(Value::Bytes(b)) if b.len() <= max => Ok(b),
            _ => Err(ProtoError::Field(k)),
        }
    }
    fn str(&self, k: &'static str) -> Result<String, ProtoError> {
        let b = self.bytes(k, 1024)?;
        String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Field(k))
    }
    fn uint(&self, k: &'static str) -> Result<u64, ProtoError> {
        match self.raw(k) {
            Some(Value::Integer(i)) if *i >= 0 => Ok(*i as u64),
            _ => Err(ProtoError::Field(k)),
        }
    }
    fn u32(&self, k: &'static str) -> Result<u32, ProtoError> {
        u32::try_from(self.uint(k)?).map_err(|_| ProtoError::Field(k))
    }
    fn key(&self, k: &'static str) -> Result<PublicKey, ProtoError> {
        let b = self.bytes(k, 33)?;
        if b.len() != 33 {
            return Err(ProtoError::Field(k));
        }
        PublicKey::from_slice(b).map_err(|_| ProtoError::Field(k))
    }
    fn script(&self, k: &'static str) -> Result<ScriptBuf, ProtoError> {
        let s = ScriptBuf::from_bytes(self.bytes(k, MAX_SCRIPT)?.to_vec());
        if !(s.is_p2wpkh() || s.is_p2wsh() || s.is_p2tr() || s.is_p2pkh() || s.is_p2sh()) {
            return Err(ProtoError::Field(k));
        }
        Ok(s)
    }
    fn outpoint(&self, k: &'static str) -> Result<OutPoint, ProtoError> {
        let b = self.bytes(k, 36)?;
        if b.len() != 36 {
            return Err(ProtoError::Field(k));
        }
        let txid = Txid::from_slice(&b[..32]).map_err(|_| ProtoError::Field(k))?;
        let vout = u32::from_be_bytes(b[32..].try_into().expect("4 bytes"));
        Ok(OutPoint { txid, vout })
    }
}

fn parse_dict(payload: &[u8]) -> Result<Reader, ProtoError> {
    let v = crate::bencode::decode(payload).map_err(|e| ProtoError::Bencode(e.to_string()))?;
    match v.into_owned() {
        Value::Dict(d) => Ok(Reader(d)),
        _ => Err(ProtoError::NotADict),
    }
}

impl SellerInfo {
    pub fn to_value(&self) -> Value<'static> {
        let mut d = Dict::new();
        put(&mut d, "v", Value::Integer(VERSION));
        put(&mut d, "net", bytes(self.network.as_bytes()));
        put(&mut d, "node", bytes(self.node_key.to_bytes()));
        put(&mut d, "price", int(self.msat_per_gib));
        put(&mut d, "credit", int(self.credit));
        put(&mut d, "minexp", int(self.min_expiry_blocks as u64));
        put(&mut d, "maxexp", int(self.max_expiry_blocks as u64));
        put(&mut d, "zc", int(self.zero_conf_sat));
        Value::Dict(d)
    }

    pub fn from_value(v: &Value<'static>) -> Result<SellerInfo, ProtoError> {
        let Value::Dict(d) = v else {
            return Err(ProtoError::NotADict);
        };
        let r = Reader(d.clone());
        if r.uint("v")? as i64 != VERSION {
            return Err(ProtoError::Field("v"));
        }
        Ok(SellerInfo {
            network: r.str("net")?,
            node_key: r.key("node")?,
            msat_per_gib: r.uint("price")?,
            credit: r.uint("credit")?,
            min_expiry_blocks: r.u32("minexp")?,
            max_expiry_blocks: r.u32("maxexp")?,
            zero_conf_sat: r.uint("zc")?,
        })
    }
}

impl Msg {
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        let t = match self {
            Msg::Propose {
                network,
                capacity_sat,
                expiry_height,
            } => {
                put(&mut d, "net", bytes(network.as_bytes()));
                put(&mut d, "cap", int(*capacity_sat));
                put(&mut d, "exp", int(*expiry_height as u64));
                "propose"
            }
            Msg::Accept {
                seller_key,
                seller_payout,
            } => {
                put(&mut d, "skey", bytes(seller_key.to_bytes()));
                put(&mut d, "spay", bytes(seller_payout.to_bytes()));
                "accept"
            }
            Msg::Funded { terms, tx } => {
                put(&mut d, "net", bytes(terms.network.as_bytes()));
                put(&mut d, "cap", int(terms.capacity_sat));
                put(&mut d, "fee", int(terms.fee_sat));
                put(&mut d, "exp", int(terms.expiry_height as u64));
                put(&mut d, "bkey", bytes(terms.buyer_key.to_bytes()));
                put(&mut d, "skey", bytes(terms.seller_key.to_bytes()));
                put(&mut d, "bpay", bytes(terms.buyer_payout.to_bytes()));
                put(&mut d, "spay", bytes(terms.seller_payout.to_bytes()));
                put(&mut d, "ch", bytes(outpoint_bytes(&terms.funding)));
                put(&mut d, "tx", bytes(tx.clone()));
                "funded"
            }
            Msg::Ready { channel } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                "ready"
            }
            Msg::Pending {
                channel,
                have,
                need,
            } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                put(&mut d, "have", int(*have as u64));
                put(&mut d, "need", int(*need as u64));
                "pending"
            }
            Msg::Pay {
                channel,
                total_msat,
                signature,
            } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                put(&mut d, "total", int(*total_msat));
                put(
                    &mut d,
                    "sig",
                    bytes(signature.signature.serialize_der().to_vec()),
                );
                "pay"
            }
            Msg::Ack {
                channel,
                total_msat,
            } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                put(&mut d, "total", int(*total_msat));
                "ack"
            }
            Msg::Resume { channel } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                "resume"
            }
            Msg::State {
                channel,
                total_msat,
                open,
                unpaid,
            } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                put(&mut d, "total", int(*total_msat));
                put(&mut d, "open", int(*open as u64));
                put(&mut d, "unpaid", int(*unpaid));
                "state"
            }
            Msg::Close { channel } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                "close"
            }
            Msg::Closed { channel, txid } => {
                put(&mut d, "ch", bytes(outpoint_bytes(channel)));
                put(&mut d, "txid", bytes(txid.to_byte_array().to_vec()));
                "closed"
            }
            Msg::Error {
                channel,
                code,
                message,
            } => {
                if let Some(c) = channel {
                    put(&mut d, "ch", bytes(outpoint_bytes(c)));
                }
                put(&mut d, "code", bytes(code.as_bytes()));
                put(&mut d, "msg", bytes(message.as_bytes()));
                "error"
            }
        };
        put(&mut d, "t", bytes(t.as_bytes()));
        crate::bencode::encode(&Value::Dict(d))
    }

    pub fn decode(payload: &[u8]) -> Result<Msg, ProtoError> {
        let r = parse_dict(payload)?;
        let t = r.str("t")?;
        Ok(match t.as_str() {
            "propose" => Msg::Propose {
                network: r.str("net")?,
                capacity_sat: r.uint("cap")?,
                expiry_height: r.u32("exp")?,
            },
            "accept" => Msg::Accept {
                seller_key: r.key("skey")?,
                seller_payout: r.script("spay")?,
            },
            "funded" => Msg::Funded {
                terms: ChannelTerms {
                    network: r.str("net")?,
                    capacity_sat: r.uint("cap")?,
                    fee_sat: r.uint("fee")?,
                    expiry_height: r.u32("exp")?,
                    buyer_key: r.key("bkey")?,
                    seller_key: r.key("skey")?,
                    buyer_payout: r.script("bpay")?,
                    seller_payout: r.script("spay")?,
                    funding: r.outpoint("ch")?,
                },
                tx: r.bytes("tx", MAX_TX)?.to_vec(),
            },
            "ready" => Msg::Ready {
                channel: r.outpoint("ch")?,
            },
            "pending" => Msg::Pending {
                channel: r.outpoint("ch")?,
                have: r.u32("have")?,
                need: r.u32("need")?,
            },
            "pay" => {
                let (channel, total_msat) = (r.outpoint("ch")?, r.uint("total")?);
                let der = r.bytes("sig", 73)?;
                let sig = crate::pay::bitcoin::secp256k1::ecdsa::Signature::from_der(der)
                    .map_err(|_| ProtoError::Field("sig"))?;
                Msg::Pay {
                    channel,
                    total_msat,
                    signature: ecdsa::Signature::sighash_all(sig),
                }
            }
            "ack" => Msg::Ack {
                channel: r.outpoint("ch")?,
                total_msat: r.uint("total")?,
            },
            "resume" => Msg::Resume {
                channel: r.outpoint("ch")?,
            },
            "state" => Msg::State {
                channel: r.outpoint("ch")?,
                total_msat: r.uint("total")?,
                open: r.uint("open")? != 0,
                // Optional: absent from sellers before it existed.
                unpaid: match r.raw("unpaid") {
                    None => 0,
                    Some(_) => r.uint("unpaid")?,
                },
            },
            "close" => Msg::Close {
                channel: r.outpoint("ch")?,
            },
            "closed" => Msg::Closed {
                channel: r.outpoint("ch")?,
                txid: Txid::from_slice(r.bytes("txid", 32)?)
                    .map_err(|_| ProtoError::Field("txid"))?,
            },
            "error" => Msg::Error {
                channel: r.outpoint("ch").ok(),
                code: r.str("code")?,
                message: r.str("msg")?,
            },
            other => return Err(ProtoError::UnknownType(other.to_string())),
        })
    }

    /// The message type, for logs and errors (never the fields: a `pay`
    /// carries a signature).
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Propose { .. } => "propose",
            Msg::Accept { .. } => "accept",
            Msg::Funded { .. } => "funded",
            Msg::Ready { .. } => "ready",
            Msg::Pending { .. } => "pending",
            Msg::Pay { .. } => "pay",
            Msg::Ack { .. } => "ack",
            Msg::Resume { .. } => "resume",
            Msg::State { .. } => "state",
            Msg::Close { .. } => "close",
            Msg::Closed { .. } => "closed",
            Msg::Error { .. } => "error",
        }
    }

    pub fn error(channel: Option<OutPoint>, code: Code, message: impl Into<String>) -> Msg {
        Msg::Error {
            channel,
            code: code.as_str().into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::bitcoin::secp256k1::{Message, Secp256k1, SecretKey};

    fn key(b: u8) -> PublicKey {
        crate::pay::testkit::pubkey(&crate::pay::testkit::key(b))
    }

    fn outpoint() -> OutPoint {
        OutPoint {
            txid: Txid::from_slice(&[9; 32]).unwrap(),
            vout: 3,
        }
    }

    #[test]
    fn every_message_round_trips() {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[1; 32]).unwrap();
        let sig = secp.sign_ecdsa(&Message::from_digest([5; 32]), &sk);
        let spk = ScriptBuf::new_p2wpkh(&key(2).wpubkey_hash().unwrap());
        let msgs = vec![
            Msg::Propose {
                network: "regtest".into(),
                capacity_sat: 100_000,
                expiry_height: 900,
            },
            Msg::Accept {
                seller_key: key(3),
                seller_payout: spk.clone(),
            },
            Msg::Funded {
                terms: ChannelTerms {
                    network: "regtest".into(),
                    capacity_sat: 100_000,
                    fee_sat: 300,
                    expiry_height: 900,
                    buyer_key: key(4),
                    seller_key: key(3),
                    buyer_payout: spk.clone(),
                    seller_payout: spk,
                    funding: outpoint(),
                },
                tx: vec![1, 2, 3],
            },
            Msg::Ready {
                channel: outpoint(),
            },
            Msg::Pending {
                channel: outpoint(),
                have: 0,
                need: 1,
            },
            Msg::Pay {
                channel: outpoint(),
                total_msat: 12_345,
                signature: ecdsa::Signature::sighash_all(sig),
            },
            Msg::Ack {
                channel: outpoint(),
                total_msat: 12_345,
            },
            Msg::Resume {
                channel: outpoint(),
            },
            Msg::State {
                channel: outpoint(),
                total_msat: 7,
                open: true,
                unpaid: 1 << 20,
            },
            Msg::Close {
                channel: outpoint(),
            },
            Msg::Closed {
                channel: outpoint(),
                txid: Txid::from_slice(&[8; 32]).unwrap(),
            },
            Msg::error(Some(outpoint()), Code::BadSignature, "no"),
            Msg::error(None, Code::Policy, "expiry"),
        ];
        for m in msgs {
            assert_eq!(Msg::decode(&m.encode()).unwrap(), m);
        }
        // `unpaid` is optional in `state` (sellers before it existed).
        let mut old = Msg::State {
            channel: outpoint(),
            total_msat: 7,
            open: true,
            unpaid: 0,
        }
        .encode();
        let v = old.windows(10).position(|w| w == b"6:unpaidi0").unwrap();
        old.drain(v..v + b"6:unpaidi0e".len());
        assert_eq!(
            Msg::decode(&old).unwrap(),
            Msg::State {
                channel: outpoint(),
                total_msat: 7,
                open: true,
                unpaid: 0
            }
        );
        let info = SellerInfo {
            network: "regtest".into(),
            node_key: key(3),
            msat_per_gib: 1000,
            credit: 1 << 20,
            min_expiry_blocks: 10,
            max_expiry_blocks: 100,
            zero_conf_sat: 5000,
        };
        assert_eq!(SellerInfo::from_value(&info.to_value()).unwrap(), info);
    }

    #[test]
    fn hostile_messages_are_errors() {
        assert!(matches!(Msg::decode(b"x"), Err(ProtoError::Bencode(_))));
        assert_eq!(Msg::decode(b"i1e"), Err(ProtoError::NotADict));
        assert_eq!(Msg::decode(b"de"), Err(ProtoError::Field("t")));
        assert_eq!(
            Msg::decode(b"d1:t3:fooe"),
            Err(ProtoError::UnknownType("foo".into()))
        );
        // Short channel id, negative total, bad signature, non-standard script.
        assert!(matches!(
            Msg::decode(b"d2:ch3:abc1:t5:ready"),
            Err(ProtoError::Bencode(_))
        ));
        assert_eq!(
            Msg::decode(b"d2:ch3:abc1:t5:readye"),
            Err(ProtoError::Field("ch"))
        );
        let mut p = b"d2:ch36:".to_vec();
        p.extend_from_slice(&[0; 36]);
        p.extend_from_slice(b"3:sig2:xx1:t3:pay5:totali-1ee");
        assert_eq!(Msg::decode(&p), Err(ProtoError::Field("total")));
        let mut p = b"d2:ch36:".to_vec();
        p.extend_from_slice(&[0; 36]);
        p.extend_from_slice(b"3:sig2:xx1:t3:pay5:totali1ee");
        assert_eq!(Msg::decode(&p), Err(ProtoError::Field("sig")));
        let mut m = b"d4:skey33:".to_vec();
        m.extend_from_slice(&[b'0'; 33]);
        m.extend_from_slice(b"4:spay1:j1:t6:accepte");
        assert_eq!(Msg::decode(&m), Err(ProtoError::Field("skey")));
    }
}
