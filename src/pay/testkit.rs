//! Keys and scripts for the unit tests of `pay` (deterministic, never real).

use super::bitcoin::secp256k1::{Secp256k1, SecretKey};
use super::bitcoin::{PublicKey, ScriptBuf};

/// The secret key of 32 bytes `b`.
pub fn key(b: u8) -> SecretKey {
    SecretKey::from_slice(&[b; 32]).unwrap()
}

pub fn pubkey(k: &SecretKey) -> PublicKey {
    PublicKey::new(k.public_key(&Secp256k1::new()))
}

/// A P2WPKH payout script of `k`.
pub fn wpkh(k: &SecretKey) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&pubkey(k).wpubkey_hash().unwrap())
}
