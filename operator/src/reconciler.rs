//! The reconciler: observe -> decide -> act -> report, a thin shell around the pure
//! scaling decision ([`crate::decision`]) and status ([`crate::status`]).
//!
//! - observe: the queue as the broker poller last read it, and the target's replicas;
//! - own: scale only a workload no older TaskQueue and no HPA scales ([`crate::ownership`]);
//! - decide: [`decide`] on that, with the TaskQueue's recent history;
//! - act: before a scale-down, keep busy pods ([`crate::scale_down`]); then patch
//!   `/scale` when the desired count differs;
//! - report: Events, metrics, and the status (written only when it changed).

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;
use thiserror::Error;
use tracing::{debug, info, instrument, warn};

use crate::broker::BrokerError;
use crate::broker::poller::{BrokerPoller, Watch};
use crate::crd::{TaskQueue, TaskQueueStatus};
use crate::credentials::{BrokerAccess, SecretCache, endpoint_for};
use crate::decision::{Decision, History, QueueReading, QueueState, ScalingPolicy, decide};
use crate::drain::ListedCounts;
use crate::events::Events;
use crate::lock::lock;
use crate::metrics::{Metrics, QueueLabels};
use crate::ownership::{Owners, Ownership};
use crate::scale_down::{self, IdleFirst};
use crate::status::{Findings, Problem, TargetFindings, build};
use crate::target::{ScaleReading, TargetError, Targets};

/// Field manager of the operator's server-side applies.
pub const MANAGER: &str = "warren-operator";

pub struct Context {
    pub client: Client,
    pub events: Events,
    pub poller: BrokerPoller,
    pub metrics: Arc<Metrics>,
    pub access: BrokerAccess,
    pub secrets: SecretCache,
    pub targets: Targets,
    /// Who else scales each TaskQueue's workload.
    pub owners: Owners,
    /// Idle-first scale-down; `None` scales down as `Any` (tests without pods).
    pub idle_first: Option<IdleFirst>,
    pub histories: Mutex<HashMap<ObjectRef<TaskQueue>, History>>,
    /// When each TaskQueue's status was last written.
    pub status_writes: Mutex<HashMap<ObjectRef<TaskQueue>, Instant>>,
    /// The labels of each TaskQueue's backlog and desired-replicas series, so the
    /// series of a deleted TaskQueue (or of a queue it no longer reads) are removed.
    pub queue_series: Mutex<HashMap<ObjectRef<TaskQueue>, QueueLabels>>,
}

/// The longest a TaskQueue goes without reconciliation when no reading arrives.
const SAFETY_REQUEUE: Duration = Duration::from_secs(30);

/// The longest one reconciliation may take. With etcd down the API server holds
/// requests for up to a minute; past this the reconciliation is dropped (every
/// step is idempotent: `/scale` and the status are set, not incremented) and
/// retried, so recovery does not wait on a request that will fail anyway.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(20);

/// An unchanged status is still rewritten this often, to refresh `readingAge`.
const STATUS_HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("TaskQueue has no namespace")]
    NoNamespace,
    #[error(
        "reconciliation took longer than {0:?} (is the API server slow, or etcd down?); retrying"
    )]
    TimedOut(Duration),
    #[error("cannot write the status of TaskQueue {name:?}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// A short, stable name for the errors metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoNamespace => "NoNamespace",
            Self::TimedOut(_) => "ReconcileTimeout",
            Self::Status { .. } => "StatusWriteFailed",
        }
    }
}

/// The target's replicas, the decision (none while paused) and when it was scaled.
type Scaling = (ScaleReading, Option<Decision>, Option<Time>);

#[instrument(skip_all, fields(
    namespace = queue.metadata.namespace.as_deref().unwrap_or(""),
    name = queue.metadata.name.as_deref().unwrap_or(""),
))]
pub async fn reconcile(queue: Arc<TaskQueue>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    tokio::time::timeout(RECONCILE_TIMEOUT, reconcile_once(queue, ctx))
        .await
        .map_err(|_| ReconcileError::TimedOut(RECONCILE_TIMEOUT))?
}

async fn reconcile_once(
    queue: Arc<TaskQueue>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.inc();
    let namespace = queue.namespace().ok_or(ReconcileError::NoNamespace)?;
    let key = ObjectRef::from_obj(&*queue);
    let Some(queue_state) = observe_queue(&ctx, &queue, &namespace, &key).await else {
        debug!("no reading yet");
        // The poller triggers this TaskQueue when its first reading arrives.
        return Ok(Action::requeue(queue.spec.poll_interval.duration()));
    };
    let scaling = match ctx.owners.of(&queue, &namespace) {
        Ownership::Owner => scale_target(&ctx, &queue, &namespace, &key, &queue_state)
            .await
            .map_err(|error| problem_of(error.reason(), &error)),
        Ownership::Conflict(conflict) => {
            // Should it take over later, it starts from the workload's count, not
            // from decisions it made before the other owner came.
            lock(&ctx.histories).remove(&key);
            Err(problem_of(conflict.reason(), &conflict))
        }
        Ownership::Unsynced => {
            debug!("TaskQueues or HPAs not listed yet; not scaling until they are");
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    };
    report(&ctx, &queue, &namespace, key, queue_state, scaling).await
}

/// Reads the target's replicas, decides (unless paused) and acts on the decision.
async fn scale_target(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    key: &ObjectRef<TaskQueue>,
    queue_state: &Result<QueueReading, Problem>,
) -> Result<Scaling, TargetError> {
    let (scale, source) = ctx
        .targets
        .read(&ctx.client, namespace, &queue.spec.scale_target_ref)
        .await?;
    ctx.metrics.target_read(source.as_str());
    let decision =
        (!queue.is_paused()).then(|| decide_replicas(ctx, queue, key, queue_state, scale));
    let decision = match decision {
        Some(decision) => {
            let reading = queue_state.as_ref().ok();
            let guarded =
                scale_down::guard(ctx, queue, namespace, reading, scale.desired, decision);
            Some(guarded.await)
        }
        None => None,
    };
    let scaled_at = act(ctx, queue, namespace, scale, decision.as_ref()).await?;
    Ok((scale, decision, scaled_at))
}

/// The queue as the poller last read it through the TaskQueue's endpoint, or why
/// it cannot be read; `None` before the first reading.
async fn observe_queue(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    key: &ObjectRef<TaskQueue>,
) -> Option<Result<QueueReading, Problem>> {
    let endpoint =
        match endpoint_for(&ctx.client, &ctx.secrets, &ctx.access, queue, namespace).await {
            Ok(endpoint) => endpoint,
            Err(problem) => {
                // No poll is made for this TaskQueue, so the poller does not count it.
                ctx.metrics.error(problem.reason());
                return Some(Err(problem_of(problem.reason(), &problem)));
            }
        };
    ctx.poller.watch(
        key.clone(),
        Watch {
            endpoint,
            vhost: queue.spec.vhost.clone(),
            queue: queue.spec.queue.clone(),
            interval: queue.spec.poll_interval.duration(),
        },
    );
    let sample = ctx.poller.latest(key)?;
    Some(match sample.result {
        Ok(stats) => Ok(QueueReading {
            ready: stats.ready,
            unacked: stats.unacked,
            consumers: stats.consumers,
            publish_rate: stats.publish_rate,
            ack_rate: stats.ack_rate,
            age: sample.taken_at.elapsed(),
            rates_listed: sample.rates.map(|r| ListedCounts {
                ready: r.ready,
                unacked: r.unacked,
                age: r.at.elapsed(),
            }),
        }),
        Err(problem) => {
            if matches!(
                problem,
                BrokerError::Unauthorized { .. } | BrokerError::Forbidden { .. }
            ) {
                // Perhaps the Secret was fixed since it was read: read it again next
                // time, once per rejected reading rather than once per reconcile.
                ctx.secrets
                    .forget_read_before(queue, namespace, sample.taken_at);
            }
            Err(problem_of(problem.reason(), &problem))
        }
    })
}

/// What the TaskQueue's policy asks of `scale` given the queue, remembered in its
/// history for the scale-down window.
fn decide_replicas(
    ctx: &Context,
    queue: &TaskQueue,
    key: &ObjectRef<TaskQueue>,
    queue_state: &Result<QueueReading, Problem>,
    scale: ScaleReading,
) -> Decision {
    let state = match queue_state {
        Ok(reading) => QueueState::Known(reading.clone()),
        Err(problem) => QueueState::Unknown(problem.message.clone()),
    };
    let policy = ScalingPolicy::from(&queue.spec);
    let mut histories = lock(&ctx.histories);
    let now = Instant::now();
    let history = histories
        .entry(key.clone())
        .or_insert_with(|| History::starting_at(now, scale.desired));
    let decision = decide(&policy, &state, history, scale.desired, now);
    history.record(now, &decision, policy.stabilization_window);
    decision
}

/// Scales the target when the decision differs from what it runs; returns when.
async fn act(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    scale: ScaleReading,
    decision: Option<&Decision>,
) -> Result<Option<Time>, TargetError> {
    let Some(decision) = decision.filter(|d| d.desired != scale.desired) else {
        return Ok(None);
    };
    let target = &queue.spec.scale_target_ref;
    ctx.targets
        .scale(&ctx.client, namespace, target, decision.desired)
        .await?;
    ctx.metrics.scale_events.inc();
    info!(reason = %decision.reason, "scaled");
    Ok(Some(Time(k8s_openapi::jiff::Timestamp::now())))
}

/// Events and metrics for what happened, then the status when it is due.
async fn report(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    key: ObjectRef<TaskQueue>,
    queue_state: Result<QueueReading, Problem>,
    scaling: Result<Scaling, Problem>,
) -> Result<Action, ReconcileError> {
    let interval = queue.spec.poll_interval.duration();
    // Fresh readings trigger reconciliation through the poller; the requeue is
    // only a safety net, so it need not add a second reconcile per interval.
    let mut requeue = (interval * 6).max(SAFETY_REQUEUE);
    if let Err(problem) = &queue_state {
        warn!(problem = %problem.message, "broker unreadable; holding replicas");
        ctx.events
            .warn(queue, problem.reason, "ReadQueue", problem.message.clone())
            .await;
    }
    if let Err(problem) = &scaling {
        ctx.metrics.error(problem.reason);
        warn!(problem = %problem.message, "cannot scale the target");
        ctx.events
            .warn(queue, problem.reason, "Scale", problem.message.clone())
            .await;
        // A missing target usually appears soon after (same kubectl apply); then back off.
        requeue = interval.max(Duration::from_secs(10));
    }
    if let Ok((_, Some(decision), scaled_at)) = &scaling {
        record_decision(ctx, queue, namespace, &key, decision, scaled_at.is_some()).await;
    }
    let findings = Findings {
        previous: queue.status.as_ref(),
        generation: queue.metadata.generation,
        now: Time(k8s_openapi::jiff::Timestamp::now()),
        paused: queue.is_paused(),
        queue: queue_state.as_ref(),
        target: scaling
            .as_ref()
            .map(|(scale, decision, scaled_at)| TargetFindings {
                scale: *scale,
                decision: decision.as_ref(),
                scaled_at: scaled_at.clone(),
            }),
    };
    let status = build(&findings);
    debug!(decision = ?status.last_decision, "decided");
    if status_due(ctx, &key, queue.status.as_ref(), &status) {
        write_status(ctx, queue, namespace, key, &status).await?;
    }
    Ok(Action::requeue(requeue))
}

/// A `Scaled` Event when the target was scaled, and the per-queue gauges.
async fn record_decision(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    key: &ObjectRef<TaskQueue>,
    decision: &Decision,
    scaled: bool,
) {
    if scaled {
        ctx.events.scaled(queue, decision.reason.clone()).await;
    }
    let labels = QueueLabels {
        namespace: namespace.to_owned(),
        taskqueue: queue.name_any(),
        queue: queue.spec.queue.clone(),
    };
    let replaced = lock(&ctx.queue_series).insert(key.clone(), labels.clone());
    if let Some(old) = replaced.filter(|old| *old != labels) {
        ctx.metrics.forget_queue(&old);
    }
    if let Some(backlog) = decision.backlog {
        ctx.metrics.backlog.get_or_create(&labels).set(backlog);
    }
    ctx.metrics
        .desired
        .get_or_create(&labels)
        .set(i64::from(decision.desired));
}

async fn write_status(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    key: ObjectRef<TaskQueue>,
    status: &TaskQueueStatus,
) -> Result<(), ReconcileError> {
    let name = queue.name_any();
    let api: Api<TaskQueue> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = json!({"apiVersion": "warren.dev/v1alpha1", "kind": "TaskQueue", "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Status { name, source })?;
    lock(&ctx.status_writes).insert(key, Instant::now());
    Ok(())
}

fn problem_of(reason: &'static str, error: &impl Display) -> Problem {
    Problem {
        reason,
        message: error.to_string(),
    }
}

/// Whether the status must be written: it changed (other than the reading's age),
/// or the last write is older than the heartbeat. Skipping the rest keeps a thousand
/// quiet TaskQueues from costing a thousand writes per poll.
fn status_due(
    ctx: &Context,
    key: &ObjectRef<TaskQueue>,
    old: Option<&TaskQueueStatus>,
    new: &TaskQueueStatus,
) -> bool {
    let without_age = |s: &TaskQueueStatus| TaskQueueStatus {
        reading_age: None,
        ..s.clone()
    };
    let changed = old.is_none_or(|old| without_age(old) != without_age(new));
    let stale = lock(&ctx.status_writes)
        .get(key)
        .is_none_or(|at| at.elapsed() >= STATUS_HEARTBEAT);
    changed || stale
}

pub fn error_policy(queue: Arc<TaskQueue>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.reason());
    warn!(name = %queue.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
