//! A browser login as `Personal` carries it out, against the fake authorization server: the
//! user's session goes on while a new login waits for the browser, is replaced only once
//! the new one is done, and a logout calls a waiting login off — folders and kept logins
//! checked at each step. The gateway's database is an in-memory fake of the logins table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use causeway_bridge::{AccountReply, AccountRequest, Secret, UserRef};
use tokio::sync::mpsc;

use super::fake::FakeOAuth;
use crate::personal::Personal;
use crate::store::{MatrixStore, MessageLink, OfferedFile, SavedLogin, StoreFailure};
use crate::PersonalSettings;

/// The logins table; the rest of the bridge's state is not used here and keeps nothing.
#[derive(Debug, Default)]
struct Logins(Mutex<HashMap<String, SavedLogin>>);

#[async_trait]
impl MatrixStore for Logins {
    async fn transaction_seen(&self, _: &str) -> Result<Option<String>, StoreFailure> {
        Ok(None)
    }
    async fn transaction_done(&self, _: &str, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn prune_transactions(&self, _: std::time::Duration) -> Result<u64, StoreFailure> {
        Ok(0)
    }
    async fn remember_room(&self, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn find_room(&self, _: &str) -> Result<Option<String>, StoreFailure> {
        Ok(None)
    }
    async fn link_message(&self, _: &MessageLink) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn find_message(&self, _: &str, _: &str) -> Result<Option<MessageLink>, StoreFailure> {
        Ok(None)
    }
    async fn unlink(&self, _: &str, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn reactions(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Vec<(String, String)>, StoreFailure> {
        Ok(Vec::new())
    }
    async fn direct_room(&self, _: &str, _: &str) -> Result<Option<String>, StoreFailure> {
        Ok(None)
    }
    async fn set_direct_room(&self, _: &str, _: &str, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn offer_file(&self, file: &OfferedFile) -> Result<String, StoreFailure> {
        Ok(file.token.clone())
    }
    async fn withdraw_files(&self, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn offered_file(&self, _: &str) -> Result<Option<OfferedFile>, StoreFailure> {
        Ok(None)
    }
    async fn prune_files(&self) -> Result<u64, StoreFailure> {
        Ok(0)
    }
    async fn direct_room_parties(&self, _: &str) -> Result<Vec<(String, String)>, StoreFailure> {
        Ok(Vec::new())
    }
    async fn save_login(&self, login: &SavedLogin) -> Result<(), StoreFailure> {
        let mut logins = self.0.lock().unwrap();
        logins.insert(login.user.clone(), login.clone());
        Ok(())
    }
    async fn renew_login(&self, login: &SavedLogin) -> Result<bool, StoreFailure> {
        let mut logins = self.0.lock().unwrap();
        match logins.get_mut(&login.user) {
            Some(kept) if kept.store_key == login.store_key => {
                *kept = login.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
    async fn logins(&self) -> Result<Vec<SavedLogin>, StoreFailure> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    async fn forget_login(&self, user: &str) -> Result<(), StoreFailure> {
        self.0.lock().unwrap().remove(user);
        Ok(())
    }
}

impl Logins {
    /// The user's kept login: its stores' key and their folder's name.
    fn kept(&self, user: &UserRef) -> Option<(String, String)> {
        let logins = self.0.lock().unwrap();
        let login = logins.get(&user.0)?;
        let session: serde_json::Value = serde_json::from_str(&login.session).unwrap();
        let folder = session["folder"].as_str().expect("a folder of its own");
        Some((login.store_key.clone(), folder.to_owned()))
    }
}

/// The folders under the store directory.
fn folders(root: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Start a browser login for `user`: the link.
async fn start(personal: &Arc<Personal>, fake: &FakeOAuth, user: &UserRef) -> String {
    let request = AccountRequest::StartBrowserLogin {
        account: super::fake::ACCOUNT.into(),
        server: Some(fake.url()),
    };
    match personal.account(user, request).await {
        Ok(AccountReply::OpenInBrowser { url }) => url,
        other => panic!("{other:?}"),
    }
}

/// Finish it, the browser having been sent back with a code.
async fn finish(personal: &Arc<Personal>, fake: &FakeOAuth, user: &UserRef, link: &str) {
    let redirect = Secret::Token(fake.authorize(link));
    let request = AccountRequest::FinishBrowserLogin { redirect };
    match personal.account(user, request).await {
        Ok(AccountReply::LoggedIn(status)) => assert_eq!(status.account, super::fake::ACCOUNT),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_replaced_only_once_the_new_browser_login_is_done() {
    let fake = FakeOAuth::start().await;
    let root = tempfile::tempdir().unwrap();
    let logins = Arc::new(Logins::default());
    let (emit, _events) = mpsc::channel(64);
    let settings = PersonalSettings {
        store_dir: root.path().to_owned(),
        max_logins: 10,
        home: "https://matrix.example.org/".into(),
    };
    let nicks: crate::NickRule = Arc::new(|nick: &str| Some(nick.to_owned()));
    let shelf = Arc::new(crate::media::Shelf::new(
        crate::media::MediaSettings::unlinked(),
        logins.clone(),
    ));
    let personal = Arc::new(Personal::new(
        settings,
        100,
        logins.clone(),
        nicks,
        emit,
        shelf,
    ));
    let everyone: crate::Allowed = Arc::new(|_: &UserRef| true);
    personal.restore(&everyone).await;
    let user = UserRef("alice@example.org".into());

    let link = start(&personal, &fake, &user).await;
    finish(&personal, &fake, &user, &link).await;
    let (first_key, first) = logins.kept(&user).expect("the login is kept");
    assert_eq!(folders(root.path()), [first]);

    // A second login waits for the browser: the first goes on meanwhile.
    let link = start(&personal, &fake, &user).await;
    assert!(personal.login(&user).is_some(), "the session goes on");
    assert_eq!(logins.kept(&user).unwrap().0, first_key);
    assert_eq!(
        folders(root.path()).len(),
        2,
        "the new login's folder beside the first"
    );
    finish(&personal, &fake, &user, &link).await;
    let (second_key, second) = logins.kept(&user).unwrap();
    assert_ne!(second_key, first_key);
    assert_eq!(
        folders(root.path()),
        [second],
        "the first login's folder is gone"
    );

    // A third waits, and the user logs out: both end, nothing is left.
    start(&personal, &fake, &user).await;
    assert_eq!(folders(root.path()).len(), 2);
    let out = personal.account(&user, AccountRequest::LogOut).await;
    assert_eq!(out.unwrap(), AccountReply::LoggedOut);
    assert!(personal.login(&user).is_none());
    assert!(logins.kept(&user).is_none());
    assert!(
        folders(root.path()).is_empty(),
        "{:?}",
        folders(root.path())
    );
    personal.stop_all();
}
