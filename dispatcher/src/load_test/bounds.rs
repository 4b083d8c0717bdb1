//! What a load-test run is measured against: the ideal wall time and the in-order
//! (FIFO) bound, both from the plan it sent (the planned task durations) and the
//! capacity it was given on the command line. Never from what the workers report
//! about themselves: a worker that runs slow must lower the efficiency, not the bar.

use std::collections::BTreeMap;

/// Task slots per queue (workers x concurrency), as configured for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// Slots of a queue that `per_queue` does not name.
    pub default: u32,
    pub per_queue: BTreeMap<String, u32>,
}

impl Capacity {
    /// Slots of `queue`; at least one, since a queue with none never finishes.
    pub fn slots(&self, queue: &str) -> u32 {
        self.per_queue
            .get(queue)
            .copied()
            .unwrap_or(self.default)
            .max(1)
    }
}

/// One planned task as the bounds see it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Job {
    /// Earliest start, seconds from the run's start: 0 in a closed loop, the
    /// publish time in an open loop (a task cannot start before it is sent).
    pub release: f64,
    /// Planned duration.
    pub seconds: f64,
}

/// A queue's planned jobs, in plan order, and its slots.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueLoad {
    pub queue: String,
    pub slots: u32,
    pub jobs: Vec<Job>,
}

/// Groups planned jobs by queue (keeping plan order within each) and gives each
/// queue its configured slots.
pub fn by_queue<'a>(
    jobs: impl IntoIterator<Item = (&'a str, Job)>,
    capacity: &Capacity,
) -> Vec<QueueLoad> {
    let mut queues: BTreeMap<&str, Vec<Job>> = BTreeMap::new();
    for (queue, job) in jobs {
        queues.entry(queue).or_default().push(job);
    }
    queues
        .into_iter()
        .map(|(queue, jobs)| QueueLoad {
            queue: queue.to_owned(),
            slots: capacity.slots(queue),
            jobs,
        })
        .collect()
}

/// The shortest wall time any dispatcher could reach: queues run in parallel and
/// the slowest decides; within one, the work spreads over its slots as if it could
/// be divided, but no task ends before its release plus its duration.
pub fn ideal_wall(queues: &[QueueLoad]) -> f64 {
    queues
        .iter()
        .map(|queue| {
            let work: f64 = queue.jobs.iter().map(|j| j.seconds).sum();
            let latest = queue
                .jobs
                .iter()
                .map(|j| j.release + j.seconds)
                .fold(0.0, f64::max);
            (work / f64::from(queue.slots.max(1))).max(latest)
        })
        .fold(0.0, f64::max)
}

/// Wall time of a perfect in-order dispatcher with zero overhead: each queue's jobs,
/// in plan order, each to the slot that is free first (the lowest-numbered on a
/// tie), started when both it and the slot are ready. Whole tasks do not pack
/// evenly onto few slots, so even this dispatcher may not reach the ideal.
pub fn fifo_wall(queues: &[QueueLoad]) -> f64 {
    queues.iter().map(fifo_queue_wall).fold(0.0, f64::max)
}

fn fifo_queue_wall(queue: &QueueLoad) -> f64 {
    let mut free = vec![0.0_f64; queue.slots.max(1) as usize];
    let mut end = 0.0_f64;
    for job in &queue.jobs {
        // Slots are few (workers x concurrency), so a scan is as fast as a heap.
        let mut first = 0;
        for (i, at) in free.iter().enumerate() {
            if *at < free[first] {
                first = i;
            }
        }
        let finish = free[first].max(job.release) + job.seconds;
        free[first] = finish;
        end = end.max(finish);
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(seconds: &[f64]) -> Vec<Job> {
        seconds
            .iter()
            .map(|&seconds| Job {
                release: 0.0,
                seconds,
            })
            .collect()
    }

    fn queue(slots: u32, jobs: Vec<Job>) -> QueueLoad {
        QueueLoad {
            queue: "q".into(),
            slots,
            jobs,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ideal_and_fifo_walls_of_one_queue() {
        // (case, slots, durations, ideal wall, FIFO wall)
        let cases: &[(&str, u32, &[f64], f64, f64)] = &[
            ("empty", 3, &[], 0.0, 0.0),
            ("one slot: the sum", 1, &[0.1, 0.2, 0.3], 0.6, 0.6),
            ("even split", 2, &[0.1, 0.1, 0.1, 0.1], 0.2, 0.2),
            ("longest task bounds both", 4, &[1.0, 0.1], 1.0, 1.0),
            // FIFO: slot 1 takes 0.2, slot 2 takes 0.2, then 0.2 and 0.4 queue
            // behind them: 0.2 + 0.4 = 0.6, against 1.0 / 2 = 0.5.
            ("in order packs worse", 2, &[0.2, 0.2, 0.2, 0.4], 0.5, 0.6),
            ("three slots, ten tasks", 3, &[0.1; 10], 1.0 / 3.0, 0.4),
            ("no work", 128, &[0.0; 1000], 0.0, 0.0),
            ("zero slots count as one", 0, &[0.1, 0.1], 0.2, 0.2),
        ];
        for (case, slots, durations, ideal, fifo) in cases {
            let queues = [queue(*slots, closed(durations))];
            assert!(close(ideal_wall(&queues), *ideal), "{case}: ideal");
            assert!(close(fifo_wall(&queues), *fifo), "{case}: fifo");
            assert!(fifo_wall(&queues) >= ideal_wall(&queues) - 1e-12, "{case}");
        }
    }

    #[test]
    fn the_slowest_queue_decides() {
        // queue_a: 3 x 0.1 s on 3 slots -> 0.1 s; queue_b: 4 x 0.1 s on 1 -> 0.4 s.
        let capacity = Capacity {
            default: 1,
            per_queue: BTreeMap::from([("queue_a".to_owned(), 3)]),
        };
        let job = Job {
            release: 0.0,
            seconds: 0.1,
        };
        let plan = [
            ("queue_a", job),
            ("queue_b", job),
            ("queue_a", job),
            ("queue_b", job),
            ("queue_a", job),
            ("queue_b", job),
            ("queue_b", job),
        ];
        let queues = by_queue(plan, &capacity);
        let slots: Vec<(&str, u32, usize)> = queues
            .iter()
            .map(|q| (q.queue.as_str(), q.slots, q.jobs.len()))
            .collect();
        assert_eq!(slots, [("queue_a", 3, 3), ("queue_b", 1, 4)]);
        assert!(close(ideal_wall(&queues), 0.4));
        assert!(close(fifo_wall(&queues), 0.4));
    }

    /// (case, slots, (release, seconds)..., ideal wall, FIFO wall)
    type ReleaseCase<'a> = (&'a str, u32, &'a [(f64, f64)], f64, f64);

    #[test]
    fn releases_hold_tasks_back() {
        let cases: &[ReleaseCase] = &[
            // One task a second on one slot: the last starts at 2 s.
            (
                "open loop",
                1,
                &[(0.0, 0.5), (1.0, 0.5), (2.0, 0.5)],
                2.5,
                2.5,
            ),
            // Released faster than served: the backlog decides.
            (
                "backlog",
                1,
                &[(0.0, 1.0), (0.1, 1.0), (0.2, 1.0)],
                3.0,
                3.0,
            ),
            // A late long task on two slots.
            ("late", 2, &[(0.0, 0.1), (0.0, 0.1), (1.0, 1.0)], 2.0, 2.0),
        ];
        for (case, slots, jobs, ideal, fifo) in cases {
            let jobs = jobs
                .iter()
                .map(|&(release, seconds)| Job { release, seconds })
                .collect();
            let queues = [queue(*slots, jobs)];
            assert!(close(ideal_wall(&queues), *ideal), "{case}: ideal");
            assert!(close(fifo_wall(&queues), *fifo), "{case}: fifo");
        }
    }

    #[test]
    fn capacity_defaults_and_overrides() {
        let capacity = Capacity {
            default: 2,
            per_queue: BTreeMap::from([("big".to_owned(), 8), ("none".to_owned(), 0)]),
        };
        assert_eq!(capacity.slots("big"), 8);
        assert_eq!(capacity.slots("other"), 2);
        assert_eq!(capacity.slots("none"), 1);
    }
}
