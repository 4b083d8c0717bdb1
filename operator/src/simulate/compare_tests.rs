use std::collections::BTreeMap;

use super::*;
use crate::simulate::{Contender, PolicyKind};

/// Points at `times` of a run described by `at(t) -> (replicas, ready, unacked)`.
fn series(
    times: impl Iterator<Item = f64>,
    at: impl Fn(f64) -> (usize, usize, usize),
) -> Vec<Point> {
    times
        .map(|t| {
            let (replicas, ready, unacked) = at(t);
            Point {
                t,
                ready,
                unacked,
                replicas,
            }
        })
        .collect()
}

/// Every second from 0 to 40 s, as a recorder samples.
fn grid() -> impl Iterator<Item = f64> {
    (0..=40).map(f64::from)
}

/// Every 0.25 s from 0 to `end`, as the simulator samples.
fn fine(end: f64) -> impl Iterator<Item = f64> {
    (0..)
        .map(|k| f64::from(k) * 0.25)
        .take_while(move |t| *t <= end)
}

/// 4 replicas from `up` to `down`, a backlog of 20 from `up` that drains at `up + 10`.
fn run(up: f64, down: f64) -> impl Fn(f64) -> (usize, usize, usize) {
    move |t| {
        let replicas = if (up..down).contains(&t) { 4 } else { 0 };
        let ready = if (up..up + 10.0).contains(&t) { 20 } else { 0 };
        let unacked = if (up..up + 10.0).contains(&t) { 4 } else { 0 };
        (replicas, ready, unacked)
    }
}

const FRAME: Frame = Frame {
    first_arrival: 1.0,
    last_arrival: 9.0,
    min_replicas: 0,
};

#[test]
fn an_exact_match_has_no_error() {
    let real = series(grid(), run(10.0, 30.0));
    let simulated = series(fine(35.0), run(10.0, 30.0));
    let c = compare(&real, &simulated, &FRAME).expect("both have points");
    assert_eq!(c.samples, 41);
    assert_eq!(c.until_s, 40.0);
    assert_eq!(c.real, c.simulated);
    assert_eq!(
        c.real,
        Landmarks {
            peak_replicas: 4,
            first_arrival_to_peak_s: 9.0,
            drained_at_s: Some(20.0),
            back_to_min_at_s: Some(30.0),
        }
    );
    let none = Deviation {
        mean_abs_error: 0.0,
        max_abs_error: 0.0,
    };
    assert_eq!((c.replicas, c.backlog), (none, none));
}

#[test]
fn a_step_two_seconds_late_costs_two_samples_at_each_edge() {
    let real = series(grid(), run(10.0, 30.0));
    let simulated = series(fine(36.0), run(12.0, 32.0));
    let c = compare(&real, &simulated, &FRAME).expect("both have points");
    // Replicas differ by 4 at 10 and 11 s (up late) and at 30 and 31 s (down late).
    assert_eq!(c.replicas.max_abs_error, 4.0);
    assert!((c.replicas.mean_abs_error - 16.0 / 41.0).abs() < 1e-12);
    // The backlog of 20 is late by the same two samples at each edge.
    assert_eq!(c.backlog.max_abs_error, 20.0);
    assert!((c.backlog.mean_abs_error - 80.0 / 41.0).abs() < 1e-12);
    assert_eq!(c.simulated.first_arrival_to_peak_s, 11.0);
    assert_eq!(c.simulated.drained_at_s, Some(22.0));
    assert_eq!(c.simulated.back_to_min_at_s, Some(32.0));
}

#[test]
fn the_simulation_holds_its_ends_beyond_its_points() {
    let real = series(grid(), run(10.0, 30.0));
    // The simulator stopped at 33 s, settled; it starts at 0.5 s.
    let simulated = series(fine(33.0).map(|t| t + 0.5), run(10.0, 30.0));
    let c = compare(&real, &simulated, &FRAME).expect("both have points");
    assert_eq!(c.real, c.simulated);
    assert_eq!(c.replicas.max_abs_error, 0.0);
}

#[test]
fn moments_that_never_came_are_none() {
    // Still busy and scaled up at the last sample.
    let real = series(grid(), run(10.0, 100.0));
    let busy = series(grid(), |t| (run(10.0, 100.0)(t).0, 5, 0));
    let c = compare(&real, &busy, &FRAME).expect("both have points");
    assert_eq!(c.real.back_to_min_at_s, None);
    assert_eq!(c.simulated.drained_at_s, None);
    assert_eq!(c.real.drained_at_s, Some(20.0));
    // Drained counts only from the last arrival on.
    let late = Frame {
        last_arrival: 25.0,
        ..FRAME
    };
    let c = compare(&real, &real, &late).expect("both have points");
    assert_eq!(c.real.drained_at_s, Some(25.0));
}

#[test]
fn nothing_to_compare_without_points() {
    let real = series(grid(), run(10.0, 30.0));
    assert_eq!(compare(&real, &[], &FRAME), None);
    assert_eq!(compare(&[], &real, &FRAME), None);
}

#[test]
fn the_step_function_takes_the_last_point_at_or_before() {
    let s = series([1.0, 2.0, 4.0].into_iter(), |t| (t as usize, 0, 0));
    let at = |t| value_at(&s, t).map(|p| p.replicas);
    assert_eq!(
        [at(0.0), at(1.0), at(3.9), at(4.0), at(9.0)],
        [Some(1), Some(1), Some(2), Some(4), Some(4)]
    );
    assert_eq!(value_at(&[], 1.0), None);
}

#[test]
fn the_table_shows_real_simulated_and_the_difference() {
    let real = series(grid(), run(10.0, 30.0));
    let simulated = series(fine(36.0), run(12.0, 32.0));
    let row = Compared {
        policy: "worker-a".into(),
        against: "real (worker-a)".into(),
        queue: "queue_a".into(),
        comparison: compare(&real, &simulated, &FRAME).expect("both have points"),
    };
    let table = markdown(std::slice::from_ref(&row));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(
        lines[2],
        "| worker-a | real (worker-a) | 41 | 4 / 4 | 9.0 / 11.0 s (+2.0 s) | 20.0 / 22.0 s (+2.0 s) \
         | 30.0 / 32.0 s (+2.0 s) | 0.39 | 4 | 2.0 | 20 |"
    );
    let busy = Compared {
        comparison: Comparison {
            simulated: Landmarks {
                drained_at_s: None,
                ..row.comparison.simulated
            },
            ..row.comparison.clone()
        },
        ..row.clone()
    };
    assert!(markdown(&[busy]).contains("| 20.0 / not by 40.0 s |"));
    let json = serde_json::to_value(&row).expect("serializable");
    assert_eq!(json["real"]["back_to_min_at_s"], 30.0);
    assert_eq!(json["replicas"]["max_abs_error"], 4.0);
}

fn contender(label: &str, kind: PolicyKind, queue: &str) -> Contender {
    let yaml =
        format!("queue: {queue}\nscaleTargetRef: {{name: w}}\nminReplicas: 1\nmaxReplicas: 6\n");
    Contender {
        label: label.into(),
        kind,
        spec: serde_yaml::from_str(&yaml).expect("valid spec"),
    }
}

#[test]
fn each_queue_is_drawn_once_after_its_first_warren_taskqueue() {
    let real: BTreeMap<String, Vec<Point>> = ["queue_a", "queue_b", "queue_c"]
        .into_iter()
        .map(|q| (q.to_owned(), series(grid(), run(10.0, 30.0))))
        .collect();
    let rows = [
        contender("worker-a", PolicyKind::Warren, "queue_a"),
        contender("worker-b", PolicyKind::Warren, "queue_b"),
        contender("variant-a", PolicyKind::Warren, "queue_a"),
        contender("keda (worker-a)", PolicyKind::Keda, "queue_a"),
        contender("keda (other)", PolicyKind::Keda, "queue_d"),
    ];
    let drawn: Vec<(String, usize)> = recorded_for(&rows, &real)
        .into_iter()
        .map(|r| (r.label, r.colour))
        .collect();
    assert_eq!(
        drawn,
        [("real (worker-a)".into(), 0), ("real (worker-b)".into(), 1)]
    );
    let keda_only = recorded_for(&rows[3..], &real);
    assert_eq!(keda_only.len(), 1);
    assert_eq!(
        (keda_only[0].label.as_str(), keda_only[0].colour),
        ("real (queue_a)", 0)
    );
}

#[test]
fn every_contender_is_compared_with_its_queues_recording() {
    let real: BTreeMap<String, Vec<Point>> =
        [("queue_a".to_owned(), series(grid(), run(10.0, 30.0)))].into();
    let rows = [
        contender("worker-a", PolicyKind::Warren, "queue_a"),
        contender("keda (worker-a)", PolicyKind::Keda, "queue_a"),
        contender("worker-d", PolicyKind::Warren, "queue_d"),
    ];
    let outcome = |up, down| Outcome {
        summary: crate::simulate::report::Summary {
            label: String::new(),
            ..Default::default()
        },
        series: series(fine(40.0), run(up, down)),
        decisions: Vec::new(),
    };
    let outcomes = [
        outcome(10.0, 30.0),
        outcome(10.0, 40.0),
        outcome(10.0, 30.0),
    ];
    let tasks = [(1.0, 0.5), (9.0, 0.5), (4.0, 0.5)];
    let frame = Frame::of(&rows[0], &tasks);
    assert_eq!(
        frame,
        Some(Frame {
            first_arrival: 1.0,
            last_arrival: 9.0,
            min_replicas: 1,
        })
    );
    assert_eq!(Frame::of(&rows[0], &[]), None);
    let runs: Vec<_> = rows
        .iter()
        .zip(&outcomes)
        .map(|(c, o)| (c, o, frame))
        .collect();
    let compared = compare_each(&runs, &recorded_for(&rows, &real));
    let got: Vec<(&str, &str, f64)> = compared
        .iter()
        .map(|c| {
            (
                c.policy.as_str(),
                c.against.as_str(),
                c.comparison.replicas.max_abs_error,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("worker-a", "real (worker-a)", 0.0),
            ("keda (worker-a)", "real (worker-a)", 4.0)
        ]
    );
}
