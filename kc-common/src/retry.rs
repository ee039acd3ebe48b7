//! Retry with exponential backoff: one policy for every network caller (the mirror, the
//! GitHub API, the installer's downloads).

use std::time::Duration;

/// How often to try, and how long to wait before the second attempt (doubling after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub attempts: u32,
    pub first_wait: Duration,
}

/// What one attempt's failure means: why to retry (`R`), or why not (`F`, by default `R`).
#[derive(Debug)]
pub enum Attempt<R, F = R> {
    /// Worth another try (a cut connection, a 5xx).
    Retry(R),
    /// Another try would fail the same way (a 404, a bad token).
    Fatal(F),
}

/// Why [`Backoff::run`] stopped without a result.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure<R, F = R> {
    Fatal(F),
    GaveUp { attempts: u32, last: R },
}

impl Backoff {
    pub const fn new(attempts: u32, first_wait: Duration) -> Self {
        Self {
            attempts,
            first_wait,
        }
    }

    /// The wait before attempt `n` (1-based): none before the first, then `first_wait`
    /// doubling.
    pub fn wait_before(&self, n: u32) -> Duration {
        match n {
            0 | 1 => Duration::ZERO,
            n => self.first_wait * 2u32.saturating_pow(n - 2),
        }
    }

    /// Calls `attempt` (with its 1-based number) until it succeeds, fails fatally, or the
    /// attempts run out.
    pub fn run<T, R, F>(
        &self,
        mut attempt: impl FnMut(u32) -> Result<T, Attempt<R, F>>,
    ) -> Result<T, Failure<R, F>> {
        let attempts = self.attempts.max(1);
        let mut n = 1;
        loop {
            std::thread::sleep(self.wait_before(n));
            match attempt(n) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fatal(e)) => return Err(Failure::Fatal(e)),
                Err(Attempt::Retry(e)) if n >= attempts => {
                    return Err(Failure::GaveUp { attempts, last: e })
                }
                Err(Attempt::Retry(_)) => n += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_and_attempts_are_bounded() {
        let b = Backoff::new(4, Duration::from_millis(100));
        let waits: Vec<u128> = (1..=4).map(|n| b.wait_before(n).as_millis()).collect();
        assert_eq!(waits, [0, 100, 200, 400]);
        let fast = Backoff::new(3, Duration::ZERO);
        let mut seen = Vec::new();
        let r: Result<(), Failure<String>> = fast.run(|n| {
            seen.push(n);
            Err(Attempt::Retry(format!("cut {n}")))
        });
        assert_eq!(seen, [1, 2, 3]);
        assert_eq!(
            r,
            Err(Failure::GaveUp {
                attempts: 3,
                last: "cut 3".into()
            })
        );
    }

    #[test]
    fn a_fatal_error_stops_and_a_success_returns() {
        let fast = Backoff::new(5, Duration::ZERO);
        let mut calls = 0;
        let r: Result<(), Failure<&str>> = fast.run(|_| {
            calls += 1;
            Err(Attempt::Fatal("404"))
        });
        assert_eq!((calls, r), (1, Err(Failure::Fatal("404"))));
        let r: Result<u32, Failure<&str>> = fast.run(|n| {
            if n < 3 {
                Err(Attempt::Retry("5xx"))
            } else {
                Ok(n)
            }
        });
        assert_eq!(r, Ok(3));
    }
}
