//! One owner per workload: before a TaskQueue scales its target, the operator
//! checks that no older TaskQueue and no HorizontalPodAutoscaler (KEDA's
//! ScaledObjects act through one) scales the same workload. The rule is pure
//! ([`claim`]); this shell gathers the claimants from the controller's TaskQueue
//! cache and a watch of HPAs ([`autoscalers`]).

pub mod autoscalers;
pub mod claim;

use futures::FutureExt;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::conditions::ConditionType;
use crate::crd::TaskQueue;
use autoscalers::Autoscalers;
use claim::{Claimant, Conflict, Workload};

/// What a TaskQueue may do with its workload.
#[derive(Debug, Clone, PartialEq)]
pub enum Ownership {
    /// No one else scales it.
    Owner,
    /// Someone else does: hold, and say who.
    Conflict(Conflict),
    /// The caches have not listed yet, so an older claimant may be unseen: wait.
    Unsynced,
}

/// Where the claimants of a workload are looked up.
#[derive(Clone)]
pub struct Owners {
    queues: Store<TaskQueue>,
    /// `None` where HPAs are not watched (tests of the reconciler alone).
    autoscalers: Option<Autoscalers>,
}

impl Owners {
    pub fn new(queues: Store<TaskQueue>, autoscalers: Option<Autoscalers>) -> Self {
        Self {
            queues,
            autoscalers,
        }
    }

    /// Whether `queue` (in `namespace`) owns the workload it names.
    pub fn of(&self, queue: &TaskQueue, namespace: &str) -> Ownership {
        let listed = self.queues.wait_until_ready().now_or_never().is_some();
        let hpas_known = self.autoscalers.as_ref().is_none_or(Autoscalers::usable);
        if !listed || !hpas_known {
            return Ownership::Unsynced;
        }
        let workload = workload_of(queue, namespace);
        let mut claimants: Vec<Claimant> = self
            .queues
            .state()
            .iter()
            .filter(|other| other.namespace().as_deref() == Some(namespace))
            .filter(|other| workload_of(other, namespace) == workload)
            .map(|other| claimant(other))
            .collect();
        if let Some(autoscalers) = &self.autoscalers {
            claimants.extend(autoscalers.scaling(&workload));
        }
        match claim::conflict(&workload, &claimant(queue), &claimants) {
            None => Ownership::Owner,
            Some(conflict) => Ownership::Conflict(conflict),
        }
    }
}

fn workload_of(queue: &TaskQueue, namespace: &str) -> Workload {
    let target = &queue.spec.scale_target_ref;
    Workload::new(namespace, &target.api_version, &target.kind, &target.name)
}

fn claimant(queue: &TaskQueue) -> Claimant {
    Claimant::TaskQueue {
        name: queue.name_any(),
        created: queue.metadata.creation_timestamp.clone(),
        incumbent: incumbent(queue),
    }
}

/// Whether the TaskQueue's status shows it owning its workload: a ScalingActive
/// condition for any reason but a conflict (paused or unable to read the broker,
/// it still holds the workload).
fn incumbent(queue: &TaskQueue) -> bool {
    queue.status.as_ref().is_some_and(|status| {
        status.conditions.iter().any(|c| {
            c.type_ == ConditionType::ScalingActive.as_str() && c.reason != claim::CONFLICT
        })
    })
}
