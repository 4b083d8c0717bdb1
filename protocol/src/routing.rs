//! Task name -> queue routing, the equivalent of Celery's `task_routes`.
//!
//! A name is looked up as given and then by its last dotted segment, so the seed's
//! `celery_app.task_a` and the short `task_a` reach the same queue.

use std::collections::BTreeMap;
use std::path::Path;

use crate::RoutingError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    routes: BTreeMap<String, String>,
}

impl Default for RoutingTable {
    /// The seed's routes: `task_a -> queue_a`, `task_b -> queue_b`.
    fn default() -> Self {
        Self::empty()
            .with("task_a", "queue_a")
            .with("task_b", "queue_b")
    }
}

impl RoutingTable {
    pub fn empty() -> Self {
        Self {
            routes: BTreeMap::new(),
        }
    }

    pub fn with(mut self, task: impl Into<String>, queue: impl Into<String>) -> Self {
        self.routes.insert(task.into(), queue.into());
        self
    }

    /// Adds rules of the form `TASK=QUEUE` (as given to `--route`).
    pub fn with_rules<'a>(
        mut self,
        rules: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, RoutingError> {
        for rule in rules {
            let (task, queue) = parse_rule(rule)?;
            self.routes.insert(task, queue);
        }
        Ok(self)
    }

    /// Reads a routing file: one `TASK = QUEUE` per line, `#` starts a comment.
    pub fn from_file(path: &Path) -> Result<Self, RoutingError> {
        let text = std::fs::read_to_string(path).map_err(|source| RoutingError::File {
            path: path.display().to_string(),
            source,
        })?;
        let rules = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or("").trim())
            .filter(|line| !line.is_empty());
        Self::empty().with_rules(rules)
    }

    /// The queue for a task name, trying the full name first, then its last segment.
    pub fn queue_for(&self, task: &str) -> Result<&str, RoutingError> {
        let short = task.rsplit('.').next().unwrap_or(task);
        self.routes
            .get(task)
            .or_else(|| self.routes.get(short))
            .map(String::as_str)
            .ok_or_else(|| RoutingError::NoRoute {
                task: task.to_owned(),
                known: self.describe(),
            })
    }

    /// Every distinct queue the table routes to.
    pub fn queues(&self) -> Vec<&str> {
        let mut queues: Vec<&str> = self.routes.values().map(String::as_str).collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    fn describe(&self) -> String {
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|(task, queue)| format!("{task}={queue}"))
            .collect();
        routes.join(", ")
    }
}

fn parse_rule(rule: &str) -> Result<(String, String), RoutingError> {
    let malformed = || RoutingError::MalformedRule {
        rule: rule.to_owned(),
    };
    let (task, queue) = rule.split_once('=').ok_or_else(malformed)?;
    let (task, queue) = (task.trim(), queue.trim());
    if task.is_empty() || queue.is_empty() {
        return Err(malformed());
    }
    Ok((task.to_owned(), queue.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_short_and_dotted_names() {
        let table = RoutingTable::default();
        assert_eq!(table.queue_for("task_a").expect("route"), "queue_a");
        assert_eq!(
            table.queue_for("celery_app.task_a").expect("route"),
            "queue_a"
        );
        assert_eq!(
            table.queue_for("celery_app.task_b").expect("route"),
            "queue_b"
        );
        assert_eq!(table.queues(), vec!["queue_a", "queue_b"]);
    }

    #[test]
    fn full_name_wins_over_short_name() {
        let table = RoutingTable::default().with("billing.task_a", "billing");
        assert_eq!(table.queue_for("billing.task_a").expect("route"), "billing");
        assert_eq!(table.queue_for("other.task_a").expect("route"), "queue_a");
    }

    #[test]
    fn unknown_task_lists_known_routes() {
        let err = RoutingTable::default()
            .queue_for("task_z")
            .expect_err("no route");
        assert_eq!(
            err.to_string(),
            "no route for task \"task_z\"; known routes: task_a=queue_a, task_b=queue_b"
        );
    }

    #[test]
    fn rules_and_files() {
        let table = RoutingTable::empty()
            .with_rules(["resize = images", "celery_app.send=mail"])
            .expect("rules");
        assert_eq!(table.queue_for("resize").expect("route"), "images");
        assert!(RoutingTable::empty().with_rules(["nonsense"]).is_err());
        assert!(RoutingTable::empty().with_rules(["=q"]).is_err());

        let path = std::env::temp_dir().join(format!("warren-routes-{}", std::process::id()));
        std::fs::write(&path, "# routes\ntask_c = queue_c  # comment\n\n").expect("write");
        let table = RoutingTable::from_file(&path).expect("file");
        std::fs::remove_file(&path).ok();
        assert_eq!(table.queue_for("task_c").expect("route"), "queue_c");
        let err = RoutingTable::from_file(Path::new("/nonexistent/routes")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/routes"));
    }
}
