//! Property tests for `TaskResult::decode` and `TaskResult::exception` (issue #12):
//! the rpc:// result bodies a dispatcher reads from any worker, Celery's included.
//! Arbitrary bytes and JSON must give a `DecodeError` that says whether the body is
//! broken JSON or the wrong shape, naming the field; valid results round-trip.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::decode_fuzz_tests::json_value;
use crate::{DecodeError, TaskResult, TaskStatus};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// rpc:// results: arbitrary bytes or JSON; an error says JSON syntax or shape.
    #[test]
    fn arbitrary_result_bodies_never_panic(
        json in json_value(),
        bytes in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        for body in [bytes, json.to_string().into_bytes()] {
            match (TaskResult::decode(&body), serde_json::from_slice::<Value>(&body).is_ok()) {
                (Ok(result), _) => { let _ = result.exception(); }
                (Err(DecodeError::InvalidJson(_)), false) => {}
                (Err(DecodeError::NotAResult(_) | DecodeError::MalformedResult { .. }), true) => {}
                (Err(err), is_json) => prop_assert!(false, "{} (body is JSON: {})", err, is_json),
            }
        }
    }

    /// A valid result with one field replaced: decode agrees with the field's type,
    /// and the error names the field.
    #[test]
    fn one_mistyped_result_field_is_named(
        (task_id, value, worker) in (".{0,20}", json_value(), proptest::option::of(".{0,8}")),
        field in prop::sample::select(&["task_id", "status", "traceback", "children", "date_done", "worker"][..]),
        replacement in json_value(),
    ) {
        let result = TaskResult { worker, ..TaskResult::success(task_id, value) };
        let Ok(Value::Object(mut object)) = serde_json::to_value(&result) else { panic!("an object") };
        object.insert(field.to_owned(), replacement.clone());
        let fits = match field {
            "task_id" => replacement.is_string(),
            // serde also reads a unit variant from its map form, {"SUCCESS": null};
            // no producer writes that, and reading it does no harm.
            "status" => {
                replacement.is_string()
                    || replacement
                        .as_object()
                        .is_some_and(|m| m.len() == 1 && m.values().all(Value::is_null))
            }
            "children" => replacement.is_array(),
            _ => replacement.is_string() || replacement.is_null(),
        };
        match TaskResult::decode(&serde_json::to_vec(&object).expect("serializes")) {
            Ok(_) => prop_assert!(fits, "accepted {} = {}", field, replacement),
            Err(err) => {
                prop_assert!(!fits, "{}", err);
                prop_assert!(err.to_string().contains(&format!("{field:?}")), "{}", err);
            }
        }
    }

    /// `exception()` on any FAILURE payload: Celery's shape or an error naming it.
    #[test]
    fn exception_reads_any_failure_payload(payload in json_value(), status in 0..3usize) {
        let status = [TaskStatus::Failure, TaskStatus::Success, TaskStatus::Other][status];
        let result = TaskResult { status, result: payload.clone(), ..TaskResult::success("id", Value::Null) };
        let celery_shape = payload.get("exc_type").is_some_and(Value::is_string)
            && payload.get("exc_message").is_some_and(Value::is_array)
            && payload.get("exc_module").is_some_and(Value::is_string);
        match result.exception() {
            Ok(None) => prop_assert!(status != TaskStatus::Failure),
            Ok(Some(exc)) => {
                prop_assert!(celery_shape);
                prop_assert_eq!(Some(&json!(exc.exc_type)), payload.get("exc_type"));
            }
            Err(err) => {
                prop_assert!(!celery_shape && status == TaskStatus::Failure);
                prop_assert!(err.to_string().contains("exc_type"), "{}", err);
            }
        }
    }

    /// encode -> decode is the identity for results too (floats included).
    #[test]
    fn any_result_round_trips(
        (task_id, value, worker) in (".{0,20}", json_value(), proptest::option::of(".{0,8}")),
        children in prop::collection::vec(json_value(), 0..3),
        traceback in proptest::option::of(".{0,40}"),
    ) {
        let result = TaskResult { children, traceback, worker, ..TaskResult::success(task_id, value) };
        prop_assert_eq!(TaskResult::decode(&result.encode()).expect("decodes"), result);
    }
}

/// A well-formed JSON result with a mistyped field used to be reported as "body is
/// not valid JSON", without the field's name.
#[test]
fn mistyped_result_fields_are_not_called_invalid_json() {
    let err = TaskResult::decode(
        br#"{"task_id": 7, "status": "SUCCESS", "result": 1, "traceback": null}"#,
    )
    .expect_err("task_id is a number");
    let text = err.to_string();
    assert!(
        text.contains("\"task_id\"") && !text.contains("not valid JSON"),
        "{text}"
    );
    let err = TaskResult::decode(br#"{"status": "SUCCESS"}"#).expect_err("no task_id");
    assert!(err.to_string().contains("task_id"), "{err}");
}
