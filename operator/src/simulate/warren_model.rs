//! warren itself, in simulated time: the broker poller's cycle, the reading the
//! reconciler builds from its sample, the real [`decide`] with the TaskQueue's
//! [`History`], and the real IdleFirst plan ([`occupancy`], [`plan`]) before a
//! scale-down.
//!
//! As the operator does it:
//!
//! - a poll every `pollInterval` (at least 200 ms, as the poller clamps it); the
//!   first poll makes a totals and a statistics listing, every
//!   [`STATS_EVERY`]th a statistics listing only, the others a totals listing;
//!   a totals listing refreshes the counts and their time, a statistics listing
//!   the consumers and rates and keeps the last counts and their time (the
//!   poller's `merge`); the statistics listing's own (lagging) counts and its
//!   time go into the reading's `rates_listed`, for `drainWithin`'s rates;
//! - a reconciliation after every poll, at once: the reading's `age` is the time
//!   since its counts were listed (one interval after a statistics-only cycle);
//! - `History::starting_at` at the first decision with the replicas then,
//!   `History::record` after each decision with the stabilization window;
//! - with `scaleDown.policy: IdleFirst` and a Deployment target, a scale-down is
//!   planned from the consumer listing (each pod's consumer tag is its name) and
//!   the fresh unacked count, and the busy pods get their deletion cost.
//!
//! Not modelled: API latency (the decision and `/scale` take no time), broker
//! or API outages (the reading is never missing), the safety requeue.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::ScaleRequest;
use super::broker_view::BrokerView;
use super::fleet::{Fleet, PodId};
use crate::broker::occupancy::QueueConsumer;
use crate::broker::poller::STATS_EVERY;
use crate::crd::{ScaleDownChoice, TaskQueueSpec};
use crate::decision::{History, QueueReading, QueueState, ScalingPolicy, decide};
use crate::drain::ListedCounts;
use crate::scale_down::plan::{Occupancy, TargetPod, occupancy, plan};

/// The poller's sample of the queue: counts from totals listings, consumers and
/// rates from statistics listings.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    ready: i64,
    unacked: i64,
    consumers: Option<i64>,
    publish_rate: Option<f64>,
    ack_rate: Option<f64>,
    /// When the counts were listed.
    taken_at: f64,
    /// The last statistics listing: when, and the (lagging) counts it gave.
    rates_listed: Option<(f64, i64, i64)>,
}

pub struct WarrenModel {
    policy: ScalingPolicy,
    idle_first: bool,
    interval: f64,
    next_poll: f64,
    cycle: u64,
    sample: Option<Sample>,
    history: Option<History>,
    /// Simulated time 0 as an `Instant`, for `decide` and `History`.
    origin: Instant,
}

impl WarrenModel {
    /// The first poll at `phase` (0..1) of the interval.
    pub fn new(spec: &TaskQueueSpec, phase: f64, origin: Instant) -> Self {
        let interval = spec
            .poll_interval
            .duration()
            .max(Duration::from_millis(200))
            .as_secs_f64();
        Self {
            policy: ScalingPolicy::from(spec),
            idle_first: spec.scale_down.policy == ScaleDownChoice::IdleFirst
                && spec.scale_target_ref.is_deployment(),
            interval,
            next_poll: phase * interval,
            cycle: 0,
            sample: None,
            history: None,
            origin,
        }
    }

    pub fn next_poll_at(&self) -> f64 {
        self.next_poll
    }

    /// The replicas the operator starts from: its minimum.
    pub fn floor(&self) -> usize {
        usize::try_from(self.policy.min_replicas).unwrap_or(0)
    }

    /// The per-replica rate the history keeps for `drainWithin`, once measured.
    pub fn rate_per_replica(&self) -> Option<f64> {
        self.history.as_ref()?.rate_per_replica()
    }

    /// One poll and the reconciliation it triggers, at the fleet's time.
    pub fn poll(&mut self, fleet: &Fleet, view: &BrokerView) -> Option<ScaleRequest> {
        let now = fleet.now();
        self.list(now, fleet, view);
        self.cycle += 1;
        self.next_poll += self.interval;
        let sample = self.sample.as_ref()?;
        let reading = QueueReading {
            ready: sample.ready,
            unacked: sample.unacked,
            consumers: sample.consumers,
            publish_rate: sample.publish_rate,
            ack_rate: sample.ack_rate,
            age: since(now, sample.taken_at),
            rates_listed: sample
                .rates_listed
                .map(|(at, ready, unacked)| ListedCounts {
                    ready,
                    unacked,
                    age: since(now, at),
                }),
        };
        let at = self.origin + Duration::from_secs_f64(now.max(0.0));
        let current = i32::try_from(fleet.replicas()).unwrap_or(i32::MAX);
        let history = self
            .history
            .get_or_insert_with(|| History::starting_at(at, current));
        let state = QueueState::Known(reading.clone());
        let decision = decide(&self.policy, &state, history, current, at);
        history.record(at, &decision, self.policy.stabilization_window);
        let mut costs = HashMap::new();
        let mut desired = decision.desired;
        let (decided, said) = (decision.desired, decision.reason.clone());
        if desired < current && self.idle_first {
            (desired, costs) = idle_first(fleet, view, &reading, current, decision);
        }
        let replicas = usize::try_from(desired).unwrap_or(0);
        let reason = if desired == decided {
            said
        } else {
            format!("{current} -> {desired}: IdleFirst ({said})")
        };
        (replicas != fleet.replicas()).then_some(ScaleRequest {
            replicas,
            costs,
            reason,
        })
    }

    /// The listings of this cycle, merged into the sample as the poller merges them.
    fn list(&mut self, now: f64, fleet: &Fleet, view: &BrokerView) {
        let stats_cycle = self.cycle.is_multiple_of(STATS_EVERY);
        let totals = self.cycle == 0 || !stats_cycle || self.sample.is_none();
        if totals {
            let (ready, unacked) = BrokerView::totals(fleet);
            let before = self.sample.take();
            self.sample = Some(Sample {
                ready,
                unacked,
                consumers: before.as_ref().and_then(|b| b.consumers),
                publish_rate: before.as_ref().and_then(|b| b.publish_rate),
                ack_rate: before.as_ref().and_then(|b| b.ack_rate),
                taken_at: now,
                rates_listed: before.and_then(|b| b.rates_listed),
            });
        }
        if stats_cycle && let Some(sample) = self.sample.as_mut() {
            let stats = view.statistics();
            sample.consumers = Some(stats.consumers);
            sample.publish_rate = Some(stats.publish_rate);
            sample.ack_rate = Some(stats.ack_rate);
            sample.rates_listed = Some((now, stats.ready, stats.unacked));
        }
    }
}

/// A `Duration` of simulated seconds from `then` to `now`.
fn since(now: f64, then: f64) -> Duration {
    Duration::from_secs_f64((now - then).max(0.0))
}

/// The IdleFirst guard: the plan from the consumer listing, and the costs it writes.
fn idle_first(
    fleet: &Fleet,
    view: &BrokerView,
    reading: &QueueReading,
    current: i32,
    decision: crate::decision::Decision,
) -> (i32, HashMap<PodId, i32>) {
    let name = |id: PodId| format!("pod-{id}");
    let pods: Vec<TargetPod> = fleet
        .live_pods()
        .map(|(id, _)| TargetPod {
            name: name(id),
            ip: None,
            cost: None,
        })
        .collect();
    let consumers: Vec<QueueConsumer> = view
        .consumers(fleet)
        .into_iter()
        .map(|(id, unacked)| QueueConsumer {
            tag: name(id),
            peer_host: None,
            channel: name(id),
            unacked,
        })
        .collect();
    match occupancy(&pods, &consumers, reading.unacked) {
        Occupancy::Known { pods, unattributed } => {
            let planned = plan(decision, current, &pods, unattributed);
            let ids: HashMap<String, PodId> =
                fleet.live_pods().map(|(id, _)| (name(id), id)).collect();
            let costs = planned
                .costs
                .iter()
                .filter_map(|(pod, cost)| Some((*ids.get(pod)?, *cost)))
                .collect();
            (planned.decision.desired, costs)
        }
        // Every consumer is a pod of the target here; kept for completeness.
        Occupancy::Unknown(_) => (decision.desired, HashMap::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::broker_view::STATISTICS_INTERVAL;
    use crate::simulate::distribution::Distribution;
    use crate::simulate::fleet::FleetConfig;

    fn spec(yaml: &str) -> TaskQueueSpec {
        serde_yaml::from_str(yaml).expect("valid spec")
    }

    fn fleet(tasks: usize, service: f64, replicas: usize) -> Fleet {
        let config = FleetConfig {
            concurrency: 1,
            startup: Distribution::Const(2.0),
            grace_period: 30.0,
            seed: 1,
        };
        Fleet::new(&vec![(0.0, service); tasks], replicas, config)
    }

    const BACKLOG: &str = "queue: q\nscaleTargetRef: {name: w}\nminReplicas: 0\n\
        maxReplicas: 50\ntargetBacklogPerReplica: 10\npollInterval: 1s\n";

    #[test]
    fn a_burst_reaches_its_replicas_at_the_first_poll() {
        for (tasks, want) in [(2000, 50), (95, 10), (1, 1)] {
            let mut fleet = fleet(tasks, 1.0, 0);
            let view = BrokerView::new(&fleet, 2.5, STATISTICS_INTERVAL);
            let mut warren = WarrenModel::new(&spec(BACKLOG), 0.5, Instant::now());
            assert_eq!(warren.next_poll_at(), 0.5);
            fleet.advance(0.5);
            let asked = warren.poll(&fleet, &view).expect("scales up");
            assert_eq!(asked.replicas, want, "{tasks} tasks");
            assert_eq!(warren.next_poll_at(), 1.5);
        }
    }

    #[test]
    fn idle_first_removes_only_idle_pods() {
        let yaml = format!("{BACKLOG}scaleDown: {{stabilizationWindow: 0s}}\n");
        let mut fleet = fleet(2, 10.0, 4);
        let mut view = BrokerView::new(&fleet, 1.0, STATISTICS_INTERVAL);
        let mut warren = WarrenModel::new(&spec(&yaml), 0.0, Instant::now());
        fleet.advance(0.0);
        assert_eq!(warren.poll(&fleet, &view), None, "the history starts at 4");
        fleet.advance(1.0);
        // The last statistics emission was before the tasks: no consumer shows
        // them, so the 2 unacked are unattributed and no pod is known to be idle.
        assert_eq!(warren.poll(&fleet, &view), None);
        view.emit(&fleet);
        fleet.advance(2.0);
        let asked = warren.poll(&fleet, &view).expect("scales down");
        assert_eq!(asked.replicas, 2, "the two busy pods stay");
        assert_eq!(asked.costs, HashMap::from([(0, 1), (1, 1)]));
    }

    #[test]
    fn statistics_listings_feed_the_drain_targets_rate() {
        let yaml = "queue: q\nscaleTargetRef: {name: w}\nminReplicas: 5\nmaxReplicas: 5\n\
            drainWithin: 60s\npollInterval: 1s\n";
        let mut fleet = fleet(500, 1.0, 5);
        let mut view = BrokerView::new(&fleet, 2.5, STATISTICS_INTERVAL);
        let mut warren = WarrenModel::new(&spec(yaml), 0.5, Instant::now());
        let mut rates = Vec::new();
        while warren.next_poll_at() < 20.0 {
            let at = warren.next_poll_at().min(view.next_emission_at());
            fleet.advance(at);
            if view.next_emission_at() <= at {
                view.emit(&fleet);
            }
            if warren.next_poll_at() <= at {
                assert_eq!(warren.poll(&fleet, &view), None, "min = max = 5");
                rates.push(warren.rate_per_replica());
            }
        }
        // Polls at 0.5, 1.5, ...: statistics listings at the 1st, 7th and 13th.
        // The 7th's acks span the burst's start (nothing held at the 1st): not
        // measured. The 13th follows a listing as busy as itself: 1 s tasks on 5
        // busy pods, 1 task/s per replica.
        assert_eq!(rates[..12], [None; 12], "{rates:?}");
        let measured = rates[12].expect("measured at 12.5 s");
        assert!((0.9..=1.1).contains(&measured), "{measured}");
    }
}
