//! Typed errors for reading messages and routing tasks, worded for the person who
//! has to fix the producer or the configuration.

use thiserror::Error;

/// Why a message could not be read as a Celery protocol v2 task or an rpc:// result.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error(
        "content type {0:?} is not supported: warren reads application/json only \
         (set Celery's task_serializer and result_serializer to 'json')"
    )]
    UnsupportedContentType(String),
    #[error("body is not valid JSON: {0}")]
    InvalidJson(#[from] serde_json::Error),
    #[error("body must be the JSON array [args, kwargs, embed] of protocol v2: {0}")]
    MalformedBody(String),
    #[error(
        "header {0:?} is missing: this is not a Celery protocol v2 task message \
         (protocol v1 is not supported)"
    )]
    MissingHeader(&'static str),
    #[error(
        "header {0:?} is missing: this message was not dead-lettered by a warren worker \
         (read it from a <queue>.dead-letter queue)"
    )]
    NotDeadLettered(&'static str),
    #[error("header {name:?} is malformed: {reason}")]
    MalformedHeader { name: &'static str, reason: String },
    #[error(
        "result body is JSON but not a Celery rpc:// result \
         (an object with task_id, status, result and traceback): {0}"
    )]
    NotAResult(#[source] serde_json::Error),
    #[error("result field {name:?} is malformed: {reason}")]
    MalformedResult { name: &'static str, reason: String },
}

/// Why a task name could not be sent anywhere, or a routing rule not be read.
#[derive(Debug, Error)]
pub enum RoutingError {
    #[error("no route for task {task:?}; known routes: {known}")]
    NoRoute { task: String, known: String },
    #[error("routing rule {rule:?} is malformed: expected TASK=QUEUE (for example task_a=queue_a)")]
    MalformedRule { rule: String },
    #[error("cannot read routing file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
