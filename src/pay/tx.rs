//! The channel's transactions: the commitment (seller gets the cumulative total,
//! buyer the rest minus the fee) and the refund (everything back to the buyer once
//! the expiry height is reached). Both spend the single funding output.

use super::bitcoin::absolute::LockTime;
use super::bitcoin::secp256k1::{Message, Secp256k1, SecretKey, Signing};
use super::bitcoin::sighash::{EcdsaSighashType, SighashCache};
use super::bitcoin::transaction::Version;
use super::bitcoin::{
    ecdsa, Amount, Network, OutPoint, PublicKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut,
    Witness,
};
use super::script::{funding_script_pubkey, funding_witness_script};
use super::{PayError, DUST_SAT};

/// Everything both sides agreed at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terms {
    pub network: Network,
    pub capacity_sat: u64,
    /// Fee of the commitment and of the refund, fixed at open.
    pub fee_sat: u64,
    pub expiry_height: u32,
    pub buyer: PublicKey,
    pub seller: PublicKey,
    pub buyer_payout: ScriptBuf,
    pub seller_payout: ScriptBuf,
    pub funding: OutPoint,
}

impl Terms {
    pub fn witness_script(&self) -> ScriptBuf {
        funding_witness_script(&self.buyer, &self.seller, self.expiry_height)
    }

    pub fn funding_script_pubkey(&self) -> ScriptBuf {
        funding_script_pubkey(&self.witness_script())
    }

    /// Largest cumulative total the channel can carry.
    pub fn max_total_msat(&self) -> u64 {
        self.capacity_sat.saturating_sub(self.fee_sat) * 1000
    }

    /// The seller's output for a total (sub-satoshi remainder dropped).
    pub fn seller_sat(total_msat: u64) -> u64 {
        total_msat / 1000
    }

    fn unsigned(
        &self,
        lock_time: LockTime,
        sequence: Sequence,
        outputs: Vec<TxOut>,
    ) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time,
            input: vec![TxIn {
                previous_output: self.funding,
                script_sig: ScriptBuf::new(),
                sequence,
                witness: Witness::new(),
            }],
            output: outputs,
        }
    }

    /// The commitment paying `total_msat` to the seller (unsigned).
    pub fn commitment(&self, total_msat: u64) -> Transaction {
        let seller = Self::seller_sat(total_msat);
        let buyer = self.capacity_sat - self.fee_sat - seller;
        let mut outs = Vec::new();
        if seller >= DUST_SAT {
            outs.push(TxOut {
                value: Amount::from_sat(seller),
                script_pubkey: self.seller_payout.clone(),
            });
        }
        if buyer >= DUST_SAT {
            outs.push(TxOut {
                value: Amount::from_sat(buyer),
                script_pubkey: self.buyer_payout.clone(),
            });
        }
        self.unsigned(LockTime::ZERO, Sequence::MAX, outs)
    }

    /// The refund: everything but the fee back to the buyer, valid from expiry.
    pub fn refund(&self) -> Transaction {
        let outs = vec![TxOut {
            value: Amount::from_sat(self.capacity_sat - self.fee_sat),
            script_pubkey: self.buyer_payout.clone(),
        }];
        let lock = LockTime::from_height(self.expiry_height).unwrap_or(LockTime::ZERO);
        // A non-final sequence, or CHECKLOCKTIMEVERIFY fails.
        self.unsigned(lock, Sequence::ENABLE_LOCKTIME_NO_RBF, outs)
    }

    /// BIP 143 digest of `tx`'s funding input.
    pub fn sighash(&self, tx: &Transaction) -> Message {
        let h = SighashCache::new(tx)
            .p2wsh_signature_hash(
                0,
                &self.witness_script(),
                Amount::from_sat(self.capacity_sat),
                EcdsaSighashType::All,
            )
            .expect("input 0 exists and the amount is given");
        Message::from(h)
    }
}

pub fn sign<C: Signing>(secp: &Secp256k1<C>, msg: &Message, key: &SecretKey) -> ecdsa::Signature {
    ecdsa::Signature {
        signature: secp.sign_ecdsa(msg, key),
        sighash_type: EcdsaSighashType::All,
    }
}

/// Checks the fee leaves a usable channel.
pub fn check_amounts(capacity_sat: u64, fee_sat: u64) -> Result<(), PayError> {
    if fee_sat >= capacity_sat || capacity_sat - fee_sat < DUST_SAT {
        return Err(PayError::FeeTooHigh {
            fee: fee_sat,
            capacity: capacity_sat,
        });
    }
    Ok(())
}
