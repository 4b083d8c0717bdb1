//! Operator benchmarks, run by `make bench` (ignored by `cargo test`):
//! - reaction: backlog appears -> `/scale` patched, over 20+ trials at a 1 s poll
//!   interval (with the dev broker's statistics interval as configured);
//! - scale: 1,000 TaskQueues over 1,000 queues on one broker: management API
//!   requests per interval, reconciliations per 5 s interval, operator RSS.
//!
//! Results are printed as JSON and written to docs/bench-results/.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::*;

/// The reaction benchmark's TaskQueue polls this often.
const POLL_INTERVAL_S: f64 = 1.0;

/// `collect_statistics_interval` of the dev broker, as `make rabbitmq-up` configured
/// it (`.local/rabbitmq/rabbitmq.conf`); `None` when the file does not say.
fn configured_statistics_interval_s() -> Option<f64> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/rabbitmq/rabbitmq.conf");
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(key, _)| key.trim() == "collect_statistics_interval")
        .and_then(|(_, ms)| ms.trim().parse::<f64>().ok())
        .map(|ms| ms / 1000.0)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn write_result(name: &str, value: &serde_json::Value) {
    let mut value = value.clone();
    value["finished"] = json!(
        Timestamp::now()
            .round(k8s_openapi::jiff::Unit::Second)
            .expect("round")
            .to_string()
    );
    let value = &value;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bench-results");
    std::fs::create_dir_all(&dir).expect("results dir");
    std::fs::write(
        dir.join(name),
        serde_json::to_string_pretty(value).expect("json"),
    )
    .expect("write");
    println!("{}", serde_json::to_string(value).expect("json"));
}

#[tokio::test]
#[ignore = "benchmark: run by make bench"]
async fn bench_reaction_time() {
    let trials: usize = std::env::var("WARREN_BENCH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(25);
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wb-react").await;
    let queue = unique("react_q");
    create_deployment(&client, &ns.name, "worker-r", 1).await;
    fill_queue(&queue, 0).await;
    let _operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    let body = json!({"metadata": {"name": "react"}, "spec": {
        "queue": queue, "scaleTargetRef": {"name": "worker-r"}, "minReplicas": 1, "maxReplicas": 10,
        "targetBacklogPerReplica": 10, "pollInterval": format!("{POLL_INTERVAL_S}s"),
        "scaleDown": {"stabilizationWindow": "0s", "scaleToZeroDelay": "0s"}}});
    apply_taskqueue(&client, &ns.name, body)
        .await
        .expect("valid");
    let mut reactions = Vec::new();
    for trial in 0..trials {
        eventually(Duration::from_secs(30), "back at 1 replica", || async {
            spec_replicas(&client, &ns.name, "worker-r").await == 1
        })
        .await;
        // Let the history see the empty queue for a moment, then add the backlog at
        // a random point of the poll cycle.
        tokio::time::sleep(Duration::from_millis(1000 + (trial as u64 * 137) % 1000)).await;
        let appeared = Instant::now();
        fill_queue(&queue, 50).await;
        loop {
            if spec_replicas(&client, &ns.name, "worker-r").await == 5 {
                break;
            }
            assert!(
                appeared.elapsed() < Duration::from_secs(30),
                "no reaction in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reactions.push(appeared.elapsed().as_secs_f64());
        purge_queue(&queue).await;
    }
    let mut sorted = reactions.clone();
    sorted.sort_by(f64::total_cmp);
    write_result(
        "operator-reaction.json",
        &json!({
            "trials": trials,
            "poll_interval_s": POLL_INTERVAL_S,
            "broker_statistics_interval_configured_s": configured_statistics_interval_s(),
            "p50_s": percentile(&sorted, 0.5),
            "p95_s": percentile(&sorted, 0.95),
            "max_s": sorted.last(),
            "min_s": sorted.first(),
            "samples_s": reactions,
        }),
    );
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "benchmark: run by make bench"]
async fn bench_thousand_taskqueues() {
    let count: usize = std::env::var("WARREN_BENCH_QUEUES")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1000);
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wb-scale").await;
    let prefix = unique("scale_q");
    let queues: Vec<String> = (0..count).map(|i| format!("{prefix}_{i:04}")).collect();
    // A vhost of their own, so the broker holds exactly `count` queues there.
    let vhost = unique("warren-bench");
    create_vhost(&vhost).await;
    declare_queues(&vhost, &queues).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let started = Instant::now();
    for (i, queue) in queues.iter().enumerate() {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("w-{i:04}")},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("w-{i:04}")}},
                     "template": {"metadata": {"labels": {"app": format!("w-{i:04}")}},
                                  "spec": {"containers": [{"name": "w", "image": "warren-worker:bench"}]}}}
        }))
        .expect("deployment");
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("deployment");
        let body = json!({"metadata": {"name": format!("tq-{i:04}")}, "spec": {
            "queue": queue, "vhost": vhost, "scaleTargetRef": {"name": format!("w-{i:04}")}, "minReplicas": 0, "maxReplicas": 5,
            "pollInterval": "5s"}});
        apply_taskqueue(&client, &ns.name, body)
            .await
            .expect("valid");
    }
    let created_in = started.elapsed();
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    // Every TaskQueue gets a first status.
    let tqs: Api<warren_operator::TaskQueue> = Api::namespaced(client.clone(), &ns.name);
    let boot = Instant::now();
    eventually(
        Duration::from_secs(300),
        "every TaskQueue decided once",
        || async {
            match tqs.list(&Default::default()).await {
                Ok(list) => list.items.iter().all(|t| {
                    t.status
                        .as_ref()
                        .and_then(|s| s.last_decision.as_ref())
                        .is_some()
                }),
                Err(error) => {
                    eprintln!("listing TaskQueues failed: {error}");
                    false
                }
            }
        },
    )
    .await;
    let first_decisions_in = boot.elapsed();
    // Steady state: three 5 s intervals.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let window_start = Timestamp::now();
    let before = operator.metrics().await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = operator.metrics().await;
    let delta = |name: &str| counter(&after, name) - counter(&before, name);
    let per_interval = |name: &str| delta(name) / 3.0;
    // One poll per broker per interval: requests per poll is exact whatever the
    // window's phase.
    let requests_per_poll = delta("warren_operator_management_requests_total")
        / delta("warren_operator_broker_poll_seconds_count");
    let window_end = Timestamp::now();
    // Let the decisions of a poll that began just before the end reach the log.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gaps = decision_gaps(&operator.log_text(), window_start, window_end, count);
    let rss_kib = memory_kib(operator.pid(), "VmHWM").unwrap_or(0);
    write_result(
        "operator-scale.json",
        &json!({
            "taskqueues": count,
            "queues": count,
            "objects_created_in_s": created_in.as_secs_f64(),
            "all_decided_once_in_s": first_decisions_in.as_secs_f64(),
            "management_requests_per_5s_interval": per_interval("warren_operator_management_requests_total"),
            "management_requests_per_poll": requests_per_poll,
            "reconciles_per_5s_interval": per_interval("warren_operator_reconciles_total"),
            "window_s": window_end.duration_since(window_start).as_secs_f64(),
            "taskqueues_decided_in_window": gaps.decided,
            "fewest_decisions_of_a_taskqueue_in_window": gaps.fewest,
            "max_gap_between_decisions_s": gaps.max_gap_s,
            "p99_gap_between_decisions_s": gaps.p99_gap_s,
            "operator_peak_rss_mib": rss_kib as f64 / 1024.0,
        }),
    );
    delete_vhost(&vhost).await;
    // The targets (docs/benchmarks.md), checked after the figures are written.
    let pages = count.div_ceil(500) as f64;
    assert!(
        requests_per_poll <= pages,
        "{requests_per_poll} management requests per poll; target {pages} (one per 500 queues)"
    );
    assert_eq!(gaps.decided, count, "TaskQueues re-decided in the window");
    assert!(
        gaps.fewest >= 2,
        "a TaskQueue was decided only {} times in 15 s",
        gaps.fewest
    );
    assert!(
        gaps.p99_gap_s <= 7.5,
        "p99 gap between decisions {} s; target one 5 s interval",
        gaps.p99_gap_s
    );
    let rss_mib = rss_kib as f64 / 1024.0;
    assert!(rss_mib <= 64.0, "peak RSS {rss_mib:.1} MiB; target 64 MiB");
}

/// How often each TaskQueue was re-decided in a window, from the operator's debug
/// log (one "decided" line per decision): "every TaskQueue re-decided within one
/// interval" checked per object, as the largest gap between its decisions.
struct DecisionGaps {
    /// TaskQueues with at least one decision in the window.
    decided: usize,
    /// Decisions in the window of the TaskQueue with the fewest (0 if any had none).
    fewest: usize,
    max_gap_s: f64,
    p99_gap_s: f64,
}

fn decision_gaps(log: &str, start: Timestamp, end: Timestamp, taskqueues: usize) -> DecisionGaps {
    let mut times: std::collections::HashMap<String, Vec<Timestamp>> = Default::default();
    for line in log.lines().filter(|l| l.contains(" decided ")) {
        let mut fields = line.split_whitespace();
        let Some(at) = fields.next().and_then(|t| t.parse::<Timestamp>().ok()) else {
            continue;
        };
        let Some(name) = fields.find_map(|field| field.strip_prefix("name=")) else {
            continue;
        };
        times.entry(name.to_owned()).or_default().push(at);
    }
    let mut gaps = Vec::new();
    let mut decided = 0;
    let mut fewest = usize::MAX;
    for at in times.values_mut() {
        at.sort();
        let inside = at.iter().filter(|t| **t >= start && **t <= end).count();
        decided += usize::from(inside > 0);
        fewest = fewest.min(inside);
        // Gaps between consecutive decisions that end inside the window.
        for pair in at.windows(2).filter(|p| p[1] >= start && p[1] <= end) {
            gaps.push(pair[1].duration_since(pair[0]).as_secs_f64());
        }
    }
    if times.len() < taskqueues {
        fewest = 0;
    }
    gaps.sort_by(f64::total_cmp);
    DecisionGaps {
        decided,
        fewest,
        max_gap_s: gaps.last().copied().unwrap_or(f64::INFINITY),
        p99_gap_s: if gaps.is_empty() {
            f64::INFINITY
        } else {
            percentile(&gaps, 0.99)
        },
    }
}
