//! `warren-operator simulate`: replays an arrival trace against scaling
//! policies before they are deployed, in simulated time, and measures what each
//! costs in waiting and in pods.
//!
//! One run per policy over the same tasks (same arrivals, same service times,
//! the same start-up delay for the k-th pod): a discrete-event loop over the
//! [`fleet`] (queue, pods, tasks), the [`broker_view`] (what the management API
//! reports and when) and one scaler: warren's own decision ([`warren_model`]) or
//! KEDA with an HPA ([`keda_model`]). Every periodic process (warren's polls,
//! KEDA's polls, HPA syncs, the broker's statistics emissions) first fires at
//! the same `phase` of its period: 0.5, the default, is the expected offset of a
//! burst arriving at a random moment. Each run starts at the policy's minimum
//! replicas (pods already running) and ends when every task is done and the
//! Deployment is back at its minimum with no pod terminating, or `tail` after
//! the last arrival. The assumptions of each part are in its module header and
//! in docs/scaling.md.

pub mod agenda;
pub mod broker_view;
pub mod compare;
pub mod distribution;
pub mod fleet;
pub mod keda_model;
pub mod real_run;
pub mod recorded;
pub mod replica_set;
pub mod report;
pub mod spec;
pub mod svg;
pub mod taskqueue_file;
pub mod trace;
pub mod warren_model;

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use rand::SeedableRng;

use crate::crd::TaskQueueSpec;
use crate::decision::ScalingPolicy;
use broker_view::{BrokerView, STATISTICS_INTERVAL};
use distribution::Distribution;
use fleet::{Fleet, FleetConfig, PodId};
use keda_model::{KedaModel, KedaSettings};
use report::{Counted, Decided, Outcome, Point, summarize};
use trace::{Trace, stream_seed};
use warren_model::WarrenModel;

/// The shortest period of anything periodic, so that a zero from a library
/// caller cannot stall the clock.
pub(crate) const MIN_PERIOD: f64 = 0.001;

/// The simulator's generator: ChaCha8, whose stream a seed fixes across platforms.
pub type SimRng = rand::rngs::ChaCha8Rng;

/// What a scaler asks of the Deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleRequest {
    pub replicas: usize,
    /// `pod-deletion-cost` of pods, for the ReplicaSet's choice; absent means 0.
    pub costs: HashMap<PodId, i32>,
    /// Why, as the operator's Event or the HPA's status would say it.
    pub reason: String,
}

/// Everything about a run that is not the trace or the policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Service time of tasks the trace gives none.
    pub service_time: Distribution,
    pub startup: Distribution,
    /// Tasks a pod runs at once (= its prefetch).
    pub concurrency: usize,
    pub grace_period: f64,
    pub seed: u64,
    /// Where in its period each periodic process first fires (0..1).
    pub phase: f64,
    /// Seconds between points of the time series.
    pub sample_every: f64,
    /// Longest a run goes on after the last arrival, seconds.
    pub tail: f64,
    pub keda: KedaSettings,
}

impl Settings {
    /// The settings as recorded in the JSON output, with how many of `trace`'s
    /// tasks bring their own service time.
    pub fn describe(&self, trace: &Trace) -> serde_json::Value {
        serde_json::json!({
            "service_time": self.service_time.to_string(),
            "tasks_with_their_own_service_time": own_service_times(trace),
            "startup": self.startup.to_string(),
            "concurrency": self.concurrency,
            "grace_period_s": self.grace_period,
            "seed": self.seed,
            "phase": self.phase,
            "sample_every_s": self.sample_every,
            "tail_s": self.tail,
            "keda": {
                "polling_interval_s": self.keda.polling_interval,
                "cooldown_period_s": self.keda.cooldown_period,
                "activation_value": self.keda.activation_value,
                "hpa_sync_period_s": self.keda.hpa_sync_period,
                "hpa_tolerance": self.keda.tolerance,
                "hpa_scale_up_pods": self.keda.scale_up_pods,
                "hpa_scale_up_percent": self.keda.scale_up_percent,
                "hpa_scale_up_period_s": self.keda.scale_up_period,
                "hpa_scale_down_window_s": self.keda.scale_down_window,
            },
        })
    }

    /// One line for a chart's subtitle (a long list of values shortened).
    pub fn summary_line(&self, trace: &Trace) -> String {
        format!(
            "service {}, start-up {}, concurrency {}, seed {}",
            self.service_source(trace),
            self.startup.brief(),
            self.concurrency,
            self.seed
        )
    }

    /// Where the service times of `trace`'s tasks come from: the trace itself
    /// (a recorded one with a service column), `service_time`, or both.
    pub fn service_source(&self, trace: &Trace) -> String {
        match own_service_times(trace) {
            0 => self.service_time.brief(),
            n if n == trace.arrivals.len() => "from the trace".to_owned(),
            _ => format!("from the trace, else {}", self.service_time.brief()),
        }
    }
}

/// Arrivals of `trace` that carry their own service time.
fn own_service_times(trace: &Trace) -> usize {
    trace
        .arrivals
        .iter()
        .filter(|a| a.service.is_some())
        .count()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// warren with the TaskQueue as given.
    Warren,
    /// KEDA + HPA with the TaskQueue's target, min and max.
    Keda,
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Contender {
    pub label: String,
    pub kind: PolicyKind,
    pub spec: TaskQueueSpec,
}

/// The runs asked for: warren once per TaskQueue (labelled by its name), KEDA
/// once per distinct target/min/max (labelled `keda (name)`).
pub fn contenders(queues: &[(String, TaskQueueSpec)], kinds: &[PolicyKind]) -> Vec<Contender> {
    let mut rows = Vec::new();
    if kinds.contains(&PolicyKind::Warren) {
        rows.extend(queues.iter().map(|(name, spec)| Contender {
            label: name.clone(),
            kind: PolicyKind::Warren,
            spec: spec.clone(),
        }));
    }
    if kinds.contains(&PolicyKind::Keda) {
        let mut seen = BTreeSet::new();
        for (name, spec) in queues {
            let policy = ScalingPolicy::from(spec);
            let key = (
                policy.min_replicas,
                policy.max_replicas,
                policy.target_backlog_per_replica,
            );
            if seen.insert(key) {
                rows.push(Contender {
                    label: format!("keda ({name})"),
                    kind: PolicyKind::Keda,
                    spec: spec.clone(),
                });
            }
        }
    }
    rows
}

/// The trace's tasks for `queue` as (publish time, service seconds): arrivals
/// the trace gives no queue, or this one; their own service time, else one drawn
/// from `settings.service_time` (the same for every run on the same queue).
pub fn tasks_of(trace: &Trace, settings: &Settings, queue: &str) -> Vec<(f64, f64)> {
    let mut rng = SimRng::seed_from_u64(stream_seed(settings.seed, 1000));
    trace
        .arrivals
        .iter()
        .filter(|a| a.queue.as_deref().is_none_or(|q| q == queue))
        .map(|a| {
            let service = a
                .service
                .unwrap_or_else(|| settings.service_time.sample(&mut rng));
            (a.at, service)
        })
        .collect()
}

enum Scaler {
    Warren(Box<WarrenModel>),
    Keda(KedaModel),
}

impl Scaler {
    fn next_tick_at(&self) -> f64 {
        match self {
            Self::Warren(w) => w.next_poll_at(),
            Self::Keda(k) => k.next_tick_at(),
        }
    }

    fn tick(&mut self, fleet: &Fleet, view: &BrokerView) -> Option<ScaleRequest> {
        match self {
            Self::Warren(w) => w.poll(fleet, view),
            Self::Keda(k) => k.tick(fleet, view),
        }
    }

    fn floor(&self) -> usize {
        match self {
            Self::Warren(w) => w.floor(),
            Self::Keda(k) => k.floor(),
        }
    }
}

/// One policy over `tasks` (in publish order).
pub fn run(tasks: &[(f64, f64)], contender: &Contender, settings: &Settings) -> Outcome {
    let phase = settings.phase;
    let mut scaler = match contender.kind {
        PolicyKind::Warren => Scaler::Warren(Box::new(WarrenModel::new(
            &contender.spec,
            phase,
            Instant::now(),
        ))),
        PolicyKind::Keda => Scaler::Keda(KedaModel::new(
            &contender.spec,
            settings.keda.clone(),
            phase,
        )),
    };
    let floor = scaler.floor();
    let config = FleetConfig {
        concurrency: settings.concurrency.max(1),
        startup: settings.startup.clone(),
        grace_period: settings.grace_period,
        seed: stream_seed(settings.seed, 2000),
    };
    let mut fleet = Fleet::new(tasks, floor, config);
    let mut view = BrokerView::new(&fleet, phase * STATISTICS_INTERVAL, STATISTICS_INTERVAL);
    let deadline = tasks.last().map_or(0.0, |t| t.0) + settings.tail;
    let mut counted = Counted {
        scale_events: 0,
        peak_replicas: floor,
        end: 0.0,
    };
    let mut series = Vec::new();
    let mut decisions = Vec::new();
    let mut next_sample = 0.0;
    loop {
        let next = [
            fleet.next_event_at(),
            Some(view.next_emission_at()),
            Some(scaler.next_tick_at()),
            Some(next_sample),
        ]
        .into_iter()
        .flatten()
        .fold(f64::INFINITY, f64::min);
        if next > deadline {
            break;
        }
        fleet.advance(next);
        if view.next_emission_at() <= next {
            view.emit(&fleet);
        }
        if scaler.next_tick_at() <= next
            && let Some(asked) = scaler.tick(&fleet, &view)
        {
            fleet.scale_to(asked.replicas, &asked.costs);
            decisions.push(Decided {
                t: next,
                replicas: asked.replicas,
                reason: asked.reason,
            });
            counted.scale_events += 1;
            counted.peak_replicas = counted.peak_replicas.max(asked.replicas);
        }
        if next_sample <= next {
            series.push(Point::of(&fleet, next));
            next_sample += settings.sample_every.max(MIN_PERIOD);
        }
        if fleet.all_done() && fleet.settled_at(floor) {
            break;
        }
    }
    counted.end = fleet.now();
    if series.last().is_none_or(|p| p.t < counted.end) {
        series.push(Point::of(&fleet, counted.end));
    }
    Outcome {
        summary: summarize(&contender.label, &fleet, counted),
        series,
        decisions,
    }
}

#[cfg(test)]
mod tests;
