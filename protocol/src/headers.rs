//! warren's own AMQP headers: what a warren worker adds to a result message
//! ([`ResultMetadata`]) and to a message it moves to the dead-letter queue
//! ([`DeadLetter`]).
//!
//! The header names and the dead-letter reasons are part of the wire contract:
//! clients, dashboards and operators read them, so they are spelled here only and
//! every other crate encodes and decodes through these types.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::DecodeError;

/// Result header: how long the handler ran, in (fractional) milliseconds.
pub const RUNTIME_MS: &str = "x-warren-runtime-ms";
/// Result header: the worker's concurrency, so a client can compute ideal throughput.
pub const CONCURRENCY: &str = "x-warren-concurrency";
/// Dead-letter header: why the message was dead-lettered ([`DeadLetterReason`]).
pub const REASON: &str = "x-warren-reason";
/// Dead-letter header: the error, worded for a person.
pub const ERROR: &str = "x-warren-error";
/// Dead-letter header: the queue the message was consumed from.
pub const QUEUE: &str = "x-warren-queue";
/// Dead-letter header: the worker that dead-lettered it.
pub const WORKER: &str = "x-warren-worker";

/// What a warren worker reports about running a task, next to its result.
///
/// Both fields are optional on the way in: a Celery worker sends neither, and a
/// value of the wrong type is ignored rather than failing the result it rides on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResultMetadata {
    /// Handler run time.
    pub runtime: Option<Duration>,
    /// The worker's concurrency.
    pub concurrency: Option<u32>,
}

impl ResultMetadata {
    /// The result headers (the runtime as fractional milliseconds).
    pub fn to_headers(&self) -> FieldTable {
        let mut headers = FieldTable::default();
        if let Some(runtime) = self.runtime {
            let millis = runtime.as_secs_f64() * 1000.0;
            headers.insert(RUNTIME_MS.into(), AMQPValue::Double(millis));
        }
        if let Some(concurrency) = self.concurrency {
            headers.insert(
                CONCURRENCY.into(),
                AMQPValue::LongLongInt(i64::from(concurrency)),
            );
        }
        headers
    }

    /// Reads the metadata of a result message; absent or unusable values are `None`.
    pub fn from_headers(headers: &FieldTable) -> Self {
        let runtime = headers
            .inner()
            .get(RUNTIME_MS)
            .and_then(float)
            .filter(|ms| *ms >= 0.0)
            // try_: a huge or infinite value from a foreign producer must not panic.
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok());
        let concurrency = headers
            .inner()
            .get(CONCURRENCY)
            .and_then(integer)
            .and_then(|n| u32::try_from(n).ok());
        Self {
            runtime,
            concurrency,
        }
    }
}

/// Why a message was moved to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Not a task message warren can read.
    Undecodable,
    /// No handler is registered for the task name.
    UnknownTask,
    /// The handler failed and no retry was left.
    Failed,
}

impl DeadLetterReason {
    pub const ALL: [Self; 3] = [Self::Undecodable, Self::UnknownTask, Self::Failed];

    /// The stable name written to `x-warren-reason` (and used as a metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::UnknownTask => "unknown-task",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeadLetterReason {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or_else(|| DecodeError::MalformedHeader {
                name: REASON,
                reason: format!(
                    "{text:?} is not a dead-letter reason (expected undecodable, unknown-task or failed)"
                ),
            })
    }
}

/// Why and where a message was dead-lettered: the headers a warren worker adds to
/// the original message's own before publishing it to `<queue>.dead-letter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub reason: DeadLetterReason,
    pub error: String,
    pub queue: String,
    pub worker: String,
}

impl DeadLetter {
    /// Adds the dead-letter headers to `headers`, replacing earlier ones.
    pub fn write_to(&self, headers: &mut FieldTable) {
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        headers.insert(REASON.into(), text(self.reason.as_str()));
        headers.insert(ERROR.into(), text(&self.error));
        headers.insert(QUEUE.into(), text(&self.queue));
        headers.insert(WORKER.into(), text(&self.worker));
    }

    /// Reads the dead-letter headers of a message taken from a dead-letter queue.
    pub fn from_headers(headers: &FieldTable) -> Result<Self, DecodeError> {
        Ok(Self {
            reason: required_text(headers, REASON)?.parse()?,
            error: required_text(headers, ERROR)?,
            queue: required_text(headers, QUEUE)?,
            worker: required_text(headers, WORKER)?,
        })
    }
}

fn required_text(headers: &FieldTable, name: &'static str) -> Result<String, DecodeError> {
    match headers.inner().get(name) {
        None => Err(DecodeError::NotDeadLettered(name)),
        Some(AMQPValue::LongString(s)) => Ok(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Ok(s.as_str().to_owned()),
        // The AMQP type, not the value: a byte array's Debug form is several times
        // its size, and a nested table's is unbounded.
        Some(other) => Err(DecodeError::MalformedHeader {
            name,
            reason: format!("expected a string, got an AMQP {}", other.get_type()),
        }),
    }
}

fn float(value: &AMQPValue) -> Option<f64> {
    match value {
        AMQPValue::Double(f) => Some(*f),
        AMQPValue::Float(f) => Some(f64::from(*f)),
        // Rounding an integer beyond 2^53 is harmless: no runtime is that long.
        other => integer(other).map(|n| n as f64),
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
