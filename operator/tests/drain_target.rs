//! `spec.drainWithin` against the local control plane and the real RabbitMQ: a
//! steady 20 tasks/s of 0.5 s tasks settles at the replica count the formula
//! predicts from the plan (20 x 0.5 / 1 task at a time = 10, +-1), with the
//! per-replica rate measured from the broker's statistics, and a burst on top is
//! worked off within `drainWithin` of its publication.
//!
//! kwok's pods run nothing, so the workers are consumers in this process that
//! follow the Deployment's `spec.replicas` (one per replica, prefetch 1, each
//! task 0.5 s, acked after it), as warren's worker consumes.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use support::*;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The plan: arrivals per second, time per task, tasks a worker runs at once.
const RATE: f64 = 20.0;
const SERVICE: Duration = Duration::from_millis(500);
const CONCURRENCY: f64 = 1.0;
const DRAIN_WITHIN: Duration = Duration::from_secs(30);
const BURST: usize = 300;

/// Bodies of the acknowledged messages, with when they were acknowledged.
type Acks = Arc<Mutex<Vec<(String, Instant)>>>;

/// A message body that says when it was published: `"{kind}-{n}@{micros after epoch}"`.
fn stamped(kind: &str, n: usize, epoch: Instant) -> String {
    format!("{kind}-{n}@{}", epoch.elapsed().as_micros())
}

/// When a stamped message was published.
fn published_at(body: &str, epoch: Instant) -> Instant {
    let micros: u64 = body
        .rsplit_once('@')
        .and_then(|(_, t)| t.parse().ok())
        .expect("stamped body");
    epoch + Duration::from_micros(micros)
}

/// One consumer per replica of the Deployment, started and stopped as
/// `spec.replicas` changes (a stopped worker finishes its task first).
struct Fleet {
    follower: JoinHandle<()>,
    acks: Acks,
    stop: CancellationToken,
}

impl Fleet {
    fn follow(client: kube::Client, namespace: String, deployment: String, queue: String) -> Self {
        let acks: Acks = Arc::default();
        let stop = CancellationToken::new();
        let follower = tokio::spawn({
            let (acks, stop) = (acks.clone(), stop.clone());
            async move {
                let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
                    .await
                    .expect("amqp");
                let mut workers: Vec<(CancellationToken, JoinHandle<()>)> = Vec::new();
                while !stop.is_cancelled() {
                    let wanted = spec_replicas(&client, &namespace, &deployment).await.max(0);
                    while workers.len() < wanted as usize {
                        let quit = stop.child_token();
                        let tag = format!("pod-{}", workers.len());
                        let channel = connection.create_channel().await.expect("channel");
                        let worker = work(channel, queue.clone(), tag, acks.clone(), quit.clone());
                        workers.push((quit, tokio::spawn(worker)));
                    }
                    while workers.len() > wanted as usize {
                        if let Some((quit, _)) = workers.pop() {
                            quit.cancel();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                for (quit, worker) in workers {
                    quit.cancel();
                    let _ = worker.await;
                }
                let _ = connection.close(200, "done".into()).await;
            }
        });
        Self {
            follower,
            acks,
            stop,
        }
    }

    /// (published, acknowledged) of the messages whose body starts with `prefix`.
    fn acked(&self, prefix: &str, epoch: Instant) -> Vec<(Instant, Instant)> {
        let acks = self.acks.lock().expect("acks");
        acks.iter()
            .filter(|(body, _)| body.starts_with(prefix))
            .map(|(body, at)| (published_at(body, epoch), *at))
            .collect()
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.follower.await;
    }
}

/// One worker: takes a delivery, works SERVICE, acks; on `quit` cancels its
/// consumer and finishes what it holds.
async fn work(
    channel: lapin::Channel,
    queue: String,
    tag: String,
    acks: Acks,
    quit: CancellationToken,
) {
    channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    loop {
        let delivery = tokio::select! {
            () = quit.cancelled() => break,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                _ => break,
            },
        };
        tokio::time::sleep(SERVICE).await;
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
        let body = String::from_utf8_lossy(&delivery.data).into_owned();
        acks.lock().expect("acks").push((body, Instant::now()));
    }
    let _ = channel
        .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
        .await;
    // A delivery that arrived meanwhile goes back to the queue with the channel.
    let _ = channel.close(200, "scaled down".into()).await;
}

/// Publishes RATE messages a second ("steady-N") until cancelled.
fn publish_steadily(queue: String, epoch: Instant, stop: CancellationToken) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("amqp");
        let channel = connection.create_channel().await.expect("channel");
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / RATE));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0;
        while !stop.is_cancelled() {
            tick.tick().await;
            publish(&channel, &queue, &stamped("steady", sent, epoch)).await;
            sent += 1;
        }
        let _ = connection.close(200, "done".into()).await;
        sent
    })
}

async fn publish(channel: &lapin::Channel, queue: &str, body: &str) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .expect("publish");
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn a_steady_load_settles_at_the_formula_and_a_burst_drains_within_drain_within() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-drain").await;
    let queue = unique("drain_target");
    fill_queue(&queue, 0).await;
    create_deployment(&client, &ns.name, "worker", 1).await;
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    let body = json!({"metadata": {"name": "drain"}, "spec": {
        "queue": queue,
        "scaleTargetRef": {"name": "worker"},
        "minReplicas": 1,
        "maxReplicas": 40,
        "drainWithin": "30s",
        "pollInterval": "1s",
        "scaleDown": {"stabilizationWindow": "10s", "policy": "Any"}
    }});
    apply_taskqueue(&client, &ns.name, body)
        .await
        .expect("valid TaskQueue");
    let fleet = Fleet::follow(
        client.clone(),
        ns.name.clone(),
        "worker".into(),
        queue.clone(),
    );
    let stop_publishing = CancellationToken::new();
    let epoch = Instant::now();
    let publisher = publish_steadily(queue.clone(), epoch, stop_publishing.clone());

    // The formula on the plan: (0 backlog / 30 s + 20/s) / (1 / 0.5 s) = 10.
    let predicted = (RATE * SERVICE.as_secs_f64() / CONCURRENCY).ceil() as i32;
    let started = Instant::now();
    let mut settled_for = 0;
    while settled_for < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "replicas not within 1 of {predicted} with a measured rate for 10 s after 150 s"
        );
        let replicas = spec_replicas(&client, &ns.name, "worker").await;
        let status = taskqueue(&client, &ns.name, "drain").await.status;
        let measured = status.is_some_and(|s| s.rate_per_replica.is_some());
        settled_for = if measured && (replicas - predicted).abs() <= 1 {
            settled_for + 1
        } else {
            0
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let settled_after = started.elapsed();

    // Settled: 45 s of samples, every one within 1 of the formula's count.
    let mut samples = Vec::new();
    for _ in 0..45 {
        samples.push(spec_replicas(&client, &ns.name, "worker").await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = taskqueue(&client, &ns.name, "drain")
        .await
        .status
        .unwrap_or_default();
    let measured = status
        .rate_per_replica
        .expect("a measured rate per replica");
    let reason = status.last_decision.unwrap_or_default();
    println!(
        "settled after {settled_after:.0?}; replicas over 45 s: {samples:?}; predicted {predicted}; \
         measured {measured}/s per replica (planned {}); last decision: {reason}",
        CONCURRENCY / SERVICE.as_secs_f64()
    );
    assert!(
        samples.iter().all(|r| (r - predicted).abs() <= 1),
        "{samples:?} strays from {predicted}"
    );
    assert!(
        (measured - 2.0).abs() <= 0.3,
        "measured {measured}/s per replica; the plan is 2/s"
    );

    // A burst on top of the steady load: every task published from the burst on
    // waits (publication to acknowledgement, less its own 0.5 s) at most drainWithin.
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    let burst_at = Instant::now();
    for i in 0..BURST {
        publish(&channel, &queue, &stamped("burst", i, epoch)).await;
    }
    let promised_by = burst_at + DRAIN_WITHIN;
    eventually(
        DRAIN_WITHIN * 3,
        "the burst and the steady tasks published until drainWithin after it acknowledged",
        || async {
            fleet.acked("burst-", epoch).len() >= BURST
                && fleet
                    .acked("steady-", epoch)
                    .iter()
                    .any(|(published, _)| *published > promised_by)
        },
    )
    .await;
    let burst = fleet.acked("burst-", epoch);
    let burst_done = burst.iter().map(|(_, acked)| *acked).max().expect("acks") - burst_at;
    let longest_wait = burst
        .iter()
        .chain(&fleet.acked("steady-", epoch))
        .filter(|(published, _)| (burst_at..promised_by).contains(published))
        .map(|(published, acked)| acked.duration_since(*published).saturating_sub(SERVICE))
        .max()
        .expect("tasks after the burst");
    let peak = spec_replicas(&client, &ns.name, "worker").await;
    println!(
        "burst of {BURST} on {RATE}/s: its last task done {burst_done:.1?} after it; longest wait of a task \
         published within drainWithin of it {longest_wait:.1?} (drainWithin {DRAIN_WITHIN:?}); replicas then {peak}"
    );
    let scaled_for_the_burst: Vec<String> = events(&client, &ns.name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Scaled"))
        .filter_map(|e| e.message)
        .filter(|m| m.contains("waiting, arrivals") && m.contains("per worker, drain within 30s"))
        .collect();
    println!("scaled on the drain target: {scaled_for_the_burst:?}");
    assert!(
        !scaled_for_the_burst.is_empty(),
        "no Scaled Event names the rates the drain target used"
    );
    assert!(
        longest_wait <= DRAIN_WITHIN,
        "a task waited {longest_wait:.1?}, more than drainWithin {DRAIN_WITHIN:?}"
    );

    stop_publishing.cancel();
    let sent = publisher.await.expect("publisher");
    let _ = connection.close(200, "done".into()).await;
    eventually(
        Duration::from_secs(30),
        "every steady task acknowledged",
        || async { fleet.acked("steady-", epoch).len() >= sent },
    )
    .await;
    fleet.stop().await;
    drop(operator);
    delete_queue(&queue).await;
}
