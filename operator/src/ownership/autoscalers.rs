//! A watch of HorizontalPodAutoscalers, kept to what ownership needs: which
//! workload each scales and whether a KEDA ScaledObject owns it.
//!
//! KEDA scales through an HPA it creates for each ScaledObject (and owns), so
//! watching HPAs finds ScaledObjects too, without KEDA's CRDs being installed.

use futures::{Stream, StreamExt};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::claim::{Claimant, Workload};
use crate::watch_cache::WatchCache;

/// The HPAs of the watched namespace(s).
#[derive(Clone)]
pub struct Autoscalers {
    cache: WatchCache<HorizontalPodAutoscaler>,
}

impl Autoscalers {
    /// The cache and the stream that fills it; the stream must be polled for the
    /// cache to fill. Its errors are the watch's, retried with backoff, for logging.
    pub fn watch(
        client: Client,
        namespace: Option<&str>,
    ) -> (
        Self,
        impl Stream<Item = Result<(), watcher::Error>> + Send + 'static,
    ) {
        let (cache, events) = WatchCache::watch(client, namespace, strip);
        (Self { cache }, events.map(|event| event.map(|_| ())))
    }

    /// Listed, or known not to list (403 without RBAC on HPAs, say): either way
    /// ownership can be decided, rather than wait for a listing that may never come.
    pub fn usable(&self) -> bool {
        self.cache.settled()
    }

    /// The HPAs that scale `workload`.
    pub fn scaling(&self, workload: &Workload) -> Vec<Claimant> {
        self.cache
            .store()
            .state()
            .iter()
            .filter(|hpa| target_of(hpa).as_ref() == Some(workload))
            .map(|hpa| claimant(hpa))
            .collect()
    }
}

fn target_of(hpa: &HorizontalPodAutoscaler) -> Option<Workload> {
    let target = &hpa.spec.as_ref()?.scale_target_ref;
    Some(Workload::new(
        &hpa.namespace()?,
        target.api_version.as_deref().unwrap_or(""),
        &target.kind,
        &target.name,
    ))
}

fn claimant(hpa: &HorizontalPodAutoscaler) -> Claimant {
    let scaled_object = hpa
        .owner_references()
        .iter()
        .find(|owner| owner.kind == "ScaledObject" && owner.api_version.starts_with("keda.sh/"))
        .map(|owner| owner.name.clone());
    Claimant::Hpa {
        name: hpa.name_any(),
        scaled_object,
    }
}

/// Keeps the name, namespace, owners and target; drops metrics and status.
fn strip(hpa: &mut HorizontalPodAutoscaler) {
    hpa.metadata = ObjectMeta {
        name: hpa.metadata.name.take(),
        namespace: hpa.metadata.namespace.take(),
        resource_version: hpa.metadata.resource_version.take(),
        owner_references: hpa.metadata.owner_references.take(),
        ..ObjectMeta::default()
    };
    if let Some(spec) = &mut hpa.spec {
        spec.metrics = None;
        spec.behavior = None;
    }
    hpa.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keda_hpa_names_its_scaled_object_and_target() {
        let mut hpa: HorizontalPodAutoscaler = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "keda-hpa-orders", "namespace": "shop", "uid": "1",
                "labels": {"app": "x"},
                "ownerReferences": [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                     "name": "orders", "uid": "2", "controller": true}]
            },
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
                "maxReplicas": 10,
                "metrics": [{"type": "External", "external": {
                    "metric": {"name": "s0-rabbitmq"}, "target": {"type": "AverageValue", "averageValue": "5"}}}]
            },
            "status": {"currentReplicas": 1, "desiredReplicas": 1}
        }))
        .expect("an HPA");
        strip(&mut hpa);
        assert!(hpa.metadata.labels.is_none() && hpa.status.is_none());
        assert_eq!(
            target_of(&hpa),
            Some(Workload::new("shop", "apps/v1", "Deployment", "worker"))
        );
        assert_eq!(
            claimant(&hpa),
            Claimant::Hpa {
                name: "keda-hpa-orders".into(),
                scaled_object: Some("orders".into())
            }
        );
    }
}
