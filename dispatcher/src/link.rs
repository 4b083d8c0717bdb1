//! The client's broker connection, kept alive by a supervisor task: connect,
//! declare the routed queues and the reply queue, consume replies, and start over
//! with backoff when the connection is lost. Publishers wait for a live link.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use warren_protocol::amqp::{declare_task_queue, redact_url};

use crate::replies::Replies;

/// How long an unused reply queue outlives its client, so that results published
/// while the client reconnects are kept, and a dead client's queue is collected.
pub const REPLY_QUEUE_EXPIRY: Duration = Duration::from_secs(600);

/// A live connection and its publisher-confirm channel.
#[derive(Clone)]
pub struct Link {
    pub connection: Arc<Connection>,
    pub publisher: Channel,
}

pub struct LinkSettings {
    pub amqp_url: String,
    pub name: String,
    pub reply_queue: String,
    pub queues: Vec<String>,
}

/// Runs until `shutdown`: keeps `link` set while connected, `None` otherwise, and
/// feeds every reply into `replies`. `failures` receives why connecting failed.
pub async fn supervise(
    settings: LinkSettings,
    replies: Arc<Replies>,
    link: watch::Sender<Option<Link>>,
    failures: watch::Sender<Option<String>>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let reason = match connect(&settings).await {
            Ok((current, consumer)) => {
                backoff = Duration::from_millis(100);
                let connection = Arc::clone(&current.connection);
                link.send_replace(Some(current));
                failures.send_replace(None);
                let reason = tokio::select! {
                    reason = consume(consumer, &replies) => reason,
                    () = shutdown.cancelled() => {
                        link.send_replace(None);
                        let _ = connection.close(200, "client closed".into()).await;
                        return;
                    }
                };
                link.send_replace(None);
                reason
            }
            Err(error) => error.to_string(),
        };
        warn!(broker = %redact_url(&settings.amqp_url), %reason, retry_in = ?backoff, "broker link down");
        failures.send_replace(Some(reason));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect(settings: &LinkSettings) -> lapin::Result<(Link, lapin::Consumer)> {
    let properties =
        ConnectionProperties::default().with_connection_name(settings.name.as_str().into());
    let connection = Connection::connect(&settings.amqp_url, properties).await?;
    let publisher = connection.create_channel().await?;
    for queue in &settings.queues {
        declare_task_queue(&publisher, queue).await?;
    }
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consumer_channel = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    let expiry = i64::try_from(REPLY_QUEUE_EXPIRY.as_millis()).unwrap_or(i64::MAX);
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(expiry));
    // Durable and not exclusive: results survive a reconnect and a broker restart.
    consumer_channel
        .queue_declare(
            settings.reply_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await?;
    let consumer = consumer_channel
        .basic_consume(
            settings.reply_queue.as_str().into(),
            settings.name.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let link = Link {
        connection: Arc::new(connection),
        publisher,
    };
    Ok((link, consumer))
}

/// Most replies handed over before they are acked (with one `multiple` ack).
const ACK_BATCH: usize = 128;

/// Hands replies over until the consumer stream breaks; returns why it broke.
///
/// A reply is acked only after it is handed over, so a crash between the two
/// never drops one. Acks are batched: while more replies are already waiting,
/// they are handed over first, and then one ack with `multiple` settles them
/// all (at most [`ACK_BATCH`] at a time). Under load this saves the broker and
/// the client an ack frame, and a round trip to lapin's I/O thread, per reply.
async fn consume(mut consumer: lapin::Consumer, replies: &Replies) -> String {
    let mut unacked: Option<Delivery> = None;
    let mut batch = 0;
    loop {
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                // Nothing more is waiting: settle what was handed over, then wait.
                if let Some(last) = unacked.take() {
                    ack_through(&last).await;
                    batch = 0;
                }
                consumer.next().await
            }
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            ended => {
                // Best effort: on a lost connection this fails, and the broker
                // redelivers those replies to the next link (seen as duplicates).
                if let Some(last) = unacked.take() {
                    ack_through(&last).await;
                }
                return match ended {
                    Some(Err(error)) => error.to_string(),
                    _ => "the broker cancelled the reply consumer".into(),
                };
            }
        };
        replies.accept(&delivery.properties, &delivery.data);
        batch += 1;
        if batch >= ACK_BATCH {
            ack_through(&delivery).await;
            batch = 0;
            unacked = None;
        } else {
            unacked = Some(delivery);
        }
    }
}

/// Acks `delivery` and every earlier delivery of its channel.
async fn ack_through(delivery: &Delivery) {
    if let Err(error) = delivery.ack(BasicAckOptions { multiple: true }).await {
        debug!(%error, "reply ack failed");
    }
}
