//! Broker credentials go only where the operator's admin allows (issue: a TaskQueue
//! naming a URL used to receive the operator's own credentials, or any Secret of its
//! namespace). Listeners on loopback record every request; TaskQueues try each path
//! to them; the listeners must never see an `Authorization` they should not.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Every request a listener received: `(path, Authorization header)`.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// An HTTP listener that records each request and answers `reply`.
async fn listener(host: &str, reply: String) -> (String, Seen) {
    let socket = TcpListener::bind((host, 0)).await.expect("bind");
    let url = format!("http://{}", socket.local_addr().expect("addr"));
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = socket.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
            let auth = text
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                .map(|l| l["authorization:".len()..].trim().to_owned());
            record.lock().expect("lock").push((path, auth));
            let _ = stream.write_all(reply.as_bytes()).await;
        }
    });
    (url, seen)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `listener` was reached, and every request carried `authorization`.
fn assert_only(seen: &Seen, authorization: &str, listener: &str) {
    let seen = seen.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "{listener} was never reached");
    for (path, auth) in &seen {
        assert_eq!(
            auth.as_deref(),
            Some(authorization),
            "{listener} saw {path} with {auth:?}"
        );
    }
}

fn secret(name: &str, password: &str, opted_in: bool) -> Secret {
    let labels = if opted_in {
        json!({"warren.dev/broker-credentials": "true"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "stringData": {"username": format!("{name}-user"), "password": password}
    }))
    .expect("secret")
}

fn taskqueue(name: &str, broker: Value) -> Value {
    json!({"apiVersion": "warren.dev/v1alpha1", "kind": "TaskQueue", "metadata": {"name": name}, "spec": {
        "queue": "queue_access", "scaleTargetRef": {"name": name}, "minReplicas": 1, "maxReplicas": 3,
        "pollInterval": "1s", "broker": broker}})
}

async fn reachable_reason(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let queue = support::taskqueue(client, namespace, name).await;
    queue
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "BrokerReachable")
        .map(|c| c.reason)
}

#[tokio::test]
#[ignore = "needs the local cluster: run by make test"]
async fn credentials_go_only_where_the_admin_allows() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-access").await;
    let other = TestNamespace::new(&client, "wt-access-other").await;
    // The trap: a server on another loopback host that no credential may reach
    // except the one Secret that opted in.
    let unauthorized =
        "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (trap, trap_seen) = listener("127.0.0.2", unauthorized.to_owned()).await;
    // An allowed URL that redirects to the trap.
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nlocation: {trap}/api/queues\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    );
    let (redirector, redirector_seen) = listener("127.0.0.1", redirect).await;
    let operator_password = "operator-0wn-Secret";
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    for s in [
        secret("labelled", "labelled-Pass-1", true),
        secret("unlabelled", "unlabelled-Pass-2", false),
    ] {
        secrets
            .create(&PostParams::default(), &s)
            .await
            .expect("secret");
    }
    let foreign: Api<Secret> = Api::namespaced(client.clone(), &other.name);
    foreign
        .create(
            &PostParams::default(),
            &secret("foreign", "foreign-Pass-3", true),
        )
        .await
        .expect("secret");

    let operator = OperatorProcess::spawn(
        &ns.name,
        &["--allowed-management-url", &redirector],
        &[
            ("WARREN_MANAGEMENT_USERNAME", "operator"),
            ("WARREN_MANAGEMENT_PASSWORD", operator_password),
        ],
    );
    let cases = [
        (
            "no-secret",
            json!({"managementUrl": trap}),
            "CredentialsRequired",
        ),
        (
            "unlabelled",
            json!({"managementUrl": trap, "credentialsSecretRef": {"name": "unlabelled"}}),
            "SecretNotOptedIn",
        ),
        (
            "ca-unlabelled",
            json!({"managementUrl": trap, "credentialsSecretRef": {"name": "labelled"}, "caSecretRef": {"name": "unlabelled"}}),
            "SecretNotOptedIn",
        ),
        (
            "foreign",
            json!({"managementUrl": trap, "credentialsSecretRef": {"name": "foreign", "namespace": other.name}}),
            "SecretNotFound",
        ),
        (
            "redirected",
            json!({"managementUrl": redirector}),
            "Redirected",
        ),
        // The control: the Secret that opted in does reach the trap.
        (
            "labelled",
            json!({"managementUrl": trap, "credentialsSecretRef": {"name": "labelled"}}),
            "Unauthorized",
        ),
    ];
    for (name, broker, _) in &cases {
        create_deployment(&client, &ns.name, name, 1).await;
        if *name == "foreign" {
            continue;
        }
        apply_taskqueue(&client, &ns.name, taskqueue(name, broker.clone()))
            .await
            .unwrap_or_else(|e| panic!("TaskQueue {name}: {e}"));
    }
    // A Secret of another namespace cannot be named: server-side apply refuses the
    // field, and a plain create prunes it, leaving a name looked up in this namespace.
    let (_, foreign, _) = cases
        .iter()
        .find(|(name, _, _)| *name == "foreign")
        .expect("the foreign case");
    let foreign = taskqueue("foreign", foreign.clone());
    let refused = apply_taskqueue(&client, &ns.name, foreign.clone()).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.message.contains("credentialsSecretRef.namespace")),
        "{refused:?}"
    );
    let resource = kube::api::ApiResource::erase::<warren_operator::TaskQueue>(&());
    let raw: Api<kube::api::DynamicObject> =
        Api::namespaced_with(client.clone(), &ns.name, &resource);
    raw.create(
        &PostParams::default(),
        &serde_json::from_value(foreign).expect("object"),
    )
    .await
    .expect("created with the field pruned");
    // Credentials in the URL are refused by the schema before the operator sees them.
    let userinfo = format!(
        "http://operator:{operator_password}@{}",
        &trap["http://".len()..]
    );
    let refused = apply_taskqueue(
        &client,
        &ns.name,
        taskqueue("userinfo", json!({"managementUrl": userinfo})),
    )
    .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("spec.broker.managementUrl")),
        "{refused:?}"
    );

    for (name, _, reason) in &cases {
        eventually(
            Duration::from_secs(30),
            &format!("{name}: BrokerReachable {reason}"),
            || async {
                reachable_reason(&client, &ns.name, name).await.as_deref() == Some(*reason)
            },
        )
        .await;
    }
    // Several polls of each later, the listeners saw only what they may.
    operator
        .wait_reconciles(2 * cases.len() as u64, Duration::from_secs(30))
        .await;
    assert_only(
        &trap_seen,
        &basic("labelled-user", "labelled-Pass-1"),
        "the trap",
    );
    assert_only(
        &redirector_seen,
        &basic("operator", operator_password),
        "the allowed URL",
    );
    // No password in the log, status or Events.
    let log = operator.log_text();
    let status = serde_json::to_string(
        &Api::<warren_operator::TaskQueue>::namespaced(client.clone(), &ns.name)
            .list(&Default::default())
            .await
            .expect("list")
            .items,
    )
    .expect("json");
    let events = serde_json::to_string(&events(&client, &ns.name).await).expect("json");
    for password in [
        operator_password,
        "labelled-Pass-1",
        "unlabelled-Pass-2",
        "foreign-Pass-3",
    ] {
        for (what, text) in [("log", &log), ("status", &status), ("Events", &events)] {
            assert!(!text.contains(password), "{what} shows a password");
        }
    }
}
