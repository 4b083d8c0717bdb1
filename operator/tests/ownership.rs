//! One owner per workload, against the local control plane and the real RabbitMQ:
//! two TaskQueues on one Deployment (the older keeps it, the newer holds with a
//! Conflict condition and Warning, then takes over when the older is deleted), and
//! an HPA or a KEDA ScaledObject on the workload (the TaskQueue holds until the
//! garbage collector removes the ScaledObject's HPA).

mod support;

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use support::*;
use warren_operator::TaskQueue;

fn taskqueue_body(name: &str, queue: &str, target: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "queue": queue,
        "scaleTargetRef": {"name": target},
        "minReplicas": 1,
        "maxReplicas": 10,
        "targetBacklogPerReplica": 10,
        "pollInterval": "1s",
        "scaleDown": {"stabilizationWindow": "2s", "policy": "Any"}
    }})
}

/// Notes of the Events of `reason` about the TaskQueue `name`.
async fn notes_about(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    reason: &str,
) -> Vec<String> {
    events(client, namespace)
        .await
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.message)
        .collect()
}

/// Whether the TaskQueue's ScalingActive condition is false for Conflict with a
/// message naming `owner`, and Ready says the same.
async fn in_conflict_with(client: &kube::Client, namespace: &str, name: &str, owner: &str) -> bool {
    let queue = taskqueue(client, namespace, name).await;
    let active = condition(&queue, "ScalingActive");
    let ready = condition(&queue, "Ready");
    active.is_some_and(|(status, reason, message)| {
        status == "False" && reason == "Conflict" && message.contains(owner)
    }) && ready.is_some_and(|(status, reason, _)| status == "False" && reason == "Conflict")
}

async fn scaling_actively(client: &kube::Client, namespace: &str, name: &str) -> bool {
    let queue = taskqueue(client, namespace, name).await;
    condition(&queue, "ScalingActive").is_some_and(|(status, _, _)| status == "True")
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn the_older_taskqueue_keeps_the_workload_and_the_newer_takes_over_when_it_goes() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-owner").await;
    let (busy, idle) = (unique("owner_busy"), unique("owner_idle"));
    create_deployment(&client, &ns.name, "worker", 1).await;
    fill_queue(&busy, 50).await;
    fill_queue(&idle, 0).await;
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);

    // The older one is named to sort after the newer, so that it is the creation
    // time or, in the same second, being the one already scaling, not the name,
    // that decides.
    apply_taskqueue(&client, &ns.name, taskqueue_body("twin-b", &busy, "worker"))
        .await
        .expect("valid TaskQueue");
    eventually(
        Duration::from_secs(30),
        "twin-b scales worker to 5",
        || async { spec_replicas(&client, &ns.name, "worker").await == 5 },
    )
    .await;
    // Its status shows it scaling before twin-a exists: within one second of
    // creation time (their resolution) that is what keeps the workload with it.
    eventually(
        Duration::from_secs(10),
        "twin-b's status: scaling",
        || async { scaling_actively(&client, &ns.name, "twin-b").await },
    )
    .await;
    apply_taskqueue(&client, &ns.name, taskqueue_body("twin-a", &idle, "worker"))
        .await
        .expect("valid TaskQueue");
    eventually(
        Duration::from_secs(20),
        "twin-a in Conflict with twin-b",
        || async {
            in_conflict_with(
                &client,
                &ns.name,
                "twin-a",
                "TaskQueue \"twin-b\", created before this one",
            )
            .await
        },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "a Conflict Warning about twin-a",
        || async {
            !notes_about(&client, &ns.name, "twin-a", "Conflict")
                .await
                .is_empty()
        },
    )
    .await;
    // Each reading re-decides both; twin-a alone would ask for 1.
    operator.wait_reconciles(20, Duration::from_secs(60)).await;
    assert_eq!(
        spec_replicas(&client, &ns.name, "worker").await,
        5,
        "twin-a scaled the workload"
    );
    assert!(
        notes_about(&client, &ns.name, "twin-a", "Scaled")
            .await
            .is_empty()
    );
    assert_eq!(
        notes_about(&client, &ns.name, "twin-b", "Scaled")
            .await
            .len(),
        1
    );
    assert!(scaling_actively(&client, &ns.name, "twin-b").await);
    assert_eq!(
        taskqueue(&client, &ns.name, "twin-a")
            .await
            .status
            .and_then(|s| s.desired_replicas),
        None
    );

    // The hand-over: twin-a takes the workload from the count it has.
    let queues: Api<TaskQueue> = Api::namespaced(client.clone(), &ns.name);
    queues
        .delete("twin-b", &DeleteParams::default())
        .await
        .expect("delete twin-b");
    eventually(Duration::from_secs(20), "twin-a scaling", || async {
        scaling_actively(&client, &ns.name, "twin-a").await
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "twin-a scales worker down to 1",
        || async { spec_replicas(&client, &ns.name, "worker").await == 1 },
    )
    .await;
    let scaled = notes_about(&client, &ns.name, "twin-a", "Scaled").await;
    assert!(scaled.iter().any(|n| n.starts_with("5 -> 1")), "{scaled:?}");
    delete_queue(&busy).await;
    delete_queue(&idle).await;
}

/// A stand-in for KEDA's CRD, enough to create a ScaledObject that owns an HPA
/// as KEDA's operator does; returns the ScaledObjects of `namespace`.
async fn install_scaled_object_crd(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "scaledobjects.keda.sh"},
        "spec": {"group": "keda.sh", "scope": "Namespaced",
            "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    });
    crds.patch(
        "scaledobjects.keda.sh",
        &PatchParams::apply("warren-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .expect("ScaledObject CRD");
    let gvk = GroupVersionKind::gvk("keda.sh", "v1alpha1", "ScaledObject");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "scaledobjects");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    eventually(Duration::from_secs(30), "ScaledObjects served", || async {
        api.list(&Default::default()).await.is_ok()
    })
    .await;
    api
}

fn hpa(name: &str, target: &str, owner: Option<(&str, &str)>) -> HorizontalPodAutoscaler {
    let owners: Vec<Value> = owner
        .map(|(name, uid)| json!({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners},
        // No metrics server runs here, so the HPA controller never moves the count.
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                 "minReplicas": 2, "maxReplicas": 10,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
    }))
    .expect("HPA")
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn an_hpa_or_a_keda_scaled_object_keeps_the_workload() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-hpa").await;
    let scaled_objects = install_scaled_object_crd(&client, &ns.name).await;
    let queue = unique("owner_hpa");
    create_deployment(&client, &ns.name, "web", 2).await;
    fill_queue(&queue, 50).await;
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns.name);
    hpas.create(&PostParams::default(), &hpa("web", "web", None))
        .await
        .expect("HPA");
    let operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    apply_taskqueue(&client, &ns.name, taskqueue_body("orders", &queue, "web"))
        .await
        .expect("valid TaskQueue");
    eventually(
        Duration::from_secs(20),
        "orders in Conflict with the HPA",
        || async {
            in_conflict_with(
                &client,
                &ns.name,
                "orders",
                "HorizontalPodAutoscaler \"web\";",
            )
            .await
        },
    )
    .await;
    operator.wait_reconciles(10, Duration::from_secs(60)).await;
    assert_eq!(
        spec_replicas(&client, &ns.name, "web").await,
        2,
        "scaled under an HPA"
    );

    // KEDA's shape: a ScaledObject owning the HPA that scales the workload.
    let scaled_object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "orders", "namespace": ns.name},
        "spec": {"scaleTargetRef": {"name": "web"}}
    }))
    .expect("ScaledObject");
    let created = scaled_objects
        .create(&PostParams::default(), &scaled_object)
        .await
        .expect("ScaledObject");
    let uid = created.metadata.uid.clone().expect("uid");
    hpas.create(
        &PostParams::default(),
        &hpa("keda-hpa-orders", "web", Some(("orders", &uid))),
    )
    .await
    .expect("KEDA's HPA");
    hpas.delete("web", &DeleteParams::default())
        .await
        .expect("delete the plain HPA");
    eventually(Duration::from_secs(20), "orders in Conflict with the ScaledObject", || async {
        in_conflict_with(&client, &ns.name, "orders", "KEDA ScaledObject \"orders\" (through HorizontalPodAutoscaler \"keda-hpa-orders\")").await
    })
    .await;
    assert_eq!(spec_replicas(&client, &ns.name, "web").await, 2);

    // Deleting the ScaledObject: the garbage collector removes its HPA, and the
    // TaskQueue takes the workload over.
    scaled_objects
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete ScaledObject");
    eventually(
        Duration::from_secs(60),
        "orders scales web to 5",
        || async { spec_replicas(&client, &ns.name, "web").await == 5 },
    )
    .await;
    assert!(scaling_actively(&client, &ns.name, "orders").await);
    delete_queue(&queue).await;
}
