//! Per-handle read-ahead window: starts small, doubles while reads stay sequential
//! (up to a maximum), and snaps back to the start size after a seek. Pure.

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
    next: Option<u64>,
    window: u64,
}

impl ReadAhead {
    pub fn new(cfg: ReadAheadConfig) -> Self {
        ReadAhead {
            cfg,
            next: None,
            window: cfg.initial,
        }
    }

    /// Records a read and returns the window (bytes after it) to fetch ahead.
    pub fn on_read(&mut self, offset: u64, len: u64) -> u64 {
        match self.next {
            // The kernel's own read-ahead may reorder slightly; treat reads within
            // a window of the expected offset as sequential.
            Some(n) if offset >= n.saturating_sub(self.window) && offset <= n + self.window => {
                self.window = (self.window * 2).min(self.cfg.max);
            }
            Some(_) => self.window = self.cfg.initial,
            None => {}
        }
        self.next = Some(offset + len);
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
    fn grows_sequentially_and_snaps_back_on_seek() {
        let mut ra = ReadAhead::new(ReadAheadConfig {
            initial: 100,
            max: 800,
        });
        assert_eq!(ra.on_read(0, 10), 100);
        assert_eq!(ra.on_read(10, 10), 200);
        assert_eq!(ra.on_read(20, 10), 400);
        assert_eq!(ra.on_read(30, 10), 800);
        assert_eq!(ra.on_read(40, 10), 800, "capped");
        assert_eq!(ra.on_read(1_000_000, 10), 100, "seek resets");
        assert_eq!(ra.on_read(1_000_010, 10), 200);
    }
}
