//! `warren-worker`: serves the demo tasks `task_a` and `task_b` from one queue.
//!
//! The demo tasks live here, with the binary, so that a user of the
//! `warren_worker` library compiles only the runtime.

mod demo;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::info;
use warren_process::{LogFormat, Probes, init_tracing, serve_health, shutdown_on_signal};
use warren_worker::config::{DEFAULT_AMQP_URL, default_name};
use warren_worker::metrics::WorkerMetrics;
use warren_worker::{RetryPolicy, Worker, WorkerConfig};

use crate::demo::demo_registry;

/// Consume Celery-compatible task messages from one RabbitMQ queue and run them.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Queue to consume (declared as Celery declares it: durable, direct exchange of the same name).
    #[arg(long, default_value = "queue_a")]
    queue: String,
    /// Tasks run at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Unacknowledged deliveries the broker may push [default: concurrency].
    #[arg(long)]
    prefetch: Option<u16>,
    /// Broker URL; the password is never logged.
    #[arg(long, env = "WARREN_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_default_value = true)]
    amqp_url: String,
    /// Connection name and result `worker` field [default: $HOSTNAME, the pod name].
    #[arg(long)]
    name: Option<String>,
    /// Time in-flight tasks get to finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace_period: Duration,
    /// Retries of a retryable failure before a FAILURE result and dead-lettering.
    #[arg(long, default_value_t = 3)]
    max_retries: u32,
    /// First retry delay; doubles each retry.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    retry_backoff: Duration,
    /// Address of /healthz, /readyz and /metrics ("off" to disable).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format, "info,lapin=off")?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let prefetch = match args.prefetch {
        Some(p) => p,
        None => u16::try_from(args.concurrency).context("--concurrency must be at most 65535")?,
    };
    if usize::from(prefetch) < args.concurrency {
        bail!(
            "--prefetch ({prefetch}) must be at least --concurrency ({})",
            args.concurrency
        );
    }
    let config = WorkerConfig {
        amqp_url: args.amqp_url,
        queue: args.queue,
        concurrency: args.concurrency,
        prefetch,
        name: args.name.unwrap_or_else(default_name),
        grace_period: args.grace_period,
        retry: RetryPolicy {
            max_retries: args.max_retries,
            base: args.retry_backoff,
            ..RetryPolicy::default()
        },
        ..WorkerConfig::new("")
    };
    let worker = Worker::new(config, demo_registry());
    let shutdown = CancellationToken::new();
    if args.listen != "off" {
        let addr: SocketAddr = args.listen.parse().with_context(|| {
            format!(
                "--listen {:?} is not an address like 0.0.0.0:8080",
                args.listen
            )
        })?;
        serve_health(addr, probes(worker.metrics()), shutdown.clone()).await?;
    }
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    worker.run(shutdown).await;
    info!("stopped");
    Ok(())
}

/// Ready while consuming; /metrics is the worker's own registry.
fn probes(metrics: Arc<WorkerMetrics>) -> Probes {
    let readiness = Arc::clone(&metrics);
    Probes::new(
        move || readiness.is_ready(),
        "not consuming",
        move || metrics.encode(),
    )
}
