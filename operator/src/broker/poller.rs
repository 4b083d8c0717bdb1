//! The broker poller: an in-memory index of which TaskQueue watches which queue on
//! which broker, and one polling loop per broker that reads every watched queue in
//! one batched listing per interval (per vhost), stores the readings with their
//! time, and triggers the reconciliation of the TaskQueues they concern.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::management::ManagementClient;
use super::{BrokerError, Endpoint, QueueStats};
use crate::crd::TaskQueue;
use crate::metrics::Metrics;

/// What one TaskQueue wants read.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub endpoint: Endpoint,
    pub vhost: String,
    pub queue: String,
    pub interval: Duration,
}

/// The latest reading of a queue, or why there is none, and when it was taken.
#[derive(Debug, Clone)]
pub struct Reading {
    pub result: Result<QueueStats, BrokerError>,
    pub taken_at: Instant,
}

type QueueKey = (String, String);

#[derive(Default)]
struct State {
    watches: HashMap<ObjectRef<TaskQueue>, Watch>,
    readings: HashMap<(Endpoint, QueueKey), Reading>,
    loops: HashMap<Endpoint, tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
pub struct BrokerPoller {
    state: Arc<Mutex<State>>,
    client: Arc<ManagementClient>,
    trigger: mpsc::UnboundedSender<ObjectRef<TaskQueue>>,
    metrics: Arc<Metrics>,
}

impl BrokerPoller {
    /// A poller and the stream of TaskQueues to reconcile after each fresh reading.
    pub fn new(
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::UnboundedReceiver<ObjectRef<TaskQueue>>) {
        let (trigger, triggered) = mpsc::unbounded_channel();
        let poller = Self {
            state: Arc::default(),
            client: Arc::new(ManagementClient::new(timeout)),
            trigger,
            metrics,
        };
        (poller, triggered)
    }

    /// Registers (or updates) what `object` wants read; starts the broker's loop
    /// when it is the first watch on that broker.
    pub fn watch(&self, object: ObjectRef<TaskQueue>, watch: Watch) {
        let mut state = lock(&self.state);
        let endpoint = watch.endpoint.clone();
        if state.watches.get(&object) == Some(&watch) {
            return;
        }
        state.watches.insert(object, watch);
        state
            .loops
            .entry(endpoint.clone())
            .or_insert_with(|| tokio::spawn(self.clone().run(endpoint)));
        self.stop_idle_loops(&mut state);
    }

    /// Forgets `object` (deleted); a broker nobody watches stops being polled.
    pub fn unwatch(&self, object: &ObjectRef<TaskQueue>) {
        let mut state = lock(&self.state);
        state.watches.remove(object);
        self.stop_idle_loops(&mut state);
    }

    /// Every TaskQueue with a watch.
    pub fn watched(&self) -> Vec<ObjectRef<TaskQueue>> {
        lock(&self.state).watches.keys().cloned().collect()
    }

    /// The latest reading for what `object` watches.
    pub fn reading(&self, object: &ObjectRef<TaskQueue>) -> Option<Reading> {
        let state = lock(&self.state);
        let watch = state.watches.get(object)?;
        let key = (
            watch.endpoint.clone(),
            (watch.vhost.clone(), watch.queue.clone()),
        );
        state.readings.get(&key).cloned()
    }

    fn stop_idle_loops(&self, state: &mut State) {
        let idle: Vec<Endpoint> = {
            let watched: Vec<&Endpoint> = state.watches.values().map(|w| &w.endpoint).collect();
            state
                .loops
                .keys()
                .filter(|e| !watched.contains(e))
                .cloned()
                .collect()
        };
        for endpoint in idle {
            if let Some(handle) = state.loops.remove(&endpoint) {
                handle.abort();
            }
            state.readings.retain(|(e, _), _| e != &endpoint);
            debug!(url = %endpoint.url, "stopped polling a broker nobody watches");
        }
    }

    /// One broker's loop: read, store, trigger, sleep the shortest watched interval.
    async fn run(self, endpoint: Endpoint) {
        loop {
            let Some((wanted, interval)) = self.wanted(&endpoint) else {
                return;
            };
            let started = Instant::now();
            let mut requests = 0;
            let mut fresh = Vec::new();
            for (vhost, queues) in wanted {
                let (listing, made) = self.client.list(&endpoint, &vhost, &queues).await;
                requests += made;
                let taken_at = Instant::now();
                for queue in queues {
                    let result =
                        match &listing {
                            Ok(found) => found.get(&queue).cloned().ok_or_else(|| {
                                BrokerError::QueueNotFound {
                                    vhost: vhost.clone(),
                                    queue: queue.clone(),
                                }
                            }),
                            Err(error) => Err(error.clone()),
                        };
                    if let Err(error) = &result {
                        self.metrics.error(error.kind());
                    }
                    fresh.push(((vhost.clone(), queue), Reading { result, taken_at }));
                }
                if let Err(error) = &listing {
                    warn!(url = %endpoint.url, %vhost, %error, "broker read failed");
                }
            }
            self.metrics.poll(started.elapsed(), requests);
            let triggered = self.store(&endpoint, fresh);
            for object in triggered {
                let _ = self.trigger.send(object);
            }
            tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
        }
    }

    /// Queues to read per vhost, and the shortest interval any watcher asked for.
    fn wanted(
        &self,
        endpoint: &Endpoint,
    ) -> Option<(BTreeMap<String, BTreeSet<String>>, Duration)> {
        let state = lock(&self.state);
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut interval: Option<Duration> = None;
        for watch in state.watches.values().filter(|w| &w.endpoint == endpoint) {
            wanted
                .entry(watch.vhost.clone())
                .or_default()
                .insert(watch.queue.clone());
            interval = Some(interval.map_or(watch.interval, |i| i.min(watch.interval)));
        }
        Some((wanted, interval?.max(Duration::from_millis(200))))
    }

    /// Stores readings and returns the TaskQueues they concern.
    fn store(
        &self,
        endpoint: &Endpoint,
        fresh: Vec<(QueueKey, Reading)>,
    ) -> Vec<ObjectRef<TaskQueue>> {
        let mut state = lock(&self.state);
        let keys: BTreeSet<QueueKey> = fresh.iter().map(|(k, _)| k.clone()).collect();
        for (key, reading) in fresh {
            state.readings.insert((endpoint.clone(), key), reading);
        }
        state
            .watches
            .iter()
            .filter(|(_, w)| {
                &w.endpoint == endpoint && keys.contains(&(w.vhost.clone(), w.queue.clone()))
            })
            .map(|(object, _)| object.clone())
            .collect()
    }
}

/// The index is plain data; a panic elsewhere while it was held leaves it usable.
fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
