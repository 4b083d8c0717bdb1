//! The worker's broker session loop: connect, declare, consume with
//! prefetch, run deliveries concurrently, reconnect with backoff when the broker goes
//! away, and shut down gracefully on request.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use warren_protocol::amqp::{declare_dead_letter_queue, declare_task_queue, redact_url};

use crate::config::WorkerConfig;
use crate::delivery::{DeliveryContext, DeliveryError, process};
use crate::metrics::WorkerMetrics;
use crate::registry::TaskRegistry;

/// How one broker session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Why a session could not start or went on no longer.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error("no session within {0:?} (connect, declare, consume); retrying")]
    SetupTimedOut(Duration),
}

/// A session's broker objects, from connecting to consuming.
struct Open {
    connection: Connection,
    consume_channel: lapin::Channel,
    publisher: lapin::Channel,
    consumer: Consumer,
    dead_letter_queue: String,
}

pub struct Worker {
    config: Arc<WorkerConfig>,
    registry: Arc<TaskRegistry>,
    metrics: Arc<WorkerMetrics>,
}

impl Worker {
    pub fn new(config: WorkerConfig, registry: TaskRegistry) -> Self {
        Self {
            config: Arc::new(config),
            registry: Arc::new(registry),
            metrics: Arc::new(WorkerMetrics::new()),
        }
    }

    pub fn metrics(&self) -> Arc<WorkerMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Consumes until `shutdown` is cancelled, reconnecting whenever the broker is
    /// lost. Returns once in-flight work is settled (or the grace period ran out).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.config.reconnect_max);
        loop {
            let end = match self.session(&shutdown).await {
                // The session got as far as consuming: whatever ends it is a new
                // outage, retried from the shortest delay again.
                Ok(end) => {
                    backoff.reset();
                    end
                }
                Err(error) => SessionEnd::Lost(error.to_string()),
            };
            self.metrics.set_ready(false);
            self.metrics.connected.set(0);
            let delay = backoff.next_delay();
            match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(reason) => {
                    warn!(
                        broker = %redact_url(&self.config.amqp_url),
                        %reason,
                        retry_in = ?delay,
                        "broker unavailable; reconnecting"
                    );
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<SessionEnd, SessionError> {
        let config = &self.config;
        let Open {
            connection,
            consume_channel,
            publisher,
            consumer,
            dead_letter_queue,
        } = tokio::time::timeout(config.setup_timeout, self.open())
            .await
            .map_err(|_| SessionError::SetupTimedOut(config.setup_timeout))??;
        self.metrics.connected.set(1);
        self.metrics.set_ready(true);
        info!(
            queue = %config.queue,
            concurrency = config.concurrency,
            prefetch = config.prefetch,
            tasks = ?self.registry.names(),
            "consuming"
        );
        let ctx = Arc::new(DeliveryContext {
            config: Arc::clone(config),
            registry: Arc::clone(&self.registry),
            metrics: Arc::clone(&self.metrics),
            publisher,
            dead_letter_queue,
        });
        let mut tasks = JoinSet::new();
        let end = self
            .consume(consumer.clone(), ctx, &mut tasks, shutdown)
            .await;
        match end {
            SessionEnd::Shutdown => {
                self.metrics.set_ready(false);
                info!("shutting down: no new deliveries, finishing in-flight tasks");
                let cancel = consume_channel
                    .basic_cancel(config.name.as_str().into(), BasicCancelOptions::default())
                    .await;
                if cancel.is_ok() {
                    let returned = return_unstarted(consumer).await;
                    self.metrics.returned_unstarted.inc_by(returned);
                    if returned > 0 {
                        // Taken after an idle-first scale-down chose this pod: the race.
                        warn!(
                            returned,
                            "deliveries arrived after shutdown began; returned unstarted"
                        );
                    }
                }
                self.drain(&mut tasks).await;
                // lapin can wait forever for close-ok when a channel is already
                // closing; the work is settled by now, so exiting matters more.
                let close = connection.close(200, "worker shutting down".into());
                if tokio::time::timeout(CLOSE_TIMEOUT, close).await.is_err() {
                    warn!(timeout = ?CLOSE_TIMEOUT, "broker did not confirm the close; exiting anyway");
                }
                Ok(SessionEnd::Shutdown)
            }
            lost => {
                tasks.abort_all();
                Ok(lost)
            }
        }
    }

    /// Connects, declares the queues and starts consuming.
    async fn open(&self) -> lapin::Result<Open> {
        let config = &self.config;
        let properties =
            ConnectionProperties::default().with_connection_name(config.name.as_str().into());
        let connection = Connection::connect(&config.amqp_url, properties).await?;
        let consume_channel = connection.create_channel().await?;
        consume_channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        declare_task_queue(&consume_channel, &config.queue).await?;
        let dead_letter_queue = declare_dead_letter_queue(&consume_channel, &config.queue).await?;
        let publisher = connection.create_channel().await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consumer = consume_channel
            .basic_consume(
                config.queue.as_str().into(),
                config.name.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Open {
            connection,
            consume_channel,
            publisher,
            consumer,
            dead_letter_queue,
        })
    }

    async fn consume(
        &self,
        mut consumer: Consumer,
        ctx: Arc<DeliveryContext>,
        tasks: &mut JoinSet<Result<(), DeliveryError>>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return SessionEnd::Shutdown,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_settled(joined),
                next = consumer.next() => {
                    let delivery = match next {
                        None => return SessionEnd::Lost("the broker cancelled the consumer".into()),
                        Some(Err(error)) => return SessionEnd::Lost(error.to_string()),
                        Some(Ok(delivery)) => delivery,
                    };
                    // With prefetch above concurrency a delivery may wait here; if
                    // shutdown comes first it goes back to the queue unstarted.
                    let permit = tokio::select! {
                        permit = Arc::clone(&permits).acquire_owned() => permit,
                        () = shutdown.cancelled() => {
                            self.metrics.returned_unstarted.inc();
                            warn!("a delivery arrived as shutdown began; returned unstarted");
                            let _ = delivery.nack(requeue()).await;
                            return SessionEnd::Shutdown;
                        }
                    };
                    let Ok(permit) = permit else {
                        return SessionEnd::Lost("worker semaphore closed".into());
                    };
                    tasks.spawn(process(delivery, Arc::clone(&ctx), permit));
                }
            }
        }
    }

    /// Waits for in-flight tasks up to the grace period. Tasks still running after
    /// it are dropped unacked, so the broker hands them to another worker.
    async fn drain(&self, tasks: &mut JoinSet<Result<(), DeliveryError>>) {
        let in_flight = tasks.len();
        let drained = tokio::time::timeout(self.config.grace_period, async {
            while let Some(joined) = tasks.join_next().await {
                log_settled(joined);
            }
        })
        .await;
        match drained {
            Ok(()) => info!(in_flight, "in-flight tasks settled"),
            Err(_) => {
                error!(
                    abandoned = tasks.len(),
                    grace_period = ?self.config.grace_period,
                    "grace period over; abandoning tasks, the broker will redeliver them"
                );
                tasks.abort_all();
            }
        }
    }
}

/// Delays between reconnect attempts: 100 ms, doubling up to `max`.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);

    fn new(max: Duration) -> Self {
        Self {
            next: Self::FIRST.min(max),
            max,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (delay * 2).min(self.max);
        delay
    }

    /// Without this, one long outage left every later one waiting `max` before
    /// its first attempt (link_cut measured 5 s to come back from a brief cut).
    fn reset(&mut self) {
        self.next = Self::FIRST.min(self.max);
    }
}

/// How long a shutting-down worker waits for the broker to confirm the close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Deliveries that reached us after basic.cancel went out never started: requeue
/// them; returns how many.
async fn return_unstarted(mut consumer: Consumer) -> u64 {
    let mut returned = 0;
    while let Ok(Some(Ok(delivery))) =
        tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
    {
        let _ = delivery.nack(requeue()).await;
        returned += 1;
    }
    returned
}

fn requeue() -> BasicNackOptions {
    BasicNackOptions {
        requeue: true,
        ..Default::default()
    }
}

fn log_settled(joined: Result<Result<(), DeliveryError>, tokio::task::JoinError>) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(error)) => warn!(%error, "delivery left for redelivery"),
        Err(error) if error.is_cancelled() => {}
        Err(error) => error!(%error, "delivery task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that accepts connections and never says a word: each attempt is
    /// given up after the setup timeout and made again, instead of waiting forever.
    #[tokio::test]
    async fn a_silent_broker_is_given_up_on_and_tried_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut config = WorkerConfig::new("silent");
        config.amqp_url = format!(
            "amqp://guest:guest@{}/%2f",
            listener.local_addr().expect("addr")
        );
        config.setup_timeout = Duration::from_millis(300);
        let worker = Worker::new(config, TaskRegistry::new());
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(worker.run(shutdown.clone()));
        let mut held = Vec::new();
        for attempt in 1..=2 {
            let (socket, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
                .await
                .unwrap_or_else(|_| panic!("attempt {attempt} within 5 s"))
                .expect("accept");
            // Kept open and silent: only the worker's timeout can end the attempt.
            held.push(socket);
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("the worker stops")
            .expect("joined");
    }

    #[test]
    fn backoff_doubles_up_to_its_max_and_starts_over_after_a_reset() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
        let mut short = Backoff::new(Duration::from_millis(30));
        assert_eq!(short.next_delay(), Duration::from_millis(30));
    }
}
