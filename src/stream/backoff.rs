//! Jittered exponential backoff for reopening streams.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exponential backoff with jitter: each delay is drawn from the upper
/// half of the current step, so that the streams of many workers that
/// broke together do not reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    step: Duration,
    seed: u64,
}

impl Backoff {
    /// Steps from `base`, doubling up to `max`.
    pub fn new(base: Duration, max: Duration) -> Backoff {
        static SALT: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = nanos ^ SALT.fetch_add(0x6a09_e667_f3bc_c909, Ordering::Relaxed);
        Backoff {
            base,
            max,
            step: base,
            seed: seed | 1,
        }
    }

    /// The next delay, in `[step/2, step]`; the step then doubles.
    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let frac = (self.seed % 1024) as f64 / 2048.0 + 0.5;
        let delay = self.step.mul_f64(frac);
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// Back to the first step (after a healthy stream).
    pub fn reset(&mut self) {
        self.step = self.base;
    }
}
