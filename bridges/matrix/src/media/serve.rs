//! The endpoint XMPP users fetch Matrix files from: `GET <public path>/<token>/<name>`. The
//! token names a file offered earlier ([`super::Shelf::offer`]); the file is fetched from
//! the homeserver by the login that received it (decrypted, if it was encrypted) and
//! handed on with headers that keep a hostile file harmless: images, audio and video in
//! the formats clients show are served as what they are, everything else (SVG and HTML
//! included) as a download, never sniffed, in a sandbox.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use causeway_bridge::UserRef;
use ruma::events::room::MediaSource;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::{readable_size, MediaSettings};
use crate::client::Client;
use crate::personal::Personal;
use crate::store::{MatrixStore, OfferedFile};

/// How often expired links are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Files fetched from homeservers at once; more requests wait their turn, so that memory
/// stays within this many times the size limit.
pub(crate) const AT_ONCE: usize = 8;

/// What the endpoint answers from.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub settings: MediaSettings,
    pub store: Arc<dyn MatrixStore>,
    /// The appservice's client, for the files its puppets received.
    pub appservice: Option<Client>,
    /// The personal logins, for the files each received.
    pub personal: Option<Arc<Personal>>,
    /// Turns to fetch a file ([`AT_ONCE`]).
    pub turns: tokio::sync::Semaphore,
}

/// Serve files on `listener` until `shutdown`, forgetting expired links on the way.
pub(crate) async fn serve(
    listener: TcpListener,
    endpoint: Arc<Endpoint>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let base = endpoint
        .settings
        .public_url
        .as_ref()
        .map(|url| url.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    let store = endpoint.store.clone();
    let mut stop_pruning = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop_pruning.wait_for(|stop| *stop) => return,
            }
            match store.prune_files().await {
                Ok(0) => {}
                Ok(n) => debug!(n, "expired file links forgotten"),
                Err(e) => warn!(error = %e, "cannot forget expired file links"),
            }
        }
    });
    let app = Router::new()
        .route(&format!("{base}/{{token}}/{{name}}"), get(file))
        .fallback(|| async { gone() })
        .with_state(endpoint);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

fn text(status: StatusCode, text: impl Into<String>) -> Response {
    let headers = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    (status, headers, text.into()).into_response()
}

fn gone() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "This link has expired or never existed: ask for the file again in the chat.\n",
    )
}

async fn file(
    State(endpoint): State<Arc<Endpoint>>,
    method: Method,
    Path((token, _name)): Path<(String, String)>,
) -> Response {
    let offered = match endpoint.store.offered_file(&token).await {
        Ok(Some(offered)) => offered,
        Ok(None) => return gone(),
        Err(e) => {
            warn!(error = %e, "cannot look a file link up");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "The gateway's database does not answer; try again.\n",
            );
        }
    };
    let client = match &offered.owner {
        None => endpoint.appservice.clone(),
        Some(owner) => endpoint.personal.as_ref().and_then(|personal| {
            let login = personal.login(&UserRef(owner.clone()))?;
            Some(login.parts.incoming.client.clone())
        }),
    };
    let Some(client) = client else {
        return text(
            StatusCode::GONE,
            "The Matrix login that received this file has ended; log in again to see it.\n",
        );
    };
    let Ok(source) = serde_json::from_str::<MediaSource>(&offered.source) else {
        return gone();
    };
    // A client asking what it would get (Conversations does, before downloading) is
    // answered from what the event said, when it said the size.
    if let (&Method::HEAD, Some(size)) = (&method, offered.size) {
        let mut response = with_headers(Response::default(), &offered);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        return response;
    }
    let Ok(_turn) = endpoint.turns.acquire().await else {
        return gone();
    };
    let max = endpoint.settings.max_size;
    let data = match client.download(&source, max).await {
        Ok(data) => data,
        Err(e) => {
            debug!(error = %e, "a file could not be fetched from the homeserver");
            return text(
                StatusCode::BAD_GATEWAY,
                "The homeserver did not give the file (it may have been removed); try again later.\n",
            );
        }
    };
    if data.len() as u64 > max {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The file is larger than the {} the gateway passes on.\n",
                readable_size(max)
            ),
        );
    }
    with_headers(data.into_response(), &offered)
}

/// The file's headers: its type if it is shown as such, else a download; its name; and
/// what keeps a browser from running anything in it.
fn with_headers(mut response: Response, offered: &OfferedFile) -> Response {
    let (kind, disposition) = match offered.mimetype.as_deref().filter(|t| shown(t)) {
        Some(shown) => (shown.to_owned(), "inline"),
        None => ("application/octet-stream".to_owned(), "attachment"),
    };
    // The name in ASCII for old agents, and whole (RFC 8187) for the others.
    let ascii: String = offered
        .name
        .chars()
        .map(|c| match c {
            ' '..='~' if !matches!(c, '"' | '\\' | ';') => c,
            _ => '_',
        })
        .collect();
    let disposition = format!(
        "{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{}",
        encoded(&offered.name)
    );
    let value = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x"));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, value(&kind));
    headers.insert(header::CONTENT_DISPOSITION, value(&disposition));
    let fixed = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "private, max-age=86400"),
    ];
    for (name, v) in fixed {
        headers.insert(name, HeaderValue::from_static(v));
    }
    response
}

/// The types served as what they are: images, audio and video clients show, which carry no
/// script. Anything else is a download.
fn shown(mimetype: &str) -> bool {
    matches!(
        mimetype,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    ) || (mimetype.starts_with("video/") || mimetype.starts_with("audio/"))
        && mimetype
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/.+-".contains(&b))
}

/// `name` percent-encoded for a `filename*` parameter (RFC 8187).
fn encoded(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_downloads() {
        for inline in ["image/png", "image/jpeg", "video/mp4", "audio/ogg"] {
            assert!(shown(inline), "{inline}");
        }
        for download in [
            "image/svg+xml",
            "text/html",
            "application/pdf",
            "video/x\"y",
            "text/plain",
        ] {
            assert!(!shown(download), "{download}");
        }
    }

    #[test]
    fn names_are_encoded_for_the_header() {
        assert_eq!(encoded("a cat.png"), "a%20cat.png");
        assert_eq!(encoded("é\";x"), "%C3%A9%22%3Bx");
    }
}
