//! `warren-operator`: `run` the controller, print the `crd`, or `simulate` policies
//! against an arrival trace.

mod simulate_command;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use kube::CustomResourceExt;
use tokio_util::sync::CancellationToken;
use tracing::warn;
use warren_operator::TaskQueue;
use warren_operator::access::{AccessPolicy, UrlPattern};
use warren_operator::broker::Password;
use warren_operator::controller::{Settings, run};
use warren_operator::credentials::{BrokerAccess, SecretLabel};
use warren_operator::leader::LeaderElector;
use warren_operator::metrics::Metrics;
use warren_process::{LogFormat, Probes, init_tracing, serve_health, shutdown_on_signal};

/// Scale worker Deployments on RabbitMQ queue depth.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the operator (kubeconfig or in-cluster config).
    Run(Box<RunArgs>),
    /// Print the TaskQueue CustomResourceDefinition as YAML.
    Crd,
    /// Replay an arrival trace against TaskQueues under warren and under KEDA + HPA,
    /// in simulated time, and print a table with a row per policy (no cluster, no broker).
    Simulate(Box<simulate_command::SimulateArgs>),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Management API of TaskQueues that set no spec.broker.managementUrl.
    #[arg(
        long,
        env = "WARREN_MANAGEMENT_URL",
        default_value = "http://rabbitmq:15672"
    )]
    management_url: String,
    /// Default management API user (the chart sets it from a Secret).
    #[arg(long, env = "WARREN_MANAGEMENT_USERNAME", default_value = "guest")]
    management_username: String,
    /// Default management API password; read from the environment only, never logged.
    #[arg(
        long = "management-password",
        env = "WARREN_MANAGEMENT_PASSWORD",
        default_value = "guest",
        hide_default_value = true,
        hide_env_values = true
    )]
    management_password: String,
    /// Another management URL that may receive the operator's own credentials
    /// (repeatable, or comma-separated in the environment): an exact URL
    /// (`https://rabbit.prod:15672`, path optional as a prefix) or a subdomain
    /// pattern (`https://*.rabbitmq.svc:15671`). TaskQueues naming any other URL
    /// must name a credentials Secret of their own.
    #[arg(
        long = "allowed-management-url",
        env = "WARREN_ALLOWED_MANAGEMENT_URLS",
        value_delimiter = ','
    )]
    allowed_management_urls: Vec<UrlPattern>,
    /// Send credentials over plain http to hosts outside the cluster (loopback,
    /// single-label and *.svc names are always allowed, and so are the URLs above).
    #[arg(long, env = "WARREN_ALLOW_PLAIN_HTTP")]
    allow_plain_http: bool,
    /// The label (`key=value`, or `key` for any value) a Secret must carry before a
    /// TaskQueue's credentialsSecretRef or caSecretRef may use it; "" accepts any
    /// Secret (not recommended: then `create taskqueues` reads every Secret).
    #[arg(
        long,
        env = "WARREN_SECRET_LABEL",
        default_value = "warren.dev/broker-credentials=true"
    )]
    secret_label: String,
    /// Timeout of one management API request.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    poll_timeout: Duration,
    /// Watch TaskQueues in this namespace only [default: all namespaces].
    #[arg(long, env = "WARREN_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader on a Lease so that only one replica scales.
    #[arg(long)]
    leader_election: bool,
    /// Namespace of the Lease [default: $POD_NAMESPACE, else "default"].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = "warren-operator")]
    lease_name: String,
    /// How long a leader's lease lasts without renewal (at least 2s; renewed every third of it).
    #[arg(long, default_value = "15s", value_parser = parse_lease_duration)]
    lease_duration: Duration,
    /// Reconciliations in flight at once; raise it if reconciles are slow (say,
    /// targets other than Deployments, read through /scale) and TaskQueues wait.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    reconcile_concurrency: u16,
    /// This instance's identity [default: $HOSTNAME, the pod name].
    #[arg(long, env = "HOSTNAME")]
    identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The `--secret-label` rule; empty means any Secret.
fn secret_label(text: &str) -> anyhow::Result<Option<SecretLabel>> {
    if text.is_empty() {
        return Ok(None);
    }
    let label = text
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--secret-label: {e}"))?;
    Ok(Some(label))
}

/// Leases are granted in whole seconds; below two the leader could not renew in time.
fn parse_lease_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_secs(2) {
        return Err(format!("{text} is too short: a lease lasts at least 2s"));
    }
    Ok(duration)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", serde_yaml::to_string(&TaskQueue::crd())?);
            Ok(())
        }
        Command::Run(args) => run_operator(*args).await,
        Command::Simulate(args) => simulate_command::simulate(*args),
    }
}

async fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format, "info,kube=warn")?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes config: set KUBECONFIG or run in a cluster")?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("warren-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let probes = Probes::new(
        {
            let ready = Arc::clone(&ready);
            move || ready.load(Ordering::SeqCst)
        },
        "starting",
        {
            let metrics = Arc::clone(&metrics);
            move || metrics.encode()
        },
    );
    serve_health(args.metrics_addr, probes, shutdown.clone()).await?;
    tokio::spawn(shutdown_on_signal(shutdown.clone()));
    let settings = Settings {
        namespace: args.namespace.clone(),
        access: BrokerAccess {
            policy: AccessPolicy {
                default_url: args.management_url.clone(),
                allowed: args.allowed_management_urls.clone(),
                plain_http_anywhere: args.allow_plain_http,
            },
            username: args.management_username.clone(),
            password: Password::new(args.management_password.clone()),
            secret_label: secret_label(&args.secret_label)?,
        },
        poll_timeout: args.poll_timeout,
        reconcile_concurrency: args.reconcile_concurrency,
        instance: identity.clone(),
    };
    if !args.leader_election {
        ready.store(true, Ordering::SeqCst);
        run(client, settings, metrics, shutdown).await;
        return Ok(());
    }
    let lease_namespace = args
        .lease_namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let elector = LeaderElector::new(
        client.clone(),
        &lease_namespace,
        &args.lease_name,
        &identity,
        args.lease_duration,
    );
    // A standby is ready: it serves probes and waits for the lease.
    ready.store(true, Ordering::SeqCst);
    tokio::select! {
        () = elector.acquire() => {}
        () = shutdown.cancelled() => return Ok(()),
    }
    let controller = tokio::spawn(run(client, settings, metrics, shutdown.clone()));
    tokio::select! {
        () = elector.hold() => {
            // Another instance may already be scaling: stop at once and let the
            // process restart as a standby.
            warn!("leadership lost; exiting");
            shutdown.cancel();
            let _ = controller.await;
            std::process::exit(1);
        }
        () = shutdown.cancelled() => {
            let _ = controller.await;
            elector.release().await;
        }
    }
    Ok(())
}
