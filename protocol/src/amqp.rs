//! Mapping between protocol values and AMQP 0-9-1 frames: header tables as JSON,
//! message properties, and the queue topology Celery declares.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Map, Number, Value};

use crate::{CONTENT_ENCODING_UTF8, CONTENT_TYPE_JSON, TaskMessage};

/// The broker URL used when `WARREN_AMQP_URL` is not set: the local dev broker.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Persistent delivery, as Celery publishes tasks.
pub const PERSISTENT: u8 = 2;

/// The dead-letter queue that receives what a worker of `queue` cannot process.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead-letter")
}

/// The URL with its password replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Properties of a task message as Celery writes them.
pub fn task_properties(task: &TaskMessage) -> BasicProperties {
    let props = BasicProperties::default()
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_content_encoding(CONTENT_ENCODING_UTF8.into())
        .with_correlation_id(task.id.as_str().into())
        .with_delivery_mode(PERSISTENT)
        .with_priority(0)
        .with_headers(json_to_table(&task.headers()));
    match &task.reply_to {
        Some(reply_to) => props.with_reply_to(reply_to.as_str().into()),
        None => props,
    }
}

/// Properties of an rpc:// result message for `task_id`.
pub fn result_properties(task_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE_JSON.into())
        .with_content_encoding(CONTENT_ENCODING_UTF8.into())
        .with_correlation_id(task_id.into())
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers)
}

/// Declares what Celery's client declares for a routed queue: a durable direct
/// exchange and a durable classic queue of the same name with no arguments, bound by
/// the queue name. Anything else would make Celery's own declare fail with
/// PRECONDITION_FAILED.
pub async fn declare_task_queue(channel: &Channel, queue: &str) -> lapin::Result<()> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            queue.into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            queue.into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Declares the durable dead-letter queue for `queue` and returns its name.
pub async fn declare_dead_letter_queue(channel: &Channel, queue: &str) -> lapin::Result<String> {
    let name = dead_letter_queue(queue);
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    Ok(name)
}

/// Reads an AMQP header table as a JSON object (byte strings as UTF-8, lossily).
pub fn table_to_json(table: &FieldTable) -> Map<String, Value> {
    table
        .inner()
        .iter()
        .map(|(key, value)| (key.to_string(), value_to_json(value)))
        .collect()
}

/// Writes a JSON object as an AMQP header table; `null` becomes the void value
/// Celery's py-amqp writes for `None`.
pub fn json_to_table(map: &Map<String, Value>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in map {
        // Header names longer than a short string are not valid AMQP; they cannot
        // come from Celery and are dropped rather than allowed to panic.
        if let Ok(key) = ShortString::try_new(key.as_str()) {
            table.insert(key, json_to_value(value));
        }
    }
    table
}

fn value_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let value = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(value).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(value_to_json).collect())
        }
        AMQPValue::FieldTable(table) => Value::Object(table_to_json(table)),
        AMQPValue::Void => Value::Null,
    }
}

fn json_to_value(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(json_to_value).collect::<Vec<_>>(),
        )),
        Value::Object(map) => AMQPValue::FieldTable(json_to_table(map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(redact_url("amqp://u:p@ss@h/v"), "amqp://u:***@h/v");
    }

    #[test]
    fn headers_survive_the_amqp_table() {
        let task = TaskMessage::new("task_a", vec![json!(1)], Map::new());
        let headers = task.headers();
        assert_eq!(table_to_json(&json_to_table(&headers)), headers);
    }

    #[test]
    fn nested_values_and_voids() {
        let value = json!({"a": [1, 2.5, null, "s"], "b": {"c": true}});
        let map = value.as_object().expect("object").clone();
        assert_eq!(table_to_json(&json_to_table(&map)), map);
    }

    #[test]
    fn task_properties_match_celery() {
        let mut task = TaskMessage::new("task_a", vec![], Map::new());
        task.reply_to = Some("replies".into());
        let props = task_properties(&task);
        assert_eq!(
            props.correlation_id().as_ref().map(|s| s.as_str()),
            Some(task.id.as_str())
        );
        assert_eq!(
            props.reply_to().as_ref().map(|s| s.as_str()),
            Some("replies")
        );
        assert_eq!(*props.delivery_mode(), Some(PERSISTENT));
        assert_eq!(
            props.content_type().as_ref().map(|s| s.as_str()),
            Some(CONTENT_TYPE_JSON)
        );
    }
}
