use super::*;
use proptest::prelude::*;

fn policy() -> ScalingPolicy {
    ScalingPolicy {
        min_replicas: 0,
        max_replicas: 20,
        target_backlog_per_replica: 10,
        drain: None,
        drain_alone: false,
        activation_backlog: 1,
        count_unacked: true,
        max_step: 0,
        stabilization_window: Duration::from_secs(60),
        scale_to_zero_delay: Duration::from_secs(120),
        fallback_replicas: None,
        max_reading_age: Duration::from_secs(15),
    }
}

fn reading(ready: i64, unacked: i64, consumers: i64) -> QueueState {
    QueueState::Known(QueueReading {
        ready,
        unacked,
        consumers: Some(consumers),
        publish_rate: None,
        ack_rate: None,
        age: Duration::from_millis(500),
        rates_listed: None,
    })
}

#[test]
fn table() {
    let now = Instant::now();
    let fresh = History::default();
    let mut with_max = policy();
    with_max.max_step = 2;
    // (policy, observation, current, expected desired, reason contains)
    let cases: Vec<(ScalingPolicy, QueueState, i32, i32, &str)> = vec![
        (
            policy(),
            reading(37, 0, 1),
            1,
            4,
            "1 -> 4: backlog 37 over target 10/replica",
        ),
        (
            policy(),
            reading(200, 0, 0),
            0,
            20,
            "0 -> 20: backlog 200 reached activation 1",
        ),
        (
            policy(),
            reading(1000, 0, 5),
            5,
            20,
            "capped at maxReplicas 20",
        ),
        (policy(), reading(0, 0, 0), 0, 0, "hold 0"),
        (policy(), reading(1, 0, 0), 0, 1, "0 -> 1"),
        (
            with_max,
            reading(100, 0, 1),
            1,
            3,
            "limited by scaleUp.maxStep 2",
        ),
        (policy(), reading(5, 30, 4), 1, 4, "backlog 35"),
        (
            ScalingPolicy {
                count_unacked: false,
                ..policy()
            },
            reading(5, 30, 4),
            4,
            4,
            "4 consumer(s) still hold unacked",
        ),
        (
            policy(),
            QueueState::Unknown("connection refused".into()),
            7,
            7,
            "hold 7: broker unreadable (connection refused)",
        ),
        (
            ScalingPolicy {
                fallback_replicas: Some(3),
                ..policy()
            },
            QueueState::Unknown("401".into()),
            7,
            3,
            "using fallbackReplicas",
        ),
        (
            ScalingPolicy {
                min_replicas: 2,
                ..policy()
            },
            reading(0, 0, 0),
            0,
            2,
            "minReplicas",
        ),
        (
            ScalingPolicy {
                max_replicas: 5,
                ..policy()
            },
            reading(0, 0, 0),
            9,
            5,
            "above maxReplicas",
        ),
    ];
    for (i, (policy, observation, current, expected, reason)) in cases.into_iter().enumerate() {
        let d = decide(&policy, &observation, &fresh, current, now);
        assert_eq!(d.desired, expected, "case {i}: {}", d.reason);
        assert!(
            d.reason.contains(reason),
            "case {i}: {:?} lacks {reason:?}",
            d.reason
        );
    }
}

#[test]
fn scale_down_waits_for_the_stabilization_window() {
    let policy = ScalingPolicy {
        min_replicas: 1,
        ..policy()
    };
    let start = Instant::now();
    let mut history = History::default();
    let busy = decide(&policy, &reading(200, 0, 0), &history, 1, start);
    assert_eq!(busy.desired, 20);
    history.record(start, &busy, policy.stabilization_window);
    // Purged: the recommendation drops to 1, but the window still remembers 20.
    for secs in [1, 30, 59, 60] {
        let now = start + Duration::from_secs(secs);
        let d = decide(&policy, &reading(0, 0, 20), &history, 20, now);
        assert_eq!(d.desired, 20, "at {secs}s: {}", d.reason);
        assert!(d.reason.contains("stabilizing"), "{}", d.reason);
        history.record(now, &d, policy.stabilization_window);
    }
    let d = decide(
        &policy,
        &reading(0, 0, 20),
        &history,
        20,
        start + Duration::from_secs(61),
    );
    assert_eq!(d.desired, 1, "{}", d.reason);
}

#[test]
fn scale_to_zero_waits_for_the_idle_delay() {
    let policy = ScalingPolicy {
        stabilization_window: Duration::ZERO,
        ..policy()
    };
    let start = Instant::now();
    let mut history = History::starting_at(start, 1);
    for secs in [0, 60, 119] {
        let now = start + Duration::from_secs(secs);
        let d = decide(&policy, &reading(0, 0, 1), &history, 1, now);
        assert_eq!(d.desired, 1, "at {secs}s: {}", d.reason);
        history.record(now, &d, policy.stabilization_window);
    }
    let d = decide(
        &policy,
        &reading(0, 0, 1),
        &history,
        1,
        start + Duration::from_secs(120),
    );
    assert_eq!(d.desired, 0, "{}", d.reason);
    assert!(d.reason.contains("1 -> 0: queue idle"), "{}", d.reason);
    // Work in progress resets the idle clock.
    history.record(
        start + Duration::from_secs(121),
        &decide(
            &policy,
            &reading(0, 1, 1),
            &history,
            1,
            start + Duration::from_secs(121),
        ),
        Duration::ZERO,
    );
    let d = decide(
        &policy,
        &reading(0, 0, 1),
        &history,
        1,
        start + Duration::from_secs(122),
    );
    assert_eq!(d.desired, 1, "{}", d.reason);
}

#[test]
fn stale_readings_count_as_no_reading() {
    let stale = QueueState::Known(QueueReading {
        ready: 0,
        unacked: 0,
        consumers: Some(0),
        publish_rate: None,
        ack_rate: None,
        age: Duration::from_secs(60),
        rates_listed: None,
    });
    let d = decide(&policy(), &stale, &History::default(), 6, Instant::now());
    assert_eq!(d.desired, 6);
    assert!(d.reason.contains("old"), "{}", d.reason);
}

#[test]
fn uncounted_consumers_keep_one_replica_per_unacked_message() {
    // A new TaskQueue's first readings come from totals listings: unacked is
    // known, consumers are not. Reading them as 0 let the scale-down remove pods
    // that held work (6 -> 1 with 6 long tasks running, on the local cluster).
    let mut countless = policy();
    countless.count_unacked = false;
    countless.min_replicas = 1;
    let state = |consumers| {
        QueueState::Known(QueueReading {
            ready: 0,
            unacked: 6,
            consumers,
            publish_rate: None,
            ack_rate: None,
            age: Duration::from_millis(500),
            rates_listed: None,
        })
    };
    let start = Instant::now();
    let history = History::starting_at(start, 6);
    let later = start + Duration::from_secs(61);
    let d = decide(&countless, &state(None), &history, 6, later);
    assert_eq!(d.desired, 6, "{}", d.reason);
    let d = decide(&countless, &state(Some(3)), &history, 6, later);
    assert_eq!(d.desired, 3, "counted: {}", d.reason);
}

fn arb_policy() -> impl Strategy<Value = ScalingPolicy> {
    (
        0i32..5,
        1i32..50,
        1i64..100,
        1i64..20,
        any::<bool>(),
        0i32..5,
        0u64..300,
        0u64..300,
        proptest::option::of(1i32..50),
    )
        .prop_map(
            |(min, span, target, activation, count_unacked, step, window, zero, fallback)| {
                let max = min + span;
                ScalingPolicy {
                    min_replicas: min,
                    max_replicas: max,
                    target_backlog_per_replica: target,
                    drain: None,
                    drain_alone: false,
                    activation_backlog: activation,
                    count_unacked,
                    max_step: step,
                    stabilization_window: Duration::from_secs(window),
                    scale_to_zero_delay: Duration::from_secs(zero),
                    fallback_replicas: fallback.map(|f| f.clamp(min.max(1), max)),
                    max_reading_age: Duration::from_secs(15),
                }
            },
        )
}

fn arb_reading() -> impl Strategy<Value = QueueReading> {
    (0i64..100_000, 0i64..1000, 0i64..100).prop_map(|(ready, unacked, consumers)| QueueReading {
        ready,
        unacked,
        consumers: Some(consumers),
        publish_rate: None,
        ack_rate: None,
        age: Duration::from_secs(1),
        rates_listed: None,
    })
}

/// A history of recommendations made at the given second offsets before `now`.
fn arb_history(now: Instant) -> impl Strategy<Value = History> {
    proptest::collection::vec((0u64..400, 0i32..60, any::<bool>()), 0..8).prop_map(move |entries| {
        let mut history = History::default();
        let mut entries = entries;
        entries.sort_by_key(|(ago, _, _)| std::cmp::Reverse(*ago));
        for (ago, recommendation, idle) in entries {
            let at = now - Duration::from_secs(ago);
            let decision = Decision {
                desired: recommendation,
                reason: String::new(),
                recommendation: Some(recommendation),
                idle,
                backlog: None,
                limited: None,
                rate: None,
            };
            history.record(at, &decision, Duration::from_secs(1000));
        }
        history
    })
}

proptest! {
    #[test]
    fn always_within_bounds(policy in arb_policy(), r in arb_reading(), current in 0i32..100, unreadable in any::<bool>()) {
        let now = Instant::now() + Duration::from_secs(1000);
        let observation = if unreadable { QueueState::Unknown("down".into()) } else { QueueState::Known(r) };
        let d = decide(&policy, &observation, &History::default(), current, now);
        if !unreadable || policy.fallback_replicas.is_some() || (policy.min_replicas..=policy.max_replicas).contains(&current) {
            prop_assert!(d.desired >= policy.min_replicas && d.desired <= policy.max_replicas, "{} not in bounds: {}", d.desired, d.reason);
        } else {
            // Without a reading and without a fallback, the current count is held.
            prop_assert_eq!(d.desired, current);
        }
    }

    #[test]
    fn monotone_in_backlog(policy in arb_policy(), r in arb_reading(), extra in 0i64..10_000, current in 0i32..60) {
        let now = Instant::now() + Duration::from_secs(1000);
        let history = History::starting_at(now - Duration::from_secs(30), current);
        let low = decide(&policy, &QueueState::Known(r.clone()), &history, current, now);
        let more = QueueReading { ready: r.ready + extra, ..r };
        let high = decide(&policy, &QueueState::Known(more), &history, current, now);
        prop_assert!(high.desired >= low.desired, "{} ({}) < {} ({})", high.desired, high.reason, low.desired, low.reason);
    }

    #[test]
    fn no_scale_down_below_the_window_high(policy in arb_policy(), r in arb_reading(), current in 0i32..60, history in arb_history(Instant::now() + Duration::from_secs(1000))) {
        let now = Instant::now() + Duration::from_secs(1000);
        let d = decide(&policy, &QueueState::Known(r), &history, current, now);
        let high = history.highest_within(now, policy.stabilization_window).unwrap_or(0);
        if d.desired < current && current <= policy.max_replicas {
            prop_assert!(d.desired >= high.min(current),
                "scaled {} -> {} inside the window (high {}): {}", current, d.desired, high, d.reason);
        }
    }

    #[test]
    fn never_to_zero_with_work_in_flight_or_no_reading(policy in arb_policy(), r in arb_reading(), current in 1i32..60, history in arb_history(Instant::now() + Duration::from_secs(1000))) {
        let now = Instant::now() + Duration::from_secs(1000);
        let busy = QueueReading { unacked: r.unacked.max(1), ..r };
        let d = decide(&policy, &QueueState::Known(busy), &history, current, now);
        prop_assert!(d.desired > 0, "scaled to zero with unacked messages: {}", d.reason);
        let d = decide(&policy, &QueueState::Unknown("timeout".into()), &history, current, now);
        prop_assert!(d.desired > 0, "scaled to zero without a reading: {}", d.reason);
    }
}
