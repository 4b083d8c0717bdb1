use super::*;

fn new_hpa(min: i32, max: i32) -> Hpa {
    Hpa::new(min, max, 10.0, KedaSettings::default())
}

#[test]
fn scale_up_grows_by_four_pods_or_double_per_period() {
    let mut hpa = new_hpa(1, 50);
    let mut current = 1;
    let mut seen = vec![current];
    for sync in 0..6 {
        current = hpa.sync(15.0 * f64::from(sync), 2000.0, current);
        seen.push(current);
    }
    // 1 + 4; then x2 (5 -> 10 beats +4 = 9); up to maxReplicas.
    assert_eq!(seen, [1, 5, 10, 20, 40, 50, 50]);
}

#[test]
fn scale_events_within_the_period_count_against_the_limit() {
    let mut hpa = new_hpa(1, 50);
    assert_eq!(hpa.sync(0.0, 2000.0, 1), 5);
    // A second sync 5 s later: the period still holds the +4, so 1 -> at most 5.
    assert_eq!(hpa.sync(5.0, 2000.0, 5), 5);
    assert_eq!(
        hpa.sync(15.0, 2000.0, 5),
        10,
        "the +4 at 0 s is 15 s old: out"
    );
}

#[test]
fn within_tolerance_the_hpa_keeps_its_count() {
    let mut hpa = new_hpa(1, 50);
    assert_eq!(hpa.sync(0.0, 105.0, 10), 10, "ratio 1.05");
    assert_eq!(hpa.sync(15.0, 91.0, 10), 10, "ratio 0.91");
    assert_eq!(hpa.sync(30.0, 111.0, 10), 12, "ratio 1.11: ceil(11.1)");
}

#[test]
fn scale_down_waits_for_the_highest_recommendation_of_300_s() {
    let mut hpa = new_hpa(1, 50);
    assert_eq!(hpa.sync(0.0, 200.0, 20), 20);
    let mut current = 20;
    for sync in 1..20 {
        let now = 15.0 * f64::from(sync);
        current = hpa.sync(now, 0.0, current);
        assert_eq!(current, 20, "at {now} s the 20 of 0 s is within 300 s");
    }
    assert_eq!(
        hpa.sync(300.0, 0.0, current),
        1,
        "never below the HPA's min of 1"
    );
    let mut hpa = new_hpa(1, 50);
    hpa.sync(0.0, 200.0, 20);
    hpa.sync(100.0, 80.0, 20);
    assert_eq!(
        hpa.sync(300.0, 0.0, 20),
        8,
        "then the highest left: 8 at 100 s"
    );
}

#[test]
fn the_hpa_leaves_zero_to_keda_and_holds_its_bounds() {
    let mut hpa = new_hpa(0, 10);
    assert_eq!(hpa.sync(0.0, 500.0, 0), 0, "disabled at 0 replicas");
    assert_eq!(hpa.sync(15.0, 0.0, 12), 10, "above max");
    let mut hpa = Hpa::new(3, 10, 10.0, KedaSettings::default());
    assert_eq!(hpa.sync(0.0, 0.0, 2), 3, "below min");
}

fn spec(min: i32) -> TaskQueueSpec {
    let yaml = format!(
        "queue: q\nscaleTargetRef: {{name: w}}\nminReplicas: {min}\nmaxReplicas: 50\n\
         targetBacklogPerReplica: 10\n"
    );
    serde_yaml::from_str(&yaml).expect("valid spec")
}

#[test]
fn keda_activates_at_its_poll_and_cools_down_to_zero() {
    let mut keda = KedaModel::new(&spec(0), KedaSettings::default(), 0.5);
    assert_eq!(
        keda.next_tick_at(),
        7.5,
        "the HPA's first sync; KEDA's poll at 15 s"
    );
    assert_eq!(keda.poll(15.0, 0.0, 0), 0, "nothing queued");
    assert_eq!(
        keda.poll(45.0, 3.0, 0),
        1,
        "0 -> 1 when the length is above 0"
    );
    assert_eq!(keda.poll(75.0, 40.0, 4), 4, "above 0, the HPA decides");
    assert_eq!(
        keda.poll(105.0, 0.0, 4),
        4,
        "idle since 105 s, last active 75 s"
    );
    assert_eq!(keda.poll(375.0, 0.0, 4), 4, "300 s after 75 s: not yet");
    assert_eq!(
        keda.poll(405.0, 0.0, 4),
        0,
        "more than cooldownPeriod: to 0"
    );
    let mut keda = KedaModel::new(&spec(2), KedaSettings::default(), 0.0);
    assert_eq!(keda.poll(0.0, 5.0, 0), 2, "from 0 to minReplicaCount");
    assert_eq!(keda.poll(1000.0, 0.0, 2), 2, "never below minReplicaCount");
}

#[test]
fn a_burst_under_keda_follows_the_hand_computed_steps() {
    use crate::simulate::broker_view::{BrokerView, STATISTICS_INTERVAL};
    use crate::simulate::distribution::Distribution;
    use crate::simulate::fleet::{Fleet, FleetConfig};
    let config = FleetConfig {
        concurrency: 1,
        startup: Distribution::Const(2.0),
        grace_period: 30.0,
        seed: 1,
    };
    // Tasks long enough that the backlog stays above 500 throughout.
    let mut fleet = Fleet::new(&[(0.0, 1000.0); 2000], 0, config);
    let mut view = BrokerView::new(&fleet, 2.5, STATISTICS_INTERVAL);
    let mut keda = KedaModel::new(&spec(0), KedaSettings::default(), 0.5);
    let mut steps = Vec::new();
    while keda.next_tick_at() <= 90.0 {
        let at = keda.next_tick_at().min(view.next_emission_at());
        fleet.advance(at);
        if view.next_emission_at() <= at {
            view.emit(&fleet);
        }
        if keda.next_tick_at() <= at
            && let Some(asked) = keda.tick(&fleet, &view)
        {
            fleet.scale_to(asked.replicas, &asked.costs);
            steps.push((at, asked.replicas));
        }
    }
    assert_eq!(
        steps,
        [
            (15.0, 1),
            (22.5, 5),
            (37.5, 10),
            (52.5, 20),
            (67.5, 40),
            (82.5, 50)
        ]
    );
}
