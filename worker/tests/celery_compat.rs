//! Wire compatibility with real Celery 5.7 (from PyPI, in a venv this test creates
//! under .local/): a Celery client answered by a warren worker, and the warren
//! dispatcher answered by a Celery worker.

#[path = "support/celery.rs"]
mod celery;
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use celery::{celery_dir, venv_bin};
use serde_json::{Map, Value, json};
use support::*;
use warren_protocol::{RoutingTable, TaskMessage, TaskStatus};

struct CeleryWorker(Child);

impl Drop for CeleryWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ and celery from PyPI: run by make test"]
async fn celery_client_is_answered_by_a_warren_worker() {
    let bin = tokio::task::spawn_blocking(venv_bin).await.expect("venv");
    let q = unique_queue("celery-client");
    let _worker = WorkerProcess::spawn(&q, "compat-warren", &["--retry-backoff", "10ms"]);
    wait_for_consumers(&q, 1).await;

    let output = tokio::task::spawn_blocking({
        let q = q.clone();
        move || {
            Command::new(bin.join("python"))
                .arg("compat_client.py")
                .current_dir(celery_dir())
                .env("WARREN_AMQP_URL", amqp_url())
                .env("CELERY_QUEUE_A", &q)
                .output()
                .expect("python")
        }
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Celery client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let checks: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let by_check = |name: &'static str| checks.iter().filter(move |c| c["check"] == name);
    let gets: Vec<&Value> = by_check("delay-get").collect();
    assert_eq!(gets.len(), 2, "{stdout}");
    for get in gets {
        assert_eq!(get["result"]["mode"], "wait");
        assert_eq!(get["result"]["seconds"], json!(0.05));
    }
    let failure = by_check("failure").next().expect("failure check");
    assert_eq!(
        failure["type"], "RuntimeError",
        "re-raised with its Python type"
    );
    let unknown = by_check("unknown").next().expect("unknown check");
    assert_eq!(unknown["type"], "NotRegistered");
    assert_eq!(unknown["module"], "celery.exceptions");
    assert_eq!(by_check("many").next().expect("many")["count"], 10);
    delete_queues(&[&q]).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ and celery from PyPI: run by make test"]
async fn warren_dispatcher_is_answered_by_a_celery_worker() {
    let bin = tokio::task::spawn_blocking(venv_bin).await.expect("venv");
    let q = unique_queue("celery-worker");
    let child = Command::new(bin.join("celery"))
        .args([
            "-A",
            "celery_app",
            "worker",
            "-Q",
            &q,
            "--pool",
            "solo",
            "-c",
            "1",
        ])
        .args([
            "-n",
            "compat-celery@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "warning",
        ])
        .current_dir(celery_dir())
        .env("WARREN_AMQP_URL", amqp_url())
        .env("CELERY_QUEUE_A", &q)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("celery worker");
    let _celery = CeleryWorker(child);
    wait_for_consumers(&q, 1).await;
    let routing = RoutingTable::empty()
        .with("celery_app.task_a", q.as_str())
        .with("celery_app.fail", q.as_str());
    let client = client(routing).await;

    let mut kwargs = Map::new();
    kwargs.insert("seconds".into(), json!(0.05));
    let reply = client
        .call(
            TaskMessage::new("celery_app.task_a", vec![], kwargs),
            Duration::from_secs(20),
        )
        .await
        .expect("Celery answered");
    assert_eq!(reply.result.status, TaskStatus::Success);
    assert_eq!(
        reply.result.result,
        json!({"mode": "wait", "seconds": 0.05})
    );
    assert!(
        reply
            .worker()
            .is_some_and(|w| w.starts_with("compat-celery@")),
        "{:?}",
        reply.result
    );

    let reply = client
        .call(
            TaskMessage::new("celery_app.fail", vec![], Map::new()),
            Duration::from_secs(20),
        )
        .await
        .expect("Celery answered");
    assert_eq!(reply.result.status, TaskStatus::Failure);
    let exc = reply
        .result
        .exception()
        .expect("Celery's shape")
        .expect("exception");
    assert_eq!(
        (exc.exc_type.as_str(), exc.message().as_str()),
        ("ValueError", "boom from celery")
    );
    assert!(
        reply
            .result
            .traceback
            .as_deref()
            .is_some_and(|t| t.contains("Traceback"))
    );

    // Many at once, collected as they complete.
    let mut handles = Vec::new();
    for _ in 0..20 {
        let mut kwargs = Map::new();
        kwargs.insert("seconds".into(), json!(0.01));
        handles.push(
            client
                .submit(TaskMessage::new("celery_app.task_a", vec![], kwargs))
                .await
                .expect("confirmed"),
        );
    }
    for handle in handles {
        let reply = handle.wait(Duration::from_secs(30)).await.expect("result");
        assert_eq!(reply.result.status, TaskStatus::Success);
    }
    delete_queues(&[&q]).await;
}
