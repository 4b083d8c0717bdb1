//! A watch cache of Deployments' replica counts, so that reconciling a TaskQueue
//! reads its target from memory instead of GETting `/scale` from the API server.
//!
//! With a thousand TaskQueues the GETs were the ceiling (about 90 a second on two
//! cores), so a fresh reading could not re-decide every TaskQueue within one poll
//! interval. The cache keeps only what a decision needs (name, namespace,
//! resourceVersion, the two replica counts and the pod selector), not whole
//! Deployments.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::Deserialize;

use super::ScaleReading;
use crate::lock::lock;
use crate::watch_cache::WatchCache;

/// How long the count the operator itself wrote wins over a cache that has not
/// seen that write yet; the watch usually catches up in milliseconds.
const OWN_WRITE_GRACE: Duration = Duration::from_secs(5);

/// The parts of an `apps/v1` Deployment that scaling needs; serde skips the rest
/// (the pod template above all) while decoding.
#[derive(Clone, Debug, Deserialize)]
pub struct DeploymentReplicas {
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: ReplicasSpec,
    #[serde(default)]
    status: ReplicasStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ReplicasSpec {
    replicas: Option<i32>,
    /// Selects the pods a scale-down chooses among.
    selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ReplicasStatus {
    replicas: Option<i32>,
}

impl Resource for DeploymentReplicas {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Deployment".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "apps".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "deployments".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl DeploymentReplicas {
    fn reading(&self) -> ScaleReading {
        ScaleReading {
            // The API server defaults spec.replicas to 1, as /scale reports it.
            desired: self.spec.replicas.unwrap_or(1),
            running: self.status.replicas.unwrap_or(0),
        }
    }

    /// Drops every metadata field but the ones the cache is keyed and versioned by.
    fn strip(&mut self) {
        self.metadata = ObjectMeta {
            name: self.metadata.name.take(),
            namespace: self.metadata.namespace.take(),
            resource_version: self.metadata.resource_version.take(),
            ..ObjectMeta::default()
        };
    }
}

/// A count the operator wrote through `/scale`, until the cache moves past the
/// version it held when the write was made.
#[derive(Debug, Clone)]
struct OwnWrite {
    replicas: i32,
    /// The cached resourceVersion the write superseded.
    superseded: Option<String>,
    at: Instant,
}

/// Replica counts of the Deployments in the watched namespace(s).
#[derive(Clone)]
pub struct DeploymentCache {
    /// While it is not current, reads go to the API server.
    cache: WatchCache<DeploymentReplicas>,
    own_writes: Arc<Mutex<HashMap<ObjectRef<DeploymentReplicas>, OwnWrite>>>,
}

/// What the cache knows of one Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// The cache has not finished its first listing, or its watch is failing;
    /// ask the API server.
    Unsynced,
    /// Not in the cache: deleted, or created moments ago; ask the API server.
    Missing,
    Found(ScaleReading),
}

impl DeploymentCache {
    fn new(cache: WatchCache<DeploymentReplicas>) -> Self {
        Self {
            cache,
            own_writes: Arc::default(),
        }
    }

    /// The cache and the stream that fills it; the stream must be polled (it ends
    /// only with the client) for the cache to become and stay current. Its errors
    /// are the watch's, already retried with backoff; they are for logging.
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
    ) -> (
        Self,
        impl Stream<Item = Result<(), watcher::Error>> + Send + 'static,
    ) {
        let (cache, events) = WatchCache::watch(client, namespace, DeploymentReplicas::strip);
        (Self::new(cache), events.map(|event| event.map(|_| ())))
    }

    pub fn get(&self, namespace: &str, name: &str) -> Cached {
        if !self.cache.current() {
            return Cached::Unsynced;
        }
        let key = ObjectRef::new(name).within(namespace);
        let cached = self.cache.store().get(&key);
        let mut own_writes = lock(&self.own_writes);
        if let Some(own) = own_writes.get(&key) {
            // Watch events arrive in order, so any version other than the one the
            // write superseded includes the write (or a later change, or a
            // deletion): from then on the cache is the better source.
            let unchanged = cached
                .as_ref()
                .is_some_and(|d| d.metadata.resource_version == own.superseded);
            if unchanged && own.at.elapsed() < OWN_WRITE_GRACE {
                let running = cached.as_ref().map_or(0, |d| d.reading().running);
                return Cached::Found(ScaleReading {
                    desired: own.replicas,
                    running,
                });
            }
            own_writes.remove(&key);
        }
        match cached {
            Some(deployment) => Cached::Found(deployment.reading()),
            None => Cached::Missing,
        }
    }

    /// The pod selector of a cached Deployment.
    pub fn selector(&self, namespace: &str, name: &str) -> Option<LabelSelector> {
        let key = ObjectRef::new(name).within(namespace);
        self.cache
            .store()
            .get(&key)
            .and_then(|d| d.spec.selector.clone())
    }

    /// The resourceVersion the cache holds for a Deployment, to pass to [`wrote`]
    /// after scaling it.
    ///
    /// [`wrote`]: Self::wrote
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        let key = ObjectRef::new(name).within(namespace);
        self.cache
            .store()
            .get(&key)
            .and_then(|d| d.metadata.resource_version.clone())
    }

    /// Remembers a count just written through `/scale` over the cached version
    /// `superseded`, so that a reconcile running before the watch delivers the
    /// write does not act on the old count.
    pub fn wrote(&self, namespace: &str, name: &str, replicas: i32, superseded: Option<String>) {
        let key = ObjectRef::new(name).within(namespace);
        let mut own_writes = lock(&self.own_writes);
        // Entries of Deployments nobody reads any more would otherwise stay.
        own_writes.retain(|_, own| own.at.elapsed() < OWN_WRITE_GRACE);
        own_writes.insert(
            key,
            OwnWrite {
                replicas,
                superseded,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    #[test]
    fn decodes_only_the_counts_and_strips_metadata() {
        let mut deployment: DeploymentReplicas = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "worker-a", "namespace": "ns", "resourceVersion": "7",
                         "labels": {"app": "a"}, "managedFields": [{"manager": "kubectl"}]},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}}},
            "status": {"replicas": 2, "readyReplicas": 2}
        }))
        .expect("deployment");
        deployment.strip();
        assert_eq!(deployment.metadata.name.as_deref(), Some("worker-a"));
        assert_eq!(deployment.metadata.resource_version.as_deref(), Some("7"));
        assert!(deployment.metadata.labels.is_none());
        assert!(deployment.metadata.managed_fields.is_none());
        assert_eq!(
            deployment.reading(),
            ScaleReading {
                desired: 3,
                running: 2
            }
        );
    }

    fn deployment(name: &str, replicas: i32, resource_version: &str) -> DeploymentReplicas {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": resource_version},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas}
        }))
        .expect("deployment")
    }

    fn synced(
        objects: &[DeploymentReplicas],
    ) -> (
        DeploymentCache,
        reflector::store::Writer<DeploymentReplicas>,
    ) {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(object.clone()));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        (DeploymentCache::new(WatchCache::over(store)), writer)
    }

    fn desired(cached: Cached) -> Option<i32> {
        match cached {
            Cached::Found(reading) => Some(reading.desired),
            Cached::Missing | Cached::Unsynced => None,
        }
    }

    #[test]
    fn unsynced_until_the_first_listing_and_while_the_watch_fails() {
        let (store, mut writer) = reflector::store::<DeploymentReplicas>();
        let cache = DeploymentCache::new(WatchCache::over(store));
        assert_eq!(cache.get("ns", "w"), Cached::Unsynced);
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(deployment("w", 2, "1")));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(desired(cache.get("ns", "w")), Some(2));
        assert_eq!(cache.get("ns", "other"), Cached::Missing);
        cache.cache.fail();
        assert_eq!(cache.get("ns", "w"), Cached::Unsynced);
    }

    #[test]
    fn own_write_wins_only_until_the_watch_moves_on() {
        let (cache, mut writer) = synced(&[deployment("w", 1, "10")]);
        cache.wrote("ns", "w", 5, cache.resource_version("ns", "w"));
        assert_eq!(
            desired(cache.get("ns", "w")),
            Some(5),
            "watch not caught up yet"
        );
        // The write, then the Deployment controller's status update: a version
        // other than the superseded one, so the cache is trusted again.
        writer.apply_watcher_event(&watcher::Event::Apply(deployment("w", 5, "12")));
        assert_eq!(desired(cache.get("ns", "w")), Some(5));
        writer.apply_watcher_event(&watcher::Event::Apply(deployment("w", 3, "13")));
        assert_eq!(
            desired(cache.get("ns", "w")),
            Some(3),
            "someone else's scale is seen"
        );
    }

    #[test]
    fn own_write_does_not_hide_a_deletion_or_a_recreation() {
        let (cache, mut writer) = synced(&[deployment("w", 1, "10")]);
        cache.wrote("ns", "w", 5, cache.resource_version("ns", "w"));
        writer.apply_watcher_event(&watcher::Event::Delete(deployment("w", 1, "10")));
        assert_eq!(cache.get("ns", "w"), Cached::Missing);
        cache.wrote("ns", "w", 5, Some("10".into()));
        writer.apply_watcher_event(&watcher::Event::Apply(deployment("w", 1, "20")));
        assert_eq!(
            desired(cache.get("ns", "w")),
            Some(1),
            "a new Deployment of that name"
        );
    }

    #[test]
    fn unset_replicas_read_as_the_api_server_defaults_them() {
        let deployment: DeploymentReplicas =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "w"}}))
                .expect("deployment");
        assert_eq!(
            deployment.reading(),
            ScaleReading {
                desired: 1,
                running: 0
            }
        );
    }
}
