//! warren's operator: scales the workload named by each `TaskQueue` on the depth of
//! its RabbitMQ queue.
//!
//! The decision ([`decision`]) and status building ([`status`], [`conditions`]) are
//! pure; I/O lives at the edges: the broker poller ([`broker`]), the scale target
//! ([`target`]), credentials ([`credentials`]), and the thin [`reconciler`].

pub mod broker;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod credentials;
pub mod decision;
pub mod events;
pub mod http;
pub mod interval;
pub mod leader;
mod lock;
pub mod metrics;
pub mod reconciler;
pub mod status;
pub mod target;

pub use crd::{TaskQueue, TaskQueueSpec, TaskQueueStatus};
