//! warren's operator: scales the workload named by each `TaskQueue` on the depth of
//! its RabbitMQ queue.

pub mod crd;
pub mod decision;
pub mod interval;

pub use crd::{TaskQueue, TaskQueueSpec, TaskQueueStatus};
