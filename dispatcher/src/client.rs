//! The dispatcher client: publish tasks with publisher confirms, collect results
//! from one reply queue as they complete.
//!
//! Every `submit` returns once the broker has confirmed the task (retrying across
//! reconnects), and hands back a [`TaskHandle`] whose `wait` resolves when the
//! result arrives. Results are matched by correlation id, so any number of tasks can
//! be in flight and collected in any order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, Stream};
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use warren_protocol::amqp::{redact_url, task_properties};
use warren_protocol::{RoutingTable, TaskMessage};

use crate::error::DispatchError;
use crate::link::{Link, LinkSettings, supervise};
use crate::replies::{Replies, TaskReply};

pub use warren_protocol::amqp::DEFAULT_AMQP_URL;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub amqp_url: String,
    pub routing: RoutingTable,
    /// Connection name, shown by the broker's management UI.
    pub name: String,
    /// How long `submit` keeps trying to get a task confirmed, across reconnects.
    pub publish_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            amqp_url: DEFAULT_AMQP_URL.into(),
            routing: RoutingTable::default(),
            name: format!("warren-dispatcher-{}", std::process::id()),
            publish_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Client {
    config: ClientConfig,
    reply_queue: String,
    replies: Arc<Replies>,
    link: watch::Receiver<Option<Link>>,
    shutdown: CancellationToken,
}

/// A submitted task; `wait` gives its result.
pub struct TaskHandle {
    pub id: String,
    pub task: String,
    pub queue: String,
    pub submitted_at: Instant,
    reply: oneshot::Receiver<TaskReply>,
    replies: Arc<Replies>,
}

impl TaskHandle {
    /// The task's final result, or `Timeout` after `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<TaskReply, DispatchError> {
        match tokio::time::timeout(timeout, self.reply).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(DispatchError::Closed { id: self.id }),
            Err(_) => {
                self.replies.forget(&self.id);
                Err(DispatchError::Timeout {
                    id: self.id,
                    waited: timeout,
                })
            }
        }
    }
}

impl Client {
    /// Connects and waits up to `wait` for the first link, so that a wrong URL or
    /// password is reported here rather than as a publish timeout later.
    pub async fn connect(config: ClientConfig, wait: Duration) -> Result<Self, DispatchError> {
        let reply_queue = format!(
            "warren.reply.{}.{}",
            config.name,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let replies = Arc::new(Replies::default());
        let (link_tx, mut link_rx) = watch::channel(None);
        let (failure_tx, failure_rx) = watch::channel(None);
        let shutdown = CancellationToken::new();
        let settings = LinkSettings {
            amqp_url: config.amqp_url.clone(),
            name: config.name.clone(),
            reply_queue: reply_queue.clone(),
            queues: config
                .routing
                .queues()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        tokio::spawn(supervise(
            settings,
            Arc::clone(&replies),
            link_tx,
            failure_tx,
            shutdown.clone(),
        ));
        let linked = matches!(
            tokio::time::timeout(wait, link_rx.wait_for(Option::is_some)).await,
            Ok(Ok(_))
        );
        if !linked {
            shutdown.cancel();
            let reason = failure_rx
                .borrow()
                .clone()
                .unwrap_or_else(|| "no answer".into());
            return Err(DispatchError::Unreachable {
                url: redact_url(&config.amqp_url),
                waited: wait,
                reason,
            });
        }
        Ok(Self {
            config,
            reply_queue,
            replies,
            link: link_rx,
            shutdown,
        })
    }

    pub fn reply_queue(&self) -> &str {
        &self.reply_queue
    }

    pub fn routing(&self) -> &RoutingTable {
        &self.config.routing
    }

    /// Replies that arrived for tasks already answered (redelivered work).
    pub fn duplicates(&self) -> u64 {
        self.replies.duplicates()
    }

    /// Publishes `task` to its routed queue and waits for the broker's confirm.
    pub async fn submit(&self, mut task: TaskMessage) -> Result<TaskHandle, DispatchError> {
        let queue = self.config.routing.queue_for(&task.task)?.to_owned();
        task.reply_to = Some(self.reply_queue.clone());
        let reply = self.replies.expect(&task.id);
        let submitted_at = Instant::now();
        if let Err(error) = self.publish(&task, &queue).await {
            self.replies.forget(&task.id);
            return Err(error);
        }
        Ok(TaskHandle {
            id: task.id,
            task: task.task,
            queue,
            submitted_at,
            reply,
            replies: Arc::clone(&self.replies),
        })
    }

    /// Publishes and waits for the result: the seed's `task.delay(...).get()`.
    pub async fn call(
        &self,
        task: TaskMessage,
        timeout: Duration,
    ) -> Result<TaskReply, DispatchError> {
        self.submit(task).await?.wait(timeout).await
    }

    /// Results in completion order, each with the id of its task.
    pub fn as_completed(
        handles: impl IntoIterator<Item = TaskHandle>,
        timeout: Duration,
    ) -> impl Stream<Item = (String, Result<TaskReply, DispatchError>)> {
        handles
            .into_iter()
            .map(|handle| async move {
                let id = handle.id.clone();
                (id, handle.wait(timeout).await)
            })
            .collect::<FuturesUnordered<_>>()
    }

    /// Publishes with confirms; on a broken link waits for the next one and tries
    /// again, until the publish timeout. A task may thus be published twice, never
    /// zero times: duplicates are told apart by task id.
    async fn publish(&self, task: &TaskMessage, queue: &str) -> Result<(), DispatchError> {
        let body = task.body();
        let mut properties = Some(task_properties(task));
        let deadline = Instant::now() + self.config.publish_timeout;
        let mut link_rx = self.link.clone();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let failed = |reason: String| DispatchError::Publish {
                id: task.id.clone(),
                waited: self.config.publish_timeout,
                reason,
            };
            // The live link if there is one (the usual case, no timer needed),
            // else the next one, for as long as the publish timeout allows.
            let current = link_rx.borrow_and_update().clone();
            let link = match current {
                Some(link) => link,
                None => {
                    match tokio::time::timeout(remaining, link_rx.wait_for(Option::is_some)).await {
                        Ok(Ok(link)) => match link.clone() {
                            Some(link) => link,
                            None => continue,
                        },
                        Ok(Err(_)) => return Err(failed("client closed".into())),
                        Err(_) => return Err(failed("broker unreachable".into())),
                    }
                }
            };
            // Built once; rebuilt only for a retry.
            let attempt_properties = properties.take().unwrap_or_else(|| task_properties(task));
            let attempt = async {
                link.publisher
                    .basic_publish(
                        queue.into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        &body,
                        attempt_properties,
                    )
                    .await?
                    .await
            };
            match tokio::time::timeout(remaining, attempt).await {
                Ok(Ok(Confirmation::Ack(_) | Confirmation::NotRequested)) => return Ok(()),
                Ok(Ok(Confirmation::Nack(_))) => {}
                Ok(Err(_)) => {
                    // The channel is gone; make sure the supervisor sees the link
                    // as broken even if the connection itself survived.
                    if link.publisher.status().connected() {
                        continue;
                    }
                    let _ = link
                        .connection
                        .close(320, "publish channel lost".into())
                        .await;
                    let _ = link_rx
                        .wait_for(|l| {
                            l.as_ref()
                                .is_none_or(|l| !Arc::ptr_eq(&l.connection, &link.connection))
                        })
                        .await;
                }
                Err(_) => return Err(failed("no confirm from the broker".into())),
            }
            if Instant::now() >= deadline {
                return Err(failed("gave up retrying".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the link and closes the connection.
    pub fn close(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
