//! `/healthz`, `/readyz` and `/metrics`: liveness, readiness and the Prometheus
//! text of a binary's metrics, on an address of its own.
//!
//! Each binary decides what ready means and renders its own metrics; the routes,
//! status codes and content type are the same everywhere, so they are here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The content type of the OpenMetrics text that `prometheus-client` encodes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Ready = dyn Fn() -> bool + Send + Sync;
type Render = dyn Fn() -> String + Send + Sync;

/// What the endpoints report.
#[derive(Clone)]
pub struct Probes {
    ready: Arc<Ready>,
    not_ready: &'static str,
    metrics: Arc<Render>,
}

impl Probes {
    /// `/readyz` answers 200 while `ready()` holds, else 503 with `not_ready` as
    /// the body (say why, for whoever reads `kubectl describe`); `/metrics` serves
    /// what `metrics()` renders in the OpenMetrics text format.
    pub fn new(
        ready: impl Fn() -> bool + Send + Sync + 'static,
        not_ready: &'static str,
        metrics: impl Fn() -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            ready: Arc::new(ready),
            not_ready,
            metrics: Arc::new(metrics),
        }
    }
}

/// The endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} for /healthz, /readyz and /metrics: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The routes, for a caller that serves them itself.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

/// Binds `addr` (port 0 picks a free port), serves the routes on a task of their
/// own until `shutdown`, and returns the address bound, which it also logs.
pub async fn serve_health(
    addr: SocketAddr,
    probes: Probes,
    shutdown: CancellationToken,
) -> Result<SocketAddr, ServeError> {
    let bind_error = |source| ServeError::Bind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    tokio::spawn(async move {
        let served = axum::serve(listener, router(probes))
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(error) = served {
            error!(%error, "the /healthz, /readyz and /metrics server stopped");
        }
    });
    info!(addr = %bound, "serving /healthz, /readyz, /metrics");
    Ok(bound)
}

async fn readyz(State(probes): State<Probes>) -> impl IntoResponse {
    if (probes.ready)() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, probes.not_ready)
    }
}

async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, OPENMETRICS)], (probes.metrics)())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn probes_answer_on_the_bound_port_until_shutdown() {
        let ready = Arc::new(AtomicBool::new(false));
        let probes = Probes::new(
            {
                let ready = Arc::clone(&ready);
                move || ready.load(Ordering::SeqCst)
            },
            "not consuming",
            || "# EOF\n".to_owned(),
        );
        let shutdown = CancellationToken::new();
        let addr = serve_health(([127, 0, 0, 1], 0).into(), probes, shutdown.clone())
            .await
            .expect("binds");
        assert_ne!(addr.port(), 0, "the bound port, not the requested one");
        let get = |path: &'static str| async move {
            let response = reqwest::get(format!("http://{addr}{path}"))
                .await
                .expect("answers");
            let status = response.status().as_u16();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            (status, content_type, response.text().await.expect("body"))
        };
        assert_eq!(get("/healthz").await.2, "ok");
        let (status, _, body) = get("/readyz").await;
        assert_eq!((status, body.as_str()), (503, "not consuming"));
        ready.store(true, Ordering::SeqCst);
        assert_eq!(get("/readyz").await.0, 200);
        let (status, content_type, body) = get("/metrics").await;
        assert_eq!((status, body.as_str()), (200, "# EOF\n"));
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS));

        shutdown.cancel();
        let mut refused = false;
        for _ in 0..100 {
            if reqwest::get(format!("http://{addr}/healthz"))
                .await
                .is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(refused, "still serving 2 s after shutdown");
    }

    #[tokio::test]
    async fn a_taken_port_is_a_bind_error_naming_the_address() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = taken.local_addr().expect("addr");
        let probes = Probes::new(|| true, "", String::new);
        let error = serve_health(addr, probes, CancellationToken::new())
            .await
            .expect_err("taken");
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
    }
}
