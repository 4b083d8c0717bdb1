//! Which pods a scale-down may remove, decided from the target's pods and the
//! queue's consumers: each consumer is matched to a pod by its consumer tag (the
//! pod name, for warren's worker) or, failing that, by its peer address (the pod
//! IP, for clients such as Celery that name nothing); pods holding deliveries are
//! kept, idle ones go first. Pure: the caller reads the pods and the broker.

use crate::broker::occupancy::QueueConsumer;
use crate::decision::Decision;

/// The annotation the ReplicaSet controller ranks victims by (lowest first).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// A pod of the target, as the pod cache holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPod {
    pub name: String,
    pub ip: Option<String>,
    /// The deletion cost it carries now (absent counts as 0).
    pub cost: Option<i32>,
}

/// A pod and the deliveries its consumers hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodWork {
    pub name: String,
    pub unacked: i64,
    /// The deletion cost it carries now.
    pub cost: Option<i32>,
}

/// The target's pods with their work, or why it cannot be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occupancy {
    Known {
        pods: Vec<PodWork>,
        /// Deliveries the queue holds (fresh count) beyond what the lagging
        /// channel statistics attribute: any pod seen idle may hold one.
        unattributed: i64,
    },
    Unknown(String),
}

/// Matches `consumers` of the queue to `pods`. `fresh_unacked` is the queue's
/// current unacked count, which the channel statistics may lag behind.
pub fn occupancy(pods: &[TargetPod], consumers: &[QueueConsumer], fresh_unacked: i64) -> Occupancy {
    let mut unacked: Vec<Option<i64>> = vec![None; pods.len()];
    let mut unmatched: Vec<&QueueConsumer> = Vec::new();
    for consumer in consumers {
        let by_tag = pods.iter().position(|p| p.name == consumer.tag);
        let by_ip = || {
            let peer = consumer.peer_host.as_deref()?;
            let mut same_ip = pods
                .iter()
                .enumerate()
                .filter(|(_, p)| p.ip.as_deref() == Some(peer));
            // Pods sharing an address (hostNetwork) cannot be told apart.
            match (same_ip.next(), same_ip.next()) {
                (Some((index, _)), None) => Some(index),
                _ => None,
            }
        };
        match by_tag.or_else(by_ip) {
            Some(index) => *unacked[index].get_or_insert(0) += consumer.unacked,
            None => unmatched.push(consumer),
        }
    }
    let silent = unacked.iter().filter(|u| u.is_none()).count();
    if !unmatched.is_empty() && silent > 0 {
        let mut peers: Vec<&str> = unmatched
            .iter()
            .map(|c| c.peer_host.as_deref().unwrap_or("unknown"))
            .collect();
        peers.sort_unstable();
        peers.dedup();
        return Occupancy::Unknown(format!(
            "{} consumer(s) of the queue match no pod of the target by consumer tag or IP \
             (peers {}) while {silent} pod(s) have no consumer",
            unmatched.len(),
            peers.join(", ")
        ));
    }
    let attributed: i64 = consumers.iter().map(|c| c.unacked).sum();
    let pods = pods
        .iter()
        .zip(unacked)
        .map(|(pod, unacked)| PodWork {
            name: pod.name.clone(),
            unacked: unacked.unwrap_or(0),
            cost: pod.cost,
        })
        .collect();
    Occupancy::Known {
        pods,
        unattributed: (fresh_unacked - attributed).max(0),
    }
}

/// A scale-down that removes only idle pods, and the deletion costs that make
/// the ReplicaSet controller pick them.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleDownPlan {
    pub decision: Decision,
    /// Costs to write: only those that differ from what the pods carry.
    pub costs: Vec<(String, i32)>,
    /// Every pod of the target, and whether the broker saw it holding deliveries.
    pub pods: Vec<(String, bool)>,
    /// Idle pods the plan removes.
    pub removed: i32,
}

/// Limits `decision` (from `current` down to `decision.desired`) to the idle pods.
pub fn plan(
    decision: Decision,
    current: i32,
    pods: &[PodWork],
    unattributed: i64,
) -> ScaleDownPlan {
    let wanted = decision.desired;
    let busy_count = pods.iter().filter(|p| p.unacked > 0).count();
    // Deliveries the channel statistics do not show yet may sit on any pod seen
    // idle, so none of them is safe to remove until the statistics catch up.
    let safe_idle = if unattributed > 0 {
        0
    } else {
        pods.len() - busy_count
    };
    let live = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let keep = live.saturating_sub(i32::try_from(safe_idle).unwrap_or(i32::MAX));
    let desired = keep.max(wanted).min(current);
    let removed = (current - desired).max(0);
    let reason = if desired == current && unattributed > 0 {
        format!(
            "hold {current}: {unattributed} delivery(ies) not yet in the channel statistics, \
             so no pod is known to be idle; {}",
            asked(&decision.reason)
        )
    } else if desired == current {
        format!(
            "hold {current}: {busy_count} busy worker(s) and no idle one to remove; {}",
            asked(&decision.reason)
        )
    } else if desired > wanted {
        format!(
            "{current} -> {desired}: {removed} idle worker(s) removed, {busy_count} busy kept; {}",
            asked(&decision.reason)
        )
    } else {
        format!(
            "{}; {removed} idle worker(s) removed, {busy_count} busy kept",
            decision.reason
        )
    };
    let costs = pods
        .iter()
        .map(|p| (p, i32::try_from(p.unacked).unwrap_or(i32::MAX).max(0)))
        .filter(|(p, cost)| p.cost.unwrap_or(0) != *cost)
        .map(|(p, cost)| (p.name.clone(), cost))
        .collect();
    ScaleDownPlan {
        decision: Decision {
            desired,
            reason,
            ..decision
        },
        costs,
        pods: pods
            .iter()
            .map(|p| (p.name.clone(), p.unacked > 0))
            .collect(),
        removed,
    }
}

/// The decision's own reason, for plans that change it.
fn asked(reason: &str) -> String {
    format!("the decision asked {reason}")
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
