//! Property tests for `TaskMessage::decode` (issue #12), the decoder every delivery
//! a worker takes goes through: arbitrary header maps, bodies and content types,
//! and valid messages with one header mistyped or the body cut short. For any input
//! it must return a `DecodeError` naming the problem, never panic; a valid message
//! must survive encoding. rpc:// results are in `result_fuzz_tests.rs`, dead-letter
//! headers and the AMQP table mapping in `header_fuzz_tests.rs`.
//!
//! Instead of only asserting "no panic", each property carries a small oracle of
//! what the decoder should accept, so a decoder that turned lenient (or strict) in
//! one corner fails here too. Case counts keep the protocol tests to seconds in a
//! debug build.

use lapin::types::{AMQPValue, FieldArray, FieldTable};
use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};

use crate::amqp::{json_to_table, table_to_json};
use crate::{CONTENT_TYPE_JSON, DecodeError, IncomingMessage, TaskMessage, TaskResult};

/// Any JSON value, a few levels deep (serde_json's own limit is tested separately).
pub(crate) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // JSON has no NaN or infinity, so neither can arrive in a body.
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every header `TaskMessage::decode` reads; the others (`lang`, `argsrepr`...) it
/// ignores, whatever their type.
const READ_HEADERS: [&str; 11] = [
    "task",
    "id",
    "eta",
    "expires",
    "root_id",
    "parent_id",
    "group",
    "origin",
    "retries",
    "timelimit",
    "ignore_result",
];

/// The oracle: whether decode may accept `value` (`None` = absent) under `name`.
fn header_ok(name: &str, value: Option<&Value>, has_correlation_id: bool) -> bool {
    let is_limit = |v: &Value| {
        v.is_null()
            || v.as_f64()
                .is_some_and(|s| std::time::Duration::try_from_secs_f64(s).is_ok())
    };
    match (name, value) {
        ("task", None | Some(Value::Null)) => false,
        ("id", None | Some(Value::Null)) => has_correlation_id,
        (_, None | Some(Value::Null)) => true,
        ("retries", Some(v)) => v.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
        ("timelimit", Some(Value::Array(l))) => l.len() == 2 && l.iter().all(is_limit),
        ("timelimit", Some(_)) => false,
        ("ignore_result", Some(v)) => v.is_boolean(),
        ("id", Some(v)) => v.as_str().is_some_and(|id| id.len() <= 255),
        (_, Some(v)) => v.is_string(),
    }
}

/// The oracle for the body: `[args, kwargs, embed]`, args/kwargs possibly null.
fn body_ok(body: &Value) -> bool {
    matches!(body.as_array().map(Vec::as_slice),
        Some([args, kwargs, _]) if (args.is_array() || args.is_null())
            && (kwargs.is_object() || kwargs.is_null()))
}

fn decode(headers: &Map<String, Value>, body: &[u8]) -> Result<TaskMessage, DecodeError> {
    TaskMessage::decode(IncomingMessage {
        headers,
        body,
        content_type: Some(CONTENT_TYPE_JSON),
        correlation_id: None,
        reply_to: None,
    })
}

/// Asserts that `err` is about header `name` and says so in words.
fn assert_names_header(err: &DecodeError, name: &str) {
    let named = match err {
        DecodeError::MalformedHeader { name, .. } | DecodeError::MissingHeader(name) => name,
        other => panic!("expected a header error for {name:?}, got {other}"),
    };
    assert_eq!(*named, name, "{err}");
    assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
}

prop_compose! {
    /// Any task message decode must accept (reply_to non-empty: empty reads as none).
    fn valid_task()(
        (id, task, root_id) in (".{0,20}", ".{0,20}", ".{0,20}"),
        args in prop::collection::vec(json_value(), 0..4),
        kwargs in prop::collection::btree_map(".{0,8}", json_value(), 0..4),
        retries in any::<u32>(),
        strings in prop::array::uniform5(proptest::option::of(".{0,20}")),
        timelimit in (proptest::option::of(0.0..1e9f64), proptest::option::of(0.0..1e9f64)),
        ignore_result in any::<bool>(),
        reply_to in proptest::option::of(".{1,20}"),
        embed in json_value(),
    ) -> TaskMessage {
        let [eta, expires, parent_id, group, origin] = strings;
        TaskMessage {
            id, task, root_id, args, kwargs: kwargs.into_iter().collect(), retries, eta,
            expires, timelimit, parent_id, group, origin, ignore_result, reply_to, embed,
        }
    }
}

fn round_trip(task: &TaskMessage, headers: &Map<String, Value>) -> TaskMessage {
    let body = task.body();
    TaskMessage::decode(IncomingMessage {
        headers,
        body: &body,
        content_type: None,
        correlation_id: None,
        reply_to: task.reply_to.as_deref(),
    })
    .expect("a valid task decodes")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// encode -> decode is the identity, both from the header map and after the
    /// trip through an AMQP table that a real delivery takes.
    #[test]
    fn any_valid_task_round_trips(task in valid_task()) {
        prop_assert_eq!(&round_trip(&task, &task.headers()), &task);
        let wire = table_to_json(&json_to_table(&task.headers()));
        prop_assert_eq!(&round_trip(&task, &wire), &task);
    }

    /// Arbitrary header maps and content types: decode agrees with the oracle, and
    /// an error names the content type or one of the headers the oracle rejects.
    #[test]
    fn arbitrary_headers_are_accepted_or_named(
        task in ".{0,10}",
        entries in prop::collection::vec((
            prop_oneof![prop::sample::select(&READ_HEADERS[..]).prop_map(str::to_owned), ".{0,8}"],
            prop_oneof![
                json_value(),
                Just(json!(3)),
                Just(json!([1.5, null])),
                Just(json!(true)),
                // Around the 255-byte limit of an id.
                "[a-z]{250,260}".prop_map(Value::String),
            ],
        ), 0..8),
        correlation_id in proptest::option::of(".{0,8}"),
        content_type in proptest::option::of(prop_oneof![
            Just(CONTENT_TYPE_JSON.to_owned()),
            Just("application/x-python-serialize".to_owned()),
            ".{0,30}",
        ]),
    ) {
        let mut headers = Map::new();
        headers.insert("task".into(), json!(task));
        headers.extend(entries);
        let bad: Vec<&str> = READ_HEADERS.into_iter()
            .filter(|n| !header_ok(n, headers.get(*n), correlation_id.is_some()))
            .collect();
        let result = TaskMessage::decode(IncomingMessage {
            headers: &headers, body: b"[[], {}, {}]", content_type: content_type.as_deref(),
            correlation_id: correlation_id.as_deref(), reply_to: None,
        });
        // Checked first: a pickled or YAML body is refused before its headers matter.
        if let Some(other) = content_type.filter(|ct| ct != CONTENT_TYPE_JSON) {
            let err = result.expect_err("only JSON is read");
            prop_assert!(matches!(err, DecodeError::UnsupportedContentType(_)), "{}", err);
            prop_assert!(err.to_string().contains(&format!("{other:?}")), "{}", err);
            return Ok(());
        }
        match result {
            Ok(decoded) => {
                prop_assert!(bad.is_empty(), "accepted bad headers {:?}: {:?}", bad, headers);
                prop_assert_eq!(Some(&json!(decoded.task)), headers.get("task"));
                // What the worker does next with the id must not panic either.
                let _ = crate::amqp::result_properties(&decoded.id, FieldTable::default());
            }
            Err(err) => {
                let named = match &err {
                    DecodeError::MalformedHeader { name, .. } | DecodeError::MissingHeader(name) => *name,
                    other => panic!("not a header error: {other}"),
                };
                prop_assert!(bad.contains(&named), "{} but the oracle rejects {:?}", err, bad);
                prop_assert!(err.to_string().contains(&format!("{named:?}")), "{}", err);
                // Quotes of the offending value are capped (see task::shown).
                prop_assert!(err.to_string().len() < 300, "{}", err);
            }
        }
    }

    /// A valid task with one header it reads replaced by a value of the wrong type.
    #[test]
    fn one_mistyped_header_is_named(
        task in valid_task(),
        name in prop::sample::select(&READ_HEADERS[..]),
        value in prop_oneof![
            json_value(),
            prop::sample::select(vec![
                json!(-1), json!(u64::from(u32::MAX) + 1), json!(1.5), json!("3"), json!("false"),
                json!(0), json!([1e300, null]), json!([-1, null]), json!([1]), json!([]),
            ]),
        ],
    ) {
        prop_assume!(!header_ok(name, Some(&value), false));
        let mut headers = task.headers();
        headers.insert(name.to_owned(), value);
        let err = decode(&headers, &task.body()).expect_err("a mistyped header must fail");
        assert_names_header(&err, name);
    }

    /// Bodies: arbitrary bytes, arbitrary JSON, and a valid body cut short.
    #[test]
    fn arbitrary_bodies_are_accepted_or_explained(
        task in valid_task(),
        json in json_value(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        let headers = task.headers();
        let as_text = json.to_string().into_bytes();
        for body in [&bytes, &as_text] {
            let parsed = serde_json::from_slice::<Value>(body);
            match (decode(&headers, body), parsed) {
                (Ok(_), Ok(value)) => prop_assert!(body_ok(&value), "accepted {}", value),
                (Err(DecodeError::InvalidJson(_)), Err(_)) => {}
                (Err(err @ DecodeError::MalformedBody(_)), Ok(value)) => {
                    prop_assert!(!body_ok(&value), "{} for {}", err, value);
                    prop_assert!(err.to_string().contains("[args, kwargs, embed]"), "{}", err);
                }
                (result, parsed) => prop_assert!(false, "{:?} for {:?}", result.err(), parsed.ok()),
            }
        }
        // Every strict prefix of a JSON array is unterminated, so invalid JSON.
        let body = task.body();
        let truncated = &body[..cut.index(body.len())];
        let err = decode(&headers, truncated).expect_err("a truncated body must fail");
        prop_assert!(err.to_string().contains("not valid JSON"), "{}", err);
    }
}

/// `depth` arrays around `leaf`, as a delivery's header table could carry them.
fn nested_field_array(depth: usize, leaf: AMQPValue) -> AMQPValue {
    (0..depth).fold(leaf, |inner, _| {
        AMQPValue::FieldArray(FieldArray::from(vec![inner]))
    })
}

#[test]
fn ten_thousand_levels_of_json_hit_serde_jsons_recursion_limit() {
    let open = "[".repeat(10_000);
    let balanced = format!("{open}{}", "]".repeat(10_000));
    let objects = "{\"a\":".repeat(10_000);
    let headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
    for body in [&open, &balanced, &objects] {
        let err = decode(&headers, body.as_bytes()).expect_err("too deep");
        assert!(err.to_string().contains("recursion limit"), "{err}");
        let err = TaskResult::decode(body.as_bytes()).expect_err("too deep");
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}

/// Header values are not depth-limited by serde_json: they arrive as an AMQP table.
/// 256 levels is beyond what lapin's own (recursive) table parser survives in a
/// debug build, and the error must still quote a bounded prefix, not the value.
#[test]
fn deeply_nested_header_values_are_named_not_walked() {
    for name in ["retries", "timelimit", "ignore_result", "eta"] {
        let mut table = json_to_table(&TaskMessage::new("task_a", vec![], Map::new()).headers());
        table.insert(
            name.into(),
            nested_field_array(256, AMQPValue::LongLongInt(1)),
        );
        let headers = table_to_json(&table);
        let err = decode(&headers, b"[[], {}, {}]").expect_err("nested");
        assert_names_header(&err, name);
        assert!(err.to_string().len() < 300, "{err}");
        let again: FieldTable = json_to_table(&headers);
        assert_eq!(table_to_json(&again), headers);
    }
}

#[test]
fn huge_header_values_are_quoted_in_part() {
    // A 1 MB value and one cut inside a two-byte character: both end in "...".
    for value in [json!("x".repeat(1 << 20)), json!("é".repeat(100))] {
        let mut headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
        headers.insert("retries".into(), value);
        let err = decode(&headers, b"[[], {}, {}]").expect_err("huge");
        let text = err.to_string();
        assert!(text.len() < 200 && text.ends_with("..."), "{text}");
    }
}

/// The worker turns a time limit into a `Duration`, which panics on 1e300 seconds
/// (or a negative number): decode refuses those, naming the header.
#[test]
fn time_limits_a_duration_cannot_hold_are_refused() {
    for limits in [json!([1e300, null]), json!([null, 1e20]), json!([-1, null])] {
        let mut headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
        headers.insert("timelimit".into(), limits);
        let err = decode(&headers, b"[[], {}, {}]").expect_err("out of range");
        assert_names_header(&err, "timelimit");
    }
}

/// A 256-byte id used to decode, and then made `result_properties` panic when the
/// worker published the task's result.
#[test]
fn task_ids_longer_than_a_correlation_id_are_refused() {
    let mut headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
    headers.insert("id".into(), json!("x".repeat(256)));
    let err = decode(&headers, b"[[], {}, {}]").expect_err("too long");
    assert_names_header(&err, "id");
    headers.insert("id".into(), json!("x".repeat(255)));
    let task = decode(&headers, b"[[], {}, {}]").expect("fits");
    let _ = crate::amqp::result_properties(&task.id, FieldTable::default());
}

/// serde_json's default float parser read this one ULP off (and about one in five
/// random 17-digit doubles); protocol/Cargo.toml turns on its exact parsing.
#[test]
fn floats_decode_exactly() {
    let exact = 4.924_301_058_649_967e-152;
    let task = TaskMessage::new("task_a", vec![json!(exact)], Map::new());
    let decoded = decode(&task.headers(), &task.body()).expect("decodes");
    assert_eq!(decoded.args[0].as_f64(), Some(exact));
    let result = TaskResult::success("id", json!(exact));
    assert_eq!(
        TaskResult::decode(&result.encode()).expect("decodes"),
        result
    );
}

/// `"false"` used to read as false, silently, like any other non-boolean.
#[test]
fn ignore_result_must_be_a_boolean() {
    let mut headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
    headers.insert("ignore_result".into(), json!("false"));
    let err = decode(&headers, b"[[], {}, {}]").expect_err("a string");
    assert_names_header(&err, "ignore_result");
}
