//! An in-process homeserver with its own OAuth 2.0 authorization server, for the browser
//! login's unit tests: no OAuth server can be had on this machine's package registries (the
//! Matrix Authentication Service is not on crates.io, PyPI, npm or Debian), so the flow is
//! checked against this one. It serves what matrix-sdk asks on the way: the client API's
//! versions, the server metadata, dynamic client registration, the token endpoint (the
//! authorization code with its PKCE check, and refresh tokens, each used once), `whoami`
//! and revocation. The test plays the browser ([`FakeOAuth::authorize`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;

/// The one account the fake logs in.
pub const ACCOUNT: &str = "@alice:fake.example";
/// The client id it gives the gateway.
pub const CLIENT_ID: &str = "fake-client";

#[derive(Default)]
struct Inner {
    base: String,
    /// Authorization codes: the PKCE challenge and the device the scope named.
    codes: HashMap<String, (String, String)>,
    /// Valid access and refresh tokens, with their device.
    access: HashMap<String, String>,
    refresh: HashMap<String, String>,
    issued: u32,
    /// What the gateway registered as.
    registered: Option<Value>,
}

/// The running fake; it stops with the test's runtime.
#[derive(Clone)]
pub struct FakeOAuth(Arc<Mutex<Inner>>);

impl FakeOAuth {
    /// A homeserver with its authorization server.
    pub async fn start() -> FakeOAuth {
        FakeOAuth::serve(true).await
    }

    /// A homeserver that logs in with passwords only: no server metadata.
    pub async fn start_without_oauth() -> FakeOAuth {
        FakeOAuth::serve(false).await
    }

    async fn serve(oauth: bool) -> FakeOAuth {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeOAuth(Arc::new(Mutex::new(Inner {
            base,
            ..Inner::default()
        })));
        let mut app = Router::new().route("/_matrix/client/versions", get(versions));
        if oauth {
            app = app.route("/_matrix/client/v1/auth_metadata", get(metadata));
        }
        let app = app
            .route("/register", post(register))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/_matrix/client/v3/account/whoami", get(whoami))
            .fallback(unrecognized)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    pub fn url(&self) -> String {
        self.0.lock().unwrap().base.clone()
    }

    /// What the gateway registered as.
    pub fn registered(&self) -> Option<Value> {
        self.0.lock().unwrap().registered.clone()
    }

    /// Every access token expires (refresh tokens stay good).
    pub fn expire_access_tokens(&self) {
        self.0.lock().unwrap().access.clear();
    }

    /// The user ends the gateway's session on the server: every token is revoked.
    pub fn revoke_all(&self) {
        let mut inner = self.0.lock().unwrap();
        inner.access.clear();
        inner.refresh.clear();
    }

    /// The browser's part: the user opens `link` and logs in; the address the browser is
    /// sent to.
    pub fn authorize(&self, link: &str) -> String {
        let link = url::Url::parse(link).unwrap();
        let query: HashMap<String, String> = link.query_pairs().into_owned().collect();
        let mut inner = self.0.lock().unwrap();
        assert!(
            link.as_str()
                .starts_with(&format!("{}/authorize", inner.base)),
            "{link}"
        );
        assert_eq!(query["client_id"], CLIENT_ID);
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["code_challenge_method"], "S256");
        let device = query["scope"]
            .split(' ')
            .find_map(|scope| scope.strip_prefix("urn:matrix:client:device:"))
            .or_else(|| {
                query["scope"]
                    .split(' ')
                    .find_map(|s| s.strip_prefix("urn:matrix:org.matrix.msc2967.client:device:"))
            })
            .expect("a device in the scope")
            .to_owned();
        inner.issued += 1;
        let code = format!("code{}", inner.issued);
        let challenge = query["code_challenge"].clone();
        inner.codes.insert(code.clone(), (challenge, device));
        format!(
            "{}?code={code}&state={}",
            query["redirect_uri"], query["state"]
        )
    }
}

async fn versions() -> Json<Value> {
    Json(json!({ "versions": ["v1.11", "v1.12", "v1.13", "v1.14", "v1.15"] }))
}

async fn metadata(State(fake): State<FakeOAuth>) -> Json<Value> {
    let base = fake.url();
    Json(json!({
        "issuer": format!("{base}/"),
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "revocation_endpoint": format!("{base}/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn register(State(fake): State<FakeOAuth>, Json(metadata): Json<Value>) -> Json<Value> {
    fake.0.lock().unwrap().registered = Some(metadata);
    Json(json!({ "client_id": CLIENT_ID }))
}

async fn token(
    State(fake): State<FakeOAuth>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut inner = fake.0.lock().unwrap();
    let device = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((challenge, device)) = inner.codes.remove(&form["code"]) else {
                return invalid_grant();
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let hashed = sha2::Sha256::digest(verifier.as_bytes());
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hashed);
            if expected != challenge {
                return invalid_grant();
            }
            device
        }
        Some("refresh_token") => match inner.refresh.remove(&form["refresh_token"]) {
            Some(device) => device,
            None => return invalid_grant(),
        },
        _ => return invalid_grant(),
    };
    inner.issued += 1;
    let (access, refresh) = (format!("at{}", inner.issued), format!("rt{}", inner.issued));
    inner.access.insert(access.clone(), device.clone());
    inner.refresh.insert(refresh.clone(), device);
    let tokens = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 300,
        "refresh_token": refresh,
    });
    (StatusCode::OK, Json(tokens))
}

fn invalid_grant() -> (StatusCode, Json<Value>) {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": "invalid_grant" })),
    )
}

async fn revoke() -> Json<Value> {
    Json(json!({}))
}

async fn whoami(State(fake): State<FakeOAuth>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match fake.0.lock().unwrap().access.get(token) {
        Some(device) => (
            StatusCode::OK,
            Json(json!({ "user_id": ACCOUNT, "device_id": device })),
        ),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({
                "errcode": "M_UNKNOWN_TOKEN",
                "error": "expired",
                "soft_logout": true,
            })),
        ),
    }
}

async fn unrecognized() -> (StatusCode, Json<Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "errcode": "M_UNRECOGNIZED", "error": "not in the fake" })),
    )
}
