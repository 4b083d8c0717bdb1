use super::*;
use proptest::prelude::*;

fn incoming<'a>(headers: &'a Map<String, Value>, body: &'a [u8]) -> IncomingMessage<'a> {
    IncomingMessage {
        headers,
        body,
        content_type: Some(CONTENT_TYPE_JSON),
        correlation_id: None,
        reply_to: Some("reply-queue"),
    }
}

#[test]
fn round_trips_a_task_with_celery_headers() {
    let mut kwargs = Map::new();
    kwargs.insert("seconds".into(), json!(0.15));
    let mut task = TaskMessage::new("celery_app.task_a", vec![json!(1), json!("x")], kwargs);
    task.reply_to = Some("reply-queue".into());
    task.timelimit = (Some(30.0), None);
    let headers = task.headers();
    assert_eq!(headers["lang"], "py");
    assert_eq!(headers["task"], "celery_app.task_a");
    assert_eq!(headers["argsrepr"], "[1,\"x\"]");
    assert_eq!(headers["timelimit"], json!([30.0, null]));
    let body = task.body();
    let decoded = TaskMessage::decode(incoming(&headers, &body)).expect("decodes");
    assert_eq!(decoded, task);
}

#[test]
fn reads_a_message_as_celery_5_writes_it() {
    let headers: Map<String, Value> = serde_json::from_str(
        r#"{"lang":"py","task":"celery_app.task_a","id":"6a1c","shadow":null,"eta":null,
            "expires":null,"group":null,"group_index":null,"retries":0,"timelimit":[null,null],
            "root_id":"6a1c","parent_id":null,"argsrepr":"(1,)","kwargsrepr":"{}",
            "origin":"gen1@host","ignore_result":false,"replaced_task_nesting":0,
            "stamped_headers":null,"stamps":{}}"#,
    )
    .expect("fixture");
    let body = br#"[[1], {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
    let task = TaskMessage::decode(incoming(&headers, body)).expect("decodes");
    assert_eq!(task.id, "6a1c");
    assert_eq!(task.args, vec![json!(1)]);
    assert_eq!(task.origin.as_deref(), Some("gen1@host"));
    assert_eq!(task.reply_to.as_deref(), Some("reply-queue"));
}

#[test]
fn names_what_is_wrong_with_bad_messages() {
    let task = TaskMessage::new("task_a", vec![], Map::new());
    let headers = task.headers();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"not json", "not valid JSON"),
        (b"{\"a\":1}", "found a JSON object"),
        (b"[[], {}]", "array of 2 elements"),
        (b"[1, {}, {}]", "args is a JSON number"),
        (b"[[], [], {}]", "kwargs is a JSON array"),
    ];
    for (body, expected) in cases {
        let err = TaskMessage::decode(incoming(&headers, body)).expect_err("must fail");
        assert!(
            err.to_string().contains(expected),
            "{err} lacks {expected:?}"
        );
    }
    let mut no_task = headers.clone();
    no_task.remove("task");
    let err = TaskMessage::decode(incoming(&no_task, b"[[], {}, {}]")).expect_err("no task");
    assert!(err.to_string().contains("\"task\" is missing"), "{err}");
    let mut bad_retries = headers.clone();
    bad_retries.insert("retries".into(), json!(-1));
    let err = TaskMessage::decode(incoming(&bad_retries, b"[[], {}, {}]")).expect_err("retries");
    assert!(
        err.to_string().contains("\"retries\" is malformed"),
        "{err}"
    );
    let pickle = IncomingMessage {
        content_type: Some("application/x-python-serialize"),
        ..incoming(&headers, b"[[], {}, {}]")
    };
    let err = TaskMessage::decode(pickle).expect_err("pickle");
    assert!(err.to_string().contains("task_serializer"), "{err}");
}

#[test]
fn falls_back_to_correlation_id_for_the_task_id() {
    let mut headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
    headers.remove("id");
    let message = IncomingMessage {
        correlation_id: Some("from-properties"),
        ..incoming(&headers, b"[[], {}, {}]")
    };
    assert_eq!(
        TaskMessage::decode(message).expect("decodes").id,
        "from-properties"
    );
}

proptest! {
    #[test]
    fn any_task_round_trips(
        name in "[a-z_.]{1,40}",
        ints in proptest::collection::vec(any::<i64>(), 0..5),
        key in "[a-z]{1,8}",
        text in ".{0,30}",
        retries in 0u32..100,
    ) {
        let mut kwargs = Map::new();
        kwargs.insert(key, json!(text));
        let mut task = TaskMessage::new(name, ints.into_iter().map(|i| json!(i)).collect(), kwargs);
        task.retries = retries;
        task.reply_to = Some("reply-queue".into());
        let headers = task.headers();
        let body = task.body();
        prop_assert_eq!(TaskMessage::decode(incoming(&headers, &body)).expect("decodes"), task);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let headers = TaskMessage::new("task_a", vec![], Map::new()).headers();
        let _ = TaskMessage::decode(incoming(&headers, &body));
    }
}
