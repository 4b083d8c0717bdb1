//! Churn: TaskQueues created and deleted in rounds against the local control plane
//! and the real RabbitMQ. After each round's deletions the operator must hold no
//! entry for them (histories, status-write times, metric series, poller watches,
//! samples, broker loops: `warren_operator_tracked_entries`), and its resident
//! memory must not grow from round to round.
//!
//! `make test` runs 300 TaskQueues x 3 rounds; `WARREN_CHURN_QUEUES` and
//! `WARREN_CHURN_ROUNDS` set the size (`make soak`: 1,000 x 5).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use support::*;
use warren_operator::TaskQueue;

const KINDS: [&str; 7] = [
    "histories",
    "status_writes",
    "queue_series",
    "secrets",
    "poller_watches",
    "poller_samples",
    "broker_loops",
];

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tracked(metrics: &str, kind: &str) -> f64 {
    series(
        metrics,
        &format!("warren_operator_tracked_entries{{kind=\"{kind}\"}}"),
    )
}

/// Per-queue series the operator still exports.
fn queue_series_exported(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|l| l.starts_with("warren_operator_queue_backlog{"))
        .count()
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn churned_taskqueues_leave_nothing_behind() {
    let count = setting("WARREN_CHURN_QUEUES", 300);
    let rounds = setting("WARREN_CHURN_ROUNDS", 3);
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-churn").await;
    let vhost = unique("warren-churn");
    create_vhost(&vhost).await;
    let queues: Vec<String> = (0..count).map(|i| format!("churn_{i:04}")).collect();
    declare_queues(&vhost, &queues).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    for i in 0..count {
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": format!("w-{i:04}")},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": format!("w-{i:04}")}},
                     "template": {"metadata": {"labels": {"app": format!("w-{i:04}")}},
                                  "spec": {"containers": [{"name": "w", "image": "warren-worker:churn"}]}}}
        }))
        .expect("deployment");
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("deployment");
    }
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    eventually(
        Duration::from_secs(30),
        "the operator serves metrics",
        || async {
            reqwest::get(format!("http://{}/metrics", operator.metrics_addr))
                .await
                .is_ok()
        },
    )
    .await;
    let rss_at_start = memory_kib(operator.pid(), "VmRSS").expect("RSS");
    let tqs: Api<TaskQueue> = Api::namespaced(client.clone(), &ns.name);
    let mut rss_after = Vec::new();
    for round in 1..=rounds {
        let started = Instant::now();
        for (i, queue) in queues.iter().enumerate() {
            let body = json!({"metadata": {"name": format!("tq-{i:04}")}, "spec": {
                "queue": queue, "vhost": vhost, "scaleTargetRef": {"name": format!("w-{i:04}")},
                "minReplicas": 0, "maxReplicas": 5, "pollInterval": "2s"}});
            apply_taskqueue(&client, &ns.name, body)
                .await
                .expect("valid");
        }
        eventually(
            Duration::from_secs(120),
            "every TaskQueue polled and decided",
            || async {
                let metrics = operator.metrics().await;
                tracked(&metrics, "histories") as usize == count
                    && queue_series_exported(&metrics) == count
            },
        )
        .await;
        let peak = operator.metrics().await;
        assert_eq!(tracked(&peak, "poller_watches") as usize, count);
        assert_eq!(tracked(&peak, "poller_samples") as usize, count);
        assert_eq!(tracked(&peak, "broker_loops"), 1.0, "one loop per broker");
        tqs.delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .expect("delete TaskQueues");
        // The janitor runs every 10 s.
        eventually(
            Duration::from_secs(40),
            "nothing left of the deleted TaskQueues",
            || async {
                let metrics = operator.metrics().await;
                KINDS.iter().all(|kind| tracked(&metrics, kind) == 0.0)
                    && queue_series_exported(&metrics) == 0
            },
        )
        .await;
        let rss = memory_kib(operator.pid(), "VmRSS").expect("RSS");
        println!(
            "round {round}: {count} TaskQueues created, decided and forgotten in {:.1} s; RSS {:.1} MiB (start {:.1} MiB)",
            started.elapsed().as_secs_f64(),
            rss as f64 / 1024.0,
            rss_at_start as f64 / 1024.0
        );
        rss_after.push(rss);
    }
    // The first round grows the allocator's arenas and caches to their working
    // size; later rounds must not grow them further.
    let first = rss_after[0] as f64;
    for (i, rss) in rss_after.iter().enumerate().skip(1) {
        let growth = *rss as f64 / first - 1.0;
        assert!(
            growth <= 0.10,
            "RSS after round {} is {:.1} MiB, {:.0} % above round 1's {:.1} MiB",
            i + 1,
            *rss as f64 / 1024.0,
            growth * 100.0,
            first / 1024.0
        );
    }
    delete_vhost(&vhost).await;
}
