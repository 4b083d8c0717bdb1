//! The seed's demo tasks, `task_a` and `task_b`.
//!
//! Both wait 100-200 ms by default, like the seed's tasks, or `seconds` when given.
//! With `cpu: true` they hash for that long on a blocking thread instead of waiting,
//! so CPU-bound scaling can be measured. `fail: N` makes the first N attempts fail
//! with a retryable error (`fail: -1` always fails), to exercise retries.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use warren_worker::{TaskError, TaskRegistry, TaskRequest};

/// The registry the `warren-worker` binary serves.
pub fn demo_registry() -> TaskRegistry {
    TaskRegistry::new()
        .register("task_a", demo_task)
        .register("task_b", demo_task)
}

async fn demo_task(request: TaskRequest) -> Result<Value, TaskError> {
    let seconds = match request.arg("seconds", 0) {
        None | Some(Value::Null) => 0.1 + fastrand::f64() * 0.1,
        Some(value) => value
            .as_f64()
            .filter(|s| s.is_finite() && (0.0..=3600.0).contains(s))
            .ok_or_else(|| {
                TaskError::fatal(
                    "ValueError",
                    format!("seconds must be a number between 0 and 3600, got {value}"),
                )
            })?,
    };
    let cpu = request
        .arg("cpu", 1)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let fail = request
        .kwargs
        .get("fail")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if fail < 0 || i64::from(request.attempt) < fail {
        return Err(TaskError::retryable(
            "RuntimeError",
            format!("asked to fail (attempt {})", request.attempt),
        ));
    }
    let duration = Duration::from_secs_f64(seconds);
    if cpu {
        let hashes = tokio::task::spawn_blocking(move || hash_for(duration))
            .await
            .map_err(|e| TaskError::fatal("RuntimeError", e.to_string()))?;
        Ok(json!({"task": request.name, "mode": "cpu", "seconds": seconds, "hashes": hashes}))
    } else {
        tokio::time::sleep(duration).await;
        Ok(json!({"task": request.name, "mode": "wait", "seconds": seconds}))
    }
}

/// Real SHA-256 work until `duration` has passed; returns the number of hashes.
fn hash_for(duration: Duration) -> u64 {
    let started = Instant::now();
    let mut digest = [0u8; 32];
    let mut count = 0u64;
    while started.elapsed() < duration {
        for _ in 0..256 {
            digest = Sha256::digest(digest).into();
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn request(kwargs: Value, attempt: u32) -> TaskRequest {
        TaskRequest {
            id: "1".into(),
            name: "task_a".into(),
            args: vec![],
            kwargs: kwargs.as_object().cloned().unwrap_or_else(Map::new),
            attempt,
        }
    }

    #[tokio::test]
    async fn waits_or_hashes() {
        let out = demo_task(request(json!({"seconds": 0.01}), 0))
            .await
            .expect("ok");
        assert_eq!(out["mode"], "wait");
        let out = demo_task(request(json!({"seconds": 0.02, "cpu": true}), 0))
            .await
            .expect("ok");
        assert!(out["hashes"].as_u64().expect("count") > 0);
    }

    #[tokio::test]
    async fn rejects_bad_durations_without_retry() {
        let err = demo_task(request(json!({"seconds": "soon"}), 0))
            .await
            .expect_err("bad");
        assert!(!err.retryable);
        assert!(err.to_string().contains("seconds must be a number"));
    }

    #[tokio::test]
    async fn fails_the_first_n_attempts() {
        assert!(
            demo_task(request(json!({"seconds": 0, "fail": 2}), 1))
                .await
                .is_err()
        );
        assert!(
            demo_task(request(json!({"seconds": 0, "fail": 2}), 2))
                .await
                .is_ok()
        );
        assert!(
            demo_task(request(json!({"seconds": 0, "fail": -1}), 9))
                .await
                .is_err()
        );
    }
}
