//! Configuration: defaults, then the TOML file given with `--config`, then
//! `CAUSEWAY_<SECTION>__<KEY>` environment overrides (figment), then [`Config::check`],
//! which reports every problem at once, each with the name of its key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

mod check;

pub(crate) use check::MAX_LIFETIME_DAYS;

/// Everything causeway reads from its configuration file.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// How to reach the XMPP server's component listener.
    #[serde(default)]
    pub xmpp: XmppConfig,
    /// Where the users, their settings, the address mappings and the archive live.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// Who may use the gateway.
    #[serde(default)]
    pub access: AccessConfig,
    /// The message archive and join history.
    #[serde(default)]
    pub history: HistoryConfig,
    /// The IRC network; absent disables IRC.
    pub irc: Option<IrcConfig>,
    /// The Matrix network; absent disables Matrix.
    pub matrix: Option<MatrixConfig>,
    /// The file this configuration was read from, for reloads.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[xmpp]`: the XMPP server that causeway attaches to as XEP-0114 components.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct XmppConfig {
    /// Host of the server's component listener.
    pub host: String,
    /// Port of the server's component listener.
    pub port: u16,
    /// Stanzas kept per link while it is down; past this the oldest are dropped, and counted.
    pub queue_size: usize,
    /// First delay before reconnecting a lost link, in milliseconds.
    pub reconnect_initial_ms: u64,
    /// Longest delay between reconnection attempts, in milliseconds (jitter stays under it).
    pub reconnect_max_ms: u64,
}

impl Default for XmppConfig {
    fn default() -> Self {
        XmppConfig {
            host: "127.0.0.1".into(),
            port: 5347,
            queue_size: 10_000,
            reconnect_initial_ms: 250,
            reconnect_max_ms: 3_000,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created when missing) or `postgres://user:pass@host/db`.
    pub url: Secret,
    /// Size of the connection pool.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: Secret("sqlite://causeway.db".into()),
            max_connections: 5,
        }
    }
}

/// `[access]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AccessConfig {
    /// Domains (`example.org`) or bare JIDs (`alice@example.org`) allowed to use the gateway.
    pub allow: Vec<String>,
    /// Bare JIDs of the gateway's administrators: they get the admin ad-hoc commands.
    pub admins: Vec<String>,
    /// Messages a user may send a minute, to every network and room together, after the
    /// burst (0: no limit).
    pub messages_per_minute: u32,
    /// Messages a user may send at once before `messages_per_minute` applies.
    pub message_burst: u32,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            allow: Vec::new(),
            admins: Vec::new(),
            messages_per_minute: 120,
            message_burst: 30,
        }
    }
}

/// `[history]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HistoryConfig {
    /// Archive what rooms show (per user, for MAM and join history).
    pub record: bool,
    /// Messages replayed on join when the client asks for no particular amount (biboumi: 20).
    pub join_lines: usize,
    /// Drop archived messages older than this many days (0 keeps them).
    pub retention_days: u64,
    /// Keep at most this many messages per user and room (0: no limit).
    pub retention_rows: u64,
    /// Where messages wait on disk while the database takes no writes (relative to the
    /// working directory unless absolute); archived from there once it does.
    pub spill_dir: PathBuf,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            record: true,
            join_lines: 20,
            retention_days: 0,
            retention_rows: 0,
            spill_dir: PathBuf::from("archive-spill"),
        }
    }
}

/// `[irc]`.
#[derive(Debug, Clone, Deserialize)]
pub struct IrcConfig {
    /// The component domain IRC is served on (`irc.example.org`).
    pub domain: String,
    /// The component secret shared with the XMPP server.
    pub secret: Secret,
    /// When set, only this IRC server is reachable and addresses drop the `%server` part.
    #[serde(default)]
    pub fixed_server: Option<String>,
    /// Per-server settings, keyed by host name.
    #[serde(default)]
    pub servers: BTreeMap<String, IrcServerConfig>,
    /// IRC username (ident) of puppets, unless a user set their own; default: from the nick.
    #[serde(default)]
    pub username: Option<String>,
    /// IRC realname of puppets, unless a user set their own; default: the nick.
    #[serde(default)]
    pub realname: Option<String>,
    /// Channels are persistent unless a user or channel setting says otherwise: the puppet
    /// stays while no resource is joined, and is back in after a restart.
    #[serde(default)]
    pub persistent: bool,
    /// Channels one user may be in at once, on every server together.
    #[serde(default = "default_max_channels_per_user")]
    pub max_channels_per_user: usize,
    /// IRC servers one user may be connected to at once.
    #[serde(default = "default_max_servers_per_user")]
    pub max_servers_per_user: usize,
    /// The connection keeper's Unix socket: IRC connections go through the keeper there
    /// (`causeway keeper`), which holds them while the gateway restarts.
    #[serde(default)]
    pub keeper: Option<PathBuf>,
}

fn default_max_channels_per_user() -> usize {
    100
}

fn default_max_servers_per_user() -> usize {
    10
}

/// `[irc.servers."host"]`: the IRC bridge's own settings type, read straight from the file
/// (its fields are the keys). Without IRC support any table is taken: an `[irc]` section is
/// refused then anyway.
#[cfg(feature = "irc")]
pub type IrcServerConfig = causeway_irc::ServerSettings;
/// `[irc.servers."host"]`, in a build without IRC support (which refuses `[irc]`).
#[cfg(not(feature = "irc"))]
pub type IrcServerConfig = figment::value::Dict;

/// `[matrix]`: the component, and what it runs: the application service (puppets on one
/// homeserver, when `homeserver` is set), users' own logins (`personal`), or both.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MatrixConfig {
    /// The component domain Matrix is served on (`matrix.example.org`).
    pub domain: String,
    /// The component secret shared with the XMPP server.
    pub secret: Secret,
    /// The homeserver's client-server API base URL; set, it runs the application service.
    #[serde(default)]
    pub homeserver: Option<String>,
    /// The homeserver's server name, the part after `:` in user ids; required with
    /// `homeserver`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Where the appservice transaction listener binds.
    #[serde(default = "default_matrix_listen")]
    pub listen: String,
    /// The appservice registration YAML (tokens and namespaces).
    #[serde(default = "default_matrix_registration")]
    pub registration: PathBuf,
    /// Localpart prefix of the puppets that stand for XMPP users.
    #[serde(default = "default_user_prefix")]
    pub user_prefix: String,
    /// How many members a room shows when an XMPP user joins it; members beyond appear
    /// when they speak or join, so a 5,000-member room joins at once.
    #[serde(default = "default_member_limit")]
    pub member_limit: usize,
    /// Users may log in to their own Matrix accounts (registration and ad-hoc commands on
    /// the component).
    #[serde(default = "default_true")]
    pub personal: bool,
    /// Where each logged-in user's matrix-sdk stores (state, crypto) go, one folder per
    /// user; relative to the working directory, like the database file.
    #[serde(default = "default_matrix_store_dir")]
    pub store_dir: PathBuf,
    /// How many users may be logged in at once; each login is a syncing client.
    #[serde(default = "default_max_logins")]
    pub max_logins: usize,
    /// Rooms one user may be in at once (each user has one Matrix login at most: a new one
    /// replaces the old).
    #[serde(default = "default_max_rooms_per_user")]
    pub max_rooms_per_user: usize,
    /// The public address of the endpoint Matrix files are fetched from
    /// (`https://gw.example.org/media`); unset, files are shown by name with no link.
    #[serde(default)]
    pub media_url: Option<String>,
    /// Where that endpoint listens (a reverse proxy passes the public address's path on).
    #[serde(default = "default_media_listen")]
    pub media_listen: String,
    /// The largest file carried either way, in bytes.
    #[serde(default = "default_media_max_size")]
    pub media_max_size: u64,
    /// How many days a file's link works.
    #[serde(default = "default_media_lifetime_days")]
    pub media_lifetime_days: u64,
    /// Whether files XMPP users link to may be fetched from loopback and private addresses
    /// (an upload service on the same host or network).
    #[serde(default)]
    pub media_fetch_private: bool,
}

fn default_media_listen() -> String {
    "127.0.0.1:9994".into()
}
fn default_media_max_size() -> u64 {
    50 * 1024 * 1024
}
fn default_media_lifetime_days() -> u64 {
    30
}

fn default_max_rooms_per_user() -> usize {
    200
}

/// The application service's homeserver, as `[matrix]` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppserviceKeys<'a> {
    /// `homeserver`: the client-server API base URL.
    pub homeserver: &'a str,
    /// `server_name`: the part after `:` in user ids.
    pub server_name: &'a str,
}

impl MatrixConfig {
    /// The appservice's homeserver and server name, when both are set (the appservice runs
    /// only then; `check` reports one without the other).
    pub fn appservice(&self) -> Option<AppserviceKeys<'_>> {
        Some(AppserviceKeys {
            homeserver: self.homeserver.as_deref()?,
            server_name: self.server_name.as_deref()?,
        })
    }
}

fn default_member_limit() -> usize {
    200
}
fn default_true() -> bool {
    true
}
fn default_matrix_store_dir() -> PathBuf {
    "matrix".into()
}
fn default_max_logins() -> usize {
    1000
}

fn default_matrix_listen() -> String {
    "127.0.0.1:9993".into()
}
fn default_matrix_registration() -> PathBuf {
    "matrix-registration.yaml".into()
}
fn default_user_prefix() -> String {
    "_xmpp_".into()
}

/// A secret (component secret, database URL with password): shown as `***` by `Debug`, so
/// it never reaches a log line.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file given with `--config`.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key is missing or has the wrong type.
    #[error("{}", describe_load_error(.0))]
    Load(#[from] Box<figment::Error>),
    /// The configuration parsed but breaks rules; every problem is listed.
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One thing wrong with the configuration, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, like `irc.secret`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A network's component: which domain, with which secret.
#[derive(Debug, Clone)]
pub struct ComponentDomain {
    /// The network served on this domain.
    pub network: causeway_bridge::NetworkKind,
    /// The component's domain.
    pub domain: String,
    /// The XEP-0114 shared secret.
    pub secret: Secret,
}

impl Config {
    /// Load the file, apply environment overrides, and [`check`](Self::check) the result.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        std::fs::File::open(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_figment(Figment::new().merge(Toml::file_exact(path)))?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Load from a TOML string plus the environment (tests, `check-config` on stdin).
    pub fn from_toml_str(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        // Only CAUSEWAY_<SECTION>__<KEY>: other CAUSEWAY_* variables (the test scripts' own)
        // are not configuration.
        let env = Env::prefixed("CAUSEWAY_")
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        let figment = figment.merge(env);
        // figment's own extraction gives the best message for a missing key or a wrong type.
        let config: Config = figment.extract().map_err(Box::new)?;
        // A second pass over the same values only to name keys that nothing reads.
        let value: figment::value::Value = figment.extract().map_err(Box::new)?;
        let mut unknown = Vec::new();
        let _: Result<Config, _> = serde_ignored::deserialize(&value, |path| {
            // Optional sections show as `?` segments; users know them by name only.
            unknown.push(
                path.to_string()
                    .replace(".?", "")
                    .trim_start_matches("?.")
                    .to_string(),
            )
        });
        let mut problems: Vec<Problem> = unknown
            .into_iter()
            .map(|key| Problem {
                message: if key.contains('.') {
                    "unknown key".into()
                } else {
                    "unknown section (known: xmpp, database, access, history, irc, matrix)".into()
                },
                key,
            })
            .collect();
        problems.extend(config.check());
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// The component domains to attach, one per configured network.
    pub fn component_domains(&self) -> Vec<ComponentDomain> {
        use causeway_bridge::NetworkKind;
        let irc = self
            .irc
            .as_ref()
            .map(|c| (NetworkKind::Irc, &c.domain, &c.secret));
        let matrix = self
            .matrix
            .as_ref()
            .map(|c| (NetworkKind::Matrix, &c.domain, &c.secret));
        irc.into_iter()
            .chain(matrix)
            .map(|(network, domain, secret)| ComponentDomain {
                network,
                domain: domain.to_ascii_lowercase(),
                secret: secret.clone(),
            })
            .collect()
    }
}

/// figment's errors, one per line, keyed like [`Problem`]s (without figment's profile name).
fn describe_load_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let source = e
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| format!(" (from {s})"))
                .unwrap_or_default();
            if e.path.is_empty() {
                format!("{}{source}", e.kind)
            } else {
                format!("{}: {}{source}", e.path.join("."), e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests;
