//! Harness of the operator's cluster tests: the local kube-apiserver (KUBECONFIG,
//! from `make cluster-up`), the real RabbitMQ, a namespace and an operator process
//! per test.

#![allow(dead_code)]

pub mod broker;
pub mod consumers;
pub mod fault_proxy;
pub mod operator;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt};
use serde_json::{Value, json};
use warren_operator::TaskQueue;

// Not every test binary uses them, as with the rest of the harness.
#[allow(unused_imports)]
pub use broker::*;
#[allow(unused_imports)]
pub use operator::OperatorProcess;

pub fn management_url() -> String {
    std::env::var("WARREN_MANAGEMENT_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".into())
}

pub fn amqp_url() -> String {
    std::env::var("WARREN_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root")
        .to_path_buf()
}

pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map_or_else(|| repo_root().join(".local/kubeconfig"), PathBuf::from)
}

pub async fn client() -> Client {
    let path = kubeconfig();
    let config = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!(
            "no kubeconfig at {} ({e}): run `make cluster-up`",
            path.display()
        )
    });
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Applies the generated CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "taskqueues.warren.dev",
        &PatchParams::apply("warren-tests").force(),
        &Patch::Apply(TaskQueue::crd()),
    )
    .await
    .expect("apply CRD");
    let api: Api<TaskQueue> = Api::all(client.clone());
    eventually(Duration::from_secs(30), "CRD served", || async {
        api.list(&ListParams::default().limit(1)).await.is_ok()
    })
    .await;
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A namespace deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = unique(prefix);
        let api: Api<Namespace> = Api::all(client.clone());
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).expect("ns"),
        )
        .await
        .expect("create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace even when the test panicked; on a thread of its own,
    /// because the test's runtime may already be shutting down.
    fn drop(&mut self) {
        // A client of its own: the test's client lives on the test's runtime, which
        // this thread must not depend on while the runtime's thread waits for it.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let api: Api<Namespace> = Api::all(client().await);
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        })
        .join();
    }
}

pub async fn create_deployment(client: &Client, namespace: &str, name: &str, replicas: i32) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "worker", "image": "warren-worker:test"}],
                         "terminationGracePeriodSeconds": 0}
            }
        }
    }))
    .expect("deployment");
    api.create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");
}

pub async fn spec_replicas(client: &Client, namespace: &str, name: &str) -> i32 {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    api.get(name)
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0)
}

pub async fn running_pods(client: &Client, namespace: &str, app: &str) -> usize {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods");
    pods.items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
}

pub async fn apply_taskqueue(
    client: &Client,
    namespace: &str,
    body: Value,
) -> Result<TaskQueue, kube::Error> {
    let api: Api<TaskQueue> = Api::namespaced(client.clone(), namespace);
    let name = body["metadata"]["name"].as_str().expect("name").to_owned();
    let mut body = body;
    body["apiVersion"] = json!("warren.dev/v1alpha1");
    body["kind"] = json!("TaskQueue");
    api.patch(
        &name,
        &PatchParams::apply("warren-tests").force(),
        &Patch::Apply(body),
    )
    .await
}

/// A TaskQueue `name` on `queue` scaling the Deployment `target` within [1, 20] at
/// 10 messages a replica, polled every second, with `extra` spec fields on top.
pub fn taskqueue_body(name: &str, queue: &str, target: &str, extra: Value) -> Value {
    let mut spec = json!({
        "queue": queue,
        "scaleTargetRef": {"name": target},
        "minReplicas": 1,
        "maxReplicas": 20,
        "targetBacklogPerReplica": 10,
        "pollInterval": "1s",
        "scaleDown": {"stabilizationWindow": "8s", "scaleToZeroDelay": "4s"}
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

pub async fn taskqueue(client: &Client, namespace: &str, name: &str) -> TaskQueue {
    let api: Api<TaskQueue> = Api::namespaced(client.clone(), namespace);
    api.get(name).await.expect("taskqueue")
}

/// A condition of the TaskQueue's status as (status, reason, message).
pub fn condition(queue: &TaskQueue, type_: &str) -> Option<(String, String, String)> {
    queue
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub async fn events(client: &Client, namespace: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
}

/// Polls `check` every 200 ms until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of an unlabelled counter in Prometheus text, 0 when absent.
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

/// The value of one labelled series (`name{label="value"}`), 0 when absent:
/// [`counter`] reads unlabelled ones only.
pub fn series(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Who holds the Lease `name` in `namespace`, if anyone.
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), namespace);
    leases
        .get(name)
        .await
        .ok()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// A memory figure of a process from /proc (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| {
            l.strip_prefix(field)
                .is_some_and(|rest| rest.starts_with(':'))
        })
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}
