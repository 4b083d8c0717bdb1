use super::*;

fn settings() -> Settings {
    Settings {
        service_time: Distribution::Const(1.0),
        startup: Distribution::Const(2.0),
        concurrency: 1,
        grace_period: 30.0,
        seed: 1,
        phase: 0.5,
        sample_every: 1.0,
        tail: 3600.0,
        keda: KedaSettings::default(),
    }
}

fn spec(yaml: &str) -> TaskQueueSpec {
    serde_yaml::from_str(yaml).expect("valid spec")
}

const BACKLOG: &str = "queue: q\nscaleTargetRef: {name: w}\nminReplicas: 0\nmaxReplicas: 50\n\
    targetBacklogPerReplica: 10\npollInterval: 1s\n";

fn burst(n: usize) -> Trace {
    "burst:2000"
        .replace("2000", &n.to_string())
        .parse::<trace::TraceSpec>()
        .expect("valid")
        .load(1, |_| Err(std::io::Error::other("no files")))
        .expect("generated")
}

#[test]
fn warren_and_keda_finish_a_burst_and_settle_at_zero() {
    let settings = settings();
    let tasks = tasks_of(&burst(2000), &settings, "q");
    let rows = contenders(
        &[("backlog-target".into(), spec(BACKLOG))],
        &[PolicyKind::Warren, PolicyKind::Keda],
    );
    let outcomes: Vec<Outcome> = rows.iter().map(|c| run(&tasks, c, &settings)).collect();
    let [warren, keda] = [&outcomes[0].summary, &outcomes[1].summary];
    for s in [warren, keda] {
        assert_eq!((s.tasks, s.published), (2000, 2000), "{}", s.label);
        assert_eq!(s.peak_replicas, 50, "{}", s.label);
        assert_eq!(s.longest_backlog, 2000, "{}", s.label);
        assert_eq!(s.interrupted, 0, "{}", s.label);
        assert!(s.time_to_drain_s.is_some(), "{}", s.label);
    }
    assert_eq!(warren.label, "backlog-target");
    assert_eq!(keda.label, "keda (backlog-target)");
    // warren: 0 -> 50 at the first poll (0.5 s), pods consume at 2.5 s; 2000 tasks
    // of 1 s over 50 pods take 40 s.
    let drain = warren.time_to_drain_s.expect("drained");
    assert!((42.0..50.0).contains(&drain), "warren drains in {drain}");
    let keda_drain = keda.time_to_drain_s.expect("drained");
    assert!(
        keda_drain > drain + 30.0,
        "KEDA waits for its poll and grows in steps: {keda_drain}"
    );
    assert!(keda.wait_p50_s > warren.wait_p50_s);
    let series = &outcomes[0].series;
    assert_eq!(
        series.last().map(|p| p.replicas),
        Some(0),
        "back to minReplicas 0"
    );
    assert!(series.windows(2).all(|w| w[0].t < w[1].t));
    // The tail: KEDA holds pods through the HPA's 300 s window and its 300 s cooldown.
    assert!(keda.end_s > 300.0 && keda.pod_seconds > warren.pod_seconds);
}

#[test]
fn a_seed_replays_a_run_and_another_seed_differs() {
    let mut settings = settings();
    settings.service_time = Distribution::Exp { mean: 1.0 };
    settings.startup = Distribution::Uniform {
        low: 1.0,
        high: 3.0,
    };
    let spec_text = "ramp:0-20:2m";
    let trace = |seed| {
        spec_text
            .parse::<trace::TraceSpec>()
            .expect("valid")
            .load(seed, |_| Err(std::io::Error::other("no files")))
            .expect("generated")
    };
    let row = &contenders(&[("a".into(), spec(BACKLOG))], &[PolicyKind::Warren])[0];
    let once = run(&tasks_of(&trace(1), &settings, "q"), row, &settings);
    let again = run(&tasks_of(&trace(1), &settings, "q"), row, &settings);
    assert_eq!(once, again);
    settings.seed = 2;
    let other = run(&tasks_of(&trace(2), &settings, "q"), row, &settings);
    assert_ne!(once.summary, other.summary);
}

#[test]
fn keda_runs_once_per_distinct_target_and_bounds() {
    let other = format!("{BACKLOG}scaleDown: {{stabilizationWindow: 10s}}\n");
    let wider = BACKLOG.replace("maxReplicas: 50", "maxReplicas: 80");
    let queues = [
        ("a".to_owned(), spec(BACKLOG)),
        ("b".to_owned(), spec(&other)),
        ("c".to_owned(), spec(&wider)),
    ];
    let labels: Vec<String> = contenders(&queues, &[PolicyKind::Keda, PolicyKind::Warren])
        .into_iter()
        .map(|c| c.label)
        .collect();
    assert_eq!(labels, ["a", "b", "c", "keda (a)", "keda (c)"]);
}

#[test]
fn tasks_come_with_the_traces_service_times_and_for_their_queue() {
    let arrival = |at, service, queue: Option<&str>| trace::Arrival {
        at,
        service,
        queue: queue.map(str::to_owned),
    };
    let trace = Trace {
        name: "csv".into(),
        arrivals: vec![
            arrival(0.0, Some(4.0), Some("queue_a")),
            arrival(0.5, Some(2.0), Some("queue_b")),
            arrival(1.0, None, None),
        ],
    };
    assert_eq!(
        tasks_of(&trace, &settings(), "queue_a"),
        [(0.0, 4.0), (1.0, 1.0)],
        "another queue's rows are left out; a row without one counts"
    );
    assert_eq!(
        tasks_of(&trace, &settings(), "queue_b"),
        [(0.5, 2.0), (1.0, 1.0)]
    );
    assert_eq!(
        settings().service_source(&trace),
        "from the trace, else const:1s"
    );
    let recorded = Trace {
        arrivals: trace.arrivals[..2].to_vec(),
        ..trace.clone()
    };
    assert_eq!(settings().service_source(&recorded), "from the trace");
    assert_eq!(settings().service_source(&burst(3)), "const:1s");
}
