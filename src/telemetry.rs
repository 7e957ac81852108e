//! Logging: tracing to stderr, filtered by `RUST_LOG` (default `info`, less matrix-sdk's
//! warning after every sync of an account without a key backup, which would otherwise be a
//! line per logged-in user per sync). Crates that log through `log` (tokio-xmpp, sqlx) are
//! bridged into the same subscriber.
//!
//! matrix-sdk logs every refused request at ERROR, from inside its `send` span, 404s
//! included; and a personal login meets several 404s it expects and handles (no secret
//! storage key yet, a room without an encryption state, no key backup): three ERROR lines a
//! login that ask nothing of the operator. [`Quieted`] and [`QuietFormat`] leave those out —
//! a 404 for account data, room state or the key backup's version — and every other
//! refusal still shows.

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// What is logged when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,matrix_sdk_crypto::backups=error";

/// The target of matrix-sdk's request log, and the name of its span for one request.
const SDK_REQUESTS: &str = "matrix_sdk::http_client";
const SDK_REQUEST_SPAN: &str = "send";

/// Install the process-wide subscriber. Call once, from `main`.
pub fn init() {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    tracing_subscriber::registry()
        .with(
            fmt::layer()
                .event_format(QuietFormat(fmt::format()))
                .with_writer(std::io::stderr)
                .with_filter(Quieted { env }),
        )
        .init();
}

/// `RUST_LOG`'s filter, keeping matrix-sdk's request spans (INFO) alive whatever the level
/// to note their `uri` and `status` (for [`QuietFormat`]); everything else is the
/// `EnvFilter`'s to decide, at the callsite as before.
struct Quieted {
    env: EnvFilter,
}

/// What a matrix-sdk request span recorded: its URI and the answer's status.
#[derive(Default)]
struct Request {
    uri: Option<String>,
    status: Option<u64>,
}

impl Request {
    /// A 404 matrix-sdk expects and handles: absent account data, absent room state, no
    /// key backup.
    fn expected_not_found(&self) -> bool {
        let Some(uri) = &self.uri else { return false };
        let path = uri.split('?').next().unwrap_or_default();
        self.status == Some(404)
            && (path.contains("/account_data/")
                || path.contains("/state/")
                || path.ends_with("/room_keys/version"))
    }
}

impl Visit for Request {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "status" {
            self.status = Some(value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "uri" {
            self.uri = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "uri" {
            self.uri = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

fn is_request_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == SDK_REQUESTS && meta.name() == SDK_REQUEST_SPAN
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for Quieted {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        is_request_span(meta) || Filter::<S>::enabled(&self.env, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_request_span(meta) {
            return Interest::always();
        }
        Filter::<S>::callsite_enabled(&self.env, meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // The request spans are INFO.
        Filter::<S>::max_level_hint(&self.env).map(|level| level.max(LevelFilter::INFO))
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        if is_request_span(attrs.metadata()) {
            if let Some(span) = cx.span(id) {
                let mut request = Request::default();
                attrs.record(&mut request);
                span.extensions_mut().replace(request);
            }
        }
        Filter::<S>::on_new_span(&self.env, attrs, id, cx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        if let Some(span) = cx.span(id) {
            if let Some(request) = span.extensions_mut().get_mut::<Request>() {
                values.record(request);
            }
        }
        Filter::<S>::on_record(&self.env, id, values, cx);
    }

    fn on_enter(&self, id: &Id, cx: Context<'_, S>) {
        Filter::<S>::on_enter(&self.env, id, cx);
    }

    fn on_exit(&self, id: &Id, cx: Context<'_, S>) {
        Filter::<S>::on_exit(&self.env, id, cx);
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        Filter::<S>::on_close(&self.env, id, cx);
    }
}

/// The log line format, writing nothing for matrix-sdk's request-log events inside a
/// request span that [`Quieted`] saw answered with an expected 404. (Done here rather than
/// in the filter: a per-layer filter that drops an event it first let through trips
/// tracing-subscriber's bookkeeping.)
struct QuietFormat<F>(F);

impl<S, N, F> FormatEvent<S, N> for QuietFormat<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        cx: &FmtContext<'_, S, N>,
        writer: format::Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if event.metadata().target() == SDK_REQUESTS {
            let expected = cx.event_scope().is_some_and(|mut scope| {
                scope.any(|span| {
                    span.extensions()
                        .get::<Request>()
                        .is_some_and(Request::expected_not_found)
                })
            });
            if expected {
                return Ok(());
            }
        }
        self.0.format_event(cx, writer, event)
    }
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

    /// A matrix-sdk request to `path` answered with `status`, then its error line, as
    /// matrix-sdk 0.18 logs them (an INFO span, its fields recorded as the request goes).
    fn refused(path: &str, status: u16) {
        let span = tracing::info_span!(target: "matrix_sdk::http_client", "send",
            uri = tracing::field::Empty, status = tracing::field::Empty);
        let _in = span.enter();
        span.record("uri", format!("http://hs{path}"));
        span.record("status", status);
        tracing::error!(target: "matrix_sdk::http_client", "refused {path} with {status}");
    }

    /// What the subscriber of `init` writes, with `RUST_LOG` = `filter`, of `run`.
    fn logged(filter: &str, run: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            fmt::layer()
                .event_format(QuietFormat(fmt::format()))
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(Quieted {
                    env: EnvFilter::new(filter),
                }),
        );
        tracing::subscriber::with_default(subscriber, run);
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn only_the_404s_matrix_sdk_expects_are_left_out() {
        for filter in [DEFAULT_FILTER, "warn"] {
            let text = logged(filter, || {
                refused(
                    "/_matrix/client/v3/user/@a:hs/account_data/m.secret_storage.default_key",
                    404,
                );
                refused(
                    "/_matrix/client/v3/rooms/!r:hs/state/m.room.encryption/",
                    404,
                );
                refused("/_matrix/client/v3/room_keys/version", 404);
                refused("/_matrix/client/v3/login", 404);
                refused("/_matrix/client/v3/sync", 500);
                let span = tracing::error_span!("send", status = 404u16);
                let _in = span.enter();
                tracing::error!("the gateway's own 404");
            });
            assert!(!text.contains("account_data"), "{filter}: {text}");
            assert!(!text.contains("m.room.encryption"), "{filter}: {text}");
            assert!(!text.contains("room_keys"), "{filter}: {text}");
            assert!(
                text.contains("refused /_matrix/client/v3/login with 404"),
                "{filter}: {text}"
            );
            assert!(
                text.contains("refused /_matrix/client/v3/sync with 500"),
                "{filter}: {text}"
            );
            assert!(text.contains("the gateway's own 404"), "{filter}: {text}");
        }
    }

    #[test]
    fn the_level_cap_stays_the_filters() {
        let subscriber = tracing_subscriber::registry().with(fmt::layer().with_filter(Quieted {
            env: EnvFilter::new(DEFAULT_FILTER),
        }));
        tracing::subscriber::with_default(subscriber, || {
            assert!(!tracing::enabled!(tracing::Level::DEBUG));
            assert!(tracing::enabled!(tracing::Level::INFO));
            assert_eq!(LevelFilter::current(), LevelFilter::INFO);
        });
    }
}
