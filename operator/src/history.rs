//! What a TaskQueue's decisions remember between readings: recent
//! recommendations (for the scale-down window), since when the queue has been
//! idle (for the step to zero), and the measured rate of one replica (for
//! `drainWithin`). Updated only by [`History::record`] from a decision.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::decision::Decision;
use crate::drain::RateEstimate;

/// Recommendations of the recent past, and since when the queue has been idle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    recommendations: VecDeque<(Instant, i32)>,
    idle_since: Option<Instant>,
    rate: Option<RateEstimate>,
}

impl History {
    /// A history for a TaskQueue first seen at `now` with `current` replicas: it
    /// counts as a recommendation, so a restarted operator does not scale down
    /// before a full window has passed.
    pub fn starting_at(now: Instant, current: i32) -> Self {
        Self {
            recommendations: VecDeque::from([(now, current)]),
            idle_since: None,
            rate: None,
        }
    }

    /// Remembers what `decision` saw, forgetting what fell out of `window`.
    pub fn record(&mut self, now: Instant, decision: &Decision, window: Duration) {
        self.rate = decision.rate.or(self.rate);
        let Some(recommendation) = decision.recommendation else {
            return;
        };
        while let Some((at, _)) = self.recommendations.front() {
            if now.saturating_duration_since(*at) > window {
                self.recommendations.pop_front();
            } else {
                break;
            }
        }
        self.recommendations.push_back((now, recommendation));
        self.idle_since = if decision.idle {
            self.idle_since.or(Some(now))
        } else {
            None
        };
    }

    pub(crate) fn highest_within(&self, now: Instant, window: Duration) -> Option<i32> {
        self.recommendations
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= window)
            .map(|(_, r)| *r)
            .max()
    }

    /// Tasks/s one replica completes, as measured so far.
    pub fn rate_per_replica(&self) -> Option<f64> {
        self.rate.and_then(|r| r.per_replica)
    }

    pub(crate) fn rate(&self) -> Option<RateEstimate> {
        self.rate
    }

    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        self.idle_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}
