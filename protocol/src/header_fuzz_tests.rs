//! Property tests for reading AMQP header tables (issue #12): warren's dead-letter
//! headers (`DeadLetter::from_headers`) and the AMQP <-> JSON mapping
//! (`table_to_json`, `json_to_table`) that every delivery's headers go through
//! before `TaskMessage::decode` sees them. Tables are generated with every AMQP
//! field type, nested arrays and tables, and byte strings that are not UTF-8.

use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use proptest::prelude::*;
use serde_json::{Map, Number, Value};

use crate::amqp::{json_to_table, table_to_json};
use crate::decode_fuzz_tests::json_value;
use crate::headers::{ERROR, QUEUE, REASON, WORKER};
use crate::{DeadLetter, DeadLetterReason, DecodeError, ResultMetadata};

const DEAD_LETTER_HEADERS: [&str; 4] = [REASON, ERROR, QUEUE, WORKER];

/// Mostly the names the decoders look for, so that their values get exercised.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&DEAD_LETTER_HEADERS[..]).prop_map(str::to_owned),
        "[a-z-]{0,12}",
    ]
}

fn table(entries: Vec<(String, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(key), value);
    }
    table
}

/// Any AMQP field value, arrays and tables nested a few levels.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        Just(AMQPValue::Void),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>().prop_map(AMQPValue::Float),
        any::<f64>().prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        prop_oneof![Just("failed".to_owned()), ".{0,20}"]
            .prop_map(|s| AMQPValue::LongString(s.into())),
        // Not UTF-8, as a producer in another language may write it.
        prop::collection::vec(any::<u8>(), 0..20).prop_map(|b| AMQPValue::LongString(b.into())),
        "[a-z-]{0,20}".prop_map(|s| AMQPValue::ShortString(s.into())),
        prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| AMQPValue::FieldArray(FieldArray::from(v))),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|e| AMQPValue::FieldTable(table(e))),
        ]
    })
}

/// The values `table_to_json` maps one to one: what `json_to_table` writes.
fn canonical_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        Just(AMQPValue::Void),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(AMQPValue::Double),
        ".{0,20}".prop_map(|s| AMQPValue::LongString(s.into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| AMQPValue::FieldArray(FieldArray::from(v))),
            prop::collection::vec((key(), inner), 0..4)
                .prop_map(|e| AMQPValue::FieldTable(table(e))),
        ]
    })
}

/// What a JSON value reads as after a trip through an AMQP table: AMQP has no
/// unsigned 64-bit integer, so one beyond `i64::MAX` travels as a double.
fn through_amqp(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(items) => Value::Array(items.iter().map(through_amqp).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), through_amqp(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The oracle's reading of one dead-letter header: the text, if it is a string.
fn text(table: &FieldTable, name: &str) -> Option<String> {
    match table.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Dead-letter headers next to arbitrary others: read when all four are strings
    /// and the reason is known, otherwise an error naming a header that is not.
    #[test]
    fn dead_letter_headers_are_read_or_named(
        complete in any::<bool>(),
        entries in prop::collection::vec((key(), amqp_value()), 0..6),
    ) {
        let mut headers = table(Vec::new());
        if complete {
            let dead = DeadLetter {
                reason: DeadLetterReason::Failed,
                error: "boom".into(),
                queue: "queue_a".into(),
                worker: "worker-a-1".into(),
            };
            dead.write_to(&mut headers);
        }
        for (key, value) in entries {
            headers.insert(ShortString::from(key), value);
        }
        let bad: Vec<&str> = DEAD_LETTER_HEADERS.into_iter()
            .filter(|name| match text(&headers, name) {
                None => true,
                Some(reason) if *name == REASON => reason.parse::<DeadLetterReason>().is_err(),
                Some(_) => false,
            })
            .collect();
        match DeadLetter::from_headers(&headers) {
            Ok(dead) => {
                prop_assert!(bad.is_empty(), "accepted {:?}", bad);
                prop_assert_eq!(Some(dead.worker), text(&headers, WORKER));
            }
            Err(err) => {
                let named = match &err {
                    DecodeError::NotDeadLettered(name) | DecodeError::MalformedHeader { name, .. } => *name,
                    other => panic!("not a header error: {other}"),
                };
                prop_assert!(bad.contains(&named), "{} but the oracle rejects {:?}", err, bad);
                prop_assert!(err.to_string().contains(named), "{}", err);
            }
        }
        // The result headers ride on replies from any producer: never a panic.
        let _ = ResultMetadata::from_headers(&headers);
    }

    /// Any table reads as JSON, and that JSON is a fixed point of the round trip
    /// (modulo unsigned integers beyond i64, see `through_amqp`).
    #[test]
    fn any_table_reads_as_json(entries in prop::collection::vec((key(), amqp_value()), 0..8)) {
        let headers = table(entries);
        let json = table_to_json(&headers);
        prop_assert_eq!(json.len(), headers.inner().len());
        let again = Value::Object(table_to_json(&json_to_table(&json)));
        prop_assert_eq!(again, through_amqp(&Value::Object(json)));
    }

    /// The types `json_to_table` writes come back exactly.
    #[test]
    fn canonical_tables_round_trip(entries in prop::collection::vec((key(), canonical_value()), 0..8)) {
        let headers = table(entries);
        prop_assert_eq!(json_to_table(&table_to_json(&headers)), headers);
    }

    /// JSON headers survive a table, except names over 255 bytes, which AMQP
    /// cannot carry and `json_to_table` drops instead of panicking.
    #[test]
    fn json_headers_survive_a_table(
        entries in prop::collection::btree_map(
            prop_oneof!["[a-z-]{0,12}", "é{120,135}"], json_value(), 0..6),
    ) {
        let headers: Map<String, Value> = entries.into_iter().collect();
        let expected: Map<String, Value> = headers.iter()
            .filter(|(name, _)| name.len() <= 255)
            .map(|(name, value)| (name.clone(), through_amqp(value)))
            .collect();
        prop_assert_eq!(table_to_json(&json_to_table(&headers)), expected);
    }
}

/// Deeper than lapin's own recursive parser survives in a debug build (about 300
/// levels on a 2 MiB stack), so a table that reached us intact converts intact.
#[test]
fn deeply_nested_tables_convert_both_ways() {
    let deep = (0..256).fold(
        AMQPValue::LongString(LongString::from("leaf")),
        |inner, _| AMQPValue::FieldTable(table(vec![("a".into(), inner)])),
    );
    let headers = table(vec![(REASON.into(), deep)]);
    let json = table_to_json(&headers);
    assert_eq!(json_to_table(&json), headers);
    let err = DeadLetter::from_headers(&headers).expect_err("a table, not a string");
    assert!(err.to_string().contains("FieldTable"), "{err}");
}
