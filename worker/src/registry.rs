//! Task handlers registered by name, and the request and error types they see.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use warren_protocol::{ExceptionInfo, TaskMessage};

/// What a handler is given: the decoded task, minus the wire bookkeeping.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub id: String,
    pub name: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    /// Attempts already made for this delivery (0 on the first run).
    pub attempt: u32,
}

impl TaskRequest {
    pub fn from_message(message: &TaskMessage, attempt: u32) -> Self {
        Self {
            id: message.id.clone(),
            name: message.task.clone(),
            args: message.args.clone(),
            kwargs: message.kwargs.clone(),
            attempt,
        }
    }

    /// A keyword argument, falling back to a positional one, as Python binds them.
    pub fn arg(&self, name: &str, position: usize) -> Option<&Value> {
        self.kwargs.get(name).or_else(|| self.args.get(position))
    }
}

/// A handler's failure: the exception the caller will see, and whether another
/// attempt could succeed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {}", .exception.exc_type, .exception.message())]
pub struct TaskError {
    pub exception: ExceptionInfo,
    pub retryable: bool,
}

impl TaskError {
    /// A failure that may go away on retry (a timeout, a flaky dependency).
    pub fn retryable(exc_type: &str, message: impl Into<String>) -> Self {
        Self {
            exception: ExceptionInfo::builtin(exc_type, message),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix (bad arguments).
    pub fn fatal(exc_type: &str, message: impl Into<String>) -> Self {
        Self {
            exception: ExceptionInfo::builtin(exc_type, message),
            retryable: false,
        }
    }
}

pub type TaskFuture = Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send>>;
type Handler = Arc<dyn Fn(TaskRequest) -> TaskFuture + Send + Sync>;

/// Handlers by task name. Lookups try the full name, then its last dotted
/// segment, so `celery_app.task_a` finds the handler registered as `task_a`.
#[derive(Clone, Default)]
pub struct TaskRegistry {
    handlers: HashMap<String, Handler>,
}

impl TaskRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register<F, Fut>(mut self, name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(TaskRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |request| Box::pin(handler(request)));
        self.handlers.insert(name.into(), handler);
        self
    }

    pub fn contains(&self, name: &str) -> bool {
        self.handler(name).is_some()
    }

    /// Starts the handler for `request`, or `None` when no handler has its name.
    pub fn call(&self, request: TaskRequest) -> Option<TaskFuture> {
        let handler = self.handler(&request.name)?;
        Some(handler(request))
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    fn handler(&self, name: &str) -> Option<&Handler> {
        let short = name.rsplit('.').next().unwrap_or(name);
        self.handlers.get(name).or_else(|| self.handlers.get(short))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn finds_handlers_by_full_or_short_name() {
        let registry = TaskRegistry::new()
            .register("task_a", |r: TaskRequest| async move { Ok(json!(r.name)) });
        let request = |name: &str| TaskRequest {
            id: "1".into(),
            name: name.into(),
            args: vec![],
            kwargs: Map::new(),
            attempt: 0,
        };
        let out = registry
            .call(request("celery_app.task_a"))
            .expect("handler");
        assert_eq!(out.await.expect("ok"), json!("celery_app.task_a"));
        assert!(registry.call(request("task_z")).is_none());
        assert_eq!(registry.names(), vec!["task_a"]);
    }

    #[test]
    fn arguments_bind_like_python() {
        let mut kwargs = Map::new();
        kwargs.insert("seconds".into(), json!(0.3));
        let request = TaskRequest {
            id: "1".into(),
            name: "t".into(),
            args: vec![json!(0.1), json!("cpu")],
            kwargs,
            attempt: 0,
        };
        assert_eq!(request.arg("seconds", 0), Some(&json!(0.3)));
        assert_eq!(request.arg("mode", 1), Some(&json!("cpu")));
        assert_eq!(request.arg("other", 5), None);
    }
}
