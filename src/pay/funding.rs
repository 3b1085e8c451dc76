//! Watching an unconfirmed (zero-conf) funding, as rules without I/O.
//!
//! A seller that accepts a channel before its funding confirms risks that the
//! buyer double-spends the funding's inputs. It cannot prevent that, but it can
//! bound what it serves once the conflict is visible: the funding is checked
//! on chain every watch interval, whenever half the credit was served since
//! the last check, and before an acknowledgement that pays for more of the
//! served bytes than the last check vouched for; the seller serves at most
//! `credit` (plus the waste allowance) beyond what the last good check
//! vouched for. So once the funding is gone (replaced, its input spent by
//! another transaction, or dropped from the node's mempool) at most that much
//! is served before the channel stops. An honest buyer does not wait on
//! this: the check asked at half the credit returns before the other half is
//! served (the book in [`super::book`] applies these rules).

/// What the chain says about a funding transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FundingSeen {
    Confirmed,
    /// In the node's mempool, unconfirmed.
    Mempool,
    /// Neither in the mempool nor in the chain: double-spent or dropped.
    Gone,
}

/// What to do with an unconfirmed channel after a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Confirmed: no more watching.
    Confirmed,
    /// Still unconfirmed and acceptable: serve on.
    Wait,
    /// Stop serving the channel, for this reason.
    Stop(String),
}

/// The verdict on a channel first seen unconfirmed at height `since`, now at
/// `tip`; `timeout_blocks` (0: none) is how long an unconfirmed funding is
/// served at all.
pub fn verdict(seen: FundingSeen, tip: u32, since: u32, timeout_blocks: u32) -> Verdict {
    match seen {
        FundingSeen::Confirmed => Verdict::Confirmed,
        FundingSeen::Gone => Verdict::Stop(
            "the funding transaction is gone from the node's mempool (double-spent or dropped)"
                .into(),
        ),
        FundingSeen::Mempool if timeout_blocks > 0 && tip >= since.saturating_add(timeout_blocks) => {
            Verdict::Stop(format!(
                "the funding is still unconfirmed after {} blocks (--zero-conf-timeout-blocks {timeout_blocks})",
                tip - since
            ))
        }
        FundingSeen::Mempool => Verdict::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(
            verdict(FundingSeen::Confirmed, 100, 90, 6),
            Verdict::Confirmed
        );
        assert_eq!(verdict(FundingSeen::Mempool, 95, 90, 6), Verdict::Wait);
        assert!(matches!(
            verdict(FundingSeen::Mempool, 96, 90, 6),
            Verdict::Stop(_)
        ));
        assert_eq!(verdict(FundingSeen::Mempool, 1000, 90, 0), Verdict::Wait);
        assert!(
            matches!(verdict(FundingSeen::Gone, 90, 90, 0), Verdict::Stop(r) if r.contains("gone"))
        );
    }
}
