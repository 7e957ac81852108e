//! Why a call to the homeserver failed, and how long to wait before the next attempt:
//! the bridge's `CallError` from plain answers and from matrix-sdk alike, the wait a
//! homeserver asks for when it rate-limits (`M_LIMIT_EXCEEDED`), and the retry loop that
//! honours it.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use causeway_bridge::JoinFailure;
use ruma::api::error::{ErrorBody, ErrorKind, RetryAfter};
use tracing::{debug, warn};

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// One attempt: the caller reports failure at once (joins, look-ups).
    Once,
    /// Retry transport failures, 5xx and rate limiting with backoff for up to this long
    /// (message sends: a homeserver restart must not lose them).
    For(Duration),
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// No HTTP answer (connection refused, reset, timeout).
    #[error("homeserver unreachable: {0}")]
    Unreachable(String),
    /// The homeserver answered with an error.
    #[error("{errcode} ({status}): {error}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Matrix error code (`M_FORBIDDEN`).
        errcode: String,
        /// The homeserver's words.
        error: String,
    },
    /// The request could not be built or the answer not understood.
    #[error("{0}")]
    Invalid(String),
}

impl CallError {
    /// The Matrix error code, when the homeserver gave one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            CallError::Refused { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The XEP-0045 failure a join meets when the homeserver refuses this way, with the
    /// text for the user.
    pub fn join_failure(&self) -> (JoinFailure, String) {
        let text = self.to_string();
        let failure = match self {
            CallError::Unreachable(_) => JoinFailure::Unreachable,
            CallError::Refused { error, .. } if error.contains("banned") => JoinFailure::Banned,
            CallError::Refused {
                errcode, status, ..
            } => match errcode.as_str() {
                "M_NOT_FOUND" => JoinFailure::NoSuchRoom,
                "M_FORBIDDEN" => JoinFailure::InviteOnly,
                _ if *status == 404 => JoinFailure::NoSuchRoom,
                _ => JoinFailure::Other,
            },
            CallError::Invalid(_) => JoinFailure::Other,
        };
        (failure, text)
    }

    fn transient(&self) -> bool {
        match self {
            CallError::Unreachable(_) => true,
            CallError::Refused { status, .. } => *status == 429 || *status >= 500,
            CallError::Invalid(_) => false,
        }
    }
}

/// One plain request that failed: why, how long the homeserver asked us to wait, and
/// whether it may have done what was asked all the same (its answer lost on the way).
pub(super) struct Failed {
    pub error: CallError,
    pub wait: Option<Duration>,
    pub maybe_done: bool,
}

impl Failed {
    /// No answer came. Unless the connection was never made, the request may have been
    /// carried out.
    pub fn unanswered(e: &reqwest::Error) -> Failed {
        Failed {
            error: CallError::Unreachable(error_chain(e)),
            wait: None,
            maybe_done: !e.is_connect(),
        }
    }
}

/// Attempt until success, a failure that is not transient, or the end of `retry`'s
/// patience: between attempts, the wait the homeserver asked for, else growing ones.
/// `on` names what is tried, for the logs.
pub(super) async fn retrying<T, F, Fut>(
    retry: Retry,
    on: &str,
    mut attempt: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (CallError, Option<Duration>)>>,
{
    let mut delays = backoff();
    let deadline = match retry {
        Retry::Once => None,
        Retry::For(limit) => Some(tokio::time::Instant::now() + limit),
    };
    loop {
        let (err, asked) = match attempt().await {
            Ok(done) => return Ok(done),
            Err(failure) => failure,
        };
        let Some(deadline) = deadline.filter(|_| err.transient()) else {
            return Err(err);
        };
        let delay = asked.unwrap_or_else(|| delays.next().unwrap_or(Duration::from_secs(10)));
        if tokio::time::Instant::now() + delay > deadline {
            warn!(on, error = %err, "giving up on the homeserver");
            return Err(err);
        }
        debug!(on, error = %err, ?delay, "retrying");
        tokio::time::sleep(delay).await;
    }
}

/// Growing waits between attempts, from 200 ms to 10 s.
fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

/// A matrix-sdk failure in the terms of the rest of the bridge.
pub fn sdk_error(e: &matrix_sdk::Error) -> CallError {
    sdk_failure(e).0
}

/// [`sdk_error`], with the wait the homeserver asked for.
pub(crate) fn sdk_failure(e: &matrix_sdk::Error) -> (CallError, Option<Duration>) {
    if let Some(api) = e.as_client_api_error() {
        return refusal(api);
    }
    let error = match e {
        matrix_sdk::Error::Http(http) if matches!(**http, matrix_sdk::HttpError::Reqwest(_)) => {
            CallError::Unreachable(error_chain(e))
        }
        _ => CallError::Invalid(error_chain(e)),
    };
    (error, None)
}

/// A homeserver's error answer (as ruma reads it, from a plain request's answer or
/// matrix-sdk's), with the wait it asked for.
pub(super) fn refusal(api: &ruma::api::error::Error) -> (CallError, Option<Duration>) {
    let (errcode, error) = match &api.body {
        ErrorBody::Standard(standard) => (
            standard.kind.errcode().to_string(),
            standard.message.clone(),
        ),
        ErrorBody::Json(json) => {
            let text = |key: &str| json.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            (text("errcode").to_owned(), text("error").to_owned())
        }
        ErrorBody::NotJson { .. } => (String::new(), String::new()),
    };
    let refused = CallError::Refused {
        status: api.status_code.as_u16(),
        errcode,
        error,
    };
    (refused, asked_wait(api.error_kind()))
}

/// How long a rate-limited client is asked to wait (`M_LIMIT_EXCEEDED`): the
/// `Retry-After` header, else the body's `retry_after_ms` (ruma reads both into one
/// field, the header first). A moment already past asks for no wait.
fn asked_wait(kind: Option<&ErrorKind>) -> Option<Duration> {
    let Some(ErrorKind::LimitExceeded(limit)) = kind else {
        return None;
    };
    match limit.retry_after? {
        RetryAfter::Delay(delay) => Some(delay),
        RetryAfter::DateTime(at) => Some(at.duration_since(SystemTime::now()).unwrap_or_default()),
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use ruma::api::EndpointError;
    use serde_json::json;

    use super::*;

    /// A homeserver's error answer, as ruma reads it.
    fn answer(status: u16, retry_after: Option<&str>, body: &[u8]) -> ruma::api::error::Error {
        let mut response = http::Response::new(body.to_vec());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        if let Some(value) = retry_after {
            let value = http::HeaderValue::from_str(value).unwrap();
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
        ruma::api::error::Error::from_http_response(response)
    }

    fn json_answer(status: u16, retry_after: Option<&str>, body: serde_json::Value) -> Failure {
        refusal(&answer(status, retry_after, body.to_string().as_bytes()))
    }

    type Failure = (CallError, Option<Duration>);

    fn limited_without_ms() -> serde_json::Value {
        json!({"errcode": "M_LIMIT_EXCEEDED", "error": "slow down"})
    }

    #[test]
    fn a_rate_limit_asks_for_its_wait_the_header_before_the_body() {
        let limited = json!({
            "errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests", "retry_after_ms": 2500
        });
        let (error, wait) = json_answer(429, None, limited.clone());
        assert_eq!(wait, Some(Duration::from_millis(2500)));
        assert_eq!(error.errcode(), Some("M_LIMIT_EXCEEDED"));
        assert!(error.transient());
        let (_, wait) = json_answer(429, Some("7"), limited);
        assert_eq!(wait, Some(Duration::from_secs(7)));
        // A moment already past asks for no wait.
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        let (_, wait) = json_answer(429, Some(past), limited_without_ms());
        assert_eq!(wait, Some(Duration::ZERO));
    }

    #[test]
    fn other_refusals_ask_for_no_wait_and_keep_their_words() {
        assert_eq!(json_answer(429, None, limited_without_ms()).1, None);
        let forbidden = json!({"errcode": "M_FORBIDDEN", "error": "not yours"});
        let (error, wait) = json_answer(403, Some("7"), forbidden);
        assert_eq!(wait, None);
        assert_eq!(error.to_string(), "M_FORBIDDEN (403): not yours");
        assert!(!error.transient());
        // A proxy's page instead of a Matrix answer: the status alone.
        let (error, wait) = refusal(&answer(502, None, b"<html>Bad Gateway</html>"));
        assert_eq!((error.errcode(), wait), (Some(""), None));
        assert!(error.transient());
    }
}
