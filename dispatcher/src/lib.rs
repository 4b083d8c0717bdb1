//! warren's dispatcher: a client library that publishes Celery-compatible tasks
//! with publisher confirms and collects their results concurrently, and the
//! `warren-dispatcher` CLI built on it (`send`, `load-test`).

pub mod client;
pub mod error;
pub mod link;
pub mod load_test;
pub mod replies;

pub use client::{Client, ClientConfig, TaskHandle};
pub use error::DispatchError;
pub use replies::TaskReply;
