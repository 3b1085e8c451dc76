//! The buyer's decisions in `btt_pay`, without I/O: the terms it proposes,
//! what it accepts back, how it reads a seller's answer to `resume`, and the
//! order acks must come in.
//!
//! Why apart from the connection: these decide whether a buyer trusts a
//! seller's reply (a key other than the announced one, a seller holding
//! more than we signed, a closed channel); [`crate::market::buyer`] only
//! carries the messages, and stores each total before it is sent.

use super::bitcoin::{PublicKey, ScriptBuf};
use super::proto::{Msg, SellerInfo};
use std::collections::VecDeque;

/// Virtual size budget of a commitment (one P2WSH input with two signatures,
/// two outputs), for the fee fixed at open.
pub const COMMITMENT_VBYTES: u64 = 250;

/// A seller's reply the buyer does not take.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StepError {
    #[error("expected {expected}, got {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("accept names another key than the handshake")]
    OtherKey,
    #[error("the seller has closed this channel")]
    Closed,
    #[error("seller holds {theirs} msat but we signed only {ours} msat")]
    SellerAhead { ours: u64, theirs: u64 },
}

/// The expiry height to propose at `tip`: the lifetime we want, within the
/// range the seller announced.
pub fn expiry_height(tip: u32, wanted_blocks: u32, info: &SellerInfo) -> u32 {
    let (lo, hi) = (
        info.min_expiry_blocks,
        info.max_expiry_blocks.max(info.min_expiry_blocks),
    );
    tip + wanted_blocks.clamp(lo, hi)
}

/// The commitment fee fixed at open, at `sat_per_vb`.
pub fn commitment_fee_sat(sat_per_vb: u64) -> u64 {
    sat_per_vb * COMMITMENT_VBYTES
}

/// The seller's key and payout script from its answer to `propose`; the key
/// must be the one it announced.
pub fn accepted(info: &SellerInfo, reply: Msg) -> Result<(PublicKey, ScriptBuf), StepError> {
    match reply {
        Msg::Accept {
            seller_key,
            seller_payout,
        } if seller_key == info.node_key => Ok((seller_key, seller_payout)),
        Msg::Accept { .. } => Err(StepError::OtherKey),
        other => Err(StepError::Unexpected {
            expected: "accept",
            got: other.kind(),
        }),
    }
}

/// Where a channel stands after `funded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenState {
    Ready,
    /// The seller waits for confirmations.
    Pending {
        have: u32,
        need: u32,
    },
}

/// The seller's answer to `funded`.
pub fn funded(reply: Msg) -> Result<OpenState, StepError> {
    match reply {
        Msg::Ready { .. } => Ok(OpenState::Ready),
        Msg::Pending { have, need, .. } => Ok(OpenState::Pending { have, need }),
        other => Err(StepError::Unexpected {
            expected: "ready or pending",
            got: other.kind(),
        }),
    }
}

/// What to do after the seller answered `resume`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resumed {
    /// Both hold the same total: pay on.
    InStep,
    /// We stored a total the seller never got (we crashed or lost the
    /// connection after storing it): sign it again and send it.
    Resend { theirs: u64 },
}

/// The seller's `state` against our stored total `ours`.
pub fn resumed(ours: u64, reply: Msg) -> Result<Resumed, StepError> {
    match reply {
        Msg::State { open: false, .. } => Err(StepError::Closed),
        Msg::State { total_msat, .. } if total_msat > ours => Err(StepError::SellerAhead {
            ours,
            theirs: total_msat,
        }),
        Msg::State { total_msat, .. } if total_msat < ours => {
            Ok(Resumed::Resend { theirs: total_msat })
        }
        Msg::State { .. } => Ok(Resumed::InStep),
        other => Err(StepError::Unexpected {
            expected: "state",
            got: other.kind(),
        }),
    }
}

/// Whether a seller that does not know the channel (`unknown_channel`) is
/// told about its funding again: only before anything was paid on it (a
/// seller that lost a paid channel is not handed a fresh one silently).
pub fn announce_again(ours: u64) -> bool {
    ours == 0
}

/// Payments sent and not yet acknowledged: acks come in the order the
/// payments went out, each naming its total.
#[derive(Debug, Default)]
pub struct Acks {
    in_flight: VecDeque<u64>,
}

impl Acks {
    pub fn sent(&mut self, total_msat: u64) {
        self.in_flight.push_back(total_msat);
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// A reply to the oldest payment in flight.
    pub fn reply(&mut self, reply: &Msg) -> Result<u64, StepError> {
        match reply {
            Msg::Ack { total_msat, .. } if self.in_flight.front() == Some(total_msat) => {
                self.in_flight.pop_front();
                Ok(*total_msat)
            }
            other => Err(StepError::Unexpected {
                expected: "ack of the oldest payment",
                got: other.kind(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pay::bitcoin::{OutPoint, PublicKey};

    fn key(b: u8) -> PublicKey {
        crate::pay::testkit::pubkey(&crate::pay::testkit::key(b))
    }

    fn info() -> SellerInfo {
        SellerInfo {
            network: "regtest".into(),
            node_key: key(2),
            msat_per_gib: 1,
            credit: 1,
            min_expiry_blocks: 144,
            max_expiry_blocks: 1000,
            zero_conf_sat: 0,
        }
    }

    fn state(total: u64, open: bool) -> Msg {
        Msg::State {
            channel: OutPoint::null(),
            total_msat: total,
            open,
            unpaid: 0,
        }
    }

    #[test]
    fn proposed_expiry_is_within_the_sellers_range() {
        assert_eq!(expiry_height(100, 1008, &info()), 1100);
        assert_eq!(expiry_height(100, 10, &info()), 244);
        assert_eq!(expiry_height(100, 500, &info()), 600);
        // A seller announcing max < min: the min.
        let odd = SellerInfo {
            max_expiry_blocks: 5,
            ..info()
        };
        assert_eq!(expiry_height(100, 500, &odd), 244);
    }

    #[test]
    fn accept_must_name_the_announced_key() {
        let ok = Msg::Accept {
            seller_key: key(2),
            seller_payout: ScriptBuf::new(),
        };
        assert!(accepted(&info(), ok).is_ok());
        let other = Msg::Accept {
            seller_key: key(3),
            seller_payout: ScriptBuf::new(),
        };
        assert_eq!(accepted(&info(), other), Err(StepError::OtherKey));
        assert!(matches!(
            accepted(&info(), state(0, true)),
            Err(StepError::Unexpected { got: "state", .. })
        ));
    }

    #[test]
    fn funded_answers() {
        let ch = OutPoint::null();
        assert_eq!(funded(Msg::Ready { channel: ch }), Ok(OpenState::Ready));
        assert_eq!(
            funded(Msg::Pending {
                channel: ch,
                have: 0,
                need: 1
            }),
            Ok(OpenState::Pending { have: 0, need: 1 })
        );
        assert!(funded(state(0, true)).is_err());
    }

    #[test]
    fn resume_answers() {
        assert_eq!(resumed(500, state(500, true)), Ok(Resumed::InStep));
        assert_eq!(
            resumed(500, state(400, true)),
            Ok(Resumed::Resend { theirs: 400 })
        );
        assert_eq!(
            resumed(500, state(600, true)),
            Err(StepError::SellerAhead {
                ours: 500,
                theirs: 600
            })
        );
        assert_eq!(resumed(500, state(500, false)), Err(StepError::Closed));
        assert!(resumed(
            0,
            Msg::Ready {
                channel: OutPoint::null()
            }
        )
        .is_err());
        assert!(announce_again(0));
        assert!(!announce_again(1));
    }

    #[test]
    fn acks_come_in_order() {
        let ack = |t| Msg::Ack {
            channel: OutPoint::null(),
            total_msat: t,
        };
        let mut a = Acks::default();
        a.sent(1000);
        a.sent(2000);
        assert!(a.reply(&ack(2000)).is_err(), "out of order");
        assert_eq!(a.reply(&ack(1000)), Ok(1000));
        assert_eq!(a.reply(&ack(2000)), Ok(2000));
        assert!(a.is_empty());
        assert!(a.reply(&ack(3000)).is_err(), "nothing in flight");
    }
}
