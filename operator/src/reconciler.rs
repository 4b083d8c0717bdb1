//! The reconciler: a thin shell around the scaling decision. Read the reading and
//! `/scale`, decide, patch `/scale`, write status by server-side apply, and publish
//! an Event when it scales or when something is wrong.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::broker::BrokerError;
use crate::broker::poller::{BrokerPoller, Watch};
use crate::crd::{TaskQueue, TaskQueueStatus};
use crate::credentials::{BrokerDefaults, SecretCache, endpoint_for};
use crate::decision::{Decision, History, Observation, QueueReading, ScalingPolicy, decide};
use crate::events::Events;
use crate::lock::lock;
use crate::metrics::{Metrics, QueueLabels};
use crate::status::{Seen, build};
use crate::target::{TargetError, Targets};

/// Field manager of the operator's server-side applies.
pub const MANAGER: &str = "warren-operator";

pub struct Context {
    pub client: Client,
    pub events: Events,
    pub poller: BrokerPoller,
    pub metrics: Arc<Metrics>,
    pub defaults: BrokerDefaults,
    pub secrets: SecretCache,
    pub targets: Targets,
    pub histories: Mutex<HashMap<ObjectRef<TaskQueue>, History>>,
    /// When each TaskQueue's status was last written.
    pub status_writes: Mutex<HashMap<ObjectRef<TaskQueue>, Instant>>,
}

/// The longest a TaskQueue goes without reconciliation when no reading arrives.
const SAFETY_REQUEUE: Duration = Duration::from_secs(30);

/// An unchanged status is still rewritten this often, to refresh `readingAge`.
const STATUS_HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("TaskQueue has no namespace")]
    NoNamespace,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("cannot write the status of TaskQueue {name:?}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoNamespace => "NoNamespace",
            Self::Target(e) => e.reason(),
            Self::Status { .. } => "StatusWriteFailed",
        }
    }
}

pub async fn reconcile(queue: Arc<TaskQueue>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.metrics.reconciles.inc();
    let namespace = queue.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = queue.name_any();
    let object = ObjectRef::from_obj(&*queue);
    let interval = queue.spec.poll_interval.duration();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let mut seen = Seen {
        previous: queue.status.as_ref(),
        generation: queue.metadata.generation,
        reading: None,
        broker_problem: None,
        scale: None,
        target_problem: None,
        decision: None,
        paused: queue.is_paused(),
        scaled_at: None,
        now,
    };

    // What the queue holds, and when the poller read it.
    let mut read_at = None;
    let reading =
        match endpoint_for(&ctx.client, &ctx.secrets, &ctx.defaults, &queue, &namespace).await {
            Err(problem) => Some(Err(problem)),
            Ok(endpoint) => {
                let watch = Watch {
                    endpoint,
                    vhost: queue.spec.vhost.clone(),
                    queue: queue.spec.queue.clone(),
                    interval,
                };
                ctx.poller.watch(object.clone(), watch);
                ctx.poller.reading(&object).map(|reading| {
                    read_at = Some(reading.taken_at);
                    reading.result.map(|stats| QueueReading {
                        ready: stats.ready,
                        unacked: stats.unacked,
                        consumers: stats.consumers.unwrap_or(0),
                        publish_rate: stats.publish_rate,
                        ack_rate: stats.ack_rate,
                        age: reading.taken_at.elapsed(),
                    })
                })
            }
        };
    let Some(reading) = reading else {
        debug!(%namespace, %name, "no reading yet");
        // No reading yet: the poller triggers this TaskQueue when the first arrives.
        return Ok(Action::requeue(interval));
    };
    let observation = match &reading {
        Ok(reading) => Observation::Reading(reading.clone()),
        Err(problem) => Observation::Unreadable(problem.to_string()),
    };
    if let Err(problem) = &reading {
        if let Some(read_at) = read_at
            && matches!(
                problem,
                BrokerError::Unauthorized { .. } | BrokerError::Forbidden { .. }
            )
        {
            // Perhaps the Secret was fixed since it was read: read it again next
            // time, once per rejected reading rather than once per reconcile.
            ctx.secrets.forget_read_before(&queue, &namespace, read_at);
        }
        let kind = problem.kind();
        ctx.metrics.error(kind);
        warn!(%namespace, %name, %problem, "broker unreadable; holding replicas");
        ctx.events
            .warn(&queue, kind, "ReadQueue", problem.to_string())
            .await;
        seen.broker_problem = Some((kind, problem.to_string()));
    }
    let reading = reading.ok();
    seen.reading = reading.as_ref();

    // What the workload runs, and what it should.
    let target = &queue.spec.scale_target_ref;
    let mut decision: Option<Decision> = None;
    let outcome = async {
        let (scale, source) = ctx.targets.read(&ctx.client, &namespace, target).await?;
        ctx.metrics.target_read(source.as_str());
        if seen.paused {
            return Ok::<_, TargetError>((scale, None, None));
        }
        let policy = ScalingPolicy::from(&queue.spec);
        let made = {
            let mut histories = lock(&ctx.histories);
            let clock = Instant::now();
            let history = histories
                .entry(object.clone())
                .or_insert_with(|| History::starting_at(clock, scale.desired));
            let made = decide(&policy, &observation, history, scale.desired, clock);
            history.record(clock, &made, policy.stabilization_window);
            made
        };
        let mut scaled_at = None;
        if made.desired != scale.desired {
            ctx.targets
                .scale(&ctx.client, &namespace, target, made.desired)
                .await?;
            ctx.metrics.scale_events.inc();
            scaled_at = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            info!(%namespace, %name, reason = %made.reason, "scaled");
        }
        Ok((scale, Some(made), scaled_at))
    }
    .await;
    // Fresh readings trigger reconciliation through the poller; the requeue is
    // only a safety net, so it need not add a second reconcile per interval.
    let mut requeue = (interval * 6).max(SAFETY_REQUEUE);
    match outcome {
        Ok((scale, made, scaled_at)) => {
            seen.scale = Some(scale);
            seen.scaled_at = scaled_at;
            if let Some(made) = &made {
                if seen.scaled_at.is_some() {
                    ctx.events.scaled(&queue, made.reason.clone()).await;
                }
                let labels = QueueLabels {
                    namespace: namespace.clone(),
                    taskqueue: name.clone(),
                    queue: queue.spec.queue.clone(),
                };
                if let Some(backlog) = made.backlog {
                    ctx.metrics.backlog.get_or_create(&labels).set(backlog);
                }
                ctx.metrics
                    .desired
                    .get_or_create(&labels)
                    .set(i64::from(made.desired));
            }
            decision = made;
        }
        Err(problem) => {
            ctx.metrics.error(problem.reason());
            warn!(%namespace, %name, %problem, "cannot scale the target");
            ctx.events
                .warn(&queue, problem.reason(), "Scale", problem.to_string())
                .await;
            seen.target_problem = Some((problem.reason(), problem.to_string()));
            // A missing target usually appears soon after (same kubectl apply); then back off.
            requeue = interval.max(Duration::from_secs(10));
        }
    }
    seen.decision = decision.as_ref();
    let status = build(seen);
    debug!(%namespace, %name, decision = ?status.last_decision, "decided");
    if !status_due(&ctx, &object, queue.status.as_ref(), &status) {
        return Ok(Action::requeue(requeue));
    }
    let api: Api<TaskQueue> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"apiVersion": "warren.dev/v1alpha1", "kind": "TaskQueue", "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::Status {
        name: name.clone(),
        source,
    })?;
    lock(&ctx.status_writes).insert(object, Instant::now());
    Ok(Action::requeue(requeue))
}

/// Whether the status must be written: it changed (other than the reading's age),
/// or the last write is older than the heartbeat. Skipping the rest keeps a thousand
/// quiet TaskQueues from costing a thousand writes per poll.
fn status_due(
    ctx: &Context,
    object: &ObjectRef<TaskQueue>,
    old: Option<&TaskQueueStatus>,
    new: &TaskQueueStatus,
) -> bool {
    let without_age = |s: &TaskQueueStatus| TaskQueueStatus {
        reading_age: None,
        ..s.clone()
    };
    let changed = old.is_none_or(|old| without_age(old) != without_age(new));
    let stale = lock(&ctx.status_writes)
        .get(object)
        .is_none_or(|at| at.elapsed() >= STATUS_HEARTBEAT);
    changed || stale
}

pub fn error_policy(queue: Arc<TaskQueue>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(error.kind());
    warn!(name = %queue.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
