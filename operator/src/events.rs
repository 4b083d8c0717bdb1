//! Kubernetes Events of the operator. Warnings repeat every poll while a problem
//! lasts, so they go through kube's `Recorder`, which folds repeats into a series.
//! Every scaling decision is an Event of its own, so `kubectl describe tq` lists
//! each one with its reason (the Recorder would fold them into the first note).

use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use tracing::warn;

use crate::crd::TaskQueue;

pub struct Events {
    client: Client,
    recorder: Recorder,
    reporter: Reporter,
}

impl Events {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            client,
            reporter,
        }
    }

    /// A Warning, folded into a series while it repeats.
    pub async fn warn(&self, queue: &TaskQueue, reason: &str, action: &str, note: String) {
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &queue.object_ref(&())).await {
            warn!(%error, "cannot publish an Event");
        }
    }

    /// A Normal `Scaled` Event carrying the decision's reason.
    pub async fn scaled(&self, queue: &TaskQueue, note: String) {
        let Some(namespace) = queue.namespace() else {
            return;
        };
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", queue.name_any(), now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some("Scale".into()),
            reason: Some("Scaled".into()),
            note: Some(note),
            type_: Some("Normal".into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(queue.object_ref(&())),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        if let Err(error) = api.create(&PostParams::default(), &event).await {
            warn!(%error, "cannot publish an Event");
        }
    }
}
