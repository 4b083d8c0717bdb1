//! Celery message protocol v2 task messages with JSON bodies.
//!
//! Headers carry the task's identity and bookkeeping (`task`, `id`, `retries`, ...);
//! the body is `[args, kwargs, embed]`. Both directions write what Celery 5 writes,
//! so a Celery worker accepts what the dispatcher sends and vice versa.

use std::time::Duration;

use lapin::types::MAX_SHORT_STRING_LENGTH;
use serde_json::{Map, Value, json};

use crate::{CONTENT_TYPE_JSON, DecodeError};

/// One task invocation, as carried by a protocol v2 message.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    pub id: String,
    pub task: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub retries: u32,
    pub eta: Option<String>,
    pub expires: Option<String>,
    /// `[hard, soft]` time limits in seconds, as Celery's `timelimit` header.
    pub timelimit: (Option<f64>, Option<f64>),
    pub root_id: String,
    pub parent_id: Option<String>,
    pub group: Option<String>,
    pub origin: Option<String>,
    pub ignore_result: bool,
    /// The queue the result goes to (`reply_to` property); `None` for fire-and-forget.
    pub reply_to: Option<String>,
    /// Canvas links (`callbacks`, `errbacks`, `chain`, `chord`), kept verbatim.
    pub embed: Value,
}

/// A delivery as it came off the wire, before it is known to be a valid task.
#[derive(Debug, Clone, Copy)]
pub struct IncomingMessage<'a> {
    pub headers: &'a Map<String, Value>,
    pub body: &'a [u8],
    pub content_type: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub reply_to: Option<&'a str>,
}

impl TaskMessage {
    /// A new root task with a fresh id, no retries and no time limits.
    pub fn new(task: impl Into<String>, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        Self {
            root_id: id.clone(),
            id,
            task: task.into(),
            args,
            kwargs,
            retries: 0,
            eta: None,
            expires: None,
            timelimit: (None, None),
            parent_id: None,
            group: None,
            origin: None,
            ignore_result: false,
            reply_to: None,
            embed: json!({"callbacks": null, "errbacks": null, "chain": null, "chord": null}),
        }
    }

    /// The headers Celery 5 writes for a task message.
    pub fn headers(&self) -> Map<String, Value> {
        let args_repr = Value::Array(self.args.clone()).to_string();
        let kwargs_repr = Value::Object(self.kwargs.clone()).to_string();
        let entries = [
            ("lang", json!("py")),
            ("task", json!(self.task)),
            ("id", json!(self.id)),
            ("shadow", Value::Null),
            ("eta", json!(self.eta)),
            ("expires", json!(self.expires)),
            ("group", json!(self.group)),
            ("group_index", Value::Null),
            ("retries", json!(self.retries)),
            ("timelimit", json!([self.timelimit.0, self.timelimit.1])),
            ("root_id", json!(self.root_id)),
            ("parent_id", json!(self.parent_id)),
            ("argsrepr", json!(args_repr)),
            ("kwargsrepr", json!(kwargs_repr)),
            ("origin", json!(self.origin)),
            ("ignore_result", json!(self.ignore_result)),
        ];
        entries
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect()
    }

    /// The JSON body `[args, kwargs, embed]`.
    pub fn body(&self) -> Vec<u8> {
        let body = json!([self.args, self.kwargs, self.embed]);
        body.to_string().into_bytes()
    }

    /// Reads a protocol v2 task message, naming what is wrong when it is not one.
    pub fn decode(message: IncomingMessage<'_>) -> Result<Self, DecodeError> {
        if let Some(content_type) = message.content_type
            && content_type != CONTENT_TYPE_JSON
        {
            return Err(DecodeError::UnsupportedContentType(content_type.to_owned()));
        }
        let headers = message.headers;
        let task = required_str(headers, "task")?;
        let id = match optional_str(headers, "id")? {
            Some(id) => id,
            None => message
                .correlation_id
                .map(str::to_owned)
                .ok_or(DecodeError::MissingHeader("id"))?,
        };
        // The id goes back as the result's correlation_id, an AMQP short string:
        // a longer one would make publishing the result panic (lapin's
        // `ShortString::from`), after the task ran.
        if id.len() > MAX_SHORT_STRING_LENGTH {
            return Err(DecodeError::MalformedHeader {
                name: "id",
                reason: format!(
                    "a task id must fit an AMQP correlation_id ({MAX_SHORT_STRING_LENGTH} \
                     bytes), this one is {} bytes",
                    id.len()
                ),
            });
        }
        let (args, kwargs, embed) = decode_body(message.body)?;
        Ok(Self {
            root_id: optional_str(headers, "root_id")?.unwrap_or_else(|| id.clone()),
            id,
            task,
            args,
            kwargs,
            retries: retries(headers)?,
            eta: optional_str(headers, "eta")?,
            expires: optional_str(headers, "expires")?,
            timelimit: timelimit(headers)?,
            parent_id: optional_str(headers, "parent_id")?,
            group: optional_str(headers, "group")?,
            origin: optional_str(headers, "origin")?,
            ignore_result: ignore_result(headers)?,
            reply_to: message
                .reply_to
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
            embed,
        })
    }
}

type Body = (Vec<Value>, Map<String, Value>, Value);

fn decode_body(body: &[u8]) -> Result<Body, DecodeError> {
    let value: Value = serde_json::from_slice(body)?;
    let Value::Array(mut parts) = value else {
        return Err(DecodeError::MalformedBody(format!(
            "found a JSON {}",
            kind_of(&value)
        )));
    };
    if parts.len() != 3 {
        return Err(DecodeError::MalformedBody(format!(
            "found an array of {} elements",
            parts.len()
        )));
    }
    let embed = parts.pop().unwrap_or(Value::Null);
    let kwargs = match parts.pop() {
        Some(Value::Object(map)) => map,
        Some(Value::Null) => Map::new(),
        Some(other) => {
            return Err(DecodeError::MalformedBody(format!(
                "kwargs is a JSON {}, not an object",
                kind_of(&other)
            )));
        }
        None => Map::new(),
    };
    let args = match parts.pop() {
        Some(Value::Array(args)) => args,
        Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(DecodeError::MalformedBody(format!(
                "args is a JSON {}, not an array",
                kind_of(&other)
            )));
        }
        None => Vec::new(),
    };
    Ok((args, kwargs, embed))
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn required_str(headers: &Map<String, Value>, name: &'static str) -> Result<String, DecodeError> {
    optional_str(headers, name)?.ok_or(DecodeError::MissingHeader(name))
}

fn optional_str(
    headers: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match headers.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(DecodeError::MalformedHeader {
            name,
            reason: format!("expected a string, found a JSON {}", kind_of(other)),
        }),
    }
}

/// A header value for an error message: compact JSON cut at [`SHOWN`] bytes.
///
/// The value comes from whoever published the message and may be megabytes (or
/// deeply nested); the error is logged, sent back as the task's exception and
/// written to the dead-letter headers, where a full copy could push the headers
/// past the broker's frame size. Writing stops at the cap, so a deep value is not
/// walked either.
fn shown(value: &Value) -> String {
    struct Capped(Vec<u8>);
    impl std::io::Write for Capped {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let room = SHOWN - self.0.len();
            if room == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            let taken = data.len().min(room);
            self.0.extend_from_slice(&data[..taken]);
            Ok(taken)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(Vec::new());
    let complete = serde_json::to_writer(&mut out, value).is_ok();
    let mut text = match String::from_utf8(out.0) {
        Ok(text) => text,
        // Cut inside a multi-byte character: keep the whole ones before it.
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            String::from_utf8_lossy(&e.into_bytes()[..valid]).into_owned()
        }
    };
    if !complete {
        text.push_str("...");
    }
    text
}

/// How much of a malformed header value an error message quotes.
const SHOWN: usize = 64;

fn retries(headers: &Map<String, Value>) -> Result<u32, DecodeError> {
    match headers.get("retries") {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| DecodeError::MalformedHeader {
                name: "retries",
                reason: format!(
                    "expected an integer from 0 to {}, found {}",
                    u32::MAX,
                    shown(value)
                ),
            }),
    }
}

fn timelimit(headers: &Map<String, Value>) -> Result<(Option<f64>, Option<f64>), DecodeError> {
    let malformed = |reason: String| DecodeError::MalformedHeader {
        name: "timelimit",
        reason,
    };
    match headers.get("timelimit") {
        None | Some(Value::Null) => Ok((None, None)),
        Some(Value::Array(limits)) if limits.len() == 2 => {
            let limit = |v: &Value| match v {
                Value::Null => Ok(None),
                // The worker turns a limit into a Duration, which panics on a
                // negative or astronomically large number of seconds: reject
                // those here, naming the header, instead.
                Value::Number(n) => match n.as_f64() {
                    Some(s) if Duration::try_from_secs_f64(s).is_ok() => Ok(Some(s)),
                    _ => Err(malformed(format!(
                        "a time limit must be seconds from 0 to {:e}, found {n}",
                        Duration::MAX.as_secs_f64()
                    ))),
                },
                other => Err(malformed(format!(
                    "expected seconds or null, found {}",
                    shown(other)
                ))),
            };
            Ok((limit(&limits[0])?, limit(&limits[1])?))
        }
        Some(other) => Err(malformed(format!(
            "expected [hard, soft], found {}",
            shown(other)
        ))),
    }
}

/// Strict like the other headers: a producer that writes `"false"` or `0` has a
/// bug, and reading it as `false` would hide that bug instead of naming it.
fn ignore_result(headers: &Map<String, Value>) -> Result<bool, DecodeError> {
    match headers.get("ignore_result") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(ignore)) => Ok(*ignore),
        Some(other) => Err(DecodeError::MalformedHeader {
            name: "ignore_result",
            reason: format!("expected true or false, found {}", shown(other)),
        }),
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
