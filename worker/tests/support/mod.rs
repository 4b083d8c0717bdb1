//! Shared harness of the broker integration tests: the real RabbitMQ at
//! `WARREN_AMQP_URL`, worker binaries as child processes, unique queues per test,
//! and [`wait_until`] for the conditions a test waits on (never a bare sleep).

#![allow(dead_code)]

pub mod link;

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
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

/// Polls `probe` every 50 ms until it yields a value, and returns it; panics
/// naming `what` if that takes longer than `within`.
pub async fn wait_until<T, F, Fut>(what: impl Display, within: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_until(within, probe).await {
        Some(value) => value,
        None => panic!("waited {within:?} for {what}, in vain"),
    }
}

/// Polls `probe` every 50 ms until it yields a value, for at most `within`.
pub async fn poll_until<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let connection = &connection;
    let what = format!("{queue} to have {consumers} consumers");
    wait_until(what, Duration::from_secs(30), || async move {
        // A passive declare of a queue not yet declared closes its channel, so
        // each probe gets a fresh one.
        let channel = connection.create_channel().await.expect("channel");
        let (present, _) = passive_declare(&channel, queue).await.ok()?;
        let _ = channel.close(200, "probe done".into()).await;
        (present >= consumers).then_some(())
    })
    .await;
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

/// A `warren-worker` child process, killed when dropped. It serves its probes
/// and metrics on a free port of 127.0.0.1, which tests read its state from.
pub struct WorkerProcess {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn spawn(queue: &str, name: &str, extra: &[&str]) -> Self {
        // Unique, so that test runs side by side do not write the same log.
        let log = std::env::temp_dir().join(format!(
            "{name}-{}.log",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_warren-worker"))
            .args(["--queue", queue, "--name", name, "--listen", "127.0.0.1:0"])
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

    /// The process id: the same before and after a fault means not restarted.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (it has not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let child = &mut self.child;
        let exited = poll_until(within, || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await;
        match exited {
            Some(status) => status.code(),
            None => panic!(
                "{} did not exit within {within:?}; log:\n{}",
                self.name,
                self.log_text()
            ),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address the worker serves /metrics on, from its startup log line.
    pub async fn metrics_addr(&self) -> SocketAddr {
        let what = format!("{} to log its metrics address", self.name);
        wait_until(what, Duration::from_secs(10), || async {
            self.log_text()
                .lines()
                .filter(|line| line.contains("serving /healthz"))
                .flat_map(str::split_whitespace)
                .find_map(|word| word.strip_prefix("addr=")?.parse().ok())
        })
        .await
    }

    /// The sum of the samples of metric `name` whose labels include `labels`
    /// (`name` as exposed: a counter ends in `_total`).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let url = format!("http://{}/metrics", self.metrics_addr().await);
        let text = reqwest::get(&url)
            .await
            .and_then(reqwest::Response::error_for_status)
            .unwrap_or_else(|e| panic!("{} serves no metrics: {e}", self.name))
            .text()
            .await
            .expect("metrics text");
        sum_samples(&text, name, labels)
    }

    /// Waits until the worker runs at least `tasks` tasks at once: it holds work.
    pub async fn wait_for_in_flight(&self, tasks: u32) {
        let what = format!("{} to run {tasks} task(s)", self.name);
        wait_until(what, Duration::from_secs(30), || async {
            let running = self.metric("warren_worker_tasks_in_flight", &[]).await;
            (running >= f64::from(tasks)).then_some(())
        })
        .await;
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums the samples of `name` carrying every one of `labels` in an OpenMetrics text.
fn sum_samples(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, label_set) = series.split_once('{').unwrap_or((series, ""));
            metric == name
                && labels
                    .iter()
                    .all(|(key, value)| label_set.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}
