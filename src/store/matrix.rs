//! The Matrix bridge's state in the gateway's database: the homeserver's transactions seen,
//! room ids with their case, message links (XMPP id ↔ event id, and reactions), direct
//! rooms and users' own logins. Plain store methods; `src/matrix.rs` offers them to the bridge as its
//! `MatrixStore`.

use causeway_bridge::NetworkKind;
use sqlx::Row;

use super::{unix_now, EntityKind, Store, StoreError};

/// One message as both sides know it (a row of `message_links`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkedMessage {
    /// The room id (or direct room id).
    pub room: String,
    /// The XMPP id (or `reaction <event> <key>` for a reaction).
    pub xmpp_id: String,
    /// The Matrix event id.
    pub event_id: String,
    /// The Matrix sender.
    pub sender: String,
}

/// A user's own Matrix login (a row of `matrix_logins`). `Debug` leaves the secrets out.
#[derive(Clone, PartialEq, Eq)]
pub struct MatrixLogin {
    /// The XMPP user (bare JID).
    pub user: String,
    /// The Matrix account (`@alice:example.org`).
    pub account: String,
    /// The session as the bridge restores it. Secret.
    pub session: String,
    /// The passphrase of the user's matrix-sdk stores. Secret.
    pub store_key: String,
}

impl std::fmt::Debug for MatrixLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixLogin")
            .field("user", &self.user)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The fingerprint of the homeserver's transaction `txn_id` when it was processed
    /// already (empty for one processed before fingerprints were kept).
    pub async fn matrix_transaction(&self, txn_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT fingerprint FROM matrix_transactions WHERE txn_id = $1")
            .bind(txn_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok(row.try_get::<Option<String>, _>(0)?.unwrap_or_default()))
            .transpose()
    }

    /// Mark the homeserver's transaction `txn_id` processed, holding what `fingerprint`
    /// sums up (replacing what an earlier transaction of that id held).
    pub async fn matrix_transaction_done(
        &self,
        txn_id: &str,
        fingerprint: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO matrix_transactions (txn_id, done_at, fingerprint) VALUES ($1, $2, $3) \
             ON CONFLICT (txn_id) DO UPDATE SET done_at = $2, fingerprint = $3",
        )
        .bind(txn_id)
        .bind(unix_now())
        .bind(fingerprint)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Make a processed transaction `seconds` older (the tests of pruning).
    #[doc(hidden)]
    pub async fn backdate_matrix_transaction(
        &self,
        txn_id: &str,
        seconds: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE matrix_transactions SET done_at = done_at - $1 WHERE txn_id = $2")
            .bind(seconds)
            .bind(txn_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forget the transactions processed more than `older_than_s` seconds ago (a homeserver
    /// retries a transaction within minutes); how many.
    pub async fn prune_matrix_transactions(&self, older_than_s: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM matrix_transactions WHERE done_at < $1")
            .bind(unix_now() - older_than_s)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Remember a Matrix room id with its case, under its lower-cased form.
    pub async fn remember_matrix_room(&self, room_id: &str) -> Result<(), StoreError> {
        let server = room_id.split_once(':').map(|(_, s)| s).unwrap_or_default();
        self.map_remote(
            EntityKind::Room,
            NetworkKind::Matrix,
            server,
            room_id,
            &room_id.to_lowercase(),
        )
        .await?;
        Ok(())
    }

    /// The Matrix room id, with its case, whose lower-cased form is `folded`.
    pub async fn find_matrix_room(&self, folded: &str) -> Result<Option<String>, StoreError> {
        let found = self
            .lookup_localpart(EntityKind::Room, NetworkKind::Matrix, folded)
            .await?;
        Ok(found.map(|room| room.remote))
    }

    /// Remember that an XMPP id and an event are the same message (once: a second link of
    /// the same ids is ignored).
    pub async fn insert_message_link(
        &self,
        room: &str,
        xmpp_id: &str,
        event_id: &str,
        sender: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO message_links (room, xmpp_id, event_id, sender) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(room)
        .bind(xmpp_id)
        .bind(event_id)
        .bind(sender)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The message with this event id in the room, else the one with this XMPP id.
    pub async fn message_link(
        &self,
        room: &str,
        id: &str,
    ) -> Result<Option<LinkedMessage>, StoreError> {
        let row = sqlx::query(
            "SELECT room, xmpp_id, event_id, sender FROM message_links WHERE room = $1 AND (event_id = $2 OR xmpp_id = $2) ORDER BY CASE WHEN event_id = $2 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(room)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(LinkedMessage {
                room: r.try_get(0)?,
                xmpp_id: r.try_get(1)?,
                event_id: r.try_get(2)?,
                sender: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Forget the message link of an event (a reaction taken back).
    pub async fn delete_message_link(&self, room: &str, event_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM message_links WHERE room = $1 AND event_id = $2")
            .bind(room)
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `sender`'s reactions to `target` in the room: (key, reaction event id), from the
    /// links named `reaction <target> <key>`.
    pub async fn reaction_links(
        &self,
        room: &str,
        target: &str,
        sender: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // `_` (in event ids) is a LIKE wildcard and matches more: the prefix is checked again.
        let prefix = format!("reaction {target} ");
        let rows = sqlx::query(
            "SELECT xmpp_id, event_id FROM message_links WHERE room = $1 AND sender = $2 AND xmpp_id LIKE $3",
        )
        .bind(room)
        .bind(sender)
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await?;
        let mut found = Vec::new();
        for row in rows {
            let link: String = row.try_get(0)?;
            if let Some(key) = link.strip_prefix(&prefix) {
                found.push((key.to_owned(), row.try_get(1)?));
            }
        }
        Ok(found)
    }

    /// The direct room between a puppet and a Matrix user, if one was made.
    pub async fn matrix_direct_room(
        &self,
        puppet: &str,
        remote: &str,
    ) -> Result<Option<String>, StoreError> {
        let row =
            sqlx::query("SELECT room FROM matrix_direct_rooms WHERE puppet = $1 AND remote = $2")
                .bind(puppet)
                .bind(remote)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Remember the direct room between a puppet and a Matrix user (replacing an older one).
    pub async fn set_matrix_direct_room(
        &self,
        puppet: &str,
        remote: &str,
        room: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO matrix_direct_rooms (puppet, remote, room) VALUES ($1, $2, $3) ON CONFLICT (puppet, remote) DO UPDATE SET room = $3",
        )
        .bind(puppet)
        .bind(remote)
        .bind(room)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Each (puppet, Matrix user) whose direct room this is: one, or two when it joins two
    /// puppets (each one's direct room with the other).
    pub async fn matrix_direct_room_parties(
        &self,
        room: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT puppet, remote FROM matrix_direct_rooms WHERE room = $1 ORDER BY puppet",
        )
        .bind(room)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, _>>()?)
    }

    /// Keep a user's Matrix login, replacing the one they had.
    pub async fn save_matrix_login(&self, login: &MatrixLogin) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO matrix_logins (user_jid, account, session, store_key, saved_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_jid) DO UPDATE SET account = $2, session = $3, store_key = $4, saved_at = $5",
        )
        .bind(&login.user)
        .bind(&login.account)
        .bind(&login.session)
        .bind(&login.store_key)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keep a login's session again (its tokens renewed), only while it is still the user's
    /// login (the same stores' key): a login since forgotten or replaced stays so. Whether
    /// it was.
    pub async fn renew_matrix_login(&self, login: &MatrixLogin) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE matrix_logins SET session = $1, saved_at = $2 WHERE user_jid = $3 AND store_key = $4",
        )
        .bind(&login.session)
        .bind(unix_now())
        .bind(&login.user)
        .bind(&login.store_key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every saved Matrix login, oldest first.
    pub async fn matrix_logins(&self) -> Result<Vec<MatrixLogin>, StoreError> {
        let rows = sqlx::query(
            "SELECT user_jid, account, session, store_key FROM matrix_logins ORDER BY saved_at, user_jid",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(MatrixLogin {
                    user: r.try_get(0)?,
                    account: r.try_get(1)?,
                    session: r.try_get(2)?,
                    store_key: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Forget a user's Matrix login (nothing happens when there is none).
    pub async fn forget_matrix_login(&self, user: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM matrix_logins WHERE user_jid = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
