//! Management API faults seen through a running operator on the local cluster: the
//! operator reads the real RabbitMQ through a proxy the test switches
//! (`support/fault_proxy.rs`). For each fault the TaskQueue must report
//! `BrokerReachable=False` with the fault's reason, the workload must keep its
//! replicas although the real queue was emptied meanwhile (a reader that took a
//! bad answer for "empty" would scale it down at once: the window is 0 s), and the
//! first good answer must bring the TaskQueue back. The operator's peak memory is
//! reported after the huge answers.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::fault_proxy::{Fault, FaultProxy};
use support::*;

const POLL_TIMEOUT: &str = "2s";

async fn reachable(client: &kube::Client, namespace: &str) -> Option<(String, String)> {
    let queue = taskqueue(client, namespace, "faulty").await;
    condition(&queue, "BrokerReachable").map(|(status, reason, _)| (status, reason))
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn broker_faults_hold_replicas_report_the_reason_and_recover() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-faults").await;
    let queue = unique("faults_q");
    create_deployment(&client, &ns.name, "worker", 1).await;
    fill_queue(&queue, 30).await;
    let proxy = FaultProxy::start().await;
    let operator = OperatorProcess::spawn(
        &ns.name,
        &["--poll-timeout", POLL_TIMEOUT],
        &[("WARREN_MANAGEMENT_URL", proxy.url.as_str())],
    );
    apply_taskqueue(
        &client,
        &ns.name,
        json!({"metadata": {"name": "faulty"}, "spec": {
            "queue": queue, "scaleTargetRef": {"name": "worker"},
            "minReplicas": 1, "maxReplicas": 10, "targetBacklogPerReplica": 10,
            "pollInterval": "1s",
            "scaleDown": {"stabilizationWindow": "0s", "policy": "Any"}
        }}),
    )
    .await
    .expect("valid TaskQueue");
    eventually(Duration::from_secs(30), "worker at 3", || async {
        spec_replicas(&client, &ns.name, "worker").await == 3
    })
    .await;

    let cases = [
        (Fault::Delay(Duration::from_secs(3)), "Timeout"),
        (Fault::NeverEnds, "Timeout"),
        (Fault::ServerError, "ServerError"),
        (Fault::Truncated, "MalformedResponse"),
        (Fault::Malformed, "MalformedResponse"),
        (Fault::Reset, "Unreachable"),
        (Fault::HugeDeclared, "ResponseTooLarge"),
        (Fault::Huge, "ResponseTooLarge"),
    ];
    for (fault, reason) in cases {
        let shown = format!("{fault:?}");
        proxy.set(fault);
        eventually(
            Duration::from_secs(20),
            &format!("{shown}: BrokerReachable False, {reason}"),
            || async {
                reachable(&client, &ns.name).await == Some(("False".into(), reason.into()))
            },
        )
        .await;
        // Emptied only now: polls are made one after another, so every reading
        // from here on goes through the fault.
        purge_queue(&queue).await;
        operator.wait_reconciles(3, Duration::from_secs(30)).await;
        assert_eq!(
            spec_replicas(&client, &ns.name, "worker").await,
            3,
            "{shown}: replicas moved while the broker could not be read"
        );
        fill_queue(&queue, 30).await;
        proxy.set(Fault::PassThrough);
        let restored = Instant::now();
        eventually(
            Duration::from_secs(20),
            &format!("{shown}: BrokerReachable again"),
            || async {
                reachable(&client, &ns.name)
                    .await
                    .is_some_and(|(status, _)| status == "True")
            },
        )
        .await;
        println!(
            "{shown}: {reason}, replicas held at 3; reachable again {:.1} s after the proxy passed through",
            restored.elapsed().as_secs_f64()
        );
        // Two polls, and the timeout of a poll that was under way.
        assert!(
            restored.elapsed() <= Duration::from_secs(2 + 2 + 1),
            "{shown}: recovery took {:?}",
            restored.elapsed()
        );
    }
    let peak = memory_kib(operator.pid(), "VmHWM").expect("VmHWM") as f64 / 1024.0;
    println!("operator peak RSS after every fault: {peak:.1} MiB");
    // One answer is read up to 32 MiB, and one read is made at a time.
    assert!(peak < 32.0 + 64.0, "operator peak RSS {peak:.1} MiB");
    assert_eq!(spec_replicas(&client, &ns.name, "worker").await, 3);
    delete_queue(&queue).await;
}
