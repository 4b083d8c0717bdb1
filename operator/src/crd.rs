//! The `TaskQueue` custom resource (`warren.dev/v1alpha1`): a RabbitMQ queue and
//! the workload that consumes it, with the bounds and pace of its scaling.
//!
//! Validation lives in the schema (OpenAPI bounds and CEL rules), so `kubectl
//! apply` rejects nonsense with a message naming the field before the operator
//! ever sees it.

// kube's `printcolumn(name = .., type_ = ..)` repeats the same keys once per column.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::interval::Interval;

/// Annotation that pauses scaling of one TaskQueue (`"true"`).
pub const PAUSED_ANNOTATION: &str = "warren.dev/paused";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "warren.dev",
    version = "v1alpha1",
    kind = "TaskQueue",
    namespaced,
    shortname = "tq",
    status = "TaskQueueStatus",
    doc = "A RabbitMQ queue and the workload that consumes it; warren scales the workload on the queue's depth.",
    printcolumn(name = "Queue", type_ = "string", json_path = ".spec.queue"),
    printcolumn(name = "Backlog", type_ = "integer", json_path = ".status.backlog"),
    printcolumn(name = "Consumers", type_ = "integer", json_path = ".status.consumers"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Min",
        type_ = "integer",
        json_path = ".spec.minReplicas",
        priority = 1
    ),
    printcolumn(
        name = "Max",
        type_ = "integer",
        json_path = ".spec.maxReplicas",
        priority = 1
    ),
    printcolumn(
        name = "Reading-Age",
        type_ = "string",
        json_path = ".status.readingAge",
        priority = 1
    ),
    printcolumn(
        name = "Last-Decision",
        type_ = "string",
        json_path = ".status.lastDecision",
        priority = 1
    )
)]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas")
    .message("spec.minReplicas must be less than or equal to spec.maxReplicas")
    .field_path(".minReplicas"))]
#[x_kube(validation = Rule::new("!has(self.fallbackReplicas) || (self.fallbackReplicas >= self.minReplicas && self.fallbackReplicas <= self.maxReplicas)")
    .message("spec.fallbackReplicas must lie within [spec.minReplicas, spec.maxReplicas]")
    .field_path(".fallbackReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct TaskQueueSpec {
    /// The RabbitMQ queue whose depth drives scaling, e.g. `queue_a`.
    #[schemars(length(min = 1, max = 255))]
    pub queue: String,
    /// The RabbitMQ virtual host of the queue.
    #[serde(default = "default_vhost")]
    #[schemars(length(min = 1, max = 255))]
    pub vhost: String,
    /// Where to read the queue's depth; unset fields take the operator's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerRef>,
    /// The workload to scale: any resource with a `/scale` subresource.
    pub scale_target_ref: ScaleTargetRef,
    /// Fewest replicas; 0 lets an idle queue scale its workers away.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Most replicas.
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Messages one replica is expected to hold: desired = ceil(backlog / this).
    /// Unset: 10, or with `drainWithin` only the fallback while rates are unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_backlog_per_replica: Option<i64>,
    /// How soon waiting messages should be worked off, e.g. `60s`: desired =
    /// ceil((ready / drainWithin + arrivals/s) / tasks/s per replica), with both
    /// rates from the broker's statistics. Beside `targetBacklogPerReplica` the
    /// larger recommendation wins; while the rates are unknown, stale or absurd
    /// the backlog target alone decides (and the reason says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('24h')")
        .message("spec.drainWithin must be between 1s and 24h"))]
    pub drain_within: Option<Interval>,
    /// Tasks per second one replica completes, used by `drainWithin` until the
    /// broker's statistics have measured it (acks per consumer while messages
    /// wait). Unset: the backlog target decides until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001, max = 100000.0))]
    pub rate_per_replica: Option<f64>,
    /// Backlog at which a queue at 0 replicas gets its first one.
    #[serde(default = "default_activation_backlog")]
    #[schemars(range(min = 1))]
    pub activation_backlog: i64,
    /// Count unacknowledged (in-progress) messages in the backlog, not just ready ones.
    #[serde(default = "default_true")]
    pub count_unacked: bool,
    /// How often the queue is read.
    #[serde(default = "default_poll_interval")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('1h')")
        .message("spec.pollInterval must be between 1s and 1h"))]
    pub poll_interval: Interval,
    #[serde(default)]
    pub scale_up: ScaleUpPolicy,
    #[serde(default)]
    pub scale_down: ScaleDownPolicy,
    /// Replicas to run while the broker cannot be read; unset holds the current count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub fallback_replicas: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerRef {
    /// RabbitMQ management API base URL, e.g. `http://rabbitmq:15672`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 2048),
        regex(pattern = r"^https?://[^\s/?#@]+(:[0-9]+)?(/[^\s]*)?$")
    )]
    pub management_url: Option<String>,
    /// Secret in the TaskQueue's namespace with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Secret with the CA bundle for an https management URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, KubeSchema)]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleTargetRef {
    #[serde(default = "default_target_api_version")]
    #[schemars(length(min = 1))]
    pub api_version: String,
    #[serde(default = "default_target_kind")]
    #[schemars(length(min = 1))]
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

impl ScaleTargetRef {
    /// An `apps/v1` Deployment: read from the watch cache, and scaled down idle-first.
    pub fn is_deployment(&self) -> bool {
        self.api_version == "apps/v1" && self.kind == "Deployment"
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleUpPolicy {
    /// Most replicas added per decision; 0 jumps straight to the target.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_step: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleDownPolicy {
    /// Scale down only to the highest recommendation seen over this window.
    #[serde(default = "default_stabilization_window")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('24h')")
        .message("spec.scaleDown.stabilizationWindow must be between 0s and 24h"))]
    pub stabilization_window: Interval,
    /// How long a queue must stay empty (nothing ready, nothing unacked) before 1 -> 0.
    #[serde(default = "default_scale_to_zero_delay")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('0s') && duration(self) <= duration('24h')")
        .message("spec.scaleDown.scaleToZeroDelay must be between 0s and 24h"))]
    pub scale_to_zero_delay: Interval,
    /// Which pods go when a Deployment scales down. `IdleFirst` (default) asks the
    /// broker which pods hold unacknowledged deliveries, removes only idle ones
    /// (marking busy pods with `controller.kubernetes.io/pod-deletion-cost`) and
    /// waits for the busy ones; `Any` leaves the choice to the ReplicaSet
    /// controller. Other `/scale` kinds always behave as `Any`.
    #[serde(default)]
    pub policy: ScaleDownChoice,
}

/// How scale-down victims are chosen; see `spec.scaleDown.policy`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum ScaleDownChoice {
    /// Only pods the broker sees idle are removed; busy pods stay until they finish.
    #[default]
    IdleFirst,
    /// The ReplicaSet controller picks, busy or not.
    Any,
}

impl Default for ScaleDownPolicy {
    fn default() -> Self {
        Self {
            stabilization_window: default_stabilization_window(),
            scale_to_zero_delay: default_scale_to_zero_delay(),
            policy: ScaleDownChoice::default(),
        }
    }
}

/// What the operator last saw and did. Never holds a credential.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskQueueStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Messages ready for delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<i64>,
    /// Messages delivered and not yet acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unacked: Option<i64>,
    /// The backlog scaling used: ready (+ unacked when countUnacked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i64>,
    /// Messages published per second, as the broker's statistics give it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_rate: Option<f64>,
    /// Messages acknowledged per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_rate: Option<f64>,
    /// Tasks per second one replica completes, as measured for `drainWithin`
    /// (acks per consumer while messages waited, smoothed); unset until measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_replica: Option<f64>,
    /// Age of the reading the last decision used, e.g. `1.2s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reading_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// The reason of the last decision, e.g. `1 -> 4: backlog 37 over target 10/replica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_vhost() -> String {
    "/".into()
}
fn default_activation_backlog() -> i64 {
    1
}
fn default_true() -> bool {
    true
}
fn default_poll_interval() -> Interval {
    Interval::from_secs(5)
}
fn default_stabilization_window() -> Interval {
    Interval::from_secs(60)
}
fn default_scale_to_zero_delay() -> Interval {
    Interval::from_secs(120)
}
fn default_ca_key() -> String {
    "ca.crt".into()
}
fn default_target_api_version() -> String {
    "apps/v1".into()
}
fn default_target_kind() -> String {
    "Deployment".into()
}

impl TaskQueue {
    pub fn is_paused(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSED_ANNOTATION))
            .is_some_and(|v| v == "true")
    }
}
