//! Exponential back-off between retries of an I/O shell (a log that is away, a coordinator
//! that does not answer). Not part of the deterministic core: it bounds waits, and no pause it
//! takes reaches an event.

use std::time::Duration;

/// Doubling pauses from `min` up to `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Pauses start at `min` and double up to `max` (`max` below `min` is raised to `min`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The pause to take now; the one after it is twice as long, up to the limit.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// Sleeps [`Backoff::next_pause`].
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }

    /// Back to the shortest pause (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_limit_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(500));
        let pauses: Vec<_> = (0..5).map(|_| b.next_pause()).collect();
        assert_eq!(pauses, [ms(100), ms(200), ms(400), ms(500), ms(500)]);
        b.reset();
        assert_eq!(b.next_pause(), ms(100));
    }

    #[test]
    fn a_limit_below_the_start_is_the_start() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(300), ms(10));
        assert_eq!(b.next_pause(), ms(300));
        assert_eq!(b.next_pause(), ms(300));
    }
}
