//! Client-server API calls: ruma request types sent over reqwest, either as the appservice
//! (the as_token, with identity assertion `?user_id=` for the puppet they act as) or as a
//! personal login (that user's own access token and homeserver, from their matrix-sdk
//! client). Room messages of a personal login go through matrix-sdk, which encrypts them
//! in encrypted rooms.
//!
//! matrix-sdk 0.18 has no appservice mode, and its generic `send` has bounds it does not
//! export (ARCHITECTURE.md says why this route was taken). Why a call failed, and how long
//! to wait before trying again, is `failure`'s.

mod failure;
mod media;
mod once;

use std::borrow::Cow;
use std::time::Duration;

use causeway_bridge::ListedRoom;
use ruma::api::auth_scheme::{AuthScheme, SendAccessToken};
use ruma::api::client::message;
use ruma::api::path_builder::{PathBuilder, SinglePath, VersionHistory};
use ruma::api::{
    AppserviceUserIdentity, EndpointError, IncomingResponse, MatrixVersion,
    OutgoingRequestAppserviceExt, SupportedVersions,
};
use ruma::events::AnyTimelineEvent;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, RoomId, TransactionId, UserId};
use tracing::debug;

pub(crate) use failure::sdk_failure;
use failure::{refusal, retrying, Failed};
pub use failure::{sdk_error, CallError, Retry};

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

/// A connection to a homeserver, as the appservice or as one personal login.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    versions: SupportedVersions,
    reach: Reach,
}

/// Whose token calls carry.
#[derive(Clone)]
enum Reach {
    /// The appservice: its homeserver's base URL and its token.
    Appservice { base: String, as_token: String },
    /// A user's own login: its matrix-sdk client knows the homeserver and the token.
    Personal(matrix_sdk::Client),
    /// A user's token given at login, before there is a session.
    Token { base: String, token: String },
}

impl std::fmt::Debug for Reach {
    // The tokens stay out of every log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reach::Appservice { base, .. } => write!(f, "Appservice({base})"),
            Reach::Personal(sdk) => write!(f, "Personal({:?})", sdk.user_id()),
            Reach::Token { base, .. } => write!(f, "Token({base})"),
        }
    }
}

/// How long one plain request may take, answer included (a personal login's HTTP client,
/// shared with matrix-sdk, has no overall timeout: its syncs wait on the server).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client for the homeserver: connections given up after 10 s. The appservice's,
/// and the one every personal login shares (matrix-sdk's included).
pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("causeway/", env!("CARGO_PKG_VERSION")))
        .tls_version_min(reqwest::tls::Version::TLS_1_2)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("the HTTP client builds")
}

fn versions() -> SupportedVersions {
    SupportedVersions {
        versions: [MatrixVersion::V1_11].into(),
        features: Default::default(),
    }
}

impl Client {
    /// The homeserver's host and port, for the appservice's client (what the catch-up
    /// watches); `None` for a personal login.
    pub fn appservice_host(&self) -> Option<(String, u16)> {
        let Reach::Appservice { base, .. } = &self.reach else {
            return None;
        };
        let url = reqwest::Url::parse(base).ok()?;
        Some((url.host_str()?.to_owned(), url.port_or_known_default()?))
    }

    /// The appservice's client for the homeserver at `base` (`http://127.0.0.1:8008`).
    pub fn new(base: &str, as_token: &str) -> Client {
        Client {
            http: http_client(),
            versions: versions(),
            reach: Reach::Appservice {
                base: base.trim_end_matches('/').to_owned(),
                as_token: as_token.to_owned(),
            },
        }
    }

    /// A personal login's client: calls carry the user's own token to their homeserver.
    pub fn personal(sdk: matrix_sdk::Client) -> Client {
        Client {
            http: sdk.http_client().clone(),
            versions: versions(),
            reach: Reach::Personal(sdk),
        }
    }

    /// A client with a user's access token (to learn whose it is).
    pub fn token(base: &str, token: &str, http: &reqwest::Client) -> Client {
        Client {
            http: http.clone(),
            versions: versions(),
            reach: Reach::Token {
                base: base.trim_end_matches('/').to_owned(),
                token: token.to_owned(),
            },
        }
    }

    /// Whether calls act for one user's own account.
    pub fn is_personal(&self) -> bool {
        self.sdk().is_some()
    }

    /// A personal login's matrix-sdk client.
    fn sdk(&self) -> Option<&matrix_sdk::Client> {
        match &self.reach {
            Reach::Personal(sdk) => Some(sdk),
            _ => None,
        }
    }

    /// Whether the account is in `room` on Matrix already (a personal login's rooms; the
    /// appservice's puppets join on demand, so never).
    pub fn in_room(&self, room: &RoomId) -> bool {
        self.sdk()
            .and_then(|sdk| sdk.get_room(room))
            .is_some_and(|r| r.state() == matrix_sdk::RoomState::Joined)
    }

    /// After a personal account joined `room` through a request of ours: its matrix-sdk
    /// client learns it at once (joining again is a no-op on the homeserver), not at its
    /// next sync — it sends only into rooms it knows as joined.
    pub async fn joined(&self, room: &RoomId) {
        if let Some(sdk) = self.sdk() {
            if let Err(e) = sdk.join_room_by_id(room).await {
                debug!(%room, error = %e, "the session did not take the join");
            }
        }
    }

    /// A personal account's joined rooms for a room list, at their addresses as MUC
    /// localparts (`#alias%server`, `!opaque`, `!opaque%server`); `None` for the
    /// appservice.
    pub fn own_rooms(&self) -> Option<Vec<ListedRoom>> {
        let sdk = self.sdk()?;
        let rooms = sdk.joined_rooms().into_iter().map(|room| {
            let name =
                crate::ids::room_localpart(room.canonical_alias().as_deref(), room.room_id());
            let members = room.joined_members_count();
            crate::ids::listed_room(name, members, room.name(), room.topic(), room.is_space())
        });
        Some(rooms.collect())
    }

    /// The room of the account's own whose id, lower-cased, is `folded` (a personal login
    /// knows its rooms; the appservice does not).
    pub fn own_room(&self, folded: &str) -> Option<OwnedRoomId> {
        let sdk = self.sdk()?;
        sdk.rooms()
            .into_iter()
            .map(|room| room.room_id().to_owned())
            .find(|id| id.as_str().to_lowercase() == folded)
    }

    /// A personal account's direct room with `remote`, as its Matrix clients know it
    /// (`m.direct`); `None` for the appservice.
    pub fn own_direct_room(&self, remote: &UserId) -> Option<OwnedRoomId> {
        let sdk = self.sdk()?;
        sdk.get_dm_room(remote)
            .map(|room| room.room_id().to_owned())
    }

    /// Open a direct room of a personal account with `remote`, marked so in its Matrix
    /// clients too (and encrypted, as they make them); `None` for the appservice.
    pub async fn open_own_direct_room(
        &self,
        remote: &UserId,
    ) -> Option<Result<OwnedRoomId, CallError>> {
        let sdk = self.sdk()?;
        Some(
            sdk.create_dm(remote)
                .await
                .map(|room| room.room_id().to_owned())
                .map_err(|e| sdk_error(&e)),
        )
    }

    /// The one other party of a personal account's direct room, as its `m.direct` says.
    pub fn direct_partner(&self, room: &RoomId) -> Option<String> {
        let sdk = self.sdk()?;
        let targets = sdk.get_room(room)?.direct_targets();
        let mut targets = targets.iter();
        match (targets.next(), targets.next()) {
            (Some(one), None) => one.as_user_id().map(|id| id.to_string()),
            _ => None,
        }
    }

    /// The last `limit` events of `room` as `user` sees them, newest first: decrypted by
    /// matrix-sdk for a personal login, as the homeserver keeps them for a puppet.
    pub async fn recent_events(
        &self,
        room: &RoomId,
        limit: u32,
        user: &UserId,
    ) -> Result<Vec<Raw<AnyTimelineEvent>>, CallError> {
        let Reach::Personal(sdk) = &self.reach else {
            let mut request = message::get_message_events::v3::Request::backward(room.to_owned());
            request.limit = limit.into();
            let page = self.call(request, Some(user), Retry::Once).await?;
            return Ok(page.chunk);
        };
        let Some(joined) = sdk.get_room(room) else {
            return Err(CallError::Invalid(format!("not in {room}")));
        };
        let mut options = matrix_sdk::room::MessagesOptions::backward();
        options.limit = limit.into();
        let page = joined.messages(options).await.map_err(|e| sdk_error(&e))?;
        Ok(page
            .chunk
            .iter()
            .filter_map(|event| crate::ids::with_room(event.raw(), room))
            .collect())
    }

    /// Send `request` as `user` (a puppet), or as the appservice's own user. A personal
    /// login always acts as its own user.
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
        let (mut parts, body) = self.build(request, user)?.into_parts();
        let mut response = self.execute(&parts, &body, retry).await;
        if let Some(token) = self.renewed_token(&response).await {
            let bearer = http::HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|e| CallError::Invalid(format!("the renewed token: {e}")))?;
            parts.headers.insert(http::header::AUTHORIZATION, bearer);
            response = self.execute(&parts, &body, retry).await;
        }
        R::IncomingResponse::try_from_http_response(response?)
            .map_err(|e| CallError::Invalid(format!("cannot read the answer: {e}")))
    }

    /// `request` as HTTP, with the token and identity [`Client::call`] gives it.
    fn build<R>(
        &self,
        request: R,
        user: Option<&UserId>,
    ) -> Result<http::Request<Vec<u8>>, CallError>
    where
        R: OutgoingRequestAppserviceExt,
        R::PathBuilder: PathInput,
        for<'a> R::Authentication: AuthScheme<Input<'a> = SendAccessToken<'a>>,
    {
        let path = R::PathBuilder::input(&self.versions);
        match &self.reach {
            Reach::Appservice { base, as_token } => {
                // Always: endpoints where a token is optional (the room directory) may still
                // need one on this homeserver, and the appservice is allowed everywhere.
                let token = SendAccessToken::Always(as_token);
                match user {
                    Some(user) => request.try_into_http_request_with_identity::<Vec<u8>>(
                        base,
                        token,
                        AppserviceUserIdentity::new(user),
                        path,
                    ),
                    None => request.try_into_http_request::<Vec<u8>>(base, token, path),
                }
            }
            Reach::Personal(sdk) => {
                let Some(token) = sdk.access_token() else {
                    return Err(CallError::Invalid("logged out of Matrix".into()));
                };
                let base = sdk.homeserver().to_string();
                request.try_into_http_request::<Vec<u8>>(
                    base.trim_end_matches('/'),
                    SendAccessToken::Always(&token),
                    path,
                )
            }
            Reach::Token { base, token } => {
                request.try_into_http_request::<Vec<u8>>(base, SendAccessToken::Always(token), path)
            }
        }
        .map_err(|e| CallError::Invalid(format!("cannot build the request: {e}")))
    }

    /// Send a message-like event of `kind` to `room` as `user`: through matrix-sdk for a
    /// personal login (encrypted where the room is), as a plain request for a puppet
    /// (`once`). The transaction id stays the same through retries, so the homeserver keeps
    /// one copy.
    pub async fn send_message(
        &self,
        room: &RoomId,
        kind: &str,
        content: &serde_json::Value,
        user: &UserId,
        retry: Retry,
    ) -> Result<OwnedEventId, CallError> {
        let txn = TransactionId::new();
        let Reach::Personal(sdk) = &self.reach else {
            return self.send_once(room, kind, content, user, &txn, retry).await;
        };
        // Every join the gateway makes is told to the session at once (`joined`).
        let Some(joined) = sdk.get_room(room) else {
            return Err(CallError::Invalid(format!("not in {room}")));
        };
        retrying(retry, room.as_str(), || async {
            let sent = joined
                .send_raw(kind, content)
                .with_transaction_id(&txn)
                .await;
            sent.map(|response| response.response.event_id)
                .map_err(|e| sdk_failure(&e))
        })
        .await
    }

    async fn execute(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        retry: Retry,
    ) -> Result<http::Response<Vec<u8>>, CallError> {
        retrying(retry, parts.uri.path(), || async {
            self.attempt(parts, body)
                .await
                .map_err(|failed| (failed.error, failed.wait))
        })
        .await
    }

    /// After a refusal for an expired access token (`M_UNKNOWN_TOKEN`) of a personal login
    /// that has a refresh token (a browser login's): the renewed token. matrix-sdk renews
    /// its own requests' tokens; these are the gateway's.
    async fn renewed_token<T>(&self, result: &Result<T, CallError>) -> Option<String> {
        let Err(CallError::Refused { errcode, .. }) = result else {
            return None;
        };
        let sdk = self.sdk().filter(|_| errcode == "M_UNKNOWN_TOKEN")?;
        sdk.session_tokens()?.refresh_token?;
        if let Err(e) = sdk.refresh_access_token().await {
            debug!(error = %e, "the access token could not be renewed");
            return None;
        }
        sdk.access_token()
    }

    /// One attempt.
    async fn attempt(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<http::Response<Vec<u8>>, Failed> {
        let response = self
            .http
            .request(parts.method.clone(), parts.uri.to_string())
            .headers(parts.headers.clone())
            .body(body.to_vec())
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| Failed::unanswered(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| Failed::unanswered(&e))?;
        let mut out = http::Response::new(bytes.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        if status.is_success() {
            return Ok(out);
        }
        let (error, wait) = refusal(&ruma::api::error::Error::from_http_response(out));
        Err(Failed {
            error,
            wait,
            // A gateway in front of the homeserver answers 502/504 when the homeserver
            // took too long — it may still have done it.
            maybe_done: status.is_server_error(),
        })
    }
}
