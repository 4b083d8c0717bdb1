//! The lapin calls the client and the responders both make: a named connection,
//! a publisher-confirm channel, a consumer with manual acks.

use anyhow::Context;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

/// A connection named `name` in the management UI; the error names the broker
/// without its credentials.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url, properties).await.with_context(|| {
        format!(
            "cannot connect to {}",
            warren_protocol::amqp::redact_url(url)
        )
    })
}

/// A channel in confirm mode, so each publish can wait for the broker's ack.
pub async fn confirm_channel(connection: &Connection) -> lapin::Result<Channel> {
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(publisher)
}

/// Consumes `queue` as `tag`, with manual acks.
pub async fn consume(channel: &Channel, queue: &str, tag: &str) -> lapin::Result<Consumer> {
    channel
        .basic_consume(
            queue.into(),
            tag.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
}
