//! One user's own Matrix session: its matrix-sdk client (state and crypto stores in the
//! user's folder, encrypted with a key kept in the gateway's database), how it is made by
//! logging in, how it is brought back at start, and what it tells the user about itself.

use std::path::{Path, PathBuf};

use causeway_bridge::{AccountStatus, BridgeError, Credentials, Secret, UserRef};
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::authentication::oauth::{ClientId, OAuthSession, UserSession};
use matrix_sdk::store::RoomLoadSettings;
use ruma::OwnedUserId;
use serde::{Deserialize, Serialize};

use crate::client::{sdk_error, CallError};
use crate::store::SavedLogin;

/// The device name other sessions show for the gateway's.
pub(super) const DEVICE_NAME: &str = "causeway (XMPP gateway)";

/// What is kept of a session between runs (the `session` of a [`SavedLogin`]): one of
/// `session` (a password or token login) and `oauth` (a browser login).
#[derive(Serialize, Deserialize)]
struct Kept {
    /// The homeserver's URL, as discovery found it.
    homeserver: String,
    /// User id, device id and tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<MatrixSession>,
    /// The OAuth 2.0 client id the gateway registered as, with the user's session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oauth: Option<KeptOAuth>,
    /// The stores' folder under the store directory, when it is not the user's usual one
    /// ([`folder`]): a browser login's, made beside the session it is to replace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    folder: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct KeptOAuth {
    client_id: String,
    #[serde(flatten)]
    user: UserSession,
}

/// The folder of `user`'s stores under `root`: the bare JID with every byte outside
/// `[a-z0-9.-]` written `=xx`, so that two users never share one.
pub(crate) fn folder(root: &Path, user: &UserRef) -> PathBuf {
    let mut name = String::with_capacity(user.0.len());
    for byte in user.0.bytes() {
        match byte {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => name.push(char::from(byte)),
            _ => name.push_str(&format!("={byte:02x}")),
        }
    }
    root.join(name)
}

/// A folder for a browser login's stores beside the user's usual one (which the session
/// it is to replace may be using): the usual name and a random suffix. Its name (under
/// `root`) and the folder.
pub(crate) fn side_folder(root: &Path, user: &UserRef) -> (String, PathBuf) {
    let usual = folder(root, user);
    let usual = usual.file_name().expect("a folder name").to_string_lossy();
    let suffix: String = new_store_key().chars().take(8).collect();
    let name = format!("{usual}-{suffix}");
    let dir = root.join(&name);
    (name, dir)
}

/// A fresh key for a session's stores: 32 random bytes, written as 64 hex digits.
pub(super) fn new_store_key() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stores' configuration for `key`: 64 hex digits are the key itself, used as it is;
/// anything else is a passphrase, which matrix-sdk stretches (200,000 rounds of PBKDF2 for
/// each store, each time it opens: seconds in a debug build). A random key needs no
/// stretching. At most two connections a store (one writes, one reads) with 500 kB page
/// caches, matrix-sdk's low-memory values: a gateway has many logins, each quiet most of
/// the time (its default, four connections per core and 2 MB, is a phone app's).
fn store_config(dir: &Path, key: &str) -> matrix_sdk::SqliteStoreConfig {
    let config = matrix_sdk::SqliteStoreConfig::new(dir)
        .pool_max_size(2)
        .cache_size(500_000)
        .journal_size_limit(2_000_000);
    match key_bytes(key) {
        Some(bytes) => config.key(Some(&bytes)),
        None => config.passphrase(Some(key)),
    }
}

/// The 32 bytes 64 hex digits stand for.
fn key_bytes(key: &str) -> Option<[u8; 32]> {
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(key.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

/// Make `dir` (and the folders above it), readable by the gateway's user alone: the
/// session's keys are in it.
fn private_folder(dir: &Path) -> Result<(), BridgeError> {
    let made = std::fs::create_dir_all(dir).and_then(|()| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    });
    made.map_err(|e| BridgeError::Invalid(format!("cannot make {}: {e}", dir.display())))
}

/// A matrix-sdk client for `server` (a server name or URL) with its stores in `dir`,
/// over `http`: every login shares one connection pool and one set of TLS roots, where
/// matrix-sdk would build both for each.
pub(super) async fn open(
    server: &str,
    dir: &Path,
    key: &str,
    http: &reqwest::Client,
) -> Result<matrix_sdk::Client, BridgeError> {
    matrix_sdk::Client::builder()
        .server_name_or_homeserver_url(server)
        .http_client(http.clone())
        // A browser login's access token expires (in minutes): matrix-sdk renews it with
        // the refresh token when the homeserver says so, and `Personal` keeps the new pair.
        .handle_refresh_tokens()
        .sqlite_store_with_config_and_cache_path(store_config(dir, key), None::<&Path>)
        .build()
        .await
        .map_err(|e| built(server, e))
}

/// A client for `server` with no session and no stores, to ask how it logs in.
pub(super) async fn probe(
    server: &str,
    http: &reqwest::Client,
) -> Result<matrix_sdk::Client, BridgeError> {
    matrix_sdk::Client::builder()
        .server_name_or_homeserver_url(server)
        .http_client(http.clone())
        .build()
        .await
        .map_err(|e| built(server, e))
}

/// A client that could not be built, in the user's terms.
fn built(server: &str, e: matrix_sdk::ClientBuildError) -> BridgeError {
    match e {
        matrix_sdk::ClientBuildError::AutoDiscovery(_) | matrix_sdk::ClientBuildError::Http(_) => {
            BridgeError::Unreachable(format!(
                "cannot find the homeserver of {server} ({e}): give its URL in the homeserver field"
            ))
        }
        other => BridgeError::Invalid(format!("cannot open the Matrix session: {other}")),
    }
}

/// The account the credentials name, checked.
fn account_id(credentials: &Credentials) -> Result<Option<OwnedUserId>, BridgeError> {
    let account = credentials.account.trim();
    if account.is_empty() {
        return match credentials.secret {
            Secret::Token(_) => Ok(None),
            Secret::Password(_) => Err(BridgeError::Invalid(
                "give your Matrix ID, like @alice:matrix.org".into(),
            )),
        };
    }
    OwnedUserId::try_from(account).map(Some).map_err(|_| {
        BridgeError::Invalid(format!(
            "{account:?} is not a Matrix ID: write it like @alice:matrix.org"
        ))
    })
}

/// The server to log in to: the one given, else the account's.
pub(super) fn server_of(
    account: Option<&ruma::UserId>,
    server: Option<&str>,
) -> Result<String, BridgeError> {
    match (server.map(str::trim), account) {
        (Some(server), _) if !server.is_empty() => Ok(server.to_owned()),
        (_, Some(account)) => Ok(account.server_name().to_string()),
        (_, None) => Err(BridgeError::Invalid(
            "give your Matrix ID or your homeserver's URL".into(),
        )),
    }
}

/// Empty `dir` for a new login, made private: a new login is a new device, and what an
/// earlier one kept cannot serve it.
pub(super) fn fresh_folder(dir: &Path) -> Result<(), BridgeError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|e| BridgeError::Invalid(format!("cannot clear {}: {e}", dir.display())))?;
    }
    private_folder(dir)
}

/// The homeserver refused, in the user's terms.
pub(super) fn refused(e: CallError) -> BridgeError {
    match e {
        CallError::Refused { error, errcode, .. } => {
            let text = if error.is_empty() { errcode } else { error };
            BridgeError::Refused(text)
        }
        CallError::Unreachable(text) => BridgeError::Unreachable(text),
        CallError::Invalid(text) => BridgeError::Invalid(text),
    }
}

/// Log `user` in with `credentials`, in a fresh folder `dir`: the client, and what to keep
/// of it.
pub(crate) async fn log_in(
    user: &UserRef,
    credentials: &Credentials,
    dir: &Path,
    http: &reqwest::Client,
) -> Result<(matrix_sdk::Client, SavedLogin), BridgeError> {
    let account = account_id(credentials)?;
    let server = server_of(account.as_deref(), credentials.server.as_deref())?;
    fresh_folder(dir)?;
    let key = new_store_key();
    let sdk = open(&server, dir, &key, http).await?;
    match &credentials.secret {
        Secret::Password(password) => {
            let account = account.expect("a password login names its account");
            sdk.matrix_auth()
                .login_username(account.as_str(), password)
                .initial_device_display_name(DEVICE_NAME)
                .send()
                .await
                .map_err(|e| refused(sdk_error(&e)))?;
        }
        Secret::Token(token) => {
            let whoami = ruma::api::client::account::whoami::v3::Request::new();
            let probe = crate::client::Client::token(sdk.homeserver().as_str(), token, http);
            let me = probe.call(whoami, None, crate::client::Retry::Once).await;
            let me = me.map_err(refused)?;
            if account.as_ref().is_some_and(|a| *a != me.user_id) {
                return Err(BridgeError::Invalid(format!(
                    "this token belongs to {}, not {}",
                    me.user_id,
                    credentials.account.trim()
                )));
            }
            let Some(device_id) = me.device_id else {
                return Err(BridgeError::Invalid(
                    "this token has no device: make one by logging in with a password".into(),
                ));
            };
            let session = MatrixSession {
                meta: matrix_sdk::SessionMeta {
                    user_id: me.user_id,
                    device_id,
                },
                tokens: matrix_sdk::SessionTokens {
                    access_token: token.clone(),
                    refresh_token: None,
                },
            };
            sdk.matrix_auth()
                .restore_session(session, RoomLoadSettings::default())
                .await
                .map_err(|e| refused(sdk_error(&e)))?;
        }
    }
    let saved = saved(user, &sdk, key, None)?;
    Ok((sdk, saved))
}

/// What to keep of a logged-in client (again whenever its tokens are renewed), whose
/// stores are in the folder `folder` under the store directory (`None`: the usual one).
pub(crate) fn saved(
    user: &UserRef,
    sdk: &matrix_sdk::Client,
    key: String,
    folder: Option<&str>,
) -> Result<SavedLogin, BridgeError> {
    let folder = folder.map(str::to_owned);
    let homeserver = sdk.homeserver().to_string();
    let (account, kept) = match (sdk.oauth().full_session(), sdk.matrix_auth().session()) {
        (Some(oauth), _) => (
            oauth.user.meta.user_id.to_string(),
            Kept {
                homeserver,
                session: None,
                oauth: Some(KeptOAuth {
                    client_id: oauth.client_id.as_str().to_owned(),
                    user: oauth.user,
                }),
                folder,
            },
        ),
        (None, Some(session)) => (
            session.meta.user_id.to_string(),
            Kept {
                homeserver,
                session: Some(session),
                oauth: None,
                folder,
            },
        ),
        (None, None) => return Err(BridgeError::Invalid("the login left no session".into())),
    };
    let session = serde_json::to_string(&kept)
        .map_err(|e| BridgeError::Invalid(format!("cannot keep the session: {e}")))?;
    Ok(SavedLogin {
        user: user.0.clone(),
        account,
        session,
        store_key: key,
    })
}

/// Bring a kept session of `user` back, its stores in its folder under `root`: the
/// client, and that folder's name when it is not the usual one.
pub(crate) async fn restore(
    saved: &SavedLogin,
    root: &Path,
    user: &UserRef,
    http: &reqwest::Client,
) -> Result<(matrix_sdk::Client, Option<String>), BridgeError> {
    let kept: Kept = serde_json::from_str(&saved.session)
        .map_err(|e| BridgeError::Invalid(format!("the kept session does not read: {e}")))?;
    let dir = match &kept.folder {
        Some(name) => root.join(name),
        None => folder(root, user),
    };
    let sdk = open(&kept.homeserver, &dir, &saved.store_key, http).await?;
    let restored = match (kept.session, kept.oauth) {
        (Some(session), _) => {
            sdk.matrix_auth()
                .restore_session(session, RoomLoadSettings::default())
                .await
        }
        (None, Some(oauth)) => {
            let session = OAuthSession {
                client_id: ClientId::new(oauth.client_id),
                user: oauth.user,
            };
            sdk.oauth()
                .restore_session(session, RoomLoadSettings::default())
                .await
        }
        (None, None) => return Err(BridgeError::Invalid("the kept session is empty".into())),
    };
    restored.map_err(|e| refused(sdk_error(&e)))?;
    Ok((sdk, kept.folder))
}

/// The session as the user is shown it; `connection` says what its sync is doing.
pub(crate) async fn status(sdk: &matrix_sdk::Client, connection: String) -> AccountStatus {
    let verified = match sdk.encryption().get_own_device().await {
        Ok(Some(device)) => Some(device.is_cross_signed_by_owner()),
        _ => None,
    };
    AccountStatus {
        account: sdk.user_id().map(|id| id.to_string()).unwrap_or_default(),
        server: sdk.homeserver().to_string(),
        device: sdk.device_id().map(|id| id.to_string()).unwrap_or_default(),
        verified,
        connection,
    }
}

/// Make the session trusted with the user's recovery key or passphrase: the secrets kept
/// on the homeserver (cross-signing keys, the key backup's key) are opened and this device
/// signed.
pub(crate) async fn verify(sdk: &matrix_sdk::Client, recovery: &Secret) -> Result<(), BridgeError> {
    sdk.encryption()
        .recovery()
        .recover(recovery.expose())
        .await
        .map_err(|e| {
            BridgeError::Refused(format!(
                "the recovery key or passphrase was not accepted ({e}); it is the key Element \
                 showed when you set up secure backup"
            ))
        })?;
    let device = sdk
        .encryption()
        .get_own_device()
        .await
        .map_err(|e| BridgeError::Invalid(format!("cannot read this session's keys: {e}")))?;
    if let Some(device) = device.filter(|d| !d.is_cross_signed_by_owner()) {
        device
            .verify()
            .await
            .map_err(|e| BridgeError::Refused(format!("cannot sign this session: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_store_keys_are_keys_and_older_ones_passphrases() {
        let key = new_store_key();
        let bytes = key_bytes(&key).expect("64 hex digits");
        let again: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(again, key);
        assert_ne!(new_store_key(), key);
        assert_eq!(key_bytes(&"ab".repeat(32)), Some([0xab; 32]));
        // The 48 letters and digits of the first saved logins stay passphrases.
        assert_eq!(
            key_bytes("aZ3kP0qLm9sT2vX8yB4nC7dE1fG6hJ5wR0uI3oK8pQ2lM9nV"),
            None
        );
        assert_eq!(key_bytes(&"g0".repeat(32)), None);
        assert_eq!(key_bytes(&"+a".repeat(32)), None);
    }

    #[test]
    fn users_get_folders_of_their_own() {
        let root = Path::new("/s");
        let a = folder(root, &UserRef("alice@example.org".into()));
        assert_eq!(a, Path::new("/s/alice=40example.org"));
        let upper = folder(root, &UserRef("../x@y".into()));
        assert_eq!(upper, Path::new("/s/..=2fx=40y"));
        assert_ne!(
            folder(root, &UserRef("a_b@c".into())),
            folder(root, &UserRef("a=5fb@c".into()))
        );
    }
}
