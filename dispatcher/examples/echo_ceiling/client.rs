//! The dispatcher side: one connection publishing requests with confirms, at most
//! `--window` in flight, and collecting the replies from its durable reply queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use futures::{FutureExt, StreamExt};
use lapin::options::{BasicAckOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation, Connection, Consumer};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::{confirm_channel, connect, consume};
use crate::messages::Message;

/// The client's connection and its confirm channel; the run's queues are deleted
/// through the channel when it ends.
pub struct Client {
    pub connection: Connection,
    pub publisher: Channel,
}

/// Connects the client, declares the reply queue (durable, gone 10 minutes after
/// its last use) and consumes it.
pub async fn open(amqp_url: &str, reply_queue: &str) -> anyhow::Result<(Client, Consumer)> {
    let connection = connect(amqp_url, "echo-client").await?;
    let replies = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
    replies
        .queue_declare(
            reply_queue.into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await?;
    let publisher = confirm_channel(&connection).await?;
    let consumer = consume(&replies, reply_queue, "echo-client").await?;
    Ok((
        Client {
            connection,
            publisher,
        },
        consumer,
    ))
}

/// Takes replies until `total` have arrived, giving a window permit back for each,
/// then notifies `done`.
pub fn spawn_collector(
    mut consumer: Consumer,
    window: Arc<Semaphore>,
    total: u64,
    done: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Replies are acked as warren's dispatcher acks them: after they are
        // taken, with one `multiple` ack for those already waiting (at most 128).
        let mut unacked = None;
        let mut batch = 0;
        let mut received = 0;
        loop {
            let next = match consumer.next().now_or_never() {
                Some(next) => next,
                None => {
                    if let Some(last) = unacked.take() {
                        ack_through(&last).await;
                        batch = 0;
                    }
                    consumer.next().await
                }
            };
            let Some(Ok(delivery)) = next else { break };
            window.add_permits(1);
            batch += 1;
            received += 1;
            let last = received == total;
            if batch >= 128 || last {
                ack_through(&delivery).await;
                batch = 0;
                unacked = None;
            } else {
                unacked = Some(delivery);
            }
            if last {
                done.notify_one();
                break;
            }
        }
    })
}

async fn ack_through(delivery: &lapin::message::Delivery) {
    let _ = delivery.ack(BasicAckOptions { multiple: true }).await;
}

/// Publishes `count` requests round-robin over `queues` (`requests[i]` goes to
/// `queues[i]`), each once a window permit is free. Confirms are awaited on their
/// own tasks; those the broker does not ack are counted in `nacked`.
pub async fn publish_requests(
    publisher: &Channel,
    queues: &[String],
    requests: &[Message],
    count: usize,
    window: &Semaphore,
    nacked: &Arc<AtomicU64>,
) -> anyhow::Result<()> {
    for i in 0..count {
        window.acquire().await.context("window closed")?.forget();
        let (queue, message) = (&queues[i % queues.len()], &requests[i % queues.len()]);
        let properties = message
            .properties
            .clone()
            .with_correlation_id(i.to_string().into());
        let confirm = publisher
            .basic_publish(
                message.exchange.as_str().into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &message.body,
                properties,
            )
            .await?;
        let nacked = Arc::clone(nacked);
        tokio::spawn(async move {
            if !matches!(confirm.await, Ok(Confirmation::Ack(_))) {
                nacked.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Ok(())
}
