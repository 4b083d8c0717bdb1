//! Status conditions: what the operator reports as Ready, BrokerReachable,
//! ScalingActive and ScalingLimited, merged so that `lastTransitionTime` moves only
//! when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The conditions a TaskQueue's status carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The summary: false with the reason of the first failing condition.
    Ready,
    /// The management API answered for this queue.
    BrokerReachable,
    /// Replicas follow the backlog (not paused, target scalable, broker read).
    ScalingActive,
    /// A bound (min, max, step) holds the desired count back.
    ScalingLimited,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::BrokerReachable => "BrokerReachable",
            Self::ScalingActive => "ScalingActive",
            Self::ScalingLimited => "ScalingLimited",
        }
    }

    /// This condition, true for `reason`.
    pub fn holds(self, reason: &str, message: impl Into<String>) -> ConditionDraft {
        ConditionDraft::new(self, true, reason, message)
    }

    /// This condition, false for `reason`.
    pub fn fails(self, reason: &str, message: impl Into<String>) -> ConditionDraft {
        ConditionDraft::new(self, false, reason, message)
    }
}

/// A condition before it is stamped with times and generation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionDraft {
    pub type_: ConditionType,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl ConditionDraft {
    fn new(type_: ConditionType, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// `drafts` plus a Ready condition summarising them; Ready is false with the
/// reason of the first failing condition among BrokerReachable and ScalingActive.
pub fn with_ready(mut drafts: Vec<ConditionDraft>) -> Vec<ConditionDraft> {
    let failing = drafts
        .iter()
        .find(|c| {
            !c.ok
                && matches!(
                    c.type_,
                    ConditionType::BrokerReachable | ConditionType::ScalingActive
                )
        })
        .cloned();
    let ready = match failing {
        Some(c) => ConditionType::Ready.fails(&c.reason, c.message),
        None => ConditionType::Ready.holds("Scaling", "reading the queue and scaling the target"),
    };
    drafts.insert(0, ready);
    drafts
}

/// Conditions to write, keeping the transition time of those whose status held.
pub fn merge(
    previous: &[Condition],
    drafts: Vec<ConditionDraft>,
    now: &Time,
    generation: Option<i64>,
) -> Vec<Condition> {
    drafts
        .into_iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" }.to_owned();
            let type_ = c.type_.as_str();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == type_ && p.status == status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: type_.to_owned(),
                status,
                reason: c.reason,
                message: c.message,
                last_transition_time,
                observed_generation: generation,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    fn reachable(ok: bool) -> Vec<ConditionDraft> {
        let draft = if ok {
            ConditionType::BrokerReachable.holds("ReadingFresh", "ok")
        } else {
            ConditionType::BrokerReachable.fails("Unauthorized", "401")
        };
        with_ready(vec![draft])
    }

    #[test]
    fn transition_time_moves_only_on_change() {
        let first = merge(&[], reachable(true), &time(100), Some(1));
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].type_, "Ready");
        let same = merge(&first, reachable(true), &time(200), Some(1));
        assert_eq!(same[1].last_transition_time, time(100));
        let down = merge(&same, reachable(false), &time(300), Some(2));
        assert_eq!(down[1].last_transition_time, time(300));
        assert_eq!(
            (down[0].status.as_str(), down[0].reason.as_str()),
            ("False", "Unauthorized")
        );
        assert_eq!(down[0].observed_generation, Some(2));
    }

    #[test]
    fn ready_takes_the_first_failing_reason() {
        let drafts = with_ready(vec![
            ConditionType::BrokerReachable.holds("ReadingFresh", "ok"),
            ConditionType::ScalingActive.fails("Paused", "held"),
            ConditionType::ScalingLimited.holds("TooManyReplicas", "max"),
        ]);
        assert_eq!(drafts[0].type_, ConditionType::Ready);
        assert_eq!((drafts[0].ok, drafts[0].reason.as_str()), (false, "Paused"));
    }
}
