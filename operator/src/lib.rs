//! warren's operator: scales the workload named by each `TaskQueue` on the depth of
//! its RabbitMQ queue.
//!
//! The decision ([`decision`]), status building ([`status`], [`conditions`]) and the
//! trust rules for broker credentials ([`access`]) are pure; I/O lives at the edges:
//! the broker poller ([`broker`]), the scale target ([`target`]), Secrets
//! ([`credentials`]), and the thin [`reconciler`]. Scale-downs choose idle pods
//! first ([`scale_down`]: a pure plan, and a shell that reads pods and the broker).
//! A workload has one owner ([`ownership`]): the oldest TaskQueue naming it, or an HPA.

pub mod access;
pub mod broker;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod decision;
pub mod drain;
pub mod events;
pub mod history;
pub mod interval;
pub mod leader;
mod lock;
pub mod metrics;
pub mod ownership;
pub mod reconciler;
pub mod scale_down;
pub mod simulate;
pub mod status;
pub mod target;
pub mod watch_cache;

pub use crd::{TaskQueue, TaskQueueSpec, TaskQueueStatus};
