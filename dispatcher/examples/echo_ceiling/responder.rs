//! The worker side: one responder per request queue, each on its own connection
//! as each warren worker has, replying (confirmed) before it acks.

use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Args;
use crate::broker::{confirm_channel, connect, consume};
use crate::messages::{Message, reply};

/// The running responders and their connections, kept open until the run is torn down.
pub struct Responders {
    pub tasks: Vec<JoinHandle<()>>,
    pub connections: Vec<Connection>,
}

/// Declares each queue and starts its responder, consuming before any request is
/// sent; they stop when `stop` is cancelled.
pub async fn start(
    args: &Args,
    queues: &[String],
    stop: &CancellationToken,
) -> anyhow::Result<Responders> {
    let mut responders = Responders {
        tasks: Vec::new(),
        connections: Vec::new(),
    };
    for queue in queues {
        let connection = connect(&args.amqp_url, &format!("echo-responder-{queue}")).await?;
        let consume_channel = connection.create_channel().await?;
        consume_channel
            .basic_qos(args.prefetch, BasicQosOptions::default())
            .await?;
        if args.celery_format {
            warren_protocol::amqp::declare_task_queue(&consume_channel, queue).await?;
        } else {
            consume_channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await?;
        }
        let publisher = confirm_channel(&connection).await?;
        let consumer = consume(&consume_channel, queue, "echo-responder").await?;
        responders.tasks.push(tokio::spawn(respond(
            consumer,
            publisher,
            reply(args),
            stop.clone(),
        )));
        responders.connections.push(connection);
    }
    Ok(responders)
}

/// One responder: reply (confirmed) before the ack, each delivery on its own task,
/// as a warren worker does.
async fn respond(
    mut consumer: lapin::Consumer,
    publisher: Channel,
    reply: Message,
    stop: CancellationToken,
) {
    let reply = Arc::new(reply);
    loop {
        let delivery = tokio::select! {
            () = stop.cancelled() => return,
            next = consumer.next() => match next {
                Some(Ok(delivery)) => delivery,
                _ => return,
            },
        };
        let publisher = publisher.clone();
        let reply = Arc::clone(&reply);
        tokio::spawn(async move {
            let Some(reply_to) = delivery.properties.reply_to().clone() else {
                return;
            };
            let mut properties = reply.properties.clone();
            if let Some(id) = delivery.properties.correlation_id() {
                properties = properties.with_correlation_id(id.clone());
            }
            let published = async {
                publisher
                    .basic_publish(
                        reply.exchange.as_str().into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &reply.body,
                        properties,
                    )
                    .await?
                    .await
            };
            if let Ok(Confirmation::Ack(_)) = published.await {
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        });
    }
}
