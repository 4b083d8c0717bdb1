//! Which management API a TaskQueue reads and with which credentials: its own
//! `spec.broker` where set, the operator's defaults otherwise. Credentials come from
//! Kubernetes Secrets (or the operator's environment, itself fed from a Secret).

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::broker::{BrokerError, Endpoint, Password};
use crate::crd::TaskQueue;

/// The operator's own broker settings, from its flags and environment.
#[derive(Clone)]
pub struct BrokerDefaults {
    pub management_url: String,
    pub username: String,
    pub password: Password,
}

/// The endpoint `queue` reads, with credentials resolved from its Secrets.
pub async fn endpoint_for(
    client: &Client,
    defaults: &BrokerDefaults,
    queue: &TaskQueue,
    namespace: &str,
) -> Result<Endpoint, BrokerError> {
    let broker = queue.spec.broker.clone().unwrap_or_default();
    let url = broker
        .management_url
        .unwrap_or_else(|| defaults.management_url.clone())
        .trim_end_matches('/')
        .to_owned();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let (username, password) = match &broker.credentials_secret_ref {
        None => (defaults.username.clone(), defaults.password.clone()),
        Some(reference) => {
            let secret = read_secret(&secrets, &reference.name).await?;
            let username = secret_key(&secret, &reference.name, "username")?;
            let password = secret_key(&secret, &reference.name, "password")?;
            (username, Password::new(password))
        }
    };
    let ca_pem = match &broker.ca_secret_ref {
        None => None,
        Some(reference) => {
            let secret = read_secret(&secrets, &reference.name).await?;
            Some(secret_key(&secret, &reference.name, &reference.key)?.into_bytes())
        }
    };
    Ok(Endpoint {
        url,
        username,
        password,
        ca_pem,
    })
}

async fn read_secret(secrets: &Api<Secret>, name: &str) -> Result<Secret, BrokerError> {
    match secrets.get_opt(name).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(BrokerError::Credentials(format!(
            "Secret {name:?} not found"
        ))),
        Err(e) => Err(BrokerError::Credentials(format!(
            "cannot read Secret {name:?}: {e}"
        ))),
    }
}

/// One key of a Secret as text; the error names the Secret and key, never the value.
fn secret_key(secret: &Secret, name: &str, key: &str) -> Result<String, BrokerError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| BrokerError::Credentials(format!("Secret {name:?} has no key {key:?}")))?;
    String::from_utf8(bytes).map_err(|_| {
        BrokerError::Credentials(format!("key {key:?} of Secret {name:?} is not UTF-8"))
    })
}
