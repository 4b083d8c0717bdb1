//! The task flow against a real RabbitMQ: routing, spread, failure handling,
//! dead-lettering and the loss of workers.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Map, json};
use support::*;
use warren_dispatcher::{Client, TaskHandle};
use warren_protocol::{DeadLetter, DeadLetterReason, RoutingTable, TaskMessage, TaskStatus};

fn task(name: &str, seconds: f64) -> TaskMessage {
    let mut kwargs = Map::new();
    kwargs.insert("seconds".into(), json!(seconds));
    TaskMessage::new(name, vec![], kwargs)
}

async fn submit_all(client: &Client, name: &str, seconds: f64, count: usize) -> Vec<TaskHandle> {
    let mut handles = Vec::new();
    for _ in 0..count {
        handles.push(client.submit(task(name, seconds)).await.expect("confirmed"));
    }
    handles
}

/// Collects every result; panics naming the tasks without one.
async fn collect(handles: Vec<TaskHandle>, timeout: Duration) -> BTreeMap<String, String> {
    let ids: Vec<String> = handles.iter().map(|h| h.id.clone()).collect();
    let mut by_worker = BTreeMap::new();
    let mut missing = Vec::new();
    let mut results = Client::as_completed(handles, timeout);
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(reply) => {
                assert_eq!(
                    reply.result.status,
                    TaskStatus::Success,
                    "{id}: {:?}",
                    reply.result
                );
                by_worker.insert(id, reply.worker().unwrap_or("?").to_owned());
            }
            Err(error) => missing.push(format!("{id}: {error}")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} tasks lost: {missing:?}",
        missing.len(),
        ids.len()
    );
    by_worker
}

fn counts(by_worker: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for worker in by_worker.values() {
        *counts.entry(worker.clone()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn routes_by_task_and_spreads_over_workers() {
    let (qa, qb) = (unique_queue("route-a"), unique_queue("route-b"));
    let routing = RoutingTable::empty()
        .with("task_a", qa.as_str())
        .with("task_b", qb.as_str());
    let _wa = WorkerProcess::spawn(&qa, "route-wa", &[]);
    let _wb: Vec<_> = (1..=3)
        .map(|i| WorkerProcess::spawn(&qb, &format!("route-wb{i}"), &[]))
        .collect();
    wait_for_consumers(&qa, 1).await;
    wait_for_consumers(&qb, 3).await;
    let client = client(routing).await;

    let mut handles = submit_all(&client, "task_a", 0.05, 10).await;
    handles.extend(submit_all(&client, "celery_app.task_b", 0.05, 30).await);
    let by_worker = collect(handles, Duration::from_secs(30)).await;
    let counts = counts(&by_worker);
    assert_eq!(
        counts.get("route-wa"),
        Some(&10),
        "task_a all on queue a's worker: {counts:?}"
    );
    for i in 1..=3 {
        let n = counts.get(&format!("route-wb{i}")).copied().unwrap_or(0);
        assert!(
            n >= 5,
            "worker route-wb{i} got {n} of 30 task_b: {counts:?}"
        );
    }
    delete_queues(&[&qa, &qb]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn sigkill_mid_load_loses_nothing() {
    let q = unique_queue("kill");
    let routing = RoutingTable::empty().with("task_a", q.as_str());
    let victim = WorkerProcess::spawn(&q, "kill-victim", &["--concurrency", "4"]);
    let _survivor = WorkerProcess::spawn(&q, "kill-survivor", &["--concurrency", "4"]);
    wait_for_consumers(&q, 2).await;
    let client = client(routing).await;

    let handles = submit_all(&client, "task_a", 0.2, 60).await;
    // Killed while it runs tasks: those must be redelivered, not lost.
    victim.wait_for_in_flight(1).await;
    victim.signal("KILL");
    let by_worker = collect(handles, Duration::from_secs(60)).await;
    let counts = counts(&by_worker);
    assert!(
        counts.get("kill-survivor").copied().unwrap_or(0) > 30,
        "{counts:?}"
    );
    // Tasks the victim had started ran again elsewhere; their first results never
    // came back, so the client sees each task once. Duplicates are counted, not lost.
    eprintln!("duplicates after SIGKILL: {}", client.duplicates());
    delete_queues(&[&q]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn sigterm_finishes_in_flight_and_returns_unstarted_work() {
    let q = unique_queue("term");
    let routing = RoutingTable::empty().with("task_a", q.as_str());
    // Prefetch above concurrency: the worker holds messages it has not started.
    let mut leaving = WorkerProcess::spawn(
        &q,
        "term-leaving",
        &[
            "--concurrency",
            "1",
            "--prefetch",
            "5",
            "--grace-period",
            "10s",
        ],
    );
    wait_for_consumers(&q, 1).await;
    let client = client(routing).await;
    let handles = submit_all(&client, "task_a", 0.4, 12).await;
    // SIGTERM only once it runs a task and holds unstarted ones: its prefetch of 5
    // has left the queue's 12 ready messages.
    leaving.wait_for_in_flight(1).await;
    let (_conn, channel) = channel().await;
    wait_until(
        "term-leaving to take its prefetch",
        Duration::from_secs(10),
        || async {
            let (_, ready) = queue_state(&channel, &q).await;
            (ready <= 12 - 5).then_some(())
        },
    )
    .await;
    let staying = WorkerProcess::spawn(&q, "term-staying", &["--concurrency", "2"]);
    wait_for_consumers(&q, 2).await;
    leaving.signal("TERM");
    assert_eq!(
        leaving.wait_exit(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        leaving.log_text()
    );

    let by_worker = collect(handles, Duration::from_secs(60)).await;
    let counts = counts(&by_worker);
    let done_by_leaving = counts.get("term-leaving").copied().unwrap_or(0);
    assert!(
        done_by_leaving >= 1,
        "its in-flight task must complete: {counts:?}"
    );
    assert!(
        done_by_leaving < 6,
        "unstarted prefetched work must move on: {counts:?}"
    );
    // Every task has a result; once nothing is left to run, the staying worker
    // must have run exactly the others: one more would be a task run twice.
    wait_until("the queue to settle", Duration::from_secs(10), || async {
        let (_, ready) = queue_state(&channel, &q).await;
        let running = staying.metric("warren_worker_tasks_in_flight", &[]).await;
        (ready == 0 && running == 0.0).then_some(())
    })
    .await;
    let ran_by_staying = staying
        .metric("warren_worker_tasks_total", &[("outcome", "success")])
        .await;
    assert_eq!(
        ran_by_staying,
        (12 - done_by_leaving) as f64,
        "nothing may run twice after SIGTERM: {counts:?}"
    );
    let log = leaving.log_text();
    assert!(log.contains("in-flight tasks settled"), "{log}");
    delete_queues(&[&q]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn poison_messages_are_dead_lettered_and_the_worker_keeps_serving() {
    let q = unique_queue("poison");
    let routing = RoutingTable::empty()
        .with("task_a", q.as_str())
        .with("task_zzz", q.as_str());
    let _worker = WorkerProcess::spawn(&q, "poison-worker", &[]);
    wait_for_consumers(&q, 1).await;
    let client = client(routing).await;
    let (_conn, channel) = channel().await;

    // Invalid JSON, published raw with a Celery-looking header.
    let mut headers = FieldTable::default();
    headers.insert(
        "task".into(),
        AMQPValue::LongString(LongString::from("task_a")),
    );
    headers.insert(
        "id".into(),
        AMQPValue::LongString(LongString::from("poison-1")),
    );
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_headers(headers);
    channel
        .basic_publish(
            q.as_str().into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"{not json",
            properties,
        )
        .await
        .expect("publish");
    // An unknown task name: the caller gets a FAILURE at once.
    let reply = client
        .call(
            TaskMessage::new("task_zzz", vec![], Map::new()),
            Duration::from_secs(10),
        )
        .await
        .expect("a reply, not a timeout");
    assert_eq!(reply.result.status, TaskStatus::Failure);
    let exc = reply.result.exception().expect("shape").expect("exception");
    assert_eq!(exc.exc_type, "NotRegistered");

    // The worker still serves.
    let ok = client
        .call(task("task_a", 0.01), Duration::from_secs(10))
        .await
        .expect("served");
    assert_eq!(ok.result.status, TaskStatus::Success);

    let dead = drain(&channel, &warren_protocol::amqp::dead_letter_queue(&q)).await;
    assert_eq!(
        dead.len(),
        2,
        "two poison messages in the dead-letter queue"
    );
    let mut reasons = HashSet::new();
    for message in &dead {
        let headers = message.delivery.properties.headers().clone();
        let dead_letter =
            DeadLetter::from_headers(&headers.unwrap_or_default()).expect("dead-letter headers");
        assert_eq!(
            (dead_letter.queue.as_str(), dead_letter.worker.as_str()),
            (q.as_str(), "poison-worker")
        );
        reasons.insert(dead_letter.reason);
    }
    assert_eq!(
        reasons,
        HashSet::from([DeadLetterReason::Undecodable, DeadLetterReason::UnknownTask])
    );
    assert!(
        dead.iter().any(|m| m.delivery.data == b"{not json"),
        "the body is kept verbatim"
    );
    let (_, ready) = queue_state(&channel, &q).await;
    assert_eq!(ready, 0, "nothing requeued in a loop");
    delete_queues(&[&q]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn failing_handlers_retry_then_report_failure() {
    let q = unique_queue("retry");
    let routing = RoutingTable::empty().with("task_a", q.as_str());
    let worker = WorkerProcess::spawn(
        &q,
        "retry-worker",
        &["--max-retries", "2", "--retry-backoff", "50ms"],
    );
    wait_for_consumers(&q, 1).await;
    let client = client(routing).await;
    let (_conn, channel) = channel().await;

    let mut flaky = task("task_a", 0.0);
    flaky.kwargs.insert("fail".into(), json!(1));
    let reply = client
        .call(flaky, Duration::from_secs(10))
        .await
        .expect("reply");
    assert_eq!(
        reply.result.status,
        TaskStatus::Success,
        "one failure, then success"
    );

    let mut broken = task("task_a", 0.0);
    broken.kwargs.insert("fail".into(), json!(-1));
    let reply = client
        .call(broken, Duration::from_secs(10))
        .await
        .expect("reply");
    assert_eq!(reply.result.status, TaskStatus::Failure);
    let exc = reply.result.exception().expect("shape").expect("exception");
    assert_eq!(exc.exc_type, "RuntimeError");
    assert!(
        exc.message().contains("attempt 2"),
        "failed after 2 retries: {exc:?}"
    );

    let dead = drain(&channel, &warren_protocol::amqp::dead_letter_queue(&q)).await;
    assert_eq!(dead.len(), 1, "the failed task is dead-lettered once");
    let log = worker.log_text();
    assert_eq!(
        log.matches("task failed; retrying").count(),
        3,
        "1 + 2 retries: {log}"
    );
    delete_queues(&[&q]).await;
}
