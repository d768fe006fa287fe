//! Structured logs with `tracing`: one line per event, fields before the message.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once. `RUST_LOG` filters (default `info`);
/// `LOG_FORMAT=json` prints JSON lines, anything else human-readable text.
/// A second call (tests start several services in one process) is a no-op.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
