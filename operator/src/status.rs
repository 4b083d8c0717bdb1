//! Building a TaskQueue's status from what one reconciliation saw and decided.
//! Pure: the reconciler writes the result with server-side apply.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{Observed, merge, with_ready};
use crate::crd::TaskQueueStatus;
use crate::decision::{Decision, Limit, QueueReading};
use crate::target::ScaleReading;

/// Everything a reconciliation learned, good or bad.
pub struct Seen<'a> {
    pub previous: Option<&'a TaskQueueStatus>,
    pub generation: Option<i64>,
    pub reading: Option<&'a QueueReading>,
    /// Why the broker could not be read, when it could not.
    pub broker_problem: Option<(&'static str, String)>,
    pub scale: Option<ScaleReading>,
    /// Why the target could not be read or scaled, when it could not.
    pub target_problem: Option<(&'static str, String)>,
    pub decision: Option<&'a Decision>,
    pub paused: bool,
    /// When the target was scaled in this reconciliation.
    pub scaled_at: Option<Time>,
    pub now: Time,
}

pub fn build(seen: Seen<'_>) -> TaskQueueStatus {
    let previous = seen.previous.cloned().unwrap_or_default();
    let mut observed = Vec::new();
    observed.push(match &seen.broker_problem {
        None => Observed::new(
            "BrokerReachable",
            true,
            "ReadingFresh",
            "the management API answers",
        ),
        Some((reason, message)) => Observed::new("BrokerReachable", false, reason, message.clone()),
    });
    observed.push(if seen.paused {
        Observed::new(
            "ScalingActive",
            false,
            "Paused",
            "annotation warren.dev/paused is \"true\"; replicas are held",
        )
    } else if let Some((reason, message)) = &seen.target_problem {
        Observed::new("ScalingActive", false, reason, message.clone())
    } else if seen.broker_problem.is_some() {
        Observed::new(
            "ScalingActive",
            false,
            "BrokerUnreadable",
            "holding replicas until the queue can be read",
        )
    } else {
        Observed::new(
            "ScalingActive",
            true,
            "ScalingOnBacklog",
            "replicas follow the queue's backlog",
        )
    });
    observed.push(match seen.decision.and_then(|d| d.limited) {
        Some(Limit::MaxReplicas) => Observed::new(
            "ScalingLimited",
            true,
            "TooManyReplicas",
            "the backlog asks for more than maxReplicas",
        ),
        Some(Limit::MinReplicas) => Observed::new(
            "ScalingLimited",
            true,
            "TooFewReplicas",
            "the backlog asks for fewer than minReplicas",
        ),
        Some(Limit::MaxStep) => Observed::new(
            "ScalingLimited",
            true,
            "ScaleUpStepLimited",
            "scaleUp.maxStep limits this step",
        ),
        None => Observed::new(
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within bounds",
        ),
    });
    let conditions = merge(
        &previous.conditions,
        with_ready(observed),
        &seen.now,
        seen.generation,
    );
    let reading = seen.reading;
    TaskQueueStatus {
        observed_generation: seen.generation,
        ready: reading.map(|r| r.ready).or(previous.ready),
        unacked: reading.map(|r| r.unacked).or(previous.unacked),
        backlog: seen.decision.and_then(|d| d.backlog).or(previous.backlog),
        consumers: reading.map(|r| r.consumers).or(previous.consumers),
        publish_rate: reading
            .and_then(|r| r.publish_rate)
            .or(previous.publish_rate),
        ack_rate: reading.and_then(|r| r.ack_rate).or(previous.ack_rate),
        reading_age: reading.map(|r| age(r.age)).or(previous.reading_age),
        replicas: seen.scale.map(|s| s.running).or(previous.replicas),
        desired_replicas: seen
            .decision
            .map(|d| d.desired)
            .or(previous.desired_replicas),
        last_scale_time: seen.scaled_at.or(previous.last_scale_time),
        last_decision: seen
            .decision
            .map(|d| d.reason.clone())
            .or(previous.last_decision),
        conditions,
    }
}

fn age(age: Duration) -> String {
    format!("{:.1}s", age.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn seen<'a>(now: i64) -> Seen<'a> {
        Seen {
            previous: None,
            generation: Some(3),
            reading: None,
            broker_problem: None,
            scale: None,
            target_problem: None,
            decision: None,
            paused: false,
            scaled_at: None,
            now: Time(Timestamp::from_second(now).expect("time")),
        }
    }

    fn condition<'a>(status: &'a TaskQueueStatus, type_: &str) -> (&'a str, &'a str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn broker_trouble_is_reported_without_losing_the_last_reading() {
        let reading = QueueReading {
            ready: 7,
            unacked: 1,
            consumers: 2,
            publish_rate: Some(1.5),
            ack_rate: None,
            age: Duration::from_millis(1200),
        };
        let good = build(Seen {
            reading: Some(&reading),
            ..seen(100)
        });
        assert_eq!(
            (good.ready, good.reading_age.as_deref()),
            (Some(7), Some("1.2s"))
        );
        assert_eq!(condition(&good, "Ready"), ("True", "Scaling"));
        let bad = build(Seen {
            previous: Some(&good),
            broker_problem: Some(("Unauthorized", "401".into())),
            ..seen(200)
        });
        assert_eq!(bad.ready, Some(7), "last known reading kept");
        assert_eq!(
            condition(&bad, "BrokerReachable"),
            ("False", "Unauthorized")
        );
        assert_eq!(
            condition(&bad, "ScalingActive"),
            ("False", "BrokerUnreadable")
        );
        assert_eq!(condition(&bad, "Ready"), ("False", "Unauthorized"));
    }

    #[test]
    fn paused_and_limited() {
        let paused = build(Seen {
            paused: true,
            ..seen(1)
        });
        assert_eq!(condition(&paused, "ScalingActive"), ("False", "Paused"));
        let decision = Decision {
            desired: 20,
            reason: "1 -> 20".into(),
            recommendation: Some(20),
            idle: false,
            backlog: Some(500),
            limited: Some(Limit::MaxReplicas),
        };
        let limited = build(Seen {
            decision: Some(&decision),
            ..seen(1)
        });
        assert_eq!(
            condition(&limited, "ScalingLimited"),
            ("True", "TooManyReplicas")
        );
        assert_eq!(limited.desired_replicas, Some(20));
        assert_eq!(limited.last_decision.as_deref(), Some("1 -> 20"));
    }
}
