//! The Matrix bridge's state in the gateway's database: [`MatrixStore`] over [`Store`].

use async_trait::async_trait;
use causeway_bridge::NetworkKind;
use causeway_matrix::store::{MatrixStore, MessageLink, StoreFailure};
use sqlx::Row;

use super::{unix_now, EntityKind, Store, StoreError};

fn failure(e: StoreError) -> StoreFailure {
    StoreFailure(e.to_string())
}

fn sql(e: sqlx::Error) -> StoreFailure {
    failure(StoreError::from(e))
}

#[async_trait]
impl MatrixStore for Store {
    async fn transaction_seen(&self, txn_id: &str) -> Result<bool, StoreFailure> {
        let row = sqlx::query("SELECT 1 FROM matrix_transactions WHERE txn_id = $1")
            .bind(txn_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql)?;
        Ok(row.is_some())
    }

    async fn transaction_done(&self, txn_id: &str) -> Result<(), StoreFailure> {
        sqlx::query(
            "INSERT INTO matrix_transactions (txn_id, done_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(txn_id)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map_err(sql)?;
        Ok(())
    }

    async fn remember_room(&self, room_id: &str) -> Result<(), StoreFailure> {
        let server = room_id.split_once(':').map(|(_, s)| s).unwrap_or_default();
        self.map_remote(
            EntityKind::Room,
            NetworkKind::Matrix,
            server,
            room_id,
            &room_id.to_lowercase(),
        )
        .await
        .map_err(failure)?;
        Ok(())
    }

    async fn find_room(&self, folded: &str) -> Result<Option<String>, StoreFailure> {
        let found = self
            .lookup_localpart(EntityKind::Room, NetworkKind::Matrix, folded)
            .await
            .map_err(failure)?;
        Ok(found.map(|room| room.remote))
    }

    async fn link_message(&self, link: &MessageLink) -> Result<(), StoreFailure> {
        sqlx::query(
            "INSERT INTO message_links (room, xmpp_id, event_id, sender) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&link.room)
        .bind(&link.xmpp_id)
        .bind(&link.event_id)
        .bind(&link.sender)
        .execute(&self.pool)
        .await
        .map_err(sql)?;
        Ok(())
    }

    async fn find_message(
        &self,
        room: &str,
        id: &str,
    ) -> Result<Option<MessageLink>, StoreFailure> {
        let row = sqlx::query(
            "SELECT room, xmpp_id, event_id, sender FROM message_links WHERE room = $1 AND (event_id = $2 OR xmpp_id = $2) ORDER BY CASE WHEN event_id = $2 THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(room)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql)?;
        row.map(|r| {
            Ok(MessageLink {
                room: r.try_get(0).map_err(sql)?,
                xmpp_id: r.try_get(1).map_err(sql)?,
                event_id: r.try_get(2).map_err(sql)?,
                sender: r.try_get(3).map_err(sql)?,
            })
        })
        .transpose()
    }

    async fn unlink(&self, room: &str, event_id: &str) -> Result<(), StoreFailure> {
        sqlx::query("DELETE FROM message_links WHERE room = $1 AND event_id = $2")
            .bind(room)
            .bind(event_id)
            .execute(&self.pool)
            .await
            .map_err(sql)?;
        Ok(())
    }

    async fn reactions(
        &self,
        room: &str,
        target: &str,
        sender: &str,
    ) -> Result<Vec<(String, String)>, StoreFailure> {
        // `_` (in event ids) is a LIKE wildcard and matches more: the prefix is checked again.
        let prefix = format!("reaction {target} ");
        let rows = sqlx::query(
            "SELECT xmpp_id, event_id FROM message_links WHERE room = $1 AND sender = $2 AND xmpp_id LIKE $3",
        )
        .bind(room)
        .bind(sender)
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(sql)?;
        let mut found = Vec::new();
        for row in rows {
            let link: String = row.try_get(0).map_err(sql)?;
            if let Some(key) = link.strip_prefix(&prefix) {
                found.push((key.to_owned(), row.try_get(1).map_err(sql)?));
            }
        }
        Ok(found)
    }

    async fn direct_room(
        &self,
        puppet: &str,
        remote: &str,
    ) -> Result<Option<String>, StoreFailure> {
        let row =
            sqlx::query("SELECT room FROM matrix_direct_rooms WHERE puppet = $1 AND remote = $2")
                .bind(puppet)
                .bind(remote)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql)?;
        row.map(|r| r.try_get(0).map_err(sql)).transpose()
    }

    async fn set_direct_room(
        &self,
        puppet: &str,
        remote: &str,
        room: &str,
    ) -> Result<(), StoreFailure> {
        sqlx::query(
            "INSERT INTO matrix_direct_rooms (puppet, remote, room) VALUES ($1, $2, $3) ON CONFLICT (puppet, remote) DO UPDATE SET room = $3",
        )
        .bind(puppet)
        .bind(remote)
        .bind(room)
        .execute(&self.pool)
        .await
        .map_err(sql)?;
        Ok(())
    }

    async fn direct_room_parties(
        &self,
        room: &str,
    ) -> Result<Option<(String, String)>, StoreFailure> {
        let row = sqlx::query("SELECT puppet, remote FROM matrix_direct_rooms WHERE room = $1")
            .bind(room)
            .fetch_optional(&self.pool)
            .await
            .map_err(sql)?;
        row.map(|r| Ok((r.try_get(0).map_err(sql)?, r.try_get(1).map_err(sql)?)))
            .transpose()
    }
}
