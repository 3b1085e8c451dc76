//! Amounts as people type and read them: `25000sat`, `25k`, `11718750msat`,
//! `0.00025BTC` (a bare number is sat), and one way of printing them.
//!
//! Why here: every command that takes a budget, a channel size or an amount
//! to send must accept the same spellings, and what btt prints must parse
//! back. Pure.

use std::fmt;

/// An amount that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AmountError {
    #[error("{0:?} is not an amount (e.g. 25000sat, 25k, 11718750msat or 0.00025BTC)")]
    Bad(String),
    #[error("{0:?} is not a whole number of sat (on-chain amounts have no msat)")]
    NotWholeSat(String),
}

/// Reads an amount in msat.
pub fn parse_msat(s: &str) -> Result<u64, AmountError> {
    let bad = || AmountError::Bad(s.to_string());
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    // (number, msat per unit, decimals the unit allows)
    let (num, per, decimals) = if let Some(n) = lower.strip_suffix("msat") {
        (n, 1u128, 0)
    } else if let Some(n) = lower.strip_suffix("btc") {
        (n, 100_000_000_000, 11)
    } else if let Some(n) = lower
        .strip_suffix("ksat")
        .or_else(|| lower.strip_suffix('k'))
    {
        (n, 1_000_000, 6)
    } else if let Some(n) = lower
        .strip_suffix("sats")
        .or_else(|| lower.strip_suffix("sat"))
    {
        (n, 1000, 3)
    } else {
        (lower.as_str(), 1000, 3)
    };
    let num = num.trim().replace('_', "");
    let (whole, frac) = num.split_once('.').unwrap_or((&num, ""));
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    // A dot needs digits after it ("1." is a typo, not 1).
    let frac_ok = if num.contains('.') {
        digits(frac)
    } else {
        true
    };
    if !digits(whole) || !frac_ok || frac.len() > decimals {
        return Err(bad());
    }
    let whole: u128 = whole.parse().map_err(|_| bad())?;
    let frac_msat: u128 = if frac.is_empty() {
        0
    } else {
        let f: u128 = frac.parse().map_err(|_| bad())?;
        f * per / 10u128.pow(frac.len() as u32)
    };
    let v = whole
        .checked_mul(per)
        .and_then(|w| w.checked_add(frac_msat))
        .ok_or_else(bad)?;
    u64::try_from(v).map_err(|_| bad())
}

/// Reads an amount in whole sat (an on-chain amount or a channel's size).
pub fn parse_sat(s: &str) -> Result<u64, AmountError> {
    let msat = parse_msat(s)?;
    if !msat.is_multiple_of(1000) {
        return Err(AmountError::NotWholeSat(s.to_string()));
    }
    Ok(msat / 1000)
}

/// An amount in msat, printed as btt prints every amount: sat, with the
/// msat as three decimals when there are any (`1234 sat`, `0.250 sat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msat(pub u64);

impl fmt::Display for Msat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 % 1000 {
            0 => write!(f, "{} sat", self.0 / 1000),
            r => write!(f, "{}.{r:03} sat", self.0 / 1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_reads_the_same() {
        for (s, msat) in [
            ("25000", 25_000_000),
            ("25000sat", 25_000_000),
            ("25000 sat", 25_000_000),
            ("25000sats", 25_000_000),
            ("25k", 25_000_000),
            ("25ksat", 25_000_000),
            ("11718750msat", 11_718_750),
            ("0.00025BTC", 25_000_000),
            ("0.00025 btc", 25_000_000),
            ("1BTC", 100_000_000_000),
            ("0.00000000001BTC", 1),
            ("1.5sat", 1500),
            ("100_000sat", 100_000_000),
        ] {
            assert_eq!(parse_msat(s), Ok(msat), "{s}");
        }
    }

    #[test]
    fn nonsense_and_overflow_are_refused() {
        for s in [
            "",
            "sat",
            "-5sat",
            "1.2msat",
            "1.0000000000001BTC",
            "1e5",
            "abc",
            "1..2",
            ".5sat",
            "99999999999999999999sat",
            "1.",
            "1.sat",
        ] {
            assert!(matches!(parse_msat(s), Err(AmountError::Bad(_))), "{s}");
        }
    }

    #[test]
    fn whole_sat_only_where_the_chain_needs_it() {
        assert_eq!(parse_sat("0.001BTC"), Ok(100_000));
        assert_eq!(parse_sat("5000msat"), Ok(5));
        assert_eq!(
            parse_sat("1500msat"),
            Err(AmountError::NotWholeSat("1500msat".into()))
        );
    }

    #[test]
    fn what_is_printed_reads_back() {
        for msat in [0, 1, 250, 1000, 1_234_567, 11_718_750] {
            let shown = Msat(msat).to_string();
            assert_eq!(parse_msat(&shown), Ok(msat), "{shown}");
        }
        assert_eq!(Msat(11_718_750).to_string(), "11718.750 sat");
    }
}
