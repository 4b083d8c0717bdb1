//! The scaling decision: from a TaskQueue's policy, the latest queue reading, the
//! recent history and the current replica count to the desired count and a reason
//! a person can read. Pure: no client, no clock (`now` is an argument).

use std::time::{Duration, Instant};

use crate::broker::poller::STATS_EVERY;
use crate::crd::TaskQueueSpec;
use crate::drain::{self, DrainAsk, DrainTarget, ListedCounts, RateEstimate, RateSample};
pub use crate::history::History;

/// `targetBacklogPerReplica` when the spec leaves it unset.
pub const DEFAULT_TARGET_BACKLOG: i64 = 10;

/// The numbers of a TaskQueue's spec that scaling uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingPolicy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_backlog_per_replica: i64,
    /// `spec.drainWithin`, with the rate to assume until one is measured.
    pub drain: Option<DrainTarget>,
    /// drainWithin without targetBacklogPerReplica: the backlog target only stands
    /// in while the rates are unknown.
    pub drain_alone: bool,
    pub activation_backlog: i64,
    pub count_unacked: bool,
    /// Most replicas added per decision; 0 means no limit.
    pub max_step: i32,
    pub stabilization_window: Duration,
    pub scale_to_zero_delay: Duration,
    pub fallback_replicas: Option<i32>,
    /// Readings older than this are treated as no reading at all.
    pub max_reading_age: Duration,
}

impl From<&TaskQueueSpec> for ScalingPolicy {
    fn from(spec: &TaskQueueSpec) -> Self {
        Self {
            min_replicas: spec.min_replicas.max(0),
            max_replicas: spec.max_replicas.max(spec.min_replicas).max(1),
            target_backlog_per_replica: spec
                .target_backlog_per_replica
                .unwrap_or(DEFAULT_TARGET_BACKLOG)
                .max(1),
            drain: spec.drain_within.map(|within| DrainTarget {
                within: within.duration(),
                initial_rate: spec.rate_per_replica,
                // Two statistics listings missed, and never less than 30 s.
                max_rate_age: (spec.poll_interval.duration() * (2 * STATS_EVERY as u32))
                    .max(Duration::from_secs(30)),
                poll_interval: spec.poll_interval.duration(),
            }),
            drain_alone: spec.drain_within.is_some() && spec.target_backlog_per_replica.is_none(),
            activation_backlog: spec.activation_backlog.max(1),
            count_unacked: spec.count_unacked,
            max_step: spec.scale_up.max_step.max(0),
            // A count chosen to work a backlog off within drainWithin is kept that
            // long: a shorter window would scale down halfway and break the promise.
            stabilization_window: spec
                .scale_down
                .stabilization_window
                .duration()
                .max(spec.drain_within.map_or(Duration::ZERO, |d| d.duration())),
            scale_to_zero_delay: spec.scale_down.scale_to_zero_delay.duration(),
            fallback_replicas: spec.fallback_replicas,
            // Three missed polls, and never less than the broker's own statistics lag.
            max_reading_age: (spec.poll_interval.duration() * 3).max(Duration::from_secs(15)),
        }
    }
}

/// One reading of a queue, as the broker poller delivers it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueReading {
    pub ready: i64,
    pub unacked: i64,
    /// `None` until a statistics listing has counted them (a new TaskQueue waits up
    /// to six polls); the floor then assumes one consumer per unacked message.
    pub consumers: Option<i64>,
    pub publish_rate: Option<f64>,
    pub ack_rate: Option<f64>,
    /// How old the reading is at decision time.
    pub age: Duration,
    /// The counts listed with the consumers and rates (statistics listings come
    /// every few polls), and their age; `None` before the first.
    pub rates_listed: Option<ListedCounts>,
}

impl QueueReading {
    /// The rates of the reading's statistics listing, if it has one.
    fn rate_sample(&self) -> Option<RateSample> {
        Some(RateSample {
            arrivals: self.publish_rate,
            acks: self.ack_rate,
            consumers: self.consumers,
            counts: self.rates_listed?,
        })
    }
}

/// What is known about the queue at decision time.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueState {
    Known(QueueReading),
    /// The broker could not be read; the reason is safe to show (no secrets).
    Unknown(String),
}

/// Why the desired count was held back from what the backlog asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MaxReplicas,
    MinReplicas,
    MaxStep,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub desired: i32,
    /// `"1 -> 4: backlog 37 over target 10/replica"`.
    pub reason: String,
    /// What the backlog alone asks for, within bounds; `None` without a reading.
    pub recommendation: Option<i32>,
    /// Nothing ready and nothing unacked.
    pub idle: bool,
    /// Backlog used (ready, plus unacked when counted).
    pub backlog: Option<i64>,
    pub limited: Option<Limit>,
    /// The per-replica rate after this reading, for the history to keep.
    pub rate: Option<RateEstimate>,
}

pub fn decide(
    policy: &ScalingPolicy,
    state: &QueueState,
    history: &History,
    current: i32,
    now: Instant,
) -> Decision {
    let reading = match state {
        QueueState::Known(reading) if reading.age <= policy.max_reading_age => reading,
        QueueState::Known(reading) => {
            return unreadable(
                policy,
                current,
                &format!("the last reading is {:.0?} old", reading.age),
            );
        }
        QueueState::Unknown(reason) => return unreadable(policy, current, reason),
    };
    let load = Load::of(reading, policy, history, current, now);
    if load.recommendation > current {
        return scale_up(policy, &load, current);
    }
    if current > policy.max_replicas {
        let max = policy.max_replicas;
        return load.decision(
            max,
            format!("{current} -> {max}: above maxReplicas"),
            Some(Limit::MaxReplicas),
        );
    }
    scale_down_or_hold(policy, &load, history, current, now)
}

/// What one reading asks of the workload.
struct Load {
    /// Ready, plus unacked when counted.
    backlog: i64,
    /// Nothing ready and nothing unacked.
    idle: bool,
    /// Consumers holding unacknowledged messages (at most one per message).
    busy: i32,
    /// What the backlog asks for, within bounds, and the bound that applied.
    recommendation: i32,
    bound: Option<Limit>,
    /// `"backlog 37 over target 10/replica"`, for reasons.
    text: String,
    rate: Option<RateEstimate>,
}

impl Load {
    fn of(
        reading: &QueueReading,
        policy: &ScalingPolicy,
        history: &History,
        current: i32,
        now: Instant,
    ) -> Self {
        let unacked = reading.unacked.max(0);
        let backlog = reading.ready.max(0) + if policy.count_unacked { unacked } else { 0 };
        let target = policy.target_backlog_per_replica;
        let by_backlog =
            i32::try_from(backlog.saturating_add(target - 1) / target).unwrap_or(i32::MAX);
        let by_backlog_text = format!("backlog {backlog} over target {target}/replica");
        let sample = reading.rate_sample();
        let rate = drain::update_estimate(history.rate(), sample.as_ref(), now);
        let (asked, text) = match &policy.drain {
            None => (by_backlog, by_backlog_text),
            // Waiting messages only: those in service finish within a task's
            // time, which the arrival term already pays for.
            Some(drain) => {
                let waiting = reading.ready.max(0);
                match drain::ask(drain, rate, sample.as_ref(), waiting, current, reading.age) {
                    DrainAsk::Replicas { replicas, text }
                        if policy.drain_alone || replicas >= by_backlog =>
                    {
                        (replicas, text)
                    }
                    DrainAsk::Replicas { .. } => (by_backlog, by_backlog_text),
                    DrainAsk::Unknown(why) => (
                        by_backlog,
                        format!("{by_backlog_text} (drainWithin: {why})"),
                    ),
                }
            }
        };
        let asked = if current == 0 && backlog < policy.activation_backlog {
            0
        } else {
            asked
        };
        let (recommendation, bound) = clamp(asked, policy);
        Self {
            backlog,
            idle: reading.ready <= 0 && unacked == 0,
            busy: i32::try_from(reading.consumers.unwrap_or(unacked).max(0).min(unacked))
                .unwrap_or(i32::MAX),
            recommendation,
            bound,
            text,
            rate,
        }
    }

    fn decision(&self, desired: i32, reason: String, limited: Option<Limit>) -> Decision {
        Decision {
            desired,
            reason,
            recommendation: Some(self.recommendation),
            idle: self.idle,
            backlog: Some(self.backlog),
            limited,
            rate: self.rate,
        }
    }
}

fn scale_up(policy: &ScalingPolicy, load: &Load, current: i32) -> Decision {
    let wanted = load.recommendation;
    if policy.max_step > 0 && wanted > current.saturating_add(policy.max_step) {
        // The step limit never keeps a workload below its minimum.
        let desired = (current + policy.max_step).max(policy.min_replicas);
        return load.decision(
            desired,
            format!(
                "{current} -> {desired}: {}, limited by scaleUp.maxStep {}",
                load.text, policy.max_step
            ),
            Some(Limit::MaxStep),
        );
    }
    let why = if current == 0 {
        let woken = format!(
            "backlog {} reached activation {}",
            load.backlog, policy.activation_backlog
        );
        // The drain target's rates say why this many, not just why any.
        if load.text.starts_with("backlog ") {
            woken
        } else {
            format!("{woken}; {}", load.text)
        }
    } else {
        load.text.clone()
    };
    let suffix = bound_note(load.bound, policy);
    load.decision(
        wanted,
        format!("{current} -> {wanted}: {why}{suffix}"),
        load.bound,
    )
}

/// Down (or hold): the highest recommendation of the stabilization window, never
/// below the consumers that hold unacknowledged messages, and 1 -> 0 only after
/// the queue has been idle for the scale-to-zero delay.
fn scale_down_or_hold(
    policy: &ScalingPolicy,
    load: &Load,
    history: &History,
    current: i32,
    now: Instant,
) -> Decision {
    let recommendation = load.recommendation;
    let stabilized = history
        .highest_within(now, policy.stabilization_window)
        .map_or(recommendation, |h| h.max(recommendation));
    let busy = load.busy;
    let desired = stabilized.min(current).max(busy.min(current));
    let reason = if desired < current {
        format!("{current} -> {desired}: {}", load.text)
    } else if stabilized > recommendation {
        format!(
            "hold {current}: scale-down stabilizing, highest recommendation {stabilized} within {:?}",
            policy.stabilization_window
        )
    } else if busy > recommendation {
        format!("hold {current}: {busy} consumer(s) still hold unacked messages")
    } else {
        format!("hold {current}: {}", load.text)
    };
    let (desired, reason) = if desired == 0 && current > 0 {
        to_zero(policy, load, history, current, now)
    } else {
        (desired, reason)
    };
    let (desired, bound) = clamp(desired, policy);
    load.decision(desired, reason + &bound_note(bound, policy), bound)
}

/// The last step to zero waits until the queue has been idle long enough.
fn to_zero(
    policy: &ScalingPolicy,
    load: &Load,
    history: &History,
    current: i32,
    now: Instant,
) -> (i32, String) {
    let idle_for = if load.idle {
        history.idle_for(now)
    } else {
        Duration::ZERO
    };
    let delay = policy.scale_to_zero_delay;
    if idle_for >= delay {
        return (0, format!("{current} -> 0: queue idle for {idle_for:.0?}"));
    }
    let reason = if current > 1 {
        format!("{current} -> 1: {}; 1 -> 0 after {delay:?} idle", load.text)
    } else {
        format!("hold 1: queue idle for {idle_for:.0?} of scaleDown.scaleToZeroDelay {delay:?}")
    };
    (1, reason)
}

fn unreadable(policy: &ScalingPolicy, current: i32, reason: &str) -> Decision {
    let (desired, text) = match policy.fallback_replicas {
        Some(fallback) => {
            let fallback = fallback.clamp(policy.min_replicas.max(1), policy.max_replicas);
            (
                fallback,
                format!(
                    "{current} -> {fallback}: broker unreadable ({reason}); using fallbackReplicas"
                ),
            )
        }
        None => (
            current,
            format!("hold {current}: broker unreadable ({reason})"),
        ),
    };
    Decision {
        desired,
        reason: text,
        recommendation: None,
        idle: false,
        backlog: None,
        limited: None,
        rate: None,
    }
}

fn clamp(replicas: i32, policy: &ScalingPolicy) -> (i32, Option<Limit>) {
    if replicas > policy.max_replicas {
        (policy.max_replicas, Some(Limit::MaxReplicas))
    } else if replicas < policy.min_replicas {
        (policy.min_replicas, Some(Limit::MinReplicas))
    } else {
        (replicas, None)
    }
}

fn bound_note(bound: Option<Limit>, policy: &ScalingPolicy) -> String {
    match bound {
        Some(Limit::MaxReplicas) => format!(" (capped at maxReplicas {})", policy.max_replicas),
        Some(Limit::MinReplicas) => format!(" (held at minReplicas {})", policy.min_replicas),
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
