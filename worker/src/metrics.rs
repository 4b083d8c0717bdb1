//! Prometheus metrics of a worker: tasks by name and outcome, durations, in-flight.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

pub struct WorkerMetrics {
    registry: Registry,
    pub tasks: Family<TaskLabels, Counter>,
    pub duration: Family<NameLabel, Histogram>,
    pub in_flight: Gauge,
    pub dead_lettered: Family<ReasonLabel, Counter>,
    pub retries: Family<NameLabel, Counter>,
    pub connected: Gauge,
    /// Deliveries handed back unstarted at shutdown: each one is the race of a
    /// worker chosen for removal as idle that took a message just before SIGTERM.
    pub returned_unstarted: Counter,
    /// True while consuming and not shutting down: what `/readyz` reports.
    ready: AtomicBool,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warren_worker");
        let tasks = Family::<TaskLabels, Counter>::default();
        let duration = Family::<NameLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        let in_flight = Gauge::default();
        let dead_lettered = Family::<ReasonLabel, Counter>::default();
        let retries = Family::<NameLabel, Counter>::default();
        let connected = Gauge::default();
        let returned_unstarted = Counter::default();
        registry.register(
            "tasks",
            "Tasks finished, by task name and outcome",
            tasks.clone(),
        );
        registry.register(
            "task_duration_seconds",
            "Handler run time",
            duration.clone(),
        );
        registry.register("tasks_in_flight", "Tasks running now", in_flight.clone());
        registry.register(
            "dead_lettered",
            "Messages moved to the dead-letter queue, by reason",
            dead_lettered.clone(),
        );
        registry.register("retries", "Task retries, by task name", retries.clone());
        registry.register(
            "broker_connected",
            "1 while connected to the broker",
            connected.clone(),
        );
        registry.register(
            "returned_unstarted",
            "Deliveries returned to the queue unstarted at shutdown",
            returned_unstarted.clone(),
        );
        Self {
            registry,
            returned_unstarted,
            tasks,
            duration,
            in_flight,
            dead_lettered,
            retries,
            connected,
            ready: AtomicBool::new(false),
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn record(&self, task: &str, outcome: &str) {
        self.tasks
            .get_or_create(&TaskLabels {
                task: task.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
