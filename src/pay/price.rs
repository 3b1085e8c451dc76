//! Prices and the seller's credit rule, in one place so buyer and seller
//! compute the same amounts.
//!
//! A price is msat per GiB (2^30 bytes). The amount owed for `n` bytes is
//! `ceil(n × price / 2^30)` msat, always computed on the *cumulative* byte
//! count, so rounding never accumulates: after any number of pieces the buyer
//! owes at most 1 msat more than the exact price. A seller serves a buyer while
//! the cost of everything served on the channel, including the new block,
//! stays within what is paid plus the cost of `credit` bytes, plus a waste
//! allowance of 1/32 of what is paid: a buyer legitimately receives bytes it
//! never pays for (the losing copy of a block asked from two peers, a block it
//! cancelled too late, a request in flight when it stopped), and without the
//! allowance that waste would eat a long-lived channel's credit for good. The
//! seller risks at most `credit` plus about 3 % of its revenue on the channel.

use std::fmt;
use std::str::FromStr;

const GIB: u128 = 1 << 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Price {
    pub msat_per_gib: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad price {0:?}: expected e.g. 2000sat/GiB, 3sat/MiB or 500msat/MiB")]
pub struct PriceError(String);

impl Price {
    pub fn msat_per_gib(msat_per_gib: u64) -> Price {
        Price { msat_per_gib }
    }

    /// What `bytes` cost, rounded up to the msat.
    pub fn cost_msat(self, bytes: u64) -> u64 {
        let c = (bytes as u128 * self.msat_per_gib as u128).div_ceil(GIB);
        c.min(u64::MAX as u128) as u64
    }

    /// The most bytes `msat` pays for.
    pub fn bytes_for(self, msat: u64) -> u64 {
        if self.msat_per_gib == 0 {
            return u64::MAX;
        }
        let b = msat as u128 * GIB / self.msat_per_gib as u128;
        b.min(u64::MAX as u128) as u64
    }
}

impl FromStr for Price {
    type Err = PriceError;
    fn from_str(s: &str) -> Result<Price, PriceError> {
        let bad = || PriceError(s.to_string());
        let t = s.trim();
        let (amount, unit) = t.split_once('/').ok_or_else(bad)?;
        let amount = amount.trim();
        let (num, msat_per_unit) = if let Some(n) = amount.strip_suffix("msat") {
            (n, 1u128)
        } else if let Some(n) = amount.strip_suffix("sat") {
            (n, 1000u128)
        } else {
            return Err(bad());
        };
        let num: u128 = num.trim().parse().map_err(|_| bad())?;
        let per: u128 = match unit.trim() {
            "B" => 1 << 30,
            "KiB" => 1 << 20,
            "MiB" => 1 << 10,
            "GiB" => 1,
            _ => return Err(bad()),
        };
        let v = num * msat_per_unit * per;
        u64::try_from(v).map(Price::msat_per_gib).map_err(|_| bad())
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.msat_per_gib.is_multiple_of(1000) {
            write!(f, "{}sat/GiB", self.msat_per_gib / 1000)
        } else {
            write!(f, "{}msat/GiB", self.msat_per_gib)
        }
    }
}

/// The seller's view of one channel: bytes served and msat paid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub served_bytes: u64,
    pub paid_msat: u64,
}

impl Account {
    /// After a restart the seller does not know what it served beyond the
    /// payments; it assumes exactly what was paid for.
    pub fn resumed(price: Price, paid_msat: u64) -> Account {
        Account {
            served_bytes: price.bytes_for(paid_msat),
            paid_msat,
        }
    }

    /// Whether `len` more bytes stay within the paid total plus `credit`
    /// bytes plus the waste allowance.
    pub fn may_serve(&self, price: Price, credit: u64, len: u64) -> bool {
        let owed = price.cost_msat(self.served_bytes.saturating_add(len));
        owed <= self
            .paid_msat
            .saturating_add(price.cost_msat(credit))
            .saturating_add(waste_allowance_msat(self.paid_msat))
    }

    /// Served bytes no payment covers yet (what `state` reports as `unpaid`).
    pub fn unpaid_bytes(&self, price: Price) -> u64 {
        self.served_bytes
            .saturating_sub(price.bytes_for(self.paid_msat))
    }

    /// `len` bytes counted by [`Account::may_serve`] were never sent (the
    /// buyer cancelled them, or the connection closed first).
    pub fn unserved(&mut self, len: u64) {
        self.served_bytes = self.served_bytes.saturating_sub(len);
    }
}

/// What a seller tolerates served and never paid for beyond its credit, once
/// `paid_msat` is paid on the channel (`btt_pay.md` §7): 1/32 of it.
pub fn waste_allowance_msat(paid_msat: u64) -> u64 {
    paid_msat / 32
}

/// Bytes a buyer may have outstanding (requested, or verified and not yet
/// acknowledged) on a channel holding `total_msat`, whose seller announced
/// `credit` and reported `unpaid` bytes: the seller's rule seen from the
/// buyer, rounded down.
pub fn buyer_room(price: Price, credit: u64, total_msat: u64, unpaid: u64) -> u64 {
    credit
        .saturating_add(price.bytes_for(waste_allowance_msat(total_msat)))
        .saturating_sub(unpaid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("2000sat/GiB".parse(), Ok(Price::msat_per_gib(2_000_000)));
        assert_eq!("2sat/MiB".parse(), Ok(Price::msat_per_gib(2_048_000)));
        assert_eq!("500msat/MiB".parse(), Ok(Price::msat_per_gib(512_000)));
        assert_eq!("0sat/GiB".parse(), Ok(Price::msat_per_gib(0)));
        for bad in ["", "2000", "2000sat", "x sat/GiB", "1sat/TiB", "-1sat/GiB"] {
            assert!(bad.parse::<Price>().is_err(), "{bad}");
        }
        assert_eq!(Price::msat_per_gib(2_000_000).to_string(), "2000sat/GiB");
        assert_eq!(Price::msat_per_gib(1).to_string(), "1msat/GiB");
    }

    #[test]
    fn cost_rounds_up_once_on_the_cumulative_total() {
        let p: Price = "2000sat/GiB".parse().unwrap();
        assert_eq!(p.cost_msat(1 << 30), 2_000_000);
        assert_eq!(p.cost_msat(0), 0);
        assert_eq!(p.cost_msat(1), 1);
        // 4096 pieces of 256 KiB: exactly the GiB price, no drift.
        assert_eq!(p.cost_msat(4096 * 262_144), 2_000_000);
        assert!(p.bytes_for(p.cost_msat(12_345)) >= 12_344);
    }

    #[test]
    fn credit_bounds_what_is_served() {
        let p: Price = "1000sat/GiB".parse().unwrap();
        let credit = 1 << 20;
        let mut a = Account::default();
        // Unpaid: one MiB of credit, not a byte more.
        assert!(a.may_serve(p, credit, 1 << 20));
        a.served_bytes = 1 << 20;
        assert!(!a.may_serve(p, credit, 16384));
        // Paying for the first MiB opens another.
        a.paid_msat = p.cost_msat(1 << 20);
        assert!(a.may_serve(p, credit, 1 << 20));
        // Plus the waste allowance: 1/32 of 977 msat paid ≈ 31 KiB.
        assert!(a.may_serve(p, credit, (1 << 20) + 16384));
        assert!(!a.may_serve(p, credit, (1 << 20) + 65536));
        let r = Account::resumed(p, a.paid_msat);
        assert!(r.served_bytes >= 1 << 20 && p.cost_msat(r.served_bytes) <= a.paid_msat);
        // Bytes counted but never sent come off again.
        a.served_bytes = p.bytes_for(a.paid_msat) + 16384;
        assert_eq!(a.unpaid_bytes(p), 16384);
        a.unserved(16384);
        assert_eq!(a.unpaid_bytes(p), 0);
    }

    #[test]
    fn waste_allowance_keeps_a_long_channel_usable() {
        let p: Price = "1000sat/GiB".parse().unwrap();
        let credit = 16 << 20;
        // 10 GiB paid, 200 MiB wasted over the channel's life (2 %).
        let paid_bytes = 10u64 << 30;
        let a = Account {
            served_bytes: paid_bytes + (200 << 20),
            paid_msat: p.cost_msat(paid_bytes),
        };
        assert!(a.may_serve(p, credit, credit));
        assert_eq!(a.unpaid_bytes(p), 200 << 20);
    }

    proptest::proptest! {
        /// Whatever the buyer keeps outstanding within `buyer_room`, the
        /// seller's rule lets it be served: the two sides never disagree
        /// into a reject.
        #[test]
        fn buyer_room_is_within_the_seller_rule(
            msat_per_gib in 0u64..10_000_000_000,
            credit in 0u64..(1 << 30),
            paid_bytes in 0u64..(1 << 40),
            unpaid in 0u64..(1 << 31),
            frac in 0u64..=1000,
        ) {
            let p = Price::msat_per_gib(msat_per_gib);
            let paid_msat = p.cost_msat(paid_bytes);
            let room = buyer_room(p, credit, paid_msat, unpaid);
            // A seller already past its rule (room 0 and more) rejects anything.
            proptest::prop_assume!(room > 0);
            let outstanding = room.min(1 << 40) / 1000 * frac;
            let a = Account {
                served_bytes: p.bytes_for(paid_msat).min(1 << 50) + unpaid,
                paid_msat,
            };
            proptest::prop_assert!(a.may_serve(p, credit, outstanding));
        }
    }
}
