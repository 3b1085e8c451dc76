//! One-way payment channels, buyer → seller (DESIGN.md "Payment channel").
//!
//! Sans-io: nothing here touches sockets, disk or the clock. [`script`] builds the
//! funding script, [`tx`] the commitment and refund transactions, and
//! [`channel`] the buyer's and seller's state with every check a payment must
//! pass. Persistence, chain access and the BEP 10 messages build on top.
//!
//! Amount rules (decided here, relied on everywhere):
//! - Totals are cumulative and in millisatoshi. The seller's output is
//!   `floor(total_msat / 1000)` sat: the seller forgoes the sub-satoshi
//!   remainder (< 1 sat per channel), the buyer never pays more than its total.
//! - The fee is fixed at open and paid by the buyer's side:
//!   `buyer = capacity − fee − seller`. A total can never exceed
//!   `(capacity − fee) × 1000` msat.
//! - An output below [`DUST_SAT`] is left out and its value goes to the fee; so a
//!   seller does not close before its output clears dust, and the buyer's change
//!   disappears only when it is dust anyway.
//! - Exposure: the buyer signs only for data it has verified, so it risks at most
//!   the fee and having its funds locked until expiry if the seller vanishes; the
//!   seller serves at most its configured credit beyond the last signed total.

pub mod buyer;
pub mod buying;
pub mod channel;
pub mod funding;
pub mod price;
pub mod proto;
pub mod script;
pub mod seller_node;
pub mod tx;

pub use bdk_wallet::bitcoin;

/// Outputs below this are not created (the largest standard dust limit, for P2PKH;
/// P2WPKH/P2WSH limits are lower, so this is safe for every payout script).
pub const DUST_SAT: u64 = 546;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayError {
    #[error("signature does not verify for this commitment")]
    BadSignature,
    #[error("total {got} msat does not exceed the last total {last} msat")]
    NotIncreasing { last: u64, got: u64 },
    #[error("total {got} msat exceeds the channel's capacity of {max} msat")]
    OverCapacity { max: u64, got: u64 },
    #[error("funding output script does not match the channel")]
    WrongFundingScript,
    #[error("funding output holds {got} sat, the channel needs {want} sat")]
    WrongFundingValue { want: u64, got: u64 },
    #[error("funding transaction has no output {0}")]
    NoSuchOutput(u32),
    #[error("channel is for network {theirs}, we are on {ours}")]
    WrongNetwork { ours: String, theirs: String },
    #[error("expiry height {expiry} is outside the accepted range {min}..={max}")]
    ExpiryOutOfRange { expiry: u32, min: u32, max: u32 },
    #[error("fee {fee} sat leaves nothing of the {capacity} sat capacity")]
    FeeTooHigh { fee: u64, capacity: u64 },
    #[error("refund is not valid before height {expiry} (tip is {tip})")]
    TooEarly { tip: u32, expiry: u32 },
    #[error("nothing to close: no payment received yet")]
    NothingToClose,
    #[error("the seller's output ({sat} sat) would be dust")]
    Dust { sat: u64 },
    #[error("signing failed: {0}")]
    Sign(String),
}
