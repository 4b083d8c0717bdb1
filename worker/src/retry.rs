//! How long to wait before the next attempt of a failing task.

use std::time::Duration;

/// Exponential backoff: `base * 2^attempt`, capped at `max`, for up to
/// `max_retries` retries after the first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            base: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based), or `None` when the retries
    /// are spent. `already` counts retries made before this delivery (the message's
    /// `retries` header), so a redelivered message does not start over.
    pub fn delay(&self, already: u32, retry: u32) -> Option<Duration> {
        let total = already.saturating_add(retry);
        if total >= self.max_retries {
            return None;
        }
        let factor = 2u32.saturating_pow(total.min(31));
        Some(self.base.saturating_mul(factor).min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_stops() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (0..5).map(|n| policy.delay(0, n)).collect();
        assert_eq!(
            delays,
            vec![
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(800)),
                None,
                None
            ]
        );
        assert_eq!(policy.delay(2, 0), Some(Duration::from_millis(800)));
        assert_eq!(policy.delay(3, 0), None);
    }

    proptest! {
        #[test]
        fn never_exceeds_the_cap(already in 0u32..1000, retry in 0u32..1000, max_retries in 0u32..100) {
            let policy = RetryPolicy { max_retries, ..RetryPolicy::default() };
            if let Some(delay) = policy.delay(already, retry) {
                prop_assert!(delay <= policy.max);
                prop_assert!(already + retry < max_retries);
            }
        }
    }
}
