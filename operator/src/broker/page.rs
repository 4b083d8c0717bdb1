//! Decoding one page of a management API listing, apart from the HTTP exchange:
//! pure functions of the body, so that whatever a broker or something in front of
//! it sends is decoded or refused as [`BrokerError::Malformed`], never a panic
//! (property-tested below on arbitrary bytes and JSON).

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{BrokerError, QueueStats};

#[derive(Deserialize)]
struct QueuePage {
    items: Vec<Item>,
    #[serde(default)]
    page_count: usize,
}

#[derive(Deserialize)]
struct Item {
    name: String,
    #[serde(default)]
    messages_ready: Option<i64>,
    #[serde(default)]
    messages_unacknowledged: Option<i64>,
    #[serde(default)]
    consumers: Option<i64>,
    #[serde(default)]
    message_stats: Option<MessageStats>,
}

#[derive(Deserialize, Default)]
struct MessageStats {
    publish_details: Option<Rate>,
    ack_details: Option<Rate>,
}

#[derive(Deserialize)]
struct Rate {
    rate: f64,
}

/// A listing that is paginated (`{"items": [..], "page_count": n}`) or not (`[..]`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Rows<T> {
    Page {
        items: Vec<T>,
        #[serde(default)]
        page_count: usize,
    },
    Bare(Vec<T>),
}

/// The queues of one page of `/api/queues/{vhost}` with their stats, and the
/// listing's page count.
pub(super) fn queue_page(
    body: &[u8],
    url: &str,
) -> Result<(Vec<(String, QueueStats)>, usize), BrokerError> {
    let page: QueuePage = decode(body, url)?;
    let queues = page
        .items
        .into_iter()
        .map(|item| {
            let stats = item.message_stats.unwrap_or_default();
            let queue = QueueStats {
                ready: item.messages_ready.unwrap_or(0),
                unacked: item.messages_unacknowledged.unwrap_or(0),
                consumers: item.consumers,
                publish_rate: stats.publish_details.map(|r| r.rate),
                ack_rate: stats.ack_details.map(|r| r.rate),
            };
            (item.name, queue)
        })
        .collect();
    Ok((queues, page.page_count))
}

/// The rows of one page of a per-vhost listing and its page count; a bare array
/// (3.x's listings that ignore `page`) is the only page.
pub(super) fn rows_page<T: DeserializeOwned>(
    body: &[u8],
    url: &str,
) -> Result<(Vec<T>, usize), BrokerError> {
    Ok(match decode(body, url)? {
        Rows::Page { items, page_count } => (items, page_count),
        Rows::Bare(items) => (items, 1),
    })
}

fn decode<T: DeserializeOwned>(body: &[u8], url: &str) -> Result<T, BrokerError> {
    serde_json::from_slice(body).map_err(|e| BrokerError::Malformed {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    const URL: &str = "http://rabbitmq:15672";

    fn rows(text: &str) -> Result<(usize, usize), BrokerError> {
        rows_page::<Value>(text.as_bytes(), URL).map(|(items, pages)| (items.len(), pages))
    }

    #[test]
    fn paginated_and_bare_listings_both_decode() {
        let page = r#"{"items": [{"name": "a"}, {"name": "b"}], "page_count": 3}"#;
        assert_eq!(rows(page), Ok((2, 3)));
        assert_eq!(rows(r#"[{"name": "a"}]"#), Ok((1, 1)));
        assert!(matches!(
            rows(r#"{"error": "x"}"#),
            Err(BrokerError::Malformed { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // Rows of untyped values follow the nesting as deep as it goes.
        let deep = "[".repeat(100_000);
        let error = rows(&deep).expect_err("malformed");
        assert!(error.to_string().contains("recursion limit"), "{error}");
        let error = queue_page(deep.as_bytes(), URL).expect_err("malformed");
        assert_eq!(error.reason(), "MalformedResponse");
    }

    /// A typed row, so that wrong field types fail inside `Rows<T>` too.
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Row {
        name: String,
        #[serde(default)]
        messages_unacknowledged: i64,
    }

    /// Decoding either succeeds or is refused as malformed; a panic fails the test.
    fn decoded_or_malformed(body: &[u8]) -> Result<(), TestCaseError> {
        for result in [
            queue_page(body, URL).map(drop),
            rows_page::<Row>(body, URL).map(drop),
            rows_page::<Value>(body, URL).map(drop),
        ] {
            if let Err(error) = result {
                prop_assert!(matches!(error, BrokerError::Malformed { .. }), "{error:?}");
                prop_assert_eq!(error.reason(), "MalformedResponse");
            }
        }
        Ok(())
    }

    /// Any JSON, with object keys biased towards the listing's own so that nearly
    /// right pages (a field of the wrong type, a negative page count) come up.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        let key = prop_oneof![
            prop::sample::select(vec![
                "items",
                "page_count",
                "name",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
                "message_stats",
                "publish_details",
                "rate",
            ])
            .prop_map(str::to_owned),
            ".{0,8}",
        ];
        leaf.prop_recursive(5, 96, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            decoded_or_malformed(&body)?;
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value()) {
            decoded_or_malformed(value.to_string().as_bytes())?;
        }

        #[test]
        fn pages_of_arbitrary_items_never_panic(
            items in prop::collection::vec(json_value(), 0..6),
            page_count in json_value(),
        ) {
            let body = json!({"items": items, "page_count": page_count}).to_string();
            decoded_or_malformed(body.as_bytes())?;
        }

        /// Not vacuous: well-formed pages decode to what they say.
        #[test]
        fn well_formed_pages_decode_to_their_items(
            queues in prop::collection::vec((".{0,16}", any::<i64>(), any::<i64>()), 0..20),
            page_count in any::<u32>(),
        ) {
            let items: Vec<Value> = queues
                .iter()
                .map(|(name, ready, unacked)| json!({
                    "name": name, "messages_ready": ready, "messages_unacknowledged": unacked
                }))
                .collect();
            let body = json!({"items": items, "page_count": page_count}).to_string();
            let (decoded, pages) = queue_page(body.as_bytes(), URL).expect("decodes");
            prop_assert_eq!(pages, page_count as usize);
            let got: Vec<(String, i64, i64)> = decoded
                .into_iter()
                .map(|(name, stats)| (name, stats.ready, stats.unacked))
                .collect();
            prop_assert_eq!(got, queues);
        }
    }
}
