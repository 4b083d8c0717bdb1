//! Scale-down that never interrupts work (`spec.scaleDown.policy: IdleFirst`).
//!
//! Before it lowers a Deployment's replicas the operator asks the broker which
//! consumers hold deliveries ([`crate::broker::occupancy`], read only then),
//! matches them to the Deployment's pods ([`plan::occupancy`]), scales down by at
//! most the idle pods ([`plan::plan`]) and marks the pods with
//! `controller.kubernetes.io/pod-deletion-cost` (idle 0, busy by the deliveries
//! they hold) so that the ReplicaSet controller removes the idle ones. When the
//! pods cannot be matched, the scale-down goes ahead as it would without the
//! policy, and a Warning Event says why.
//!
//! StatefulSets remove the highest ordinal whatever its cost, and other `/scale`
//! kinds have their own rules: they always scale as `Any`.

pub mod plan;
pub mod pods;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::Selector;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tracing::{info, warn};

use crate::broker::occupancy::OccupancyReader;
use crate::crd::{ScaleDownChoice, TaskQueue};
use crate::decision::{Decision, QueueReading};
use crate::reconciler::{Context, MANAGER};
use plan::{DELETION_COST, Occupancy, ScaleDownPlan, occupancy, plan};
use pods::PodCache;

/// How long a scale-down waits for the pod watch to show the costs it wrote
/// before it lowers replicas (the ReplicaSet controller's watch is as quick).
const COSTS_SEEN_WITHIN: Duration = Duration::from_secs(2);

/// What IdleFirst needs besides the reconciler's context.
pub struct IdleFirst {
    pub pods: PodCache,
    pub reader: OccupancyReader,
}

/// Limits a scale-down of `queue`'s Deployment from `current` to the idle pods;
/// returns the decision to act on. Other kinds, `Any`, and decisions that do not
/// scale down pass through unchanged.
pub async fn guard(
    ctx: &Context,
    queue: &TaskQueue,
    namespace: &str,
    reading: Option<&QueueReading>,
    current: i32,
    decision: Decision,
) -> Decision {
    if decision.desired >= current
        || queue.spec.scale_down.policy != ScaleDownChoice::IdleFirst
        || !queue.spec.scale_target_ref.is_deployment()
    {
        return decision;
    }
    let Some(idle_first) = ctx.idle_first.as_ref() else {
        return decision;
    };
    let started = Instant::now();
    match plan_for(
        ctx, idle_first, queue, namespace, reading, current, &decision,
    )
    .await
    {
        Ok(plan) => {
            if let Err(why) = write_costs(ctx, idle_first, namespace, &plan).await {
                return fallback(ctx, queue, decision, why).await;
            }
            if plan.removed > 0 {
                idle_first
                    .pods
                    .watch_victims(namespace, plan.pods.clone(), plan.removed);
            }
            info!(took = ?started.elapsed(), reason = %plan.decision.reason, "idle-first scale-down planned");
            plan.decision
        }
        Err(why) => fallback(ctx, queue, decision, why).await,
    }
}

async fn plan_for(
    ctx: &Context,
    idle_first: &IdleFirst,
    queue: &TaskQueue,
    namespace: &str,
    reading: Option<&QueueReading>,
    current: i32,
    decision: &Decision,
) -> Result<ScaleDownPlan, String> {
    let target = &queue.spec.scale_target_ref.name;
    let reading = reading.ok_or("the queue cannot be read")?;
    let selector = ctx
        .targets
        .deployment_selector(namespace, target)
        .ok_or_else(|| format!("Deployment {target:?} is not in the operator's cache yet"))?;
    let selector = Selector::try_from(selector)
        .map_err(|e| format!("cannot use the selector of Deployment {target:?}: {e}"))?;
    let pods = idle_first
        .pods
        .pods_of(namespace, &selector)
        .ok_or("the pod watch is not synced")?;
    let watch = ctx
        .poller
        .watch_of(&ObjectRef::from_obj(queue))
        .ok_or("the queue is not polled yet")?;
    let consumers = idle_first
        .reader
        .read(&watch.endpoint, &watch.vhost)
        .await
        .map_err(|e| format!("cannot read the queue's consumers: {e}"))?;
    let of_queue = consumers
        .get(&queue.spec.queue)
        .map_or(&[][..], Vec::as_slice);
    match occupancy(&pods, of_queue, reading.unacked) {
        Occupancy::Known { pods, unattributed } => {
            ctx.metrics.pods_matched(pods.len() as u64, 0);
            Ok(plan(decision.clone(), current, &pods, unattributed))
        }
        Occupancy::Unknown(why) => {
            ctx.metrics.pods_matched(0, pods.len() as u64);
            Err(why)
        }
    }
}

/// Writes the plan's costs, then waits until the pod watch shows them.
async fn write_costs(
    ctx: &Context,
    idle_first: &IdleFirst,
    namespace: &str,
    plan: &ScaleDownPlan,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    for (name, cost) in &plan.costs {
        let patch =
            Patch::Merge(json!({"metadata": {"annotations": {DELETION_COST: cost.to_string()}}}));
        let params = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch(name, &params, &patch).await {
            Ok(_) => {}
            // Gone since the cache listed it: nothing left to protect.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(format!(
                    "cannot set {DELETION_COST} on pod {name:?}: {error}"
                ));
            }
        }
    }
    let deadline = Instant::now() + COSTS_SEEN_WITHIN;
    while !idle_first.pods.shows(namespace, &plan.costs) {
        if Instant::now() >= deadline {
            warn!(
                pods = plan.costs.len(),
                "the pod watch has not shown the deletion costs; scaling anyway"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Today's scale-down, with why IdleFirst could not be applied in its reason and
/// in a Warning Event.
async fn fallback(ctx: &Context, queue: &TaskQueue, decision: Decision, why: String) -> Decision {
    ctx.metrics.error("IdleFirstUnavailable");
    warn!(name = %queue.name_any(), %why, "idle-first unavailable; scaling down without it");
    let note = format!("scaling down without choosing idle pods: {why}");
    ctx.events
        .warn(queue, "IdleFirstUnavailable", "ScaleDown", note)
        .await;
    Decision {
        reason: format!("{}; idle pods not chosen: {why}", decision.reason),
        ..decision
    }
}
