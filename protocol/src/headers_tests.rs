use super::*;
use lapin::types::{ByteArray, FieldArray, ShortString};
use proptest::prelude::*;

fn dead_letter(reason: DeadLetterReason) -> DeadLetter {
    DeadLetter {
        reason,
        error: "task \"task_z\" is not registered on this worker".into(),
        queue: "queue_a".into(),
        worker: "worker-a-1".into(),
    }
}

#[test]
fn result_metadata_round_trips() {
    let metadata = ResultMetadata {
        runtime: Some(Duration::from_micros(123_500)),
        concurrency: Some(4),
    };
    let headers = metadata.to_headers();
    assert_eq!(
        headers.inner().get(RUNTIME_MS),
        Some(&AMQPValue::Double(123.5))
    );
    assert_eq!(
        headers.inner().get(CONCURRENCY),
        Some(&AMQPValue::LongLongInt(4))
    );
    assert_eq!(ResultMetadata::from_headers(&headers), metadata);
    assert_eq!(
        ResultMetadata::default().to_headers(),
        FieldTable::default()
    );
}

#[test]
fn result_metadata_ignores_what_it_cannot_use() {
    let mut headers = FieldTable::default();
    headers.insert(RUNTIME_MS.into(), AMQPValue::Double(-1.0));
    headers.insert(CONCURRENCY.into(), AMQPValue::LongLongInt(-4));
    assert_eq!(
        ResultMetadata::from_headers(&headers),
        ResultMetadata::default()
    );
    headers.insert(RUNTIME_MS.into(), AMQPValue::Double(f64::INFINITY));
    headers.insert(CONCURRENCY.into(), AMQPValue::LongString("4".into()));
    assert_eq!(
        ResultMetadata::from_headers(&headers),
        ResultMetadata::default()
    );
    // Other integer widths, as another producer may write them.
    headers.insert(RUNTIME_MS.into(), AMQPValue::LongInt(250));
    headers.insert(CONCURRENCY.into(), AMQPValue::ShortUInt(8));
    assert_eq!(
        ResultMetadata::from_headers(&headers),
        ResultMetadata {
            runtime: Some(Duration::from_millis(250)),
            concurrency: Some(8),
        }
    );
}

#[test]
fn dead_letter_round_trips_next_to_the_original_headers() {
    for reason in DeadLetterReason::ALL {
        let mut headers = FieldTable::default();
        headers.insert("task".into(), AMQPValue::LongString("task_z".into()));
        dead_letter(reason).write_to(&mut headers);
        assert_eq!(
            DeadLetter::from_headers(&headers).expect("decodes"),
            dead_letter(reason)
        );
        assert!(headers.contains_key("task"), "the original headers stay");
    }
}

#[test]
fn reasons_have_stable_names() {
    let names: Vec<&str> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(names, ["undecodable", "unknown-task", "failed"]);
    for reason in DeadLetterReason::ALL {
        assert_eq!(
            reason.to_string().parse::<DeadLetterReason>().ok(),
            Some(reason)
        );
    }
    let error = "poisoned".parse::<DeadLetterReason>().expect_err("unknown");
    assert!(error.to_string().contains("unknown-task"), "{error}");
}

#[test]
fn dead_letter_decoding_names_what_is_wrong() {
    let missing = DeadLetter::from_headers(&FieldTable::default()).expect_err("missing");
    assert!(missing.to_string().contains(REASON), "{missing}");
    let mut headers = FieldTable::default();
    dead_letter(DeadLetterReason::Failed).write_to(&mut headers);
    headers.insert(WORKER.into(), AMQPValue::Boolean(true));
    let malformed = DeadLetter::from_headers(&headers).expect_err("malformed");
    assert!(malformed.to_string().contains(WORKER), "{malformed}");
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(RUNTIME_MS.to_owned()),
        Just(CONCURRENCY.to_owned()),
        Just(REASON.to_owned()),
        Just(ERROR.to_owned()),
        Just(QUEUE.to_owned()),
        Just(WORKER.to_owned()),
        "[a-z-]{0,20}",
    ]
}

fn header_value() -> impl Strategy<Value = AMQPValue> {
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
        any::<u64>().prop_map(AMQPValue::Timestamp),
        prop_oneof![
            Just("failed".to_owned()),
            Just("unknown-task".to_owned()),
            ".{0,20}"
        ]
        .prop_map(|s| AMQPValue::LongString(s.into())),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|b| AMQPValue::LongString(b.into())),
        "[a-z]{0,20}".prop_map(|s| AMQPValue::ShortString(ShortString::from(s))),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        proptest::collection::vec(inner, 0..4)
            .prop_map(|v| AMQPValue::FieldArray(FieldArray::from(v)))
    })
}

proptest! {
    #[test]
    fn arbitrary_header_tables_never_panic(
        entries in proptest::collection::vec((header_name(), header_value()), 0..10),
    ) {
        let mut headers = FieldTable::default();
        for (name, value) in entries {
            headers.insert(ShortString::from(name), value);
        }
        let metadata = ResultMetadata::from_headers(&headers);
        let again = ResultMetadata::from_headers(&metadata.to_headers());
        prop_assert_eq!(again.concurrency, metadata.concurrency);
        if let Ok(dead) = DeadLetter::from_headers(&headers) {
            let mut again = FieldTable::default();
            dead.write_to(&mut again);
            prop_assert_eq!(DeadLetter::from_headers(&again).ok(), Some(dead));
        }
    }

    #[test]
    fn any_metadata_round_trips(micros in 0u64..(1 << 40), concurrency in any::<Option<u32>>()) {
        let metadata = ResultMetadata { runtime: Some(Duration::from_micros(micros)), concurrency };
        let decoded = ResultMetadata::from_headers(&metadata.to_headers());
        prop_assert_eq!(decoded.concurrency, concurrency);
        let runtime = decoded.runtime.expect("a runtime");
        // Fractional milliseconds in an f64: exact to well under a microsecond.
        let error = runtime.abs_diff(Duration::from_micros(micros));
        prop_assert!(error < Duration::from_micros(1), "{:?} vs {}us", runtime, micros);
    }
}
