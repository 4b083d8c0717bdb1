//! Who may scale a workload when more than one autoscaler names it: the pure rule.
//!
//! Two autoscalers on one workload fight: each writes its own count every poll and
//! the pods they start and stop take running work with them. So a workload has one
//! owner. An autoscaler warren does not run (an HPA, and so a KEDA ScaledObject,
//! whose HPA it is) always keeps it, because it will not yield; among TaskQueues
//! the oldest keeps it, so that creating a second one never takes a workload away
//! from the one already scaling it. Creation times have one-second resolution, so
//! within a second the one already scaling (its status says so) goes first, then
//! the name decides. The others hold until they are the owner.

use std::cmp::Ordering;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use thiserror::Error;

/// A workload as autoscalers name it; the version is left out because
/// `apps/v1` and `apps/v1beta1` name the same Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workload {
    pub namespace: String,
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl Workload {
    pub fn new(namespace: &str, api_version: &str, kind: &str, name: &str) -> Self {
        let group = api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
            .to_owned();
        Self {
            namespace: namespace.to_owned(),
            group,
            kind: kind.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.kind, self.name)
    }
}

/// Something that scales a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimant {
    TaskQueue {
        name: String,
        created: Option<Time>,
        /// Its status shows it scaling (or holding) the workload, not in conflict.
        incumbent: bool,
    },
    /// A HorizontalPodAutoscaler; `scaled_object` names the KEDA ScaledObject
    /// that owns it, when one does.
    Hpa {
        name: String,
        scaled_object: Option<String>,
    },
}

impl fmt::Display for Claimant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TaskQueue { name, .. } => write!(f, "TaskQueue {name:?}"),
            Self::Hpa {
                name,
                scaled_object: Some(owner),
            } => write!(
                f,
                "KEDA ScaledObject {owner:?} (through HorizontalPodAutoscaler {name:?})"
            ),
            Self::Hpa {
                name,
                scaled_object: None,
            } => write!(f, "HorizontalPodAutoscaler {name:?}"),
        }
    }
}

/// The reason of the condition and Event of a TaskQueue that does not own its workload.
pub const CONFLICT: &str = "Conflict";

/// Why a TaskQueue leaves its workload alone: someone else scales it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{workload} is already scaled by {owner}{why}; this TaskQueue holds its replicas and \
     takes over once that one is deleted or names another workload"
)]
pub struct Conflict {
    pub workload: Workload,
    pub owner: Claimant,
    why: &'static str,
}

impl Conflict {
    /// The condition and Event reason.
    pub fn reason(&self) -> &'static str {
        CONFLICT
    }
}

/// Who keeps `workload` from `me` (a TaskQueue), given every claimant of it
/// (`me` among them or not); `None` when `me` owns it.
pub fn conflict<'a>(
    workload: &Workload,
    me: &Claimant,
    others: impl IntoIterator<Item = &'a Claimant>,
) -> Option<Conflict> {
    let held_by = |owner: &Claimant, why| Conflict {
        workload: workload.clone(),
        owner: owner.clone(),
        why,
    };
    let mut older: Option<&Claimant> = None;
    for other in others {
        if other == me {
            continue;
        }
        if matches!(other, Claimant::Hpa { .. }) {
            return Some(held_by(other, ""));
        }
        if precedes(other, me) && older.is_none_or(|o| precedes(other, o)) {
            older = Some(other);
        }
    }
    older.map(|owner| held_by(owner, ", created before this one"))
}

/// Whether TaskQueue `a` goes before `b`: created earlier; in the same second, the
/// incumbent; then by name, so that exactly one of two TaskQueues owns.
fn precedes(a: &Claimant, b: &Claimant) -> bool {
    let key = |c: &Claimant| match c {
        Claimant::TaskQueue {
            name,
            created,
            incumbent,
        } => (created.as_ref().map(|t| t.0), !incumbent, name.clone()),
        Claimant::Hpa { name, .. } => (None, true, name.clone()),
    };
    let ((a_time, a_new, a_name), (b_time, b_new, b_name)) = (key(a), key(b));
    // A TaskQueue without a creation time (not yet stored) comes last.
    let by_time = match (a_time, b_time) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_time
        .then_with(|| a_new.cmp(&b_new))
        .then_with(|| a_name.cmp(&b_name))
        == Ordering::Less
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, second: Option<i64>) -> Claimant {
        Claimant::TaskQueue {
            name: name.to_owned(),
            created: second
                .map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"))),
            incumbent: false,
        }
    }

    fn scaling(name: &str, second: i64) -> Claimant {
        match queue(name, Some(second)) {
            Claimant::TaskQueue { name, created, .. } => Claimant::TaskQueue {
                name,
                created,
                incumbent: true,
            },
            other => other,
        }
    }

    fn hpa(name: &str, scaled_object: Option<&str>) -> Claimant {
        Claimant::Hpa {
            name: name.to_owned(),
            scaled_object: scaled_object.map(str::to_owned),
        }
    }

    fn workload() -> Workload {
        Workload::new("ns", "apps/v1", "Deployment", "worker")
    }

    fn owner(me: &Claimant, all: &[Claimant]) -> Option<Claimant> {
        conflict(&workload(), me, all).map(|c| c.owner)
    }

    #[test]
    fn the_oldest_taskqueue_owns() {
        let (a, b, c) = (
            queue("twin-a", Some(100)),
            queue("twin-b", Some(200)),
            queue("twin-c", Some(300)),
        );
        let all = [c.clone(), a.clone(), b.clone()];
        assert_eq!(owner(&a, &all), None);
        assert_eq!(owner(&b, &all), Some(a.clone()));
        assert_eq!(owner(&c, &all), Some(a.clone()));
        // Once the owner goes, the next oldest takes over.
        let rest = [c.clone(), b.clone()];
        assert_eq!(owner(&b, &rest), None);
        assert_eq!(owner(&c, &rest), Some(b));
    }

    #[test]
    fn same_second_is_settled_by_name_so_exactly_one_owns() {
        let (a, b) = (queue("a", Some(100)), queue("b", Some(100)));
        let all = [a.clone(), b.clone()];
        assert_eq!(owner(&a, &all), None);
        assert_eq!(owner(&b, &all), Some(a));
    }

    #[test]
    fn in_the_same_second_the_one_already_scaling_keeps_it() {
        let (holder, newcomer) = (scaling("b", 100), queue("a", Some(100)));
        let all = [holder.clone(), newcomer.clone()];
        assert_eq!(owner(&holder, &all), None);
        assert_eq!(owner(&newcomer, &all), Some(holder.clone()));
        // Age still comes first: an older newcomer was the owner all along.
        let older = queue("c", Some(99));
        assert_eq!(
            owner(&holder, &[holder.clone(), older.clone()]),
            Some(older)
        );
    }

    #[test]
    fn a_taskqueue_not_yet_stored_comes_last() {
        let (stored, fresh) = (queue("z", Some(100)), queue("a", None));
        let all = [stored.clone(), fresh.clone()];
        assert_eq!(owner(&stored, &all), None);
        assert_eq!(owner(&fresh, &all), Some(stored));
    }

    #[test]
    fn an_hpa_always_owns_even_when_newer() {
        let a = queue("a", Some(100));
        let all = [a.clone(), hpa("keda-hpa-x", Some("x"))];
        let keda = conflict(&workload(), &a, &all).expect("an HPA owns");
        assert_eq!(keda.reason(), "Conflict");
        let message = keda.to_string();
        assert!(
            message.starts_with(
                "Deployment \"worker\" is already scaled by KEDA ScaledObject \"x\" \
                 (through HorizontalPodAutoscaler \"keda-hpa-x\"); this TaskQueue holds"
            ),
            "{message}"
        );
        let plain = conflict(&workload(), &a, &[hpa("web", None)]).expect("HPA");
        assert!(
            plain
                .to_string()
                .contains("scaled by HorizontalPodAutoscaler \"web\";")
        );
    }

    #[test]
    fn alone_it_owns_and_the_message_names_the_older_queue() {
        let a = queue("a", Some(100));
        assert_eq!(owner(&a, std::slice::from_ref(&a)), None);
        let b = queue("b", Some(200));
        let message = conflict(&workload(), &b, &[a, b.clone()])
            .expect("a is older")
            .to_string();
        assert!(
            message.contains("scaled by TaskQueue \"a\", created before this one;"),
            "{message}"
        );
    }

    #[test]
    fn workloads_compare_without_the_version() {
        assert_eq!(
            Workload::new("ns", "apps/v1", "Deployment", "w"),
            Workload::new("ns", "apps/v1beta2", "Deployment", "w")
        );
        assert_ne!(
            Workload::new("ns", "apps/v1", "Deployment", "w"),
            Workload::new("ns", "apps/v1", "StatefulSet", "w")
        );
        assert_eq!(Workload::new("ns", "v1", "Foo", "w").group, "");
    }
}
