//! Result messages of Celery's `rpc://` backend.
//!
//! A worker publishes one to the default exchange with routing key = the task's
//! `reply_to` and `correlation_id` = task id. A FAILURE carries the exception as
//! `{exc_type, exc_message, exc_module}` so that a Python client re-raises it.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::DecodeError;
use crate::task::kind_of;

/// Final (or retry) state of a task, spelled as Celery spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Success,
    Failure,
    Retry,
    Started,
    /// Any other state a Celery backend may report (PENDING, REVOKED, custom).
    #[serde(other)]
    Other,
}

impl TaskStatus {
    /// SUCCESS and FAILURE end a task; other states are progress reports.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure)
    }
}

/// An exception in the shape Celery's JSON serializer gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExceptionInfo {
    pub exc_type: String,
    pub exc_message: Vec<Value>,
    pub exc_module: String,
}

impl ExceptionInfo {
    /// An exception of a Python builtin type (`ValueError`, `KeyError`, ...).
    pub fn builtin(exc_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            exc_type: exc_type.into(),
            exc_message: vec![json!(message.into())],
            exc_module: "builtins".into(),
        }
    }

    /// The message text, joined as Python's `str(exc)` would for one argument.
    pub fn message(&self) -> String {
        match self.exc_message.as_slice() {
            [Value::String(s)] => s.clone(),
            other => Value::Array(other.to_vec()).to_string(),
        }
    }
}

/// One `rpc://` result message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub task_id: String,
    pub status: TaskStatus,
    /// The return value on SUCCESS, an [`ExceptionInfo`] object on FAILURE.
    pub result: Value,
    pub traceback: Option<String>,
    #[serde(default)]
    pub children: Vec<Value>,
    #[serde(default)]
    pub date_done: Option<String>,
    /// The worker that ran the task; Celery writes this key with `result_extended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

impl TaskResult {
    pub fn success(task_id: impl Into<String>, value: Value) -> Self {
        Self::new(task_id.into(), TaskStatus::Success, value, None)
    }

    pub fn failure(
        task_id: impl Into<String>,
        exception: &ExceptionInfo,
        traceback: Option<String>,
    ) -> Self {
        let result = serde_json::to_value(exception).unwrap_or(Value::Null);
        Self::new(task_id.into(), TaskStatus::Failure, result, traceback)
    }

    fn new(task_id: String, status: TaskStatus, result: Value, traceback: Option<String>) -> Self {
        let date_done = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
        Self {
            task_id,
            status,
            result,
            traceback,
            children: Vec::new(),
            date_done: Some(date_done),
            worker: None,
        }
    }

    /// Names the worker that produced this result.
    pub fn from_worker(mut self, worker: impl Into<String>) -> Self {
        self.worker = Some(worker.into());
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(body).map_err(|e| {
            // serde stops at the first thing the struct cannot take, so its error
            // alone can call valid JSON of the wrong shape "not valid JSON" (a null
            // status) or miss that the JSON is broken further on. Reading the body
            // again as plain JSON, on this error path only, tells the two apart.
            let value = match serde_json::from_slice::<Value>(body) {
                Ok(value) => value,
                Err(syntax) => return DecodeError::InvalidJson(syntax),
            };
            // serde names a missing field but not a mistyped one (only its column).
            match misfit(&value) {
                Some((name, reason)) => DecodeError::MalformedResult { name, reason },
                None => DecodeError::NotAResult(e),
            }
        })
    }

    /// The exception of a FAILURE result, if it is in Celery's shape.
    pub fn exception(&self) -> Result<Option<ExceptionInfo>, DecodeError> {
        if self.status != TaskStatus::Failure {
            return Ok(None);
        }
        // serde would also read the struct from an array ([type, message, module]);
        // Celery writes an object only, and a bare array is more likely a mistake.
        if !self.result.is_object() {
            return Err(DecodeError::MalformedResult {
                name: "result",
                reason: format!(
                    "a FAILURE result must be an object with exc_type/exc_message/exc_module, found a JSON {}",
                    kind_of(&self.result)
                ),
            });
        }
        serde_json::from_value(self.result.clone())
            .map(Some)
            .map_err(|e| DecodeError::MalformedResult {
                name: "result",
                reason: format!("a FAILURE result must carry exc_type/exc_message/exc_module: {e}"),
            })
    }
}

/// The first field of a result object whose JSON type [`TaskResult`] cannot take.
fn misfit(body: &Value) -> Option<(&'static str, String)> {
    let Value::Object(fields) = body else {
        return None;
    };
    let strings = [
        ("task_id", false),
        ("status", false),
        ("traceback", true),
        ("date_done", true),
        ("worker", true),
    ];
    for (name, nullable) in strings {
        match fields.get(name) {
            None | Some(Value::String(_)) => {}
            Some(Value::Null) if nullable => {}
            Some(other) => {
                let null = if nullable { " or null" } else { "" };
                let reason = format!("expected a string{null}, found a JSON {}", kind_of(other));
                return Some((name, reason));
            }
        }
    }
    match fields.get("children") {
        None | Some(Value::Array(_)) => None,
        Some(other) => Some((
            "children",
            format!("expected an array, found a JSON {}", kind_of(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_has_celerys_keys() {
        let result = TaskResult::success("id-1", json!({"slept": 0.1})).from_worker("w-1");
        let value: Value = serde_json::from_slice(&result.encode()).expect("json");
        for key in [
            "task_id",
            "status",
            "result",
            "traceback",
            "children",
            "date_done",
        ] {
            assert!(value.get(key).is_some(), "missing {key} in {value}");
        }
        assert_eq!(value["status"], "SUCCESS");
        assert_eq!(value["worker"], "w-1");
        let date = value["date_done"].as_str().expect("date");
        assert!(date.ends_with("+00:00"), "{date} is not Python's isoformat");
        assert_eq!(
            TaskResult::decode(&result.encode()).expect("decodes"),
            result
        );
    }

    #[test]
    fn failure_carries_a_python_exception() {
        let exc = ExceptionInfo::builtin("ValueError", "boom");
        let result = TaskResult::failure("id-2", &exc, Some("Traceback ...".into()));
        let value: Value = serde_json::from_slice(&result.encode()).expect("json");
        assert_eq!(value["status"], "FAILURE");
        assert_eq!(
            value["result"],
            json!({"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"})
        );
        let decoded = TaskResult::decode(&result.encode()).expect("decodes");
        assert_eq!(decoded.exception().expect("shape"), Some(exc));
    }

    #[test]
    fn reads_a_celery_result_without_extended_fields() {
        let body = br#"{"status": "SUCCESS", "result": 3, "traceback": null, "children": [],
            "date_done": "2026-11-28T10:00:00.000001+00:00", "task_id": "abc"}"#;
        let result = TaskResult::decode(body).expect("decodes");
        assert_eq!(result.result, json!(3));
        assert_eq!(result.worker, None);
    }

    #[test]
    fn progress_states_are_not_final() {
        let body = br#"{"status": "REVOKED", "result": null, "traceback": null, "task_id": "x"}"#;
        let result = TaskResult::decode(body).expect("decodes");
        assert_eq!(result.status, TaskStatus::Other);
        assert!(!result.status.is_final());
        assert!(TaskStatus::Failure.is_final());
    }
}
