//! The Matrix files the gateway offers XMPP users behind its own links: one row per event
//! and login, found by the link's token, gone once it expires or its event is redacted.

use sqlx::Row;

use super::{unix_now, Store, StoreError};

/// One offered file (a row of `matrix_media`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedMedia {
    /// The link's random token.
    pub token: String,
    /// The Matrix event that carried it.
    pub event_id: String,
    /// The XMPP user whose personal login fetches it; empty for the appservice.
    pub owner: String,
    /// The file's Matrix source (JSON).
    pub source: String,
    /// Its file name.
    pub name: String,
    /// Its MIME type, when the event said.
    pub mimetype: Option<String>,
    /// Its size in bytes, when the event said.
    pub size: Option<i64>,
    /// Until when the link works, in seconds since 1970.
    pub expires_at: i64,
}

impl Store {
    /// Keep an offered file under its token; the token in force: the one the event's file
    /// was offered under to that login before (its expiry renewed), else this one.
    pub async fn offer_matrix_media(&self, media: &OfferedMedia) -> Result<String, StoreError> {
        let row = sqlx::query(
            "INSERT INTO matrix_media \
             (token, event_id, owner, source, name, mimetype, size, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (event_id, owner) DO UPDATE SET expires_at = $8 \
             RETURNING token",
        )
        .bind(&media.token)
        .bind(&media.event_id)
        .bind(&media.owner)
        .bind(&media.source)
        .bind(&media.name)
        .bind(&media.mimetype)
        .bind(media.size)
        .bind(media.expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get(0)?)
    }

    /// The file offered under `token`, while its link works.
    pub async fn offered_matrix_media(
        &self,
        token: &str,
    ) -> Result<Option<OfferedMedia>, StoreError> {
        let row = sqlx::query(
            "SELECT token, event_id, owner, source, name, mimetype, size, expires_at \
             FROM matrix_media WHERE token = $1 AND expires_at > $2",
        )
        .bind(token)
        .bind(unix_now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(OfferedMedia {
                token: row.try_get(0)?,
                event_id: row.try_get(1)?,
                owner: row.try_get(2)?,
                source: row.try_get(3)?,
                name: row.try_get(4)?,
                mimetype: row.try_get(5)?,
                size: row.try_get(6)?,
                expires_at: row.try_get(7)?,
            })
        })
        .transpose()
    }

    /// Withdraw the links to the file of a redacted event.
    pub async fn withdraw_matrix_media(&self, event_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM matrix_media WHERE event_id = $1")
            .bind(event_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forget the files whose links have expired; how many.
    pub async fn prune_matrix_media(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM matrix_media WHERE expires_at <= $1")
            .bind(unix_now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
