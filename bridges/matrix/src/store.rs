//! What the Matrix bridge keeps in the gateway's database, behind a trait so that the
//! bridge stays free of SQL: the gateway core implements it over its store (tested in its
//! store suite on SQLite and PostgreSQL).

use async_trait::async_trait;

/// A failed store operation, in the store's own words.
#[derive(Debug, Clone, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreFailure(pub String);

/// One message as both sides know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLink {
    /// The room id (or DM room id).
    pub room: String,
    /// The XMPP id (origin-id or message id of the XMPP sender; the event id for messages
    /// that came from Matrix).
    pub xmpp_id: String,
    /// The Matrix event id.
    pub event_id: String,
    /// The Matrix sender.
    pub sender: String,
}

/// A Matrix file offered to XMPP users behind one of the gateway's links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFile {
    /// The link's random token.
    pub token: String,
    /// The Matrix event that carried it.
    pub event_id: String,
    /// The XMPP user (bare JID) whose personal login fetches it; `None` for the appservice.
    pub owner: Option<String>,
    /// The file's Matrix source (JSON: an `mxc://` address, or an encrypted file).
    pub source: String,
    /// Its file name.
    pub name: String,
    /// Its MIME type, when known.
    pub mimetype: Option<String>,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// Until when the link works.
    pub expires: std::time::SystemTime,
}

/// A user's personal Matrix login, kept between runs so that a restart needs no new device.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedLogin {
    /// The XMPP user (bare JID).
    pub user: String,
    /// The Matrix account (`@alice:example.org`).
    pub account: String,
    /// The session as the bridge restores it (JSON: homeserver, device id, tokens). Secret.
    pub session: String,
    /// The key of the user's matrix-sdk stores (state and crypto): 64 hex digits, or a
    /// passphrase in logins saved before those. Secret.
    pub store_key: String,
}

impl std::fmt::Debug for SavedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedLogin")
            .field("user", &self.user)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Persistent state of the Matrix bridge.
#[async_trait]
pub trait MatrixStore: Send + Sync + std::fmt::Debug + 'static {
    /// The fingerprint of the homeserver's transaction `txn_id` when it was processed
    /// already (empty when it was processed before fingerprints were kept).
    async fn transaction_seen(&self, txn_id: &str) -> Result<Option<String>, StoreFailure>;
    /// Mark the transaction processed, with the fingerprint of what it held.
    async fn transaction_done(&self, txn_id: &str, fingerprint: &str) -> Result<(), StoreFailure>;
    /// Forget the transactions processed longer ago than `older_than`; how many.
    async fn prune_transactions(
        &self,
        older_than: std::time::Duration,
    ) -> Result<u64, StoreFailure>;
    /// Remember a room id with its case, so that a lower-cased JID finds it again.
    async fn remember_room(&self, room_id: &str) -> Result<(), StoreFailure>;
    /// The room id, with its case, whose lower-cased form is `folded`.
    async fn find_room(&self, folded: &str) -> Result<Option<String>, StoreFailure>;
    /// Remember which XMPP id and which event are the same message.
    async fn link_message(&self, link: &MessageLink) -> Result<(), StoreFailure>;
    /// The message with this event id in the room, else the one with this XMPP id.
    async fn find_message(&self, room: &str, id: &str)
        -> Result<Option<MessageLink>, StoreFailure>;
    /// Forget a message link (a reaction taken back).
    async fn unlink(&self, room: &str, event_id: &str) -> Result<(), StoreFailure>;
    /// `sender`'s reactions to `target`: (key, reaction event id).
    async fn reactions(
        &self,
        room: &str,
        target: &str,
        sender: &str,
    ) -> Result<Vec<(String, String)>, StoreFailure>;
    /// The direct room between the puppet and a Matrix user, if one was made.
    async fn direct_room(&self, puppet: &str, remote: &str)
        -> Result<Option<String>, StoreFailure>;
    /// Remember the direct room between the puppet and a Matrix user.
    async fn set_direct_room(
        &self,
        puppet: &str,
        remote: &str,
        room: &str,
    ) -> Result<(), StoreFailure>;
    /// Each (puppet, Matrix user) whose direct room this is: one, or two when the Matrix
    /// user is another puppet (the room is each one's direct room with the other).
    async fn direct_room_parties(&self, room: &str) -> Result<Vec<(String, String)>, StoreFailure>;
    /// Keep the user's login, replacing the one they had.
    async fn save_login(&self, login: &SavedLogin) -> Result<(), StoreFailure>;
    /// Keep a login's session again (renewed tokens) if it is still the user's login (the
    /// same `store_key`); whether it was.
    async fn renew_login(&self, login: &SavedLogin) -> Result<bool, StoreFailure>;
    /// Every saved login, for the sessions to restore at start.
    async fn logins(&self) -> Result<Vec<SavedLogin>, StoreFailure>;
    /// Forget the user's login (logged out).
    async fn forget_login(&self, user: &str) -> Result<(), StoreFailure>;
    /// Keep a file offered under its token; the token in force: the one the event's file
    /// was offered under to that login before (its expiry renewed), else this one.
    async fn offer_file(&self, file: &OfferedFile) -> Result<String, StoreFailure>;
    /// Withdraw the links to the file of a redacted event.
    async fn withdraw_files(&self, event_id: &str) -> Result<(), StoreFailure>;
    /// The file offered under `token`, while its link works.
    async fn offered_file(&self, token: &str) -> Result<Option<OfferedFile>, StoreFailure>;
    /// Forget the files whose links have expired; how many.
    async fn prune_files(&self) -> Result<u64, StoreFailure>;
}
