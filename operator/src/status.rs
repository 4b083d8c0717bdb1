//! Building a TaskQueue's status from what one reconciliation found and did.
//! Pure: the reconciler writes the result with server-side apply.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::conditions::{ConditionDraft, ConditionType, merge, with_ready};
use crate::crd::TaskQueueStatus;
use crate::decision::{Decision, Limit, QueueReading};
use crate::target::ScaleReading;

/// Something that went wrong, as conditions and Events show it: a stable reason
/// (also the metrics label) and a message a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// The target's counts, and what was decided and done about them.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetFindings<'a> {
    pub scale: ScaleReading,
    /// `None` while paused: nothing is decided.
    pub decision: Option<&'a Decision>,
    /// When the target was scaled in this reconciliation, if it was.
    pub scaled_at: Option<Time>,
}

/// Everything one reconciliation found and did, good or bad.
pub struct Findings<'a> {
    pub previous: Option<&'a TaskQueueStatus>,
    pub generation: Option<i64>,
    pub now: Time,
    pub paused: bool,
    /// The queue as the poller read it, or why it could not be read.
    pub queue: Result<&'a QueueReading, &'a Problem>,
    /// The target, or why it could not be read or scaled.
    pub target: Result<TargetFindings<'a>, &'a Problem>,
}

impl Findings<'_> {
    fn decision(&self) -> Option<&Decision> {
        self.target.as_ref().ok().and_then(|t| t.decision)
    }
}

pub fn build(findings: &Findings<'_>) -> TaskQueueStatus {
    let previous = findings.previous.cloned().unwrap_or_default();
    let drafts = vec![
        broker_reachable(findings),
        scaling_active(findings),
        scaling_limited(findings.decision()),
    ];
    let conditions = merge(
        &previous.conditions,
        with_ready(drafts),
        &findings.now,
        findings.generation,
    );
    let reading = findings.queue.ok();
    let decision = findings.decision();
    let target = findings.target.as_ref().ok();
    TaskQueueStatus {
        observed_generation: findings.generation,
        ready: reading.map(|r| r.ready).or(previous.ready),
        unacked: reading.map(|r| r.unacked).or(previous.unacked),
        backlog: decision.and_then(|d| d.backlog).or(previous.backlog),
        consumers: reading.and_then(|r| r.consumers).or(previous.consumers),
        publish_rate: reading
            .and_then(|r| r.publish_rate)
            .or(previous.publish_rate),
        ack_rate: reading.and_then(|r| r.ack_rate).or(previous.ack_rate),
        // Rounded: a status write per smoothing step would be churn, not news.
        rate_per_replica: decision
            .and_then(|d| d.rate?.per_replica)
            .map(|rate| (rate * 100.0).round() / 100.0)
            .or(previous.rate_per_replica),
        reading_age: reading.map(|r| age(r.age)).or(previous.reading_age),
        replicas: target.map(|t| t.scale.running).or(previous.replicas),
        desired_replicas: decision.map(|d| d.desired).or(previous.desired_replicas),
        last_scale_time: target
            .and_then(|t| t.scaled_at.clone())
            .or(previous.last_scale_time),
        last_decision: decision
            .map(|d| d.reason.clone())
            .or(previous.last_decision),
        conditions,
    }
}

fn broker_reachable(findings: &Findings<'_>) -> ConditionDraft {
    match findings.queue {
        Ok(_) => ConditionType::BrokerReachable.holds("ReadingFresh", "the management API answers"),
        Err(problem) => ConditionType::BrokerReachable.fails(problem.reason, &problem.message),
    }
}

fn scaling_active(findings: &Findings<'_>) -> ConditionDraft {
    let active = ConditionType::ScalingActive;
    if findings.paused {
        return active.fails(
            "Paused",
            "annotation warren.dev/paused is \"true\"; replicas are held",
        );
    }
    match (&findings.target, &findings.queue) {
        (Err(problem), _) => active.fails(problem.reason, &problem.message),
        (Ok(_), Err(_)) => active.fails(
            "BrokerUnreadable",
            "holding replicas until the queue can be read",
        ),
        (Ok(_), Ok(_)) => active.holds("ScalingOnBacklog", "replicas follow the queue's backlog"),
    }
}

fn scaling_limited(decision: Option<&Decision>) -> ConditionDraft {
    let limited = ConditionType::ScalingLimited;
    match decision.and_then(|d| d.limited) {
        Some(Limit::MaxReplicas) => limited.holds(
            "TooManyReplicas",
            "the backlog asks for more than maxReplicas",
        ),
        Some(Limit::MinReplicas) => limited.holds(
            "TooFewReplicas",
            "the backlog asks for fewer than minReplicas",
        ),
        Some(Limit::MaxStep) => {
            limited.holds("ScaleUpStepLimited", "scaleUp.maxStep limits this step")
        }
        None => limited.fails("DesiredWithinRange", "the desired count is within bounds"),
    }
}

fn age(age: Duration) -> String {
    format!("{:.1}s", age.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    const SCALE: ScaleReading = ScaleReading {
        desired: 1,
        running: 1,
    };

    fn reading() -> QueueReading {
        QueueReading {
            ready: 7,
            unacked: 1,
            consumers: Some(2),
            publish_rate: Some(1.5),
            ack_rate: None,
            rates_listed: None,
            age: Duration::from_millis(1200),
        }
    }

    fn findings<'a>(now: i64, queue: Result<&'a QueueReading, &'a Problem>) -> Findings<'a> {
        Findings {
            previous: None,
            generation: Some(3),
            now: Time(Timestamp::from_second(now).expect("time")),
            paused: false,
            queue,
            target: Ok(TargetFindings {
                scale: SCALE,
                decision: None,
                scaled_at: None,
            }),
        }
    }

    fn condition(status: &TaskQueueStatus, type_: ConditionType) -> (&str, &str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == type_.as_str())
            .expect("condition");
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn broker_trouble_is_reported_without_losing_the_last_reading() {
        let reading = reading();
        let good = build(&findings(100, Ok(&reading)));
        assert_eq!(
            (good.ready, good.reading_age.as_deref()),
            (Some(7), Some("1.2s"))
        );
        assert_eq!(condition(&good, ConditionType::Ready), ("True", "Scaling"));
        let problem = Problem {
            reason: "Unauthorized",
            message: "401".into(),
        };
        let bad = build(&Findings {
            previous: Some(&good),
            ..findings(200, Err(&problem))
        });
        assert_eq!(bad.ready, Some(7), "last known reading kept");
        assert_eq!(
            condition(&bad, ConditionType::BrokerReachable),
            ("False", "Unauthorized")
        );
        assert_eq!(
            condition(&bad, ConditionType::ScalingActive),
            ("False", "BrokerUnreadable")
        );
        assert_eq!(
            condition(&bad, ConditionType::Ready),
            ("False", "Unauthorized")
        );
    }

    #[test]
    fn a_target_problem_stops_scaling_and_keeps_the_last_counts() {
        let reading = reading();
        let scaled = build(&findings(1, Ok(&reading)));
        let problem = Problem {
            reason: "TargetNotFound",
            message: "Deployment \"w\" not found".into(),
        };
        let missing = build(&Findings {
            previous: Some(&scaled),
            target: Err(&problem),
            ..findings(2, Ok(&reading))
        });
        assert_eq!(
            condition(&missing, ConditionType::ScalingActive),
            ("False", "TargetNotFound")
        );
        assert_eq!(missing.replicas, Some(1), "last known replicas kept");
    }

    #[test]
    fn paused_and_limited() {
        let reading = reading();
        let paused = build(&Findings {
            paused: true,
            ..findings(1, Ok(&reading))
        });
        assert_eq!(
            condition(&paused, ConditionType::ScalingActive),
            ("False", "Paused")
        );
        let decision = Decision {
            desired: 20,
            reason: "1 -> 20".into(),
            recommendation: Some(20),
            idle: false,
            backlog: Some(500),
            limited: Some(Limit::MaxReplicas),
            rate: None,
        };
        let limited = build(&Findings {
            target: Ok(TargetFindings {
                scale: SCALE,
                decision: Some(&decision),
                scaled_at: None,
            }),
            ..findings(1, Ok(&reading))
        });
        assert_eq!(
            condition(&limited, ConditionType::ScalingLimited),
            ("True", "TooManyReplicas")
        );
        assert_eq!(limited.desired_replicas, Some(20));
        assert_eq!(limited.last_decision.as_deref(), Some("1 -> 20"));
    }
}
