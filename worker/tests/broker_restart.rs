//! The broker restarted mid-load: worker and dispatcher reconnect and every task
//! completes. In a test binary of its own, since it takes the broker away from
//! every other test.

mod support;

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, json};
use support::*;
use warren_dispatcher::Client;
use warren_protocol::{RoutingTable, TaskMessage, TaskStatus};

/// Restarts the broker: `WARREN_BROKER_RESTART_CMD`, else the project's script.
fn restart_broker() {
    let command = std::env::var("WARREN_BROKER_RESTART_CMD").unwrap_or_else(|_| {
        format!(
            "bash {}/deploy/local/rabbitmq.sh restart",
            repo_root().display()
        )
    });
    let output = Command::new("sh")
        .args(["-c", &command])
        .output()
        .expect("run restart");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{command} failed: {text}");
    // A broker this script did not start cannot be restarted by it; a test that
    // restarted nothing would prove nothing.
    assert!(
        text.contains("stopped") || std::env::var("WARREN_BROKER_RESTART_CMD").is_ok(),
        "the broker was not restarted ({text}); start it with `make rabbitmq-up` or set WARREN_BROKER_RESTART_CMD"
    );
}

#[tokio::test]
#[ignore = "needs RabbitMQ, and restarts it: run by make test"]
async fn worker_and_dispatcher_survive_a_broker_restart() {
    let q = unique_queue("restart");
    let routing = RoutingTable::empty().with("task_a", q.as_str());
    let worker = WorkerProcess::spawn(&q, "restart-worker", &["--concurrency", "4"]);
    wait_for_consumers(&q, 1).await;
    let client = client(routing).await;

    let mut handles = Vec::new();
    for _ in 0..40 {
        let mut kwargs = Map::new();
        kwargs.insert("seconds".into(), json!(0.1));
        handles.push(
            client
                .submit(TaskMessage::new("task_a", vec![], kwargs))
                .await
                .expect("confirmed"),
        );
    }
    // Restarted mid-load: while the worker runs tasks.
    worker.wait_for_in_flight(1).await;
    tokio::task::spawn_blocking(restart_broker)
        .await
        .expect("restart");

    // Tasks sent after the restart go through the re-established link.
    for _ in 0..20 {
        let mut kwargs = Map::new();
        kwargs.insert("seconds".into(), json!(0.05));
        handles.push(
            client
                .submit(TaskMessage::new("task_a", vec![], kwargs))
                .await
                .expect("confirmed after restart"),
        );
    }
    let total = handles.len();
    let mut results = Client::as_completed(handles, Duration::from_secs(90));
    let mut lost = Vec::new();
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(reply) if reply.result.status == TaskStatus::Success => {}
            Ok(reply) => panic!("{id} failed: {:?}", reply.result),
            Err(error) => lost.push(format!("{id}: {error}")),
        }
    }
    assert!(
        lost.is_empty(),
        "lost {} of {total}: {lost:?}\nworker log:\n{}",
        lost.len(),
        worker.log_text()
    );
    assert!(
        worker
            .log_text()
            .contains("broker unavailable; reconnecting"),
        "the worker must have seen the broker go"
    );
    delete_queues(&[&q]).await;
}
