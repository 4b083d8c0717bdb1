//! The wire format shared by warren's worker and dispatcher.
//!
//! Task messages follow Celery's message protocol v2 with JSON bodies, and results
//! follow Celery's `rpc://` result backend, so that Celery producers can drive warren
//! workers and warren's dispatcher can drive Celery workers. The [`RoutingTable`] maps
//! task names to queues the way Celery's `task_routes` does. warren's own headers on
//! results and dead-lettered messages are in [`headers`].

pub mod amqp;
pub mod error;
pub mod headers;
pub mod result;
pub mod routing;
pub mod task;

pub use error::{DecodeError, RoutingError};
pub use headers::{DeadLetter, DeadLetterReason, ResultMetadata};
pub use result::{ExceptionInfo, TaskResult, TaskStatus};
pub use routing::RoutingTable;
pub use task::{IncomingMessage, TaskMessage};

/// The only content type warren reads and writes (Celery's `task_serializer='json'`).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The content encoding Celery sets for JSON bodies.
pub const CONTENT_ENCODING_UTF8: &str = "utf-8";

#[cfg(test)]
#[path = "decode_fuzz_tests.rs"]
mod decode_fuzz_tests;

#[cfg(test)]
#[path = "header_fuzz_tests.rs"]
mod header_fuzz_tests;

#[cfg(test)]
#[path = "result_fuzz_tests.rs"]
mod result_fuzz_tests;
