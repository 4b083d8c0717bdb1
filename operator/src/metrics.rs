//! Prometheus metrics of the operator: reconciliations, errors by reason, per-queue
//! backlog and desired replicas, broker poll latency and request counts, and where
//! replica counts were read from, and how scale-downs chose their pods.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub namespace: String,
    pub taskqueue: String,
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BusyLabel {
    pub busy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MatchedLabel {
    pub matched: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub errors: Family<ReasonLabel, Counter>,
    pub backlog: Family<QueueLabels, Gauge>,
    pub desired: Family<QueueLabels, Gauge>,
    pub poll_seconds: Histogram,
    pub management_requests: Counter,
    pub scale_events: Counter,
    pub target_reads: Family<SourceLabel, Counter>,
    /// Pods deleted after a warren scale-down, by whether the broker saw them busy.
    pub victims: Family<BusyLabel, Counter>,
    /// Pods of scaling-down targets matched (or not) to a consumer of the queue.
    pub matched_pods: Family<MatchedLabel, Counter>,
    pub occupancy_seconds: Histogram,
    /// Entries kept per TaskQueue, by kind: flat while the TaskQueues are, so a
    /// leak shows as growth.
    pub tracked: Family<KindLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warren_operator");
        let reconciles = Counter::default();
        let errors = Family::<ReasonLabel, Counter>::default();
        let backlog = Family::<QueueLabels, Gauge>::default();
        let desired = Family::<QueueLabels, Gauge>::default();
        let poll_seconds =
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let management_requests = Counter::default();
        let scale_events = Counter::default();
        let target_reads = Family::<SourceLabel, Counter>::default();
        let victims = Family::<BusyLabel, Counter>::default();
        let matched_pods = Family::<MatchedLabel, Counter>::default();
        let occupancy_seconds =
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]);
        let tracked = Family::<KindLabel, Gauge>::default();
        registry.register(
            "reconciles",
            "TaskQueue reconciliations",
            reconciles.clone(),
        );
        registry.register("errors", "Errors, by reason", errors.clone());
        registry.register(
            "queue_backlog",
            "Backlog of each TaskQueue's queue",
            backlog.clone(),
        );
        registry.register(
            "desired_replicas",
            "Desired replicas of each TaskQueue",
            desired.clone(),
        );
        registry.register(
            "broker_poll_seconds",
            "Time to read one broker",
            poll_seconds.clone(),
        );
        registry.register(
            "management_requests",
            "HTTP requests made to management APIs",
            management_requests.clone(),
        );
        registry.register(
            "scales",
            "Changes of a workload's replicas",
            scale_events.clone(),
        );
        registry.register(
            "target_reads",
            "Replica counts read, by source: the Deployment watch cache or a GET of /scale",
            target_reads.clone(),
        );
        registry.register(
            "scale_down_victims",
            "Pods deleted after a scale-down, by whether the broker saw them holding deliveries (IdleFirst only)",
            victims.clone(),
        );
        registry.register(
            "scale_down_pods",
            "Pods of a scaling-down target, by whether a consumer of the queue was matched to them",
            matched_pods.clone(),
        );
        registry.register(
            "occupancy_read_seconds",
            "Time to read which consumers hold deliveries (before an IdleFirst scale-down)",
            occupancy_seconds.clone(),
        );
        registry.register(
            "tracked_entries",
            "Entries the operator keeps for TaskQueues, by kind (histories, status_writes, poller_watches, poller_samples, broker_loops, secrets, queue_series), counted every 10 s",
            tracked.clone(),
        );
        Self {
            registry,
            tracked,
            victims,
            matched_pods,
            occupancy_seconds,
            reconciles,
            errors,
            backlog,
            desired,
            poll_seconds,
            management_requests,
            scale_events,
            target_reads,
        }
    }

    pub fn target_read(&self, source: &'static str) {
        self.target_reads
            .get_or_create(&SourceLabel { source })
            .inc();
    }

    pub fn error(&self, reason: &str) {
        self.errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn poll(&self, took: Duration, requests: usize) {
        self.poll_seconds.observe(took.as_secs_f64());
        self.management_requests.inc_by(requests as u64);
    }

    pub fn occupancy_read(&self, took: Duration) {
        self.occupancy_seconds.observe(took.as_secs_f64());
    }

    pub fn victim(&self, busy: bool) {
        let busy = if busy { "true" } else { "false" };
        self.victims.get_or_create(&BusyLabel { busy }).inc();
    }

    pub fn pods_matched(&self, matched: u64, unmatched: u64) {
        let count = |matched| self.matched_pods.get_or_create(&MatchedLabel { matched });
        count("true").inc_by(matched);
        count("false").inc_by(unmatched);
    }

    /// Removes a TaskQueue's per-queue series.
    pub fn forget_queue(&self, labels: &QueueLabels) {
        self.backlog.remove(labels);
        self.desired.remove(labels);
    }

    pub fn track(&self, kind: &'static str, entries: usize) {
        let entries = i64::try_from(entries).unwrap_or(i64::MAX);
        self.tracked.get_or_create(&KindLabel { kind }).set(entries);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
