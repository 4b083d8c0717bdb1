//! The RabbitMQ management API client: one paginated, column-filtered listing of
//! a vhost's queues, restricted by a name regex to the queues that are wanted.
//! Reads through the per-vhost endpoint, whose fields agree across 3.10 to 4.x.
//!
//! Two kinds of listing: [`ListMode::Totals`] reads the queues' own message counts
//! (`disable_stats=true&enable_queue_totals=true`), current when read;
//! [`ListMode::Stats`] goes through the statistics database for consumers and
//! rates, whose counts lag seconds behind (figures in docs/benchmarks.md).
//!
//! Each page is fetched within the timeout and at most [`MAX_BODY_BYTES`]
//! (`response`), then decoded (`page`).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::page::{queue_page, rows_page};
use super::{BrokerError, Endpoint, QueueStats, response};

pub use super::response::MAX_BODY_BYTES;

/// The management API's largest page.
pub const PAGE_SIZE: usize = 500;
/// Most pages read of one listing: 50,000 queues or consumers in one vhost.
pub const MAX_PAGES: usize = 100;
const MAX_FILTER_LEN: usize = 4000;
const STATS_COLUMNS: &str = "name,messages_ready,messages_unacknowledged,consumers,\
message_stats.publish_details.rate,message_stats.ack_details.rate";
const TOTALS_COLUMNS: &str = "name,messages_ready,messages_unacknowledged";

/// Which listing to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListMode {
    /// Fresh ready/unacked counts only.
    Totals,
    /// Counts (lagging), consumers and rates.
    Stats,
}

pub struct ManagementClient {
    /// Built once; its error, if building failed, is reported on every read.
    http: Result<reqwest::Client, String>,
    timeout: Duration,
}

/// Which per-vhost listing [`ManagementClient::rows`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsPath {
    Consumers,
    Channels,
}

/// The outcome of one listing: stats of the queues found, or why nothing could be read.
pub type Listing = Result<HashMap<String, QueueStats>, BrokerError>;

impl ManagementClient {
    pub fn new(timeout: Duration) -> Self {
        Self {
            http: http_client().build().map_err(|e| e.to_string()),
            timeout,
        }
    }

    /// Lists `queues` of `vhost` page by page; returns the stats of those found and
    /// how many HTTP requests it took.
    pub async fn list(
        &self,
        endpoint: &Endpoint,
        vhost: &str,
        queues: &BTreeSet<String>,
        mode: ListMode,
    ) -> (Listing, usize) {
        let client = match self.client_for(endpoint) {
            Ok(client) => client,
            Err(error) => return (Err(error), 0),
        };
        // Past a few thousand characters the URL outgrows the broker's request line
        // limit; listing the whole vhost page by page is then the cheaper read anyway.
        let filter = Some(name_regex(queues)).filter(|r| r.len() <= MAX_FILTER_LEN);
        let mut found = HashMap::new();
        let mut page = 1;
        loop {
            let url = format!("{}/api/queues/{}", endpoint.url, encode(vhost));
            let mut request = self.page_request(&client, &url, endpoint, page);
            request = match mode {
                ListMode::Totals => request.query(&[
                    ("columns", TOTALS_COLUMNS),
                    ("disable_stats", "true"),
                    ("enable_queue_totals", "true"),
                ]),
                // Rates over the last 5 s increment: without these the broker's
                // `rate` reads 0 between its queue emissions when statistics are
                // collected more often than its 5 s samples (1 s here: 20/s read
                // as 20 one second in five, 0 the rest).
                ListMode::Stats => request.query(&[
                    ("columns", STATS_COLUMNS),
                    ("msg_rates_age", "10"),
                    ("msg_rates_incr", "5"),
                ]),
            };
            if let Some(filter) = &filter {
                request = request.query(&[("name", filter.as_str()), ("use_regex", "true")]);
            }
            let read = response::fetch(request, &endpoint.url, vhost, self.timeout).await;
            let (items, page_count) = match read.and_then(|body| queue_page(&body, &endpoint.url)) {
                Ok(parsed) => parsed,
                Err(error) => return (Err(error), page),
            };
            found.extend(items.into_iter().filter(|(name, _)| queues.contains(name)));
            match next_page(page, page_count, &endpoint.url) {
                Ok(Some(next)) => page = next,
                Ok(None) => return (Ok(found), page),
                Err(error) => return (Err(error), page),
            }
        }
    }

    /// GETs `path` of `vhost` (`consumers` reads `/api/consumers/{vhost}`,
    /// `channels` reads `/api/vhosts/{vhost}/channels`) page by page with `columns`.
    /// Endpoints that do not paginate (3.x's per-vhost listings ignore `page`)
    /// answer with a bare array, taken as the only page. Returns the rows and the
    /// requests made.
    pub async fn rows<T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        vhost: &str,
        path: RowsPath,
        columns: &str,
    ) -> (Result<Vec<T>, BrokerError>, usize) {
        let client = match self.client_for(endpoint) {
            Ok(client) => client,
            Err(error) => return (Err(error), 0),
        };
        let url = match path {
            RowsPath::Consumers => format!("{}/api/consumers/{}", endpoint.url, encode(vhost)),
            RowsPath::Channels => format!("{}/api/vhosts/{}/channels", endpoint.url, encode(vhost)),
        };
        let mut rows = Vec::new();
        let mut page = 1;
        loop {
            let request = self
                .page_request(&client, &url, endpoint, page)
                .query(&[("columns", columns)]);
            let read = response::fetch(request, &endpoint.url, vhost, self.timeout).await;
            let (items, page_count) = match read.and_then(|body| rows_page(&body, &endpoint.url)) {
                Ok(parsed) => parsed,
                Err(error) => return (Err(error), page),
            };
            rows.extend(items);
            match next_page(page, page_count, &endpoint.url) {
                Ok(Some(next)) => page = next,
                Ok(None) => return (Ok(rows), page),
                Err(error) => return (Err(error), page),
            }
        }
    }

    /// A GET of one page of a listing, with the endpoint's credentials and timeout.
    fn page_request(
        &self,
        client: &reqwest::Client,
        url: &str,
        endpoint: &Endpoint,
        page: usize,
    ) -> reqwest::RequestBuilder {
        client
            .get(url)
            .basic_auth(&endpoint.username, Some(endpoint.password.expose()))
            .timeout(self.timeout)
            .query(&[
                ("page", page.to_string()),
                ("page_size", PAGE_SIZE.to_string()),
            ])
    }

    fn client_for(&self, endpoint: &Endpoint) -> Result<reqwest::Client, BrokerError> {
        let Some(pem) = &endpoint.ca_pem else {
            return self
                .http
                .clone()
                .map_err(|reason| BrokerError::Unreachable {
                    url: endpoint.url.clone(),
                    reason: format!("cannot build an HTTP client: {reason}"),
                });
        };
        let certificate =
            reqwest::Certificate::from_pem(pem).map_err(|e| BrokerError::CaBundle {
                url: endpoint.url.clone(),
                reason: format!("not PEM: {e}"),
            })?;
        http_client()
            .add_root_certificate(certificate)
            .build()
            .map_err(|e| BrokerError::CaBundle {
                url: endpoint.url.clone(),
                reason: e.to_string(),
            })
    }
}

/// The page after `page` of `page_count`, `None` after the last; past
/// [`MAX_PAGES`] an error, so that a server claiming ever more pages cannot keep
/// the poller reading (each page is capped, their number must be too).
fn next_page(page: usize, page_count: usize, url: &str) -> Result<Option<usize>, BrokerError> {
    if page >= page_count {
        return Ok(None);
    }
    if page >= MAX_PAGES {
        return Err(BrokerError::TooManyPages {
            url: url.to_owned(),
            limit: MAX_PAGES,
        });
    }
    Ok(Some(page + 1))
}

/// Redirects are never followed: the credentials were granted to one URL
/// ([`crate::access`]), not to wherever it points.
fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none())
}

/// `^(a|b|c)$` with regex metacharacters escaped, so only the wanted queues are listed.
fn name_regex(queues: &BTreeSet<String>) -> String {
    let escaped: Vec<String> = queues.iter().map(|q| escape_regex(q)).collect();
    format!("^({})$", escaped.join("|"))
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes a vhost for a path segment (`/` is `%2F`).
fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_matches_only_the_named_queues() {
        let queues: BTreeSet<String> = ["queue_a", "a.b+c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(name_regex(&queues), r"^(a\.b\+c|queue_a)$");
    }

    #[test]
    fn pages_are_read_up_to_the_limit() {
        assert_eq!(next_page(1, 3, "u").expect("ok"), Some(2));
        assert_eq!(next_page(3, 3, "u").expect("ok"), None);
        assert_eq!(next_page(1, 0, "u").expect("ok"), None, "an empty listing");
        assert_eq!(
            next_page(MAX_PAGES - 1, usize::MAX, "u").expect("ok"),
            Some(MAX_PAGES)
        );
        let error = next_page(MAX_PAGES, usize::MAX, "u").expect_err("too many");
        assert_eq!(error.reason(), "TooManyPages");
    }

    #[test]
    fn vhosts_are_path_encoded() {
        assert_eq!(encode("/"), "%2F");
        assert_eq!(encode("my vhost"), "my%20vhost");
        assert_eq!(encode("prod"), "prod");
    }
}
