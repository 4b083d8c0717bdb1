//! The binary's `simulate` subcommand: its flags, and the I/O around the
//! library's simulator ([`warren_operator::simulate`]): reading the TaskQueue
//! YAMLs and a CSV trace, printing the table, writing the JSON and the SVG.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use warren_operator::simulate::compare::{self, Frame, Recorded};
use warren_operator::simulate::distribution::Distribution;
use warren_operator::simulate::keda_model::KedaSettings;
use warren_operator::simulate::real_run::parse_real_csv;
use warren_operator::simulate::report::{Outcome, json, markdown};
use warren_operator::simulate::spec::seconds;
use warren_operator::simulate::taskqueue_file::{TaskQueueFile, labelled, parse_taskqueues};
use warren_operator::simulate::trace::TraceSpec;
use warren_operator::simulate::{Contender, PolicyKind, Settings, contenders, run, svg, tasks_of};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A TaskQueue YAML (repeatable), or several: YAML documents separated by ---,
    /// or a kind: List (kubectl get tq -o yaml). warren runs each TaskQueue as given,
    /// labelled by its metadata.name; KEDA gets its targetBacklogPerReplica (10 when
    /// unset), minReplicas and maxReplicas.
    #[arg(long = "taskqueue", value_name = "FILE", required = true)]
    taskqueues: Vec<PathBuf>,
    /// The arrivals: csv:FILE (a time in seconds per line; optionally a service time
    /// and, with a header, a queue: load-test --trace-out's t_s,queue,task,duration_s
    /// reads as is, and each TaskQueue replays its queue's rows), burst:N[@T], ramp:FROM-TO:DURATION,
    /// steady:R:DURATION, spikes:N:EVERY:DURATION or wave:MEAN:AMPLITUDE:PERIOD:DURATION
    /// (rates in tasks/s); parts joined with + are superimposed.
    #[arg(long, value_name = "SPEC")]
    trace: TraceSpec,
    /// A policy to compare (repeatable): warren (each TaskQueue as given) or keda
    /// (KEDA + HPA on each distinct target/min/max).
    #[arg(long = "policy", value_enum, default_values_t = [Policy::Warren, Policy::Keda])]
    policies: Vec<Policy>,
    /// Service time of tasks the trace gives none: const:S, uniform:A-B, exp:MEAN,
    /// lognormal:MEAN:SD or values:A,B,... (one of the listed, drawn at random: measured
    /// durations), in seconds or with units (500ms, 2s). The default, tasks of
    /// about a second skewed as real ones are; the demo tasks are uniform:0.1-0.2.
    #[arg(long, value_name = "DIST", default_value = "lognormal:1:0.5")]
    service_time: Distribution,
    /// Pod start-up, from creation to consuming (same syntax). 2 s: a pod on the local
    /// cluster's real node runs ~1 s after `kubectl apply` with its image present
    /// (docs/local-cluster.md), and the demo's 10 new workers ran within 3 s (README).
    #[arg(long, value_name = "DIST", default_value = "const:2s")]
    startup: Distribution,
    /// Tasks a pod runs at once; its prefetch is the same, as warren's worker sets it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// How long a removed pod may finish its tasks (the worker's --grace-period and
    /// Kubernetes' default terminationGracePeriodSeconds); tasks still running then
    /// are interrupted and redelivered.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = seconds)]
    grace_period: f64,
    /// Seed of the generated arrivals, the service times and the start-up delays.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where in its period each periodic process (polls, HPA syncs, the broker's
    /// statistics) first fires, 0 to 1: 0.5 is the expected offset of a burst
    /// arriving at a random moment.
    #[arg(long, default_value_t = 0.5, value_parser = phase)]
    phase: f64,
    /// Spacing of the time series in --json and --svg.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = positive)]
    sample_every: f64,
    /// Longest a run goes on after the last arrival; a policy not done by then is
    /// cut off (its tasks show as "N of M").
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = seconds)]
    tail: f64,
    /// Print every change of replicas with its reason (the operator's Event text,
    /// or the queue length KEDA's HPA acted on) to stderr.
    #[arg(long)]
    explain: bool,
    /// Write the numbers, the time series (ready, unacked, replicas) and every
    /// change of replicas with its reason as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a chart: the backlog and the replicas over time, a line per policy.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// A real run on the same arrivals (t_s,queue,spec_replicas,ready,unacked, as
    /// make sim-check-record's real.csv): each TaskQueue's queue is compared with
    /// its simulated run (peak replicas, time to peak, drained, back to the minimum,
    /// the replicas' and the backlog's error) after the table and in --json, and
    /// drawn in --svg as "real (<name>)".
    #[arg(long, value_name = "FILE")]
    real: Option<PathBuf>,
    #[command(flatten)]
    keda: KedaArgs,
}

/// The KEDA and HPA model's settings; the defaults are the documented ones.
#[derive(Debug, Args)]
#[command(next_help_heading = "KEDA and HPA model")]
struct KedaArgs {
    /// ScaledObject pollingInterval: how often KEDA reads the queue to activate
    /// (0 -> 1) and to cool down (N -> 0).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive)]
    keda_polling_interval: f64,
    /// ScaledObject cooldownPeriod: how long after the last active reading KEDA
    /// scales to 0 (minReplicaCount 0).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = seconds)]
    keda_cooldown_period: f64,
    /// The trigger's activationValue: active when the queue length is above it.
    #[arg(long, value_name = "N", default_value_t = 0.0)]
    keda_activation_value: f64,
    /// kube-controller-manager --horizontal-pod-autoscaler-sync-period.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = positive)]
    hpa_sync_period: f64,
    /// --horizontal-pod-autoscaler-tolerance: no change while metric / (target x
    /// replicas) is within this of 1.
    #[arg(long, value_name = "RATIO", default_value_t = 0.1)]
    hpa_tolerance: f64,
    /// Default scaleUp policy: at most this many pods more per period...
    #[arg(long, value_name = "N", default_value_t = 4)]
    hpa_scale_up_pods: i32,
    /// ...or this percent more, whichever is larger (selectPolicy Max).
    #[arg(long, value_name = "PERCENT", default_value_t = 100)]
    hpa_scale_up_percent: i32,
    /// periodSeconds of the default scaleUp policies.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = positive)]
    hpa_scale_up_period: f64,
    /// Default scaleDown stabilizationWindowSeconds: the highest recommendation of
    /// this window is used.
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = seconds)]
    hpa_scale_down_window: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    Warren,
    Keda,
}

fn phase(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text} is not within [0, 1)"))
    }
}

fn positive(text: &str) -> Result<f64, String> {
    match seconds(text) {
        Ok(value) if value > 0.0 => Ok(value),
        Ok(_) => Err(format!("{text} must be above 0")),
        Err(e) => Err(e.reason),
    }
}

pub fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let files = args
        .taskqueues
        .iter()
        .map(|path| read_taskqueues(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let queues = labelled(&files);
    let settings = Settings {
        service_time: args.service_time,
        startup: args.startup,
        concurrency: usize::from(args.concurrency),
        grace_period: args.grace_period,
        seed: args.seed,
        phase: args.phase,
        sample_every: args.sample_every,
        tail: args.tail,
        keda: KedaSettings {
            polling_interval: args.keda.keda_polling_interval,
            cooldown_period: args.keda.keda_cooldown_period,
            activation_value: args.keda.keda_activation_value,
            hpa_sync_period: args.keda.hpa_sync_period,
            tolerance: args.keda.hpa_tolerance,
            scale_up_pods: args.keda.hpa_scale_up_pods,
            scale_up_percent: args.keda.hpa_scale_up_percent,
            scale_up_period: args.keda.hpa_scale_up_period,
            scale_down_window: args.keda.hpa_scale_down_window,
        },
    };
    let trace = args
        .trace
        .load(settings.seed, |path| std::fs::read_to_string(path))?;
    let kinds: Vec<PolicyKind> = args
        .policies
        .iter()
        .map(|p| match p {
            Policy::Warren => PolicyKind::Warren,
            Policy::Keda => PolicyKind::Keda,
        })
        .collect();
    let started = Instant::now();
    let rows = contenders(&queues, &kinds);
    let tasks: Vec<Vec<(f64, f64)>> = rows
        .iter()
        .map(|row| tasks_of(&trace, &settings, &row.spec.queue))
        .collect();
    let outcomes: Vec<Outcome> = rows
        .iter()
        .zip(&tasks)
        .map(|(row, tasks)| run(tasks, row, &settings))
        .collect();
    eprintln!(
        "simulated {} arrivals x {} policies in {:.0?}",
        trace.arrivals.len(),
        outcomes.len(),
        started.elapsed()
    );
    let recorded = match &args.real {
        Some(path) => read_real(path, &rows)?,
        None => Vec::new(),
    };
    let runs: Vec<_> = rows
        .iter()
        .zip(&outcomes)
        .zip(&tasks)
        .map(|((row, outcome), tasks)| (row, outcome, Frame::of(row, tasks)))
        .collect();
    let compared = compare::compare_each(&runs, &recorded);
    let queued: BTreeSet<&str> = trace
        .arrivals
        .iter()
        .filter_map(|a| a.queue.as_deref())
        .collect();
    let note = if queued.is_empty() {
        String::new()
    } else {
        // A recorded trace of several queues: each TaskQueue replays its own.
        format!(" on {}", queued.into_iter().collect::<Vec<_>>().join(", "))
    };
    let summary_line = settings.summary_line(&trace);
    println!(
        "trace `{}`: {} tasks{note}; {summary_line}\n",
        trace.name,
        trace.arrivals.len(),
    );
    print!("{}", markdown(&outcomes));
    if let Some(path) = &args.real {
        println!(
            "\nAgainst the real run {}: real / simulated (simulated - real); times in \
             seconds on the trace's clock, read at the real samples' times.\n",
            path.display()
        );
        print!("{}", compare::markdown(&compared));
    }
    if args.explain {
        for outcome in &outcomes {
            eprintln!("== {}", outcome.summary.label);
            for d in &outcome.decisions {
                eprintln!("{:>8.1}s  {}", d.t, d.reason);
            }
        }
    }
    if let Some(path) = &args.json {
        let mut document = json(&trace.name, settings.describe(&trace), &outcomes);
        if args.real.is_some()
            && let Some(fields) = document.as_object_mut()
        {
            fields.extend(compare::json(&recorded, &compared));
        }
        let text = serde_json::to_string_pretty(&document)?;
        write(path, &(text + "\n"))?;
    }
    if let Some(path) = &args.svg {
        let title = format!("warren simulate: {}", trace.name);
        let mut lines = svg::lines_of(&outcomes);
        lines.extend(recorded.iter().map(|r| svg::Line {
            label: &r.label,
            series: &r.series,
            colour: r.colour,
            recorded: true,
        }));
        write(path, &svg::render_lines(&title, &summary_line, &lines))?;
    }
    Ok(())
}

/// The recorded series of the queues the contenders scale (`--real`); the
/// queues on only one side are named on stderr.
fn read_real(path: &Path, rows: &[Contender]) -> anyhow::Result<Vec<Recorded>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the real run {}", path.display()))?;
    let series = parse_real_csv(&text).with_context(|| format!("{}", path.display()))?;
    let recorded = compare::recorded_for(rows, &series);
    for queue in series.keys() {
        if !recorded.iter().any(|r| &r.queue == queue) {
            eprintln!("{}: no TaskQueue scales {queue}", path.display());
        }
    }
    for row in rows {
        if !series.contains_key(&row.spec.queue) {
            eprintln!(
                "{}: nothing recorded of {} ({})",
                path.display(),
                row.spec.queue,
                row.label
            );
        }
    }
    Ok(recorded)
}

/// The TaskQueues of a file: one, several YAML documents, or a `kind: List`.
fn read_taskqueues(path: &Path) -> anyhow::Result<TaskQueueFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the TaskQueues {}", path.display()))?;
    let queues = parse_taskqueues(&text)
        .with_context(|| format!("{} holds no usable TaskQueue", path.display()))?;
    let stem = path
        .file_stem()
        .map_or_else(|| "taskqueue".into(), |s| s.to_string_lossy().into_owned());
    Ok(TaskQueueFile {
        path: path.display().to_string(),
        stem,
        queues,
    })
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
