//! Runs one delivery to the end: decode, run the handler (with retries and the
//! hard time limit), then dead-letter if needed, publish the result, and only then
//! ack. By the time a caller sees a FAILURE, the message is in the dead-letter
//! queue. A failure to publish leaves the message unacked, so the broker redelivers it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::{BasicProperties, Channel, Confirmation};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinHandle;
use tracing::{debug, warn};
use warren_protocol::amqp::{result_properties, table_to_json};
use warren_protocol::{DeadLetter, IncomingMessage, ResultMetadata, TaskMessage};

use crate::config::WorkerConfig;
use crate::disposition::{Delivered, Disposition, Outcome, dispose};
use crate::metrics::{NameLabel, ReasonLabel, WorkerMetrics};
use crate::registry::{TaskError, TaskRegistry, TaskRequest};
use crate::retry::RetryPolicy;

/// Why a delivery could not be settled; it is then left to the broker to redeliver.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("broker connection failed while settling a delivery: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused (nacked) a publish to {queue:?}")]
    Refused { queue: String },
}

/// What every delivery of one broker session shares.
pub(crate) struct DeliveryContext {
    pub config: Arc<WorkerConfig>,
    pub registry: Arc<TaskRegistry>,
    pub metrics: Arc<WorkerMetrics>,
    pub publisher: Channel,
    pub dead_letter_queue: String,
}

/// What settling a delivery needs to know once its handler has run (or could not).
struct Ran<'a> {
    /// The task name, or `<undecodable>`, for logs and metrics.
    task_name: &'a str,
    /// The task id, when it could be read (header `id` or `correlation_id`).
    task_id: Option<&'a str>,
    /// The delivery's own `reply_to` property: where the result is published.
    reply_to: Option<&'a str>,
    runtime: Duration,
}

/// Runs one delivery to the end. The permit is held until the delivery is acked
/// (or given back), so the concurrency bound covers settling it too.
pub(crate) async fn process(
    delivery: Delivery,
    ctx: Arc<DeliveryContext>,
    _permit: OwnedSemaphorePermit,
) -> Result<(), DeliveryError> {
    let headers = delivery
        .properties
        .headers()
        .as_ref()
        .map(table_to_json)
        .unwrap_or_default();
    let incoming = incoming_message(&delivery, &headers);
    let started = Instant::now();
    let (outcome, message) = decode_and_run(incoming, &ctx).await;
    let runtime = started.elapsed();
    let ran = Ran {
        task_name: message
            .as_ref()
            .map_or("<undecodable>", |m| m.task.as_str()),
        task_id: message
            .as_ref()
            .map(|m| m.id.as_str())
            .or(incoming.correlation_id),
        reply_to: incoming.reply_to,
        runtime,
    };
    record(&ctx.metrics, ran.task_name, &outcome, runtime);
    let disposition = dispose(
        outcome,
        Delivered {
            task_id: ran.task_id,
            reply_to: message
                .as_ref()
                .map_or(ran.reply_to, |m| m.reply_to.as_deref()),
            ignore_result: message.as_ref().is_some_and(|m| m.ignore_result),
            worker: &ctx.config.name,
        },
    );
    if let Err(error) = settle(&delivery, &ctx, &disposition, &ran).await {
        give_back(&delivery).await;
        return Err(error);
    }
    delivery.ack(BasicAckOptions::default()).await?;
    debug!(task = ran.task_name, id = ran.task_id, runtime = ?ran.runtime, "acked");
    Ok(())
}

/// The delivery as the protocol reads it, borrowing its body and properties.
fn incoming_message<'a>(
    delivery: &'a Delivery,
    headers: &'a serde_json::Map<String, serde_json::Value>,
) -> IncomingMessage<'a> {
    let props = &delivery.properties;
    IncomingMessage {
        headers,
        body: &delivery.data,
        content_type: props.content_type().as_ref().map(|s| s.as_str()),
        correlation_id: props.correlation_id().as_ref().map(|s| s.as_str()),
        reply_to: props.reply_to().as_ref().map(|s| s.as_str()),
    }
}

/// Decodes the message and, if a handler is registered for it, runs it. The
/// message is returned whenever it could be decoded, for the reply and the logs.
async fn decode_and_run(
    incoming: IncomingMessage<'_>,
    ctx: &DeliveryContext,
) -> (Outcome, Option<TaskMessage>) {
    match TaskMessage::decode(incoming) {
        Err(error) => (Outcome::Undecodable(error.to_string()), None),
        Ok(message) if !ctx.registry.contains(&message.task) => {
            (Outcome::UnknownTask(message.task.clone()), Some(message))
        }
        Ok(message) => {
            let outcome = run(&message, &ctx.registry, &ctx.config.retry, &ctx.metrics).await;
            (outcome, Some(message))
        }
    }
}

/// Dead-letters the message if the disposition says so, then publishes the result,
/// both confirmed: only then may the delivery be acked.
async fn settle(
    delivery: &Delivery,
    ctx: &DeliveryContext,
    disposition: &Disposition,
    ran: &Ran<'_>,
) -> Result<(), DeliveryError> {
    if let Some((reason, detail)) = &disposition.dead_letter {
        warn!(task = ran.task_name, id = ran.task_id, reason = reason.as_str(), %detail, "dead-lettering message");
        let dead_letter = DeadLetter {
            reason: *reason,
            error: detail.clone(),
            queue: ctx.config.queue.clone(),
            worker: ctx.config.name.clone(),
        };
        let properties = dead_letter_properties(delivery, &dead_letter);
        publish(
            &ctx.publisher,
            "",
            &ctx.dead_letter_queue,
            &delivery.data,
            properties,
        )
        .await?;
        ctx.metrics
            .dead_lettered
            .get_or_create(&ReasonLabel {
                reason: reason.as_str().into(),
            })
            .inc();
    }
    if let (Some(reply), Some(reply_to)) = (&disposition.reply, ran.reply_to) {
        let metadata = ResultMetadata {
            runtime: Some(ran.runtime),
            concurrency: Some(u32::try_from(ctx.config.concurrency).unwrap_or(u32::MAX)),
        };
        let properties = result_properties(&reply.task_id, metadata.to_headers());
        publish(&ctx.publisher, "", reply_to, &reply.encode(), properties).await?;
    }
    Ok(())
}

/// Gives the message back now rather than when the channel closes; if the
/// connection is gone this fails too, and the broker requeues it anyway.
async fn give_back(delivery: &Delivery) {
    let _ = delivery
        .nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await;
}

/// Runs the handler, retrying retryable failures with backoff.
///
/// The session drops this future mid-run when it loses the broker (the delivery
/// will be redelivered): the task must then stop counting as in flight and its
/// handler must stop, hence the guards rather than straight-line bookkeeping.
async fn run(
    message: &TaskMessage,
    registry: &TaskRegistry,
    retry_policy: &RetryPolicy,
    metrics: &WorkerMetrics,
) -> Outcome {
    let hard_limit = message
        .timelimit
        .0
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64);
    let _in_flight = InFlight::enter(&metrics.in_flight);
    let mut retry = 0;
    loop {
        let request = TaskRequest::from_message(message, message.retries + retry);
        let Some(handler) = registry.call(request) else {
            break Outcome::UnknownTask(message.task.clone());
        };
        match run_isolated(handler, hard_limit).await {
            Ok(value) => break Outcome::Succeeded(value),
            Err(error) => {
                let delay = error
                    .retryable
                    .then(|| retry_policy.delay(message.retries, retry))
                    .flatten();
                let Some(delay) = delay else {
                    break Outcome::Failed {
                        error,
                        attempts: retry + 1,
                    };
                };
                warn!(task = %message.task, id = %message.id, %error, ?delay, "task failed; retrying");
                metrics
                    .retries
                    .get_or_create(&NameLabel {
                        task: message.task.clone(),
                    })
                    .inc();
                tokio::time::sleep(delay).await;
                retry += 1;
            }
        }
    }
}

/// Counts a task in the in-flight gauge for as long as it lives, dropped or not.
struct InFlight<'a>(&'a Gauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A spawned handler that is aborted when its waiter is dropped: a dropped
/// `JoinHandle` alone would leave it running, detached, beyond the concurrency
/// bound, while its delivery runs again elsewhere.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a handler on its own task so that a panic or an overrun becomes a task
/// failure instead of taking the worker down.
async fn run_isolated(
    handler: crate::registry::TaskFuture,
    hard_limit: Option<Duration>,
) -> Result<serde_json::Value, TaskError> {
    let mut handle = AbortOnDrop(tokio::spawn(handler));
    let joined = match hard_limit {
        None => (&mut handle.0).await,
        Some(limit) => match tokio::time::timeout(limit, &mut handle.0).await {
            Ok(joined) => joined,
            // Aborted as `handle` drops.
            Err(_) => {
                return Err(TaskError {
                    exception: warren_protocol::ExceptionInfo {
                        exc_type: "TimeLimitExceeded".into(),
                        exc_message: vec![serde_json::json!(limit.as_secs_f64())],
                        exc_module: "celery.exceptions".into(),
                    },
                    retryable: false,
                });
            }
        },
    };
    match joined {
        Ok(result) => result,
        Err(join_error) => Err(TaskError::fatal(
            "RuntimeError",
            format!("task handler panicked: {join_error}"),
        )),
    }
}

async fn publish(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), DeliveryError> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?
        .await?;
    match confirm {
        Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
        Confirmation::Nack(_) => Err(DeliveryError::Refused {
            queue: routing_key.to_owned(),
        }),
    }
}

/// The original message, its properties intact, plus why it was dead-lettered.
fn dead_letter_properties(delivery: &Delivery, dead_letter: &DeadLetter) -> BasicProperties {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    dead_letter.write_to(&mut headers);
    delivery.properties.clone().with_headers(headers)
}

fn record(metrics: &WorkerMetrics, task: &str, outcome: &Outcome, runtime: Duration) {
    let label = match outcome {
        Outcome::Succeeded(_) => "success",
        Outcome::Failed { .. } => "failure",
        Outcome::Undecodable(_) => "undecodable",
        Outcome::UnknownTask(_) => "unknown",
    };
    metrics.record(task, label);
    if matches!(outcome, Outcome::Succeeded(_) | Outcome::Failed { .. }) {
        metrics
            .duration
            .get_or_create(&NameLabel { task: task.into() })
            .observe(runtime.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use serde_json::{Map, Value};
    use tokio::sync::Notify;

    use super::*;

    /// Sets its flag when dropped: the handler holding it has stopped.
    struct Stopped(Arc<AtomicBool>);

    impl Drop for Stopped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The session drops the runs of a connection it lost (link_cut found the
    /// in-flight gauge stuck at the tasks running at the cut).
    #[tokio::test]
    async fn a_run_dropped_midway_stops_its_handler_and_stops_counting() {
        let stopped = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Notify::new());
        let registry = {
            let (stopped, started) = (Arc::clone(&stopped), Arc::clone(&started));
            TaskRegistry::new().register("slow", move |_| {
                let guard = Stopped(Arc::clone(&stopped));
                let started = Arc::clone(&started);
                async move {
                    let _guard = guard;
                    started.notify_one();
                    std::future::pending::<()>().await;
                    Ok(Value::Null)
                }
            })
        };
        let metrics = WorkerMetrics::new();
        let message = TaskMessage::new("slow", vec![], Map::new());
        let policy = RetryPolicy::default();
        {
            let running = run(&message, &registry, &policy, &metrics);
            tokio::pin!(running);
            tokio::select! {
                _ = &mut running => panic!("the handler never returns"),
                () = started.notified() => {}
            }
            assert_eq!(metrics.in_flight.get(), 1);
        }
        assert_eq!(metrics.in_flight.get(), 0, "a dropped run no longer counts");
        tokio::time::timeout(Duration::from_secs(5), async {
            while !stopped.load(Ordering::SeqCst) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the dropped run's handler is stopped, not left running");
    }
}
