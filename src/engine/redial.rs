//! When to dial an address again after failed dials. Sans-io.
//!
//! An address that keeps failing is tried less and less often (0.5 s,
//! doubling, at most 10 s), so a swarm of dead addresses costs little. But
//! a peer that has sent us data, while a reader waits on a piece, is the
//! one most likely to serve it when it comes back (a seeder restarted, a
//! connection dropped): it is tried every [`URGENT`], so a read resumes
//! within about that long after it returns, not after a back-off grown
//! while it was gone (3.3 s measured with the seeder away for 20 s).

use std::time::Duration;

/// Between dials of a peer that served us, while a reader waits.
pub const URGENT: Duration = Duration::from_millis(250);
const FIRST: Duration = Duration::from_millis(500);
const LONGEST: Duration = Duration::from_secs(10);

/// How long after its last dial an address is dialed again, after
/// `failures` failed dials in a row; `urgent`: it has served us and a
/// reader waits.
pub fn after(failures: u32, urgent: bool) -> Duration {
    let grown = (FIRST * (1u32 << failures.min(5))).min(LONGEST);
    match urgent {
        true => grown.min(URGENT),
        false => grown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_grows_unless_a_reader_waits_on_a_peer_that_served() {
        let ms = |f, u| after(f, u).as_millis();
        assert_eq!(
            (0..7).map(|f| ms(f, false)).collect::<Vec<_>>(),
            vec![500, 1000, 2000, 4000, 8000, 10_000, 10_000]
        );
        assert!((0..40).all(|f| ms(f, true) == 250));
    }
}
