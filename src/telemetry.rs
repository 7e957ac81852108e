//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`, less matrix-sdk's
//! warning after every sync of an account without a key backup, which would otherwise be a
//! line per logged-in user per sync). Crates that log through `log` (tokio-xmpp, sqlx) are
//! bridged into the same subscriber.

use tracing_subscriber::EnvFilter;

/// What is logged when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,matrix_sdk_crypto::backups=error";

/// Install the process-wide subscriber. Call once, from `main`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_filter_parses() {
        assert!(tracing_subscriber::EnvFilter::try_new(super::DEFAULT_FILTER).is_ok());
    }
}
