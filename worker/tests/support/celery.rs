//! The Celery side of the compatibility tests: protocol/celery and its venv.
//! Shared by the operator's cluster tests through `#[path]`, so both crates'
//! tests create and use the same venv the same way.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The repository root (every crate sits one level below it).
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root")
        .to_path_buf()
}

/// protocol/celery: the Celery app and its requirements.
pub fn celery_dir() -> PathBuf {
    root().join("protocol/celery")
}

/// The venv's bin directory (.local/venv-celery), created with `pip install -r
/// requirements.txt` when missing. Blocking.
pub fn venv_bin() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = root().join(".local/venv-celery");
        let bin = venv.join("bin");
        if !bin.join("celery").exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3");
            assert!(ok.success(), "python3 -m venv failed");
            let ok = Command::new(bin.join("pip"))
                .args(["install", "-q", "-r"])
                .arg(celery_dir().join("requirements.txt"))
                .status()
                .expect("pip");
            assert!(ok.success(), "pip install celery failed");
        }
        bin
    })
    .clone()
}
