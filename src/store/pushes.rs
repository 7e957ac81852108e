//! What the gateway put into users' accounts (XEP-0356): each bookmark and contact once,
//! ever, so that what the user removed or changed stays as they left it.

use super::{unix_now, Store, StoreError};

impl Store {
    /// Note that `kind` (`bookmark`, `contact`) of `target` was put into `user`'s account;
    /// whether it is new (false: it was put there before, and is left alone).
    pub async fn record_push(
        &self,
        user: &str,
        kind: &str,
        target: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO account_pushes (user_jid, kind, target, pushed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(user)
        .bind(kind)
        .bind(target)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Forget what was put into `user`'s account (they asked to take it out); what it was.
    pub async fn forget_pushes(&self, user: &str) -> Result<Vec<(String, String)>, StoreError> {
        use sqlx::Row;
        let rows = sqlx::query("SELECT kind, target FROM account_pushes WHERE user_jid = $1")
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
        let mut pushed = Vec::with_capacity(rows.len());
        for row in rows {
            pushed.push((row.try_get(0)?, row.try_get(1)?));
        }
        sqlx::query("DELETE FROM account_pushes WHERE user_jid = $1")
            .bind(user)
            .execute(&self.pool)
            .await?;
        Ok(pushed)
    }
}
