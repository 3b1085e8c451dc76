//! When to announce again: the tracker's interval, its minimum, and back-off.
//!
//! Why a module of its own: a client that announces faster than asked loads
//! every tracker it uses (btt re-announced every 15 s to a tracker that asked
//! for 1 658 s, and retried a failing one every 5 s for ever). The rules,
//! without I/O or a clock:
//! - after an answer, wait the tracker's `interval`, never less than its
//!   `min interval` and never less than [`FLOOR`];
//! - the one exception: the first time an answer leaves us with no peers at
//!   all, ask again after [`FLOOR`] (a seeder that starts just after us is
//!   then found in half a minute, not after a min interval that trackers
//!   such as opentracker set to a quarter of an hour); once only;
//! - after a failure, wait [`FIRST_RETRY`], doubling with each failure in a
//!   row up to [`MAX_BACKOFF`]; an answer resets it.

use std::time::Duration;

/// The shortest wait between announces, whatever a tracker asks.
pub const FLOOR: Duration = Duration::from_secs(30);
/// The wait after a first failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(15);
/// The longest wait after failures.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Default)]
pub struct Schedule {
    failures: u32,
    /// The early re-announce for want of peers was made.
    early_used: bool,
}

impl Schedule {
    /// The tracker answered; how long until the next announce.
    pub fn answered(
        &mut self,
        interval: Duration,
        min_interval: Option<Duration>,
        have_peers: bool,
    ) -> Duration {
        self.failures = 0;
        let least = min_interval.unwrap_or(FLOOR).max(FLOOR);
        if !have_peers && !self.early_used {
            self.early_used = true;
            return FLOOR;
        }
        interval.max(least)
    }

    /// The announce failed; how long until the next try.
    pub fn failed(&mut self) -> Duration {
        let wait = FIRST_RETRY
            .saturating_mul(1u32 << self.failures.min(16))
            .min(MAX_BACKOFF);
        self.failures = self.failures.saturating_add(1);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_trackers_interval_is_kept_and_never_undercut() {
        let mut s = Schedule::default();
        assert_eq!(s.answered(S(1658), None, true), S(1658));
        assert_eq!(s.answered(S(1800), Some(S(900)), true), S(1800));
        // Shorter than its own minimum, or than ours: the minimum holds.
        assert_eq!(s.answered(S(60), Some(S(120)), true), S(120));
        assert_eq!(s.answered(S(5), None, true), FLOOR);
        assert_eq!(s.answered(S(5), Some(S(1)), true), FLOOR);
    }

    #[test]
    fn with_no_peers_once_sooner_then_as_asked() {
        let mut s = Schedule::default();
        assert_eq!(s.answered(S(1800), Some(S(900)), false), FLOOR);
        assert_eq!(s.answered(S(1800), Some(S(900)), false), S(1800));
        assert_eq!(s.answered(S(20), None, false), FLOOR);
        let mut s = Schedule::default();
        assert_eq!(s.answered(S(1800), None, true), S(1800));
        assert_eq!(s.answered(S(1800), None, false), FLOOR, "peers lost later");
        assert_eq!(s.answered(S(1800), None, false), S(1800));
    }

    #[test]
    fn failures_back_off_to_a_cap_and_an_answer_resets() {
        let mut s = Schedule::default();
        let waits: Vec<u64> = (0..10).map(|_| s.failed().as_secs()).collect();
        assert_eq!(waits, [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
        for _ in 0..100 {
            assert_eq!(s.failed(), MAX_BACKOFF);
        }
        s.answered(S(1800), None, true);
        assert_eq!(s.failed(), FIRST_RETRY);
    }
}
