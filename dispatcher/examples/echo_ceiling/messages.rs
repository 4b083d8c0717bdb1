//! What the echo sends: a request per queue and the reply, each built once and
//! reused, either opaque bytes or warren's own Celery messages (`--celery-format`).

use std::sync::Arc;
use std::time::Duration;

use lapin::BasicProperties;

use crate::Args;

/// What one request or reply carries: exchange, body, properties.
#[derive(Clone)]
pub struct Message {
    pub exchange: String,
    pub body: Arc<[u8]>,
    pub properties: BasicProperties,
}

fn delivery_mode(args: &Args) -> u8 {
    if args.transient { 1 } else { 2 }
}

/// The request sent to `queue`, with replies to `reply_queue`.
pub fn request(args: &Args, queue: &str, reply_queue: &str) -> Message {
    if args.celery_format {
        let mut kwargs = serde_json::Map::new();
        kwargs.insert("seconds".into(), serde_json::json!(0.0));
        let mut task = warren_protocol::TaskMessage::new("task_a", Vec::new(), kwargs);
        task.reply_to = Some(reply_queue.to_owned());
        return Message {
            exchange: queue.to_owned(),
            body: task.body().into(),
            properties: warren_protocol::amqp::task_properties(&task)
                .with_delivery_mode(delivery_mode(args)),
        };
    }
    Message {
        exchange: String::new(),
        body: vec![b'q'; args.request_bytes].into(),
        properties: BasicProperties::default()
            .with_delivery_mode(delivery_mode(args))
            .with_reply_to(reply_queue.into()),
    }
}

/// The reply a responder publishes (its correlation id is the request's).
pub fn reply(args: &Args) -> Message {
    if args.celery_format {
        let id = uuid::Uuid::new_v4().to_string();
        let result = warren_protocol::TaskResult::success(
            id.as_str(),
            serde_json::json!({"task": "task_a", "mode": "wait", "seconds": 0.0}),
        )
        .from_worker("echo-responder");
        let headers = warren_protocol::ResultMetadata {
            runtime: Some(Duration::from_micros(10)),
            concurrency: Some(64),
        }
        .to_headers();
        return Message {
            exchange: String::new(),
            body: result.encode().into(),
            properties: warren_protocol::amqp::result_properties(&id, headers)
                .with_delivery_mode(delivery_mode(args)),
        };
    }
    Message {
        exchange: String::new(),
        body: vec![b'r'; args.reply_bytes].into(),
        properties: BasicProperties::default().with_delivery_mode(delivery_mode(args)),
    }
}
