//! Rate limits (`--max-down`, `--max-up`): one token bucket per direction
//! for the whole process, shared by every torrent and connection.
//!
//! Why a bucket with debt: a connection reads or writes first and then
//! pays for what it moved, waiting until the bucket is even again. The
//! socket then stays unread (or unwritten) meanwhile, and TCP's own flow
//! control slows the other side; no read size has to be guessed in
//! advance. The rule is pure ([`Bucket::take`] returns the wait); the
//! waiting is [`throttle`]'s (or, for a session's reads, a pause of the
//! read alone: its commands and timers go on meanwhile). A few lines, so not worth a crate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per second, with a small burst; the rate can be changed (or
/// lifted) while it is in use (`PUT /api/v1/limits`).
#[derive(Debug)]
pub struct Bucket {
    /// (tokens, when last refilled, rate); tokens below zero are debt; no
    /// rate: no limit.
    state: Mutex<(f64, Instant, Option<f64>)>,
}

fn burst(rate: f64) -> f64 {
    // A tenth of a second's worth, at least one block.
    (rate / 10.0).max(16384.0)
}

impl Bucket {
    /// At most `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Bucket {
        Bucket::with(Some(rate))
    }

    /// `None`: no limit until one is set.
    pub fn with(rate: Option<u64>) -> Bucket {
        Bucket {
            state: Mutex::new((0.0, Instant::now(), rate.map(|r| r.max(1) as f64))),
        }
    }

    pub fn rate(&self) -> Option<u64> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .2
            .map(|r| r as u64)
    }

    /// A new rate (`None`: no limit); debt is forgiven, and whoever waits
    /// sees it within [`SLICE`].
    pub fn set_rate(&self, rate: Option<u64>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *st = (0.0, Instant::now(), rate.map(|r| r.max(1) as f64));
    }

    /// `n` bytes moved at `now`: how long to wait before moving more.
    pub fn take(&self, n: u64, now: Instant) -> Duration {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rate) = st.2 else {
            return Duration::ZERO;
        };
        let dt = now.saturating_duration_since(st.1).as_secs_f64();
        st.0 = (st.0 + dt * rate).min(burst(rate)) - n as f64;
        st.1 = now.max(st.1);
        if st.0 >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-st.0 / rate)
        }
    }
}

/// A direction's limit, if any (shared by clones of the engine's config).
pub type Limit = Option<Arc<Bucket>>;

/// How long moving `n` bytes costs under `limit` (zero: go on).
pub fn cost(limit: &Limit, n: usize) -> Duration {
    match limit {
        Some(b) => b.take(n as u64, Instant::now()),
        None => Duration::ZERO,
    }
}

/// The longest single wait: a rate changed meanwhile (lifted, say) takes
/// effect after at most this long.
pub const SLICE: Duration = Duration::from_secs(1);

/// How much longer what was moved costs (a changed rate counts at once).
pub fn owed(limit: &Limit) -> Duration {
    cost(limit, 0)
}

/// Waits as long as moving `n` bytes costs under `limit`.
pub async fn throttle(limit: &Limit, n: usize) {
    let mut wait = cost(limit, n);
    while !wait.is_zero() {
        tokio::time::sleep(wait.min(SLICE)).await;
        wait = owed(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waits_add_up_to_the_rate() {
        let b = Bucket::new(1_000_000);
        let t0 = Instant::now();
        // 10 MB in 64 KiB steps, each after the wait the previous asked.
        let mut now = t0;
        let mut moved = 0u64;
        while moved < 10_000_000 {
            now += b.take(65536, now);
            moved += 65536;
        }
        let secs = now.duration_since(t0).as_secs_f64();
        assert!((9.8..=10.5).contains(&secs), "{secs}");
    }

    #[test]
    fn a_rate_can_be_lifted_and_set_again() {
        let b = Bucket::with(None);
        let now = Instant::now();
        assert_eq!(b.take(100_000_000, now), Duration::ZERO, "no limit");
        b.set_rate(Some(1_000_000));
        assert_eq!(b.rate(), Some(1_000_000));
        let wait = b.take(2_000_000, now + Duration::from_millis(1));
        assert!((1.9..=2.01).contains(&wait.as_secs_f64()), "{wait:?}");
        b.set_rate(None);
        assert_eq!(
            b.take(100_000_000, now),
            Duration::ZERO,
            "lifted: no debt left"
        );
    }

    #[test]
    fn idle_time_saves_only_a_small_burst() {
        let b = Bucket::new(1_000_000);
        let later = Instant::now() + Duration::from_secs(60);
        // A minute idle buys a tenth of a second, not a minute.
        assert_eq!(b.take(100_000, later), Duration::ZERO);
        let wait = b.take(1_000_000, later);
        assert!((0.99..=1.01).contains(&wait.as_secs_f64()), "{wait:?}");
    }
}
