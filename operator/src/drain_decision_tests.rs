//! The drain-time target through `decide`: the decision's reasons, the history that keeps
//! the measured rate, and the properties (monotone in backlog and arrivals, never above
//! max, no flapping on a steady load with noisy rates).

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{MINUTE, target};
use super::*;
use crate::decision::{Decision, History, QueueReading, QueueState, ScalingPolicy, decide};

fn policy(drain_alone: bool, max: i32) -> ScalingPolicy {
    ScalingPolicy {
        min_replicas: 0,
        max_replicas: max,
        target_backlog_per_replica: 10,
        drain: Some(target(None)),
        drain_alone,
        activation_backlog: 1,
        count_unacked: true,
        max_step: 0,
        stabilization_window: MINUTE,
        scale_to_zero_delay: Duration::from_secs(120),
        fallback_replicas: None,
        max_reading_age: Duration::from_secs(15),
    }
}

/// A reading whose consumers each hold one delivery, as listed with the rates.
fn reading(ready: i64, arrivals: f64, acks: f64, consumers: i64) -> QueueReading {
    QueueReading {
        ready,
        unacked: consumers,
        consumers: Some(consumers),
        publish_rate: Some(arrivals),
        ack_rate: Some(acks),
        age: Duration::from_millis(500),
        rates_listed: Some(ListedCounts {
            ready,
            unacked: consumers,
            age: Duration::from_secs(2),
        }),
    }
}

/// The decision on `reading` when the same listing was seen two windows
/// earlier (a fleet that stood still, so that its rate is measured).
fn decided(policy: &ScalingPolicy, reading: QueueReading, current: i32) -> Decision {
    let now = Instant::now() + Duration::from_secs(1000);
    let before = now - policy.stabilization_window * 2;
    let mut history = History::starting_at(before, current);
    let state = QueueState::Known(reading);
    let first = decide(policy, &state, &history, current, before);
    history.record(before, &first, policy.stabilization_window);
    decide(policy, &state, &history, current, now)
}

#[test]
fn through_the_decision() {
    // 840 waiting and 4 held, 12/s arriving, 4 consumers acking 8.4/s: 2.1/s each.
    let d = decided(&policy(true, 50), reading(840, 12.0, 8.4, 4), 4);
    assert_eq!(d.desired, 13, "{}", d.reason);
    assert_eq!(
        d.reason,
        "4 -> 13: 840 waiting, arrivals 12/s, 2.1/s per worker, drain within 1m"
    );
    assert_eq!(d.rate.and_then(|r| r.per_replica), Some(2.1));
    // Beside a backlog target the larger wins: 84 by backlog (capped at 50).
    let d = decided(&policy(false, 50), reading(840, 12.0, 8.4, 4), 4);
    assert_eq!(d.desired, 50, "{}", d.reason);
    assert!(d.reason.contains("over target 10/replica"), "{}", d.reason);
    // Until a rate is measured the backlog target decides, and says why.
    let d = decided(&policy(true, 50), reading(30, 12.0, 0.0, 0), 1);
    assert_eq!(d.desired, 3, "{}", d.reason);
    assert_eq!(d.rate.and_then(|r| r.per_replica), None);
    assert!(
        d.reason.ends_with(
            "backlog 30 over target 10/replica (drainWithin: no per-replica rate measured yet)"
        ),
        "{}",
        d.reason
    );
}

#[test]
fn the_history_keeps_the_measured_rate() {
    let now = Instant::now();
    let policy = policy(true, 50);
    let mut history = History::starting_at(now, 4);
    for at in [now, now + Duration::from_secs(6)] {
        let listing = QueueState::Known(reading(100, 10.0, 8.0, 4));
        let d = decide(&policy, &listing, &history, 4, at);
        history.record(at, &d, policy.stabilization_window);
    }
    assert_eq!(history.rate_per_replica(), Some(2.0));
    // Later, a listing without acks: the measured rate stands and is used.
    let later = now + Duration::from_secs(12);
    let quiet = QueueReading {
        ack_rate: None,
        ..reading(0, 10.0, 0.0, 6)
    };
    let d = decide(&policy, &QueueState::Known(quiet), &history, 5, later);
    assert_eq!(d.desired, 5, "10/s over 2/s each: {}", d.reason);
}

fn noisy(value: f64, noise: f64) -> f64 {
    value * (1.0 + noise)
}

proptest! {
    #[test]
    fn monotone_in_backlog_and_arrivals(
        ready in 0i64..50_000, extra in 0i64..10_000,
        arrivals in 0.0f64..500.0, more in 0.0f64..500.0,
        per_replica in 0.01f64..50.0, current in 0i32..80, alone in any::<bool>(),
    ) {
        let policy = policy(alone, 60);
        let acks = per_replica * 4.0;
        let low = decided(&policy, reading(ready, arrivals, acks, 4), current);
        let backlog = decided(&policy, reading(ready + extra, arrivals, acks, 4), current);
        let arriving = decided(&policy, reading(ready, arrivals + more, acks, 4), current);
        prop_assert!(backlog.desired >= low.desired, "{} vs {}", backlog.reason, low.reason);
        prop_assert!(arriving.desired >= low.desired, "{} vs {}", arriving.reason, low.reason);
    }

    #[test]
    fn never_above_max(
        ready in 0i64..1_000_000, arrivals in 0.0f64..1e6, acks in 0.0f64..1e6,
        consumers in 0i64..100, current in 0i32..80, max in 1i32..60,
    ) {
        let d = decided(&policy(true, max), reading(ready, arrivals, acks, consumers), current);
        prop_assert!(d.desired <= max, "{}", d.reason);
    }

    /// 20 tasks/s of 0.5 s tasks on one-at-a-time workers: 10 replicas. Rates read
    /// with up to 4 % noise each, a small backlog that comes and goes: the count
    /// found first stands for the next 300 decisions.
    #[test]
    fn a_steady_load_read_with_noise_does_not_flap(
        noise in proptest::collection::vec((-0.04f64..0.04, -0.04f64..0.04, 0i64..6), 300),
    ) {
        let policy = policy(true, 50);
        let start = Instant::now();
        let mut history = History::starting_at(start, 10);
        let mut current = 10;
        let mut changes = 0;
        for (i, (arrival_noise, rate_noise, ready)) in noise.into_iter().enumerate() {
            let now = start + Duration::from_secs(i as u64 + 1);
            let acks = noisy(2.0, rate_noise) * 10.0;
            let seen = reading(ready, noisy(20.0, arrival_noise), acks, 10);
            let d = decide(&policy, &QueueState::Known(seen), &history, current, now);
            history.record(now, &d, policy.stabilization_window);
            if d.desired != current {
                changes += 1;
                current = d.desired;
            }
        }
        prop_assert_eq!(changes, 0, "ended on {}", current);
    }
}
