//! Load tests: the seed's scenario (send N tasks, collect the results) and an
//! open-loop mode (a fixed arrival rate for a duration) to drive the autoscaler.

pub mod bounds;
pub mod plan;
pub mod report;
pub mod trace;

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use indicatif::{ProgressBar, ProgressStyle};

use warren_dispatcher::{Client, DispatchError, TaskReply};

use bounds::{Capacity, Job, QueueLoad, by_queue};
use plan::PlannedTask;
use report::{RunReport, Sample, Totals, summarize};
use trace::Published;

/// How results are collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Collect {
    /// All tasks in flight at once (up to the window); results taken as they complete.
    Concurrent,
    /// One task at a time: publish, block on its result, then the next. The seed's
    /// `task.delay().get()` pattern, whose wall time is the sum of the task times.
    Sequential,
}

impl Collect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Concurrent => "concurrent",
            Self::Sequential => "sequential",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub collect: Collect,
    /// Most tasks in flight at once in concurrent mode.
    pub window: usize,
    /// Per-task result timeout; a task without a result by then counts as lost.
    pub timeout: Duration,
    pub progress: bool,
    /// Task slots per queue, for the ideal and the FIFO bound.
    pub capacity: Capacity,
}

/// One run: its report, and when each of its tasks was confirmed (the trace).
pub struct Run {
    pub report: RunReport,
    pub published: Vec<Published>,
}

/// What one task came to.
enum Finished {
    Done(Sample),
    Failed(Sample),
    /// Published, but no result in time.
    Lost,
    /// Never confirmed by the broker.
    Unpublished,
}

/// Runs `plan` as a closed loop and reports it.
pub async fn run_closed(client: &Client, plan: &[PlannedTask], options: &RunOptions) -> Run {
    let bar = progress(plan.len() as u64, options.progress);
    let duplicates_before = client.duplicates();
    let started = Instant::now();
    let mut outcomes = Vec::with_capacity(plan.len());
    match options.collect {
        Collect::Sequential => {
            for (index, task) in plan.iter().enumerate() {
                outcomes.push(one(client, index, task, options.timeout).await);
                bar.inc(1);
            }
        }
        Collect::Concurrent => {
            let mut runs = futures::stream::iter(plan.iter().enumerate())
                .map(|(index, task)| one(client, index, task, options.timeout))
                .buffer_unordered(options.window.max(1));
            while let Some(outcome) = runs.next().await {
                outcomes.push(outcome);
                bar.inc(1);
            }
        }
    }
    let wall = started.elapsed();
    bar.finish_and_clear();
    let queues = plan_load(client, plan, &options.capacity, |_| 0.0);
    report(
        options.collect.as_str(),
        &queues,
        wall,
        outcomes,
        client.duplicates() - duplicates_before,
    )
}

/// Publishes `rate` tasks per second for `duration`, whatever the backlog, then
/// waits for the results.
pub async fn run_open(
    client: &Client,
    plan: &[PlannedTask],
    rate: f64,
    options: &RunOptions,
) -> Run {
    let bar = progress(plan.len() as u64, options.progress);
    let duplicates_before = client.duplicates();
    let started = Instant::now();
    let mut running = FuturesUnordered::new();
    let mut outcomes = Vec::with_capacity(plan.len());
    for (i, task) in plan.iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => break,
                Some(outcome) = running.next(), if !running.is_empty() => {
                    outcomes.push(outcome);
                    bar.inc(1);
                }
            }
        }
        running.push(one(client, i, task, options.timeout));
    }
    while let Some(outcome) = running.next().await {
        outcomes.push(outcome);
        bar.inc(1);
    }
    let wall = started.elapsed();
    bar.finish_and_clear();
    // A task cannot start before it is published, at i / rate.
    let queues = plan_load(client, plan, &options.capacity, |i| i as f64 / rate);
    report(
        "open-loop",
        &queues,
        wall,
        outcomes,
        client.duplicates() - duplicates_before,
    )
}

/// The plan by queue, as the client routes it, with each task's release time;
/// tasks without a route are left out (they are never sent either).
fn plan_load(
    client: &Client,
    plan: &[PlannedTask],
    capacity: &Capacity,
    release: impl Fn(usize) -> f64,
) -> Vec<QueueLoad> {
    let jobs = plan.iter().enumerate().filter_map(|(i, task)| {
        let queue = client.routing().queue_for(&task.name).ok()?;
        let job = Job {
            release: release(i),
            seconds: task.seconds,
        };
        Some((queue, job))
    });
    by_queue(jobs, capacity)
}

/// Publishes the plan's task `index` and waits for its result: what it came to, and
/// when the broker confirmed it (none when it never did).
async fn one(
    client: &Client,
    index: usize,
    task: &PlannedTask,
    timeout: Duration,
) -> (Finished, Option<Published>) {
    let handle = match client.submit(task.message()).await {
        Ok(handle) => handle,
        Err(error) => {
            tracing::warn!(%error, "task not published");
            return (Finished::Unpublished, None);
        }
    };
    let published = Published {
        index,
        queue: handle.queue.clone(),
        at: Instant::now(),
    };
    let submitted_at = handle.submitted_at;
    let finished = match handle.wait(timeout).await {
        Ok(reply) => {
            let failed = reply.result.status != warren_protocol::TaskStatus::Success;
            let sample = sample(submitted_at, task, reply);
            if failed {
                Finished::Failed(sample)
            } else {
                Finished::Done(sample)
            }
        }
        Err(DispatchError::Timeout { .. } | DispatchError::Closed { .. }) => Finished::Lost,
        Err(error) => {
            tracing::warn!(%error, "no result");
            Finished::Lost
        }
    };
    (finished, Some(published))
}

fn sample(submitted_at: Instant, task: &PlannedTask, reply: TaskReply) -> Sample {
    Sample {
        latency: reply.received_at.saturating_duration_since(submitted_at),
        worker: reply.worker().map(str::to_owned),
        planned: Duration::from_secs_f64(task.seconds),
        reported: reply.runtime,
        hashes: reply
            .result
            .result
            .get("hashes")
            .and_then(serde_json::Value::as_u64),
    }
}

fn report(
    collect: &str,
    queues: &[QueueLoad],
    wall: Duration,
    outcomes: Vec<(Finished, Option<Published>)>,
    duplicates: u64,
) -> Run {
    let tasks = outcomes.len();
    let (finished, published): (Vec<Finished>, Vec<Option<Published>>) =
        outcomes.into_iter().unzip();
    let mut samples = Vec::with_capacity(finished.len());
    let (mut failed, mut lost, mut unpublished) = (0, 0, 0);
    for outcome in finished {
        match outcome {
            Finished::Done(sample) => samples.push(sample),
            Finished::Failed(sample) => {
                failed += 1;
                samples.push(sample);
            }
            Finished::Lost => lost += 1,
            Finished::Unpublished => unpublished += 1,
        }
    }
    let totals = Totals {
        tasks,
        wall,
        failed,
        lost,
        unpublished,
        duplicates,
    };
    Run {
        report: summarize(collect, &samples, queues, totals),
        published: published.into_iter().flatten().collect(),
    }
}

fn progress(len: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} tasks ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar
}
