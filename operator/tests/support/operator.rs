//! The operator under test as a child process: its log, metrics and readiness,
//! and the signals a test sends it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{counter, eventually, kubeconfig, management_url};

/// A `warren-operator run` child process, killed when dropped.
pub struct OperatorProcess {
    child: Child,
    pub log: PathBuf,
    pub metrics_addr: String,
}

impl OperatorProcess {
    pub fn spawn(namespace: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let metrics_addr = format!("127.0.0.1:{port}");
        let log = std::env::temp_dir().join(format!("warren-operator-{namespace}-{port}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_warren-operator"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--metrics-addr",
                &metrics_addr,
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig())
            .env("WARREN_MANAGEMENT_URL", management_url())
            .env("RUST_LOG", "info,warren_operator=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn warren-operator");
        Self {
            child,
            log,
            metrics_addr,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running: not exited (a crash would show here, not as a new pid).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until its `/readyz` answers 200 (a standby is ready while it waits
    /// for the lease).
    pub async fn wait_ready(&self, within: Duration) {
        let url = format!("http://{}/readyz", self.metrics_addr);
        eventually(within, "the operator ready", || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// SIGTERM, as the kubelet sends when a pod is deleted; waits for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.metrics_addr))
            .await
            .and_then(|r| r.error_for_status())
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// `warren_operator_reconciles_total` of this process.
    pub async fn reconciles(&self) -> u64 {
        counter(&self.metrics().await, "warren_operator_reconciles_total") as u64
    }

    /// Waits until this process has reconciled `more` more times: the condition
    /// for "the operator looked again and decided", instead of a sleep.
    pub async fn wait_reconciles(&self, more: u64, within: Duration) {
        let target = self.reconciles().await + more;
        eventually(within, &format!("{more} more reconciliations"), || async {
            self.reconciles().await >= target
        })
        .await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
