//! warren's dispatcher: a client library that publishes Celery-compatible tasks
//! with publisher confirms and collects their results concurrently. The
//! `warren-dispatcher` CLI built on it (`send`, `load-test`, `plan`) and its
//! load-test harness live with the binary (src/main.rs, feature `cli`), so a
//! library user compiles neither.

pub mod client;
pub mod error;
pub mod link;
pub mod replies;

pub use client::{Client, ClientConfig, TaskHandle};
pub use error::DispatchError;
pub use replies::TaskReply;
