//! Configuration: defaults, then the TOML file given with `--config`, then
//! `CAUSEWAY_<SECTION>__<KEY>` environment overrides (figment), then [`Config::check`],
//! which reports every problem at once, each with the name of its key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;
use tokio_xmpp::jid::BareJid;

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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AccessConfig {
    /// Domains (`example.org`) or bare JIDs (`alice@example.org`) allowed to use the gateway.
    pub allow: Vec<String>,
    /// Bare JIDs of the gateway's administrators: they get the admin ad-hoc commands.
    pub admins: Vec<String>,
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
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            record: true,
            join_lines: 20,
            retention_days: 0,
            retention_rows: 0,
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
}

/// `[irc.servers."host"]`: the IRC bridge's own settings type, read straight from the file
/// (its fields are the keys). Without IRC support any table is taken: an `[irc]` section is
/// refused then anyway.
#[cfg(feature = "irc")]
pub type IrcServerConfig = causeway_irc::ServerSettings;
/// `[irc.servers."host"]`, in a build without IRC support (which refuses `[irc]`).
#[cfg(not(feature = "irc"))]
pub type IrcServerConfig = figment::value::Dict;

/// `[matrix]`.
#[derive(Debug, Clone, Deserialize)]
pub struct MatrixConfig {
    /// The component domain Matrix is served on (`matrix.example.org`).
    pub domain: String,
    /// The component secret shared with the XMPP server.
    pub secret: Secret,
    /// The homeserver's client-server API base URL.
    pub homeserver: String,
    /// The homeserver's server name, the part after `:` in user ids.
    pub server_name: String,
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
}

fn default_member_limit() -> usize {
    200
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

    /// Every rule the configuration breaks, each with its key; empty when all is well.
    pub fn check(&self) -> Vec<Problem> {
        let mut p = Problems::default();
        if self.xmpp.host.trim().is_empty() {
            p.add("xmpp.host", "must not be empty");
        }
        if self.xmpp.port == 0 {
            p.add("xmpp.port", "must be a port number from 1 to 65535");
        }
        if self.xmpp.queue_size == 0 {
            p.add("xmpp.queue_size", "must be at least 1");
        }
        if self.xmpp.reconnect_initial_ms == 0 {
            p.add("xmpp.reconnect_initial_ms", "must be at least 1");
        }
        if self.xmpp.reconnect_max_ms < self.xmpp.reconnect_initial_ms {
            p.add(
                "xmpp.reconnect_max_ms",
                "must not be below xmpp.reconnect_initial_ms",
            );
        }
        check_database_url(self.database.url.expose(), &mut p);
        if self.database.max_connections == 0 {
            p.add("database.max_connections", "must be at least 1");
        }
        if self.access.allow.is_empty() {
            p.add(
                "access.allow",
                "is empty, so nobody could use the gateway: list domains or bare JIDs",
            );
        }
        for (i, admin) in self.access.admins.iter().enumerate() {
            if !admin.parse::<BareJid>().is_ok_and(|j| j.node().is_some()) {
                p.add(
                    format!("access.admins[{i}]"),
                    format!("{admin:?} is not a bare JID"),
                );
            }
        }
        for (i, entry) in self.access.allow.iter().enumerate() {
            if entry.parse::<BareJid>().is_err() {
                p.add(
                    format!("access.allow[{i}]"),
                    format!("{entry:?} is neither a domain nor a bare JID"),
                );
            }
        }
        if self.irc.is_none() && self.matrix.is_none() {
            p.add(
                "irc",
                "no network is configured: add an [irc] or a [matrix] section",
            );
        }
        if let Some(irc) = &self.irc {
            if !cfg!(feature = "irc") {
                p.add(
                    "irc",
                    "this build of causeway has no IRC support (cargo feature `irc`)",
                );
            }
            check_component("irc", &irc.domain, &irc.secret, &mut p);
            if let Some(server) = &irc.fixed_server {
                if !is_host_name(server) {
                    p.add("irc.fixed_server", format!("{server:?} is not a host name"));
                }
            }
            for (host, server) in &irc.servers {
                if !is_host_name(host) {
                    p.add(format!("irc.servers.{host:?}"), "is not a host name");
                }
                #[cfg(feature = "irc")]
                for (key, message) in server.problems() {
                    p.add(format!("irc.servers.{host:?}.{key}"), message);
                }
                #[cfg(not(feature = "irc"))]
                let _ = server;
            }
        }
        if let Some(matrix) = &self.matrix {
            if !cfg!(feature = "matrix") {
                p.add(
                    "matrix",
                    "this build of causeway has no Matrix support (cargo feature `matrix`)",
                );
            }
            check_component("matrix", &matrix.domain, &matrix.secret, &mut p);
            match url::Url::parse(&matrix.homeserver) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => p.add(
                    "matrix.homeserver",
                    format!("{:?} is not an http(s) URL", matrix.homeserver),
                ),
            }
            if !is_host_name(matrix.server_name.split(':').next().unwrap_or_default()) {
                p.add(
                    "matrix.server_name",
                    format!("{:?} is not a server name", matrix.server_name),
                );
            }
            if matrix.listen.parse::<SocketAddr>().is_err() {
                p.add(
                    "matrix.listen",
                    format!("{:?} is not an address like 127.0.0.1:9993", matrix.listen),
                );
            }
            if matrix.registration.as_os_str().is_empty() {
                p.add("matrix.registration", "must name the registration file");
            }
            let prefix_ok = !matrix.user_prefix.is_empty()
                && matrix
                    .user_prefix
                    .chars()
                    .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/'));
            if !prefix_ok {
                p.add(
                    "matrix.user_prefix",
                    "must be non-empty and use only a-z 0-9 . _ = - /",
                );
            }
        }
        if let (Some(irc), Some(matrix)) = (&self.irc, &self.matrix) {
            if irc.domain.eq_ignore_ascii_case(&matrix.domain) {
                p.add(
                    "matrix.domain",
                    "must differ from irc.domain: each network needs its own component",
                );
            }
        }
        p.0
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

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

fn check_component(section: &str, domain: &str, secret: &Secret, p: &mut Problems) {
    if !is_host_name(domain) {
        p.add(
            format!("{section}.domain"),
            format!("{domain:?} is not a domain name"),
        );
    }
    if secret.expose().is_empty() {
        p.add(
            format!("{section}.secret"),
            "is missing: set the component secret the XMPP server expects",
        );
    }
}

fn check_database_url(url: &str, p: &mut Problems) {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "sqlite" => {
            if url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .is_empty()
            {
                p.add(
                    "database.url",
                    "sqlite URL names no file (sqlite://causeway.db)",
                );
            }
        }
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => {
            if u.host().is_none() && !u.query_pairs().any(|(k, _)| k == "host") {
                p.add("database.url", "postgres URL names no host");
            }
        }
        Ok(u) => p.add(
            "database.url",
            format!(
                "unsupported scheme {:?}: use sqlite:// or postgres://",
                u.scheme()
            ),
        ),
        Err(e) => p.add("database.url", format!("not a URL ({e})")),
    }
}

/// A DNS-style host name: dot-separated labels of letters, digits and `-`.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests;
