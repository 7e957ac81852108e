//! Logging in on the homeserver's own web page (OAuth 2.0, Matrix's next-generation auth),
//! for homeservers that take no password. The gateway registers itself with the
//! homeserver's authorization server as a native client and gives the user the link to
//! open; they log in there, and their browser is sent to a loopback address
//! ([`REDIRECT`]) that nothing answers — the gateway is not on their machine — whose query
//! carries the authorization code. The user copies that address back, and the gateway
//! trades the code for the session's tokens (matrix-sdk's authorization code flow, with
//! PKCE). The tokens expire; matrix-sdk renews them with the refresh token.
//!
//! matrix-sdk's other flow, the device authorization grant (a code to type in on the
//! server's page), is reserved in 0.18 to logging in with a QR code.

use std::path::Path;
use std::time::{Duration, Instant};

use causeway_bridge::{BridgeError, Secret};
use matrix_sdk::authentication::oauth::registration::{
    ApplicationType, ClientMetadata, Localized, OAuthGrantType,
};
use matrix_sdk::utils::UrlOrQuery;
use ruma::serde::Raw;
use ruma::OwnedUserId;
use url::Url;

use super::session;

/// Where the homeserver sends the browser at the end: loopback, as RFC 8252 has native
/// clients do; the user copies the address from their browser.
pub(crate) const REDIRECT: &str = "http://127.0.0.1/causeway-login";

/// How long a started login waits for the address to come back.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// A login waiting for the address the user's browser ended up on.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The client that started it, with its stores in the user's folder.
    pub sdk: matrix_sdk::Client,
    /// Its stores' key.
    pub key: String,
    pub started: Instant,
}

/// Whether the server of `account` (or `server`) logs in on its web page; asked before
/// anything of the user's is touched (a login under way is replaced by a new one).
pub(crate) async fn offered(
    account: &str,
    server: Option<&str>,
    http: &reqwest::Client,
) -> Result<(), BridgeError> {
    let server = session::server_of(account_id(account)?.as_deref(), server)?;
    let probe = session::probe(&server, http).await?;
    offered_by(&probe).await
}

async fn offered_by(sdk: &matrix_sdk::Client) -> Result<(), BridgeError> {
    let Err(e) = sdk.oauth().server_metadata().await else {
        return Ok(());
    };
    Err(match e.is_not_supported() {
        true => BridgeError::Invalid(format!(
            "{} takes passwords, not browser logins: give your password (or an access token)",
            sdk.homeserver()
        )),
        false => {
            BridgeError::Unreachable(format!("cannot read how {} logs in: {e}", sdk.homeserver()))
        }
    })
}

/// The account given, checked; `None` when empty (a server was given instead).
fn account_id(account: &str) -> Result<Option<OwnedUserId>, BridgeError> {
    match account.trim() {
        "" => Ok(None),
        given => OwnedUserId::try_from(given).map(Some).map_err(|_| {
            BridgeError::Invalid(format!(
                "{given:?} is not a Matrix ID: write it like @alice:matrix.org"
            ))
        }),
    }
}

/// Start a login of `account` (or on `server`) in the fresh folder `dir`: the login, and
/// the link the user is to open. `home` is the gateway's address, shown by the server as
/// the client's home page.
pub(crate) async fn start(
    account: &str,
    server: Option<&str>,
    dir: &Path,
    http: &reqwest::Client,
    home: &str,
) -> Result<(Pending, String), BridgeError> {
    let account = account_id(account)?;
    let server = session::server_of(account.as_deref(), server)?;
    session::fresh_folder(dir)?;
    let key = session::new_store_key();
    let sdk = session::open(&server, dir, &key, http).await?;
    offered_by(&sdk).await?;
    let oauth = sdk.oauth();
    let redirect = Url::parse(REDIRECT).expect("the redirect is a URL");
    let metadata = client_metadata(home, &redirect)?;
    let mut login = oauth.login(redirect, None, Some(metadata.into()), None);
    if let Some(account) = &account {
        login = login.user_id_hint(account);
    }
    let authorization = login.build().await.map_err(|e| {
        BridgeError::Refused(format!(
            "the homeserver did not take the gateway as a client: {e}"
        ))
    })?;
    let pending = Pending {
        sdk,
        key,
        started: Instant::now(),
    };
    Ok((pending, authorization.url.to_string()))
}

/// Finish `pending` with the address the user's browser ended up on (or its query).
pub(crate) async fn finish(pending: &Pending, redirect: &Secret) -> Result<(), BridgeError> {
    let answer = redirect.expose().trim();
    let url_or_query = match Url::parse(answer) {
        Ok(url) => UrlOrQuery::Url(url),
        Err(_) => UrlOrQuery::Query(answer.trim_start_matches('?').to_owned()),
    };
    pending
        .sdk
        .oauth()
        .finish_login(url_or_query)
        .await
        .map_err(|e| BridgeError::Refused(format!("the browser login did not finish: {e}")))
}

/// Whether `redirect` is an authorization answer at all (a code, or an error), so that a
/// wrong paste leaves the login waiting for the right one.
pub(crate) fn is_answer(redirect: &Secret) -> bool {
    let query = match redirect.expose().trim().split_once('?') {
        Some((_, query)) => query,
        None => redirect.expose().trim(),
    };
    url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "code" || name == "error")
}

/// How the gateway describes itself to the authorization server.
fn client_metadata(home: &str, redirect: &Url) -> Result<Raw<ClientMetadata>, BridgeError> {
    let home = Url::parse(home)
        .map_err(|e| BridgeError::Invalid(format!("the gateway's address {home:?}: {e}")))?;
    let grant = OAuthGrantType::AuthorizationCode {
        redirect_uris: vec![redirect.clone()],
    };
    let mut metadata = ClientMetadata::new(
        ApplicationType::Native,
        vec![grant],
        Localized::new(home, []),
    );
    metadata.client_name = Some(Localized::new(session::DEVICE_NAME.to_owned(), []));
    Raw::new(&metadata)
        .map_err(|e| BridgeError::Invalid(format!("cannot describe the gateway: {e}")))
}

#[cfg(test)]
mod fake;

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_bridge::UserRef;
    use fake::{FakeOAuth, ACCOUNT, CLIENT_ID};

    const HOME: &str = "https://matrix.example.org/";

    async fn started(fake: &FakeOAuth, dir: &Path, http: &reqwest::Client) -> (Pending, String) {
        start(ACCOUNT, Some(&fake.url()), dir, http, HOME)
            .await
            .expect("the login starts")
    }

    #[tokio::test]
    async fn a_browser_login_is_made_kept_brought_back_and_renewed() {
        let fake = FakeOAuth::start().await;
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();

        // The user's server says no in the browser: the login did not happen.
        let (pending, link) = started(&fake, dir.path(), &http).await;
        let said_no = fake
            .authorize(&link)
            .replace("code=", "error=access_denied&x=");
        let refused = finish(&pending, &Secret::Token(said_no)).await.unwrap_err();
        assert!(matches!(refused, BridgeError::Refused(_)), "{refused:?}");
        assert!(pending.sdk.user_id().is_none());

        let (pending, link) = started(&fake, dir.path(), &http).await;
        assert!(
            link.contains("redirect_uri=http%3A%2F%2F127.0.0.1%2Fcauseway-login"),
            "{link}"
        );
        let registered = fake.registered().expect("the gateway registered");
        assert_eq!(registered["client_uri"], HOME);
        let back = fake.authorize(&link);
        finish(&pending, &Secret::Token(back))
            .await
            .expect("the login finishes");
        assert_eq!(pending.sdk.user_id().unwrap(), ACCOUNT);
        let device = pending.sdk.device_id().unwrap().to_owned();

        // Kept, and brought back as it was: same device, same client.
        let user = UserRef("alice@example.org".into());
        let saved = session::saved(&user, &pending.sdk, pending.key.clone()).unwrap();
        assert_eq!(saved.account, ACCOUNT);
        let kept: serde_json::Value = serde_json::from_str(&saved.session).unwrap();
        assert_eq!(kept["oauth"]["client_id"], CLIENT_ID);
        assert!(kept.get("session").is_none(), "{kept}");
        drop(pending);
        let sdk = session::restore(&saved, dir.path(), &http).await.unwrap();
        assert_eq!(sdk.device_id().unwrap(), device);
        assert_eq!(sdk.oauth().client_id().unwrap().as_str(), CLIENT_ID);

        // Its token expires: the gateway's own request renews it and goes through.
        let before = sdk.session_tokens().unwrap();
        fake.expire_access_tokens();
        let client = crate::client::Client::personal(sdk.clone());
        let whoami = ruma::api::client::account::whoami::v3::Request::new();
        let me = client
            .call(whoami, None, crate::client::Retry::Once)
            .await
            .expect("whoami after renewing the token");
        assert_eq!(me.user_id, ACCOUNT);
        let after = sdk.session_tokens().unwrap();
        assert_ne!(after.access_token, before.access_token);
        assert_ne!(after.refresh_token, before.refresh_token);
        // What is kept now has the new pair (the old refresh token is spent).
        let again = session::saved(&user, &sdk, saved.store_key.clone()).unwrap();
        assert!(again
            .session
            .contains(after.refresh_token.as_deref().unwrap()));

        // A token that only expired is no end of the session; a revoked one is.
        let mut changes = sdk.subscribe_to_session_changes();
        fake.expire_access_tokens();
        let renewed = sdk.whoami().await;
        assert!(renewed.is_ok(), "{renewed:?}");
        fake.revoke_all();
        let ended = sdk.whoami().await.unwrap_err();
        let ended = matrix_sdk::Error::Http(Box::new(ended));
        assert!(super::super::sync::ended_elsewhere(&ended, &mut changes));
    }

    #[tokio::test]
    async fn a_server_without_browser_logins_says_to_give_the_password() {
        let http = reqwest::Client::new();
        let dir = tempfile::tempdir().unwrap();
        // No authorization server: the metadata request is answered 404 M_UNRECOGNIZED,
        // as Synapse answers it.
        let plain = FakeOAuth::start_without_oauth().await;
        let refused = offered(ACCOUNT, Some(&plain.url()), &http)
            .await
            .unwrap_err();
        let BridgeError::Invalid(text) = refused else {
            panic!("{refused:?}")
        };
        assert!(
            text.contains("takes passwords, not browser logins"),
            "{text}"
        );
        // No server at all.
        let gone = offered(ACCOUNT, Some("http://127.0.0.1:9"), &http).await;
        assert!(matches!(gone, Err(BridgeError::Unreachable(_))), "{gone:?}");
        // Nor does the login start.
        let started = start(ACCOUNT, Some(&plain.url()), dir.path(), &http, HOME).await;
        assert!(
            matches!(started, Err(BridgeError::Invalid(_))),
            "{started:?}"
        );
        offered(ACCOUNT, Some(&FakeOAuth::start().await.url()), &http)
            .await
            .expect("a server with an authorization server offers it");
    }

    #[test]
    fn only_an_authorization_answer_is_taken() {
        let is = |text: &str| is_answer(&Secret::Token(text.into()));
        assert!(is("http://127.0.0.1/causeway-login?code=abc&state=xyz"));
        assert!(is("?state=xyz&code=abc"));
        assert!(is("code=abc&state=xyz"));
        assert!(is(
            "http://127.0.0.1/causeway-login?error=access_denied&state=xyz"
        ));
        assert!(!is("http://127.0.0.1/causeway-login"));
        assert!(!is("https://auth.example/authorize?client_id=1&state=xyz"));
        assert!(!is("my password"));
    }

    #[test]
    fn the_gateway_describes_itself_as_a_native_client() {
        let redirect = Url::parse(REDIRECT).unwrap();
        let metadata = client_metadata("https://matrix.example.org/", &redirect).unwrap();
        let json: serde_json::Value = serde_json::from_str(metadata.json().get()).unwrap();
        assert_eq!(json["application_type"], "native");
        assert_eq!(json["redirect_uris"][0], REDIRECT);
        assert_eq!(json["client_uri"], "https://matrix.example.org/");
        assert_eq!(json["client_name"], session::DEVICE_NAME);
        let grants = json["grant_types"].as_array().unwrap();
        assert!(
            grants.iter().any(|g| g == "authorization_code"),
            "{grants:?}"
        );
        assert!(grants.iter().any(|g| g == "refresh_token"), "{grants:?}");
    }
}
