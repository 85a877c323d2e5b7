//! Pauses of background work: the exponential delays between attempts (from `backon`), and the one
//! sleep that the node's stop signal cuts short.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::watch;

/// The delays between attempts of one piece of work: `min`, then each twice the one before, capped
/// at `max`; no jitter, and no limit on attempts (the work is retried until it succeeds or the node
/// stops).
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// Delays from `min` doubling to `max` (`min <= max`).
    pub fn new(min: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(min)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times();
        Self {
            builder,
            delays: builder.build(),
            max,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on attempts the delays never run out; `max` only keeps this total.
        self.delays.next().unwrap_or(self.max)
    }

    /// Starts again from `min` (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

/// Sleeps `delay`, or less if `stop` turns true (or its sender is gone) meanwhile. Returns true when
/// told to stop: the caller returns instead of trying again.
pub async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => false,
        _ = stop.wait_for(|stopped| *stopped) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(backoff: &mut Backoff, n: usize) -> Vec<u128> {
        (0..n).map(|_| backoff.next_delay().as_millis()).collect()
    }

    #[test]
    fn delays_double_from_the_first_up_to_the_longest_then_start_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        assert_eq!(millis(&mut backoff, 7), [200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(millis(&mut backoff, 2), [200, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_cuts_the_sleep_short() {
        let (stop_tx, mut stop) = watch::channel(false);
        let started = tokio::time::Instant::now();
        assert!(!sleep_or_stop(&mut stop, Duration::from_secs(1)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        let sleeping = tokio::spawn(async move { sleep_or_stop(&mut stop, Duration::from_secs(3600)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        stop_tx.send(true).unwrap();
        assert!(sleeping.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
