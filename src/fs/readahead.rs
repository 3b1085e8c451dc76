//! Per-handle read-ahead window: twice what was read sequentially since the
//! last seek, at least the start size and at most the maximum (roughly how
//! the kernel's own read-ahead grows). Growing by bytes read, not by read
//! calls, matters after a seek: a player decoding a few MiB from a keyframe
//! makes dozens of small reads, and doubling per call would ask the swarm
//! for the whole maximum (fetched and hashed while the player needs the
//! CPU) for a read that stops after 2 MiB. Pure.

#[derive(Clone, Copy, Debug)]
pub struct ReadAheadConfig {
    pub initial: u64,
    pub max: u64,
}

impl Default for ReadAheadConfig {
    fn default() -> Self {
        ReadAheadConfig {
            initial: 1 << 20,
            max: 32 << 20,
        }
    }
}

#[derive(Debug)]
pub struct ReadAhead {
    cfg: ReadAheadConfig,
    /// Where the next sequential read would start.
    next: Option<u64>,
    /// Where the current sequential run began.
    run_start: u64,
    window: u64,
}

impl ReadAhead {
    pub fn new(cfg: ReadAheadConfig) -> Self {
        ReadAhead {
            cfg,
            next: None,
            run_start: 0,
            window: cfg.initial,
        }
    }

    /// Records a read and returns the window (bytes after it) to fetch ahead.
    pub fn on_read(&mut self, offset: u64, len: u64) -> u64 {
        let end = offset.saturating_add(len);
        let next = match self.next {
            // The kernel's own read-ahead may reorder slightly; treat reads within
            // a window of the expected offset as sequential.
            Some(n) if offset >= n.saturating_sub(self.window) && offset <= n + self.window => {
                self.run_start = self.run_start.min(offset);
                n.max(end)
            }
            _ => {
                self.run_start = offset;
                end
            }
        };
        self.next = Some(next);
        let run = next.saturating_sub(self.run_start);
        // Not `clamp`, which panics on a config whose start exceeds its maximum.
        self.window = run
            .saturating_mul(2)
            .max(self.cfg.initial)
            .min(self.cfg.max);
        self.window
    }

    pub fn window(&self) -> u64 {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_the_bytes_read_and_snaps_back_on_seek() {
        let mut ra = ReadAhead::new(ReadAheadConfig {
            initial: 100,
            max: 800,
        });
        assert_eq!(ra.on_read(0, 10), 100, "at least the start size");
        assert_eq!(ra.on_read(10, 90), 200, "twice the 100 bytes read");
        assert_eq!(ra.on_read(100, 100), 400);
        assert_eq!(ra.on_read(200, 200), 800);
        assert_eq!(ra.on_read(400, 400), 800, "capped");
        assert_eq!(ra.on_read(1_000_000, 10), 100, "seek resets");
        assert_eq!(ra.on_read(1_000_010, 140), 300);
    }

    #[test]
    fn slightly_reordered_reads_stay_one_run() {
        let mut ra = ReadAhead::new(ReadAheadConfig {
            initial: 100,
            max: 10_000,
        });
        ra.on_read(0, 100);
        ra.on_read(200, 100);
        assert_eq!(ra.on_read(100, 100), 600, "the run still starts at 0");
    }

    /// A player's seek: one read at the head, then 2 MiB decoded from a
    /// keyframe far into the file in 128 KiB reads. The window stays near
    /// what is read; doubling per call reached the 32 MiB maximum.
    #[test]
    fn small_reads_after_a_seek_ask_for_little() {
        let mut ra = ReadAhead::new(ReadAheadConfig::default());
        ra.on_read(0, 128 << 10);
        let mut w = 0;
        for i in 0..16 {
            w = ra.on_read((60 << 20) + i * (128 << 10), 128 << 10);
        }
        assert_eq!(w, 4 << 20, "twice the 2 MiB read since the seek");
    }
}
