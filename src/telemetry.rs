//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`, less matrix-sdk's
//! warning after every sync of an account without a key backup, which would otherwise be a
//! line per logged-in user per sync). Crates that log through `log` (tokio-xmpp, sqlx) are
//! bridged into the same subscriber.
//!
//! matrix-sdk logs every refused request at ERROR, from inside its `send` span, 404s
//! included; and a personal login meets several 404s it expects and handles (no secret
//! storage key yet, a room without an encryption state, no key backup): three ERROR lines a
//! login that ask nothing of the operator. Those are left out ([`ExpectedNotFound`]);
//! every other refusal still shows, and a 404 that matters reaches the log as the gateway's
//! own error where it calls.

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// What is logged when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,matrix_sdk_crypto::backups=error";

/// The target of matrix-sdk's request log.
const SDK_REQUESTS: &str = "matrix_sdk::http_client";

/// Install the process-wide subscriber. Call once, from `main`.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter)
                .with_filter(ExpectedNotFound),
        )
        .init();
}

/// Leaves out matrix-sdk's request-log events inside a request span whose answer was a 404
/// (the span's `status` field, recorded when the answer comes).
struct ExpectedNotFound;

/// Marks a matrix-sdk request span answered with 404.
struct NotFound;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for ExpectedNotFound {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        if event.metadata().target() != SDK_REQUESTS {
            return true;
        }
        let Some(span) = cx.event_span(event) else {
            return true;
        };
        !span
            .scope()
            .any(|s| s.extensions().get::<NotFound>().is_some())
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        let mut status = Status(None);
        attrs.record(&mut status);
        mark(status, id, &cx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        let mut status = Status(None);
        values.record(&mut status);
        mark(status, id, &cx);
    }
}

fn mark<S: Subscriber + for<'a> LookupSpan<'a>>(status: Status, id: &Id, cx: &Context<'_, S>) {
    if status.0 != Some(404) {
        return;
    }
    if let Some(span) = cx.span(id) {
        if span.metadata().target().starts_with("matrix_sdk") {
            span.extensions_mut().replace(NotFound);
        }
    }
}

/// The `status` field of a span, when it is a number.
struct Status(Option<u64>);

impl Visit for Status {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.0 = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn the_default_filter_parses() {
        assert!(tracing_subscriber::EnvFilter::try_new(super::DEFAULT_FILTER).is_ok());
    }

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A matrix-sdk request answered with `status`, then its error line.
    fn refused(status: u16) {
        let span = tracing::error_span!(target: "matrix_sdk::http_client", "send",
            status = tracing::field::Empty);
        let _in = span.enter();
        span.record("status", status);
        tracing::error!(target: "matrix_sdk::http_client", "refused with {status}");
    }

    #[test]
    fn only_matrix_sdk_404_lines_are_left_out() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(EnvFilter::new(DEFAULT_FILTER))
                .with_filter(ExpectedNotFound),
        );
        tracing::subscriber::with_default(subscriber, || {
            refused(404);
            refused(500);
            let span = tracing::error_span!("send", status = 404u16);
            let _in = span.enter();
            tracing::error!("the gateway's own 404");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("refused with 404"), "{text}");
        assert!(text.contains("refused with 500"), "{text}");
        assert!(text.contains("the gateway's own 404"), "{text}");
    }
}
