//! The operator against the local control plane (kube-apiserver, controllers,
//! kwok nodes) and the real RabbitMQ: scaling up and down, scale to zero, broker
//! trouble, pausing and schema validation. Leader election: `failover.rs`.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn scales_up_on_backlog_and_back_down_after_the_window() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-scale").await;
    let queue = unique("scale_q");
    create_deployment(&client, &ns.name, "worker-a", 1).await;
    fill_queue(&queue, 200).await;
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    apply_taskqueue(
        &client,
        &ns.name,
        taskqueue_body("queue-a", &queue, "worker-a", json!({})),
    )
    .await
    .expect("valid TaskQueue");

    eventually(
        Duration::from_secs(60),
        "worker-a at 20 replicas",
        || async { spec_replicas(&client, &ns.name, "worker-a").await == 20 },
    )
    .await;
    eventually(Duration::from_secs(90), "20 Running pods", || async {
        running_pods(&client, &ns.name, "worker-a").await == 20
    })
    .await;
    let tq = taskqueue(&client, &ns.name, "queue-a").await;
    let status = tq.status.clone().expect("status");
    assert_eq!(
        (status.backlog, status.desired_replicas),
        (Some(200), Some(20)),
        "{status:?}"
    );
    assert_eq!(
        condition(&tq, "ScalingLimited").map(|c| c.0),
        Some("False".into()),
        "200/10 = 20 fits max 20"
    );
    let events = events(&client, &ns.name).await;
    let scaled = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("Scaled"))
        .expect("a Scaled event");
    let note = scaled.message.clone().unwrap_or_default();
    assert!(
        note.contains("1 -> 20: backlog 200 over target 10/replica"),
        "{note}"
    );

    purge_queue(&queue).await;
    let purged = Instant::now();
    // The stabilization window (8 s) holds the replicas...
    eventually(Duration::from_secs(10), "status sees the purge", || async {
        taskqueue(&client, &ns.name, "queue-a")
            .await
            .status
            .and_then(|s| s.backlog)
            == Some(0)
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "a decision held inside the window",
        || async {
            taskqueue(&client, &ns.name, "queue-a")
                .await
                .status
                .and_then(|s| s.last_decision)
                .is_some_and(|d| d.contains("stabilizing"))
        },
    )
    .await;
    assert_eq!(
        spec_replicas(&client, &ns.name, "worker-a").await,
        20,
        "scaled down inside the window"
    );
    // ...then it goes back to minReplicas.
    eventually(Duration::from_secs(20), "back to minReplicas 1", || async {
        spec_replicas(&client, &ns.name, "worker-a").await == 1
    })
    .await;
    // The window runs from the last reading that saw the backlog, taken at most
    // one poll interval (1 s) before the purge.
    assert!(
        purged.elapsed() >= Duration::from_secs(7),
        "down after {:?}, before the window",
        purged.elapsed()
    );
    // Replica counts came from the Deployment watch cache, not from GETs of /scale.
    // The GETs happen before the cache's first listing; give the steady state as
    // many reconciliations as the old fixed 6 s wait did before comparing.
    operator.wait_reconciles(10, Duration::from_secs(30)).await;
    let metrics = operator.metrics().await;
    let reads = |source: &str| {
        let prefix = format!("warren_operator_target_reads_total{{source=\"{source}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        reads("cache") > 10 * reads("api"),
        "cache {} vs api {}",
        reads("cache"),
        reads("api")
    );
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn scales_to_zero_when_idle_and_wakes_on_one_message() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-zero").await;
    let queue = unique("zero_q");
    create_deployment(&client, &ns.name, "worker-z", 1).await;
    fill_queue(&queue, 0).await;
    let _operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    let started = Instant::now();
    let body = taskqueue_body(
        "queue-z",
        &queue,
        "worker-z",
        json!({"minReplicas": 0, "scaleDown": {"stabilizationWindow": "0s", "scaleToZeroDelay": "4s"}}),
    );
    apply_taskqueue(&client, &ns.name, body)
        .await
        .expect("valid");
    eventually(Duration::from_secs(30), "scaled to zero", || async {
        spec_replicas(&client, &ns.name, "worker-z").await == 0
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "to zero after {:?}, before scaleToZeroDelay",
        started.elapsed()
    );
    eventually(Duration::from_secs(30), "pods gone", || async {
        running_pods(&client, &ns.name, "worker-z").await == 0
    })
    .await;

    fill_queue(&queue, 1).await;
    eventually(Duration::from_secs(20), "woken to 1", || async {
        spec_replicas(&client, &ns.name, "worker-z").await == 1
    })
    .await;
    let notes: Vec<String> = events(&client, &ns.name)
        .await
        .into_iter()
        .filter_map(|e| e.message)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("1 -> 0: queue idle for")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.contains("0 -> 1: backlog 1 reached activation 1")),
        "{notes:?}"
    );
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn broker_trouble_holds_replicas_and_never_leaks_the_password() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-broker").await;
    let queue = unique("broker_q");
    let wrong = "s3cr3t-Wr0ng-passw0rd";
    create_deployment(&client, &ns.name, "worker-b", 3).await;
    create_deployment(&client, &ns.name, "worker-c", 2).await;
    fill_queue(&queue, 0).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret = |password: &str| -> Secret {
        serde_json::from_value(json!({"metadata": {"name": "rabbit-creds", "labels": {"warren.dev/broker-credentials": "true"}}, "stringData": {"username": "guest", "password": password}})).expect("secret")
    };
    secrets
        .create(&PostParams::default(), &secret(wrong))
        .await
        .expect("secret");
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    let creds = json!({"broker": {"credentialsSecretRef": {"name": "rabbit-creds"}}, "minReplicas": 0, "scaleDown": {"stabilizationWindow": "0s", "scaleToZeroDelay": "0s"}});
    apply_taskqueue(
        &client,
        &ns.name,
        taskqueue_body("queue-b", &queue, "worker-b", creds),
    )
    .await
    .expect("valid");
    let down = json!({"broker": {"managementUrl": "http://127.0.0.1:9", "credentialsSecretRef": {"name": "rabbit-creds"}}, "minReplicas": 0, "scaleDown": {"stabilizationWindow": "0s", "scaleToZeroDelay": "0s"}});
    apply_taskqueue(
        &client,
        &ns.name,
        taskqueue_body("queue-c", &queue, "worker-c", down),
    )
    .await
    .expect("valid");

    eventually(
        Duration::from_secs(30),
        "BrokerReachable=False on both",
        || async {
            let b = condition(
                &taskqueue(&client, &ns.name, "queue-b").await,
                "BrokerReachable",
            );
            let c = condition(
                &taskqueue(&client, &ns.name, "queue-c").await,
                "BrokerReachable",
            );
            b.is_some_and(|b| b.0 == "False") && c.is_some_and(|c| c.0 == "False")
        },
    )
    .await;
    let (_, reason, message) = condition(
        &taskqueue(&client, &ns.name, "queue-b").await,
        "BrokerReachable",
    )
    .expect("condition");
    assert_eq!(reason, "Unauthorized");
    assert!(message.contains("rejected the credentials"), "{message}");
    let (_, reason, message) = condition(
        &taskqueue(&client, &ns.name, "queue-c").await,
        "BrokerReachable",
    )
    .expect("condition");
    assert_eq!(reason, "Unreachable");
    assert!(
        message.contains("cannot reach the management API at http://127.0.0.1:9"),
        "{message}"
    );
    // Empty queue, minReplicas 0, no delays: with a reading this would go to 0.
    // Held, however often the operator looks again.
    operator.wait_reconciles(6, Duration::from_secs(30)).await;
    assert_eq!(spec_replicas(&client, &ns.name, "worker-b").await, 3);
    assert_eq!(spec_replicas(&client, &ns.name, "worker-c").await, 2);
    let warnings: Vec<_> = events(&client, &ns.name)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|e| e.reason.as_deref() == Some("Unauthorized")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|e| e.reason.as_deref() == Some("Unreachable")),
        "{warnings:?}"
    );

    // Fixed credentials: recovery, and scaling resumes.
    secrets
        .replace("rabbit-creds", &PostParams::default(), &secret("guest"))
        .await
        .expect("fix secret");
    eventually(Duration::from_secs(30), "BrokerReachable=True", || async {
        condition(
            &taskqueue(&client, &ns.name, "queue-b").await,
            "BrokerReachable",
        )
        .is_some_and(|c| c.0 == "True")
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "scaling resumed (to 0)",
        || async { spec_replicas(&client, &ns.name, "worker-b").await == 0 },
    )
    .await;

    let everything = format!(
        "{}\n{:?}\n{}",
        operator.log_text(),
        events(&client, &ns.name).await,
        serde_json::to_string(&taskqueue(&client, &ns.name, "queue-b").await.status).expect("json")
    );
    assert!(
        !everything.contains(wrong),
        "the password leaked into a log, Event or status"
    );
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn paused_annotation_holds_replicas() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-pause").await;
    let queue = unique("pause_q");
    create_deployment(&client, &ns.name, "worker-p", 2).await;
    fill_queue(&queue, 200).await;
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    let mut body = taskqueue_body("queue-p", &queue, "worker-p", json!({}));
    body["metadata"]["annotations"] = json!({"warren.dev/paused": "true"});
    apply_taskqueue(&client, &ns.name, body)
        .await
        .expect("valid");
    eventually(
        Duration::from_secs(20),
        "ScalingActive=False Paused",
        || async {
            condition(
                &taskqueue(&client, &ns.name, "queue-p").await,
                "ScalingActive",
            )
            .is_some_and(|c| c.1 == "Paused")
        },
    )
    .await;
    operator.wait_reconciles(3, Duration::from_secs(30)).await;
    assert_eq!(
        spec_replicas(&client, &ns.name, "worker-p").await,
        2,
        "paused must hold"
    );

    let api: Api<warren_operator::TaskQueue> = Api::namespaced(client.clone(), &ns.name);
    api.patch(
        "queue-p",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"warren.dev/paused": null}}})),
    )
    .await
    .expect("unpause");
    eventually(Duration::from_secs(20), "scales once unpaused", || async {
        spec_replicas(&client, &ns.name, "worker-p").await == 20
    })
    .await;
    delete_queue(&queue).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn invalid_taskqueues_are_rejected_naming_the_field() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-invalid").await;
    let long = "q".repeat(256);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"minReplicas": 5, "maxReplicas": 2}),
            "spec.minReplicas must be less than or equal to spec.maxReplicas",
        ),
        (json!({"maxReplicas": 0}), "spec.maxReplicas"),
        (json!({"minReplicas": -1}), "spec.minReplicas"),
        (
            json!({"targetBacklogPerReplica": 0}),
            "spec.targetBacklogPerReplica",
        ),
        (json!({"activationBacklog": 0}), "spec.activationBacklog"),
        (json!({"queue": ""}), "spec.queue"),
        (json!({"queue": long}), "spec.queue"),
        (json!({"pollInterval": "5 seconds"}), "spec.pollInterval"),
        (
            json!({"pollInterval": "100ms"}),
            "spec.pollInterval must be between 1s and 1h",
        ),
        (
            json!({"scaleDown": {"stabilizationWindow": "soon"}}),
            "spec.scaleDown.stabilizationWindow",
        ),
        (
            json!({"broker": {"managementUrl": "ftp://rabbit:15672"}}),
            "spec.broker.managementUrl",
        ),
        (
            json!({"broker": {"managementUrl": "http://guest:guest@rabbit:15672"}}),
            "spec.broker.managementUrl",
        ),
        (
            json!({"fallbackReplicas": 50}),
            "spec.fallbackReplicas must lie within",
        ),
        (
            json!({"scaleTargetRef": {"name": ""}}),
            "spec.scaleTargetRef.name",
        ),
        (json!({"scaleUp": {"maxStep": -1}}), "spec.scaleUp.maxStep"),
    ];
    for (i, (extra, field)) in cases.into_iter().enumerate() {
        let body = taskqueue_body(&format!("bad-{i}"), "queue_a", "worker", extra.clone());
        match apply_taskqueue(&client, &ns.name, body).await {
            Ok(_) => panic!("case {i} ({extra}) was accepted"),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "case {i}: {status:?}");
                assert!(
                    status.message.contains(field),
                    "case {i}: {:?} does not name {field:?}",
                    status.message
                );
            }
            Err(other) => panic!("case {i}: unexpected error {other}"),
        }
    }
    // And a valid one passes, with defaults filled in by the schema.
    let ok = apply_taskqueue(&client, &ns.name, json!({"metadata": {"name": "ok"}, "spec": {"queue": "queue_a", "maxReplicas": 3, "scaleTargetRef": {"name": "worker"}}})).await.expect("valid");
    assert_eq!(ok.spec.vhost, "/");
    assert_eq!(ok.spec.poll_interval.to_string(), "5s");
    assert_eq!(ok.spec.scale_target_ref.kind, "Deployment");
}
