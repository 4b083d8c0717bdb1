//! Leader election against the local control plane and the real RabbitMQ: one of
//! two operators leads and the standby stays idle; the leader SIGKILLed (at rest,
//! and mid-ramp while a burst is being scaled up step by step) hands over within
//! the lease, and the new leader takes the replicas to where the backlog says,
//! never past it.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

/// An operator taking part in the election of `namespace` as `identity`.
fn candidate(namespace: &str, identity: &str) -> OperatorProcess {
    candidate_with_lease(namespace, identity, "4s")
}

fn candidate_with_lease(namespace: &str, identity: &str, lease: &str) -> OperatorProcess {
    OperatorProcess::spawn(
        namespace,
        &[
            "--leader-election",
            "--lease-namespace",
            namespace,
            "--lease-duration",
            lease,
            "--identity",
            identity,
        ],
        &[],
    )
}

async fn wait_leader(client: &kube::Client, namespace: &str, identity: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{identity} holds the lease"),
        || async {
            lease_holder(client, namespace, "warren-operator")
                .await
                .as_deref()
                == Some(identity)
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn two_operators_elect_one_leader_and_fail_over() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-leader").await;
    let queue = unique("leader_q");
    create_deployment(&client, &ns.name, "worker-l", 1).await;
    fill_queue(&queue, 50).await;
    let mut first = candidate(&ns.name, "op-1");
    wait_leader(&client, &ns.name, "op-1").await;
    let second = candidate(&ns.name, "op-2");
    apply_taskqueue(
        &client,
        &ns.name,
        taskqueue_body("queue-l", &queue, "worker-l", json!({})),
    )
    .await
    .expect("valid");
    eventually(Duration::from_secs(30), "scaled to 5", || async {
        spec_replicas(&client, &ns.name, "worker-l").await == 5
    })
    .await;

    assert_eq!(
        lease_holder(&client, &ns.name, "warren-operator")
            .await
            .as_deref(),
        Some("op-1")
    );
    assert!(first.reconciles().await > 0);
    assert_eq!(
        second.reconciles().await,
        0,
        "the standby must not reconcile"
    );

    first.kill();
    let killed = Instant::now();
    fill_queue(&queue, 100).await;
    wait_leader(&client, &ns.name, "op-2").await;
    assert!(
        killed.elapsed() <= Duration::from_secs(4 + 4),
        "takeover took {:?}",
        killed.elapsed()
    );
    eventually(
        Duration::from_secs(20),
        "the new leader scales to 15",
        || async { spec_replicas(&client, &ns.name, "worker-l").await == 15 },
    )
    .await;
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn the_leader_killed_mid_ramp_hands_over_and_the_ramp_ends_on_target() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-ramp").await;
    let queue = unique("ramp_q");
    create_deployment(&client, &ns.name, "worker-r", 1).await;
    fill_queue(&queue, 0).await;
    let mut first = candidate(&ns.name, "op-1");
    wait_leader(&client, &ns.name, "op-1").await;
    let second = candidate(&ns.name, "op-2");
    // Two replicas a decision: a burst of 200 is a ramp of ten steps, so the kill
    // lands between steps.
    apply_taskqueue(
        &client,
        &ns.name,
        taskqueue_body(
            "queue-r",
            &queue,
            "worker-r",
            json!({"scaleUp": {"maxStep": 2}}),
        ),
    )
    .await
    .expect("valid");
    fill_queue(&queue, 200).await;
    let mut highest = 0;
    eventually(
        Duration::from_secs(30),
        "the ramp under way (5 or more)",
        || async { spec_replicas(&client, &ns.name, "worker-r").await >= 5 },
    )
    .await;
    first.kill();
    let killed = Instant::now();
    let at_kill = spec_replicas(&client, &ns.name, "worker-r").await;
    wait_leader(&client, &ns.name, "op-2").await;
    let took_over_in = killed.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let replicas = spec_replicas(&client, &ns.name, "worker-r").await;
        highest = highest.max(replicas);
        if replicas == 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the ramp stopped at {replicas}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "killed at {at_kill} replicas; op-2 led {:.1} s later; at 20 (the backlog's 200/10) {:.1} s after the kill",
        took_over_in.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    assert!(
        took_over_in <= Duration::from_secs(4 + 4),
        "takeover took {took_over_in:?}"
    );
    assert!(
        at_kill < 20,
        "killed after the ramp ended ({at_kill}): not mid-ramp"
    );
    // The new leader goes on from the count it reads, not from op-1's history:
    // it never overshoots the backlog's target.
    second.wait_reconciles(5, Duration::from_secs(30)).await;
    highest = highest.max(spec_replicas(&client, &ns.name, "worker-r").await);
    assert_eq!(highest, 20, "replicas went past the backlog's 20");
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn a_leader_shut_down_gracefully_hands_over_before_its_lease_runs_out() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-release").await;
    // A long lease: the standby retries every 10 s and, without a release, could
    // take over only after 30 s.
    let mut first = candidate_with_lease(&ns.name, "op-1", "30s");
    wait_leader(&client, &ns.name, "op-1").await;
    let second = candidate_with_lease(&ns.name, "op-2", "30s");
    // The standby is up and has seen the lease held before the leader goes.
    second.wait_ready(Duration::from_secs(30)).await;
    first.terminate();
    let stopped = Instant::now();
    eventually(
        Duration::from_secs(25),
        "op-2 holds the released lease",
        || async {
            lease_holder(&client, &ns.name, "warren-operator")
                .await
                .as_deref()
                == Some("op-2")
        },
    )
    .await;
    println!(
        "op-2 led {:.1} s after op-1 stopped (lease 30 s)",
        stopped.elapsed().as_secs_f64()
    );
    assert!(
        first.log_text().contains("released the lease"),
        "{}",
        first.log_text()
    );
}
