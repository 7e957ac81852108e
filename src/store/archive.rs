//! The message archive: batched writes, and the reads MAM and join history need.

use sqlx::{Any, Row};

use super::{Store, StoreError};

/// One archived message, as one user's view of one room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArchivedMessage {
    /// The XEP-0359 stanza-id it was delivered with.
    pub stanza_id: String,
    /// Whose archive (bare JID).
    pub user: String,
    /// The room (bare JID).
    pub room: String,
    /// The sender's nick in the room.
    pub sender: String,
    /// The text.
    pub body: String,
    /// The sender's XEP-0359 origin-id, for the user's own messages.
    pub origin_id: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// What to fetch from a user's archive of a room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Whose archive.
    pub user: String,
    /// Which room.
    pub room: String,
    /// Only messages at or after (ms).
    pub start_ms: Option<i64>,
    /// Only messages at or before (ms).
    pub end_ms: Option<i64>,
    /// Only messages from this nick.
    pub with_nick: Option<String>,
    /// Only messages after this stanza-id (paging forward).
    pub after: Option<String>,
    /// Only messages before this stanza-id (paging backward).
    pub before: Option<String>,
    /// The newest `max` instead of the oldest (RSM `<before/>` without an id, or history).
    pub newest: bool,
    /// At most this many.
    pub max: usize,
}

/// A page of results, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    /// The messages, oldest first.
    pub messages: Vec<ArchivedMessage>,
    /// Whether this page reaches the end of the results in its direction.
    pub complete: bool,
    /// How many messages match the filters in all.
    pub count: i64,
}

impl Store {
    /// Write a batch of messages in one transaction.
    pub async fn archive(&self, messages: &[ArchivedMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // One multi-row INSERT per chunk (SQLite takes at most 32766 bind parameters).
        for chunk in messages.chunks(500) {
            let mut sql = String::from("INSERT INTO archive (stanza_id, user_jid, room, sender, body, origin_id, at_ms) VALUES ");
            let mut n = 0;
            for (i, _) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let params: Vec<String> = (0..7)
                    .map(|_| {
                        n += 1;
                        format!("${n}")
                    })
                    .collect();
                sql.push_str(&format!("({})", params.join(", ")));
            }
            // A message seen again (a replayed Matrix transaction) is archived once.
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for m in chunk {
                insert = insert
                    .bind(self.text(&m.stanza_id))
                    .bind(self.text(&m.user))
                    .bind(self.text(&m.room))
                    .bind(self.text(&m.sender))
                    .bind(self.text(&m.body))
                    .bind(m.origin_id.as_deref().map(|id| self.text(id)))
                    .bind(m.at_ms);
            }
            insert.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Text as this database can hold it: PostgreSQL refuses NUL in text (a Matrix body may
    /// carry one), so it becomes U+FFFD there rather than fail the whole batch.
    fn text(&self, text: &str) -> String {
        match self.backend {
            super::Backend::Postgres if text.contains('\0') => text.replace('\0', "\u{fffd}"),
            _ => text.to_owned(),
        }
    }

    /// A page of a user's archive of a room.
    pub async fn archive_page(&self, q: &ArchiveQuery) -> Result<ArchivePage, StoreError> {
        let mut n = 2;
        let mut param = || {
            n += 1;
            format!("${n}")
        };
        let mut filters = String::from(" WHERE user_jid = $1 AND room = $2");
        if q.start_ms.is_some() {
            filters.push_str(&format!(" AND at_ms >= {}", param()));
        }
        if q.end_ms.is_some() {
            filters.push_str(&format!(" AND at_ms <= {}", param()));
        }
        if q.with_nick.is_some() {
            filters.push_str(&format!(" AND sender = {}", param()));
        }
        let count_sql = format!("SELECT COUNT(*) FROM archive{filters}");
        let count: i64 = bind_filters(sqlx::query(sqlx::AssertSqlSafe(count_sql)), q)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;

        let mut sql = format!("SELECT stanza_id, user_jid, room, sender, body, origin_id, at_ms FROM archive{filters}");
        if q.after.is_some() {
            sql.push_str(&format!(
                " AND id > (SELECT id FROM archive WHERE user_jid = $1 AND stanza_id = {})",
                param()
            ));
        }
        if q.before.is_some() {
            sql.push_str(&format!(
                " AND id < (SELECT id FROM archive WHERE user_jid = $1 AND stanza_id = {})",
                param()
            ));
        }
        let backwards = q.newest || (q.before.is_some() && q.after.is_none());
        sql.push_str(if backwards {
            " ORDER BY id DESC"
        } else {
            " ORDER BY id ASC"
        });
        sql.push_str(&format!(" LIMIT {}", q.max + 1));
        let mut query = bind_filters(sqlx::query(sqlx::AssertSqlSafe(sql)), q);
        if let Some(after) = &q.after {
            query = query.bind(after.clone());
        }
        if let Some(before) = &q.before {
            query = query.bind(before.clone());
        }
        let rows = query.fetch_all(&self.pool).await?;
        let complete = rows.len() <= q.max;
        let mut messages = rows
            .iter()
            .take(q.max)
            .map(|r| {
                Ok(ArchivedMessage {
                    stanza_id: r.try_get(0)?,
                    user: r.try_get(1)?,
                    room: r.try_get(2)?,
                    sender: r.try_get(3)?,
                    body: r.try_get(4)?,
                    origin_id: r.try_get(5)?,
                    at_ms: r.try_get(6)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if backwards {
            messages.reverse();
        }
        Ok(ArchivePage {
            messages,
            complete,
            count,
        })
    }

    /// Drop what is older than `before_ms`, and beyond the newest `keep_rows` of each user's
    /// room; returns how many rows went.
    pub async fn prune_archive(
        &self,
        before_ms: Option<i64>,
        keep_rows: Option<i64>,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        if let Some(before) = before_ms {
            removed += sqlx::query("DELETE FROM archive WHERE at_ms < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        if let Some(keep) = keep_rows {
            let sql = "DELETE FROM archive WHERE id IN (SELECT a.id FROM archive a WHERE \
                       (SELECT COUNT(*) FROM archive b WHERE b.user_jid = a.user_jid AND b.room = a.room AND b.id > a.id) >= $1)";
            removed += sqlx::query(sql)
                .bind(keep)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }
}

/// Bind the filter parameters of `q`, in the order [`Store::archive_page`] numbered them.
fn bind_filters<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    q: &ArchiveQuery,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let mut query = query.bind(q.user.clone()).bind(q.room.clone());
    if let Some(start) = q.start_ms {
        query = query.bind(start);
    }
    if let Some(end) = q.end_ms {
        query = query.bind(end);
    }
    if let Some(nick) = &q.with_nick {
        query = query.bind(nick.clone());
    }
    query
}
