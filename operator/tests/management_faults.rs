//! Management API faults (issue #12) through a proxy the test controls, in front
//! of the real RabbitMQ: each fault must come out of `ManagementClient` as its own
//! typed error within the timeout, the client must stop reading huge and
//! never-ending answers early (bytes the proxy sent, the process's peak memory),
//! and a `BrokerPoller` must report the fault and read the real queue again
//! within two polls of the proxy passing through again.
//!
//! The cases run one at a time (`SERIAL`): the huge answers keep both cores busy
//! while they stream, which would stretch the other cases' timings.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;
use support::fault_proxy::{Fault, FaultProxy, HUGE_BYTES};
use support::*;
use tokio::sync::{Mutex, OnceCell, mpsc};
use warren_operator::TaskQueue;
use warren_operator::broker::management::{ListMode, MAX_BODY_BYTES, ManagementClient, RowsPath};
use warren_operator::broker::poller::{BrokerPoller, Watch};
use warren_operator::broker::{BrokerError, Endpoint, Password, QueueStats};
use warren_operator::metrics::Metrics;

const TIMEOUT: Duration = Duration::from_millis(500);
/// The huge answer's case: a debug build on a loaded 2-core machine took up to
/// 350 ms to read 32 MiB, close enough to [`TIMEOUT`] that the timeout could stop
/// the read before the cap; the case is about the cap.
const HUGE_TIMEOUT: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_millis(200);
/// Scheduling slack on a loaded 2-core machine, on top of what each wait allows.
const MARGIN: Duration = Duration::from_millis(500);
const MESSAGES: usize = 7;
/// What may sit in socket buffers between the proxy and a client that stopped
/// reading: the proxy's send buffer (net.ipv4.tcp_wmem max, 4 MiB) and the
/// client's receive buffer, which autotuning grows up to tcp_rmem max (32 MiB).
const IN_FLIGHT: u64 = 36 * 1024 * 1024;

static SERIAL: Mutex<()> = Mutex::const_new(());

/// The real queue every case reads (they only read it): made once, because a new
/// queue's count takes the statistics database about 2 s to show.
static QUEUE: OnceCell<String> = OnceCell::const_new();

/// A queue of [`MESSAGES`] messages that the broker deletes 10 minutes after the
/// run (`x-expires`: a test binary has no teardown for what its tests share).
async fn queue() -> String {
    QUEUE
        .get_or_init(|| async {
            let queue = unique("faults_q");
            let mut arguments = FieldTable::default();
            arguments.insert("x-expires".into(), AMQPValue::LongInt(600_000));
            let options = QueueDeclareOptions::default();
            fill_declared_queue(&queue, MESSAGES, options, arguments).await;
            // The poller's statistics cycles must read the real count too.
            let client = ManagementClient::new(Duration::from_secs(5));
            let queues = BTreeSet::from([queue.clone()]);
            eventually(Duration::from_secs(15), "the statistics count", || async {
                let direct = endpoint(&management_url());
                let (listing, _) = client.list(&direct, "/", &queues, ListMode::Stats).await;
                ready_of(&listing.ok().and_then(|l| l.get(&queue).cloned())) == Some(MESSAGES)
            })
            .await;
            queue
        })
        .await
        .clone()
}

/// The real queue and a proxy in front of the broker.
struct Case {
    queue: String,
    proxy: FaultProxy,
    endpoint: Endpoint,
}

impl Case {
    async fn new() -> Self {
        let proxy = FaultProxy::start().await;
        Self {
            queue: queue().await,
            endpoint: endpoint(&proxy.url),
            proxy,
        }
    }
}

/// The management API's user and password, as deploy/local/lib.sh sets them.
fn management_credentials() -> (String, String) {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| "guest".into());
    (
        var("WARREN_MANAGEMENT_USERNAME"),
        var("WARREN_MANAGEMENT_PASSWORD"),
    )
}

fn endpoint(url: &str) -> Endpoint {
    let (username, password) = management_credentials();
    Endpoint {
        url: url.to_owned(),
        username,
        password: Password::new(password),
        ca_pem: None,
    }
}

fn ready_of(stats: &Option<QueueStats>) -> Option<usize> {
    stats.as_ref().map(|s| s.ready as usize)
}

/// What one fault did to one `ManagementClient` call.
struct Measured {
    took: Duration,
    sent: u64,
}

/// One `list` and one `rows` call through `fault`: both fail with `reason`
/// within the timeout.
async fn through_client(
    case: &Case,
    fault: Fault,
    reason: &str,
    timeout: Duration,
) -> Vec<Measured> {
    let client = ManagementClient::new(timeout);
    let queues = BTreeSet::from([case.queue.clone()]);
    case.proxy.set(fault.clone());
    let mut measured = Vec::new();
    for call in ["list", "rows"] {
        let started = Instant::now();
        let result: Result<(), BrokerError> = if call == "list" {
            let (listing, requests) = client
                .list(&case.endpoint, "/", &queues, ListMode::Totals)
                .await;
            assert_eq!(requests, 1, "{fault:?}: one request, no retry");
            listing.map(drop)
        } else {
            let columns = "queue.name,consumer_tag";
            let (rows, _) = client
                .rows::<Value>(&case.endpoint, "/", RowsPath::Consumers, columns)
                .await;
            rows.map(drop)
        };
        let took = started.elapsed();
        let error = result.expect_err("the fault shows");
        assert_eq!(error.reason(), reason, "{fault:?} {call}: {error}");
        assert!(took < timeout + MARGIN, "{fault:?} {call}: {took:?}");
        // The bytes of this call's request, once the proxy let go of it.
        let served = case.proxy.wait_finished(Duration::from_secs(10)).await;
        let sent = served.last().expect("a request reached the proxy").sent;
        eprintln!("{fault:?} {call}: {reason} after {took:?}, {sent} bytes sent: {error}");
        measured.push(Measured { took, sent });
    }
    case.proxy.set(Fault::PassThrough);
    measured
}

/// The next reading of `object`'s queue, within `within`.
async fn next_reading(
    poller: &BrokerPoller,
    triggered: &mut mpsc::UnboundedReceiver<ObjectRef<TaskQueue>>,
    object: &ObjectRef<TaskQueue>,
    within: Duration,
) -> Result<QueueStats, BrokerError> {
    tokio::time::timeout(within, triggered.recv())
        .await
        .expect("a reading within the wait")
        .expect("the poller runs");
    poller.latest(object).expect("a sample").result
}

/// A poller reads the real queue, shows `fault` as `reason` within two polls of
/// the switch to it, and reads the real queue again within two polls of the
/// switch back.
async fn through_poller(case: &Case, fault: Fault, reason: &str, timeout: Duration) {
    let (poller, mut triggered) = BrokerPoller::new(timeout, Arc::new(Metrics::new()));
    let object = ObjectRef::new("tq").within("faults");
    poller.watch(
        object.clone(),
        Watch {
            endpoint: case.endpoint.clone(),
            vhost: "/".into(),
            queue: case.queue.clone(),
            interval: INTERVAL,
        },
    );
    // A cycle's longest: a request that times out, plus the pause to the next.
    let cycle = timeout + INTERVAL + MARGIN;
    let first = next_reading(&poller, &mut triggered, &object, cycle * 2).await;
    assert_eq!(ready_of(&first.ok()), Some(MESSAGES), "the real queue");

    while triggered.try_recv().is_ok() {}
    case.proxy.set(fault.clone());
    let switched = Instant::now();
    // The reading in flight may still be Ok; the next one is of the fault.
    let mut error = None;
    for _ in 0..2 {
        match next_reading(&poller, &mut triggered, &object, cycle).await {
            Ok(_) => continue,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let to_error = switched.elapsed();
    let error = error.unwrap_or_else(|| panic!("{fault:?}: no failed reading in two polls"));
    assert_eq!(
        error.reason(),
        reason,
        "{fault:?} through the poller: {error}"
    );

    while triggered.try_recv().is_ok() {}
    case.proxy.set(Fault::PassThrough);
    let switched = Instant::now();
    let mut readings = 0;
    loop {
        readings += 1;
        assert!(readings <= 2, "{fault:?}: still failing two polls after");
        let reading = next_reading(&poller, &mut triggered, &object, cycle).await;
        if let Ok(stats) = reading {
            assert_eq!(stats.ready as usize, MESSAGES, "{fault:?}: the real count");
            break;
        }
    }
    let to_recover = switched.elapsed();
    // The request in flight at the switch may run its whole timeout; the next
    // poll follows within an interval.
    assert!(to_recover < cycle + INTERVAL, "{fault:?}: {to_recover:?}");
    eprintln!(
        "{fault:?} poller: {reason} after {to_error:?}; Ok again after {to_recover:?} ({readings} reading(s))"
    );
    // Stops the poller's loop, which would otherwise outlive the test's proxy.
    poller.unwatch(&object);
}

/// Runs one fault through the client and through a poller.
async fn fault_case(fault: Fault, reason: &str, timeout: Duration) -> Vec<Measured> {
    let _serial = SERIAL.lock().await;
    let case = Case::new().await;
    let measured = through_client(&case, fault.clone(), reason, timeout).await;
    through_poller(&case, fault, reason, timeout).await;
    measured
}

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn the_proxy_passes_the_real_queue_through() {
    let _serial = SERIAL.lock().await;
    let case = Case::new().await;
    let client = ManagementClient::new(TIMEOUT);
    let queues = BTreeSet::from([case.queue.clone()]);
    let (listing, _) = client
        .list(&case.endpoint, "/", &queues, ListMode::Totals)
        .await;
    let found = listing.expect("read through the proxy");
    assert_eq!(ready_of(&found.get(&case.queue).cloned()), Some(MESSAGES));
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn slow_answers_time_out() {
    fault_case(Fault::Delay(TIMEOUT * 2), "Timeout", TIMEOUT).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn server_errors_are_reported_as_such() {
    fault_case(Fault::ServerError, "ServerError", TIMEOUT).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn truncated_json_is_malformed() {
    fault_case(Fault::Truncated, "MalformedResponse", TIMEOUT).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn malformed_json_is_malformed() {
    fault_case(Fault::Malformed, "MalformedResponse", TIMEOUT).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn connection_resets_are_unreachable() {
    fault_case(Fault::Reset, "Unreachable", TIMEOUT).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn huge_answers_are_cut_off_at_the_cap() {
    let measured = fault_case(Fault::Huge, "ResponseTooLarge", HUGE_TIMEOUT).await;
    for m in &measured {
        assert!(
            m.sent <= MAX_BODY_BYTES as u64 + IN_FLIGHT,
            "read on past the cap: {} bytes sent",
            m.sent
        );
        assert!(m.sent < HUGE_BYTES / 2, "{} bytes sent", m.sent);
    }
    // Without the cap one answer alone would have taken 200 MiB.
    let peak = peak_memory();
    eprintln!(
        "peak resident memory of the test process: {} MiB",
        peak >> 20
    );
    assert!(peak < HUGE_BYTES / 2, "peak memory {} MiB", peak >> 20);
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn huge_declared_answers_are_refused_unread() {
    let measured = fault_case(Fault::HugeDeclared, "ResponseTooLarge", TIMEOUT).await;
    for m in &measured {
        // Refused on the head: the body only filled the socket buffers.
        assert!(m.sent <= IN_FLIGHT, "{} bytes sent", m.sent);
        assert!(m.took < TIMEOUT / 2, "{:?}", m.took);
    }
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run by make test"]
async fn answers_that_never_end_time_out() {
    let measured = fault_case(Fault::NeverEnds, "Timeout", TIMEOUT).await;
    for m in &measured {
        // A trickle of 20 bytes per 50 ms: the client hung up at its timeout.
        assert!(m.sent < 4096, "{} bytes sent", m.sent);
        assert!(m.took >= TIMEOUT, "{:?}", m.took);
    }
}
