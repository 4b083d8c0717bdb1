//! A watch cache of pods, stripped to what choosing scale-down victims needs:
//! name, labels (to select a target's pods), IP (to match unnamed consumers),
//! the deletion cost, and whether the pod is already going. It also watches the
//! victims of the last scale-downs, to count which were busy when deleted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::plan::{DELETION_COST, TargetPod};
use crate::lock::lock;
use crate::metrics::Metrics;
use crate::watch_cache::WatchCache;

/// How long pods of a scale-down are watched for their deletion.
const VICTIM_WATCH: Duration = Duration::from_secs(120);

/// Pods in the watched namespace(s).
#[derive(Clone)]
pub struct PodCache {
    cache: WatchCache<Pod>,
    /// Scale-downs whose victims are still to be deleted.
    watched: Arc<Mutex<Vec<ScaleDown>>>,
}

/// One scale-down's pods, whether each was busy, and how many of them it removes:
/// the first that many deletions among them are its victims (later ones are
/// someone else's doing).
struct ScaleDown {
    namespace: String,
    pods: HashMap<String, bool>,
    remaining: i32,
    at: Instant,
}

impl ScaleDown {
    /// Whether the deletion of `pod` is one of this scale-down's; if so, whether it was busy.
    fn claim(&mut self, namespace: Option<&str>, pod: Option<&str>) -> Option<bool> {
        if self.remaining <= 0 || namespace != Some(self.namespace.as_str()) {
            return None;
        }
        let busy = self.pods.remove(pod?)?;
        self.remaining -= 1;
        Some(busy)
    }
}

impl PodCache {
    /// The cache and the stream that fills it (poll it for the cache to stay current).
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
        metrics: Arc<Metrics>,
    ) -> (
        Self,
        impl Stream<Item = Result<(), watcher::Error>> + Send + 'static,
    ) {
        let (cache, events) = WatchCache::watch(client, namespace, strip);
        let cache = Self {
            cache,
            watched: Arc::default(),
        };
        let watched = Arc::clone(&cache.watched);
        let events = events.map(move |event| {
            if let Ok(watcher::Event::Apply(pod)) = &event
                && pod.metadata.deletion_timestamp.is_some()
            {
                let (namespace, name) = (
                    pod.metadata.namespace.as_deref(),
                    pod.metadata.name.as_deref(),
                );
                let claimed = lock(&watched)
                    .iter_mut()
                    .find_map(|s| s.claim(namespace, name));
                if let Some(busy) = claimed {
                    metrics.victim(busy);
                }
            }
            event.map(|_| ())
        });
        (cache, events)
    }

    /// The live (not terminating) pods `selector` selects in `namespace`, or
    /// `None` while the cache cannot be trusted.
    pub fn pods_of(&self, namespace: &str, selector: &Selector) -> Option<Vec<TargetPod>> {
        if !self.cache.current() {
            return None;
        }
        let empty = BTreeMap::new();
        let mut pods: Vec<TargetPod> = self
            .cache
            .store()
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
            .map(|p| TargetPod {
                name: p.metadata.name.clone().unwrap_or_default(),
                ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
                cost: cost_of(&p.metadata),
            })
            .collect();
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        Some(pods)
    }

    /// Whether the cache shows every pod of `costs` with its cost: the watch has
    /// caught up with the writes, as the ReplicaSet controller's will have.
    pub fn shows(&self, namespace: &str, costs: &[(String, i32)]) -> bool {
        costs.iter().all(|(name, cost)| {
            let key = ObjectRef::new(name).within(namespace);
            self.cache
                .store()
                .get(&key)
                .is_none_or(|p| cost_of(&p.metadata).unwrap_or(0) == *cost)
        })
    }

    /// Counts, as the next `removed` of `pods` are deleted, which were busy.
    pub fn watch_victims(
        &self,
        namespace: &str,
        pods: impl IntoIterator<Item = (String, bool)>,
        removed: i32,
    ) {
        let mut watched = lock(&self.watched);
        watched.retain(|s| s.remaining > 0 && s.at.elapsed() < VICTIM_WATCH);
        // A newer scale-down of the same pods supersedes the older one.
        let pods: HashMap<String, bool> = pods.into_iter().collect();
        watched
            .retain(|s| s.namespace != namespace || !s.pods.keys().any(|p| pods.contains_key(p)));
        watched.push(ScaleDown {
            namespace: namespace.to_owned(),
            pods,
            remaining: removed,
            at: Instant::now(),
        });
    }
}

fn cost_of(metadata: &ObjectMeta) -> Option<i32> {
    metadata
        .annotations
        .as_ref()?
        .get(DELETION_COST)?
        .parse()
        .ok()
}

/// Keeps name, namespace, labels, the deletion cost, the deletion timestamp,
/// resourceVersion and the pod IP; drops spec and the rest of status.
fn strip(pod: &mut Pod) {
    let metadata = std::mem::take(&mut pod.metadata);
    let cost = cost_of(&metadata);
    pod.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        labels: metadata.labels,
        resource_version: metadata.resource_version,
        deletion_timestamp: metadata.deletion_timestamp,
        annotations: cost.map(|c| BTreeMap::from([(DELETION_COST.to_owned(), c.to_string())])),
        ..ObjectMeta::default()
    };
    pod.spec = None;
    pod.status = pod.status.take().map(|s| PodStatus {
        pod_ip: s.pod_ip,
        ..PodStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;

    #[test]
    fn strips_all_but_what_victim_choice_needs() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w-1", "namespace": "ns", "labels": {"app": "w"},
                         "annotations": {DELETION_COST: "3", "other": "x"},
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "w", "image": "x"}]},
            "status": {"podIP": "10.88.0.5", "phase": "Running"}
        }))
        .expect("pod");
        strip(&mut pod);
        assert!(pod.spec.is_none());
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(cost_of(&pod.metadata), Some(3));
        assert_eq!(
            pod.metadata.annotations.as_ref().map(BTreeMap::len),
            Some(1)
        );
        assert_eq!(
            pod.status.and_then(|s| s.pod_ip).as_deref(),
            Some("10.88.0.5")
        );
    }

    #[test]
    fn a_scale_down_claims_only_as_many_deletions_as_it_removes() {
        let mut scale_down = ScaleDown {
            namespace: "ns".into(),
            pods: HashMap::from([
                ("idle".into(), false),
                ("busy".into(), true),
                ("idle-2".into(), false),
            ]),
            remaining: 2,
            at: Instant::now(),
        };
        assert_eq!(scale_down.claim(Some("other"), Some("idle")), None);
        assert_eq!(scale_down.claim(Some("ns"), Some("stranger")), None);
        assert_eq!(scale_down.claim(Some("ns"), Some("busy")), Some(true));
        assert_eq!(
            scale_down.claim(Some("ns"), Some("busy")),
            None,
            "counted once"
        );
        assert_eq!(scale_down.claim(Some("ns"), Some("idle")), Some(false));
        // Its two victims are counted: deleting the rest later is not its doing.
        assert_eq!(scale_down.claim(Some("ns"), Some("idle-2")), None);
    }

    #[test]
    fn selects_live_pods_of_the_target() {
        let (store, mut writer) = reflector::store::<Pod>();
        let cache = PodCache {
            cache: WatchCache::over(store),
            watched: Arc::default(),
        };
        let pod = |name: &str, app: &str, deleting: bool| -> Pod {
            let mut meta =
                serde_json::json!({"name": name, "namespace": "ns", "labels": {"app": app}});
            if deleting {
                meta["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
            }
            serde_json::from_value(serde_json::json!({"metadata": meta})).expect("pod")
        };
        let selector: Selector = [("app", "w")].into_iter().collect();
        assert_eq!(cache.pods_of("ns", &selector), None, "not synced");
        writer.apply_watcher_event(&watcher::Event::Init);
        for p in [
            pod("w-2", "w", false),
            pod("w-1", "w", false),
            pod("x-1", "x", false),
            pod("w-3", "w", true),
        ] {
            writer.apply_watcher_event(&watcher::Event::InitApply(p));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        let names: Vec<String> = cache
            .pods_of("ns", &selector)
            .expect("synced")
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["w-1", "w-2"]);
        assert!(cache.shows("ns", &[("w-1".into(), 0)]));
        assert!(!cache.shows("ns", &[("w-1".into(), 2)]));
    }
}
