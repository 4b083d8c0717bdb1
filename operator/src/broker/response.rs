//! One management API exchange, read defensively: the status mapped to a
//! [`BrokerError`], the body read chunk by chunk and abandoned past
//! [`MAX_BODY_BYTES`], and a body that stalls past the request's timeout reported
//! as a [`BrokerError::Timeout`] like a silent server, not as `Unreachable`.
//!
//! The operator reads every broker of the cluster from one process: an answer read
//! whole before looking at it (`Response::bytes`) would let one misbehaving
//! endpoint, or a proxy streaming something else at that URL, take all of its
//! memory.

use std::time::Duration;

use super::BrokerError;

/// The largest answer read, in bytes. A queue page (500 items with the statistics
/// columns, about 170 bytes each) is about 100 KB; a consumers listing, which
/// RabbitMQ 3.x does not paginate, is a few hundred bytes per consumer: a few MB
/// for 10,000 consumers. 32 MiB leaves room for a vhost several times that size
/// and is still a bound the operator's memory can afford per concurrent read.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Sends `request` and returns the body of a 200 answer.
pub(super) async fn fetch(
    request: reqwest::RequestBuilder,
    url: &str,
    vhost: &str,
    timeout: Duration,
) -> Result<Vec<u8>, BrokerError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport_error(&e, url, timeout))?;
    check_status(&response, url, vhost)?;
    read_body(response, url, timeout).await
}

fn check_status(response: &reqwest::Response, url: &str, vhost: &str) -> Result<(), BrokerError> {
    let url = url.to_owned();
    match response.status().as_u16() {
        200 => Ok(()),
        401 => Err(BrokerError::Unauthorized { url }),
        403 => Err(BrokerError::Forbidden {
            url,
            vhost: vhost.to_owned(),
        }),
        404 => Err(BrokerError::VhostNotFound {
            url,
            vhost: vhost.to_owned(),
        }),
        status @ 300..=399 => {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .unwrap_or("(no Location)")
                .to_owned();
            Err(BrokerError::Redirected {
                url,
                status,
                location,
            })
        }
        status => Err(BrokerError::Server { url, status }),
    }
}

/// Reads the body up to [`MAX_BODY_BYTES`]. Returning early drops the response,
/// which closes the connection instead of draining the rest.
async fn read_body(
    mut response: reqwest::Response,
    url: &str,
    timeout: Duration,
) -> Result<Vec<u8>, BrokerError> {
    let too_large = || BrokerError::TooLarge {
        url: url.to_owned(),
        limit: MAX_BODY_BYTES,
    };
    // A declared length past the cap is refused before reading any of it.
    let declared = response.content_length().unwrap_or(0);
    if declared > MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared as usize);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(&e, url, timeout))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The request's timeout covers the body too (reqwest), so a body that stops
/// mid-way is a timeout; anything else failed on the way (refused, reset, TLS).
fn transport_error(error: &reqwest::Error, url: &str, timeout: Duration) -> BrokerError {
    if error.is_timeout() {
        BrokerError::Timeout {
            url: url.to_owned(),
            timeout,
        }
    } else {
        BrokerError::Unreachable {
            url: url.to_owned(),
            reason: root_cause(error),
        }
    }
}

/// The innermost error message, which says what actually failed (refused, DNS, TLS).
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    /// A one-shot HTTP server on loopback that answers `head` and `body`, then
    /// keeps the connection open without a word until the client gives up.
    async fn serve(head: &str, body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let head = head.to_owned();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            // Returns once the client closes its end.
            let _ = stream.read(&mut request).await;
        });
        url
    }

    async fn get(url: &str) -> Result<Vec<u8>, BrokerError> {
        let request = reqwest::Client::new().get(url).timeout(TIMEOUT);
        fetch(request, url, "/", TIMEOUT).await
    }

    /// One chunk of `size` bytes of a chunked body, and the chunk that ends it.
    fn chunked(size: usize) -> Vec<u8> {
        let mut body = format!("{size:x}\r\n").into_bytes();
        body.resize(body.len() + size, b' ');
        body.extend_from_slice(b"\r\n0\r\n\r\n");
        body
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn bodies_up_to_the_cap_are_read_whole() {
        let url = serve(CHUNKED, chunked(MAX_BODY_BYTES)).await;
        assert_eq!(get(&url).await.map(|b| b.len()), Ok(MAX_BODY_BYTES));
    }

    #[tokio::test]
    async fn bodies_past_the_cap_are_refused_with_their_own_reason() {
        let url = serve(CHUNKED, chunked(MAX_BODY_BYTES + 1)).await;
        let error = get(&url).await.expect_err("too large");
        assert_eq!(error.reason(), "ResponseTooLarge");
        assert!(error.to_string().contains("more than 32 MiB"), "{error}");
    }

    #[tokio::test]
    async fn a_declared_length_past_the_cap_is_refused_before_reading() {
        // Nothing of the body is sent: only the declaration can cause the refusal,
        // and it comes before the timeout.
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let error = get(&serve(&head, Vec::new()).await).await;
        assert!(
            matches!(error, Err(BrokerError::TooLarge { .. })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_body_that_stops_midway_is_a_timeout() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";
        let error = get(&serve(head, b"{\"items\": [".to_vec()).await).await;
        assert!(
            matches!(error, Err(BrokerError::Timeout { .. })),
            "{error:?}"
        );
    }
}
