//! The drain-time target (`spec.drainWithin`): how many replicas work the backlog
//! off within the promised time while keeping up with arrivals, and the measured
//! rate of one replica it rests on. Pure, like the rest of the decision.
//!
//! desired = ceil((waiting / drainWithin + arrivals per second) / tasks per second
//! per replica), waiting = messages ready (those in service finish within a
//! task's time, which the arrivals term pays for) - the Little's-law form of
//! KEDA's `ExpectedQueueConsumptionTime` and of AWS's "acceptable latency /
//! processing time" target.

use std::time::{Duration, Instant};

/// Acks per consumer above this are not a worker's rate (a misread or a broker
/// that counts something else); below [`MIN_RATE`] a replica would look idle.
const MAX_RATE: f64 = 100_000.0;
const MIN_RATE: f64 = 0.001;
/// Arrivals above this many per second are a misread, not a queue's load.
const MAX_ARRIVALS: f64 = 10_000_000.0;
/// Weight of a new measurement in the smoothed per-replica rate: statistics
/// listings come every few polls, each with the rates of the broker's last 5 s,
/// so half and half follows a real change within three listings and halves the
/// noise of one.
const SMOOTHING: f64 = 0.5;
/// Within this fraction of the current count the current count stands, as the
/// HPA's 10 % tolerance: a steady load read with noisy rates does not flap.
pub const TOLERANCE: f64 = 0.1;

/// What a TaskQueue promises: backlog worked off within `within`.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainTarget {
    pub within: Duration,
    /// Tasks/s per replica to assume until one is measured (`spec.ratePerReplica`).
    pub initial_rate: Option<f64>,
    /// Rates older than this are stale: arrivals may have changed since.
    pub max_rate_age: Duration,
    /// The poll interval: a backlog may wait two of them before a reading shows
    /// it (every 6th cycle lists statistics only, whose counts are not taken).
    pub poll_interval: Duration,
}

/// What the statistics listings have shown so far: the tasks/s one busy replica
/// completes (smoothed), the deliveries one replica holds at once (its prefetch,
/// learned when messages wait), the arrival rates of the last three listings,
/// the consumers of the last, and when it was listed (each listing counts once
/// however often the queue is decided).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateEstimate {
    /// `None` until a listing has measured it.
    pub per_replica: Option<f64>,
    pub slots: f64,
    /// Newest first; `None` where fewer listings were seen.
    pub recent_arrivals: [Option<f64>; 3],
    pub consumers: Option<i64>,
    /// Deliveries held at the last listing.
    pub unacked: i64,
    pub listed_at: Instant,
}

impl RateEstimate {
    /// The sustained arrival rate: the median of the last three listings (the
    /// smaller of two, none of one), so that one listing that caught a burst's
    /// publication, already counted as waiting messages, does not count twice (a
    /// first listing of 2,000 published at once read 400/s and asked for 440
    /// replicas in the simulator).
    pub fn arrivals(&self) -> f64 {
        let mut seen: Vec<f64> = self.recent_arrivals.iter().flatten().copied().collect();
        seen.sort_by(f64::total_cmp);
        match seen.as_slice() {
            [] | [_] => 0.0,
            [low, _] => *low,
            [_, middle, ..] => *middle,
        }
    }
}

/// The counts a statistics listing gave with its rates: both trail the queue by
/// the same few seconds, so they describe one moment together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedCounts {
    pub ready: i64,
    pub unacked: i64,
    pub age: Duration,
}

/// The rates of a statistics listing, as a decision sees them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSample {
    /// Messages published per second; `None` when nothing was ever published.
    pub arrivals: Option<f64>,
    pub acks: Option<f64>,
    pub consumers: Option<i64>,
    pub counts: ListedCounts,
}

/// What the drain target asks for, or why it cannot say.
#[derive(Debug, Clone, PartialEq)]
pub enum DrainAsk {
    Replicas {
        replicas: i32,
        /// `"840 waiting, arrivals 12/s, 2.1/s per worker, drain within 1m"`.
        text: String,
    },
    /// Why the backlog target decides instead, e.g. `"no per-replica rate measured yet"`.
    Unknown(String),
}

/// Folds a statistics listing into the estimate. Little's law: deliveries held
/// (unacked) = acks/s x time per task, so a replica holding `slots` at once
/// completes `acks x slots / unacked` per second when busy. That holds at any
/// load, not only when messages wait, so an over-provisioned fleet still measures
/// (and never less than the acks per consumer actually seen). It assumes acks
/// after the task, as warren's worker and Celery's `task_acks_late` do.
pub fn update_estimate(
    previous: Option<RateEstimate>,
    sample: Option<&RateSample>,
    now: Instant,
) -> Option<RateEstimate> {
    let Some(sample) = sample else {
        return previous;
    };
    let counts = sample.counts;
    let listed_at = now.checked_sub(counts.age).unwrap_or(now);
    // Readings of one listing differ in age by the time between decisions.
    let already_seen = previous.is_some_and(|p| {
        let gap = if listed_at > p.listed_at {
            listed_at - p.listed_at
        } else {
            p.listed_at - listed_at
        };
        gap < Duration::from_millis(500)
    });
    if already_seen {
        return previous;
    }
    let arrivals = sample.arrivals.unwrap_or(0.0);
    if !(arrivals.is_finite() && (0.0..=MAX_ARRIVALS).contains(&arrivals)) {
        return previous;
    }
    let learned = previous.map_or(1.0, |p| p.slots);
    // The acks of a listing span its last 5 s, the unacked count is of its end:
    // Little's law holds only if the fleet and its load stood still meanwhile.
    // With consumers added (a scale-up just made) a 2/s worker read 0.5/s on the
    // cluster; with a spike just arrived at one idle worker (1 held, 2 acks in
    // 5 s) a 1/s worker read 0.4/s in the simulator.
    let stood_still = previous.is_some_and(|p| {
        p.consumers.is_some()
            && p.consumers == sample.consumers
            && similar(p.unacked, counts.unacked)
    });
    let (measured, slots) = match measure(sample, learned).filter(|_| stood_still) {
        Some((rate, slots)) => (Some(rate), slots),
        None => (None, learned),
    };
    let per_replica = match (previous.and_then(|p| p.per_replica), measured) {
        (Some(before), Some(rate)) => Some(smooth(before, rate)),
        (before, rate) => rate.or(before),
    };
    Some(RateEstimate {
        per_replica,
        slots,
        recent_arrivals: match previous {
            Some(p) => [Some(arrivals), p.recent_arrivals[0], p.recent_arrivals[1]],
            None => [Some(arrivals), None, None],
        },
        consumers: sample.consumers,
        unacked: counts.unacked,
        listed_at,
    })
}

/// Deliveries held at two listings, both some and within a quarter of each other.
fn similar(before: i64, now: i64) -> bool {
    before > 0 && now > 0 && (before - now).abs() * 4 <= before.max(now)
}

/// A busy replica's tasks/s by Little's law, and the slots it holds, when the
/// listing shows consumers holding deliveries and acking at a sane rate.
fn measure(sample: &RateSample, learned_slots: f64) -> Option<(f64, f64)> {
    let (acks, consumers) = (sample.acks?, sample.consumers?);
    let counts = sample.counts;
    if consumers <= 0 || counts.unacked <= 0 || !sane(acks) {
        return None;
    }
    let (consumers, unacked) = (consumers as f64, counts.unacked as f64);
    // Messages waiting: every consumer holds all it may, which shows its prefetch.
    let slots = if counts.ready > 0 {
        learned_slots.max((unacked / consumers).round().max(1.0))
    } else {
        learned_slots
    };
    let rate = (acks * slots / unacked).max(acks / consumers);
    sane(rate).then_some((rate, slots))
}

fn smooth(before: f64, now: f64) -> f64 {
    before * (1.0 - SMOOTHING) + now * SMOOTHING
}

/// The replicas that work off the `waiting` messages within the target while keeping up with
/// arrivals, before bounds; `current` stands when within [`TOLERANCE`] of it.
/// The promise counts from when the backlog arrived, so the time it may have
/// waited unseen (two polls - a statistics-only cycle refreshes no counts - and
/// the reading's `age`) is taken off the window
/// (never more than half of it).
pub fn ask(
    target: &DrainTarget,
    estimate: Option<RateEstimate>,
    sample: Option<&RateSample>,
    waiting: i64,
    current: i32,
    age: Duration,
) -> DrainAsk {
    let Some(sample) = sample else {
        return DrainAsk::Unknown("no statistics listing yet".into());
    };
    if sample.counts.age > target.max_rate_age {
        return DrainAsk::Unknown(format!(
            "rates {:.0?} old, more than {:?}",
            sample.counts.age, target.max_rate_age
        ));
    }
    let (per_replica, source) = match (estimate.and_then(|e| e.per_replica), target.initial_rate) {
        (Some(rate), _) => (rate, "per worker"),
        (None, Some(rate)) if sane(rate) => (rate, "per worker (spec.ratePerReplica)"),
        _ => return DrainAsk::Unknown("no per-replica rate measured yet".into()),
    };
    let arrivals = match estimate {
        Some(e) => e.arrivals(),
        None => sample.arrivals.unwrap_or(0.0),
    };
    if !(arrivals.is_finite() && (0.0..=MAX_ARRIVALS).contains(&arrivals)) {
        return DrainAsk::Unknown(format!("arrival rate {arrivals} is not a rate"));
    }
    let unseen = target.poll_interval * 2 + age;
    let within = target
        .within
        .saturating_sub(unseen)
        .max(target.within / 2)
        .as_secs_f64()
        .max(0.5);
    let need = (waiting.max(0) as f64 / within + arrivals) / per_replica;
    let replicas = if current > 0 && (need / f64::from(current) - 1.0).abs() <= TOLERANCE {
        current
    } else {
        // Float noise must not turn an exact 7.0 into 8.
        let rounded = (need - 1e-9).ceil().max(0.0);
        if rounded >= f64::from(i32::MAX) {
            i32::MAX
        } else {
            rounded as i32
        }
    };
    DrainAsk::Replicas {
        replicas,
        text: format!(
            "{waiting} waiting, arrivals {}/s, {}/s {source}, drain within {}",
            short(arrivals),
            short(per_replica),
            crate::interval::Interval::from(target.within)
        ),
    }
}

fn sane(rate: f64) -> bool {
    rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate)
}

/// Rates as people write them: `12`, `2.1`, `0.35`.
fn short(rate: f64) -> String {
    let text = if rate >= 10.0 {
        format!("{rate:.0}")
    } else if rate >= 1.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    };
    match text.split_once('.') {
        Some((whole, fraction)) if fraction.bytes().all(|b| b == b'0') => whole.to_owned(),
        _ => text,
    }
}

#[cfg(test)]
#[path = "drain_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "drain_decision_tests.rs"]
mod decision_tests;
