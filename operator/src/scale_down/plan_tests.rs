use super::*;
use proptest::prelude::*;

fn pod(name: &str, ip: &str) -> TargetPod {
    TargetPod {
        name: name.into(),
        ip: Some(ip.into()),
        cost: None,
    }
}

fn consumer(tag: &str, peer: &str, unacked: i64) -> QueueConsumer {
    QueueConsumer {
        tag: tag.into(),
        peer_host: Some(peer.into()),
        channel: format!("{peer}:1234 -> 10.88.0.1:5672 (1)"),
        unacked,
    }
}

fn work(name: &str, unacked: i64) -> PodWork {
    PodWork {
        name: name.into(),
        unacked,
        cost: None,
    }
}

fn down(from: i32, to: i32) -> Decision {
    Decision {
        desired: to,
        reason: format!("{from} -> {to}: backlog 0 over target 1/replica"),
        recommendation: Some(to),
        idle: false,
        backlog: Some(0),
        limited: None,
        rate: None,
    }
}

fn known(occupancy: Occupancy) -> (Vec<PodWork>, i64) {
    match occupancy {
        Occupancy::Known { pods, unattributed } => (pods, unattributed),
        Occupancy::Unknown(why) => panic!("unknown: {why}"),
    }
}

#[test]
fn warren_workers_match_by_consumer_tag_and_celery_by_ip() {
    let pods = [
        pod("w-1", "10.88.0.5"),
        pod("w-2", "10.88.0.6"),
        pod("w-3", "10.88.0.7"),
    ];
    // w-1 by tag (its peer is a proxy's address), w-2 by IP (Celery's tag None1).
    let consumers = [
        consumer("w-1", "127.0.0.1", 2),
        consumer("None1", "10.88.0.6", 1),
    ];
    let (work, unattributed) = known(occupancy(&pods, &consumers, 3));
    let seen: Vec<(&str, i64)> = work.iter().map(|w| (w.name.as_str(), w.unacked)).collect();
    assert_eq!(seen, [("w-1", 2), ("w-2", 1), ("w-3", 0)]);
    assert_eq!(unattributed, 0);
}

#[test]
fn unmatched_consumers_with_silent_pods_cannot_be_told() {
    // Behind a proxy every peer is 127.0.0.1: Celery's consumers match nothing.
    let pods = [pod("c-1", "10.88.0.5"), pod("c-2", "10.88.0.6")];
    let consumers = [
        consumer("None1", "127.0.0.1", 1),
        consumer("None1", "127.0.0.1", 0),
    ];
    match occupancy(&pods, &consumers, 1) {
        Occupancy::Unknown(why) => {
            assert!(why.contains("2 consumer(s)"), "{why}");
            assert!(why.contains("peers 127.0.0.1"), "{why}");
        }
        known => panic!("{known:?}"),
    }
}

#[test]
fn pods_sharing_an_ip_are_not_matched_by_it() {
    let pods = [pod("h-1", "10.0.0.1"), pod("h-2", "10.0.0.1")];
    let consumers = [consumer("None1", "10.0.0.1", 1)];
    assert!(matches!(
        occupancy(&pods, &consumers, 1),
        Occupancy::Unknown(_)
    ));
}

#[test]
fn consumers_of_other_workloads_are_ignored_when_every_pod_is_matched() {
    let pods = [pod("w-1", "10.88.0.5")];
    let consumers = [
        consumer("w-1", "10.88.0.5", 0),
        consumer("other-7", "10.88.0.9", 3),
    ];
    let (work, unattributed) = known(occupancy(&pods, &consumers, 3));
    assert_eq!(work[0].unacked, 0);
    assert_eq!(unattributed, 0);
}

#[test]
fn the_fresh_count_beyond_the_statistics_is_unattributed() {
    let pods = [pod("w-1", "10.88.0.5"), pod("w-2", "10.88.0.6")];
    let consumers = [
        consumer("w-1", "10.88.0.5", 1),
        consumer("w-2", "10.88.0.6", 0),
    ];
    let (_, unattributed) = known(occupancy(&pods, &consumers, 2));
    assert_eq!(unattributed, 1);
}

#[test]
fn table() {
    // (pods' unacked, unattributed, current, wanted, desired, removed, reason contains)
    type Case = (Vec<i64>, i64, i32, i32, i32, i32, &'static str);
    let cases: Vec<Case> = vec![
        (
            vec![1, 1, 1, 1, 0, 0],
            0,
            6,
            4,
            4,
            2,
            "6 -> 4: backlog 0 over target 1/replica; 2 idle worker(s) removed, 4 busy kept",
        ),
        (
            vec![1, 1, 0, 0, 0, 0],
            0,
            6,
            2,
            2,
            4,
            "4 idle worker(s) removed, 2 busy kept",
        ),
        (
            vec![1, 1, 1, 0, 0, 0],
            0,
            6,
            1,
            3,
            3,
            "6 -> 3: 3 idle worker(s) removed, 3 busy kept; the decision asked 6 -> 1",
        ),
        (
            vec![1, 2, 3],
            0,
            3,
            1,
            3,
            0,
            "hold 3: 3 busy worker(s) and no idle one to remove",
        ),
        (
            vec![1, 0, 0, 0],
            2,
            4,
            1,
            4,
            0,
            "hold 4: 2 delivery(ies) not yet in the channel statistics",
        ),
        (
            vec![0, 0, 0, 0],
            2,
            4,
            2,
            4,
            0,
            "so no pod is known to be idle",
        ),
        (
            vec![0, 0, 0],
            0,
            3,
            0,
            0,
            3,
            "3 idle worker(s) removed, 0 busy kept",
        ),
    ];
    for (unacked, unattributed, current, wanted, desired, removed, reason) in cases {
        let pods: Vec<PodWork> = unacked
            .iter()
            .enumerate()
            .map(|(i, u)| work(&format!("w-{i}"), *u))
            .collect();
        let plan = plan(down(current, wanted), current, &pods, unattributed);
        let case = format!("{unacked:?} unattributed {unattributed}, {current} -> {wanted}");
        assert_eq!(plan.decision.desired, desired, "{case}");
        assert_eq!(plan.removed, removed, "{case}");
        assert!(
            plan.decision.reason.contains(reason),
            "{case}: {}",
            plan.decision.reason
        );
    }
}

#[test]
fn costs_mark_busy_pods_by_their_work_and_skip_what_is_already_set() {
    let mut pods = vec![
        work("idle", 0),
        work("busy", 3),
        work("was-busy", 0),
        work("same", 1),
    ];
    pods[2].cost = Some(5);
    pods[3].cost = Some(1);
    let plan = plan(down(4, 2), 4, &pods, 0);
    assert_eq!(
        plan.costs,
        [("busy".to_string(), 3), ("was-busy".to_string(), 0)]
    );
    let busy: Vec<&str> = plan
        .pods
        .iter()
        .filter(|(_, b)| *b)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(busy, ["busy", "same"]);
}

proptest! {
    /// Never more pods removed than are idle (none while deliveries are unattributed),
    /// never below what was wanted, never above the current count.
    #[test]
    fn only_idle_pods_are_removed(
        unacked in proptest::collection::vec(0i64..3, 0..12),
        unattributed in 0i64..4,
        wanted in 0i32..12,
    ) {
        let current = i32::try_from(unacked.len()).expect("small");
        prop_assume!(wanted < current);
        let pods: Vec<PodWork> = unacked.iter().enumerate().map(|(i, u)| work(&format!("w-{i}"), *u)).collect();
        let plan = plan(down(current, wanted), current, &pods, unattributed);
        let idle = i32::try_from(unacked.iter().filter(|u| **u == 0).count()).expect("small");
        // Unattributed deliveries may sit on any pod seen idle: then none is safe.
        let safe = if unattributed > 0 { 0 } else { idle };
        prop_assert!(plan.decision.desired >= wanted);
        prop_assert!(plan.decision.desired <= current);
        prop_assert!(plan.removed <= safe);
        prop_assert_eq!(plan.removed, current - plan.decision.desired);
        // Every busy pod costs more than every idle one.
        let cost = |name: &str| plan.costs.iter().find(|(n, _)| n == name).map_or(0, |(_, c)| *c);
        for pod in &pods {
            prop_assert_eq!(cost(&pod.name) > 0, pod.unacked > 0);
        }
    }
}
