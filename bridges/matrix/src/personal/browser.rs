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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use causeway_bridge::{AccountReply, BridgeError, Secret, UserRef};
use matrix_sdk::authentication::oauth::registration::{
    ApplicationType, ClientMetadata, Localized, OAuthGrantType,
};
use matrix_sdk::utils::UrlOrQuery;
use ruma::serde::Raw;
use ruma::OwnedUserId;
use tracing::debug;
use url::Url;

use super::{session, Personal};

/// Where the homeserver sends the browser at the end: loopback, as RFC 8252 has native
/// clients do; the user copies the address from their browser.
pub(crate) const REDIRECT: &str = "http://127.0.0.1/causeway-login";

/// How long a started login waits for the address to come back.
pub(crate) const PATIENCE: Duration = Duration::from_secs(15 * 60);

/// A login waiting for the address the user's browser ended up on.
pub(crate) struct Pending {
    /// The client that started it.
    pub sdk: matrix_sdk::Client,
    /// Its stores' key (secret).
    pub key: String,
    /// Its stores' folder beside the user's usual one, and that folder's name under the
    /// store directory: the session it is to replace stays as it is until it is done.
    pub dir: PathBuf,
    pub name: String,
    pub started: Instant,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("name", &self.name)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Personal {
    /// Start a login on the homeserver's web page: the link the user is to open. The
    /// user's session, if they have one, goes on until this login is done.
    pub(super) async fn start_browser_login(
        self: &Arc<Self>,
        user: &UserRef,
        account: &str,
        server: Option<&str>,
    ) -> Result<AccountReply, BridgeError> {
        self.room_for(user)?;
        offered(account, server, &self.http).await?;
        // A browser login the user started before is called off.
        let before = self.browser.lock().await.remove(user);
        if let Some(before) = before {
            discard(before).await;
        }
        let root = &self.settings.store_dir;
        let home = &self.settings.home;
        let (pending, url) = start(account, server, root, user, &self.http, home).await?;
        let started = pending.started;
        let raced = self.browser.lock().await.insert(user.clone(), pending);
        if let Some(raced) = raced {
            discard(raced).await;
        }
        // Called off if the user does not come back in time.
        let (personal, user) = (self.clone(), user.clone());
        tokio::spawn(async move {
            tokio::time::sleep(PATIENCE).await;
            let mut waiting = personal.browser.lock().await;
            if waiting.get(&user).is_some_and(|p| p.started == started) {
                let late = waiting.remove(&user);
                drop(waiting);
                if let Some(late) = late {
                    discard(late).await;
                }
            }
        });
        Ok(AccountReply::OpenInBrowser { url })
    }

    /// Finish the user's browser login with where their browser ended up: the new session
    /// replaces the one they had, whose device is signed out.
    pub(super) async fn finish_browser_login(
        self: &Arc<Self>,
        user: &UserRef,
        redirect: &Secret,
    ) -> Result<AccountReply, BridgeError> {
        if !is_answer(redirect) {
            return Err(BridgeError::Invalid(
                "that is not where your browser ended up: the address has code= in it".into(),
            ));
        }
        let pending = self.browser.lock().await.remove(user);
        let pending = pending.ok_or_else(|| {
            BridgeError::Invalid("no browser login is waiting: run the command again".into())
        })?;
        let finished = match self.room_for(user) {
            Ok(()) => finish(&pending, redirect).await,
            Err(e) => Err(e),
        };
        let saved = finished.and_then(|()| {
            session::saved(user, &pending.sdk, pending.key.clone(), Some(&pending.name))
        });
        let saved = match saved {
            Ok(saved) => saved,
            Err(e) => {
                discard(pending).await;
                return Err(e);
            }
        };
        self.log_out(user, true).await;
        let Pending { sdk, name, .. } = pending;
        self.logged_in(user, sdk, saved, Some(name)).await
    }
}

/// Call a login off: its device signed out if it got one, its folder removed.
pub(crate) async fn discard(pending: Pending) {
    if pending.sdk.session_tokens().is_some() {
        let _ = pending.sdk.logout().await;
    }
    let Pending { sdk, dir, .. } = pending;
    drop(sdk);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        debug!(error = %e, dir = %dir.display(), "cannot remove a browser login's folder");
    }
}

/// Whether the server of `account` (or `server`) logs in on its web page; asked before
/// anything of the user's is touched.
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

/// Start a login of `account` (or on `server`) for `user`, its stores in a new folder
/// under `root` beside the user's usual one: the login, and the link the user is to open.
/// `home` is the gateway's address, shown by the server as the client's home page.
async fn start(
    account: &str,
    server: Option<&str>,
    root: &Path,
    user: &UserRef,
    http: &reqwest::Client,
    home: &str,
) -> Result<(Pending, String), BridgeError> {
    let account = account_id(account)?;
    let server = session::server_of(account.as_deref(), server)?;
    let (name, dir) = session::side_folder(root, user);
    session::fresh_folder(&dir)?;
    let (sdk, key, url) = match begin(account.as_deref(), &server, &dir, http, home).await {
        Ok(begun) => begun,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let pending = Pending {
        sdk,
        key,
        dir,
        name,
        started: Instant::now(),
    };
    Ok((pending, url))
}

/// The client of a new login in `dir`, its stores' key, and the link to open.
async fn begin(
    account: Option<&ruma::UserId>,
    server: &str,
    dir: &Path,
    http: &reqwest::Client,
    home: &str,
) -> Result<(matrix_sdk::Client, String, String), BridgeError> {
    let key = session::new_store_key();
    let sdk = session::open(server, dir, &key, http).await?;
    offered_by(&sdk).await?;
    let redirect = Url::parse(REDIRECT).expect("the redirect is a URL");
    let metadata = client_metadata(home, &redirect)?;
    let mut login = sdk
        .oauth()
        .login(redirect, None, Some(metadata.into()), None);
    if let Some(account) = account {
        login = login.user_id_hint(account);
    }
    let authorization = login.build().await.map_err(|e| {
        BridgeError::Refused(format!(
            "the homeserver did not take the gateway as a client: {e}"
        ))
    })?;
    Ok((sdk, key, authorization.url.to_string()))
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
mod replacing;

#[cfg(test)]
mod tests {
    use super::*;
    use fake::{FakeOAuth, ACCOUNT, CLIENT_ID};

    const HOME: &str = "https://matrix.example.org/";

    fn alice() -> UserRef {
        UserRef("alice@example.org".into())
    }

    async fn started(fake: &FakeOAuth, root: &Path, http: &reqwest::Client) -> (Pending, String) {
        start(ACCOUNT, Some(&fake.url()), root, &alice(), http, HOME)
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

        // Kept, and brought back as it was from its own folder: same device, same client.
        let user = alice();
        assert!(pending.dir.starts_with(dir.path()) && pending.dir.exists());
        assert_ne!(pending.dir, session::folder(dir.path(), &user));
        let name = pending.name.clone();
        let saved = session::saved(&user, &pending.sdk, pending.key.clone(), Some(&name));
        let saved = saved.unwrap();
        assert_eq!(saved.account, ACCOUNT);
        let kept: serde_json::Value = serde_json::from_str(&saved.session).unwrap();
        assert_eq!(kept["oauth"]["client_id"], CLIENT_ID);
        assert!(kept.get("session").is_none(), "{kept}");
        drop(pending);
        let restored = session::restore(&saved, dir.path(), &user, &http).await;
        let (sdk, folder) = restored.unwrap();
        assert_eq!(folder.as_deref(), Some(name.as_str()));
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
        let again = session::saved(&user, &sdk, saved.store_key.clone(), Some(&name)).unwrap();
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
        let started = start(
            ACCOUNT,
            Some(&plain.url()),
            dir.path(),
            &alice(),
            &http,
            HOME,
        )
        .await;
        assert!(
            matches!(started, Err(BridgeError::Invalid(_))),
            "{started:?}"
        );
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(left, 0, "a login that did not start leaves no folder");
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
