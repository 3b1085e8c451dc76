//! The funding output: P2WSH of
//! `IF <seller> CHECKSIGVERIFY ELSE <expiry> CHECKLOCKTIMEVERIFY DROP ENDIF <buyer> CHECKSIG`.
//!
//! The IF branch needs both signatures (a commitment, closed by the seller); the
//! ELSE branch needs only the buyer's, and only in a transaction whose lock time
//! has reached `expiry` (BIP 65) — the refund.

use super::bitcoin::blockdata::opcodes::all::{
    OP_CHECKSIG, OP_CHECKSIGVERIFY, OP_CLTV, OP_DROP, OP_ELSE, OP_ENDIF, OP_IF,
};
use super::bitcoin::script::{Builder, ScriptBuf};
use super::bitcoin::{ecdsa, PublicKey, Witness};

pub fn funding_witness_script(buyer: &PublicKey, seller: &PublicKey, expiry: u32) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_IF)
        .push_key(seller)
        .push_opcode(OP_CHECKSIGVERIFY)
        .push_opcode(OP_ELSE)
        .push_int(expiry as i64)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_opcode(OP_ENDIF)
        .push_key(buyer)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// The output script the buyer funds.
pub fn funding_script_pubkey(witness_script: &ScriptBuf) -> ScriptBuf {
    ScriptBuf::new_p2wsh(&witness_script.wscript_hash())
}

/// Witness spending through the IF branch (commitment / cooperative close).
pub fn commitment_witness(
    buyer_sig: &ecdsa::Signature,
    seller_sig: &ecdsa::Signature,
    witness_script: &ScriptBuf,
) -> Witness {
    Witness::from_slice(&[
        buyer_sig.to_vec(),
        seller_sig.to_vec(),
        vec![1u8],
        witness_script.to_bytes(),
    ])
}

/// Witness spending through the ELSE branch (refund after expiry).
pub fn refund_witness(buyer_sig: &ecdsa::Signature, witness_script: &ScriptBuf) -> Witness {
    Witness::from_slice(&[buyer_sig.to_vec(), Vec::new(), witness_script.to_bytes()])
}
