//! Personal logins: XMPP users signed in to their own Matrix accounts, each with a
//! matrix-sdk client of their own ([`session`]) whose sync ([`sync`]) feeds the same
//! parts the appservice uses ([`Parts`]), built over the user's own account.
//!
//! Logins are kept in the gateway's database and brought back at start: no new device, and
//! encrypted rooms still decrypt.

mod browser;
mod session;
mod sync;
mod undecrypted;
mod verification;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use causeway_bridge::{AccountReply, AccountRequest, BridgeError, Credentials, Event, UserRef};
use ruma::OwnedUserId;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn, Instrument};

use crate::client::Client;
use crate::media::Shelf;
use crate::parts::{Parts, Reach};
use crate::puppets::Puppets;
use crate::store::{MatrixStore, SavedLogin};
use crate::{Allowed, NickRule, PersonalSettings};

/// What a login's connection is before its first sync.
const STARTING: &str = "starting";

/// How long a login's answer waits for its first sync.
const FIRST_SYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// One logged-in user.
#[derive(Debug)]
pub(crate) struct Login {
    sdk: matrix_sdk::Client,
    /// The parts acting for the user and taking in their sync.
    pub parts: Parts,
    /// What the sync loop is doing.
    state: watch::Sender<String>,
    /// Tells the sync loop to end.
    stop: watch::Sender<bool>,
    /// An emoji verification under way.
    comparison: verification::Comparison,
    /// Its stores' key, and their folder under the store directory when it is not the
    /// user's usual one (a browser login's): what is kept again when its tokens are renewed.
    key: String,
    folder: Option<String>,
}

/// Everyone's personal logins.
#[derive(Debug)]
pub(crate) struct Personal {
    settings: PersonalSettings,
    member_limit: usize,
    store: Arc<dyn MatrixStore>,
    nicks: Nicks,
    emit: mpsc::Sender<Event>,
    logins: Mutex<HashMap<UserRef, Arc<Login>>>,
    /// Browser logins waiting for the address the user's browser ended up on.
    browser: tokio::sync::Mutex<HashMap<UserRef, browser::Pending>>,
    /// Whether the kept logins are back: actions and requests wait for it, so that none
    /// goes to the appservice (or is refused) for want of a login still being restored.
    restored: watch::Sender<bool>,
    /// Set at shutdown (under the logins' lock): a login restored or made after it syncs
    /// nothing.
    stopped: AtomicBool,
    /// The HTTP client of every login (matrix-sdk's and the gateway's own requests).
    http: reqwest::Client,
    /// The links to the files the logins receive.
    shelf: Arc<Shelf>,
}

/// The nick rule, shown as such in debug output.
struct Nicks(NickRule);

impl std::fmt::Debug for Nicks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nicks(..)")
    }
}

impl Personal {
    /// No one logged in yet.
    pub(crate) fn new(
        settings: PersonalSettings,
        member_limit: usize,
        store: Arc<dyn MatrixStore>,
        nicks: NickRule,
        emit: mpsc::Sender<Event>,
        shelf: Arc<Shelf>,
    ) -> Personal {
        Personal {
            shelf,
            settings,
            member_limit,
            store,
            nicks: Nicks(nicks),
            emit,
            logins: Mutex::default(),
            browser: tokio::sync::Mutex::default(),
            restored: watch::Sender::new(false),
            stopped: AtomicBool::new(false),
            http: crate::client::http_client(),
        }
    }

    /// Until the kept logins are back (at once after `restore`).
    pub(crate) async fn ready(&self) {
        let mut restored = self.restored.subscribe();
        // The sender lives as long as `self`.
        let _ = restored.wait_for(|done| *done).await;
    }

    /// The user's login, if they have one.
    pub(crate) fn login(&self, user: &UserRef) -> Option<Arc<Login>> {
        self.logins.lock().expect("logins lock").get(user).cloned()
    }

    /// Bring back every kept login of a user `allowed` accepts.
    pub(crate) async fn restore(self: &Arc<Self>, allowed: &Allowed) {
        self.restore_kept(allowed).await;
        self.restored.send_replace(true);
    }

    async fn restore_kept(self: &Arc<Self>, allowed: &Allowed) {
        let saved = match self.store.logins().await {
            Ok(saved) => saved,
            Err(e) => {
                warn!(error = %e, "cannot read the Matrix logins");
                return;
            }
        };
        for login in saved {
            let user = UserRef(login.user.clone());
            if !allowed(&user) {
                info!(%user, "not restoring the Matrix login of a user no longer allowed");
                continue;
            }
            let root = &self.settings.store_dir;
            match session::restore(&login, root, &user, &self.http).await {
                Ok((sdk, folder)) => {
                    info!(%user, account = %login.account, "Matrix login restored");
                    self.start(user, sdk, login.store_key, folder);
                }
                Err(e) => warn!(%user, error = %e, "cannot restore the Matrix login"),
            }
        }
    }

    /// Carry out a request about the user's own account.
    pub(crate) async fn account(
        self: &Arc<Self>,
        user: &UserRef,
        request: AccountRequest,
    ) -> Result<AccountReply, BridgeError> {
        self.ready().await;
        match request {
            AccountRequest::LogIn(credentials) => self.log_in(user, credentials).await,
            AccountRequest::StartBrowserLogin { account, server } => {
                self.start_browser_login(user, &account, server.as_deref())
                    .await
            }
            AccountRequest::FinishBrowserLogin { redirect } => {
                self.finish_browser_login(user, &redirect).await
            }
            AccountRequest::LogOut => {
                self.log_out(user, true).await;
                Ok(AccountReply::LoggedOut)
            }
            AccountRequest::Status => Ok(AccountReply::Status(match self.login(user) {
                Some(login) => Some(login.status().await),
                None => None,
            })),
            request => {
                let Some(login) = self.login(user) else {
                    return Err(BridgeError::Invalid(
                        "you are not logged in to Matrix".into(),
                    ));
                };
                login.verify(request).await
            }
        }
    }

    async fn log_in(
        self: &Arc<Self>,
        user: &UserRef,
        credentials: Credentials,
    ) -> Result<AccountReply, BridgeError> {
        self.room_for(user)?;
        // A new login replaces the old one, whose device is signed out.
        self.log_out(user, true).await;
        let dir = session::folder(&self.settings.store_dir, user);
        let (sdk, saved) = session::log_in(user, &credentials, &dir, &self.http).await?;
        self.logged_in(user, sdk, saved, None).await
    }

    /// Refused when the gateway has all the logins it takes (a user who has one may log in
    /// again).
    pub(super) fn room_for(&self, user: &UserRef) -> Result<(), BridgeError> {
        let logged_in = self.logins.lock().expect("logins lock").len();
        if self.login(user).is_none() && logged_in >= self.settings.max_logins {
            return Err(BridgeError::Invalid(format!(
                "this gateway takes {} Matrix logins at most, and has them: ask its admin",
                self.settings.max_logins
            )));
        }
        Ok(())
    }

    /// Keep a new login (its stores in `folder` when not the usual one) and serve it. The
    /// answer waits for the first sync (within reason): the rooms are known then, and the
    /// status says how the connection is.
    pub(super) async fn logged_in(
        self: &Arc<Self>,
        user: &UserRef,
        sdk: matrix_sdk::Client,
        saved: SavedLogin,
        folder: Option<String>,
    ) -> Result<AccountReply, BridgeError> {
        if let Err(e) = self.store.save_login(&saved).await {
            let _ = sdk.logout().await;
            return Err(BridgeError::Invalid(format!("cannot keep the login: {e}")));
        }
        info!(%user, account = %saved.account, "logged in to Matrix");
        let login = self.start(user.clone(), sdk, saved.store_key, folder);
        let mut state = login.state.subscribe();
        let first = state.wait_for(|now| now != STARTING);
        let _ = tokio::time::timeout(FIRST_SYNC, first).await;
        Ok(AccountReply::LoggedIn(login.status().await))
    }

    /// End the user's session: signed out on the homeserver when `sign_out` (not when the
    /// homeserver already dropped it), forgotten here, its folder removed; a browser login
    /// the user had started is called off.
    pub(super) async fn log_out(&self, user: &UserRef, sign_out: bool) {
        if let Some(pending) = self.browser.lock().await.remove(user) {
            browser::discard(pending).await;
        }
        let login = self.logins.lock().expect("logins lock").remove(user);
        if let Some(login) = &login {
            login.stop.send_replace(true);
            if sign_out {
                if let Err(e) = login.sdk.logout().await {
                    warn!(%user, error = %e, "the homeserver did not take the logout");
                }
            }
        }
        if let Err(e) = self.store.forget_login(&user.0).await {
            warn!(%user, error = %e, "cannot forget the Matrix login");
        }
        let root = &self.settings.store_dir;
        let own = login
            .as_ref()
            .and_then(|l| l.folder.as_ref())
            .map(|f| root.join(f));
        for dir in [Some(session::folder(root, user)), own]
            .into_iter()
            .flatten()
        {
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    warn!(%user, error = %e, "cannot remove the session's folder");
                }
            }
        }
        if login.is_some() {
            info!(%user, "logged out of Matrix");
        }
    }

    /// Serve the user's session: its parts, its sync loop, and the keeping of its renewed
    /// tokens (its stores' key is `key`, their folder `folder` when not the usual one).
    fn start(
        self: &Arc<Self>,
        user: UserRef,
        sdk: matrix_sdk::Client,
        key: String,
        folder: Option<String>,
    ) -> Arc<Login> {
        let account: OwnedUserId = sdk.user_id().expect("a logged-in client").to_owned();
        let client = Client::personal(sdk.clone());
        let reach = Reach {
            client: client.clone(),
            puppets: Arc::new(Puppets::personal(client, user.clone(), account.clone())),
            server_name: account.server_name().to_string(),
            member_limit: self.member_limit,
            nicks: self.nicks.0.clone(),
            shelf: self.shelf.clone(),
            owner: Some(user.clone()),
        };
        let login = Arc::new(Login {
            parts: Parts::new(reach, self.store.clone(), self.emit.clone()),
            sdk,
            state: watch::Sender::new(STARTING.into()),
            stop: watch::Sender::new(false),
            comparison: verification::Comparison::default(),
            key,
            folder,
        });
        {
            let mut logins = self.logins.lock().expect("logins lock");
            if self.stopped.load(Ordering::Acquire) {
                login.stop.send_replace(true);
            }
            if let Some(old) = logins.insert(user.clone(), login.clone()) {
                old.stop.send_replace(true);
            }
        }
        let span = tracing::info_span!("matrix_login", %user);
        // Subscribed before the sync loop starts: no renewal goes unkept.
        let renewals = login.sdk.subscribe_to_session_changes();
        tokio::spawn(
            keep_renewed_tokens(self.store.clone(), user.clone(), login.clone(), renewals)
                .instrument(span.clone()),
        );
        let personal = self.clone();
        let running = login.clone();
        tokio::spawn(
            async move {
                let server = account.server_name().to_string();
                let syncing = sync::Syncing {
                    user: &user,
                    sdk: &running.sdk,
                    parts: &running.parts,
                    state: &running.state,
                    emit: &personal.emit,
                    server: &server,
                };
                let stop = running.stop.subscribe();
                if sync::run(syncing, stop).await == sync::Ended::Revoked {
                    warn!("the homeserver no longer knows this session");
                    personal.revoked(&user, &running, &server).await;
                }
            }
            .instrument(span),
        );
        login
    }

    /// The session was ended elsewhere (logged out from another client): tell the user
    /// and clean up, unless a new login has replaced it meanwhile.
    async fn revoked(&self, user: &UserRef, login: &Arc<Login>, server: &str) {
        let current = self.login(user).is_some_and(|now| Arc::ptr_eq(&now, login));
        if !current {
            return;
        }
        self.log_out(user, false).await;
        let text = "your Matrix session was ended elsewhere (logged out from another client): \
                    log in again with the command \"Log in to Matrix\"";
        let _ = self.emit.send(crate::server_text(user, server, text)).await;
    }

    /// Stop every sync loop, and those of logins still being restored or made (shutdown);
    /// the logins stay kept.
    pub(crate) fn stop_all(&self) {
        let logins = self.logins.lock().expect("logins lock");
        self.stopped.store(true, Ordering::Release);
        for login in logins.values() {
            login.stop.send_replace(true);
        }
    }
}

/// Keep the login's session again each time matrix-sdk renews its tokens (a browser
/// login's expire within minutes, and the old refresh token is then spent), until the
/// login stops.
async fn keep_renewed_tokens(
    store: Arc<dyn MatrixStore>,
    user: UserRef,
    login: Arc<Login>,
    mut changes: tokio::sync::broadcast::Receiver<matrix_sdk::SessionChange>,
) {
    let mut stop = login.stop.subscribe();
    loop {
        let change = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            change = changes.recv() => change,
        };
        match change {
            Ok(matrix_sdk::SessionChange::TokensRefreshed) => {}
            Ok(matrix_sdk::SessionChange::UnknownToken(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
        // Only while it is still the user's login (same stores' key): a login since
        // logged out or replaced is not brought back.
        let folder = login.folder.as_deref();
        let kept = match session::saved(&user, &login.sdk, login.key.clone(), folder) {
            Ok(saved) => store.renew_login(&saved).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match kept {
            Ok(true) => debug!("renewed Matrix tokens kept"),
            Ok(false) => return,
            Err(e) => warn!(error = %e, "cannot keep the renewed Matrix tokens"),
        }
    }
}

impl Login {
    async fn status(&self) -> causeway_bridge::AccountStatus {
        let connection = self.state.borrow().clone();
        session::status(&self.sdk, connection).await
    }

    /// Have the user's other sessions trust this one: with the recovery key, or by
    /// comparing emoji with one of them, step by step.
    async fn verify(&self, request: AccountRequest) -> Result<AccountReply, BridgeError> {
        match request {
            AccountRequest::Verify { recovery } => {
                session::verify(&self.sdk, &recovery).await?;
            }
            AccountRequest::RequestComparison => {
                self.comparison.request(&self.sdk).await?;
                return Ok(AccountReply::Requested);
            }
            AccountRequest::Compare => {
                return Ok(match self.comparison.emoji().await? {
                    Some(emoji) => AccountReply::Emoji(emoji),
                    None => AccountReply::NotYet,
                });
            }
            AccountRequest::Confirm { matching } => {
                self.comparison.confirm(&self.sdk, matching).await?;
            }
            other => {
                return Err(BridgeError::Invalid(format!(
                    "{other:?} is no request about verification"
                )))
            }
        }
        Ok(AccountReply::Verified(self.status().await))
    }
}
