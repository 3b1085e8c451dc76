//! How many `propose` messages a seller answers per IP.
//!
//! Why: `propose` needs no authentication, and answering it costs a chain
//! query (the tip) and the wallet (a payout script). Each IP may propose
//! [`PER_WINDOW`] times per [`WINDOW`]; more are refused without a look-up.
//! One IP's flood cannot starve buyers at other addresses (a global limit
//! would), and the table of IPs is bounded: when full, expired windows are
//! dropped, and while it stays full new IPs are refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Proposals one IP may make per window: a buyer proposes once per channel
/// it opens, a few times when its funding fails.
pub const PER_WINDOW: u32 = 8;
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most IPs counted at once.
const MAX_IPS: usize = 4096;

#[derive(Default)]
pub struct Admit {
    seen: HashMap<IpAddr, (Instant, u32)>,
}

impl Admit {
    /// Whether `ip` may propose now (counting this one).
    pub fn propose(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.seen.contains_key(&ip) && self.seen.len() >= MAX_IPS {
            self.seen
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if self.seen.len() >= MAX_IPS {
                return false;
            }
        }
        let (start, n) = self.seen.entry(ip).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *n) = (now, 0);
        }
        if *n >= PER_WINDOW {
            return false;
        }
        *n += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ip_gets_its_own_window_and_the_table_is_bounded() {
        let mut a = Admit::default();
        let t = Instant::now();
        let (x, y): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..PER_WINDOW {
            assert!(a.propose(x, t));
        }
        assert!(!a.propose(x, t + Duration::from_secs(1)), "over the limit");
        assert!(a.propose(y, t), "another IP is not starved");
        assert!(a.propose(x, t + WINDOW), "a new window");
        // A table full of live windows refuses new IPs, keeps known ones.
        let mut a = Admit::default();
        for i in 0..MAX_IPS as u32 {
            assert!(a.propose(IpAddr::from(i.to_be_bytes()), t));
        }
        let new: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!a.propose(new, t));
        assert!(a.propose(IpAddr::from(1u32.to_be_bytes()), t));
        // Once they expire, room is made.
        assert!(a.propose(new, t + WINDOW));
        assert!(a.seen.len() <= 2);
    }
}
