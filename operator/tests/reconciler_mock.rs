//! The reconciler's error paths against a mocked Kubernetes API (tower-test): the
//! requests it makes, in order, and what it reports when they fail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use warren_operator::TaskQueue;
use warren_operator::access::AccessPolicy;
use warren_operator::broker::Password;
use warren_operator::broker::poller::BrokerPoller;
use warren_operator::credentials::{BrokerAccess, SecretCache};
use warren_operator::events::Events;
use warren_operator::metrics::Metrics;
use warren_operator::ownership::Owners;
use warren_operator::reconciler::{Context, ReconcileError, error_policy, reconcile};
use warren_operator::target::Targets;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn context() -> (Arc<Context>, Handle) {
    context_with(owners_of(&[taskqueue()]))
}

fn context_with(owners: Owners) -> (Arc<Context>, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "ns");
    let metrics = Arc::new(Metrics::new());
    let (poller, _triggered) = BrokerPoller::new(Duration::from_secs(1), Arc::clone(&metrics));
    let ctx = Context {
        client: client.clone(),
        events: Events::new(
            client,
            Reporter {
                controller: "warren-operator".into(),
                instance: None,
            },
        ),
        poller,
        metrics,
        access: BrokerAccess {
            policy: AccessPolicy {
                default_url: "http://rabbitmq:15672".into(),
                allowed: Vec::new(),
                plain_http_anywhere: false,
            },
            username: "guest".into(),
            password: Password::new("guest"),
            secret_label: Some("warren.dev/broker-credentials=true".parse().expect("label")),
        },
        secrets: SecretCache::default(),
        targets: Targets::default(),
        owners,
        idle_first: None,
        histories: Mutex::new(HashMap::new()),
        status_writes: Mutex::new(HashMap::new()),
        queue_series: Mutex::new(HashMap::new()),
    };
    (Arc::new(ctx), handle)
}

/// Ownership as the controller's cache would show it, listing `queues`.
fn owners_of(queues: &[TaskQueue]) -> Owners {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for queue in queues {
        writer.apply_watcher_event(&watcher::Event::InitApply(queue.clone()));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    Owners::new(store, None)
}

fn taskqueue() -> TaskQueue {
    serde_json::from_value(json!({
        "apiVersion": "warren.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": "queue-a", "namespace": "ns", "generation": 2, "uid": "u1"},
        "spec": {
            "queue": "queue_a",
            "maxReplicas": 5,
            "scaleTargetRef": {"name": "worker-a"},
            "broker": {"credentialsSecretRef": {"name": "creds"}}
        }
    }))
    .expect("taskqueue")
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).expect("json")))
        .expect("response")
}

fn not_found(what: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    )
}

async fn next(
    handle: &mut Handle,
) -> (
    Request<Body>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
    tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request within 5 s")
        .expect("a request")
}

async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

/// The API server's list of apps/v1 resources, with or without `/scale`.
fn apps_v1(with_scale: bool) -> Value {
    let mut resources = vec![
        json!({"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["get", "list", "patch"]}),
    ];
    if with_scale {
        resources.push(json!({"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": resources})
}

/// Answers the Secret GET with 404 and the discovery of the target's kind.
async fn serve_secret_and_discovery(handle: &mut Handle, with_scale: bool) {
    let (request, send) = next(handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("GET", "/api/v1/namespaces/ns/secrets/creds")
    );
    send.send_response(not_found("secrets \"creds\""));

    let (request, send) = next(handle).await;
    assert_eq!(
        request.uri().path(),
        "/apis/apps/v1",
        "discovery of the target kind"
    );
    send.send_response(respond(StatusCode::OK, apps_v1(with_scale)));
}

/// Answers a Warning Event post, asserting its reason; returns its note.
async fn serve_warning(handle: &mut Handle, reason: &str) -> String {
    let (request, send) = next(handle).await;
    assert_eq!(
        request.uri().path(),
        "/apis/events.k8s.io/v1/namespaces/ns/events"
    );
    let event = body_json(request).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some(reason)),
        "{event}"
    );
    let note = event["note"].as_str().unwrap_or("").to_owned();
    send.send_response(respond(StatusCode::CREATED, event));
    note
}

/// Answers the reconciler's requests up to the status patch, asserting each:
/// observe (Secret, discovery, /scale), then report (Events, status).
async fn serve_until_status(handle: &mut Handle, status_reply: StatusCode) -> Value {
    serve_secret_and_discovery(handle, true).await;
    let (request, send) = next(handle).await;
    assert_eq!(
        request.uri().path(),
        "/apis/apps/v1/namespaces/ns/deployments/worker-a/scale"
    );
    send.send_response(not_found("deployments.apps \"worker-a\""));

    let note = serve_warning(handle, "SecretNotFound").await;
    assert!(note.contains("Secret \"creds\" not found"), "{note}");
    serve_warning(handle, "TargetNotFound").await;
    serve_status(handle, status_reply).await
}

/// Answers the status patch with `status_reply`; returns the patch.
async fn serve_status(handle: &mut Handle, status_reply: StatusCode) -> Value {
    let (request, send) = next(handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        (
            "PATCH",
            "/apis/warren.dev/v1alpha1/namespaces/ns/taskqueues/queue-a/status"
        )
    );
    assert!(
        request
            .uri()
            .query()
            .unwrap_or("")
            .contains("fieldManager=warren-operator")
    );
    let patch = body_json(request).await;
    let reply = if status_reply.is_success() {
        let mut object = serde_json::to_value(taskqueue()).expect("json");
        object["status"] = patch["status"].clone();
        respond(status_reply, object)
    } else {
        respond(
            status_reply,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": status_reply.as_u16(), "message": "etcd is sad"}),
        )
    };
    send.send_response(reply);
    patch
}

#[tokio::test]
async fn missing_secret_and_target_are_reported_not_crashed_on() {
    let (ctx, mut handle) = context();
    let server = tokio::spawn(async move { serve_until_status(&mut handle, StatusCode::OK).await });
    let action = reconcile(Arc::new(taskqueue()), Arc::clone(&ctx))
        .await
        .expect("reconcile reports, does not fail");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(10)),
        "a missing target backs off to 10 s"
    );
    let patch = server.await.expect("server");
    let conditions: HashMap<String, (String, String)> = patch["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").to_owned(),
                (
                    c["status"].as_str().unwrap_or("").to_owned(),
                    c["reason"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        conditions["BrokerReachable"],
        ("False".into(), "SecretNotFound".into())
    );
    assert_eq!(
        conditions["ScalingActive"],
        ("False".into(), "TargetNotFound".into())
    );
    assert_eq!(conditions["Ready"].0, "False");
    assert_eq!(patch["status"]["observedGeneration"], 2);
    assert!(
        patch["status"].get("desiredReplicas").is_none(),
        "nothing decided without a target"
    );
}

#[tokio::test]
async fn a_kind_without_scale_is_reported_as_unscalable() {
    let (ctx, mut handle) = context();
    let server = tokio::spawn(async move {
        serve_secret_and_discovery(&mut handle, false).await;
        serve_warning(&mut handle, "SecretNotFound").await;
        let note = serve_warning(&mut handle, "TargetUnscalable").await;
        serve_status(&mut handle, StatusCode::OK).await;
        note
    });
    reconcile(Arc::new(taskqueue()), Arc::clone(&ctx))
        .await
        .expect("reconcile reports, does not fail");
    let note = server.await.expect("server");
    assert!(note.contains("deployments/scale"), "{note}");
}

#[tokio::test]
async fn a_failed_status_write_is_an_error_that_requeues() {
    let (ctx, mut handle) = context();
    let server = tokio::spawn(async move {
        serve_until_status(&mut handle, StatusCode::INTERNAL_SERVER_ERROR).await
    });
    let queue = Arc::new(taskqueue());
    let error = reconcile(Arc::clone(&queue), Arc::clone(&ctx))
        .await
        .expect_err("status write failed");
    server.await.expect("server");
    assert!(matches!(error, ReconcileError::Status { .. }), "{error}");
    assert!(error.to_string().contains("queue-a"), "{error}");
    assert_eq!(
        error_policy(queue, &error, Arc::clone(&ctx)),
        Action::requeue(Duration::from_secs(5))
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("warren_operator_errors_total{reason=\"StatusWriteFailed\"} 1")
    );
}

#[tokio::test]
async fn a_secret_is_read_once_not_on_every_reconciliation() {
    let (ctx, mut handle) = context();
    let queue = Arc::new(taskqueue());
    let first = tokio::spawn(reconcile(Arc::clone(&queue), Arc::clone(&ctx)));
    let (request, send) = next(&mut handle).await;
    assert_eq!(
        (request.method().as_str(), request.uri().path()),
        ("GET", "/api/v1/namespaces/ns/secrets/creds")
    );
    send.send_response(respond(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "ns", "labels": {"warren.dev/broker-credentials": "true"}},
               "data": {"username": "Z3Vlc3Q=", "password": "Z3Vlc3Q="}}),
    ));
    // No reading yet: the reconciliation waits for the poller, asking nothing more.
    first
        .await
        .expect("task")
        .expect("first reconcile waits for a reading");
    let second = tokio::spawn(reconcile(Arc::clone(&queue), Arc::clone(&ctx)));
    let more = tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await;
    if let Ok(Some((request, _))) = more {
        panic!("the second reconciliation asked again: {}", request.uri());
    }
    second
        .await
        .expect("task")
        .expect("second reconcile waits for a reading");
}

#[tokio::test]
async fn a_workload_an_older_taskqueue_scales_is_left_alone() {
    let mut older = taskqueue();
    older.metadata.name = Some("queue-0".into());
    older.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(100).expect("time"),
    ));
    let mut newer = taskqueue();
    newer.metadata.creation_timestamp = Some(Time(
        k8s_openapi::jiff::Timestamp::from_second(200).expect("time"),
    ));
    let (ctx, mut handle) = context_with(owners_of(&[older, newer.clone()]));
    let server = tokio::spawn(async move {
        let (request, send) = next(&mut handle).await;
        assert_eq!(request.uri().path(), "/api/v1/namespaces/ns/secrets/creds");
        send.send_response(not_found("secrets \"creds\""));
        serve_warning(&mut handle, "SecretNotFound").await;
        // No discovery, no /scale: the workload is not touched.
        let note = serve_warning(&mut handle, "Conflict").await;
        (note, serve_status(&mut handle, StatusCode::OK).await)
    });
    reconcile(Arc::new(newer), Arc::clone(&ctx))
        .await
        .expect("reconcile reports, does not fail");
    let (note, patch) = server.await.expect("server");
    assert!(
        note.starts_with(
            "Deployment \"worker-a\" is already scaled by TaskQueue \"queue-0\", created before this one"
        ),
        "{note}"
    );
    let active = patch["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "ScalingActive")
        .cloned()
        .expect("ScalingActive");
    assert_eq!(
        (active["status"].as_str(), active["reason"].as_str()),
        (Some("False"), Some("Conflict"))
    );
    assert!(
        ctx.metrics
            .encode()
            .contains("warren_operator_errors_total{reason=\"Conflict\"} 1")
    );
}
