//! `warren-worker`: serves the demo tasks `task_a` and `task_b` from one queue.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::info;
use warren_worker::config::{DEFAULT_AMQP_URL, default_name};
use warren_worker::demo::demo_registry;
use warren_worker::{RetryPolicy, Worker, WorkerConfig};

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_format);
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
        reconnect_max: Duration::from_secs(5),
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
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let router = warren_worker::http::router(worker.metrics());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        info!(%addr, "serving /healthz, /readyz, /metrics");
    }
    tokio::spawn(signal_shutdown(shutdown.clone()));
    worker.run(shutdown).await;
    info!("stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
async fn signal_shutdown(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
    shutdown.cancel();
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lapin=off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
