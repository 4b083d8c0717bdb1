use proptest::prelude::*;

use super::*;

fn config(concurrency: usize, startup: f64, grace_period: f64) -> FleetConfig {
    FleetConfig {
        concurrency,
        startup: Distribution::Const(startup),
        grace_period,
        seed: 1,
    }
}

fn no_costs() -> HashMap<PodId, i32> {
    HashMap::new()
}

fn starts(fleet: &Fleet) -> Vec<Option<f64>> {
    fleet.tasks().iter().map(|t| t.started_at).collect()
}

#[test]
fn one_pod_runs_the_queue_in_order() {
    let mut fleet = Fleet::new(&[(0.0, 1.0); 3], 1, config(1, 2.0, 30.0));
    fleet.advance(0.0);
    assert_eq!((fleet.ready(), fleet.unacked()), (2, 1));
    fleet.advance(f64::INFINITY);
    assert_eq!(starts(&fleet), [Some(0.0), Some(1.0), Some(2.0)]);
    assert!(fleet.all_done());
    assert_eq!(fleet.longest_busy(), Some(3.0));
    assert_eq!(fleet.max_ready(), 2);
}

#[test]
fn new_pods_consume_after_their_start_up() {
    let mut fleet = Fleet::new(&[(0.0, 1.0); 4], 0, config(2, 2.0, 30.0));
    fleet.advance(0.0);
    assert_eq!(fleet.ready(), 4);
    fleet.scale_to(1, &no_costs());
    assert_eq!(fleet.replicas(), 1);
    fleet.advance(f64::INFINITY);
    assert_eq!(
        starts(&fleet),
        [Some(2.0), Some(2.0), Some(3.0), Some(3.0)],
        "concurrency 2: two at a time"
    );
    assert_eq!(fleet.pod_seconds(10.0), 10.0);
}

#[test]
fn costs_keep_the_busy_pod_and_any_removal_lets_it_finish() {
    // Two pods, one task: the round-robin gives it to pod 0.
    let mut fleet = Fleet::new(&[(0.0, 5.0)], 2, config(1, 1.0, 30.0));
    fleet.advance(1.0);
    assert_eq!(fleet.pods()[0].holding(), 1);
    // IdleFirst: the busy pod carries a higher deletion cost; the idle one goes.
    fleet.scale_to(1, &HashMap::from([(0, 1), (1, 0)]));
    assert_eq!(fleet.pods()[1].phase, PodPhase::Gone);
    assert_eq!(fleet.pods()[0].phase, PodPhase::Consuming);
    // Any: the ReplicaSet takes the only pod; it finishes its task within its grace.
    fleet.scale_to(0, &no_costs());
    assert_eq!(fleet.pods()[0].phase, PodPhase::Terminating);
    assert_eq!(fleet.replicas(), 0);
    fleet.advance(f64::INFINITY);
    assert!(fleet.all_done());
    assert_eq!(fleet.interrupted(), 0);
    assert_eq!(fleet.pods()[0].gone_at, Some(5.0));
}

#[test]
fn a_task_longer_than_the_grace_period_is_interrupted_and_redelivered() {
    let mut fleet = Fleet::new(&[(0.0, 100.0)], 1, config(1, 3.0, 10.0));
    fleet.advance(1.0);
    fleet.scale_to(2, &no_costs()); // pod 1 starts at 4
    fleet.advance(5.0);
    // Without costs the ReplicaSet removes the most recently ready pod: pod 1
    // (idle). Then pod 0, busy, whose task cannot finish within 10 s.
    fleet.scale_to(1, &no_costs());
    assert_eq!(fleet.pods()[1].phase, PodPhase::Gone);
    fleet.scale_to(2, &no_costs()); // pod 2, ready at 8
    fleet.advance(8.0);
    fleet.scale_to(1, &HashMap::from([(2, 0), (0, 0)]));
    assert_eq!(
        fleet.pods()[0].phase,
        PodPhase::Consuming,
        "equal costs: the most recently ready pod (2) goes"
    );
    fleet.scale_to(2, &no_costs()); // pod 3, ready at 11
    fleet.scale_to(1, &HashMap::from([(0, 0), (3, 5)]));
    assert_eq!(
        fleet.pods()[3].phase,
        PodPhase::Gone,
        "a pod not ready goes before any ready one, whatever its cost"
    );
    fleet.scale_to(2, &no_costs()); // pod 4, ready at 11
    fleet.advance(11.0);
    fleet.scale_to(1, &HashMap::from([(0, 0), (4, 1)]));
    assert_eq!(fleet.pods()[0].phase, PodPhase::Terminating);
    fleet.advance(f64::INFINITY);
    assert_eq!(fleet.interrupted(), 1);
    let task = &fleet.tasks()[0];
    assert_eq!(task.deliveries, 2);
    assert_eq!(task.completions, 1);
    assert_eq!(
        task.started_at,
        Some(21.0),
        "redelivered when pod 0's grace ended"
    );
    assert_eq!(task.completed_at, Some(121.0));
}

#[test]
fn the_longest_busy_stretch_is_the_time_to_drain() {
    let tasks = [
        (0.0, 1.0),
        (0.0, 1.0),
        (10.0, 1.0),
        (10.0, 1.0),
        (10.0, 1.0),
    ];
    let mut fleet = Fleet::new(&tasks, 1, config(1, 1.0, 30.0));
    fleet.advance(11.5);
    assert_eq!(fleet.longest_busy(), None, "busy right now");
    fleet.advance(f64::INFINITY);
    assert_eq!(fleet.longest_busy(), Some(3.0));
}

#[derive(Debug, Clone)]
struct Step {
    at: f64,
    replicas: usize,
    /// Costs by pod id, as an IdleFirst plan might have written them.
    costs: Vec<(PodId, i32)>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            0.0..120.0f64,
            0usize..5,
            prop::collection::vec((0usize..12, 0i32..3), 0..4),
        )
            .prop_map(|(at, replicas, costs)| Step {
                at,
                replicas,
                costs,
            }),
        0..12,
    )
    .prop_map(|mut steps| {
        steps.sort_by(|a, b| a.at.total_cmp(&b.at));
        steps
    })
}

fn tasks() -> impl Strategy<Value = Vec<(f64, f64)>> {
    prop::collection::vec((0.0..100.0f64, 0.0..20.0f64), 0..40).prop_map(|mut tasks| {
        tasks.sort_by(|a, b| a.0.total_cmp(&b.0));
        tasks
    })
}

proptest! {
    /// Whatever the arrivals and however the replicas move, every published task
    /// is acknowledged exactly once, and nothing is left held or queued.
    #[test]
    fn no_task_is_lost_or_duplicated(
        tasks in tasks(),
        steps in steps(),
        initial in 0usize..3,
        concurrency in 1usize..4,
        startup in 0.0..5.0f64,
        grace in 0.0..10.0f64,
    ) {
        let mut fleet = Fleet::new(&tasks, initial, config(concurrency, startup, grace));
        for step in &steps {
            fleet.advance(step.at);
            fleet.scale_to(step.replicas, &step.costs.iter().copied().collect());
            prop_assert_eq!(fleet.replicas(), step.replicas);
        }
        // Whatever the last step left, one replica finishes the work.
        fleet.scale_to(fleet.replicas().max(1), &HashMap::new());
        fleet.advance(f64::INFINITY);
        prop_assert!(fleet.all_done());
        prop_assert_eq!(fleet.published(), tasks.len());
        prop_assert_eq!(fleet.acked(), tasks.len());
        prop_assert_eq!((fleet.ready(), fleet.unacked()), (0, 0));
        for task in fleet.tasks() {
            prop_assert_eq!(task.completions, 1);
            prop_assert!(task.deliveries >= 1);
            let started = task.started_at.expect("started");
            prop_assert!(started >= task.published_at);
            prop_assert_eq!(task.completed_at, Some(started + task.service));
        }
        let redeliveries: u32 = fleet.tasks().iter().map(|t| t.deliveries - 1).sum();
        prop_assert_eq!(redeliveries as usize, fleet.interrupted());
        prop_assert!(fleet.pods().iter().all(|p| p.holding() == 0));
    }
}
