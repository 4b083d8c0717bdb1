//! The shape the operator's watch caches share (Deployments, pods, HPAs): a
//! reflector store of stripped objects of the watched namespace(s), filled by a
//! watch that kube-runtime retries with backoff, and whether the store can be
//! trusted right now.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// A store of `K` and the health of the watch that fills it.
pub struct WatchCache<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    /// False from a watch error until the watch delivers again: the store may be
    /// stale meanwhile.
    healthy: Arc<AtomicBool>,
    /// The watch has failed at least once (403 without RBAC, say): it may never list.
    failed: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for WatchCache<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            healthy: Arc::clone(&self.healthy),
            failed: Arc::clone(&self.failed),
        }
    }
}

impl<K> WatchCache<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// The cache and the stream that fills it, each object passed through `strip`
    /// before it is stored. The stream must be polled for the cache to fill (it
    /// ends only with the client); its errors are the watch's, for logging.
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
        strip: fn(&mut K),
    ) -> (
        Self,
        impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) {
        let api: Api<K> = match namespace {
            Some(namespace) => Api::namespaced(client, namespace),
            None => Api::all(client),
        };
        let (store, writer) = reflector::store();
        let cache = Self::over(store);
        let (healthy, failed) = (Arc::clone(&cache.healthy), Arc::clone(&cache.failed));
        let events = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(strip)
            .reflect(writer)
            .map(move |event| {
                healthy.store(event.is_ok(), Ordering::Relaxed);
                if event.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                event
            });
        (cache, events)
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> WatchCache<K> {
    /// A cache over `store`, filled by whoever holds its writer (tests).
    pub fn over(store: Store<K>) -> Self {
        Self {
            store,
            healthy: Arc::new(AtomicBool::new(true)),
            failed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Listed, and the watch is delivering: what the store holds is current.
    pub fn current(&self) -> bool {
        self.listed() && self.healthy.load(Ordering::Relaxed)
    }

    /// Listed, or known to have failed (and so perhaps never to list).
    pub fn settled(&self) -> bool {
        self.listed() || self.failed.load(Ordering::Relaxed)
    }

    fn listed(&self) -> bool {
        self.store.wait_until_ready().now_or_never().is_some()
    }

    /// As after a watch error (tests).
    #[cfg(test)]
    pub fn fail(&self) {
        self.healthy.store(false, Ordering::Relaxed);
        self.failed.store(true, Ordering::Relaxed);
    }
}
