//! Client-server API calls as the appservice: ruma request types, sent over reqwest with
//! the as_token and identity assertion (`?user_id=`) for the puppet they act as.
//!
//! matrix-sdk 0.18 has no appservice mode (ARCHITECTURE.md says why this route was taken).

use std::borrow::Cow;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use causeway_bridge::JoinFailure;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{
    AppserviceUserIdentity, IncomingResponse, MatrixVersion, OutgoingRequestAppserviceExt,
    SupportedVersions,
};
use ruma::UserId;
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

/// The path-builder input of an endpoint, from the versions the gateway speaks.
pub trait PathInput: PathBuilder {
    /// The input.
    fn input(versions: &SupportedVersions) -> Self::Input<'_>;
}

impl PathInput for SinglePath {
    fn input(_: &SupportedVersions) -> Self::Input<'_> {}
}

impl PathInput for VersionHistory {
    fn input(versions: &SupportedVersions) -> Self::Input<'_> {
        Cow::Borrowed(versions)
    }
}

/// The appservice's connection to its homeserver.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    as_token: String,
    versions: SupportedVersions,
}

impl Client {
    /// A client for the homeserver at `base` (`http://127.0.0.1:8008`).
    pub fn new(base: &str, as_token: &str) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("the HTTP client builds");
        let versions = SupportedVersions {
            versions: [MatrixVersion::V1_11].into(),
            features: Default::default(),
        };
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            as_token: as_token.to_owned(),
            versions,
        }
    }

    /// Send `request` as `user` (a puppet), or as the appservice's own user.
    pub async fn call<R>(
        &self,
        request: R,
        user: Option<&UserId>,
        retry: Retry,
    ) -> Result<R::IncomingResponse, CallError>
    where
        R: OutgoingRequestAppserviceExt,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        // Always: endpoints where a token is optional (the room directory) may still need
        // one on this homeserver, and the appservice is allowed everywhere.
        let token = SendAccessToken::Always(&self.as_token);
        let path = R::PathBuilder::input(&self.versions);
        let http_request = match user {
            Some(user) => request.try_into_http_request_with_identity::<Vec<u8>>(
                &self.base,
                token,
                AppserviceUserIdentity::new(user),
                path,
            ),
            None => request.try_into_http_request::<Vec<u8>>(&self.base, token, path),
        }
        .map_err(|e| CallError::Invalid(format!("cannot build the request: {e}")))?;
        let response = self.execute(http_request, retry).await?;
        R::IncomingResponse::try_from_http_response(response)
            .map_err(|e| CallError::Invalid(format!("cannot read the answer: {e}")))
    }

    async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
        retry: Retry,
    ) -> Result<http::Response<Vec<u8>>, CallError> {
        let (parts, body) = request.into_parts();
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_jitter()
            .without_max_times()
            .build();
        let deadline = match retry {
            Retry::Once => None,
            Retry::For(limit) => Some(tokio::time::Instant::now() + limit),
        };
        loop {
            let attempt = self.attempt(&parts, &body).await;
            let err = match attempt {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let Some(deadline) = deadline.filter(|_| err.0.transient()) else {
                return Err(err.0);
            };
            let delay = err
                .1
                .unwrap_or_else(|| delays.next().unwrap_or(Duration::from_secs(10)));
            if tokio::time::Instant::now() + delay > deadline {
                warn!(path = %parts.uri.path(), error = %err.0, "giving up on the homeserver");
                return Err(err.0);
            }
            debug!(path = %parts.uri.path(), error = %err.0, ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt; on failure, the error and how long the homeserver asked us to wait.
    async fn attempt(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<http::Response<Vec<u8>>, (CallError, Option<Duration>)> {
        let response = self
            .http
            .request(parts.method.clone(), parts.uri.to_string())
            .headers(parts.headers.clone())
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| (CallError::Unreachable(error_chain(&e)), None))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| (CallError::Unreachable(error_chain(&e)), None))?;
        if status.is_success() {
            let mut out = http::Response::new(bytes.to_vec());
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            return Ok(out);
        }
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let text = |key: &str| json.get(key).and_then(|v| v.as_str()).unwrap_or_default();
        let wait = json
            .get("retry_after_ms")
            .and_then(|v| v.as_u64())
            .map(Duration::from_millis);
        Err((
            CallError::Refused {
                status: status.as_u16(),
                errcode: text("errcode").to_owned(),
                error: text("error").to_owned(),
            },
            wait,
        ))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
