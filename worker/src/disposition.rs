//! What becomes of a delivery once it has run (or could not): the result to send
//! back, whether it goes to the dead-letter queue. Pure, so every path is tested
//! without a broker; the runtime then dead-letters, replies and acks, in that order.

use serde_json::Value;
use warren_protocol::{DeadLetterReason, ExceptionInfo, TaskResult};

use crate::registry::TaskError;

/// How running a delivery ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded(Value),
    /// The handler failed and no retry is left (or the failure is not retryable).
    Failed {
        error: TaskError,
        attempts: u32,
    },
    /// The message is not a task warren can read.
    Undecodable(String),
    /// No handler is registered for the task name.
    UnknownTask(String),
}

/// What the runtime must do before it acks.
#[derive(Debug, Clone, PartialEq)]
pub struct Disposition {
    pub reply: Option<TaskResult>,
    pub dead_letter: Option<(DeadLetterReason, String)>,
}

/// Facts about the delivery that shape the reply.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    /// The task id, when it could be read (header `id` or `correlation_id`).
    pub task_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
    pub ignore_result: bool,
    pub worker: &'a str,
}

pub fn dispose(outcome: Outcome, delivered: Delivered<'_>) -> Disposition {
    let (result, dead_letter) = match outcome {
        Outcome::Succeeded(value) => (Ok(value), None),
        Outcome::Failed { error, attempts } => {
            let detail = format!("{error} (after {attempts} attempt(s))");
            (
                Err(error.exception),
                Some((DeadLetterReason::Failed, detail)),
            )
        }
        Outcome::Undecodable(reason) => (
            Err(ExceptionInfo {
                exc_type: "DecodeError".into(),
                exc_message: vec![Value::String(reason.clone())],
                exc_module: "kombu.exceptions".into(),
            }),
            Some((DeadLetterReason::Undecodable, reason)),
        ),
        Outcome::UnknownTask(name) => {
            let detail = format!("task {name:?} is not registered on this worker");
            (
                Err(ExceptionInfo {
                    exc_type: "NotRegistered".into(),
                    exc_message: vec![Value::String(name)],
                    exc_module: "celery.exceptions".into(),
                }),
                Some((DeadLetterReason::UnknownTask, detail)),
            )
        }
    };
    let wants_reply = !delivered.ignore_result || result.is_err();
    let reply = match (delivered.task_id, delivered.reply_to, wants_reply) {
        (Some(id), Some(_), true) => Some(
            match result {
                Ok(value) => TaskResult::success(id, value),
                Err(exception) => TaskResult::failure(id, &exception, None),
            }
            .from_worker(delivered.worker),
        ),
        _ => None,
    };
    Disposition { reply, dead_letter }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warren_protocol::TaskStatus;

    fn delivered(
        task_id: Option<&'static str>,
        reply_to: Option<&'static str>,
    ) -> Delivered<'static> {
        Delivered {
            task_id,
            reply_to,
            ignore_result: false,
            worker: "worker-a-1",
        }
    }

    #[test]
    fn table() {
        let failed = Outcome::Failed {
            error: TaskError::fatal("ValueError", "bad"),
            attempts: 4,
        };
        // (outcome, task id, reply_to, expected reply status, expected dead-letter reason)
        let cases = [
            (
                Outcome::Succeeded(json!(1)),
                Some("t"),
                Some("r"),
                Some(TaskStatus::Success),
                None,
            ),
            (Outcome::Succeeded(json!(1)), Some("t"), None, None, None),
            (
                failed.clone(),
                Some("t"),
                Some("r"),
                Some(TaskStatus::Failure),
                Some(DeadLetterReason::Failed),
            ),
            (
                failed,
                Some("t"),
                None,
                None,
                Some(DeadLetterReason::Failed),
            ),
            (
                Outcome::Undecodable("x".into()),
                Some("t"),
                Some("r"),
                Some(TaskStatus::Failure),
                Some(DeadLetterReason::Undecodable),
            ),
            (
                Outcome::Undecodable("x".into()),
                None,
                Some("r"),
                None,
                Some(DeadLetterReason::Undecodable),
            ),
            (
                Outcome::UnknownTask("z".into()),
                Some("t"),
                Some("r"),
                Some(TaskStatus::Failure),
                Some(DeadLetterReason::UnknownTask),
            ),
        ];
        for (i, (outcome, id, reply_to, status, reason)) in cases.into_iter().enumerate() {
            let d = dispose(outcome, delivered(id, reply_to));
            assert_eq!(d.reply.as_ref().map(|r| r.status), status, "case {i}");
            assert_eq!(d.dead_letter.as_ref().map(|(r, _)| *r), reason, "case {i}");
            if let Some(reply) = &d.reply {
                assert_eq!(reply.task_id, "t");
                assert_eq!(reply.worker.as_deref(), Some("worker-a-1"));
            }
        }
    }

    #[test]
    fn ignore_result_still_reports_failures() {
        let mut facts = delivered(Some("t"), Some("r"));
        facts.ignore_result = true;
        assert_eq!(dispose(Outcome::Succeeded(json!(1)), facts).reply, None);
        let failed = Outcome::Failed {
            error: TaskError::fatal("ValueError", "bad"),
            attempts: 1,
        };
        assert!(dispose(failed, facts).reply.is_some());
    }

    #[test]
    fn failures_read_as_python_exceptions() {
        let d = dispose(
            Outcome::UnknownTask("celery_app.task_z".into()),
            delivered(Some("t"), Some("r")),
        );
        let exc = d
            .reply
            .expect("reply")
            .exception()
            .expect("shape")
            .expect("failure");
        assert_eq!(exc.exc_type, "NotRegistered");
        assert_eq!(exc.exc_module, "celery.exceptions");
        let (_, detail) = d.dead_letter.expect("dead letter");
        assert!(detail.contains("celery_app.task_z"));
    }
}
