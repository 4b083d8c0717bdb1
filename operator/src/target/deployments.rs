//! A watch cache of Deployments' replica counts, so that reconciling a TaskQueue
//! reads its target from memory instead of GETting `/scale` from the API server.
//!
//! With a thousand TaskQueues the GETs were the ceiling (about 90 a second on two
//! cores), so a fresh reading could not re-decide every TaskQueue within one poll
//! interval. The cache keeps only what a decision needs (name, namespace,
//! resourceVersion and the two replica counts), not whole Deployments.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::Deserialize;

use super::ScaleReading;
use crate::lock::lock;

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

/// A count the operator wrote through `/scale`, until the cache shows it.
#[derive(Debug, Clone)]
struct OwnWrite {
    replicas: i32,
    resource_version: Option<String>,
    at: Instant,
}

/// Replica counts of the Deployments in the watched namespace(s).
#[derive(Clone)]
pub struct DeploymentCache {
    store: Store<DeploymentReplicas>,
    own_writes: Arc<Mutex<HashMap<ObjectRef<DeploymentReplicas>, OwnWrite>>>,
}

/// What the cache knows of one Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// The cache has not finished its first listing; ask the API server.
    Unsynced,
    /// Not in the cache: deleted, or created moments ago; ask the API server.
    Missing,
    Found(ScaleReading),
}

impl DeploymentCache {
    /// The cache and the stream that fills it; the stream must be polled (it ends
    /// only with the client) for the cache to become and stay current.
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
    ) -> (
        Self,
        impl Stream<Item = Result<(), watcher::Error>> + Send + 'static,
    ) {
        let api: Api<DeploymentReplicas> = match namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store();
        let events = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(DeploymentReplicas::strip)
            .reflect(writer)
            .map(|event| event.map(|_| ()));
        let cache = Self {
            store,
            own_writes: Arc::default(),
        };
        (cache, events)
    }

    pub fn get(&self, namespace: &str, name: &str) -> Cached {
        if self.store.wait_until_ready().now_or_never().is_none() {
            return Cached::Unsynced;
        }
        let key = ObjectRef::new(name).within(namespace);
        let cached = self.store.get(&key);
        let mut own_writes = lock(&self.own_writes);
        if let Some(own) = own_writes.get(&key) {
            let caught_up = cached
                .as_ref()
                .is_some_and(|d| d.metadata.resource_version == own.resource_version);
            if caught_up || own.at.elapsed() >= OWN_WRITE_GRACE {
                own_writes.remove(&key);
            } else {
                let running = cached.as_ref().map_or(0, |d| d.reading().running);
                return Cached::Found(ScaleReading {
                    desired: own.replicas,
                    running,
                });
            }
        }
        match cached {
            Some(deployment) => Cached::Found(deployment.reading()),
            None => Cached::Missing,
        }
    }

    /// Remembers a count just written through `/scale` (whose response carries the
    /// Deployment's new resourceVersion), so that a reconcile running before the
    /// watch delivers that write does not act on the old count.
    pub fn wrote(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
        resource_version: Option<String>,
    ) {
        let key = ObjectRef::new(name).within(namespace);
        lock(&self.own_writes).insert(
            key,
            OwnWrite {
                replicas,
                resource_version,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
