//! Settings of a worker, filled from flags by the binary or by hand in tests.

use std::time::Duration;

use crate::retry::RetryPolicy;

pub use warren_protocol::amqp::DEFAULT_AMQP_URL;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub amqp_url: String,
    pub queue: String,
    /// Tasks run at once.
    pub concurrency: usize,
    /// Unacknowledged deliveries the broker may push; defaults to `concurrency` so
    /// that no message waits in one worker while another is idle.
    pub prefetch: u16,
    /// Connection name and result `worker` field; the pod name in Kubernetes.
    pub name: String,
    /// How long in-flight tasks may run after SIGTERM before they are abandoned
    /// (and so redelivered to another worker).
    pub grace_period: Duration,
    pub retry: RetryPolicy,
    /// Upper bound of the reconnect backoff.
    pub reconnect_max: Duration,
    /// Longest a session may take from connecting to consuming: the heartbeat
    /// starts only after the handshake, so a connection that goes silent during
    /// it would otherwise be waited on forever.
    pub setup_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            amqp_url: DEFAULT_AMQP_URL.into(),
            queue: queue.into(),
            concurrency: 1,
            prefetch: 1,
            name: default_name(),
            grace_period: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            reconnect_max: Duration::from_secs(5),
            setup_timeout: Duration::from_secs(30),
        }
    }
}

/// `HOSTNAME` (the pod name in Kubernetes), else `warren-worker-<pid>`.
pub fn default_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("warren-worker-{}", std::process::id()))
}
