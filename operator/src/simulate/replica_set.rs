//! Which pods the ReplicaSet controller deletes when a Deployment scales down,
//! in the order of its ranking (`ActivePodsWithRanks`) as far as it applies to
//! one node: a pod not yet ready before a ready one, then the lower
//! `controller.kubernetes.io/pod-deletion-cost`, then the one ready most
//! recently, then the newest.

use std::collections::HashMap;

use super::fleet::PodId;

/// What the ranking looks at in a pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub id: PodId,
    pub ready: bool,
    pub ready_at: f64,
    pub created_at: f64,
}

/// The `count` pods deleted first; `costs` are the pods' deletion costs (0 when absent).
pub fn victims(
    mut candidates: Vec<Candidate>,
    count: usize,
    costs: &HashMap<PodId, i32>,
) -> Vec<PodId> {
    let cost = |c: &Candidate| costs.get(&c.id).copied().unwrap_or(0);
    candidates.sort_by(|a, b| {
        (a.ready, cost(a))
            .cmp(&(b.ready, cost(b)))
            .then(b.ready_at.total_cmp(&a.ready_at))
            .then(b.created_at.total_cmp(&a.created_at))
            .then(b.id.cmp(&a.id))
    });
    candidates.into_iter().take(count).map(|c| c.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: PodId, ready: bool, ready_at: f64, created_at: f64) -> Candidate {
        Candidate {
            id,
            ready,
            ready_at,
            created_at,
        }
    }

    #[test]
    fn not_ready_then_cheapest_then_most_recently_ready() {
        let pods = vec![
            pod(0, true, 2.0, 0.0),
            pod(1, true, 9.0, 7.0),
            pod(2, false, 12.0, 10.0),
            pod(3, true, 5.0, 3.0),
        ];
        let none = HashMap::new();
        assert_eq!(victims(pods.clone(), 4, &none), [2, 1, 3, 0]);
        let busy_1 = HashMap::from([(1, 2), (2, 9)]);
        assert_eq!(
            victims(pods, 3, &busy_1),
            [2, 3, 0],
            "a pod not ready goes first whatever its cost; the busy pod last"
        );
    }
}
