//! Graceful shutdown on SIGTERM (what Kubernetes sends a pod) and SIGINT (Ctrl-C).

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Cancels `shutdown` on the first SIGTERM or SIGINT; spawn it at startup.
///
/// If the handlers cannot be installed the process keeps running (and logs why):
/// it then stops only on SIGKILL, which loses in-flight work but nothing else.
pub async fn shutdown_on_signal(shutdown: CancellationToken) {
    let (term, int) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    let (mut term, mut int) = match (term, int) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(error), _) | (_, Err(error)) => {
            error!(%error, "cannot install SIGTERM/SIGINT handlers; stop with SIGKILL");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn sigint_cancels_the_token() {
        // Our own handler first, so that a SIGINT sent before shutdown_on_signal
        // has installed its own cannot kill the test process.
        let _guard = signal(SignalKind::interrupt()).expect("handler");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(shutdown_on_signal(shutdown.clone()));
        // A signal that arrives before the task listens is missed: send until seen.
        for _ in 0..100 {
            let sent = Command::new("kill")
                .args(["-INT", &std::process::id().to_string()])
                .status()
                .expect("kill");
            assert!(sent.success());
            if tokio::time::timeout(Duration::from_millis(50), shutdown.cancelled())
                .await
                .is_ok()
            {
                break;
            }
        }
        assert!(shutdown.is_cancelled(), "SIGINT did not cancel within 5 s");
        task.await.expect("returns after cancelling");
    }
}
