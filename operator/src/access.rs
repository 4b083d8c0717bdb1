//! Where broker credentials may go: the operator admin's trust rules, and the pure
//! check of a TaskQueue's `spec.broker` against them.
//!
//! Whoever may create a TaskQueue chooses its `managementUrl`, so the URL is
//! untrusted input. The rules (KEDA's ClusterTriggerAuthentication and the trust
//! boundary of its TriggerAuthentication are the model):
//! - the operator's own credentials go only to its own management URL and to the
//!   URLs its admin allows (`--allowed-management-url`);
//! - any other URL needs credentials of the TaskQueue's own, from a Secret of its
//!   namespace that opts in with a label (checked where Secrets are read);
//! - plain `http://` with credentials goes only to loopback and cluster-local hosts,
//!   to admin-given URLs, or anywhere when the admin allows plain HTTP;
//! - URLs carrying credentials of their own (`http://user:pass@host`) are refused.
//!
//! Refusals happen before any request, so nothing is sent.

use std::net::IpAddr;

use thiserror::Error;
use url::{Host, Url};

/// The admin's rules, from the operator's flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessPolicy {
    /// The operator's own management URL (`--management-url`).
    pub default_url: String,
    /// Where else the operator's own credentials may go (`--allowed-management-url`).
    pub allowed: Vec<UrlPattern>,
    /// Plain `http://` with credentials to any host (`--allow-plain-http`).
    pub plain_http_anywhere: bool,
}

/// An allowed management URL: scheme, host (or `*.` and a domain) and port must
/// match; a path, if given, must prefix the URL's path.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlPattern {
    scheme: String,
    host: HostPattern,
    port: Option<u16>,
    path: String,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com`.
    Subdomains(String),
}

impl std::str::FromStr for UrlPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, url) = match text.split_once("://*.") {
            Some((scheme, rest)) => {
                let url = Url::parse(&format!("{scheme}://wildcard.{rest}"))
                    .map_err(|e| format!("{text:?} is not a URL pattern: {e}"))?;
                let domain = url.host_str().unwrap_or("").trim_start_matches("wildcard.");
                (HostPattern::Subdomains(domain.to_owned()), url)
            }
            None => {
                let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
                (
                    HostPattern::Exact(url.host_str().unwrap_or("").to_owned()),
                    url,
                )
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{text:?}: only http and https URLs"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{text:?}: no credentials in URLs"));
        }
        Ok(Self {
            scheme: url.scheme().to_owned(),
            host,
            port: url.port_or_known_default(),
            path: url.path().trim_end_matches('/').to_owned(),
        })
    }
}

impl UrlPattern {
    fn matches(&self, url: &Url) -> bool {
        let host = url.host_str().unwrap_or("");
        let host_matches = match &self.host {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        };
        let path = url.path();
        let path_matches = self.path.is_empty()
            || path == self.path
            || path.starts_with(&format!("{}/", self.path));
        url.scheme() == self.scheme
            && host_matches
            && url.port_or_known_default() == self.port
            && path_matches
    }
}

/// Whose credentials go with the requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// The operator's own (`--management-username`/`--management-password`).
    Operator,
    /// The TaskQueue's Secret of this name, in its namespace; it must opt in.
    Secret(String),
}

/// What a TaskQueue may use: the URL to read and whose credentials to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Without a trailing slash.
    pub url: String,
    pub credentials: CredentialSource,
}

/// Why a TaskQueue's broker settings are refused; nothing is sent to the URL.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum AccessRefused {
    #[error("managementUrl {url:?} is not a URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "managementUrl must not carry credentials (user:password@); name a Secret in credentialsSecretRef"
    )]
    CredentialsInUrl,
    #[error(
        "managementUrl {url} is not the operator's broker: name a credentialsSecretRef (a Secret of this namespace that opts in), or ask the operator's admin to allow the URL (--allowed-management-url)"
    )]
    CredentialsRequired { url: String },
    #[error(
        "managementUrl {url} is plain http to a host outside the cluster: use https, or ask the operator's admin to allow it (--allowed-management-url or --allow-plain-http)"
    )]
    PlainHttp { url: String },
}

impl AccessRefused {
    /// A short, stable name for metrics labels, condition and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl { .. } => "ManagementUrlInvalid",
            Self::CredentialsInUrl => "CredentialsInUrl",
            Self::CredentialsRequired { .. } => "CredentialsRequired",
            Self::PlainHttp { .. } => "PlainHttpRefused",
        }
    }
}

impl AccessPolicy {
    /// Checks a TaskQueue's management URL (`None`: the operator's own) and Secret
    /// name against the rules.
    pub fn authorize(
        &self,
        management_url: Option<&str>,
        secret: Option<&str>,
    ) -> Result<Grant, AccessRefused> {
        let text = management_url.unwrap_or(&self.default_url);
        let url = Url::parse(text).map_err(|e| AccessRefused::InvalidUrl {
            url: text.to_owned(),
            reason: e.to_string(),
        })?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(AccessRefused::CredentialsInUrl);
        }
        let clean = text.trim_end_matches('/').to_owned();
        let admin_given = management_url.is_none()
            || Url::parse(&self.default_url).is_ok_and(|d| same_place(&d, &url))
            || self.allowed.iter().any(|p| p.matches(&url));
        if !admin_given && url.scheme() == "http" && !self.plain_http_anywhere && !in_cluster(&url)
        {
            return Err(AccessRefused::PlainHttp { url: clean });
        }
        let credentials = match secret {
            Some(name) => CredentialSource::Secret(name.to_owned()),
            None if admin_given => CredentialSource::Operator,
            None => return Err(AccessRefused::CredentialsRequired { url: clean }),
        };
        Ok(Grant {
            url: clean,
            credentials,
        })
    }
}

/// Same scheme, host, port and path (trailing slashes aside).
fn same_place(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path().trim_end_matches('/') == b.path().trim_end_matches('/')
}

/// Loopback, or a name that only resolves inside the cluster: a single label
/// (`rabbitmq`) or a Service name (`*.svc`, `*.svc.cluster.local`).
fn in_cluster(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            name == "localhost"
                || !name.contains('.')
                || name.ends_with(".svc")
                || name.contains(".svc.")
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
