//! Log setup: `RUST_LOG` when set, else the binary's default filter, as text or JSON.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// How log lines are written: text for people, JSON for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The global log subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot install the log subscriber ({0}): init_tracing must be called once, \
     before anything else installs one"
)]
pub struct TracingInitError(String);

/// Installs the global log subscriber: the filter is `RUST_LOG` when it parses,
/// else `default_filter` (say `"info,lapin=off"`); colours only on a terminal.
pub fn init_tracing(format: LogFormat, default_filter: &str) -> Result<(), TracingInitError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| TracingInitError(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_subscriber_is_an_error_not_a_panic() {
        // The first call may lose to another test's subscriber; the second always does.
        let _ = init_tracing(LogFormat::Text, "info");
        let error = init_tracing(LogFormat::Json, "info").expect_err("already installed");
        assert!(error.to_string().contains("called once"), "{error}");
    }

    #[test]
    fn formats_are_flag_values() {
        assert_eq!(
            LogFormat::from_str("json", false).expect("parses"),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::from_str("text", false).expect("parses"),
            LogFormat::Text
        );
    }
}
