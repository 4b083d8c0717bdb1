//! Turning the samples of one load-test run into its report: throughput, the ideal
//! throughput the workers could have given, latency percentiles, spread.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

/// One completed task as the client saw it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub queue: String,
    /// From submit to result.
    pub latency: Duration,
    pub worker: Option<String>,
    /// Handler run time as the worker reported it, else the planned duration.
    pub runtime: Duration,
    /// The worker's concurrency when it reported it.
    pub concurrency: Option<u32>,
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
    pub tasks_per_s: f64,
    /// Tasks over the shortest wall time the workers' capacity allows: per queue, the
    /// larger of (work / total concurrency) and the longest single task.
    pub ideal_tasks_per_s: f64,
    pub efficiency: f64,
    /// CPU-bound runs only: hashes all tasks computed, per second of wall time.
    /// Tasks hash for a fixed time, so tasks/s keeps rising with more workers
    /// than cores while the work done per second does not; this shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashes_per_s: Option<f64>,
    pub latency_ms: Percentiles,
    pub per_worker: BTreeMap<String, u64>,
    pub failed: u64,
    pub lost: u64,
    pub duplicates: u64,
}

pub struct Totals {
    pub tasks: usize,
    pub wall: Duration,
    pub failed: u64,
    pub lost: u64,
    pub duplicates: u64,
}

pub fn summarize(collect: &str, samples: &[Sample], totals: Totals) -> RunReport {
    let wall_s = totals.wall.as_secs_f64();
    let done = samples.len() as f64;
    let tasks_per_s = if wall_s > 0.0 { done / wall_s } else { 0.0 };
    let ideal_wall = ideal_wall(samples);
    let ideal_tasks_per_s = if ideal_wall > 0.0 {
        done / ideal_wall
    } else {
        0.0
    };
    let efficiency = if ideal_tasks_per_s > 0.0 {
        tasks_per_s / ideal_tasks_per_s
    } else {
        0.0
    };
    let hashes: Option<u64> = samples.iter().filter_map(|s| s.hashes).reduce(|a, b| a + b);
    let hashes_per_s = hashes
        .filter(|_| wall_s > 0.0)
        .map(|h| (h as f64 / wall_s).round());
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
        ideal_tasks_per_s: round(ideal_tasks_per_s, 2),
        efficiency: round(efficiency, 3),
        hashes_per_s,
        latency_ms: Percentiles {
            p50: round(percentile(&latencies, 0.50), 2),
            p95: round(percentile(&latencies, 0.95), 2),
            p99: round(percentile(&latencies, 0.99), 2),
            max: round(latencies.last().copied().unwrap_or(0.0), 2),
        },
        per_worker,
        failed: totals.failed,
        lost: totals.lost,
        duplicates: totals.duplicates,
    }
}

/// The shortest wall time in which the workers that answered could have done the
/// work: queues run in parallel; within one, work spreads over the summed
/// concurrency of its workers but no task can be split.
fn ideal_wall(samples: &[Sample]) -> f64 {
    let mut queues: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        queues
            .entry(sample.queue.as_str())
            .or_default()
            .push(sample);
    }
    queues
        .values()
        .map(|samples| {
            let workers: BTreeMap<&str, u32> = samples
                .iter()
                .map(|s| {
                    (
                        s.worker.as_deref().unwrap_or("unknown"),
                        s.concurrency.unwrap_or(1),
                    )
                })
                .collect();
            let capacity: u32 = workers.values().sum::<u32>().max(1);
            let work: f64 = samples.iter().map(|s| s.runtime.as_secs_f64()).sum();
            let longest = samples
                .iter()
                .map(|s| s.runtime.as_secs_f64())
                .fold(0.0, f64::max);
            (work / f64::from(capacity)).max(longest)
        })
        .fold(0.0, f64::max)
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

/// The human table, one row per run, like the seed's.
pub fn table(reports: &[RunReport]) -> String {
    let mut out = String::from(
        "| tasks | collect | wall s | tasks/s | ideal/s | efficiency | p50 ms | p95 ms | p99 ms | failed | lost | dup | per worker |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let spread: Vec<String> = r
            .per_worker
            .iter()
            .map(|(w, n)| format!("{w}:{n}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.1} | {:.1} | {:.3} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            r.tasks,
            r.collect,
            r.wall_s,
            r.tasks_per_s,
            r.ideal_tasks_per_s,
            r.efficiency,
            r.latency_ms.p50,
            r.latency_ms.p95,
            r.latency_ms.p99,
            r.failed,
            r.lost,
            r.duplicates,
            spread.join(" "),
        ));
    }
    out
}

/// Distinct workers that answered, for a quick check of the spread.
pub fn workers(report: &RunReport) -> BTreeSet<&str> {
    report.per_worker.keys().map(String::as_str).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(queue: &str, worker: &str, ms: u64) -> Sample {
        Sample {
            queue: queue.into(),
            latency: Duration::from_millis(ms + 5),
            worker: Some(worker.into()),
            runtime: Duration::from_millis(ms),
            concurrency: Some(1),
            hashes: None,
        }
    }

    #[test]
    fn ideal_spreads_work_per_queue() {
        // queue_a: 3 x 100 ms on 3 workers -> 100 ms; queue_b: 4 x 100 ms on 1 -> 400 ms.
        let mut samples: Vec<Sample> = ["a1", "a2", "a3"]
            .iter()
            .map(|w| sample("queue_a", w, 100))
            .collect();
        samples.extend((0..4).map(|_| sample("queue_b", "b1", 100)));
        let totals = Totals {
            tasks: 7,
            wall: Duration::from_millis(500),
            failed: 0,
            lost: 0,
            duplicates: 0,
        };
        let report = summarize("concurrent", &samples, totals);
        assert_eq!(report.ideal_tasks_per_s, 17.5);
        assert_eq!(report.tasks_per_s, 14.0);
        assert_eq!(report.efficiency, 0.8);
        assert_eq!(report.per_worker["b1"], 4);
        assert_eq!(workers(&report).len(), 4);
    }

    #[test]
    fn longest_task_bounds_the_ideal() {
        let samples = vec![sample("q", "w1", 1000), sample("q", "w2", 10)];
        let totals = Totals {
            tasks: 2,
            wall: Duration::from_secs(1),
            failed: 0,
            lost: 0,
            duplicates: 0,
        };
        assert_eq!(summarize("concurrent", &samples, totals).efficiency, 1.0);
    }

    #[test]
    fn hashes_per_second_only_for_cpu_work() {
        let totals = || Totals {
            tasks: 2,
            wall: Duration::from_secs(2),
            failed: 0,
            lost: 0,
            duplicates: 0,
        };
        let plain = vec![sample("q", "w1", 100), sample("q", "w1", 100)];
        assert_eq!(summarize("concurrent", &plain, totals()).hashes_per_s, None);
        let cpu: Vec<Sample> = [300, 500]
            .into_iter()
            .map(|h| Sample {
                hashes: Some(h),
                ..sample("q", "w1", 100)
            })
            .collect();
        let report = summarize("concurrent", &cpu, totals());
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
        let totals = Totals {
            tasks: 3,
            wall: Duration::from_secs(1),
            failed: 0,
            lost: 3,
            duplicates: 0,
        };
        let report = summarize("concurrent", &[], totals);
        assert_eq!(report.tasks_per_s, 0.0);
        assert_eq!(report.efficiency, 0.0);
        assert_eq!(report.lost, 3);
        assert!(table(&[report]).contains("| 3 | concurrent |"));
    }
}
