//! What a run measured, and how it is printed: one Markdown row per policy on
//! stdout, the same numbers with the time series in JSON.
//!
//! - wait: publish -> start of the delivery that completed (an interrupted task
//!   waits again), nearest-rank percentiles;
//! - longest backlog: the most tasks waiting in the queue (ready) at once;
//! - time to drain: the longest stretch from a task arriving to an empty system
//!   until nothing is ready or unacked again; "never" when the run ended busy;
//! - pod-seconds: each pod's life from creation to exit (the cost);
//! - scale events: changes of the Deployment's replicas; peak replicas: their
//!   highest; interrupted: deliveries cut off at the end of a grace period.

use serde::Serialize;

use super::fleet::Fleet;

/// The backlog's high-water mark and the longest busy stretch: from a task
/// arriving to an empty system until nothing is ready or unacked again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BacklogRecord {
    max_ready: usize,
    busy_since: Option<f64>,
    longest_busy: f64,
}

impl BacklogRecord {
    /// Notes the counts after anything changed them at `now`.
    pub fn observe(&mut self, now: f64, ready: usize, unacked: usize) {
        self.max_ready = self.max_ready.max(ready);
        match (ready + unacked > 0, self.busy_since) {
            (true, None) => self.busy_since = Some(now),
            (false, Some(since)) => {
                self.longest_busy = self.longest_busy.max(now - since);
                self.busy_since = None;
            }
            _ => {}
        }
    }

    pub fn max_ready(&self) -> usize {
        self.max_ready
    }

    /// The longest busy stretch; `None` while busy (it has not drained).
    pub fn longest_busy(&self) -> Option<f64> {
        match self.busy_since {
            Some(_) => None,
            None => Some(self.longest_busy),
        }
    }
}

/// The numbers of one policy's run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub label: String,
    /// Tasks acknowledged, of `published`.
    pub tasks: usize,
    pub published: usize,
    pub wait_p50_s: f64,
    pub wait_p95_s: f64,
    pub wait_p99_s: f64,
    pub longest_backlog: usize,
    /// `None`: still busy when the run ended.
    pub time_to_drain_s: Option<f64>,
    pub pod_seconds: f64,
    pub scale_events: usize,
    pub peak_replicas: usize,
    pub interrupted: usize,
    /// Simulated seconds until the fleet settled (or the run was cut off).
    pub end_s: f64,
}

/// The state once per sampling step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub t: f64,
    pub ready: usize,
    pub unacked: usize,
    pub replicas: usize,
}

impl Point {
    pub fn of(fleet: &Fleet, t: f64) -> Self {
        Self {
            t,
            ready: fleet.ready(),
            unacked: fleet.unacked(),
            replicas: fleet.replicas(),
        }
    }
}

/// One policy's run: its numbers and its time series.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub summary: Summary,
    pub series: Vec<Point>,
    /// Every change of replicas, with its reason.
    pub decisions: Vec<Decided>,
}

/// One change of the Deployment's replicas in a run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decided {
    pub t: f64,
    pub replicas: usize,
    pub reason: String,
}

/// What the driver counted besides the fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counted {
    pub scale_events: usize,
    pub peak_replicas: usize,
    pub end: f64,
}

pub fn summarize(label: &str, fleet: &Fleet, counted: Counted) -> Summary {
    let mut waits: Vec<f64> = fleet
        .tasks()
        .iter()
        .filter(|t| t.completed_at.is_some())
        .filter_map(|t| Some(t.started_at? - t.published_at))
        .collect();
    waits.sort_by(f64::total_cmp);
    let wait = |p| percentile(&waits, p).unwrap_or(0.0);
    Summary {
        label: label.to_owned(),
        tasks: fleet.acked(),
        published: fleet.tasks().len(),
        wait_p50_s: wait(50.0),
        wait_p95_s: wait(95.0),
        wait_p99_s: wait(99.0),
        longest_backlog: fleet.max_ready(),
        time_to_drain_s: fleet.longest_busy(),
        pod_seconds: fleet.pod_seconds(counted.end),
        scale_events: counted.scale_events,
        peak_replicas: counted.peak_replicas,
        interrupted: fleet.interrupted(),
        end_s: counted.end,
    }
}

/// The nearest-rank percentile `p` (0..=100] of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The Markdown table, one row per outcome.
pub fn markdown(outcomes: &[Outcome]) -> String {
    let mut table = String::from(
        "| policy | tasks | wait p50 | wait p95 | wait p99 | longest backlog | time to drain | pod-seconds | scale events | peak replicas | interrupted |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for Outcome { summary: s, .. } in outcomes {
        let tasks = if s.tasks == s.published {
            s.tasks.to_string()
        } else {
            format!("{} of {}", s.tasks, s.published)
        };
        let drain = s
            .time_to_drain_s
            .map_or_else(|| "never".to_owned(), seconds);
        table.push_str(&format!(
            "| {} | {tasks} | {} | {} | {} | {} | {drain} | {:.0} | {} | {} | {} |\n",
            s.label,
            seconds(s.wait_p50_s),
            seconds(s.wait_p95_s),
            seconds(s.wait_p99_s),
            s.longest_backlog,
            s.pod_seconds,
            s.scale_events,
            s.peak_replicas,
            s.interrupted,
        ));
    }
    table
}

fn seconds(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} s")
    } else {
        format!("{value:.1} s")
    }
}

/// The JSON document: the run's settings, then per policy its numbers and its
/// series as columns.
pub fn json(trace: &str, settings: serde_json::Value, outcomes: &[Outcome]) -> serde_json::Value {
    let policies: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "summary": o.summary,
                "series": columns(&o.series),
                "decisions": o.decisions,
            })
        })
        .collect();
    serde_json::json!({ "trace": trace, "settings": settings, "policies": policies })
}

/// A series as JSON columns: `t`, `ready`, `unacked`, `replicas`.
pub fn columns(series: &[Point]) -> serde_json::Value {
    serde_json::json!({
        "t": series.iter().map(|p| p.t).collect::<Vec<_>>(),
        "ready": series.iter().map(|p| p.ready).collect::<Vec<_>>(),
        "unacked": series.iter().map(|p| p.unacked).collect::<Vec<_>>(),
        "replicas": series.iter().map(|p| p.replicas).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 95.0), Some(95.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        let few = [1.0, 2.0, 3.0];
        assert_eq!(percentile(&few, 50.0), Some(2.0));
        assert_eq!(percentile(&few, 95.0), Some(3.0));
        assert_eq!(percentile(&few, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    fn outcome(label: &str, drain: Option<f64>, tasks: usize) -> Outcome {
        Outcome {
            summary: Summary {
                label: label.into(),
                tasks,
                published: 10,
                wait_p50_s: 0.24,
                wait_p95_s: 12.0,
                wait_p99_s: 130.4,
                longest_backlog: 9,
                time_to_drain_s: drain,
                pod_seconds: 1234.56,
                scale_events: 3,
                peak_replicas: 5,
                interrupted: 0,
                end_s: 400.0,
            },
            series: vec![Point {
                t: 0.0,
                ready: 9,
                unacked: 1,
                replicas: 0,
            }],
            decisions: Vec::new(),
        }
    }

    #[test]
    fn the_table_has_a_row_per_policy() {
        let table = markdown(&[
            outcome("backlog-target", Some(42.0), 10),
            outcome("keda (backlog-target)", None, 8),
        ]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[2],
            "| backlog-target | 10 | 0.2 s | 12.0 s | 130 s | 9 | 42.0 s | 1235 | 3 | 5 | 0 |"
        );
        assert!(rows[3].starts_with("| keda (backlog-target) | 8 of 10 |"));
        assert!(rows[3].contains("| never |"));
    }

    #[test]
    fn json_holds_the_numbers_and_the_series() {
        let doc = json(
            "burst:10",
            serde_json::json!({"seed": 1}),
            &[outcome("a", Some(1.0), 10)],
        );
        assert_eq!(doc["trace"], "burst:10");
        assert_eq!(doc["policies"][0]["summary"]["pod_seconds"], 1234.56);
        assert_eq!(doc["policies"][0]["series"]["ready"][0], 9);
    }
}
