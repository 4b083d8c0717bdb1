//! Process plumbing shared by warren's binaries (the worker and the operator), so
//! that both log, stop and answer probes the same way: [`init_tracing`] with a
//! [`LogFormat`] flag, [`shutdown_on_signal`] for SIGTERM and SIGINT, and
//! [`serve_health`] for the `/healthz`, `/readyz` and `/metrics` endpoints that
//! Kubernetes probes and Prometheus scrape.

mod health;
mod logging;
mod signals;

pub use health::{Probes, ServeError, router, serve_health};
pub use logging::{LogFormat, TracingInitError, init_tracing};
pub use signals::shutdown_on_signal;
