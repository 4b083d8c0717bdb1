//! Shared harness of the broker integration tests: the real RabbitMQ at
//! `WARREN_AMQP_URL`, worker binaries as child processes, unique queues per test.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use warren_dispatcher::{Client, ClientConfig};
use warren_protocol::RoutingTable;

pub use warren_protocol::amqp::DEFAULT_AMQP_URL;

pub fn amqp_url() -> String {
    std::env::var("WARREN_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.into())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("worker/ has a parent")
        .to_path_buf()
}

/// A queue name no other test (or earlier run) uses.
pub fn unique_queue(prefix: &str) -> String {
    format!(
        "test.{prefix}.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub async fn client(routing: RoutingTable) -> Client {
    let config = ClientConfig {
        amqp_url: amqp_url(),
        routing,
        name: format!(
            "test-client-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ),
        ..ClientConfig::default()
    };
    Client::connect(config, Duration::from_secs(10))
        .await
        .expect("RabbitMQ must be running (make rabbitmq-up) or WARREN_AMQP_URL set")
}

pub async fn channel() -> (Connection, Channel) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("connect to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// A passive declare: the queue's consumers and ready messages, or an error (which
/// also closes `channel`) when the queue does not exist.
async fn passive_declare(channel: &Channel, queue: &str) -> lapin::Result<(u32, u32)> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok((q.consumer_count(), q.message_count()))
}

/// Consumers and ready messages of `queue`.
pub async fn queue_state(channel: &Channel, queue: &str) -> (u32, u32) {
    passive_declare(channel, queue).await.expect("queue exists")
}

/// Waits until `queue` has `consumers` consumers, so a test sends only once every
/// worker takes part.
pub async fn wait_for_consumers(queue: &str, consumers: u32) {
    let (connection, _) = channel().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A passive declare of a queue not yet declared closes its channel, so
        // each probe gets a fresh one.
        let channel = connection.create_channel().await.expect("channel");
        if let Ok((present, _)) = passive_declare(&channel, queue).await {
            if present >= consumers {
                return;
            }
            let _ = channel.close(200, "probe done".into()).await;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} did not get {consumers} consumers in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes every message of `queue` (the dead-letter queue in tests).
pub async fn drain(channel: &Channel, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let mut messages = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        messages.push(message);
    }
    messages
}

pub async fn delete_queues(queues: &[&str]) {
    let (_conn, channel) = channel().await;
    for queue in queues {
        let _ = channel
            .queue_delete((*queue).into(), QueueDeleteOptions::default())
            .await;
        let _ = channel
            .queue_delete(
                warren_protocol::amqp::dead_letter_queue(queue)
                    .as_str()
                    .into(),
                QueueDeleteOptions::default(),
            )
            .await;
        let _ = channel
            .exchange_delete((*queue).into(), Default::default())
            .await;
    }
}

/// A `warren-worker` child process, killed when dropped.
pub struct WorkerProcess {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn spawn(queue: &str, name: &str, extra: &[&str]) -> Self {
        let log = std::env::temp_dir().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_warren-worker"))
            .args(["--queue", queue, "--name", name, "--listen", "off"])
            .args(extra)
            .env("WARREN_AMQP_URL", amqp_url())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn warren-worker");
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {within:?}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
