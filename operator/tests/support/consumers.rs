//! Broker-side helpers of the IdleFirst tests: AMQP consumers standing in for the
//! workers of kwok pods, what the management API's statistics say they hold, and
//! a real Celery worker. (The proxy that breaks the consumers listing is a
//! [`super::fault_proxy::FaultProxy`].)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use serde_json::Value;

use super::{amqp_url, management_url};

// The worker crate's Celery venv helper: one venv, made one way, for both crates.
#[path = "../../../worker/tests/support/celery.rs"]
mod celery;
use celery::{celery_dir, venv_bin};

/// One pod's worker as the broker sees it: a channel of its own (unacked counts
/// are per channel), prefetch 1, consumer tag = the pod's name, as warren's
/// worker tags itself.
struct PodConsumer {
    pod: String,
    channel: Channel,
    consumer: Consumer,
    held: Vec<Delivery>,
}

/// The workers of several pods on one AMQP connection (kwok pods run nothing).
pub struct Workers {
    connection: Connection,
    consumers: Vec<PodConsumer>,
}

impl Workers {
    pub async fn connect() -> Self {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("amqp");
        Self {
            connection,
            consumers: Vec::new(),
        }
    }

    /// Starts consuming `queue` as `pod`'s worker.
    pub async fn start(&mut self, queue: &str, pod: &str) {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .expect("qos");
        let consumer = channel
            .basic_consume(
                queue.into(),
                pod.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        self.consumers.push(PodConsumer {
            pod: pod.to_owned(),
            channel,
            consumer,
            held: Vec::new(),
        });
    }

    /// Waits for a delivery to `pod`'s worker and holds it unacknowledged: the
    /// pod is busy until [`Self::finish`].
    pub async fn take_one(&mut self, pod: &str, within: Duration) {
        let worker = self
            .consumers
            .iter_mut()
            .find(|c| c.pod == pod)
            .expect("a worker of the pod");
        let delivery = tokio::time::timeout(within, worker.consumer.next())
            .await
            .unwrap_or_else(|_| panic!("no delivery to {pod} within {within:?}"))
            .expect("consumer open")
            .expect("delivery");
        worker.held.push(delivery);
    }

    /// Acknowledges what every worker holds: their tasks are done.
    pub async fn finish(&mut self) {
        for worker in &mut self.consumers {
            for delivery in worker.held.drain(..) {
                delivery.ack(BasicAckOptions::default()).await.expect("ack");
            }
        }
    }

    /// Closes `pod`'s channel, as its worker's connection goes with the pod.
    pub async fn stop(&mut self, pod: &str) {
        if let Some(at) = self.consumers.iter().position(|c| c.pod == pod) {
            let worker = self.consumers.remove(at);
            let _ = worker.channel.close(200, "pod gone".into()).await;
        }
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A consumer of a queue as the management API's statistics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenConsumer {
    pub tag: String,
    pub peer_host: Option<String>,
    /// Unacknowledged deliveries of its channel.
    pub unacked: i64,
}

async fn management_get(path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", management_url()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("management API")
        .json()
        .await
        .expect("json")
}

/// The consumers of `queue` (vhost `/`) joined with their channels' unacked
/// counts, as the operator reads them: from the statistics database, which lags
/// the broker by up to `collect_statistics_interval` (5 s).
pub async fn seen_consumers(queue: &str) -> Vec<SeenConsumer> {
    let consumers = management_get("/api/consumers/%2F").await;
    let channels = management_get("/api/vhosts/%2F/channels").await;
    let unacked = |channel: &str| {
        channels
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == channel)
            .and_then(|c| c["messages_unacknowledged"].as_i64())
            .unwrap_or(0)
    };
    consumers
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["queue"]["name"] == queue)
        .map(|c| SeenConsumer {
            tag: c["consumer_tag"].as_str().unwrap_or_default().to_owned(),
            peer_host: c["channel_details"]["peer_host"]
                .as_str()
                .map(str::to_owned),
            unacked: c["channel_details"]["name"].as_str().map_or(0, unacked),
        })
        .collect()
}

/// A real Celery worker of protocol/celery/celery_app.py consuming `queue` from
/// this host; killed when dropped.
pub struct CeleryWorker(Child);

impl CeleryWorker {
    pub async fn spawn(queue: &str) -> Self {
        let bin = tokio::task::spawn_blocking(venv_bin).await.expect("venv");
        let child = Command::new(bin.join("celery"))
            .args(["-A", "celery_app", "worker", "-Q", queue])
            .args(["--pool", "solo", "-c", "1", "-n", "idle-first@%h"])
            .args([
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ])
            .args(["-l", "warning"])
            .current_dir(celery_dir())
            .env("WARREN_AMQP_URL", amqp_url())
            .env("CELERY_QUEUE_A", queue)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("celery worker");
        Self(child)
    }
}

impl Drop for CeleryWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
