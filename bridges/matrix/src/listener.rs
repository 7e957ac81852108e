//! The appservice transaction listener: the homeserver pushes events here. Every request
//! must carry the hs_token (compared in constant time); each transaction is processed once,
//! also across restarts (the ids are kept in the database, with a fingerprint of the event
//! ids they held, for [`RETENTION`]); answers are small JSON bodies with a Content-Length,
//! which Synapse needs to count the appservice as up.
//!
//! A known id is a replay only when it holds the same events: a homeserver whose ids start
//! again (its database new or reset) sends known ids with new events, and those are
//! processed, with a warning, rather than dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use ruma::api::appservice::event::push_events;
use ruma::api::IncomingRequest;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::incoming::Incoming;
use crate::puppets::Puppets;
use crate::store::MatrixStore;
use crate::workers::JoinsInProgress;

/// What the appservice API answers from.
#[derive(Debug)]
pub(crate) struct Listener {
    /// The homeserver's token towards the appservice.
    pub hs_token: String,
    /// Where the transaction ids are kept.
    pub store: Arc<dyn MatrixStore>,
    /// The transactions' events.
    pub incoming: Arc<Incoming>,
    /// The homeserver's questions about users.
    pub puppets: Arc<Puppets>,
    /// Waited for before a transaction.
    pub joins: Arc<JoinsInProgress>,
    /// Serialises transactions from the homeserver; when processed ids were last pruned.
    pub transactions: tokio::sync::Mutex<Option<Instant>>,
    /// Told when the homeserver's transaction ids start again (it restarted).
    pub catch_up: Arc<crate::catch_up::CatchUp>,
}

/// How long a processed transaction id is kept: a homeserver retries an unanswered
/// transaction within minutes, so a week is far beyond any replay.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the old ids are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

type Shared = State<Arc<Listener>>;

/// Serve the appservice API on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    api: Arc<Listener>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
        .route("/transactions/{txn_id}", put(transaction))
        .route("/_matrix/app/v1/users/{user_id}", get(query_user))
        .route("/users/{user_id}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
        .route("/rooms/{alias}", get(query_alias))
        .route("/_matrix/app/v1/ping", post(ping))
        .fallback(unrecognized)
        // Synapse batches up to 100 events of up to 64 KiB: far above axum's 2 MB default,
        // which would refuse such a transaction forever.
        .layer(axum::extract::DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(api);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

fn error(status: StatusCode, errcode: &str, text: &str) -> Response {
    (status, Json(json!({ "errcode": errcode, "error": text }))).into_response()
}

fn ok() -> Response {
    (StatusCode::OK, Json(json!({}))).into_response()
}

/// Check the homeserver's token: `Authorization: Bearer` or the legacy `access_token`
/// query parameter.
fn authorize(
    api: &Listener,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Response> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer.or(query.get("access_token").map(String::as_str)) else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "M_UNAUTHORIZED",
            "no hs_token given",
        ));
    };
    let expected = api.hs_token.as_bytes();
    if bool::from(token.as_bytes().ct_eq(expected)) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "wrong hs_token",
        ))
    }
}

async fn transaction(
    State(api): Shared,
    Path(txn_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = authorize(&api, &headers, &query) {
        return refusal;
    }
    let mut http = http::Request::new(body.clone());
    *http.method_mut() = http::Method::PUT;
    let request = match push_events::v1::Request::try_from_http_request(http, &[txn_id.as_str()]) {
        Ok(request) => request,
        Err(e) => {
            warn!(txn = %txn_id, error = %e, "unreadable transaction");
            return error(StatusCode::BAD_REQUEST, "M_NOT_JSON", &e.to_string());
        }
    };
    // In a task of its own: a homeserver that goes away mid-request (a restart) drops this
    // handler, and a transaction half taken in would be lost — its events are remembered as
    // taken in, and the homeserver may never send them again.
    let taking = tokio::spawn(take(api, txn_id, request, body));
    taking.await.unwrap_or_else(|e| {
        warn!(error = %e, "a transaction's task failed");
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "the transaction failed",
        )
    })
}

/// Take a transaction in, once (the homeserver's transactions one at a time).
async fn take(
    api: Arc<Listener>,
    txn_id: String,
    request: push_events::v1::Request,
    body: Bytes,
) -> Response {
    let mut last_pruned = api.transactions.lock().await;
    if last_pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
        *last_pruned = Some(Instant::now());
        let store = api.store.clone();
        tokio::spawn(async move {
            match store.prune_transactions(RETENTION).await {
                Ok(0) => {}
                Ok(pruned) => debug!(pruned, "old transaction ids forgotten"),
                Err(e) => warn!(error = %e, "cannot prune old transaction ids"),
            }
        });
    }
    let fingerprint = fingerprint(&request, &body);
    // Let joins in progress finish first (bounded: a join never holds transactions up long).
    let settled = api.joins.settled();
    if tokio::time::timeout(std::time::Duration::from_secs(30), settled)
        .await
        .is_err()
    {
        warn!(txn = %txn_id, "joins still in progress after 30 s; taking the transaction");
    }
    match api.store.transaction_seen(&txn_id).await {
        Ok(Some(seen)) if seen.is_empty() || seen == fingerprint => {
            debug!(txn = %txn_id, "transaction seen before");
            return ok();
        }
        Ok(Some(_)) => {
            warn!(txn = %txn_id,
                "a known transaction id with other events: the homeserver's transaction ids started again (a restart, a new or reset database); processing it");
            // A restart may have lost what it owed us: read the rooms' ends.
            api.catch_up.wanted();
        }
        Ok(None) => {}
        Err(e) => {
            warn!(txn = %txn_id, error = %e, "cannot check the transaction");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", "database");
        }
    }
    debug!(txn = %txn_id, events = request.events.len(), "transaction");
    for raw in request.events {
        api.incoming.on_event(raw).await;
    }
    // Typing and read receipts (`receive_ephemeral`).
    for raw in request.ephemeral {
        if let Ok(event) = raw.deserialize_as::<serde_json::Value>() {
            api.incoming.on_ephemeral(event).await;
        }
    }
    if let Err(e) = api.store.transaction_done(&txn_id, &fingerprint).await {
        warn!(txn = %txn_id, error = %e, "cannot record the transaction as done");
    }
    ok()
}

/// What a transaction holds, summed up: the SHA-256 of its event ids (a retry serialises
/// the same events anew, so their bytes may differ), or of the whole body when it holds no
/// event with an id (ephemeral events only).
pub(crate) fn fingerprint(request: &push_events::v1::Request, body: &[u8]) -> String {
    let ids: Vec<String> = request
        .events
        .iter()
        .filter_map(|raw| raw.get_field::<String>("event_id").ok().flatten())
        .collect();
    let mut hash = Sha256::new();
    if ids.is_empty() {
        hash.update(body);
    } else {
        for id in ids {
            hash.update(id.as_bytes());
            hash.update(b"\n");
        }
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

async fn query_user(
    State(api): Shared,
    Path(user_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = authorize(&api, &headers, &query) {
        return refusal;
    }
    let Some(user) = api.puppets.owner(&user_id) else {
        return error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "not a puppet of this gateway",
        );
    };
    match api
        .puppets
        .ensure(&user, crate::ids::default_nick(&user))
        .await
    {
        Ok(_) => ok(),
        Err(e) => error(StatusCode::NOT_FOUND, "M_NOT_FOUND", &e.to_string()),
    }
}

async fn query_alias(
    State(api): Shared,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = authorize(&api, &headers, &query) {
        return refusal;
    }
    error(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        "this gateway provides no aliases",
    )
}

async fn ping(
    State(api): Shared,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    match authorize(&api, &headers, &query) {
        Ok(()) => ok(),
        Err(refusal) => refusal,
    }
}

async fn unrecognized() -> Response {
    error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "unknown endpoint")
}
