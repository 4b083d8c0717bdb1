//! Errors of the dispatcher client, worded for the operator of the producer.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DispatchError {
    #[error("cannot reach the broker at {url} within {waited:?}: {reason}")]
    Unreachable {
        url: String,
        waited: Duration,
        reason: String,
    },
    #[error(transparent)]
    Routing(#[from] warren_protocol::RoutingError),
    #[error("task {id} was not confirmed by the broker within {waited:?}: {reason}")]
    Publish {
        id: String,
        waited: Duration,
        reason: String,
    },
    #[error("no result for task {id} within {waited:?}")]
    Timeout { id: String, waited: Duration },
    #[error("the client was closed before task {id} got its result")]
    Closed { id: String },
}
