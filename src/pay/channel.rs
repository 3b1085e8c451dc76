//! Buyer and seller state of one channel. Each method either returns the next
//! thing to send or persist, or an error and leaves the state unchanged — callers
//! persist the new state before acting on it (see DESIGN.md).

use super::bitcoin::secp256k1::{All, Secp256k1, SecretKey};
use super::bitcoin::{ecdsa, Network, PublicKey, Transaction};
use super::script::{commitment_witness, refund_witness};
use super::tx::{check_amounts, sign, Terms};
use super::{PayError, DUST_SAT};

/// A payment: the buyer's signature on the commitment for a new cumulative total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub total_msat: u64,
    pub signature: ecdsa::Signature,
}

pub struct Buyer {
    terms: Terms,
    key: SecretKey,
    total_msat: u64,
    secp: Secp256k1<All>,
}

impl Buyer {
    /// `total_msat` is the last total signed (0 for a new channel), as persisted.
    pub fn new(terms: Terms, key: SecretKey, total_msat: u64) -> Result<Self, PayError> {
        check_amounts(terms.capacity_sat, terms.fee_sat)?;
        let secp = Secp256k1::new();
        if PublicKey::new(key.public_key(&secp)) != terms.buyer {
            return Err(PayError::Sign("key is not the channel's buyer key".into()));
        }
        Ok(Buyer {
            terms,
            key,
            total_msat,
            secp,
        })
    }

    pub fn terms(&self) -> &Terms {
        &self.terms
    }

    pub fn total_msat(&self) -> u64 {
        self.total_msat
    }

    /// Signs the commitment for `new_total_msat`. The caller persists the new total
    /// before sending the payment, so a crash can only leave it one step ahead.
    pub fn pay(&mut self, new_total_msat: u64) -> Result<Payment, PayError> {
        if new_total_msat <= self.total_msat {
            return Err(PayError::NotIncreasing {
                last: self.total_msat,
                got: new_total_msat,
            });
        }
        let max = self.terms.max_total_msat();
        if new_total_msat > max {
            return Err(PayError::OverCapacity {
                max,
                got: new_total_msat,
            });
        }
        let tx = self.terms.commitment(new_total_msat);
        let signature = sign(&self.secp, &self.terms.sighash(&tx), &self.key);
        self.total_msat = new_total_msat;
        Ok(Payment {
            total_msat: new_total_msat,
            signature,
        })
    }

    /// The signed refund, once the chain tip has reached the expiry height.
    pub fn refund(&self, tip: u32) -> Result<Transaction, PayError> {
        if tip < self.terms.expiry_height {
            return Err(PayError::TooEarly {
                tip,
                expiry: self.terms.expiry_height,
            });
        }
        Ok(self.refund_unchecked())
    }

    /// The signed refund regardless of height (for tests of the consensus rules).
    pub fn refund_unchecked(&self) -> Transaction {
        let mut tx = self.terms.refund();
        let sig = sign(&self.secp, &self.terms.sighash(&tx), &self.key);
        tx.input[0].witness = refund_witness(&sig, &self.terms.witness_script());
        tx
    }
}

/// What a seller accepts when a buyer proposes a channel.
#[derive(Clone, Debug)]
pub struct SellerPolicy {
    pub network: Network,
    /// Expiry must lie this many blocks ahead of the tip, at least and at most.
    pub min_expiry_blocks: u32,
    pub max_expiry_blocks: u32,
}

pub struct Seller {
    terms: Terms,
    key: SecretKey,
    best: Option<Payment>,
    secp: Secp256k1<All>,
}

/// The channel and its total; never the key.
impl std::fmt::Debug for Seller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seller")
            .field("funding", &self.terms.funding)
            .field("total_msat", &self.total_msat())
            .finish_non_exhaustive()
    }
}

impl Seller {
    /// Checks proposed terms against the policy at chain tip `tip`.
    pub fn open(
        terms: Terms,
        key: SecretKey,
        policy: &SellerPolicy,
        tip: u32,
    ) -> Result<Self, PayError> {
        if terms.network != policy.network {
            return Err(PayError::WrongNetwork {
                ours: policy.network.to_string(),
                theirs: terms.network.to_string(),
            });
        }
        let (min, max) = (
            tip + policy.min_expiry_blocks,
            tip + policy.max_expiry_blocks,
        );
        if terms.expiry_height < min || terms.expiry_height > max {
            return Err(PayError::ExpiryOutOfRange {
                expiry: terms.expiry_height,
                min,
                max,
            });
        }
        Self::resume(terms, key, None)
    }

    /// Rebuilds a seller from persisted state.
    pub fn resume(terms: Terms, key: SecretKey, best: Option<Payment>) -> Result<Self, PayError> {
        check_amounts(terms.capacity_sat, terms.fee_sat)?;
        let secp = Secp256k1::new();
        if PublicKey::new(key.public_key(&secp)) != terms.seller {
            return Err(PayError::Sign("key is not the channel's seller key".into()));
        }
        Ok(Seller {
            terms,
            key,
            best,
            secp,
        })
    }

    pub fn terms(&self) -> &Terms {
        &self.terms
    }

    /// The funding transaction must pay exactly the agreed script and value at the
    /// agreed outpoint.
    pub fn check_funding(&self, funding: &Transaction) -> Result<(), PayError> {
        let out = funding
            .output
            .get(self.terms.funding.vout as usize)
            .filter(|_| funding.compute_txid() == self.terms.funding.txid)
            .ok_or(PayError::NoSuchOutput(self.terms.funding.vout))?;
        if out.script_pubkey != self.terms.funding_script_pubkey() {
            return Err(PayError::WrongFundingScript);
        }
        if out.value.to_sat() != self.terms.capacity_sat {
            return Err(PayError::WrongFundingValue {
                want: self.terms.capacity_sat,
                got: out.value.to_sat(),
            });
        }
        Ok(())
    }

    pub fn best(&self) -> Option<&Payment> {
        self.best.as_ref()
    }

    pub fn total_msat(&self) -> u64 {
        self.best.as_ref().map(|p| p.total_msat).unwrap_or(0)
    }

    /// Checks a payment; on success it becomes the best one. The caller persists it
    /// before serving more data.
    pub fn receive(&mut self, p: Payment) -> Result<(), PayError> {
        self.verify(&p)?;
        self.best = Some(p);
        Ok(())
    }

    /// Every check of [`Seller::receive`], without taking the payment: the
    /// seller verifies, persists, then calls [`Seller::record`].
    pub fn verify(&self, p: &Payment) -> Result<(), PayError> {
        self.verify_after(self.total_msat(), p)
    }

    /// [`Seller::verify`] against a total `last` already verified but not yet
    /// recorded (a group of payments committed together).
    pub fn verify_after(&self, last: u64, p: &Payment) -> Result<(), PayError> {
        if p.total_msat <= last {
            return Err(PayError::NotIncreasing {
                last,
                got: p.total_msat,
            });
        }
        let max = self.terms.max_total_msat();
        if p.total_msat > max {
            return Err(PayError::OverCapacity {
                max,
                got: p.total_msat,
            });
        }
        let msg = self.terms.sighash(&self.terms.commitment(p.total_msat));
        self.secp
            .verify_ecdsa(&msg, &p.signature.signature, &self.terms.buyer.inner)
            .map_err(|_| PayError::BadSignature)?;
        Ok(())
    }

    /// Takes a payment that passed [`Seller::verify`] and is persisted.
    pub fn record(&mut self, p: Payment) {
        debug_assert!(p.total_msat > self.total_msat());
        self.best = Some(p);
    }

    /// The best commitment, co-signed and ready to broadcast.
    pub fn close(&self) -> Result<Transaction, PayError> {
        let best = self.best.as_ref().ok_or(PayError::NothingToClose)?;
        let sat = Terms::seller_sat(best.total_msat);
        if sat < DUST_SAT {
            return Err(PayError::Dust { sat });
        }
        let mut tx = self.terms.commitment(best.total_msat);
        let ours = sign(&self.secp, &self.terms.sighash(&tx), &self.key);
        tx.input[0].witness =
            commitment_witness(&best.signature, &ours, &self.terms.witness_script());
        Ok(tx)
    }

    /// Close when the tip is within `margin` blocks of expiry, so the commitment
    /// confirms before the buyer's refund becomes valid.
    pub fn must_close(&self, tip: u32, margin: u32) -> bool {
        tip + margin >= self.terms.expiry_height
    }
}

#[cfg(test)]
mod tests;
