//! `spec.scaleDown.policy: IdleFirst` against the local control plane (kwok pods,
//! the real ReplicaSet controller) and the real RabbitMQ: busy pods survive a
//! scale-down and the idle ones go; consumers that match no pod (Celery from this
//! host) and a consumers listing that fails both fall back to a plain scale-down
//! that says why, without stopping the operator.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::consumers::{CeleryWorker, Workers, seen_consumers};
use support::fault_proxy::{Fault, FaultProxy};
use support::*;

const COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn taskqueue_body(queue: &str, target: &str) -> Value {
    json!({"metadata": {"name": "tq"}, "spec": {
        "queue": queue,
        "scaleTargetRef": {"name": target},
        "minReplicas": 1,
        "maxReplicas": 4,
        "targetBacklogPerReplica": 10,
        "pollInterval": "1s",
        "scaleDown": {"stabilizationWindow": "1s", "policy": "IdleFirst"}
    }})
}

/// The target's pods that are not terminating, by name.
async fn live_pods(client: &kube::Client, namespace: &str, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut pods: Vec<Pod> = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

async fn live_pod_names(client: &kube::Client, namespace: &str, app: &str) -> Vec<String> {
    live_pods(client, namespace, app)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

fn cost_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(COST)
        .map(String::as_str)
}

/// Notes of the namespace's Events with `reason`.
async fn notes(client: &kube::Client, namespace: &str, reason: &str) -> Vec<String> {
    events(client, namespace)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

const VICTIMS_IDLE: &str = "warren_operator_scale_down_victims_total{busy=\"false\"}";
const VICTIMS_BUSY: &str = "warren_operator_scale_down_victims_total{busy=\"true\"}";
const MATCHED: &str = "warren_operator_scale_down_pods_total{matched=\"true\"}";
const UNMATCHED: &str = "warren_operator_scale_down_pods_total{matched=\"false\"}";

/// Creates `name` with `replicas` kwok pods and waits until they all run.
async fn running_deployment(client: &kube::Client, namespace: &str, name: &str, replicas: i32) {
    create_deployment(client, namespace, name, replicas).await;
    eventually(
        Duration::from_secs(60),
        &format!("{replicas} Running pods"),
        || async { running_pods(client, namespace, name).await == replicas as usize },
    )
    .await;
}

async fn last_decision(client: &kube::Client, namespace: &str) -> String {
    taskqueue(client, namespace, "tq")
        .await
        .status
        .and_then(|s| s.last_decision)
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn idle_pods_go_first_and_busy_pods_stay() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-idle").await;
    let queue = unique("idle_q");
    running_deployment(&client, &ns.name, "worker-i", 4).await;
    let pods = live_pod_names(&client, &ns.name, "worker-i").await;
    let (busy, idle) = pods.split_at(2);
    fill_queue(&queue, 0).await;

    // Two workers first and two messages: with prefetch 1 each takes one, so
    // which pods are busy is known. The other two start once the queue is empty.
    let mut workers = Workers::connect().await;
    for pod in busy {
        workers.start(&queue, pod).await;
    }
    fill_queue(&queue, 2).await;
    for pod in busy {
        workers.take_one(pod, Duration::from_secs(10)).await;
    }
    for pod in idle {
        workers.start(&queue, pod).await;
    }
    // The operator sees who holds what through the statistics database, up to
    // 5 s behind. Until it catches up, the planner knows how many deliveries are
    // held (the queue's fresh count) but not by whom, and every pod carries cost
    // 0: the ReplicaSet controller may then remove a busy pod. Wait, so that the
    // test is about choosing by owner.
    let expected: Vec<(String, i64)> = pods
        .iter()
        .map(|p| (p.clone(), i64::from(busy.contains(p))))
        .collect();
    eventually(
        Duration::from_secs(30),
        "the statistics show 2 busy and 2 idle workers",
        || async {
            let mut seen: Vec<(String, i64)> = seen_consumers(&queue)
                .await
                .into_iter()
                .map(|c| (c.tag, c.unacked))
                .collect();
            seen.sort();
            seen == expected
        },
    )
    .await;

    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    apply_taskqueue(&client, &ns.name, taskqueue_body(&queue, "worker-i"))
        .await
        .expect("valid TaskQueue");
    // The backlog (2 unacked, target 10) asks for minReplicas 1, the decision
    // keeps one replica per consumer holding a delivery, and IdleFirst chooses
    // which pods those are: the two that hold the deliveries.
    eventually(Duration::from_secs(30), "worker-i at 2", || async {
        spec_replicas(&client, &ns.name, "worker-i").await == 2
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "only the busy pods left",
        || async { live_pod_names(&client, &ns.name, "worker-i").await == busy },
    )
    .await;
    for pod in live_pods(&client, &ns.name, "worker-i").await {
        assert_eq!(cost_of(&pod), Some("1"), "{:?}", pod.metadata.name);
    }
    let scaled = notes(&client, &ns.name, "Scaled").await;
    assert!(
        scaled
            .iter()
            .any(|n| n.starts_with("4 -> 2: ")
                && n.contains("2 idle worker(s) removed, 2 busy kept")),
        "{scaled:?}"
    );
    // The victims are counted as the pod watch sees them deleted.
    eventually(
        Duration::from_secs(10),
        "2 idle victims counted",
        || async { series(&operator.metrics().await, VICTIMS_IDLE) == 2.0 },
    )
    .await;
    let metrics = operator.metrics().await;
    assert_eq!(series(&metrics, VICTIMS_BUSY), 0.0, "{metrics}");
    assert!(series(&metrics, MATCHED) >= 4.0, "{metrics}");
    assert_eq!(series(&metrics, UNMATCHED), 0.0, "{metrics}");
    assert!(
        counter(&metrics, "warren_operator_occupancy_read_seconds_count") >= 1.0,
        "{metrics}"
    );
    // The backlog asks for 1, but two consumers hold deliveries: held at 2.
    eventually(
        Duration::from_secs(20),
        "a hold for the busy pods",
        || async {
            last_decision(&client, &ns.name)
                .await
                .starts_with("hold 2: ")
        },
    )
    .await;
    operator.wait_reconciles(3, Duration::from_secs(20)).await;
    assert_eq!(spec_replicas(&client, &ns.name, "worker-i").await, 2);

    // The removed pods' workers went with them; the busy ones finish their task.
    for pod in idle {
        workers.stop(pod).await;
    }
    workers.finish().await;
    eventually(Duration::from_secs(30), "worker-i at 1", || async {
        spec_replicas(&client, &ns.name, "worker-i").await == 1
    })
    .await;
    eventually(Duration::from_secs(30), "one busy pod left", || async {
        let left = live_pod_names(&client, &ns.name, "worker-i").await;
        left.len() == 1 && busy.contains(&left[0])
    })
    .await;
    let scaled = notes(&client, &ns.name, "Scaled").await;
    assert!(
        scaled
            .iter()
            .any(|n| n.contains("1 idle worker(s) removed, 0 busy kept")),
        "{scaled:?}"
    );
    eventually(
        Duration::from_secs(10),
        "3 idle victims counted",
        || async { series(&operator.metrics().await, VICTIMS_IDLE) == 3.0 },
    )
    .await;
    let metrics = operator.metrics().await;
    assert_eq!(series(&metrics, VICTIMS_BUSY), 0.0, "{metrics}");
    let warnings = notes(&client, &ns.name, "IdleFirstUnavailable").await;
    assert!(warnings.is_empty(), "{warnings:?}");
    workers.close().await;
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn celery_workers_behind_a_proxy_fall_back_and_say_why() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-celery").await;
    let queue = unique("celery_q");
    // Celery declares its queue itself; the operator reads it once it consumes.
    let _celery = CeleryWorker::spawn(&queue).await;
    eventually(Duration::from_secs(60), "Celery consuming", || async {
        !seen_consumers(&queue).await.is_empty()
    })
    .await;
    // The premise: an unnamed connection from this host, as a worker behind a
    // proxy or NAT looks. Neither its tag nor its address is a pod's.
    let seen = seen_consumers(&queue).await;
    assert!(
        seen.iter()
            .all(|c| c.tag.starts_with("None") && c.peer_host.as_deref() == Some("127.0.0.1")),
        "{seen:?}"
    );
    running_deployment(&client, &ns.name, "worker-c", 3).await;

    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    apply_taskqueue(&client, &ns.name, taskqueue_body(&queue, "worker-c"))
        .await
        .expect("valid TaskQueue");
    // Not knowing who is busy does not hold the scale-down.
    eventually(Duration::from_secs(30), "worker-c at 1", || async {
        spec_replicas(&client, &ns.name, "worker-c").await == 1
    })
    .await;
    let scaled = notes(&client, &ns.name, "Scaled").await;
    assert!(
        scaled.iter().any(|n| n.contains(
            "idle pods not chosen: 1 consumer(s) of the queue match no pod of the target \
             by consumer tag or IP (peers 127.0.0.1) while 3 pod(s) have no consumer"
        )),
        "{scaled:?}"
    );
    let warnings = notes(&client, &ns.name, "IdleFirstUnavailable").await;
    assert!(
        warnings
            .iter()
            .any(|n| n.starts_with("scaling down without choosing idle pods")
                && n.contains("peers 127.0.0.1")),
        "{warnings:?}"
    );
    let metrics = operator.metrics().await;
    assert!(series(&metrics, UNMATCHED) >= 3.0, "{metrics}");
    assert_eq!(series(&metrics, MATCHED), 0.0, "{metrics}");
    // Victims are counted only for scale-downs that chose them.
    assert_eq!(series(&metrics, VICTIMS_IDLE), 0.0, "{metrics}");
    assert_eq!(series(&metrics, VICTIMS_BUSY), 0.0, "{metrics}");
    assert!(
        series(
            &metrics,
            "warren_operator_errors_total{reason=\"IdleFirstUnavailable\"}"
        ) >= 1.0,
        "{metrics}"
    );
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn unreadable_consumers_fall_back_without_a_crash() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-noread").await;
    let queue = unique("noread_q");
    fill_queue(&queue, 0).await;
    running_deployment(&client, &ns.name, "worker-n", 3).await;
    // The queue reads through the proxy; only the consumers listing fails.
    let proxy = FaultProxy::start().await;
    proxy.set_on("/api/consumers/", Fault::ServerError);
    let operator = OperatorProcess::spawn(
        &ns.name,
        &[],
        &[("WARREN_MANAGEMENT_URL", proxy.url.as_str())],
    );
    apply_taskqueue(&client, &ns.name, taskqueue_body(&queue, "worker-n"))
        .await
        .expect("valid TaskQueue");
    eventually(Duration::from_secs(30), "worker-n at 1", || async {
        spec_replicas(&client, &ns.name, "worker-n").await == 1
    })
    .await;
    assert!(proxy.faulted() >= 1, "the consumers listing was never read");
    let answered = format!("the management API at {} answered 500", proxy.url);
    let warnings = notes(&client, &ns.name, "IdleFirstUnavailable").await;
    assert!(
        warnings.iter().any(|n| n.contains(&answered)),
        "{warnings:?}"
    );
    let scaled = notes(&client, &ns.name, "Scaled").await;
    assert!(
        scaled
            .iter()
            .any(|n| n.contains("idle pods not chosen: cannot read the queue's consumers")),
        "{scaled:?}"
    );
    // Still alive and deciding after the failed reads.
    operator.wait_reconciles(3, Duration::from_secs(20)).await;
    assert!(
        !operator.log_text().contains("panicked"),
        "{}",
        operator.log_text()
    );
    let metrics = operator.metrics().await;
    assert!(
        series(
            &metrics,
            "warren_operator_errors_total{reason=\"ServerError\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        counter(&metrics, "warren_operator_occupancy_read_seconds_count") >= 1.0,
        "{metrics}"
    );
    assert_eq!(series(&metrics, VICTIMS_IDLE), 0.0, "{metrics}");
    delete_queue(&queue).await;
}
