//! warren's task runtime: consume Celery protocol v2 task messages from RabbitMQ,
//! run registered handlers with bounded concurrency, publish `rpc://` results before
//! acking, retry and dead-letter failures, and shut down without losing work.
//!
//! The `warren-worker` binary and its demo tasks need the default feature `cli`;
//! depend on this crate with `default-features = false` for the runtime alone.
//!
//! ```no_run
//! use warren_worker::{TaskRegistry, Worker, WorkerConfig};
//! # async fn example() {
//! let registry = TaskRegistry::new().register("add", |req: warren_worker::TaskRequest| async move {
//!     let a = req.arg("a", 0).and_then(|v| v.as_i64()).unwrap_or(0);
//!     let b = req.arg("b", 1).and_then(|v| v.as_i64()).unwrap_or(0);
//!     Ok(serde_json::json!(a + b))
//! });
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! Worker::new(WorkerConfig::new("queue_a"), registry).run(shutdown).await;
//! # }
//! ```

pub mod config;
pub mod delivery;
pub mod disposition;
pub mod metrics;
pub mod registry;
pub mod retry;
pub mod runtime;

pub use config::WorkerConfig;
pub use registry::{TaskError, TaskRegistry, TaskRequest};
pub use retry::RetryPolicy;
pub use runtime::Worker;
