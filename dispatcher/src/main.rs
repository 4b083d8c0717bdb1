//! `warren-dispatcher`: send one task, or run the seed's load test.

// The load-test harness is the binary's own (clap, indicatif): the library does not
// carry it.
mod load_test;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use load_test::bounds::Capacity;
use load_test::plan::{PlanSpec, parse_mix};
use load_test::report::table;
use load_test::trace::{Arrival, arrivals, csv};
use load_test::{Collect, RunOptions, run_closed, run_open};
use serde_json::{Map, Value};
use warren_dispatcher::{Client, ClientConfig};
use warren_protocol::{RoutingTable, TaskMessage, TaskStatus};

/// Publish Celery-compatible tasks to RabbitMQ and collect their results.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Broker URL; the password is never printed.
    #[arg(long, global = true, env = "WARREN_AMQP_URL", default_value = warren_dispatcher::client::DEFAULT_AMQP_URL, hide_default_value = true)]
    amqp_url: String,
    /// Extra route TASK=QUEUE (repeatable); defaults are task_a=queue_a, task_b=queue_b.
    #[arg(long = "route", global = true, value_name = "TASK=QUEUE")]
    routes: Vec<String>,
    /// File of routes, one `TASK = QUEUE` per line; replaces the defaults.
    #[arg(long, global = true)]
    routes_file: Option<PathBuf>,
    /// How long to wait for the broker at start.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send one task and print its result as JSON.
    Send(SendArgs),
    /// Send many tasks and report throughput, efficiency, latency and spread.
    LoadTest(LoadTestArgs),
    /// Print the task plan a load test would send, as JSON, without a broker: the
    /// same names, durations and order, so another client (the Celery benchmark
    /// client) can send exactly the same work.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    /// Number of tasks.
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    #[command(flatten)]
    plan: PlanOptions,
}

/// What a load test sends: shared by `load-test` and `plan`.
#[derive(Debug, Args)]
struct PlanOptions {
    /// Ratio of task_a to task_b.
    #[arg(long, default_value = "1:1")]
    mix: String,
    /// Shortest task duration in seconds.
    #[arg(long, default_value_t = 0.1)]
    min_seconds: f64,
    /// Longest task duration in seconds.
    #[arg(long, default_value_t = 0.2)]
    max_seconds: f64,
    /// Tasks that do no work (duration 0): measures round trips.
    #[arg(long, conflicts_with_all = ["min_seconds", "max_seconds"])]
    no_work: bool,
    /// Ask for CPU work (hashing) instead of waiting.
    #[arg(long)]
    cpu: bool,
    /// Name sent for task A (e.g. celery_app.task_a for the seed's Celery app).
    #[arg(long, default_value = "task_a")]
    task_a: String,
    /// Name sent for task B.
    #[arg(long, default_value = "task_b")]
    task_b: String,
    /// Seed of the task plan (same seed, same durations).
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl PlanOptions {
    fn spec(&self) -> anyhow::Result<PlanSpec> {
        let mix = parse_mix(&self.mix, [&self.task_a, &self.task_b]).map_err(anyhow::Error::msg)?;
        let (min_seconds, max_seconds) = if self.no_work {
            (0.0, 0.0)
        } else {
            (self.min_seconds, self.max_seconds)
        };
        if !(0.0..=3600.0).contains(&min_seconds)
            || max_seconds < min_seconds
            || max_seconds > 3600.0
        {
            bail!("need 0 <= --min-seconds <= --max-seconds <= 3600");
        }
        Ok(PlanSpec {
            mix,
            min_seconds,
            max_seconds,
            cpu: self.cpu,
            seed: self.seed,
        })
    }
}

/// The capacity the run is measured against (its ideal and FIFO bound): what the
/// workers were started with, as the caller knows it, not what they report.
#[derive(Debug, Args)]
struct CapacityArgs {
    /// Workers consuming each queue.
    #[arg(long, default_value_t = 1)]
    workers: u32,
    /// Tasks each worker runs at once (its --concurrency).
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Task slots of one queue, instead of workers x concurrency (repeatable).
    #[arg(long = "capacity", value_name = "QUEUE=SLOTS")]
    per_queue: Vec<String>,
}

impl CapacityArgs {
    fn capacity(&self) -> anyhow::Result<Capacity> {
        if self.workers == 0 || self.concurrency == 0 {
            bail!("--workers and --concurrency must be at least 1");
        }
        let default = self
            .workers
            .checked_mul(self.concurrency)
            .context("--workers x --concurrency is too large")?;
        let per_queue = self
            .per_queue
            .iter()
            .map(|rule| {
                let (queue, slots) = rule
                    .split_once('=')
                    .with_context(|| format!("--capacity {rule:?} must look like QUEUE=SLOTS"))?;
                match slots.trim().parse::<u32>() {
                    Ok(n) if n > 0 => Ok((queue.trim().to_owned(), n)),
                    _ => bail!("--capacity {rule:?}: {slots:?} is not a whole number above 0"),
                }
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Capacity { default, per_queue })
    }
}

#[derive(Debug, Args)]
struct SendArgs {
    /// Task name, e.g. task_a or celery_app.task_a.
    #[arg(long, default_value = "task_a")]
    task: String,
    /// Positional argument as JSON (repeatable), e.g. --arg 0.2.
    #[arg(long = "arg", value_name = "JSON")]
    args: Vec<String>,
    /// Keyword arguments as a JSON object, e.g. '{"seconds": 0.2, "cpu": true}'.
    #[arg(long, value_name = "JSON")]
    kwargs: Option<String>,
    /// How long to wait for the result.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct LoadTestArgs {
    /// Task counts, one run each (closed loop).
    #[arg(long, value_delimiter = ',', default_value = "20,50,100")]
    tasks: Vec<usize>,
    /// concurrent: all in flight, results as they complete; sequential: one
    /// task at a time, as the seed's blocking .get() does.
    #[arg(long, value_enum, default_value_t = Collect::Concurrent)]
    collect: Collect,
    /// Open loop: tasks per second, regardless of backlog (needs --duration).
    #[arg(long, requires = "duration")]
    rate: Option<f64>,
    /// Open loop: how long to publish at --rate.
    #[arg(long, requires = "rate", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[command(flatten)]
    plan: PlanOptions,
    /// Most tasks in flight at once.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Per-task result timeout; later results count as lost.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    capacity: CapacityArgs,
    /// Print one JSON object per run instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the arrival trace to FILE, as CSV `t_s,queue,task,duration_s`: one
    /// row per task the broker confirmed, t_s = seconds from the load test's start
    /// to the confirm, duration_s = its planned run time (every run on one clock).
    /// The Unix time of t_s = 0 is printed on stderr.
    #[arg(long, value_name = "FILE")]
    trace_out: Option<PathBuf>,
}

// One thread: the client's work is I/O and bookkeeping (lapin does its socket I/O on a
// thread of its own), and keeping every task on one thread spares a cross-thread
// wake-up per publish, confirm and reply (`load-test --no-work` on 2 cores used less
// CPU per task this way than with the multi-thread runtime).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let routing = match &cli.routes_file {
        Some(path) => RoutingTable::from_file(path)?,
        None => RoutingTable::default(),
    }
    .with_rules(cli.routes.iter().map(String::as_str))?;
    if let Command::Plan(args) = &cli.command {
        return plan(&routing, args);
    }
    let config = ClientConfig {
        amqp_url: cli.amqp_url.clone(),
        routing,
        ..ClientConfig::default()
    };
    let client = Client::connect(config, cli.connect_timeout).await?;
    match cli.command {
        Command::Send(args) => send(&client, args).await,
        Command::LoadTest(args) => load_test(&client, args).await,
        Command::Plan(_) => Ok(()),
    }
}

/// Prints the plan as a JSON array: name, queue it is routed to, seconds, cpu.
fn plan(routing: &RoutingTable, args: &PlanArgs) -> anyhow::Result<()> {
    let tasks = args.plan.spec()?.plan(args.tasks);
    let rows = tasks
        .iter()
        .map(|task| {
            let queue = routing.queue_for(&task.name)?;
            Ok(serde_json::json!({
                "name": task.name,
                "queue": queue,
                "seconds": task.seconds,
                "cpu": task.cpu,
            }))
        })
        .collect::<anyhow::Result<Vec<Value>>>()?;
    println!("{}", serde_json::to_string(&rows)?);
    Ok(())
}

async fn send(client: &Client, args: SendArgs) -> anyhow::Result<()> {
    let positional = args
        .args
        .iter()
        .map(|a| serde_json::from_str(a).with_context(|| format!("--arg {a:?} is not JSON")))
        .collect::<anyhow::Result<Vec<Value>>>()?;
    let kwargs: Map<String, Value> = match &args.kwargs {
        None => Map::new(),
        Some(text) => serde_json::from_str(text)
            .with_context(|| format!("--kwargs {text:?} is not a JSON object"))?,
    };
    let reply = client
        .call(
            TaskMessage::new(args.task, positional, kwargs),
            args.timeout,
        )
        .await?;
    println!("{}", serde_json::to_string_pretty(&reply.result)?);
    if reply.result.status != TaskStatus::Success {
        bail!("task failed");
    }
    Ok(())
}

async fn load_test(client: &Client, args: LoadTestArgs) -> anyhow::Result<()> {
    let spec = args.plan.spec()?;
    let options = RunOptions {
        collect: args.collect,
        window: args.window,
        timeout: args.timeout,
        progress: !args.json && std::io::stderr().is_terminal(),
        capacity: args.capacity.capacity()?,
    };
    if args
        .rate
        .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
    {
        bail!("--rate must be a positive number of tasks per second");
    }
    // t_s = 0 of the trace, on both clocks: the runs are timed by `Instant`, the
    // caller lines the trace up with what it sampled by the Unix time.
    let origin = Instant::now();
    let origin_unix = SystemTime::now().duration_since(UNIX_EPOCH).ok();
    let mut reports = Vec::new();
    let mut trace: Vec<Arrival> = Vec::new();
    if let (Some(rate), Some(duration)) = (args.rate, args.duration) {
        let count = (rate * duration.as_secs_f64()).round() as usize;
        let plan = spec.plan(count);
        let run = run_open(client, &plan, rate, &options).await;
        trace.extend(arrivals(origin, &plan, &run.published));
        reports.push(run.report);
    } else {
        for count in &args.tasks {
            let plan = spec.plan(*count);
            let run = run_closed(client, &plan, &options).await;
            trace.extend(arrivals(origin, &plan, &run.published));
            reports.push(run.report);
        }
    }
    if let Some(path) = &args.trace_out {
        std::fs::write(path, csv(&trace))
            .with_context(|| format!("writing the trace to {}", path.display()))?;
        let unix = origin_unix.map_or_else(
            || "unknown".to_owned(),
            |t| format!("{:.6}", t.as_secs_f64()),
        );
        eprintln!(
            "trace: {} task(s) in {}; t_s 0 = Unix time {unix}",
            trace.len(),
            path.display()
        );
    }
    if args.json {
        for report in &reports {
            println!("{}", serde_json::to_string(report)?);
        }
    } else {
        print!("{}", table(&reports));
    }
    let lost: u64 = reports.iter().map(|r| r.lost + r.unpublished).sum();
    if lost > 0 {
        bail!("{lost} task(s) got no result");
    }
    Ok(())
}
