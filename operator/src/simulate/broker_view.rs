//! What RabbitMQ's management API would report about the simulated queue.
//!
//! Two views, as in `crate::broker::management`:
//!
//! - a totals listing reads the queue's own counts: `ready` and `unacked` exact at
//!   the moment of the poll;
//! - everything that goes through the statistics database (consumers, publish and
//!   ack rates, the per-queue endpoint's `messages` that KEDA reads, the consumer
//!   listing that IdleFirst reads) is as of the broker's last statistics
//!   emission. The broker emits every `collect_statistics_interval` (RabbitMQ's
//!   default 5 s), and a rate is the count over the previous interval divided by
//!   it. Emissions keep the simulation's phase, like the pollers.
//!
//! A consumer listed is a consuming pod (a terminating pod has cancelled its
//! consumer); its unacknowledged count is that of the last emission, or 0 for a
//! consumer that appeared since.

use super::fleet::{Fleet, PodId, PodPhase};

/// RabbitMQ's `collect_statistics_interval` default, in seconds.
pub const STATISTICS_INTERVAL: f64 = 5.0;

/// One emission of the statistics database.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    /// When the broker emitted it.
    pub at: f64,
    pub consumers: i64,
    /// `messages_ready` and `messages_unacknowledged` as of the emission.
    pub ready: i64,
    pub unacked: i64,
    /// Publishes and acks per second over the interval before the emission.
    pub publish_rate: f64,
    pub ack_rate: f64,
    /// Deliveries each consuming pod held at the emission.
    pub held_by: Vec<(PodId, i64)>,
}

impl Statistics {
    /// `messages`: ready plus unacknowledged.
    pub fn messages(&self) -> i64 {
        self.ready + self.unacked
    }
}

pub struct BrokerView {
    interval: f64,
    next_emission: f64,
    latest: Statistics,
    /// Published and acked counts at the latest emission, for the rates.
    counted: (usize, usize),
}

impl BrokerView {
    /// The first emission at `first_emission`; the one before it (an interval
    /// earlier) saw the fleet as it starts, with no traffic.
    pub fn new(fleet: &Fleet, first_emission: f64, interval: f64) -> Self {
        let mut latest = snapshot(fleet, first_emission - interval);
        latest.publish_rate = 0.0;
        latest.ack_rate = 0.0;
        Self {
            interval,
            next_emission: first_emission,
            latest,
            counted: (fleet.published(), fleet.acked()),
        }
    }

    pub fn next_emission_at(&self) -> f64 {
        self.next_emission
    }

    /// The broker's emission at the fleet's current time.
    pub fn emit(&mut self, fleet: &Fleet) {
        let mut latest = snapshot(fleet, fleet.now());
        let (published, acked) = (fleet.published(), fleet.acked());
        latest.publish_rate = (published - self.counted.0) as f64 / self.interval;
        latest.ack_rate = (acked - self.counted.1) as f64 / self.interval;
        self.counted = (published, acked);
        self.latest = latest;
        self.next_emission += self.interval;
    }

    /// What goes through the statistics database now.
    pub fn statistics(&self) -> &Statistics {
        &self.latest
    }

    /// A totals listing: (ready, unacked), exact.
    pub fn totals(fleet: &Fleet) -> (i64, i64) {
        (count(fleet.ready()), count(fleet.unacked()))
    }

    /// The consumer listing: each consuming pod with what it held at the last
    /// emission (0 for a consumer since created).
    pub fn consumers(&self, fleet: &Fleet) -> Vec<(PodId, i64)> {
        fleet
            .live_pods()
            .filter(|(_, pod)| pod.phase == PodPhase::Consuming)
            .map(|(id, _)| {
                let held = self
                    .latest
                    .held_by
                    .iter()
                    .find(|(pod, _)| *pod == id)
                    .map_or(0, |(_, held)| *held);
                (id, held)
            })
            .collect()
    }
}

fn snapshot(fleet: &Fleet, at: f64) -> Statistics {
    let held_by: Vec<(PodId, i64)> = fleet
        .live_pods()
        .filter(|(_, pod)| pod.phase == PodPhase::Consuming)
        .map(|(id, pod)| (id, count(pod.holding())))
        .collect();
    let (ready, unacked) = BrokerView::totals(fleet);
    Statistics {
        at,
        consumers: count(held_by.len()),
        ready,
        unacked,
        publish_rate: 0.0,
        ack_rate: 0.0,
        held_by,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::simulate::distribution::Distribution;
    use crate::simulate::fleet::FleetConfig;

    #[test]
    fn statistics_lag_and_rates_average_over_the_interval() {
        let config = FleetConfig {
            concurrency: 1,
            startup: Distribution::Const(1.0),
            grace_period: 30.0,
            seed: 1,
        };
        let tasks: Vec<(f64, f64)> = (0..20).map(|i| (f64::from(i) * 0.25, 0.1)).collect();
        let mut fleet = Fleet::new(&tasks, 1, config);
        let mut view = BrokerView::new(&fleet, 2.5, STATISTICS_INTERVAL);
        assert_eq!(view.statistics().at, -2.5);
        assert_eq!(view.statistics().consumers, 1);
        fleet.advance(2.5);
        view.emit(&fleet);
        assert_eq!(view.next_emission_at(), 7.5);
        let stats = view.statistics().clone();
        // Tasks at 0, 0.25, ..., 2.5: 11 published, 10 acked within 0.1 s each.
        assert_eq!(stats.publish_rate, 11.0 / 5.0);
        assert_eq!(stats.ack_rate, 10.0 / 5.0);
        assert_eq!((stats.ready, stats.unacked), (0, 1));
        assert_eq!(stats.held_by, [(0, 1)]);
        // A new pod consumes: listed at once, holding 0 until the next emission.
        fleet.scale_to(2, &HashMap::new());
        fleet.advance(3.6);
        assert_eq!(view.consumers(&fleet), [(0, 1), (1, 0)]);
        assert_eq!(BrokerView::totals(&fleet).0, 0);
    }
}
