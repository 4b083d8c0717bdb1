//! Who holds a queue's deliveries: the consumers of a vhost joined with their
//! channels' unacknowledged counts. Read only when a TaskQueue is about to scale
//! down, in two listings per vhost, which every TaskQueue of that broker and vhost
//! scaling down within [`SHARED_FOR`] shares.
//!
//! Unacked counts are per channel (`/api/vhosts/{vhost}/channels`), not per
//! consumer; consumers (`/api/consumers/{vhost}`) name their channel, queue, tag
//! and peer. The channel listing alone names connections by "ip:port -> ip:port",
//! not by the client's name, hence the join. Both come from the statistics
//! database, which the broker refreshes every `collect_statistics_interval` (5 s
//! by default); the scale-down planner corrects for that lag with the queue's
//! fresh unacked count.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::management::{ManagementClient, RowsPath};
use super::{BrokerError, Endpoint};
use crate::metrics::Metrics;

/// How long one reading serves other TaskQueues of the same broker and vhost.
pub const SHARED_FOR: Duration = Duration::from_secs(1);

const CONSUMER_COLUMNS: &str =
    "queue.name,consumer_tag,channel_details.name,channel_details.peer_host";
const CHANNEL_COLUMNS: &str = "name,messages_unacknowledged";

/// One consumer of a queue, with the unacknowledged deliveries of its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConsumer {
    /// warren's worker uses its pod name; Celery uses `None1`, `None2`, ...
    pub tag: String,
    /// The client's address as the broker sees it (the pod IP, unless a proxy or
    /// NAT sits between).
    pub peer_host: Option<String>,
    pub channel: String,
    /// Deliveries the channel holds unacknowledged (shared by its consumers).
    pub unacked: i64,
}

/// Consumers by queue name.
pub type Consumers = HashMap<String, Vec<QueueConsumer>>;

#[derive(Deserialize)]
struct ConsumerRow {
    #[serde(default)]
    queue: Value,
    #[serde(default)]
    consumer_tag: String,
    /// An object, or `[]` when the channel is closing.
    #[serde(default)]
    channel_details: Value,
}

#[derive(Deserialize)]
struct ChannelRow {
    name: String,
    #[serde(default)]
    messages_unacknowledged: Option<i64>,
}

/// Joins consumers with their channels' unacked counts, by queue. A consumer
/// whose channel is not (or no longer) listed counts as holding nothing.
fn join(consumers: Vec<ConsumerRow>, channels: Vec<ChannelRow>) -> Consumers {
    let unacked: HashMap<String, i64> = channels
        .into_iter()
        .map(|c| (c.name, c.messages_unacknowledged.unwrap_or(0).max(0)))
        .collect();
    let mut by_queue = Consumers::new();
    for row in consumers {
        let Some(queue) = row.queue.get("name").and_then(Value::as_str) else {
            continue;
        };
        let text = |key: &str| {
            row.channel_details
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let channel = text("name").unwrap_or_default();
        by_queue
            .entry(queue.to_owned())
            .or_default()
            .push(QueueConsumer {
                tag: row.consumer_tag.clone(),
                peer_host: text("peer_host"),
                unacked: unacked.get(&channel).copied().unwrap_or(0),
                channel,
            });
    }
    by_queue
}

type Reading = Result<Arc<Consumers>, BrokerError>;

/// Reads consumers on demand, sharing a reading for [`SHARED_FOR`].
pub struct OccupancyReader {
    client: ManagementClient,
    metrics: Arc<Metrics>,
    /// Held across the read, so TaskQueues scaling down together wait for one
    /// read instead of each making their own.
    recent: tokio::sync::Mutex<HashMap<(Endpoint, String), (Instant, Reading)>>,
}

impl OccupancyReader {
    pub fn new(timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            client: ManagementClient::new(timeout),
            metrics,
            recent: tokio::sync::Mutex::default(),
        }
    }

    /// The consumers of `vhost`, by queue.
    pub async fn read(&self, endpoint: &Endpoint, vhost: &str) -> Reading {
        let mut recent = self.recent.lock().await;
        recent.retain(|_, (at, _)| at.elapsed() < SHARED_FOR);
        let key = (endpoint.clone(), vhost.to_owned());
        if let Some((_, reading)) = recent.get(&key) {
            return reading.clone();
        }
        let started = Instant::now();
        let reading = self.fetch(endpoint, vhost).await;
        self.metrics.occupancy_read(started.elapsed());
        if let Err(error) = &reading {
            self.metrics.error(error.reason());
        }
        recent.insert(key, (Instant::now(), reading.clone()));
        reading
    }

    async fn fetch(&self, endpoint: &Endpoint, vhost: &str) -> Reading {
        let (consumers, made) = self
            .client
            .rows::<ConsumerRow>(endpoint, vhost, RowsPath::Consumers, CONSUMER_COLUMNS)
            .await;
        self.metrics.management_requests.inc_by(made as u64);
        let consumers = consumers?;
        let (channels, made) = self
            .client
            .rows::<ChannelRow>(endpoint, vhost, RowsPath::Channels, CHANNEL_COLUMNS)
            .await;
        self.metrics.management_requests.inc_by(made as u64);
        Ok(Arc::new(join(consumers, channels?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_consumers_to_their_channels_unacked_counts() {
        // As RabbitMQ 3.10 answers: a warren worker (tag = pod name), a Celery
        // worker (tag None1, and a second consumer on its pidbox queue), and a
        // consumer whose channel is closing (channel_details = []).
        let consumers: Vec<ConsumerRow> = serde_json::from_value(serde_json::json!([
            {"queue": {"name": "queue_a"}, "consumer_tag": "worker-a-1",
             "channel_details": {"name": "10.88.0.5:4000 -> 10.88.0.1:5672 (1)", "peer_host": "10.88.0.5"}},
            {"queue": {"name": "queue_a"}, "consumer_tag": "None1",
             "channel_details": {"name": "10.88.0.6:4100 -> 10.88.0.1:5672 (1)", "peer_host": "10.88.0.6"}},
            {"queue": {"name": "celery@w.pidbox"}, "consumer_tag": "None2",
             "channel_details": {"name": "10.88.0.6:4100 -> 10.88.0.1:5672 (2)", "peer_host": "10.88.0.6"}},
            {"queue": {"name": "queue_a"}, "consumer_tag": "worker-a-2", "channel_details": []},
        ]))
        .expect("consumers");
        let channels: Vec<ChannelRow> = serde_json::from_value(serde_json::json!([
            {"name": "10.88.0.5:4000 -> 10.88.0.1:5672 (1)", "messages_unacknowledged": 2},
            {"name": "10.88.0.6:4100 -> 10.88.0.1:5672 (1)", "messages_unacknowledged": 0},
        ]))
        .expect("channels");
        let joined = join(consumers, channels);
        let queue_a = &joined["queue_a"];
        let seen: Vec<(&str, Option<&str>, i64)> = queue_a
            .iter()
            .map(|c| (c.tag.as_str(), c.peer_host.as_deref(), c.unacked))
            .collect();
        assert_eq!(
            seen,
            [
                ("worker-a-1", Some("10.88.0.5"), 2),
                ("None1", Some("10.88.0.6"), 0),
                ("worker-a-2", None, 0),
            ]
        );
        assert_eq!(joined["celery@w.pidbox"].len(), 1);
    }
}
