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
//! [`responder`] is the worker side, [`client`] the dispatcher side, [`messages`]
//! what they send and [`broker`] the lapin calls both make.
//!
//! ```text
//! cargo run --release -p warren-dispatcher --example echo_ceiling -- --requests 20000 --prefetch 64
//! ```

mod broker;
mod client;
mod messages;
mod responder;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::responder::Responders;

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
        report(&args, run, wall, nacked);
    }
    Ok(())
}

/// Prints one run: a JSON object with `--json`, else a line of text.
fn report(args: &Args, run: usize, wall: Duration, nacked: u64) {
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

/// One run on queues of its own (a fresh tag in their names): the time from the
/// first request published to the last reply taken, and how many requests the
/// broker nacked.
async fn one_run(args: &Args) -> anyhow::Result<(Duration, u64)> {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let queues: Vec<String> = (0..args.queues)
        .map(|i| format!("warren.echo.{tag}.q{i}"))
        .collect();
    let reply_queue = format!("warren.echo.{tag}.reply");
    let stop = CancellationToken::new();

    // Responders first, each on its own connection, consuming before any request.
    let responders = responder::start(args, &queues, &stop).await?;
    let (client, replies) = client::open(&args.amqp_url, &reply_queue).await?;

    let window = Arc::new(Semaphore::new(args.window));
    let nacked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(Notify::new());
    let collector = client::spawn_collector(
        replies,
        Arc::clone(&window),
        args.requests as u64,
        Arc::clone(&done),
    );

    let requests: Vec<messages::Message> = queues
        .iter()
        .map(|queue| messages::request(args, queue, &reply_queue))
        .collect();
    let started = Instant::now();
    client::publish_requests(
        &client.publisher,
        &queues,
        &requests,
        args.requests,
        &window,
        &nacked,
    )
    .await?;
    tokio::time::timeout(Duration::from_secs(120), done.notified())
        .await
        .context("replies did not all arrive within 120 s")?;
    let wall = started.elapsed();

    stop.cancel();
    collector.abort();
    tear_down(args, client, responders, &queues, &reply_queue).await;
    Ok((wall, nacked.load(Ordering::Relaxed)))
}

/// Waits for the (cancelled) responders, deletes the run's queues (and, in Celery
/// format, their exchanges) and closes every connection. Failures are ignored: the
/// run is already measured.
async fn tear_down(
    args: &Args,
    client: Client,
    responders: Responders,
    queues: &[String],
    reply_queue: &str,
) {
    for responder in responders.tasks {
        let _ = responder.await;
    }
    for queue in queues.iter().map(String::as_str).chain([reply_queue]) {
        let _ = client
            .publisher
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    if args.celery_format {
        for queue in queues {
            let _ = client
                .publisher
                .exchange_delete(queue.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = client.connection.close(200, "done".into()).await;
    for connection in responders.connections {
        let _ = connection.close(200, "done".into()).await;
    }
}
