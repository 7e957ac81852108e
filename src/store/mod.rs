//! The database: users and their settings, the JID ↔ remote mappings, later the archive.
//!
//! One code path serves SQLite (the default, a file created when missing, WAL journal) and
//! PostgreSQL, through sqlx's `Any` driver with runtime queries and `$n` placeholders. Each
//! dialect has its own migrations (same version numbers), embedded and run at open.
//!
//! *Architecture Invariant*: only this module writes SQL.

mod archive;
mod channels;
#[cfg(feature = "matrix")]
mod matrix;
#[cfg(feature = "matrix")]
mod matrix_media;
mod pushes;

use std::str::FromStr as _;
use std::time::{SystemTime, UNIX_EPOCH};

use causeway_bridge::NetworkKind;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, ConnectOptions as _, Executor, Row};

/// Why the database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite://…` nor `postgres://…`.
    #[error("unsupported database URL scheme {0:?}: use sqlite:// or postgres://")]
    Scheme(String),
    /// The database could not be reached or refused a query.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// A migration failed; the database is left at the last good version.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A settings column holds JSON that does not fit the settings type.
    #[error("stored settings are unreadable: {0}")]
    Settings(#[from] serde_json::Error),
}

impl StoreError {
    /// Whether the database refused these rows themselves (a constraint, a value it cannot
    /// hold), so that writing them again fails again; every other error (locked, read-only,
    /// full, unreachable) may pass, and the same write is worth trying again later.
    pub fn rejects_data(&self) -> bool {
        let StoreError::Sql(sqlx::Error::Database(e)) = self else {
            return false;
        };
        if e.kind() != sqlx::error::ErrorKind::Other {
            return true;
        }
        match e.code().as_deref() {
            // PostgreSQL: class 22, data exception (a NUL in text, a value out of range).
            Some(code) if code.len() == 5 && code.starts_with("22") => true,
            // SQLite: a string or blob too big, a constraint, a datatype mismatch.
            Some("18" | "19" | "20") => true,
            _ => false,
        }
    }
}

/// The database's write lock, held until dropped ([`Store::hold_write_lock`]).
#[doc(hidden)]
pub struct WriteLock {
    _tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl std::fmt::Debug for WriteLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteLock")
    }
}

/// Which SQL dialect a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// For deployments that outgrow one file.
    Postgres,
}

/// A handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A user's gateway-wide settings. Every field is optional: unset means "the default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSettings {
    /// Archive the rooms this user is in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_history: Option<bool>,
    /// Keep this user's puppets in their rooms while no resource is joined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    /// Nick to use where the user gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_nick: Option<String>,
}

/// A user's settings for one IRC server. `Debug` leaves the passwords out.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IrcServerSettings {
    /// Nick to connect with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// IRC username (ident).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// IRC realname (gecos).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realname: Option<String>,
    /// Archive this server's channels (unless a channel says otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_history: Option<bool>,
    /// Channels on this server are persistent (unless a channel says otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    /// Commands sent right after connecting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub after_connect: Vec<String>,
    /// Port, instead of the configured one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// TLS on or off, instead of the configured choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// Certificate verification, instead of the configured choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_tls: Option<bool>,
    /// Outgoing flood control on or off, instead of the configured choice.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttle: Option<bool>,
    /// Server password (PASS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_password: Option<String>,
    /// Encoding of what the server sends that is not UTF-8 (instead of latin-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_in: Option<String>,
    /// Encoding of what is sent to the server (instead of UTF-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_out: Option<String>,
    /// SASL PLAIN password; kept in its own column so it never travels with the settings.
    #[serde(skip)]
    pub sasl_password: Option<String>,
}

impl std::fmt::Debug for IrcServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |p: &Option<String>| p.as_ref().map(|_| "***");
        f.debug_struct("IrcServerSettings")
            .field("nick", &self.nick)
            .field("username", &self.username)
            .field("realname", &self.realname)
            .field("record_history", &self.record_history)
            .field("persistent", &self.persistent)
            .field("after_connect", &self.after_connect)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("verify_tls", &self.verify_tls)
            .field("throttle", &self.throttle)
            .field("encoding_in", &self.encoding_in)
            .field("encoding_out", &self.encoding_out)
            .field("server_password", &hidden(&self.server_password))
            .field("sasl_password", &hidden(&self.sasl_password))
            .finish()
    }
}

/// A remote room (or remote user) as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEntity {
    /// Row id.
    pub id: i64,
    /// The network it lives on.
    pub network: NetworkKind,
    /// The remote server.
    pub server: String,
    /// The remote name or id, case preserved (`#Rust`, `!AbCd`, `@Alice:server`).
    pub remote: String,
    /// The JID localpart that reaches it, as XMPP servers deliver it.
    pub localpart: String,
}

/// Which mapping table a [`RemoteEntity`] lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    /// A channel or room.
    Room,
    /// A user, for 1:1 messages.
    User,
}

impl EntityKind {
    fn table(self) -> (&'static str, &'static str) {
        match self {
            EntityKind::Room => ("rooms", "remote_name"),
            EntityKind::User => ("remote_users", "remote_id"),
        }
    }
}

/// How long an SQLite write waits for another writer's lock before it fails.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connect (creating a missing SQLite file) and bring the schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Store::open_waiting(url, max_connections, BUSY_TIMEOUT).await
    }

    /// [`Store::open`], with how long an SQLite write waits for another writer's lock
    /// before it fails (tests of a locked database make it short).
    #[doc(hidden)]
    pub async fn open_waiting(
        url: &str,
        max_connections: u32,
        busy: std::time::Duration,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let scheme = url.split(':').next().unwrap_or_default();
        let (backend, url) = match scheme {
            "sqlite" => (Backend::Sqlite, sqlite_url(url)),
            "postgres" | "postgresql" => (Backend::Postgres, url.to_owned()),
            other => return Err(StoreError::Scheme(other.to_owned())),
        };
        let mut options = AnyPoolOptions::new().max_connections(max_connections);
        if backend == Backend::Sqlite {
            let busy_timeout = format!("PRAGMA busy_timeout = {}", busy.as_millis());
            options = options.after_connect(move |conn, _meta| {
                let busy_timeout = busy_timeout.clone();
                Box::pin(async move {
                    // WAL: readers never block the writer, and commits need no fsync of the
                    // whole database; NORMAL is durable across crashes of the process in WAL.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute(sqlx::AssertSqlSafe(busy_timeout)).await?;
                    Ok(())
                })
            });
        }
        // A statement slowed by a failing database is the archiver's to report, once and
        // briefly; sqlx would warn with the whole statement (thousands of placeholders).
        let connect = sqlx::any::AnyConnectOptions::from_str(&url)?
            .log_slow_statements(log::LevelFilter::Debug, std::time::Duration::from_secs(1));
        let pool = options.connect_with(connect).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    /// Which dialect this store speaks.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Take an SQLite database's write lock and hold it until the lock is dropped: every
    /// other writer waits (`busy_timeout`), then fails. For the tests of what the gateway
    /// does with a locked database; nothing in the gateway calls it.
    #[doc(hidden)]
    pub async fn hold_write_lock(&self) -> Result<WriteLock, StoreError> {
        let mut tx = self.pool.begin().await?;
        // A write takes the lock; it is rolled back with the transaction.
        sqlx::query("INSERT INTO users (jid, created_at) VALUES ($1, 0)")
            .bind("write-lock@causeway.invalid")
            .execute(&mut *tx)
            .await?;
        Ok(WriteLock { _tx: tx })
    }

    /// Whether the database file is sound (SQLite's `PRAGMA integrity_check`: after a crash,
    /// for the fault suite); `Err` with what SQLite found otherwise. PostgreSQL keeps its
    /// own: always sound here.
    pub async fn integrity_check(&self) -> Result<Result<(), String>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(Ok(()));
        }
        let found: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        Ok(if found == ["ok"] {
            Ok(())
        } else {
            Err(found.join("; "))
        })
    }

    /// Close every connection, waiting for queries under way.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The install's secret called `name`: made (256 random bits, hex) the first time it is
    /// asked for, the same ever after — also when two gateways ask at once.
    pub async fn install_secret(&self, name: &str) -> Result<String, StoreError> {
        let fresh = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        sqlx::query(
            "INSERT INTO install_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM install_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The row id of the user with this bare JID, creating the user on first sight.
    pub async fn ensure_user(&self, jid: &str) -> Result<i64, StoreError> {
        sqlx::query(
            "INSERT INTO users (jid, created_at) VALUES ($1, $2) ON CONFLICT (jid) DO NOTHING",
        )
        .bind(jid)
        .bind(unix_now())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id FROM users WHERE jid = $1")
            .bind(jid)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The user's settings; `None` when the gateway has never seen the user.
    pub async fn user_settings(&self, jid: &str) -> Result<Option<UserSettings>, StoreError> {
        let row = sqlx::query("SELECT settings FROM users WHERE jid = $1")
            .bind(jid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(serde_json::from_str(&r.try_get::<String, _>(0)?)?))
            .transpose()
    }

    /// Replace the user's settings, creating the user if needed.
    pub async fn set_user_settings(
        &self,
        jid: &str,
        settings: &UserSettings,
    ) -> Result<(), StoreError> {
        self.ensure_user(jid).await?;
        sqlx::query("UPDATE users SET settings = $1 WHERE jid = $2")
            .bind(serde_json::to_string(settings)?)
            .bind(jid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user's settings for one IRC server; `None` when never set.
    pub async fn irc_server_settings(
        &self,
        jid: &str,
        server: &str,
    ) -> Result<Option<IrcServerSettings>, StoreError> {
        let row = sqlx::query(
            "SELECT s.settings, s.sasl_password FROM irc_server_settings s \
             JOIN users u ON u.id = s.user_id WHERE u.jid = $1 AND s.server = $2",
        )
        .bind(jid)
        .bind(server)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let mut settings: IrcServerSettings =
                serde_json::from_str(&r.try_get::<String, _>(0)?)?;
            settings.sasl_password = r.try_get(1)?;
            Ok(settings)
        })
        .transpose()
    }

    /// Replace the user's settings for one IRC server.
    pub async fn set_irc_server_settings(
        &self,
        jid: &str,
        server: &str,
        settings: &IrcServerSettings,
    ) -> Result<(), StoreError> {
        let user = self.ensure_user(jid).await?;
        sqlx::query(
            "INSERT INTO irc_server_settings (user_id, server, settings, sasl_password) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id, server) DO UPDATE SET settings = excluded.settings, sasl_password = excluded.sasl_password",
        )
        .bind(user)
        .bind(server)
        .bind(serde_json::to_string(settings)?)
        .bind(settings.sasl_password.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remember that `localpart` reaches `remote` on `server`; returns the mapping as stored.
    ///
    /// A remote name seen again keeps its first localpart; a localpart is never reassigned.
    pub async fn map_remote(
        &self,
        kind: EntityKind,
        network: NetworkKind,
        server: &str,
        remote: &str,
        localpart: &str,
    ) -> Result<RemoteEntity, StoreError> {
        let (table, column) = kind.table();
        let insert = format!(
            "INSERT INTO {table} (network, server, {column}, localpart) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
        );
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .bind(network.as_str())
            .bind(server)
            .bind(remote)
            .bind(localpart)
            .execute(&self.pool)
            .await?;
        let select = format!(
            "SELECT id, server, {column}, localpart FROM {table} WHERE network = $1 AND server = $2 AND {column} = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(network.as_str())
            .bind(server)
            .bind(remote)
            .fetch_one(&self.pool)
            .await?;
        entity(network, &row)
    }

    /// The remote entity that a (case-folded) JID localpart reaches, if known.
    pub async fn lookup_localpart(
        &self,
        kind: EntityKind,
        network: NetworkKind,
        localpart: &str,
    ) -> Result<Option<RemoteEntity>, StoreError> {
        let (table, column) = kind.table();
        let select = format!("SELECT id, server, {column}, localpart FROM {table} WHERE network = $1 AND localpart = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(select))
            .bind(network.as_str())
            .bind(localpart)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| entity(network, &r)).transpose()
    }
}

fn entity(network: NetworkKind, row: &AnyRow) -> Result<RemoteEntity, StoreError> {
    Ok(RemoteEntity {
        id: row.try_get(0)?,
        network,
        server: row.try_get(1)?,
        remote: row.try_get(2)?,
        localpart: row.try_get(3)?,
    })
}

/// SQLite URLs as users write them (`sqlite://causeway.db`) open read-write but do not create
/// the file; ask for creation unless the URL already says which mode it wants.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub use archive::{ArchivePage, ArchiveQuery, ArchivedMessage};
pub use channels::{ChannelJoin, ChannelSettings};
#[cfg(feature = "matrix")]
pub use matrix::{LinkedMessage, MatrixLogin};
#[cfg(feature = "matrix")]
pub use matrix_media::OfferedMedia;

#[cfg(test)]
mod tests;
