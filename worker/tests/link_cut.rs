//! The worker <-> broker link cut and restored (issue #12's fault suite): the
//! workers reach RabbitMQ through a TCP proxy the test breaks
//! ([`support::link::Link`]), and the workers must come back by themselves, as
//! the same processes, through the proxy, with no task lost. A task whose first
//! run's ack was lost in the cut is redelivered and runs again: counted and
//! printed, not forbidden.
//!
//! The dispatcher connects directly, not through the proxy: then only the
//! workers' link fails, the queue keeps being fed and drained of results, and a
//! missing or late result can only be the worker's doing. The dispatcher's own
//! reconnect is exercised by `broker_restart`.
//!
//! Three faults: a hard cut (RST) mid-load, a hard cut while idle, and a silent
//! partition (no RST, no FIN, no byte) while idle, which the workers and the
//! broker can only detect by missing heartbeats. The idle faults last longer
//! than twice the heartbeat. The worker sets no heartbeat of its own, so it takes
//! the broker's (RabbitMQ's default, 60 s); these workers propose 2 s in their
//! URL (`?heartbeat=2`, the lower proposal wins) so that the partition test runs
//! in seconds rather than minutes.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Map, json};
use support::link::Link;
use support::*;
use warren_dispatcher::{Client, TaskHandle, TaskReply};
use warren_protocol::{RoutingTable, TaskMessage, TaskStatus};

const WORKERS: usize = 2;
const CONCURRENCY: &str = "4";
/// The heartbeat the idle tests' workers propose, in seconds.
const HEARTBEAT: u16 = 2;

/// The workers of one test, each reaching the broker through the test's proxy.
struct Fleet {
    workers: Vec<WorkerProcess>,
    pids: Vec<u32>,
}

impl Fleet {
    async fn spawn(queue: &str, prefix: &str, url: &str) -> Self {
        let workers: Vec<_> = (1..=WORKERS)
            .map(|i| {
                WorkerProcess::spawn(
                    queue,
                    &format!("{prefix}-w{i}"),
                    &["--concurrency", CONCURRENCY, "--amqp-url", url],
                )
            })
            .collect();
        let pids = workers.iter().map(WorkerProcess::pid).collect();
        wait_for_consumers(queue, WORKERS as u32).await;
        Self { workers, pids }
    }

    /// Whether `metric` of every worker satisfies `test`.
    async fn all(&self, metric: &str, test: impl Fn(f64) -> bool) -> bool {
        for worker in &self.workers {
            if !test(worker.metric(metric, &[]).await) {
                return false;
            }
        }
        true
    }

    /// Waits until every worker's `metric` satisfies `test`.
    async fn wait_all(&self, what: &str, within: Duration, metric: &str, test: fn(f64) -> bool) {
        wait_until(what, within, || async {
            self.all(metric, test).await.then_some(())
        })
        .await;
    }

    /// Task runs that finished successfully, over every worker.
    async fn successes(&self) -> f64 {
        let mut total = 0.0;
        for worker in &self.workers {
            total += worker
                .metric("warren_worker_tasks_total", &[("outcome", "success")])
                .await;
        }
        total
    }

    /// The workers came back by themselves: the same processes, still running,
    /// each of which saw the broker go and started consuming again.
    fn assert_same_processes_reconnected(&mut self) {
        for (worker, pid) in self.workers.iter_mut().zip(&self.pids) {
            let log = worker.log_text();
            assert!(worker.is_running(), "{} exited:\n{log}", worker.name);
            assert_eq!(worker.pid(), *pid, "{} was restarted", worker.name);
            assert!(
                log.contains("broker unavailable; reconnecting"),
                "{} never saw the broker go:\n{log}",
                worker.name
            );
            assert!(
                log.matches("consuming").count() >= 2,
                "{} did not consume again:\n{log}",
                worker.name
            );
        }
    }

    fn logs(&self) -> String {
        self.workers
            .iter()
            .map(|w| format!("--- {}\n{}", w.name, w.log_text()))
            .collect()
    }
}

fn routing(queue: &str) -> RoutingTable {
    RoutingTable::empty().with("task_a", queue)
}

/// Tasks whose answers tell them apart: each waits its own `seconds`, which the
/// demo task echoes back.
struct Submitted {
    handles: Vec<TaskHandle>,
    expected: BTreeMap<String, f64>,
}

impl Submitted {
    fn new() -> Self {
        Self {
            handles: Vec::new(),
            expected: BTreeMap::new(),
        }
    }

    async fn submit(&mut self, client: &Client, count: usize, base_seconds: f64) {
        for _ in 0..count {
            let seconds = base_seconds + self.handles.len() as f64 / 10_000.0;
            let mut kwargs = Map::new();
            kwargs.insert("seconds".into(), json!(seconds));
            let handle = client
                .submit(TaskMessage::new("task_a", vec![], kwargs))
                .await
                .expect("confirmed");
            self.expected.insert(handle.id.clone(), seconds);
            self.handles.push(handle);
        }
    }

    /// Every result, each checked against its task: panics naming what is
    /// missing or wrong.
    async fn collect(self, timeout: Duration, fleet: &Fleet) -> Vec<TaskReply> {
        let total = self.handles.len();
        let mut replies = Vec::new();
        let mut lost = Vec::new();
        let mut results = Client::as_completed(self.handles, timeout);
        while let Some((id, result)) = results.next().await {
            let reply = match result {
                Ok(reply) => reply,
                Err(error) => {
                    lost.push(format!("{id}: {error}"));
                    continue;
                }
            };
            let result = &reply.result;
            assert_eq!(result.status, TaskStatus::Success, "{id}: {result:?}");
            assert_eq!(result.task_id, id);
            assert_eq!(
                result.result,
                json!({"task": "task_a", "mode": "wait", "seconds": self.expected[&id]}),
                "{id} answered for another task"
            );
            let worker = reply.worker().unwrap_or("?");
            assert!(
                fleet.workers.iter().any(|w| w.name == worker),
                "{id} answered by {worker}"
            );
            replies.push(reply);
        }
        assert!(
            lost.is_empty(),
            "lost {} of {total}: {lost:?}\n{}",
            lost.len(),
            fleet.logs()
        );
        replies
    }
}

/// Waits until nothing is left to run or to deliver: the queue is empty, no
/// worker runs a task and the client has taken every reply, so that every
/// duplicate has been counted. (The in-flight gauge used to keep counting the
/// runs a lost connection abandoned: this wait found it.)
async fn wait_settled(fleet: &Fleet, queue: &str, client: &Client) {
    let (_conn, channel) = channel().await;
    let channel = &channel;
    let settled = poll_until(Duration::from_secs(30), || async move {
        let (_, ready) = queue_state(channel, queue).await;
        let (_, replies) = queue_state(channel, client.reply_queue()).await;
        let idle = fleet
            .all("warren_worker_tasks_in_flight", |n| n == 0.0)
            .await;
        (ready == 0 && replies == 0 && idle).then_some(())
    })
    .await;
    if settled.is_none() {
        let mut in_flight = Vec::new();
        for worker in &fleet.workers {
            in_flight.push(worker.metric("warren_worker_tasks_in_flight", &[]).await);
        }
        panic!(
            "waited 30 s for the queues to settle: ready {:?}, replies waiting {:?}, in flight {in_flight:?}\n{}",
            queue_state(channel, queue).await,
            queue_state(channel, client.reply_queue()).await,
            fleet.logs()
        );
    }
}

/// Restores `link` and waits until every worker consumes through it again, on a
/// connection of its own accepted since the fault began (`accepted` is the
/// proxy's count then; while stalled, a reconnect attempt is accepted but held
/// until the restore); returns when the restore happened and how long the
/// reconnect took.
async fn restore_and_wait_for_reconnect(
    link: &Link,
    fleet: &Fleet,
    accepted: u64,
) -> (Instant, Duration) {
    let restored_at = Instant::now();
    link.restore();
    let back = poll_until(Duration::from_secs(30), || async {
        let back = link.accepted() >= accepted + WORKERS as u64
            && fleet
                .all("warren_worker_broker_connected", |n| n == 1.0)
                .await;
        back.then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "the workers did not reconnect within 30 s of the restore: {} connection(s) accepted \
         before the fault, {} since, {} open\n{}",
        accepted,
        link.accepted() - accepted,
        link.open(),
        fleet.logs()
    );
    (restored_at, restored_at.elapsed())
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn workers_reconnect_after_a_cut_mid_load_and_lose_nothing() {
    let q = unique_queue("link-cut");
    let link = Link::start().await;
    let mut fleet = Fleet::spawn(&q, "cut", &link.url(None)).await;
    assert_eq!(
        link.open(),
        WORKERS as u64,
        "one connection per worker, proxied"
    );
    let client = client(routing(&q)).await;

    let mut tasks = Submitted::new();
    tasks.submit(&client, 60, 0.2).await;
    // Cut mid-stream: some results are in, both workers run tasks, and results
    // and acks are in the air.
    wait_until(
        "10 results, and both workers running tasks",
        Duration::from_secs(30),
        || async {
            let busy = fleet
                .all("warren_worker_tasks_in_flight", |n| n >= 1.0)
                .await;
            (busy && fleet.successes().await >= 10.0).then_some(())
        },
    )
    .await;
    let ran_before_cut = fleet.successes().await;
    let accepted = link.accepted();
    let cut_at = Instant::now();
    link.cut();
    // A reset needs no heartbeat to be noticed.
    fleet
        .wait_all(
            "both workers to see the cut",
            Duration::from_secs(10),
            "warren_worker_broker_connected",
            |n| n == 0.0,
        )
        .await;
    let noticed = cut_at.elapsed();
    // The fault's length, not a wait for a condition: the workers keep trying
    // (and are refused) meanwhile.
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(cut_at.elapsed())).await;
    let refused = link.refused();
    let (restored_at, reconnect) = restore_and_wait_for_reconnect(&link, &fleet, accepted).await;

    let replies = tasks.collect(Duration::from_secs(60), &fleet).await;
    fleet.assert_same_processes_reconnected();
    let after: Vec<_> = replies
        .iter()
        .filter(|r| r.received_at > restored_at)
        .map(|r| r.received_at - restored_at)
        .collect();
    let Some(first_after) = after.iter().min().copied() else {
        panic!("the cut must leave work for after the restore ({ran_before_cut} ran before it)");
    };
    wait_settled(&fleet, &q, &client).await;
    let reruns = fleet.successes().await - replies.len() as f64;
    eprintln!(
        "link cut mid-load: {} tasks, {ran_before_cut} done before the cut, cut seen in {noticed:?}, \
         {refused} connection(s) refused while cut, reconnected {reconnect:?} after the restore, \
         first result {first_after:?} after it, {} results after it; \
         duplicate results {}, runs beyond one per task {reruns}",
        replies.len(),
        after.len(),
        client.duplicates(),
    );
    delete_queues(&[&q]).await;
}

/// Two workers on a fresh queue through a new link (heartbeat [`HEARTBEAT`]),
/// warmed up with four tasks and idle again, and a client connected directly.
async fn idle_fleet(queue: &str, name: &str) -> (String, Link, Fleet, Client) {
    let q = unique_queue(queue);
    let link = Link::start().await;
    let fleet = Fleet::spawn(&q, name, &link.url(Some(HEARTBEAT))).await;
    let client = client(routing(&q)).await;
    let mut warmup = Submitted::new();
    warmup.submit(&client, 4, 0.01).await;
    warmup.collect(Duration::from_secs(30), &fleet).await;
    fleet
        .wait_all(
            "the workers to be idle",
            Duration::from_secs(10),
            "warren_worker_tasks_in_flight",
            |n| n == 0.0,
        )
        .await;
    (q, link, fleet, client)
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn idle_workers_come_back_after_a_cut_longer_than_the_heartbeat() {
    let (q, link, mut fleet, client) = idle_fleet("link-idle-cut", "idlecut").await;

    let accepted = link.accepted();
    let cut_at = Instant::now();
    link.cut();
    fleet
        .wait_all(
            "both workers to see the cut",
            Duration::from_secs(10),
            "warren_worker_broker_connected",
            |n| n == 0.0,
        )
        .await;
    // Down for three heartbeats: long enough for either end to have given the
    // connection up even without the reset, and for the workers' reconnect
    // backoff to grow.
    tokio::time::sleep(
        (Duration::from_secs(HEARTBEAT.into()) * 3).saturating_sub(cut_at.elapsed()),
    )
    .await;
    let (restored_at, reconnect) = restore_and_wait_for_reconnect(&link, &fleet, accepted).await;

    let sent_at = Instant::now();
    let mut tasks = Submitted::new();
    tasks.submit(&client, 20, 0.05).await;
    let replies = tasks.collect(Duration::from_secs(30), &fleet).await;
    let done_in = sent_at.elapsed();
    fleet.assert_same_processes_reconnected();

    // A second, brief cut: the workers' reconnect backoff grew during the long
    // one; a new outage must start again from the shortest delay, not from the
    // longest the last outage reached (up to `reconnect_max`, 5 s).
    let accepted = link.accepted();
    link.cut();
    fleet
        .wait_all(
            "both workers to see the second cut",
            Duration::from_secs(10),
            "warren_worker_broker_connected",
            |n| n == 0.0,
        )
        .await;
    let (_, second_reconnect) = restore_and_wait_for_reconnect(&link, &fleet, accepted).await;
    assert!(
        second_reconnect < Duration::from_secs(2),
        "after a brief cut the workers took {second_reconnect:?} to reconnect: the backoff \
         of the earlier outage was not reset\n{}",
        fleet.logs()
    );
    let mut more = Submitted::new();
    more.submit(&client, 8, 0.05).await;
    more.collect(Duration::from_secs(30), &fleet).await;
    eprintln!(
        "idle link cut for {:?} (heartbeat {HEARTBEAT} s): reconnected {reconnect:?} after the restore, \
         {} tasks sent after it done in {done_in:?}, {} connection(s) refused while cut; \
         a second brief cut: reconnected {second_reconnect:?} after its restore",
        restored_at - cut_at,
        replies.len(),
        link.refused(),
    );
    delete_queues(&[&q]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn idle_workers_detect_a_silent_partition_by_heartbeat_and_come_back() {
    let (q, link, mut fleet, client) = idle_fleet("link-stall", "stall").await;

    let accepted = link.accepted();
    let stalled_at = Instant::now();
    link.stall();
    // Nothing closes: only missing heartbeats tell either end, after about two
    // heartbeats. Both must give the connection up.
    let heartbeats = Duration::from_secs(HEARTBEAT.into());
    fleet
        .wait_all(
            "both workers to miss the broker's heartbeats",
            heartbeats * 4 + Duration::from_secs(10),
            "warren_worker_broker_connected",
            |n| n == 0.0,
        )
        .await;
    let workers_noticed = stalled_at.elapsed();
    let (_conn, channel) = channel().await;
    let channel = &channel;
    let q_ref = q.as_str();
    wait_until(
        "the broker to drop the workers' consumers",
        heartbeats * 4 + Duration::from_secs(10),
        || async move { (queue_state(channel, q_ref).await.0 == 0).then_some(()) },
    )
    .await;
    let broker_noticed = stalled_at.elapsed();
    // Work sent during the partition waits in the queue for the workers' return.
    let mut tasks = Submitted::new();
    tasks.submit(&client, 10, 0.05).await;
    let (restored_at, reconnect) = restore_and_wait_for_reconnect(&link, &fleet, accepted).await;
    tasks.submit(&client, 10, 0.05).await;
    let replies = tasks.collect(Duration::from_secs(30), &fleet).await;
    fleet.assert_same_processes_reconnected();
    eprintln!(
        "idle link stalled for {:?} (heartbeat {HEARTBEAT} s): workers gave it up after {workers_noticed:?}, \
         the broker after {broker_noticed:?}; reconnected {reconnect:?} after the restore, {} tasks done",
        restored_at - stalled_at,
        replies.len(),
    );
    delete_queues(&[&q]).await;
}
