//! Per-user channel state: settings that override the user's and the server's, and which
//! channels the puppet is in, for rejoining persistent ones after a restart.

use sqlx::Row;

use super::{Store, StoreError};

/// A user's settings for one channel; `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSettings {
    /// Keep the puppet in the channel while no resource is joined.
    pub persistent: Option<bool>,
    /// Archive the channel.
    pub record: Option<bool>,
    /// The channel's text encoding, instead of the server's.
    pub encoding: Option<String>,
}

/// A channel to join again at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelJoin {
    /// Whose puppet.
    pub user: String,
    /// The IRC server.
    pub server: String,
    /// The channel.
    pub channel: String,
    /// The nick it had.
    pub nick: String,
}

fn tri(value: Option<bool>) -> Option<i64> {
    value.map(i64::from)
}

impl Store {
    /// The user's settings for a channel.
    pub async fn channel_settings(
        &self,
        user: &str,
        server: &str,
        channel: &str,
    ) -> Result<ChannelSettings, StoreError> {
        let row = sqlx::query("SELECT persistent, record, encoding FROM user_channels WHERE user_jid = $1 AND server = $2 AND channel = $3")
            .bind(user)
            .bind(server.to_lowercase())
            .bind(channel.to_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => ChannelSettings {
                persistent: row.try_get::<Option<i64>, _>(0)?.map(|v| v != 0),
                record: row.try_get::<Option<i64>, _>(1)?.map(|v| v != 0),
                encoding: row.try_get(2)?,
            },
            None => ChannelSettings::default(),
        })
    }

    /// Replace the user's settings for a channel.
    pub async fn set_channel_settings(
        &self,
        user: &str,
        server: &str,
        channel: &str,
        settings: ChannelSettings,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_channels (user_jid, server, channel, persistent, record, encoding) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_jid, server, channel) DO UPDATE SET persistent = excluded.persistent, record = excluded.record, \
             encoding = excluded.encoding",
        )
        .bind(user)
        .bind(server.to_lowercase())
        .bind(channel.to_lowercase())
        .bind(tri(settings.persistent))
        .bind(tri(settings.record))
        .bind(settings.encoding)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Note whether the user's puppet is in a channel now, and under which nick.
    pub async fn mark_joined(
        &self,
        user: &str,
        server: &str,
        channel: &str,
        nick: &str,
        joined: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO user_channels (user_jid, server, channel, nick, joined) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_jid, server, channel) DO UPDATE SET nick = excluded.nick, joined = excluded.joined",
        )
        .bind(user)
        .bind(server.to_lowercase())
        .bind(channel.to_lowercase())
        .bind(nick)
        .bind(i64::from(joined))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Note that the user's puppet left a channel.
    pub async fn mark_left(
        &self,
        user: &str,
        server: &str,
        channel: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE user_channels SET joined = 0 WHERE user_jid = $1 AND server = $2 AND channel = $3")
            .bind(user)
            .bind(server.to_lowercase())
            .bind(channel.to_lowercase())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Channels the puppets were in when the gateway stopped.
    pub async fn joined_channels(&self) -> Result<Vec<ChannelJoin>, StoreError> {
        let rows = sqlx::query("SELECT user_jid, server, channel, nick FROM user_channels WHERE joined = 1 ORDER BY user_jid, server, channel")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ChannelJoin {
                    user: r.try_get(0)?,
                    server: r.try_get(1)?,
                    channel: r.try_get(2)?,
                    nick: r.try_get(3)?,
                })
            })
            .collect()
    }
}
