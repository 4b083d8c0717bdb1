//! Status conditions: what the operator reports as Ready, BrokerReachable,
//! ScalingActive and ScalingLimited, merged so that `lastTransitionTime` moves only
//! when a condition's status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition before it is stamped with times and generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub type_: &'static str,
    pub ok: bool,
    pub reason: String,
    pub message: String,
}

impl Observed {
    pub fn new(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ok,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// `observed` plus a Ready condition summarising them; Ready is false with the
/// reason of the first failing condition among BrokerReachable and ScalingActive.
pub fn with_ready(mut observed: Vec<Observed>) -> Vec<Observed> {
    let failing = observed
        .iter()
        .find(|c| !c.ok && matches!(c.type_, "BrokerReachable" | "ScalingActive"))
        .cloned();
    let ready = match failing {
        Some(c) => Observed::new("Ready", false, &c.reason, c.message),
        None => Observed::new(
            "Ready",
            true,
            "Scaling",
            "reading the queue and scaling the target",
        ),
    };
    observed.insert(0, ready);
    observed
}

/// Conditions to write, keeping the transition time of those whose status held.
pub fn merge(
    previous: &[Condition],
    observed: Vec<Observed>,
    now: &Time,
    generation: Option<i64>,
) -> Vec<Condition> {
    observed
        .into_iter()
        .map(|c| {
            let status = if c.ok { "True" } else { "False" }.to_owned();
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == status)
                .map_or_else(|| now.clone(), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.to_owned(),
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

    #[test]
    fn transition_time_moves_only_on_change() {
        let first = merge(
            &[],
            with_ready(vec![Observed::new(
                "BrokerReachable",
                true,
                "ReadingFresh",
                "ok",
            )]),
            &time(100),
            Some(1),
        );
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].type_, "Ready");
        let same = merge(
            &first,
            with_ready(vec![Observed::new(
                "BrokerReachable",
                true,
                "ReadingFresh",
                "ok",
            )]),
            &time(200),
            Some(1),
        );
        assert_eq!(same[1].last_transition_time, time(100));
        let down = merge(
            &same,
            with_ready(vec![Observed::new(
                "BrokerReachable",
                false,
                "Unauthorized",
                "401",
            )]),
            &time(300),
            Some(2),
        );
        assert_eq!(down[1].last_transition_time, time(300));
        assert_eq!(
            (down[0].status.as_str(), down[0].reason.as_str()),
            ("False", "Unauthorized")
        );
        assert_eq!(down[0].observed_generation, Some(2));
    }
}
