//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`). Crates that log
//! through `log` (tokio-xmpp, sqlx) are bridged into the same subscriber.

use tracing_subscriber::EnvFilter;

/// Install the process-wide subscriber. Call once, from `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
