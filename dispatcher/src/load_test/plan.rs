//! The task plan of a load test: which task, and how long it should take, in what
//! order. Seeded, so Celery and warren can be given the very same plan.

use serde_json::{Map, json};
use warren_protocol::TaskMessage;

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTask {
    pub name: String,
    pub seconds: f64,
    pub cpu: bool,
}

impl PlannedTask {
    /// The message for this task: `seconds` and `cpu` as keyword arguments, which the
    /// demo tasks of both warren and the Celery benchmark app understand.
    pub fn message(&self) -> TaskMessage {
        let mut kwargs = Map::new();
        kwargs.insert("seconds".into(), json!(self.seconds));
        if self.cpu {
            kwargs.insert("cpu".into(), json!(true));
        }
        TaskMessage::new(self.name.clone(), Vec::new(), kwargs)
    }
}

#[derive(Debug, Clone)]
pub struct PlanSpec {
    /// Task names in mix order, each with its weight: `[("task_a", 1), ("task_b", 1)]`.
    pub mix: Vec<(String, u32)>,
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub cpu: bool,
    pub seed: u64,
}

impl PlanSpec {
    /// `count` tasks, interleaved by weight (1:1 alternates a, b, a, b...), each with a
    /// duration drawn uniformly from `[min_seconds, max_seconds]`.
    pub fn plan(&self, count: usize) -> Vec<PlannedTask> {
        let pattern: Vec<&str> = self
            .mix
            .iter()
            .flat_map(|(name, weight)| std::iter::repeat_n(name.as_str(), *weight as usize))
            .collect();
        if pattern.is_empty() {
            return Vec::new();
        }
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let span = (self.max_seconds - self.min_seconds).max(0.0);
        (0..count)
            .map(|i| PlannedTask {
                name: pattern[i % pattern.len()].to_owned(),
                seconds: round_ms(self.min_seconds + rng.f64() * span),
                cpu: self.cpu,
            })
            .collect()
    }
}

/// Durations in whole milliseconds, so both sides sleep exactly the same.
fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Reads a mix like `1:1` or `3:1` against the task names it weighs.
pub fn parse_mix(mix: &str, names: [&str; 2]) -> Result<Vec<(String, u32)>, String> {
    let (a, b) = mix
        .split_once(':')
        .ok_or_else(|| format!("--mix {mix:?} must look like A:B, for example 1:1 or 3:1"))?;
    let weight = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("--mix {mix:?}: {s:?} is not a whole number"))
    };
    let weights = [weight(a)?, weight(b)?];
    if weights == [0, 0] {
        return Err(format!(
            "--mix {mix:?} sends nothing; one side must be above 0"
        ));
    }
    Ok(names
        .into_iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0)
        .map(|(n, w)| (n.to_owned(), w))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mix: &str) -> PlanSpec {
        PlanSpec {
            mix: parse_mix(mix, ["task_a", "task_b"]).expect("mix"),
            min_seconds: 0.1,
            max_seconds: 0.2,
            cpu: false,
            seed: 7,
        }
    }

    #[test]
    fn interleaves_by_weight_within_bounds() {
        let plan = spec("1:1").plan(6);
        let names: Vec<&str> = plan.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["task_a", "task_b", "task_a", "task_b", "task_a", "task_b"]
        );
        assert!(plan.iter().all(|t| (0.1..=0.2).contains(&t.seconds)));
        let names: Vec<String> = spec("3:1").plan(4).into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["task_a", "task_a", "task_a", "task_b"]);
        assert!(spec("0:1").plan(3).iter().all(|t| t.name == "task_b"));
    }

    #[test]
    fn same_seed_same_plan() {
        assert_eq!(spec("1:1").plan(50), spec("1:1").plan(50));
    }

    #[test]
    fn bad_mixes_are_explained() {
        assert!(
            parse_mix("1", ["a", "b"])
                .expect_err("no colon")
                .contains("A:B")
        );
        assert!(
            parse_mix("x:1", ["a", "b"])
                .expect_err("nan")
                .contains("whole number")
        );
        assert!(
            parse_mix("0:0", ["a", "b"])
                .expect_err("zero")
                .contains("sends nothing")
        );
    }

    #[test]
    fn message_carries_the_duration() {
        let task = PlannedTask {
            name: "task_a".into(),
            seconds: 0.125,
            cpu: true,
        };
        let message = task.message();
        assert_eq!(message.kwargs["seconds"], json!(0.125));
        assert_eq!(message.kwargs["cpu"], json!(true));
    }
}
