//! Which bytes the writer reads for a batch of uploads.
//!
//! A peer's requests mostly come in order, block after block of a piece:
//! the writer reads each run of contiguous blocks as one range (one trip to
//! the blocking pool for the batch, one `pread` per run, from memory when
//! the piece is still there) instead of a whole piece per block asked for.
//! Only the requested bytes are held, so a peer reading 16 MiB pieces
//! costs no 16 MiB buffer, and the kernel's page cache keeps what is read
//! again.

/// The runs to read and, for each block in the order given, where its
/// bytes are: run index and offset within the run.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ReadPlan {
    pub(super) runs: Vec<(u64, u64)>,
    pub(super) at: Vec<(usize, usize)>,
}

/// Largest run read at once.
const MAX_RUN: u64 = 1 << 20;

impl ReadPlan {
    /// `blocks`: torrent offset and length of each upload, in send order.
    pub(super) fn new(blocks: &[(u64, u32)]) -> ReadPlan {
        let mut plan = ReadPlan::default();
        for &(off, len) in blocks {
            let len = len as u64;
            let last = plan.runs.len().wrapping_sub(1);
            match plan.runs.last_mut() {
                Some((start, n)) if *start + *n == off && *n + len <= MAX_RUN => {
                    plan.at.push((last, *n as usize));
                    *n += len;
                }
                _ => {
                    plan.at.push((plan.runs.len(), 0));
                    plan.runs.push((off, len));
                }
            }
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_blocks_are_one_run_and_others_start_their_own() {
        let k = 16384u64;
        let p = ReadPlan::new(&[
            (0, 16384),
            (k, 16384),
            (2 * k, 16384),
            (10 * k, 16384), // a jump
            (11 * k, 8192),
            (5 * k, 16384), // back
        ]);
        assert_eq!(p.runs, vec![(0, 3 * k), (10 * k, k + 8192), (5 * k, k)]);
        assert_eq!(
            p.at,
            vec![(0, 0), (0, 16384), (0, 32768), (1, 0), (1, 16384), (2, 0)]
        );
        assert_eq!(ReadPlan::new(&[]), ReadPlan::default());
    }

    #[test]
    fn a_run_stops_at_its_bound() {
        let blocks: Vec<(u64, u32)> = (0..100).map(|i| (i * 16384, 16384)).collect();
        let p = ReadPlan::new(&blocks);
        assert_eq!(p.runs.len(), 2);
        assert_eq!(p.runs[0], (0, MAX_RUN));
        assert_eq!(p.runs[1], (MAX_RUN, 100 * 16384 - MAX_RUN));
        assert_eq!(p.at[64], (1, 0));
    }
}
