//! The broker poller: an in-memory index of which TaskQueue watches which queue on
//! which broker, and one polling loop per broker that reads every watched queue in
//! one batched listing per interval (per vhost), stores the samples with their
//! time, and triggers the reconciliation of the TaskQueues they concern.
//!
//! Most cycles make a fresh totals listing (ready, unacked); every
//! [`STATS_EVERY`]th makes a statistics listing instead (consumers, rates), whose
//! counts lag, so it refreshes consumers and rates and keeps the last fresh counts.
//! Either way one cycle costs one request per 500 queues.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::management::{ListMode, ManagementClient};
pub use super::sample::Sample;
use super::sample::merge;
use super::{BrokerError, Endpoint, QueueStats};
use crate::crd::TaskQueue;
use crate::lock::lock;
use crate::metrics::Metrics;

/// What one TaskQueue wants read.
#[derive(Debug, Clone, PartialEq)]
pub struct Watch {
    pub endpoint: Endpoint,
    pub vhost: String,
    pub queue: String,
    pub interval: Duration,
}

type QueueKey = (String, String);

/// One statistics listing per this many cycles.
pub const STATS_EVERY: u64 = 6;

/// What the poller holds, for the tracked-entries metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollerSizes {
    pub watches: usize,
    pub samples: usize,
    pub loops: usize,
}

#[derive(Default)]
struct State {
    watches: HashMap<ObjectRef<TaskQueue>, Watch>,
    samples: HashMap<(Endpoint, QueueKey), Sample>,
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
        drop_unwatched_samples(&mut state);
    }

    /// Forgets `object` (deleted); a broker nobody watches stops being polled.
    pub fn unwatch(&self, object: &ObjectRef<TaskQueue>) {
        let mut state = lock(&self.state);
        state.watches.remove(object);
        self.stop_idle_loops(&mut state);
        drop_unwatched_samples(&mut state);
    }

    /// How many watches, samples and broker loops the poller holds.
    pub fn sizes(&self) -> PollerSizes {
        let state = lock(&self.state);
        PollerSizes {
            watches: state.watches.len(),
            samples: state.samples.len(),
            loops: state.loops.len(),
        }
    }

    /// Every TaskQueue with a watch.
    pub fn watched(&self) -> Vec<ObjectRef<TaskQueue>> {
        lock(&self.state).watches.keys().cloned().collect()
    }

    /// What `object` watches, if anything.
    pub fn watch_of(&self, object: &ObjectRef<TaskQueue>) -> Option<Watch> {
        lock(&self.state).watches.get(object).cloned()
    }

    /// The latest sample of what `object` watches.
    pub fn latest(&self, object: &ObjectRef<TaskQueue>) -> Option<Sample> {
        let state = lock(&self.state);
        let watch = state.watches.get(object)?;
        let key = (
            watch.endpoint.clone(),
            (watch.vhost.clone(), watch.queue.clone()),
        );
        state.samples.get(&key).cloned()
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
            state.samples.retain(|(e, _), _| e != &endpoint);
            debug!(url = %endpoint.url, "stopped polling a broker nobody watches");
        }
    }

    /// One broker's loop: read, store, trigger, sleep the shortest watched interval.
    async fn run(self, endpoint: Endpoint) {
        let mut cycle: u64 = 0;
        loop {
            let Some((wanted, interval)) = self.wanted(&endpoint) else {
                return;
            };
            let started = Instant::now();
            // The first cycle makes both listings so that consumers are known at once;
            // totals go first wherever a count is missing, so that the statistics
            // listing has fresh counts to join (its own lag: see `merge`).
            let both: &[ListMode] = &[ListMode::Totals, ListMode::Stats];
            let modes: &[ListMode] = match cycle {
                0 => both,
                c if c % STATS_EVERY == 0 && !self.counts_known(&endpoint) => both,
                c if c % STATS_EVERY == 0 => &[ListMode::Stats],
                _ => &[ListMode::Totals],
            };
            let mut requests = 0;
            let mut triggered = Vec::new();
            for &mode in modes {
                for (vhost, queues) in &wanted {
                    let (listing, made) = self.client.list(&endpoint, vhost, queues, mode).await;
                    requests += made;
                    if let Err(error) = &listing {
                        self.metrics.error(error.reason());
                        warn!(url = %endpoint.url, %vhost, %error, "broker read failed");
                    }
                    let now = Instant::now();
                    let fresh: Vec<(QueueKey, Result<QueueStats, BrokerError>)> = queues
                        .iter()
                        .map(|queue| {
                            let result = match &listing {
                                Ok(found) => found.get(queue).cloned().ok_or_else(|| {
                                    BrokerError::QueueNotFound {
                                        vhost: vhost.clone(),
                                        queue: queue.clone(),
                                    }
                                }),
                                Err(error) => Err(error.clone()),
                            };
                            ((vhost.clone(), queue.clone()), result)
                        })
                        .collect();
                    triggered.extend(self.store(&endpoint, mode, fresh, now));
                }
            }
            self.metrics.poll(started.elapsed(), requests);
            triggered.sort_by_key(|o| o.to_string());
            triggered.dedup();
            for object in triggered {
                let _ = self.trigger.send(object);
            }
            cycle += 1;
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

    /// Whether every queue read through `endpoint` has a good reading.
    fn counts_known(&self, endpoint: &Endpoint) -> bool {
        let state = lock(&self.state);
        state
            .watches
            .values()
            .filter(|w| &w.endpoint == endpoint)
            .all(|w| {
                let slot = (endpoint.clone(), (w.vhost.clone(), w.queue.clone()));
                state.samples.get(&slot).is_some_and(|s| s.result.is_ok())
            })
    }

    /// Stores samples and returns the TaskQueues they concern.
    fn store(
        &self,
        endpoint: &Endpoint,
        mode: ListMode,
        fresh: Vec<(QueueKey, Result<QueueStats, BrokerError>)>,
        now: Instant,
    ) -> Vec<ObjectRef<TaskQueue>> {
        let mut state = lock(&self.state);
        let keys: BTreeSet<QueueKey> = fresh.iter().map(|(k, _)| k.clone()).collect();
        for (key, result) in fresh {
            let slot = (endpoint.clone(), key);
            if let Some(merged) = merge(state.samples.get(&slot), mode, result, now) {
                state.samples.insert(slot, merged);
            }
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

/// Forgets samples of queues no TaskQueue watches any more: they would leak, and a
/// TaskQueue created later on the same queue would start from the old one's
/// consumer count (a recreated queue, on the local cluster: 3 consumers read for a
/// queue whose 6 new workers all held work, so 6 -> 3 removed busy pods).
fn drop_unwatched_samples(state: &mut State) {
    let watched: HashSet<(&Endpoint, &str, &str)> = state
        .watches
        .values()
        .map(|w| (&w.endpoint, w.vhost.as_str(), w.queue.as_str()))
        .collect();
    state.samples.retain(|(endpoint, (vhost, queue)), _| {
        watched.contains(&(endpoint, vhost.as_str(), queue.as_str()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::sample::tests::stats;

    #[test]
    fn samples_of_queues_nobody_watches_are_dropped() {
        let endpoint = Endpoint {
            url: "http://rabbitmq:15672".into(),
            username: "guest".into(),
            password: super::super::Password::new("guest"),
            ca_pem: None,
        };
        let watch = |queue: &str| Watch {
            endpoint: endpoint.clone(),
            vhost: "/".into(),
            queue: queue.into(),
            interval: Duration::from_secs(1),
        };
        let sample = || Sample {
            result: Ok(stats(1, Some(3))),
            taken_at: Instant::now(),
            rates: None,
        };
        let mut state = State::default();
        state
            .watches
            .insert(ObjectRef::new("a").within("ns"), watch("queue_a"));
        for queue in ["queue_a", "queue_b"] {
            let key = (endpoint.clone(), ("/".to_owned(), queue.to_owned()));
            state.samples.insert(key, sample());
        }
        drop_unwatched_samples(&mut state);
        let left: Vec<&str> = state.samples.keys().map(|(_, (_, q))| q.as_str()).collect();
        assert_eq!(left, ["queue_a"]);
        state.watches.clear();
        drop_unwatched_samples(&mut state);
        assert!(
            state.samples.is_empty(),
            "a TaskQueue created later starts afresh"
        );
    }
}
