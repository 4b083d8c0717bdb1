//! The workload a TaskQueue scales, reached through its `/scale` subresource, so
//! that Deployments, StatefulSets and any custom resource with `/scale` work alike.
//! Deployments' counts are read from a watch cache ([`deployments`]) when one runs.

pub mod deployments;

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use serde_json::json;
use thiserror::Error;

use crate::crd::ScaleTargetRef;
use crate::lock::lock;
use deployments::{Cached, DeploymentCache};

#[derive(Debug, Error)]
pub enum TargetError {
    #[error("scaleTargetRef {kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: String,
        name: String,
        namespace: String,
    },
    #[error(
        "scaleTargetRef apiVersion {api_version:?} kind {kind:?} is not served by the API server"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error(
        "scaleTargetRef {kind} is not namespaced; a TaskQueue can only scale workloads in its own namespace"
    )]
    ClusterScoped { kind: String },
    #[error("scaleTargetRef {kind} {name:?} has no /scale subresource: {reason}")]
    Unscalable {
        kind: String,
        name: String,
        reason: String,
    },
    #[error("cannot discover scaleTargetRef apiVersion {api_version:?} kind {kind:?}: {source}")]
    Discovery {
        api_version: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("Kubernetes API error on {kind} {name:?}: {source}")]
    Api {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl TargetError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "TargetNotFound",
            Self::UnknownKind { .. } | Self::ClusterScoped { .. } => "TargetKindInvalid",
            Self::Unscalable { .. } => "TargetUnscalable",
            Self::Discovery { .. } => "DiscoveryFailed",
            Self::Api { .. } => "TargetApiError",
        }
    }
}

/// A workload's replica counts, from `/scale` or the Deployment cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleReading {
    /// What the workload is asked to run (`spec.replicas`).
    pub desired: i32,
    /// What it runs now (`status.replicas`).
    pub running: i32,
}

/// Where a replica count was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSource {
    /// The Deployment watch cache: no request.
    Cache,
    /// A GET of `/scale`.
    Api,
}

impl ReadSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Api => "api",
        }
    }
}

/// Resolves kinds once per (apiVersion, kind) through discovery.
#[derive(Default)]
pub struct Targets {
    resolved: Mutex<HashMap<(String, String), ApiResource>>,
    deployments: Option<DeploymentCache>,
}

impl Targets {
    /// Targets that read Deployments from `cache` (and everything else, or what
    /// the cache does not hold yet, from `/scale`).
    pub fn with_deployment_cache(cache: DeploymentCache) -> Self {
        Self {
            resolved: Mutex::default(),
            deployments: Some(cache),
        }
    }

    fn deployment_cache(&self, target: &ScaleTargetRef) -> Option<&DeploymentCache> {
        self.deployments.as_ref().filter(|_| target.is_deployment())
    }

    /// The pod selector of a Deployment target, from the cache; `None` for other
    /// kinds or a Deployment the cache does not hold.
    pub fn deployment_selector(&self, namespace: &str, name: &str) -> Option<LabelSelector> {
        self.deployments.as_ref()?.selector(namespace, name)
    }

    pub async fn read(
        &self,
        client: &Client,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<(ScaleReading, ReadSource), TargetError> {
        if let Some(cache) = self.deployment_cache(target)
            && let Cached::Found(reading) = cache.get(namespace, &target.name)
        {
            return Ok((reading, ReadSource::Cache));
        }
        let api = self.api(client, namespace, target).await?;
        let scale = api
            .get_scale(&target.name)
            .await
            .map_err(|e| classify(e, namespace, target))?;
        let reading = ScaleReading {
            desired: scale.spec.and_then(|s| s.replicas).unwrap_or(0),
            running: scale.status.map_or(0, |s| s.replicas),
        };
        Ok((reading, ReadSource::Api))
    }

    pub async fn scale(
        &self,
        client: &Client,
        namespace: &str,
        target: &ScaleTargetRef,
        replicas: i32,
    ) -> Result<(), TargetError> {
        let api = self.api(client, namespace, target).await?;
        let superseded = self
            .deployment_cache(target)
            .and_then(|cache| cache.resource_version(namespace, &target.name));
        let patch = Patch::Merge(json!({"spec": {"replicas": replicas}}));
        api.patch_scale(&target.name, &PatchParams::default(), &patch)
            .await
            .map_err(|e| classify(e, namespace, target))?;
        if let Some(cache) = self.deployment_cache(target) {
            cache.wrote(namespace, &target.name, replicas, superseded);
        }
        Ok(())
    }

    async fn api(
        &self,
        client: &Client,
        namespace: &str,
        target: &ScaleTargetRef,
    ) -> Result<Api<DynamicObject>, TargetError> {
        let key = (target.api_version.clone(), target.kind.clone());
        let cached = lock(&self.resolved).get(&key).cloned();
        let resource = match cached {
            Some(resource) => resource,
            None => {
                let resource = discover(client, target).await?;
                lock(&self.resolved).insert(key, resource.clone());
                resource
            }
        };
        Ok(Api::namespaced_with(client.clone(), namespace, &resource))
    }
}

/// The kind's resource, checked to be namespaced and to have `/scale`.
async fn discover(client: &Client, target: &ScaleTargetRef) -> Result<ApiResource, TargetError> {
    let (group, version) = match target.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", target.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &target.kind);
    let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(|error| {
        let unknown = match &error {
            kube::Error::Api(status) => status.code == 404,
            kube::Error::Discovery(_) => true,
            _ => false,
        };
        if unknown {
            TargetError::UnknownKind {
                api_version: target.api_version.clone(),
                kind: target.kind.clone(),
            }
        } else {
            TargetError::Discovery {
                api_version: target.api_version.clone(),
                kind: target.kind.clone(),
                source: error,
            }
        }
    })?;
    if capabilities.scope != Scope::Namespaced {
        return Err(TargetError::ClusterScoped {
            kind: target.kind.clone(),
        });
    }
    if !capabilities
        .subresources
        .iter()
        .any(|(sub, _)| sub.plural == "scale")
    {
        return Err(TargetError::Unscalable {
            kind: target.kind.clone(),
            name: target.name.clone(),
            reason: format!("the API server lists no {}/scale", resource.plural),
        });
    }
    Ok(resource)
}

fn classify(error: kube::Error, namespace: &str, target: &ScaleTargetRef) -> TargetError {
    match &error {
        // Kinds without /scale are refused at discovery, so a 404 here is the object.
        kube::Error::Api(status) if status.code == 404 => TargetError::NotFound {
            kind: target.kind.clone(),
            name: target.name.clone(),
            namespace: namespace.to_owned(),
        },
        _ => TargetError::Api {
            kind: target.kind.clone(),
            name: target.name.clone(),
            source: error,
        },
    }
}
