//! Reading queue depths from the RabbitMQ management API: the HTTP client
//! ([`management`]) and the poller that batches every TaskQueue of a broker into
//! one paginated read per interval ([`poller`]), and who holds a queue's
//! deliveries, read before a scale-down ([`occupancy`]). Answers are read with a
//! size cap (`response`) and decoded page by page (`page`).

pub mod management;
pub mod occupancy;
mod page;
pub mod poller;
mod response;
pub mod sample;

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// A broker's management API and the credentials to read it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Base URL without a trailing slash, e.g. `http://rabbitmq:15672`.
    pub url: String,
    pub username: String,
    pub password: Password,
    /// PEM CA bundle for https, when the TaskQueue names one.
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// A password that never prints.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Counts of one queue as the management API reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStats {
    pub ready: i64,
    pub unacked: i64,
    /// Only statistics listings report consumers.
    pub consumers: Option<i64>,
    pub publish_rate: Option<f64>,
    pub ack_rate: Option<f64>,
}

/// Why a queue could not be read. Messages never include credentials.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum BrokerError {
    #[error(
        "the management API at {url} rejected the credentials (401): check the credentials Secret"
    )]
    Unauthorized { url: String },
    #[error(
        "the user has no access to vhost {vhost:?} at {url} (403): grant it the monitoring tag and vhost permissions"
    )]
    Forbidden { url: String, vhost: String },
    #[error("queue {queue:?} does not exist in vhost {vhost:?}")]
    QueueNotFound { vhost: String, queue: String },
    #[error("vhost {vhost:?} does not exist at {url}")]
    VhostNotFound { url: String, vhost: String },
    #[error(
        "the management API at {url} redirects ({status}) to {location}; credentials are not sent after redirects: set managementUrl to the final URL"
    )]
    Redirected {
        url: String,
        status: u16,
        location: String,
    },
    #[error("the management API at {url} answered {status}")]
    Server { url: String, status: u16 },
    #[error("the management API at {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("cannot reach the management API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the management API at {url} sent a malformed answer: {reason}")]
    Malformed { url: String, reason: String },
    /// Not [`Self::Malformed`]: what was read may be valid JSON, and the fix is
    /// different (the URL, or a proxy in front of it, not the broker's answer).
    #[error(
        "the management API at {url} sent more than {} MiB in one answer, far more than a listing warren asks for; reading stopped there: check that managementUrl points at the RabbitMQ management API and not at a proxy or service that streams something else",
        limit / (1024 * 1024)
    )]
    TooLarge { url: String, limit: usize },
    #[error(
        "the management API at {url} claims more than {limit} pages of one listing (500 rows each); reading stopped there: a vhost that large is more than warren reads, or managementUrl points at something that is not the RabbitMQ management API"
    )]
    TooManyPages { url: String, limit: usize },
    #[error("cannot use the CA bundle for {url}: {reason}")]
    CaBundle { url: String, reason: String },
}

impl BrokerError {
    /// A short, stable name for metrics labels, condition and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "Unauthorized",
            Self::Forbidden { .. } => "Forbidden",
            Self::QueueNotFound { .. } => "QueueNotFound",
            Self::VhostNotFound { .. } => "VhostNotFound",
            Self::Redirected { .. } => "Redirected",
            Self::Server { .. } => "ServerError",
            Self::Timeout { .. } => "Timeout",
            Self::Unreachable { .. } => "Unreachable",
            Self::Malformed { .. } => "MalformedResponse",
            Self::TooLarge { .. } => "ResponseTooLarge",
            Self::TooManyPages { .. } => "TooManyPages",
            Self::CaBundle { .. } => "CaBundleInvalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print() {
        let endpoint = Endpoint {
            url: "http://rabbitmq:15672".into(),
            username: "warren".into(),
            password: Password::new("hunter2"),
            ca_pem: None,
        };
        let shown = format!("{endpoint:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }
}
