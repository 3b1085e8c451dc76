//! One-way payment channels, buyer → seller (DESIGN.md "Payment channel").
//!
//! Sans-io: nothing here touches sockets, disk, threads or the clock (a test
//! below keeps it so). [`script`] builds the funding script, [`tx`] the
//! commitment and refund transactions, [`channel`] the buyer's and seller's
//! state with every check a payment must pass, [`amount`] how amounts are
//! typed and printed, [`price`] the price and credit rules, [`funding`] the zero-conf watch rules, [`proto`] the `btt_pay`
//! messages, [`book`] the seller's answer to each of them step by step, and
//! [`opening`] the buyer's decisions at open and resume. Persistence, chain
//! access and connections are in [`crate::market`].
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

pub mod amount;
pub mod book;
pub mod channel;
pub mod funding;
pub mod opening;
pub mod price;
pub mod proto;
pub mod script;
#[cfg(test)]
mod testkit;
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

#[cfg(test)]
mod layering {
    /// `pay` stays free of I/O, and the engine imports neither `pay` nor
    /// `market` (it defines the hook traits they implement).
    #[test]
    fn pay_does_no_io_and_the_engine_knows_no_payments() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let rust = |dir: &str| -> Vec<(std::path::PathBuf, String)> {
            let mut out = Vec::new();
            let mut todo = vec![root.join(dir)];
            while let Some(d) = todo.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        todo.push(p);
                    } else if p.extension().is_some_and(|x| x == "rs") {
                        let text = std::fs::read_to_string(&p).unwrap();
                        out.push((p, text));
                    }
                }
            }
            assert!(!out.is_empty());
            out
        };
        for (p, text) in rust("pay") {
            for banned in [
                "tokio",
                "std::net",
                "std::thread",
                "rusqlite",
                "std::fs",
                "Instant::now",
                "SystemTime",
            ] {
                let code: String = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let code = code.split("#[cfg(test)]").next().unwrap_or_default();
                assert!(!code.contains(banned), "{} uses {banned}", p.display());
            }
        }
        for (p, text) in rust("engine") {
            for banned in ["crate::pay", "crate::market"] {
                assert!(!text.contains(banned), "{} uses {banned}", p.display());
            }
        }
    }
}
