//! The broker's own ceiling for the task flow's round trip: a bare lapin
//! publish -> consume -> reply echo, with the durability settings warren uses.
//!
//! One client (one connection: a publisher-confirm channel and a reply consumer)
//! sends `--requests` requests of `--request-bytes`, alternating over `--queues`
//! durable request queues, at most `--window` in flight. Each queue has one
//! responder on its own connection, as each warren worker has: it consumes with
//! prefetch `--prefetch` and manual acks, publishes a `--reply-bytes` reply to the
//! request's `reply_to` (a durable reply queue), waits for that publish to be
//! confirmed, and only then acks the request. Requests and replies are persistent
//! (delivery mode 2) unless `--transient`. The client acks the replies as warren's
//! dispatcher does: once taken, one `multiple` ack for those already waiting.
//!
//! No JSON, no headers, no task bookkeeping: whatever warren does on top costs
//! the difference between this and `warren-dispatcher load-test --no-work`.
//!
//! `--celery-format` sends, instead of opaque bytes, what warren sends: a Celery
//! protocol v2 task message (its headers and JSON body) through the queue's direct
//! exchange, and an `rpc://` result with warren's two result headers as the reply,
//! each built once and reused. The client and responders still do no work per
//! message, so this isolates what Celery's format costs the broker.
//!
//! ```text
//! cargo run --release -p warren-dispatcher --example echo_ceiling -- --requests 20000 --prefetch 64
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Round trips per second of a bare request/reply echo through RabbitMQ.
#[derive(Debug, Parser)]
struct Args {
    /// Broker URL.
    #[arg(long, env = "WARREN_AMQP_URL", default_value = warren_dispatcher::client::DEFAULT_AMQP_URL, hide_default_value = true)]
    amqp_url: String,
    /// Round trips per run.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Most requests in flight at once (the dispatcher's --window).
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// Unacknowledged requests each responder may hold (the worker's prefetch).
    #[arg(long, default_value_t = 64)]
    prefetch: u16,
    /// Request queues, one responder each (warren: queue_a and queue_b).
    #[arg(long, default_value_t = 2)]
    queues: usize,
    #[arg(long, default_value_t = 200)]
    request_bytes: usize,
    #[arg(long, default_value_t = 100)]
    reply_bytes: usize,
    /// Delivery mode 1 for requests and replies (default: 2, persistent).
    #[arg(long)]
    transient: bool,
    /// Send warren's messages (Celery task message and rpc:// result, headers
    /// included) instead of --request-bytes / --reply-bytes of opaque payload.
    #[arg(long)]
    celery_format: bool,
    /// Runs; each is reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// One JSON object per run instead of a line of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.requests == 0 || args.window == 0 || args.queues == 0 || args.prefetch == 0 {
        bail!("--requests, --window, --queues and --prefetch must be above 0");
    }
    for run in 1..=args.runs {
        let (wall, nacked) = one_run(&args).await?;
        let per_s = args.requests as f64 / wall.as_secs_f64();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "run": run,
                    "requests": args.requests,
                    "window": args.window,
                    "prefetch": args.prefetch,
                    "queues": args.queues,
                    "request_bytes": args.request_bytes,
                    "reply_bytes": args.reply_bytes,
                    "persistent": !args.transient,
                    "celery_format": args.celery_format,
                    "wall_s": (wall.as_secs_f64() * 10_000.0).round() / 10_000.0,
                    "round_trips_per_s": per_s.round(),
                    "nacked": nacked,
                })
            );
        } else {
            println!(
                "run {run}: {} round trips in {:.3} s = {:.0}/s (window {}, prefetch {}, {} queue(s), {}{})",
                args.requests,
                wall.as_secs_f64(),
                per_s,
                args.window,
                args.prefetch,
                args.queues,
                if args.transient {
                    "transient"
                } else {
                    "persistent"
                },
                if args.celery_format {
                    ", Celery format"
                } else {
                    ""
                },
            );
        }
    }
    Ok(())
}

fn delivery_mode(args: &Args) -> u8 {
    if args.transient { 1 } else { 2 }
}

/// What one request or reply carries: exchange, body, properties.
#[derive(Clone)]
struct Message {
    exchange: String,
    body: Arc<[u8]>,
    properties: BasicProperties,
}

/// The request sent to `queue`, with replies to `reply_queue`.
fn request(args: &Args, queue: &str, reply_queue: &str) -> Message {
    if args.celery_format {
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("seconds".into(), serde_json::json!(0.0));
        let mut task = warren_protocol::TaskMessage::new("task_a", Vec::new(), kwargs);
        task.reply_to = Some(reply_queue.to_owned());
        return Message {
            exchange: queue.to_owned(),
            body: task.body().into(),
            properties: warren_protocol::amqp::task_properties(&task)
                .with_delivery_mode(delivery_mode(args)),
        };
    }
    Message {
        exchange: String::new(),
        body: vec![b'q'; args.request_bytes].into(),
        properties: BasicProperties::default()
            .with_delivery_mode(delivery_mode(args))
            .with_reply_to(reply_queue.into()),
    }
}

/// The reply a responder publishes (its correlation id is the request's).
fn reply(args: &Args) -> Message {
    if args.celery_format {
        let id = uuid::Uuid::new_v4().to_string();
        let result = warren_protocol::TaskResult::success(
            id.as_str(),
            serde_json::json!({"task": "task_a", "mode": "wait", "seconds": 0.0}),
        )
        .from_worker("echo-responder");
        let headers = warren_protocol::ResultMetadata {
            runtime: Some(Duration::from_micros(10)),
            concurrency: Some(64),
        }
        .to_headers();
        return Message {
            exchange: String::new(),
            body: result.encode().into(),
            properties: warren_protocol::amqp::result_properties(&id, headers)
                .with_delivery_mode(delivery_mode(args)),
        };
    }
    Message {
        exchange: String::new(),
        body: vec![b'r'; args.reply_bytes].into(),
        properties: BasicProperties::default().with_delivery_mode(delivery_mode(args)),
    }
}

async fn one_run(args: &Args) -> anyhow::Result<(Duration, u64)> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let queues: Vec<String> = (0..args.queues)
        .map(|i| format!("warren.echo.{tag}.q{i}"))
        .collect();
    let reply_queue = format!("warren.echo.{tag}.reply");
    let stop = CancellationToken::new();

    // Responders first, each on its own connection, consuming before any request.
    let mut responders = Vec::new();
    let mut responder_connections = Vec::new();
    for queue in &queues {
        let connection = connect(&args.amqp_url, &format!("echo-responder-{queue}")).await?;
        let consume = connection.create_channel().await?;
        consume
            .basic_qos(args.prefetch, BasicQosOptions::default())
            .await?;
        if args.celery_format {
            warren_protocol::amqp::declare_task_queue(&consume, queue).await?;
        } else {
            consume
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await?;
        }
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = consume
            .basic_consume(
                queue.as_str().into(),
                "echo-responder".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        responders.push(tokio::spawn(respond(
            consumer,
            publisher,
            reply(args),
            stop.clone(),
        )));
        responder_connections.push(connection);
    }

    // The client: one connection, a confirm channel and a reply consumer.
    let connection = connect(&args.amqp_url, "echo-client").await?;
    let replies = connection.create_channel().await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(600_000));
    replies
        .queue_declare(
            reply_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut consumer = replies
        .basic_consume(
            reply_queue.as_str().into(),
            "echo-client".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let window = Arc::new(Semaphore::new(args.window));
    let received = Arc::new(AtomicU64::new(0));
    let nacked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let total = args.requests as u64;
    let collector = {
        let window = Arc::clone(&window);
        let received = Arc::clone(&received);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            // Replies are acked as warren's dispatcher acks them: after they are
            // taken, with one `multiple` ack for those already waiting (at most 128).
            let mut unacked = None;
            let mut batch = 0;
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
                let last = received.fetch_add(1, Ordering::Relaxed) + 1 == total;
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
    };

    let requests: Vec<Message> = queues
        .iter()
        .map(|queue| request(args, queue, &reply_queue))
        .collect();
    let started = Instant::now();
    for i in 0..args.requests {
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
        let nacked = Arc::clone(&nacked);
        tokio::spawn(async move {
            if !matches!(confirm.await, Ok(Confirmation::Ack(_))) {
                nacked.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::timeout(Duration::from_secs(120), done.notified())
        .await
        .context("replies did not all arrive within 120 s")?;
    let wall = started.elapsed();

    stop.cancel();
    collector.abort();
    for responder in responders {
        let _ = responder.await;
    }
    for queue in queues.iter().chain([&reply_queue]) {
        let _ = publisher
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    if args.celery_format {
        for queue in &queues {
            let _ = publisher
                .exchange_delete(queue.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
    for connection in responder_connections {
        let _ = connection.close(200, "done".into()).await;
    }
    Ok((wall, nacked.load(Ordering::Relaxed)))
}

async fn ack_through(delivery: &lapin::message::Delivery) {
    let _ = delivery.ack(BasicAckOptions { multiple: true }).await;
}

async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await.with_context(|| {
        format!(
            "cannot connect to {}",
            warren_protocol::amqp::redact_url(url)
        )
    })
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
