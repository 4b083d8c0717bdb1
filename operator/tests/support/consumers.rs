//! Broker-side helpers of the IdleFirst tests: AMQP consumers standing in for the
//! workers of kwok pods, what the management API's statistics say they hold, a
//! real Celery worker, and a proxy that breaks the consumers listing.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// An HTTP proxy in front of the management API that answers 500 to
/// `/api/consumers/...` and forwards every other GET; stopped when dropped.
pub struct BrokenConsumersProxy {
    pub url: String,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokenConsumersProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let refused = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&refused);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, http.clone(), Arc::clone(&counter)));
            }
        });
        Self { url, refused, task }
    }

    /// How many consumers listings it refused.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for BrokenConsumersProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection (`Connection: close`): the operator sends GETs
/// without a body, so the head is the whole request.
async fn answer(mut stream: TcpStream, http: reqwest::Client, refused: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let mut request = lines.next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        request.next().unwrap_or("GET"),
        request.next().unwrap_or("/"),
    );
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    let (status, body) = if target.starts_with("/api/consumers/") {
        refused.fetch_add(1, Ordering::Relaxed);
        (500, br#"{"error":"broken by the test"}"#.to_vec())
    } else {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut forward = http.request(method, format!("{}{target}", management_url()));
        if let Some(authorization) = authorization {
            forward = forward.header(reqwest::header::AUTHORIZATION, authorization);
        }
        match forward.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (
                    status,
                    response
                        .bytes()
                        .await
                        .map(|b| b.to_vec())
                        .unwrap_or_default(),
                )
            }
            Err(_) => (502, Vec::new()),
        }
    };
    let phrase = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let reply = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}
