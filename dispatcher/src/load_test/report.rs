//! Turning the samples of one load-test run into its report: throughput against
//! the bounds of its plan (`bounds`), what the workers' own run times add to the
//! planned durations, latency percentiles, spread.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::bounds::{QueueLoad, fifo_wall, ideal_wall};

/// One completed task as the client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    /// From submit to result.
    pub latency: Duration,
    pub worker: Option<String>,
    /// The duration the plan asked for.
    pub planned: Duration,
    /// Handler run time as the worker reported it, if it did.
    pub reported: Option<Duration>,
    /// Hashes computed, when a CPU-bound task reported them (`"hashes"` in its result).
    pub hashes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub tasks: usize,
    pub collect: String,
    pub wall_s: f64,
    /// Results (successes and failures) per second of wall time.
    pub tasks_per_s: f64,
    /// Task slots per queue the bounds assume: workers x concurrency, as configured.
    pub capacity: BTreeMap<String, u32>,
    /// Planned tasks over the ideal wall time of the plan on that capacity
    /// (`bounds::ideal_wall`); 0 when the plan has no work to bound it.
    pub ideal_tasks_per_s: f64,
    /// tasks_per_s / ideal_tasks_per_s (0 without an ideal).
    pub efficiency: f64,
    /// Planned tasks over the wall time of a perfect in-order dispatcher with zero
    /// overhead (`bounds::fifo_wall`).
    pub fifo_tasks_per_s: f64,
    /// The efficiency that in-order dispatcher would reach: at most 1.
    pub fifo_bound: f64,
    /// CPU-bound runs only: hashes all tasks computed, per second of wall time.
    /// Tasks hash for a fixed time, so tasks/s keeps rising with more workers
    /// than cores while the work done per second does not; this shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashes_per_s: Option<f64>,
    /// Mean of (run time the worker reported - planned duration), in ms, over the
    /// tasks whose worker reported one: what the workers add to the plan's work.
    pub worker_overhead_ms: Option<f64>,
    /// Tasks whose worker reported a run time.
    pub worker_reported: u64,
    pub latency_ms: Percentiles,
    pub per_worker: BTreeMap<String, u64>,
    pub failed: u64,
    /// Published and confirmed, but no result within the timeout.
    pub lost: u64,
    /// Never confirmed by the broker (or not routable), so never sent.
    pub unpublished: u64,
    pub duplicates: u64,
}

pub struct Totals {
    pub tasks: usize,
    pub wall: Duration,
    pub failed: u64,
    pub lost: u64,
    pub unpublished: u64,
    pub duplicates: u64,
}

/// The report of one run: `samples` are its results, `queues` its plan by queue
/// with the configured slots.
pub fn summarize(
    collect: &str,
    samples: &[Sample],
    queues: &[QueueLoad],
    totals: Totals,
) -> RunReport {
    let wall_s = totals.wall.as_secs_f64();
    let tasks_per_s = rate(samples.len() as f64, wall_s);
    let planned = totals.tasks as f64;
    let ideal_tasks_per_s = rate(planned, ideal_wall(queues));
    let fifo_tasks_per_s = rate(planned, fifo_wall(queues));
    let hashes: Option<u64> = samples.iter().filter_map(|s| s.hashes).reduce(|a, b| a + b);
    let hashes_per_s = hashes
        .filter(|_| wall_s > 0.0)
        .map(|h| (h as f64 / wall_s).round());
    let overheads: Vec<f64> = samples
        .iter()
        .filter_map(|s| {
            let reported = s.reported?.as_secs_f64();
            Some((reported - s.planned.as_secs_f64()) * 1000.0)
        })
        .collect();
    let worker_overhead_ms = (!overheads.is_empty())
        .then(|| round(overheads.iter().sum::<f64>() / overheads.len() as f64, 2));
    let mut per_worker = BTreeMap::new();
    for sample in samples {
        let name = sample.worker.clone().unwrap_or_else(|| "unknown".into());
        *per_worker.entry(name).or_insert(0) += 1;
    }
    let mut latencies: Vec<f64> = samples
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    RunReport {
        tasks: totals.tasks,
        collect: collect.to_owned(),
        wall_s: round(wall_s, 4),
        tasks_per_s: round(tasks_per_s, 2),
        capacity: queues.iter().map(|q| (q.queue.clone(), q.slots)).collect(),
        ideal_tasks_per_s: round(ideal_tasks_per_s, 2),
        efficiency: round(ratio(tasks_per_s, ideal_tasks_per_s), 3),
        fifo_tasks_per_s: round(fifo_tasks_per_s, 2),
        fifo_bound: round(ratio(fifo_tasks_per_s, ideal_tasks_per_s), 3),
        hashes_per_s,
        worker_overhead_ms,
        worker_reported: overheads.len() as u64,
        latency_ms: Percentiles {
            p50: round(percentile(&latencies, 0.50), 2),
            p95: round(percentile(&latencies, 0.95), 2),
            p99: round(percentile(&latencies, 0.99), 2),
            max: round(latencies.last().copied().unwrap_or(0.0), 2),
        },
        per_worker,
        failed: totals.failed,
        lost: totals.lost,
        unpublished: totals.unpublished,
        duplicates: totals.duplicates,
    }
}

/// `count` per second of `seconds`, 0 when there is no time to divide by.
fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

fn ratio(measured: f64, bound: f64) -> f64 {
    if bound > 0.0 { measured / bound } else { 0.0 }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// `key:value key:value ...`, for the table's slots and per-worker columns.
fn pairs<V: std::fmt::Display>(map: &BTreeMap<String, V>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The human table, one row per run, like the seed's.
pub fn table(reports: &[RunReport]) -> String {
    let mut out = String::from(
        "| tasks | collect | wall s | tasks/s | ideal/s | efficiency | FIFO bound | worker +ms | p50 ms | p95 ms | p99 ms | failed | lost | unpublished | dup | slots | per worker |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let overhead = r
            .worker_overhead_ms
            .map_or_else(|| "n/a".to_owned(), |ms| format!("{ms:.1}"));
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.1} | {:.1} | {:.3} | {:.3} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
            r.tasks,
            r.collect,
            r.wall_s,
            r.tasks_per_s,
            r.ideal_tasks_per_s,
            r.efficiency,
            r.fifo_bound,
            overhead,
            r.latency_ms.p50,
            r.latency_ms.p95,
            r.latency_ms.p99,
            r.failed,
            r.lost,
            r.unpublished,
            r.duplicates,
            pairs(&r.capacity),
            pairs(&r.per_worker),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::bounds::{Capacity, Job, by_queue};
    use super::*;

    /// A task of `ms` planned milliseconds that the worker reports as `ms + extra`.
    fn sample(worker: &str, ms: u64, extra: u64) -> Sample {
        Sample {
            latency: Duration::from_millis(ms + 5),
            worker: Some(worker.into()),
            planned: Duration::from_millis(ms),
            reported: Some(Duration::from_millis(ms + extra)),
            hashes: None,
        }
    }

    /// A closed-loop plan of (queue, planned ms) on `slots` per queue (`default`
    /// for the others).
    fn plan(tasks: &[(&str, u64)], slots: &[(&str, u32)], default: u32) -> Vec<QueueLoad> {
        let capacity = Capacity {
            default,
            per_queue: slots.iter().map(|(q, n)| ((*q).to_owned(), *n)).collect(),
        };
        let jobs = tasks.iter().map(|&(queue, ms)| {
            let job = Job {
                release: 0.0,
                seconds: ms as f64 / 1000.0,
            };
            (queue, job)
        });
        by_queue(jobs, &capacity)
    }

    fn concurrent(samples: &[Sample], queues: &[QueueLoad], totals: Totals) -> RunReport {
        summarize("concurrent", samples, queues, totals)
    }

    /// Totals of a run in which `lost` of `tasks` got no result.
    fn lost(lost: u64, tasks: usize, wall: Duration) -> Totals {
        Totals {
            lost,
            ..totals(tasks, wall)
        }
    }

    fn totals(tasks: usize, wall: Duration) -> Totals {
        Totals {
            tasks,
            wall,
            failed: 0,
            lost: 0,
            unpublished: 0,
            duplicates: 0,
        }
    }

    #[test]
    fn ideal_comes_from_the_plan_and_the_configured_capacity() {
        // queue_a: 3 x 100 ms on 3 slots -> 100 ms; queue_b: 4 x 100 ms on 1 -> 400 ms.
        // The workers report 50 ms more per task: that is overhead, not a lower bar.
        let mut samples: Vec<Sample> = ["a1", "a2", "a3"]
            .iter()
            .map(|w| sample(w, 100, 50))
            .collect();
        samples.extend((0..4).map(|_| sample("b1", 100, 50)));
        let mut tasks = vec![("queue_a", 100); 3];
        tasks.extend([("queue_b", 100); 4]);
        let queues = plan(&tasks, &[("queue_a", 3)], 1);
        let report = concurrent(&samples, &queues, totals(7, Duration::from_millis(500)));
        assert_eq!(report.ideal_tasks_per_s, 17.5);
        assert_eq!(report.tasks_per_s, 14.0);
        assert_eq!(report.efficiency, 0.8);
        assert_eq!(report.fifo_bound, 1.0);
        assert_eq!(report.worker_overhead_ms, Some(50.0));
        assert_eq!(report.worker_reported, 7);
        assert_eq!(report.capacity["queue_a"], 3);
        assert_eq!(report.capacity["queue_b"], 1);
        assert_eq!(report.per_worker["b1"], 4);
    }

    #[test]
    fn lost_tasks_lower_throughput_not_the_ideal() {
        // Four tasks of 100 ms planned on one slot; one never answered.
        let samples: Vec<Sample> = (0..3).map(|_| sample("w1", 100, 0)).collect();
        let queues = plan(&[("q", 100); 4], &[], 1);
        let report = concurrent(&samples, &queues, lost(1, 4, Duration::from_millis(400)));
        assert_eq!(report.ideal_tasks_per_s, 10.0);
        assert_eq!(report.tasks_per_s, 7.5);
        assert_eq!(report.efficiency, 0.75);
        assert_eq!(report.lost, 1);
        assert!(table(&[report]).contains("| 0 | 1 | 0 | 0 | q:1 |"));
    }

    #[test]
    fn fifo_bound_beside_the_ideal() {
        // Two slots, 200/200/200/400 ms in order: ideal 0.5 s, in order 0.6 s.
        let durations = [200, 200, 200, 400];
        let samples: Vec<Sample> = durations.iter().map(|&ms| sample("w1", ms, 0)).collect();
        let tasks: Vec<(&str, u64)> = durations.iter().map(|&ms| ("q", ms)).collect();
        let queues = plan(&tasks, &[("q", 2)], 1);
        let report = concurrent(&samples, &queues, totals(4, Duration::from_millis(600)));
        assert_eq!(report.ideal_tasks_per_s, 8.0);
        assert_eq!(report.fifo_tasks_per_s, 6.67);
        assert_eq!(report.fifo_bound, 0.833);
        assert_eq!(report.efficiency, 0.833);
    }

    #[test]
    fn overhead_only_from_tasks_that_report_it() {
        let mut samples = vec![sample("w1", 100, 4), sample("w1", 100, 2)];
        samples.push(Sample {
            reported: None,
            ..sample("celery", 100, 0)
        });
        let queues = plan(&[("q", 100); 3], &[], 1);
        let report = concurrent(&samples, &queues, totals(3, Duration::from_secs(1)));
        assert_eq!(report.worker_overhead_ms, Some(3.0));
        assert_eq!(report.worker_reported, 2);
        let none: Vec<Sample> = samples.into_iter().skip(2).collect();
        let report = concurrent(&none, &queues, totals(3, Duration::from_secs(1)));
        assert_eq!(report.worker_overhead_ms, None);
        assert!(table(&[report]).contains("| n/a |"));
    }

    #[test]
    fn hashes_per_second_only_for_cpu_work() {
        let plain = vec![sample("w1", 100, 0), sample("w1", 100, 0)];
        let queues = plan(&[("q", 100); 2], &[], 1);
        let wall = Duration::from_secs(2);
        let report = concurrent(&plain, &queues, totals(2, wall));
        assert_eq!(report.hashes_per_s, None);
        let cpu: Vec<Sample> = [300, 500]
            .into_iter()
            .map(|h| Sample {
                hashes: Some(h),
                ..sample("w1", 100, 0)
            })
            .collect();
        let report = concurrent(&cpu, &queues, totals(2, wall));
        assert_eq!(report.hashes_per_s, Some(400.0));
        assert!(
            serde_json::to_string(&report)
                .expect("json")
                .contains("\"hashes_per_s\":400")
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn empty_run_is_all_zeros() {
        let report = concurrent(&[], &[], lost(3, 3, Duration::from_secs(1)));
        assert_eq!(report.tasks_per_s, 0.0);
        assert_eq!(report.efficiency, 0.0);
        assert_eq!(report.lost, 3);
        assert!(table(&[report]).contains("| 3 | concurrent |"));
    }
}
