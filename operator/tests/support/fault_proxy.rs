//! A proxy in front of the real management API whose answers a test breaks at
//! run time: slow, 500, truncated or malformed JSON, a huge body, a reset
//! connection, an answer that never ends. It counts the bytes it sent on each
//! request, so that a test can tell that the client stopped reading early
//! rather than only that it failed.
//!
//! One request per connection (`Connection: close`): the operator sends GETs
//! without a body, so the head is the whole request, and a fault chosen when a
//! request arrives stays that request's even if the test switches meanwhile.
//! Every fault ends by itself (the huge body at [`HUGE_BYTES`], the never-ending
//! answer after [`NEVER_ENDS_FOR`]) or as soon as the client goes away.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::management_url;

/// What the proxy does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forwards to the management API and back.
    PassThrough,
    /// Waits this long, then forwards.
    Delay(Duration),
    /// `500 Internal Server Error` with a small JSON body.
    ServerError,
    /// The real answer cut in half, with a Content-Length that matches the half:
    /// a complete HTTP answer carrying incomplete JSON.
    Truncated,
    /// A complete HTTP answer whose JSON does not parse.
    Malformed,
    /// A JSON array of queues that never closes, chunked, up to [`HUGE_BYTES`].
    Huge,
    /// The same, announced up front with `Content-Length: HUGE_BYTES`.
    HugeDeclared,
    /// The head and half of the real body, then a TCP reset (`SO_LINGER` 0).
    Reset,
    /// The head and the start of a page, then a few bytes every [`TRICKLE_EVERY`].
    NeverEnds,
}

/// How much the huge answers would send if the client read them all.
pub const HUGE_BYTES: u64 = 200 * 1024 * 1024;
/// The never-ending answer's pace, and how long it goes on if nobody hangs up.
pub const TRICKLE_EVERY: Duration = Duration::from_millis(50);
pub const NEVER_ENDS_FOR: Duration = Duration::from_secs(60);

/// One request the proxy answered (or is answering).
#[derive(Debug, Clone)]
pub struct Served {
    /// Path and query.
    pub target: String,
    pub fault: Fault,
    /// Bytes of the answer written to the socket (taken by the kernel: up to its
    /// socket buffers more than the client read).
    pub sent: u64,
    /// The proxy is done with it: answered, or the client went away.
    pub finished: bool,
}

struct Exchange {
    target: String,
    fault: Fault,
    sent: AtomicU64,
    finished: AtomicBool,
}

#[derive(Default)]
struct Rule {
    fault: Option<Fault>,
    /// Only requests whose path starts with this are faulted.
    only: Option<String>,
}

struct Shared {
    rule: Mutex<Rule>,
    exchanges: Mutex<Vec<Arc<Exchange>>>,
    /// Bumped whenever an exchange finishes, for [`FaultProxy::wait_finished`].
    finished: watch::Sender<u64>,
    http: reqwest::Client,
}

/// The proxy; stops accepting when dropped.
pub struct FaultProxy {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy that passes everything through until told otherwise.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared {
            rule: Mutex::default(),
            exchanges: Mutex::default(),
            finished: watch::channel(0).0,
            http: reqwest::Client::new(),
        });
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, Arc::clone(&accepting)));
            }
        });
        Self { url, shared, task }
    }

    /// Applies `fault` to every request from now on.
    pub fn set(&self, fault: Fault) {
        *self.shared.rule.lock().expect("rule") = Rule {
            fault: Some(fault),
            only: None,
        };
    }

    /// Applies `fault` to requests whose path starts with `prefix`; the others
    /// pass through.
    pub fn set_on(&self, prefix: &str, fault: Fault) {
        *self.shared.rule.lock().expect("rule") = Rule {
            fault: Some(fault),
            only: Some(prefix.to_owned()),
        };
    }

    /// Every request so far, oldest first.
    pub fn served(&self) -> Vec<Served> {
        let exchanges = self.shared.exchanges.lock().expect("exchanges");
        exchanges
            .iter()
            .map(|e| Served {
                target: e.target.clone(),
                fault: e.fault.clone(),
                sent: e.sent.load(Ordering::Relaxed),
                finished: e.finished.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// How many requests got a fault rather than the broker's answer.
    pub fn faulted(&self) -> usize {
        self.served()
            .iter()
            .filter(|s| s.fault != Fault::PassThrough)
            .count()
    }

    /// Waits until the proxy is done with every request so far, and returns them.
    pub async fn wait_finished(&self, within: Duration) -> Vec<Served> {
        let deadline = Instant::now() + within;
        let mut changes = self.shared.finished.subscribe();
        loop {
            let served = self.served();
            if served.iter().all(|s| s.finished) {
                return served;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, changes.changed()).await.is_err() {
                panic!("the proxy still answers after {within:?}: {served:?}");
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some((target, authorization)) = read_head(&mut stream).await else {
        return;
    };
    let fault = {
        let rule = shared.rule.lock().expect("rule");
        let applies = rule.only.as_ref().is_none_or(|p| target.starts_with(p));
        rule.fault.clone().filter(|_| applies)
    }
    .unwrap_or(Fault::PassThrough);
    let exchange = Arc::new(Exchange {
        target,
        fault,
        sent: AtomicU64::new(0),
        finished: AtomicBool::new(false),
    });
    shared
        .exchanges
        .lock()
        .expect("exchanges")
        .push(Arc::clone(&exchange));
    let mut out = Counted {
        stream,
        exchange: &exchange,
    };
    // An error means the client went away: the exchange is over either way.
    let _ = play(&mut out, &shared.http, authorization).await;
    // A clean close would send FIN ahead of the reset and turn it into an early end.
    if out.exchange.fault != Fault::Reset {
        let _ = out.stream.shutdown().await;
    }
    exchange.finished.store(true, Ordering::Relaxed);
    shared.finished.send_modify(|n| *n += 1);
}

/// The request's target and `Authorization` header.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Option<String>)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let target = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Some((target, authorization))
}

/// The client's socket, counting what is written to it.
struct Counted<'a> {
    stream: TcpStream,
    exchange: &'a Exchange,
}

impl Counted<'_> {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.exchange
            .sent
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn head(&mut self, status: u16, framing: &str) -> std::io::Result<()> {
        let phrase = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let head = format!(
            "HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
        );
        self.send(head.as_bytes()).await
    }

    /// A whole answer with a Content-Length.
    async fn whole(&mut self, status: u16, body: &[u8]) -> std::io::Result<()> {
        self.head(status, &format!("content-length: {}", body.len()))
            .await?;
        self.send(body).await
    }

    async fn chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        let mut framed = format!("{:x}\r\n", data.len()).into_bytes();
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        self.send(&framed).await
    }
}

async fn play(
    out: &mut Counted<'_>,
    http: &reqwest::Client,
    authorization: Option<String>,
) -> std::io::Result<()> {
    let target = out.exchange.target.clone();
    let forward = || upstream(http, &target, authorization.clone());
    match out.exchange.fault.clone() {
        Fault::PassThrough => {
            let (status, body) = forward().await;
            out.whole(status, &body).await
        }
        Fault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            let (status, body) = forward().await;
            out.whole(status, &body).await
        }
        Fault::ServerError => out.whole(500, br#"{"error":"broken by the test"}"#).await,
        Fault::Truncated => {
            let (status, body) = forward().await;
            out.whole(status, &body[..body.len() / 2]).await
        }
        Fault::Malformed => {
            let body = br#"{"items": [{"name": "q", "messages_ready": 12,,}], "page_count": 1}"#;
            out.whole(200, body).await
        }
        Fault::Huge => {
            out.head(200, "transfer-encoding: chunked").await?;
            out.chunk(br#"{"page_count": 1, "items": ["#).await?;
            let filler = filler();
            while out.exchange.sent.load(Ordering::Relaxed) < HUGE_BYTES {
                out.chunk(&filler).await?;
            }
            Ok(())
        }
        Fault::HugeDeclared => {
            out.head(200, &format!("content-length: {HUGE_BYTES}"))
                .await?;
            out.send(br#"{"page_count": 1, "items": ["#).await?;
            let filler = filler();
            while out.exchange.sent.load(Ordering::Relaxed) < HUGE_BYTES {
                out.send(&filler).await?;
            }
            Ok(())
        }
        Fault::Reset => {
            let (status, body) = forward().await;
            out.head(status, &format!("content-length: {}", body.len()))
                .await?;
            out.send(&body[..body.len() / 2]).await?;
            out.stream.flush().await?;
            // A reset rather than a clean close: the kernel sends RST on drop.
            out.stream.set_zero_linger()
        }
        Fault::NeverEnds => {
            out.head(200, "transfer-encoding: chunked").await?;
            out.chunk(br#"{"page_count": 1, "items": ["#).await?;
            let until = Instant::now() + NEVER_ENDS_FOR;
            while Instant::now() < until {
                tokio::time::sleep(TRICKLE_EVERY).await;
                out.chunk(br#"{"name": "trickle"},"#).await?;
            }
            Ok(())
        }
    }
}

/// 64 KiB of queue items, each followed by a comma: the array never closes.
fn filler() -> Vec<u8> {
    let item = br#"{"name": "filler", "messages_ready": 1, "messages_unacknowledged": 0},"#;
    item.repeat(64 * 1024 / item.len())
}

/// The management API's answer to `target`: its status and body.
async fn upstream(
    http: &reqwest::Client,
    target: &str,
    authorization: Option<String>,
) -> (u16, Vec<u8>) {
    let mut request = http.get(format!("{}{target}", management_url()));
    if let Some(authorization) = authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.map(|b| b.to_vec());
            (status, body.unwrap_or_default())
        }
        Err(_) => (502, Vec::new()),
    }
}
