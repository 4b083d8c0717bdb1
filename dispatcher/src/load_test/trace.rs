//! The arrival trace of a load test (`load-test --trace-out FILE`): one CSV row per
//! published task, `t_s,queue,task,duration_s`, so that a run can be replayed
//! against a model of the workers (the operator's simulator) and compared with
//! what the cluster did. `t_s` is when the broker confirmed the task, in seconds
//! on the load test's own clock; `duration_s` is the run time the plan asked for.

use std::time::Instant;

use super::plan::PlannedTask;

/// The CSV header, the first line of every trace.
pub const HEADER: &str = "t_s,queue,task,duration_s";

/// One task the broker confirmed: its place in the run's plan, the queue it was
/// routed to and when the confirm came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub index: usize,
    pub queue: String,
    pub at: Instant,
}

/// One row of the trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Seconds from the load test's start to the broker's confirm.
    pub t_s: f64,
    pub queue: String,
    pub task: String,
    /// The planned run time.
    pub duration_s: f64,
}

/// The rows of one run, in publication order: `published` against the `plan` it
/// came from, timed from `origin` (the load test's start). An index outside the
/// plan is left out; a confirm before `origin` counts as 0.
pub fn arrivals(origin: Instant, plan: &[PlannedTask], published: &[Published]) -> Vec<Arrival> {
    let mut rows: Vec<Arrival> = published
        .iter()
        .filter_map(|p| {
            let task = plan.get(p.index)?;
            Some(Arrival {
                t_s: p.at.saturating_duration_since(origin).as_secs_f64(),
                queue: p.queue.clone(),
                task: task.name.clone(),
                duration_s: task.seconds,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    rows
}

/// The trace as CSV text: the header, then one line per arrival (times to the
/// microsecond, durations to the millisecond the plan is rounded to).
pub fn csv(arrivals: &[Arrival]) -> String {
    let mut out = String::with_capacity(32 * (arrivals.len() + 1));
    out.push_str(HEADER);
    out.push('\n');
    for a in arrivals {
        out.push_str(&format!(
            "{:.6},{},{},{:.3}\n",
            a.t_s,
            field(&a.queue),
            field(&a.task),
            a.duration_s
        ));
    }
    out
}

/// A text field as RFC 4180 wants it: quoted (quotes doubled) only when it holds a
/// comma, a quote or a line break.
fn field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn task(name: &str, seconds: f64) -> PlannedTask {
        PlannedTask {
            name: name.into(),
            seconds,
            cpu: false,
        }
    }

    fn published(origin: Instant, index: usize, queue: &str, ms: u64) -> Published {
        Published {
            index,
            queue: queue.into(),
            at: origin + Duration::from_millis(ms),
        }
    }

    #[test]
    fn one_row_per_published_task_in_confirm_order() {
        let origin = Instant::now();
        let plan = [
            task("task_a", 0.1),
            task("task_b", 0.25),
            task("task_a", 0.2),
        ];
        // Confirms come back out of plan order; the third task was never confirmed.
        let confirmed = [
            published(origin, 1, "queue_b", 40),
            published(origin, 0, "queue_a", 1500),
        ];
        let rows = arrivals(origin, &plan, &confirmed);
        assert_eq!(
            rows,
            [
                Arrival {
                    t_s: 0.04,
                    queue: "queue_b".into(),
                    task: "task_b".into(),
                    duration_s: 0.25,
                },
                Arrival {
                    t_s: 1.5,
                    queue: "queue_a".into(),
                    task: "task_a".into(),
                    duration_s: 0.1,
                },
            ]
        );
        assert_eq!(
            csv(&rows),
            "t_s,queue,task,duration_s\n\
             0.040000,queue_b,task_b,0.250\n\
             1.500000,queue_a,task_a,0.100\n"
        );
    }

    #[test]
    fn no_tasks_is_the_header_alone() {
        assert_eq!(csv(&[]), "t_s,queue,task,duration_s\n");
        assert!(arrivals(Instant::now(), &[], &[]).is_empty());
    }

    #[test]
    fn unknown_index_is_left_out_and_early_confirms_are_zero() {
        let origin = Instant::now() + Duration::from_secs(1);
        let plan = [task("task_a", 0.1)];
        let early = Published {
            index: 0,
            queue: "queue_a".into(),
            at: origin - Duration::from_millis(5),
        };
        let rows = arrivals(origin, &plan, &[early, published(origin, 7, "queue_a", 1)]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].t_s, 0.0);
    }

    #[test]
    fn names_with_commas_or_quotes_are_quoted() {
        let row = Arrival {
            t_s: 2.0,
            queue: "q,1".into(),
            task: "say \"hi\"".into(),
            duration_s: 0.5,
        };
        assert_eq!(
            csv(&[row]).lines().nth(1),
            Some("2.000000,\"q,1\",\"say \"\"hi\"\"\",0.500")
        );
    }
}
