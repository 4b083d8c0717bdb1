//! Matching results to the tasks that wait for them, by correlation id, and
//! counting the replies nobody waits for (duplicates from redelivery).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use tokio::sync::oneshot;
use tracing::warn;
use warren_protocol::{ResultMetadata, TaskResult};

/// How many resolved task ids are remembered to tell a duplicate from a stranger.
const REMEMBERED: usize = 200_000;

/// A final result and what the worker said about running it.
#[derive(Debug, Clone)]
pub struct TaskReply {
    pub result: TaskResult,
    /// Handler run time, when the worker reports it (warren workers do).
    pub runtime: Option<Duration>,
    /// The worker's concurrency, when reported.
    pub concurrency: Option<u32>,
    pub received_at: Instant,
}

impl TaskReply {
    pub fn worker(&self) -> Option<&str> {
        self.result.worker.as_deref()
    }
}

#[derive(Default)]
pub struct Replies {
    pending: Mutex<HashMap<String, oneshot::Sender<TaskReply>>>,
    resolved: Mutex<Resolved>,
    duplicates: AtomicU64,
    strangers: AtomicU64,
}

#[derive(Default)]
struct Resolved {
    ids: HashSet<String>,
    order: VecDeque<String>,
}

impl Replies {
    pub fn expect(&self, id: &str) -> oneshot::Receiver<TaskReply> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.to_owned(), tx);
        rx
    }

    pub fn forget(&self, id: &str) {
        lock(&self.pending).remove(id);
    }

    /// Final results answered twice (a task run again after a redelivery).
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Results for task ids this client never sent, or forgot after a timeout.
    pub fn strangers(&self) -> u64 {
        self.strangers.load(Ordering::Relaxed)
    }

    pub fn accept(&self, properties: &BasicProperties, body: &[u8]) {
        let result = match TaskResult::decode(body) {
            Ok(result) => result,
            Err(error) => {
                warn!(%error, "ignoring an unreadable reply");
                return;
            }
        };
        if !result.status.is_final() {
            return;
        }
        let id = properties
            .correlation_id()
            .as_ref()
            .map_or_else(|| result.task_id.clone(), |c| c.to_string());
        let metadata = properties
            .headers()
            .as_ref()
            .map(ResultMetadata::from_headers)
            .unwrap_or_default();
        let reply = TaskReply {
            runtime: metadata.runtime,
            concurrency: metadata.concurrency,
            result,
            received_at: Instant::now(),
        };
        let waiter = lock(&self.pending).remove(&id);
        match waiter {
            Some(tx) => {
                self.remember(id);
                let _ = tx.send(reply);
            }
            None if lock(&self.resolved).ids.contains(&id) => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.strangers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn remember(&self, id: String) {
        let mut resolved = lock(&self.resolved);
        if resolved.order.len() >= REMEMBERED
            && let Some(old) = resolved.order.pop_front()
        {
            resolved.ids.remove(&old);
        }
        resolved.ids.insert(id.clone());
        resolved.order.push_back(id);
    }
}

/// A poisoned lock only means another thread panicked mid-update of a map of
/// senders; the map itself is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn props(id: &str) -> BasicProperties {
        BasicProperties::default().with_correlation_id(id.into())
    }

    #[tokio::test]
    async fn matches_by_correlation_id_and_counts_duplicates() {
        let replies = Replies::default();
        let rx = replies.expect("t1");
        let body = TaskResult::success("t1", json!(5)).encode();
        replies.accept(&props("t1"), &body);
        assert_eq!(rx.await.expect("reply").result.result, json!(5));
        replies.accept(&props("t1"), &body);
        assert_eq!(replies.duplicates(), 1);
        replies.accept(&props("t9"), &TaskResult::success("t9", json!(0)).encode());
        assert_eq!(replies.strangers(), 1);
    }

    #[tokio::test]
    async fn reads_the_workers_result_metadata() {
        let replies = Replies::default();
        let rx = replies.expect("t1");
        let metadata = ResultMetadata {
            runtime: Some(Duration::from_millis(150)),
            concurrency: Some(4),
        };
        let body = TaskResult::success("t1", json!(5)).encode();
        replies.accept(&props("t1").with_headers(metadata.to_headers()), &body);
        let reply = rx.await.expect("reply");
        assert_eq!(reply.runtime, metadata.runtime);
        assert_eq!(reply.concurrency, Some(4));
    }

    #[tokio::test]
    async fn progress_reports_do_not_resolve() {
        let replies = Replies::default();
        let mut rx = replies.expect("t1");
        replies.accept(
            &props("t1"),
            br#"{"task_id":"t1","status":"STARTED","result":null,"traceback":null}"#,
        );
        assert!(rx.try_recv().is_err());
        replies.accept(&props("t1"), b"not json");
        assert!(rx.try_recv().is_err());
    }
}
