use std::time::{Duration, Instant};

use super::*;
use crate::decision::ScalingPolicy;

pub(super) const MINUTE: Duration = Duration::from_secs(60);

pub(super) fn target(initial_rate: Option<f64>) -> DrainTarget {
    DrainTarget {
        within: MINUTE,
        initial_rate,
        max_rate_age: Duration::from_secs(30),
        poll_interval: Duration::ZERO,
    }
}

/// A statistics listing two seconds old: `ready` waiting and `unacked` held.
fn sample(arrivals: f64, acks: f64, consumers: i64, ready: i64, unacked: i64) -> RateSample {
    RateSample {
        arrivals: Some(arrivals),
        acks: Some(acks),
        consumers: Some(consumers),
        counts: ListedCounts {
            ready,
            unacked,
            age: Duration::from_secs(2),
        },
    }
}

fn estimate(per_replica: f64, arrivals: f64, listed_at: Instant) -> Option<RateEstimate> {
    Some(RateEstimate {
        per_replica: Some(per_replica),
        slots: 1.0,
        recent_arrivals: [Some(arrivals); 3],
        consumers: None,
        unacked: 0,
        listed_at,
    })
}

/// The estimate after `listing` was seen twice, a minute apart (a fleet that
/// stood still between two listings).
fn measured_from(listing: &RateSample, t0: Instant) -> RateEstimate {
    let first = update_estimate(None, Some(listing), t0);
    update_estimate(first, Some(listing), t0 + MINUTE).expect("estimate")
}

fn replicas(ask: &DrainAsk) -> i32 {
    match ask {
        DrainAsk::Replicas { replicas, .. } => *replicas,
        DrainAsk::Unknown(why) => panic!("no answer: {why}"),
    }
}

#[test]
fn the_formula_with_the_rates_it_used_in_words() {
    let now = Instant::now();
    let ask = ask(
        &target(None),
        estimate(2.1, 12.0, now),
        Some(&sample(12.0, 0.0, 0, 0, 0)),
        840,
        1,
        Duration::ZERO,
    );
    // (840 / 60 + 12) / 2.1 = 12.4
    assert_eq!(
        ask,
        DrainAsk::Replicas {
            replicas: 13,
            text: "840 waiting, arrivals 12/s, 2.1/s per worker, drain within 1m".into()
        }
    );
    // Exactly 7 is 7, not 8.
    let exact = super::ask(
        &target(None),
        estimate(2.0, 2.0, now),
        Some(&sample(2.0, 0.0, 0, 0, 0)),
        720,
        0,
        Duration::ZERO,
    );
    assert_eq!(replicas(&exact), 7);
}

#[test]
fn time_the_backlog_may_have_waited_unseen_comes_off_the_window() {
    let now = Instant::now();
    let polled = DrainTarget {
        poll_interval: Duration::from_secs(5),
        ..target(None)
    };
    let at = |age: u64| {
        replicas(&ask(
            &polled,
            estimate(1.0, 0.0, now),
            Some(&sample(0.0, 0.0, 0, 0, 0)),
            540,
            0,
            Duration::from_secs(age),
        ))
    };
    assert_eq!(at(1), 12, "540 within 60 - 2 x 5 - 1 s = 11.02/s");
    assert_eq!(at(55), 18, "never less than half the window: 540 / 30 s");
}

#[test]
fn a_scale_down_waits_at_least_drain_within() {
    let spec = |drain: Option<&str>| {
        let mut body = serde_json::json!({
            "queue": "q", "maxReplicas": 5, "scaleTargetRef": {"name": "w"},
            "scaleDown": {"stabilizationWindow": "10s"}
        });
        if let Some(drain) = drain {
            body["drainWithin"] = drain.into();
        }
        serde_json::from_value::<crate::crd::TaskQueueSpec>(body).expect("spec")
    };
    let window = |drain| ScalingPolicy::from(&spec(drain)).stabilization_window;
    assert_eq!(window(None), Duration::from_secs(10));
    assert_eq!(window(Some("90s")), Duration::from_secs(90));
    assert_eq!(window(Some("5s")), Duration::from_secs(10));
    let policy = ScalingPolicy::from(&spec(Some("90s")));
    assert!(policy.drain_alone);
    assert_eq!(policy.target_backlog_per_replica, 10, "the stand-in");
}

#[test]
fn the_current_count_stands_within_the_tolerance() {
    let now = Instant::now();
    let at = |arrivals: f64, current: i32| {
        replicas(&ask(
            &target(None),
            estimate(2.0, arrivals, now),
            Some(&sample(arrivals, 0.0, 0, 0, 0)),
            0,
            current,
            Duration::ZERO,
        ))
    };
    assert_eq!(at(21.0, 10), 10, "10.5 needed, 10 run: within 10 %");
    assert_eq!(at(19.0, 10), 10, "9.5 needed: within 10 %");
    assert_eq!(at(23.0, 10), 12, "11.5 needed: beyond");
    assert_eq!(at(17.0, 10), 9, "8.5 needed: beyond");
    assert_eq!(at(0.5, 0), 1, "arrivals at 0 replicas ask for one");
}

#[test]
fn without_fresh_rates_it_says_why() {
    let now = Instant::now();
    let unknown = |ask: DrainAsk| match ask {
        DrainAsk::Unknown(why) => why,
        DrainAsk::Replicas { text, .. } => panic!("answered: {text}"),
    };
    let fresh = sample(5.0, 0.0, 0, 0, 0);
    assert_eq!(
        unknown(ask(
            &target(None),
            None,
            Some(&fresh),
            10,
            1,
            Duration::ZERO
        )),
        "no per-replica rate measured yet"
    );
    assert_eq!(
        unknown(ask(
            &target(None),
            estimate(2.0, 5.0, now),
            None,
            10,
            1,
            Duration::ZERO
        )),
        "no statistics listing yet"
    );
    let stale = RateSample {
        counts: ListedCounts {
            age: Duration::from_secs(31),
            ..fresh.counts
        },
        ..fresh
    };
    assert!(
        unknown(ask(
            &target(None),
            estimate(2.0, 5.0, now),
            Some(&stale),
            10,
            1,
            Duration::ZERO
        ))
        .contains("old")
    );
    let absurd = sample(f64::NAN, 0.0, 0, 0, 0);
    assert!(
        unknown(ask(
            &target(Some(2.0)),
            None,
            Some(&absurd),
            10,
            1,
            Duration::ZERO
        ))
        .contains("rate")
    );
    // The spec's rate stands in until one is measured.
    match ask(
        &target(Some(4.0)),
        None,
        Some(&fresh),
        60,
        1,
        Duration::ZERO,
    ) {
        DrainAsk::Replicas { replicas, text } => {
            assert_eq!(replicas, 2, "(60/60 + 5) / 4 = 1.5");
            assert!(
                text.contains("4/s per worker (spec.ratePerReplica)"),
                "{text}"
            );
        }
        DrainAsk::Unknown(why) => panic!("{why}"),
    }
}

#[test]
fn a_replica_is_measured_by_littles_law() {
    let t0 = Instant::now();
    // 3 consumers, each holding 1, acking 9/s: 3/s per busy replica.
    let busy = sample(10.0, 9.0, 3, 20, 3);
    let first = measured_from(&busy, t0);
    assert_eq!(first.per_replica, Some(3.0));
    // Over-provisioned: 6 consumers, 2 of them busy, acking 2/s: still 1/s per
    // busy slot (0.5 s tasks), not the 0.33/s each consumer gets.
    let idle = measured_from(&sample(2.0, 2.0, 6, 0, 2), t0);
    assert_eq!(idle.per_replica, Some(1.0));
    // Prefetch 4, messages waiting: 8 held by 2 consumers, 8 acks/s: 4 slots, 4/s a replica.
    let deep = measured_from(&sample(9.0, 8.0, 2, 50, 8), t0);
    assert_eq!((deep.slots, deep.per_replica), (4.0, Some(4.0)));
    // Nothing held, no consumers, no acks, absurd acks: nothing measured.
    for bad in [
        sample(1.0, 9.0, 3, 0, 0),
        sample(1.0, 9.0, 0, 5, 3),
        RateSample { acks: None, ..busy },
        sample(1.0, 1e12, 1, 1, 1),
    ] {
        let later = t0 + MINUTE * 2;
        let kept = update_estimate(Some(first), Some(&bad), later).expect("estimate");
        assert_eq!(kept.per_replica, first.per_replica, "{bad:?}");
        assert_eq!(measured_from(&bad, t0).per_replica, None, "{bad:?}");
        assert_eq!(
            kept.recent_arrivals[0], bad.arrivals,
            "arrivals are read all the same"
        );
    }
    // The same listing read again a second later is not folded twice.
    let mut again = sample(10.0, 3.0, 3, 20, 3);
    again.counts.age += Duration::from_secs(1);
    let read_again = first.listed_at + again.counts.age;
    assert_eq!(
        update_estimate(Some(first), Some(&again), read_again),
        Some(first)
    );
    // A new listing is smoothed in: half the old, half the new.
    let next = update_estimate(
        Some(first),
        Some(&sample(10.0, 3.0, 3, 20, 3)),
        t0 + MINUTE * 2,
    )
    .expect("estimate");
    assert_eq!(next.per_replica, Some(2.0));
}

#[test]
fn a_fleet_that_changed_during_the_listing_is_not_measured() {
    let t0 = Instant::now();
    let three = update_estimate(None, Some(&sample(10.0, 9.0, 3, 20, 3)), t0);
    assert_eq!(three.and_then(|e| e.per_replica), None, "no listing before");
    // Scaled 3 -> 9 since: 9 hold deliveries but the acks are mostly the three's.
    let nine = update_estimate(three, Some(&sample(10.0, 9.0, 9, 20, 9)), t0 + MINUTE);
    assert_eq!(nine.and_then(|e| e.per_replica), None);
    let settled = update_estimate(nine, Some(&sample(10.0, 27.0, 9, 20, 9)), t0 + MINUTE * 2);
    assert_eq!(settled.and_then(|e| e.per_replica), Some(3.0));
    // A spike on an idle worker: it holds 1 now, acked 2 in the last 5 s. Not
    // measured (0.4/s of a 1/s worker); held at the next listing too, it is.
    let idle = update_estimate(None, Some(&sample(0.0, 0.0, 1, 0, 0)), t0);
    let spike = update_estimate(idle, Some(&sample(100.0, 0.4, 1, 499, 1)), t0 + MINUTE);
    assert_eq!(spike.and_then(|e| e.per_replica), None);
    let busy = update_estimate(spike, Some(&sample(0.0, 1.0, 1, 400, 1)), t0 + MINUTE * 2);
    assert_eq!(busy.and_then(|e| e.per_replica), Some(1.0));
}

#[test]
fn one_listing_that_caught_a_burst_is_not_a_sustained_arrival_rate() {
    let t0 = Instant::now();
    let mut estimate = None;
    let mut arrivals_after = Vec::new();
    for (i, arrivals) in [20.0, 80.0, 20.0, 20.0, 50.0, 50.0].into_iter().enumerate() {
        let at = t0 + MINUTE * (i as u32);
        estimate = update_estimate(estimate, Some(&sample(arrivals, 9.0, 3, 0, 3)), at);
        arrivals_after.push(estimate.expect("estimate").arrivals());
    }
    // One listing is no sustained rate; the burst listing (80) is outvoted; a
    // lasting change (50) is taken on the second listing that shows it.
    assert_eq!(arrivals_after, [0.0, 20.0, 20.0, 20.0, 20.0, 50.0]);
    let absurd = sample(f64::INFINITY, 3.0, 3, 20, 3);
    assert_eq!(
        update_estimate(estimate, Some(&absurd), t0 + MINUTE * 9),
        estimate
    );
}
