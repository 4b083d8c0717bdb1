//! Which management API a TaskQueue reads and with which credentials: its own
//! `spec.broker` where set and allowed ([`crate::access`]), the operator's own
//! otherwise. Credentials come from Kubernetes Secrets that opt in with a label (or
//! the operator's environment, itself fed from a Secret).
//!
//! Secrets are kept for [`SECRET_TTL`], so that TaskQueues reconciled on every poll
//! do not GET their Secret each time; a Secret the broker rejected is read again at
//! the next reconciliation, so a fixed password takes effect within two polls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use thiserror::Error;

use crate::access::{AccessPolicy, AccessRefused, CredentialSource};
use crate::broker::{Endpoint, Password};
use crate::crd::TaskQueue;
use crate::lock::lock;

/// Why a TaskQueue's endpoint or credentials cannot be used. Messages name
/// Secrets and keys, never values.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum AccessError {
    #[error(transparent)]
    Refused(#[from] AccessRefused),
    #[error(
        "Secret {name:?} is not labelled {label}: only Secrets that opt in are used for broker access"
    )]
    NotOptedIn { name: String, label: SecretLabel },
    #[error("Secret {name:?} not found in namespace {namespace:?}")]
    SecretNotFound { namespace: String, name: String },
    #[error("cannot read Secret {name:?}: {reason}")]
    SecretUnreadable { name: String, reason: String },
    #[error("Secret {name:?} has no key {key:?}")]
    KeyMissing { name: String, key: String },
    #[error("key {key:?} of Secret {name:?} is not UTF-8 text")]
    KeyNotText { name: String, key: String },
}

impl AccessError {
    /// A short, stable name for metrics labels, condition and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused(refused) => refused.reason(),
            Self::NotOptedIn { .. } => "SecretNotOptedIn",
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::SecretUnreadable { .. } => "SecretUnreadable",
            Self::KeyMissing { .. } | Self::KeyNotText { .. } => "CredentialsInvalid",
        }
    }
}

/// The operator's own broker settings and trust rules, from its flags and environment.
#[derive(Clone)]
pub struct BrokerAccess {
    /// Where credentials may go; `policy.default_url` is the operator's broker.
    pub policy: AccessPolicy,
    pub username: String,
    pub password: Password,
    /// The label a Secret needs to be used; `None` accepts any Secret.
    pub secret_label: Option<SecretLabel>,
}

/// `key=value` (or `key`, any value) a Secret must carry to be read for broker access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretLabel {
    pub key: String,
    pub value: Option<String>,
}

impl std::str::FromStr for SecretLabel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (key, value) = match text.split_once('=') {
            Some((key, value)) => (key, Some(value.to_owned())),
            None => (text, None),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("{text:?} is not a label: use key=value or key"));
        }
        Ok(Self {
            key: key.to_owned(),
            value,
        })
    }
}

impl std::fmt::Display for SecretLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}={value}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

impl SecretLabel {
    fn carried_by(&self, secret: &Secret) -> bool {
        let value = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(&self.key));
        match (&self.value, value) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(wanted), Some(value)) => wanted == value,
        }
    }
}

/// How long a Secret read is reused before it is read again.
pub const SECRET_TTL: Duration = Duration::from_secs(60);

/// A Secret's namespace and name.
type SecretKey = (String, String);

/// Secrets read recently, with when they were read; values only, no metadata.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<SecretKey, (Instant, Arc<Secret>)>>,
}

impl SecretCache {
    async fn get(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Secret>, AccessError> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some((read_at, secret)) = lock(&self.entries).get(&key)
            && read_at.elapsed() < SECRET_TTL
        {
            return Ok(Arc::clone(secret));
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        // Errors are not kept: a Secret created a moment later is seen at once.
        let secret = read_secret(&secrets, namespace, name).await?;
        let secret = Arc::new(Secret {
            metadata: kube::api::ObjectMeta {
                labels: secret.metadata.labels,
                ..Default::default()
            },
            data: secret.data,
            string_data: secret.string_data,
            ..Secret::default()
        });
        lock(&self.entries).insert(key, (Instant::now(), Arc::clone(&secret)));
        Ok(secret)
    }

    /// The Secret, if it carries the opt-in label.
    async fn get_opted_in(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        access: &BrokerAccess,
    ) -> Result<Arc<Secret>, AccessError> {
        let secret = self.get(client, namespace, name).await?;
        match &access.secret_label {
            Some(label) if !label.carried_by(&secret) => Err(AccessError::NotOptedIn {
                name: name.to_owned(),
                label: label.clone(),
            }),
            _ => Ok(secret),
        }
    }

    /// Drops the Secrets `queue` reads if they were read before `rejected_at` (when
    /// the broker rejected them), so the next reconciliation reads them again.
    pub fn forget_read_before(&self, queue: &TaskQueue, namespace: &str, rejected_at: Instant) {
        let Some(broker) = &queue.spec.broker else {
            return;
        };
        let names = [
            broker.credentials_secret_ref.as_ref().map(|r| &r.name),
            broker.ca_secret_ref.as_ref().map(|r| &r.name),
        ];
        let mut entries = lock(&self.entries);
        for name in names.into_iter().flatten() {
            let key = (namespace.to_owned(), name.clone());
            if entries
                .get(&key)
                .is_some_and(|(read_at, _)| *read_at < rejected_at)
            {
                entries.remove(&key);
            }
        }
    }

    /// How many Secrets are held.
    pub fn count(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Drops Secrets not read within the TTL (the janitor calls this).
    pub fn expire(&self) {
        lock(&self.entries).retain(|_, (read_at, _)| read_at.elapsed() < SECRET_TTL);
    }
}

/// The endpoint `queue` reads, with credentials resolved from its Secrets; refused,
/// before anything is sent, where the admin's rules do not allow it.
pub async fn endpoint_for(
    client: &Client,
    secrets: &SecretCache,
    access: &BrokerAccess,
    queue: &TaskQueue,
    namespace: &str,
) -> Result<Endpoint, AccessError> {
    let broker = queue.spec.broker.clone().unwrap_or_default();
    let grant = access.policy.authorize(
        broker.management_url.as_deref(),
        broker
            .credentials_secret_ref
            .as_ref()
            .map(|r| r.name.as_str()),
    )?;
    let (username, password) = match &grant.credentials {
        CredentialSource::Operator => (access.username.clone(), access.password.clone()),
        CredentialSource::Secret(name) => {
            let secret = secrets
                .get_opted_in(client, namespace, name, access)
                .await?;
            let username = secret_key(&secret, name, "username")?;
            let password = secret_key(&secret, name, "password")?;
            (username, Password::new(password))
        }
    };
    let ca_pem = match &broker.ca_secret_ref {
        None => None,
        Some(reference) => {
            let secret = secrets
                .get_opted_in(client, namespace, &reference.name, access)
                .await?;
            Some(secret_key(&secret, &reference.name, &reference.key)?.into_bytes())
        }
    };
    Ok(Endpoint {
        url: grant.url,
        username,
        password,
        ca_pem,
    })
}

async fn read_secret(
    secrets: &Api<Secret>,
    namespace: &str,
    name: &str,
) -> Result<Secret, AccessError> {
    match secrets.get_opt(name).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(AccessError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        Err(e) => Err(AccessError::SecretUnreadable {
            name: name.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// One key of a Secret as text; the error names the Secret and key, never the value.
fn secret_key(secret: &Secret, name: &str, key: &str) -> Result<String, AccessError> {
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
        .ok_or_else(|| AccessError::KeyMissing {
            name: name.to_owned(),
            key: key.to_owned(),
        })?;
    String::from_utf8(bytes).map_err(|_| AccessError::KeyNotText {
        name: name.to_owned(),
        key: key.to_owned(),
    })
}
