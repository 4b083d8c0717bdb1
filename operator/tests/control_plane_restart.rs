//! The control plane failing under the operator: kube-apiserver stopped while a
//! scale is due, then etcd stopped (the API server up but unable to store). The
//! operator must ride both out in the same process, not spin while they are down,
//! apply the due scale once when they are back, and see changes through its
//! watches afterwards. In a test binary of its own, since it takes the API server
//! away from every other test.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

fn taskqueue_body(max: i32) -> Value {
    json!({"metadata": {"name": "restart"}, "spec": {
        "queue": "", "scaleTargetRef": {"name": "worker"},
        "minReplicas": 1, "maxReplicas": max, "targetBacklogPerReplica": 10,
        "pollInterval": "1s",
        "scaleDown": {"stabilizationWindow": "2s", "policy": "Any"}
    }})
}

/// `cluster.sh stop|start COMPONENT`.
fn cluster(action: &str, component: &str) {
    let script = repo_root().join("deploy/local/cluster.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args([action, component])
        .output()
        .expect("run cluster.sh");
    assert!(
        output.status.success(),
        "cluster.sh {action} {component}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A stopped component, started again when dropped: a failing test must not
/// leave the cluster without its API server or etcd.
struct Stopped(&'static str);

impl Stopped {
    fn stop(component: &'static str) -> Self {
        cluster("stop", component);
        Self(component)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        cluster("start", self.0);
    }
}

/// CPU time the process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the operator runs");
    // Fields after the command name, which may hold spaces: state is the first,
    // utime and stime the 12th and 13th.
    let fields: Vec<u64> = stat
        .rsplit_once(") ")
        .expect("stat")
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|n| n.parse().expect("ticks"))
        .collect();
    let ticks_per_s: u64 = String::from_utf8(
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf")
            .stdout,
    )
    .expect("text")
    .trim()
    .parse()
    .expect("CLK_TCK");
    Duration::from_secs_f64((fields[0] + fields[1]) as f64 / ticks_per_s as f64)
}

fn errors_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("warren_operator_errors_total{"))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
#[ignore = "needs RabbitMQ and the local cluster: run by make test"]
async fn the_operator_rides_out_api_server_and_etcd_restarts() {
    let client = client().await;
    install_crd(&client).await;
    let ns = TestNamespace::new(&client, "wt-restart").await;
    let queue = unique("restart_q");
    fill_queue(&queue, 0).await;
    create_deployment(&client, &ns.name, "worker", 1).await;
    let mut operator = OperatorProcess::spawn(&ns.name, &[], &[]);
    let mut body = taskqueue_body(10);
    body["spec"]["queue"] = json!(queue);
    apply_taskqueue(&client, &ns.name, body.clone())
        .await
        .expect("valid TaskQueue");
    eventually(Duration::from_secs(30), "a first decision", || async {
        taskqueue(&client, &ns.name, "restart")
            .await
            .status
            .and_then(|s| s.desired_replicas)
            == Some(1)
    })
    .await;

    for (component, backlog) in [("kube-apiserver", 30), ("etcd", 60)] {
        let expected = backlog / 10;
        let before = operator.metrics().await;
        let stopped = Stopped::stop(component);
        let down_at = Instant::now();
        let cpu_at_stop = cpu_time(operator.pid());
        // The backlog grows while the control plane is away: a scale is due and
        // cannot be written.
        fill_queue(&queue, 30).await;
        // Without the API server a request fails at once; without etcd the API
        // server holds it, and the operator gives the reconciliation up after 20 s.
        eventually(
            Duration::from_secs(40),
            "the operator tried and failed to scale",
            || async { errors_total(&operator.metrics().await) > errors_total(&before) },
        )
        .await;
        // The outage itself: how long the control plane stays away.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let busy = cpu_time(operator.pid()) - cpu_at_stop;
        let down_for = down_at.elapsed();
        let restart_at = Instant::now();
        drop(stopped);
        let ready_in = restart_at.elapsed();
        eventually(
            Duration::from_secs(60),
            &format!("worker at {expected} after {component} is back"),
            || async { spec_replicas(&client, &ns.name, "worker").await == expected },
        )
        .await;
        let recovered_in = restart_at.elapsed();
        let share = busy.as_secs_f64() / down_for.as_secs_f64();
        println!(
            "{component} down {:.1} s: the operator used {:.2} s of CPU ({:.1} % of a core); restarted and serving in {:.1} s; worker scaled to {expected} {:.1} s after the restart began",
            down_for.as_secs_f64(),
            busy.as_secs_f64(),
            share * 100.0,
            ready_in.as_secs_f64(),
            recovered_in.as_secs_f64()
        );
        assert!(
            share < 0.25,
            "the operator spun while {component} was down: {:.0} % of a core",
            share * 100.0
        );
        // Applied once: the operator keeps deciding but writes nothing more.
        operator.wait_reconciles(10, Duration::from_secs(60)).await;
        let after = operator.metrics().await;
        let scales = counter(&after, "warren_operator_scales_total")
            - counter(&before, "warren_operator_scales_total");
        assert_eq!(scales, 1.0, "scales applied after {component} came back");
        assert_eq!(spec_replicas(&client, &ns.name, "worker").await, expected);
    }

    // The watches resumed: a change to the TaskQueue and a count read from the
    // Deployment cache rather than the API server.
    let cache_reads = |metrics: &str| {
        series(
            metrics,
            "warren_operator_target_reads_total{source=\"cache\"}",
        )
    };
    let before = operator.metrics().await;
    body["spec"]["maxReplicas"] = json!(4);
    apply_taskqueue(&client, &ns.name, body)
        .await
        .expect("valid TaskQueue");
    eventually(
        Duration::from_secs(30),
        "worker at the new maxReplicas 4",
        || async { spec_replicas(&client, &ns.name, "worker").await == 4 },
    )
    .await;
    operator.wait_reconciles(5, Duration::from_secs(30)).await;
    assert!(
        cache_reads(&operator.metrics().await) > cache_reads(&before),
        "the Deployment cache serves again"
    );
    assert!(operator.is_running(), "the operator exited");
    delete_queue(&queue).await;
}
