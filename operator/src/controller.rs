//! Wiring: the TaskQueue controller, triggered by watch events and by fresh broker
//! readings, and the janitor that forgets TaskQueues that were deleted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Predicate;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher as watcher_fn};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::broker::occupancy::OccupancyReader;
use crate::broker::poller::BrokerPoller;
use crate::crd::TaskQueue;
use crate::credentials::{BrokerAccess, SecretCache};
use crate::events::Events;
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::ownership::Owners;
use crate::ownership::autoscalers::Autoscalers;
use crate::reconciler::{Context, error_policy, reconcile};
use crate::scale_down::IdleFirst;
use crate::scale_down::pods::PodCache;
use crate::target::Targets;
use crate::target::deployments::DeploymentCache;

pub struct Settings {
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub access: BrokerAccess,
    pub poll_timeout: Duration,
    /// Reconciliations in flight at once (16 by default). A reconcile reads from
    /// memory and writes only on change, so a few keep up with a thousand
    /// TaskQueues per interval, and the bound caps memory when all are triggered
    /// at once. It must stay above demand: kube-runtime's scheduler hands out
    /// waiting objects in hash order (`pending.iter().find(..)`), not first-in
    /// first-out, so when reconciles are slower than triggers arrive the same
    /// objects win every time and others starve (seen with 16 while every
    /// reconcile GET `/scale`).
    pub reconcile_concurrency: u16,
    /// Reported as the Events' reporting instance (the pod name).
    pub instance: String,
}

/// Runs the controller until `shutdown` is cancelled.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let api: Api<TaskQueue> = match &settings.namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    let (poller, triggered) = BrokerPoller::new(settings.poll_timeout, Arc::clone(&metrics));
    let (deployments, deployment_events) =
        DeploymentCache::watch(client.clone(), settings.namespace.as_deref());
    // Until it lists, Deployments are read through /scale instead.
    let deployment_watch = spawn_logging_errors(
        deployment_events,
        "cannot watch Deployments; retrying (meanwhile /scale is read)",
    );
    let (pods, pod_events) = PodCache::watch(
        client.clone(),
        settings.namespace.as_deref(),
        Arc::clone(&metrics),
    );
    // Until it lists again, IdleFirst scale-downs fall back to Any and say so.
    let pod_watch = spawn_logging_errors(pod_events, "cannot watch pods; retrying");
    let (autoscalers, autoscaler_events) =
        Autoscalers::watch(client.clone(), settings.namespace.as_deref());
    // TaskQueues are not held back by it: an HPA on their workload goes unseen.
    let autoscaler_watch = spawn_logging_errors(
        autoscaler_events,
        "cannot watch HorizontalPodAutoscalers; retrying (meanwhile HPAs on TaskQueues' workloads go unseen)",
    );
    let idle_first = IdleFirst {
        pods,
        reader: OccupancyReader::new(settings.poll_timeout, Arc::clone(&metrics)),
    };
    let reporter = Reporter {
        controller: "warren-operator".into(),
        instance: Some(settings.instance.clone()),
    };
    let (store, writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        events: Events::new(client, reporter),
        poller: poller.clone(),
        metrics,
        access: settings.access,
        secrets: SecretCache::default(),
        targets: Targets::with_deployment_cache(deployments),
        owners: Owners::new(store.clone(), Some(autoscalers)),
        idle_first: Some(idle_first),
        histories: Mutex::new(HashMap::new()),
        status_writes: Mutex::new(HashMap::new()),
        queue_series: Mutex::new(HashMap::new()),
    });
    // Reconcile on spec (generation) and annotation (pause) changes, not on the
    // operator's own status writes; fresh readings trigger through the poller.
    let changes = watcher_fn(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|queue: &mut TaskQueue| queue.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    let readings = futures::stream::unfold(triggered, |mut rx| async move {
        rx.recv().await.map(|object| (object, rx))
    });
    let controller = Controller::for_stream(changes, store.clone())
        .with_config(ControllerConfig::default().concurrency(settings.reconcile_concurrency))
        .reconcile_on(readings);
    let janitor = tokio::spawn(janitor(Arc::clone(&ctx), store.clone(), shutdown.clone()));
    info!("controller running");
    controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    janitor.abort();
    deployment_watch.abort();
    pod_watch.abort();
    autoscaler_watch.abort();
    info!("controller stopped");
}

/// Drives a cache's watch stream in a task of its own, logging its errors (the
/// watch retries them with backoff).
fn spawn_logging_errors(
    events: impl Stream<Item = Result<(), watcher::Error>> + Send + 'static,
    message: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(events.for_each(move |event| {
        if let Err(error) = event {
            warn!(%error, "{message}");
        }
        futures::future::ready(())
    }))
}

/// Every 10 s, forgets what belongs to TaskQueues that are gone (histories,
/// status-write times, per-queue metric series, poller watches) and Secrets past
/// their TTL, then counts what is left.
async fn janitor(ctx: Arc<Context>, store: Store<TaskQueue>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let live: HashSet<ObjectRef<TaskQueue>> = store
            .state()
            .iter()
            .map(|q| ObjectRef::from_obj(&**q))
            .collect();
        lock(&ctx.histories).retain(|object, _| live.contains(object));
        ctx.secrets.expire();
        lock(&ctx.status_writes).retain(|object, _| live.contains(object));
        lock(&ctx.queue_series).retain(|object, labels| {
            let keep = live.contains(object);
            if !keep {
                ctx.metrics.forget_queue(labels);
            }
            keep
        });
        for object in ctx.poller.watched() {
            if !live.contains(&object) {
                debug!(%object, "TaskQueue deleted; no longer polled");
                ctx.poller.unwatch(&object);
            }
        }
        track_entries(&ctx);
    }
}

/// Counts what is kept per TaskQueue, for the tracked-entries metric.
fn track_entries(ctx: &Context) {
    let metrics = &ctx.metrics;
    metrics.track("histories", lock(&ctx.histories).len());
    metrics.track("status_writes", lock(&ctx.status_writes).len());
    metrics.track("queue_series", lock(&ctx.queue_series).len());
    metrics.track("secrets", ctx.secrets.count());
    let poller = ctx.poller.sizes();
    metrics.track("poller_watches", poller.watches);
    metrics.track("poller_samples", poller.samples);
    metrics.track("broker_loops", poller.loops);
}
