//! A simulated run against a recorded real one (`simulate --real`): how far the
//! simulator's replicas and backlog were from what the operator and the broker
//! really did on the same arrivals.
//!
//! Everything is read on the recorded samples' time grid: the simulated series
//! is a step function (its value at `t` is its last point at or before `t`; its
//! first point before it starts, its last after it ends), evaluated at each
//! recorded sample's time, so both sides are quantised alike. From each side:
//!
//! - peak replicas, and the time from the queue's first arrival to the first
//!   sample at that peak;
//! - drained at: the first sample at or after the last arrival from which
//!   ready + unacked stays 0 to the end;
//! - back to the minimum at: the first sample at or after the peak from which
//!   the replicas stay at the TaskQueue's minimum to the end;
//!
//! and between them the mean and the largest absolute difference of the
//! replicas and of the backlog (ready messages) over the samples. Times are on
//! the trace's clock (t = 0 at its start).

use std::collections::BTreeMap;

use serde::Serialize;

use super::report::{Outcome, Point, columns};
use super::{Contender, PolicyKind};
use crate::decision::ScalingPolicy;

/// What the landmarks of one queue are measured from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// The queue's first and last arrival, seconds on the trace's clock.
    pub first_arrival: f64,
    pub last_arrival: f64,
    /// The TaskQueue's minReplicas: where the replicas go back to.
    pub min_replicas: usize,
}

impl Frame {
    /// The frame of a contender's run over `tasks` (publish time, service);
    /// `None` without tasks.
    pub fn of(contender: &Contender, tasks: &[(f64, f64)]) -> Option<Self> {
        let times = tasks.iter().map(|t| t.0);
        let first_arrival = times.clone().reduce(f64::min)?;
        let last_arrival = times.reduce(f64::max)?;
        let min = ScalingPolicy::from(&contender.spec).min_replicas;
        Some(Self {
            first_arrival,
            last_arrival,
            min_replicas: usize::try_from(min).unwrap_or(0),
        })
    }
}

/// A recorded queue's series as drawn and compared against.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `real (<name>)`: the first warren TaskQueue on the queue, else the queue.
    pub label: String,
    pub queue: String,
    /// The colour of that TaskQueue's simulated line (its contender's index).
    pub colour: usize,
    pub series: Vec<Point>,
}

/// The recorded series of each queue that a contender scales, in the order of
/// the contenders that scale them; the other queues of `real` are left out.
pub fn recorded_for(
    contenders: &[Contender],
    real: &BTreeMap<String, Vec<Point>>,
) -> Vec<Recorded> {
    let mut found: Vec<Recorded> = Vec::new();
    let warren_first = contenders
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind == PolicyKind::Warren)
        .chain(contenders.iter().enumerate());
    for (index, contender) in warren_first {
        let queue = &contender.spec.queue;
        if found.iter().any(|r| &r.queue == queue) {
            continue;
        }
        if let Some(series) = real.get(queue) {
            let name = match contender.kind {
                PolicyKind::Warren => &contender.label,
                PolicyKind::Keda => queue,
            };
            found.push(Recorded {
                label: format!("real ({name})"),
                queue: queue.clone(),
                colour: index,
                series: series.clone(),
            });
        }
    }
    found.sort_by_key(|r| r.colour);
    found
}

/// Each contender's outcome (with its frame) against the recorded series of its
/// queue, in order; contenders without one are left out.
pub fn compare_each(
    runs: &[(&Contender, &Outcome, Option<Frame>)],
    recorded: &[Recorded],
) -> Vec<Compared> {
    runs.iter()
        .filter_map(|(contender, outcome, frame)| {
            let against = recorded.iter().find(|r| r.queue == contender.spec.queue)?;
            let comparison = compare(&against.series, &outcome.series, frame.as_ref()?)?;
            Some(Compared {
                policy: contender.label.clone(),
                against: against.label.clone(),
                queue: against.queue.clone(),
                comparison,
            })
        })
        .collect()
}

/// The moments that sum up one side's run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Landmarks {
    pub peak_replicas: usize,
    pub first_arrival_to_peak_s: f64,
    /// `None`: still busy at the last recorded sample.
    pub drained_at_s: Option<f64>,
    /// `None`: above the minimum at the last recorded sample.
    pub back_to_min_at_s: Option<f64>,
}

/// How far the simulated values were from the recorded ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Deviation {
    pub mean_abs_error: f64,
    pub max_abs_error: f64,
}

/// A simulated run against the recorded one, sample by recorded sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Recorded samples compared.
    pub samples: usize,
    /// The last recorded sample's time: a moment not come by then is `None`.
    pub until_s: f64,
    pub real: Landmarks,
    pub simulated: Landmarks,
    pub replicas: Deviation,
    /// Ready messages.
    pub backlog: Deviation,
}

/// The simulated series against the recorded one (both in time order); `None`
/// when either has no point.
pub fn compare(real: &[Point], simulated: &[Point], frame: &Frame) -> Option<Comparison> {
    if real.is_empty() {
        return None;
    }
    let aligned = real
        .iter()
        .map(|p| value_at(simulated, p.t).map(|s| Point { t: p.t, ..*s }))
        .collect::<Option<Vec<Point>>>()?;
    Some(Comparison {
        samples: real.len(),
        until_s: real.last()?.t,
        real: landmarks(real, frame)?,
        simulated: landmarks(&aligned, frame)?,
        replicas: deviation(real, &aligned, |p| p.replicas),
        backlog: deviation(real, &aligned, |p| p.ready),
    })
}

/// The series' value at `t` as a step function: its last point at or before
/// `t`, else its first; `None` for an empty series.
pub fn value_at(series: &[Point], t: f64) -> Option<&Point> {
    let after = series.partition_point(|p| p.t <= t);
    series.get(after.saturating_sub(1))
}

fn landmarks(series: &[Point], frame: &Frame) -> Option<Landmarks> {
    let peak = series.iter().map(|p| p.replicas).max()?;
    let peak_at = series.iter().find(|p| p.replicas == peak)?.t;
    Some(Landmarks {
        peak_replicas: peak,
        first_arrival_to_peak_s: peak_at - frame.first_arrival,
        drained_at_s: settled_from(series, frame.last_arrival, |p| p.ready + p.unacked == 0),
        back_to_min_at_s: settled_from(series, peak_at, |p| p.replicas == frame.min_replicas),
    })
}

/// The time of the first point at or after `from` from which `holds` is true of
/// every point to the end.
fn settled_from(series: &[Point], from: f64, holds: impl Fn(&Point) -> bool) -> Option<f64> {
    let start = series.partition_point(|p| p.t < from);
    let tail = &series[start..];
    let since = tail.iter().rposition(|p| !holds(p)).map_or(0, |i| i + 1);
    tail.get(since).map(|p| p.t)
}

fn deviation(real: &[Point], simulated: &[Point], value: fn(&Point) -> usize) -> Deviation {
    let errors: Vec<f64> = real
        .iter()
        .zip(simulated)
        .map(|(r, s)| value(r).abs_diff(value(s)) as f64)
        .collect();
    Deviation {
        mean_abs_error: errors.iter().sum::<f64>() / errors.len().max(1) as f64,
        max_abs_error: errors.iter().copied().fold(0.0, f64::max),
    }
}

/// One row of the printed comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compared {
    /// The simulated policy's label.
    pub policy: String,
    /// The recorded series' label.
    pub against: String,
    pub queue: String,
    #[serde(flatten)]
    pub comparison: Comparison,
}

/// The JSON of a comparison: each recorded series drawn (`real`: label, queue
/// and its columns) and each row compared (`comparison`).
pub fn json(
    recorded: &[Recorded],
    compared: &[Compared],
) -> serde_json::Map<String, serde_json::Value> {
    let real: Vec<serde_json::Value> = recorded
        .iter()
        .map(|r| {
            serde_json::json!({
                "label": r.label,
                "queue": r.queue,
                "series": columns(&r.series),
            })
        })
        .collect();
    let mut fields = serde_json::Map::new();
    fields.insert("real".into(), real.into());
    fields.insert("comparison".into(), serde_json::json!(compared));
    fields
}

/// The Markdown table: a row per simulated policy against the recorded run of
/// its queue, each landmark as `real / simulated (simulated - real)`.
pub fn markdown(rows: &[Compared]) -> String {
    let mut table = String::from(
        "| policy | against | samples | peak replicas | first arrival to peak | drained at | back to min at | replicas MAE | replicas max error | backlog MAE | backlog max error |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let (real, sim) = (&row.comparison.real, &row.comparison.simulated);
        let c = &row.comparison;
        table.push_str(&format!(
            "| {} | {} | {} | {} / {} | {} | {} | {} | {:.2} | {:.0} | {:.1} | {:.0} |\n",
            row.policy,
            row.against,
            c.samples,
            real.peak_replicas,
            sim.peak_replicas,
            pair(
                Some(real.first_arrival_to_peak_s),
                Some(sim.first_arrival_to_peak_s),
                c.until_s
            ),
            pair(real.drained_at_s, sim.drained_at_s, c.until_s),
            pair(real.back_to_min_at_s, sim.back_to_min_at_s, c.until_s),
            c.replicas.mean_abs_error,
            c.replicas.max_abs_error,
            c.backlog.mean_abs_error,
            c.backlog.max_abs_error,
        ));
    }
    table
}

/// `real / simulated s (+difference s)`; a moment that had not come by the last
/// recorded sample, at `until`, is "not by `until`".
fn pair(real: Option<f64>, simulated: Option<f64>, until: f64) -> String {
    let side =
        |v: Option<f64>| v.map_or_else(|| format!("not by {until:.1}"), |v| format!("{v:.1}"));
    match (real, simulated) {
        (Some(r), Some(s)) => format!("{r:.1} / {s:.1} s ({:+.1} s)", s - r),
        _ => format!("{} / {} s", side(real), side(simulated)),
    }
}

#[cfg(test)]
#[path = "compare_tests.rs"]
mod tests;
