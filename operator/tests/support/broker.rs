//! The real RabbitMQ as the tests set it up: queues filled, purged and deleted
//! over AMQP, vhosts and queues made through the management API.

use serde_json::json;

use super::{amqp_url, management_url};

/// Publishes `count` persistent messages straight into `queue` (declared durable).
pub async fn fill_queue(queue: &str, count: usize) {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::FieldTable;
    fill_declared_queue(
        queue,
        count,
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await;
}

/// Declares `queue` with `options` and `arguments`, then publishes `count`
/// persistent messages into it, each confirmed.
pub async fn fill_declared_queue(
    queue: &str,
    count: usize,
    options: lapin::options::QueueDeclareOptions,
    arguments: lapin::types::FieldTable,
) {
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(queue.into(), options, arguments)
        .await
        .expect("declare");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for i in 0..count {
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    let _ = connection.close(200, "done".into()).await;
}

pub async fn purge_queue(queue: &str) {
    use lapin::options::QueuePurgeOptions;
    use lapin::{Connection, ConnectionProperties};
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .expect("purge");
    let _ = connection.close(200, "done".into()).await;
}

pub async fn delete_queue(queue: &str) {
    use lapin::options::QueueDeleteOptions;
    use lapin::{Connection, ConnectionProperties};
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = connection.create_channel().await.expect("channel");
    let _ = channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
}

pub async fn create_vhost(vhost: &str) {
    let http = reqwest::Client::new();
    let base = management_url();
    http.put(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("create vhost");
    http.put(format!("{base}/api/permissions/{vhost}/guest"))
        .basic_auth("guest", Some("guest"))
        .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("permissions");
}

/// Declares the queues through the management API (durable, no arguments).
pub async fn declare_queues(vhost: &str, queues: &[String]) {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    let base = management_url();
    futures::stream::iter(queues)
        .for_each_concurrent(16, |queue| {
            let request = http
                .put(format!("{base}/api/queues/{vhost}/{queue}"))
                .basic_auth("guest", Some("guest"))
                .json(&json!({"durable": true}));
            async move {
                request
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .expect("declare queue");
            }
        })
        .await;
}

pub async fn delete_vhost(vhost: &str) {
    let _ = reqwest::Client::new()
        .delete(format!("{}/api/vhosts/{vhost}", management_url()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await;
}
