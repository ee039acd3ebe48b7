//! A floor under a download's speed: a server that trickles bytes forever is given up on
//! after one window, instead of holding its client for as long as it likes.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RateFloor {
    min_bytes_per_sec: u64,
    window: Duration,
    start: Instant,
    bytes: u64,
}

impl RateFloor {
    pub fn new(min_bytes_per_sec: u64, window: Duration) -> Self {
        Self {
            min_bytes_per_sec,
            window,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes just received; at the end of each window, errs with the window's rate
    /// (bytes/s) when it was under the floor.
    pub fn record(&mut self, n: usize) -> Result<(), f64> {
        self.bytes += n as u64;
        let elapsed = self.start.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        (self.start, self.bytes) = (Instant::now(), 0);
        if rate < self.min_bytes_per_sec as f64 {
            Err(rate)
        } else {
            Ok(())
        }
    }

    pub fn min_bytes_per_sec(&self) -> u64 {
        self.min_bytes_per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_window_fails_and_a_fast_one_passes() {
        let mut fast = RateFloor::new(10, Duration::from_millis(50));
        fast.record(1000).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        fast.record(1000).unwrap();
        let mut slow = RateFloor::new(1_000_000, Duration::from_millis(50));
        slow.record(1).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let rate = slow.record(1).unwrap_err();
        assert!(rate < 100.0, "{rate}");
    }
}
