//! The bridge's settings: how to reach each IRC server (read by the gateway straight from its
//! configuration file), and who each puppet is there.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use causeway_bridge::UserRef;
use serde::Deserialize;

/// How to reach one IRC server: `[irc.servers."host"]` in the gateway's configuration, read
/// straight into this type. The field names are the configuration keys (a contract: see
/// DESIGN.md); a key left out takes its default.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Port to connect to.
    pub port: u16,
    /// TLS (certificates verified against the Mozilla roots); false means plain TCP.
    pub tls: bool,
    /// Verify the server's certificate; turn off only for a self-signed server you trust.
    pub verify_tls: bool,
    /// Outgoing flood control (a token bucket per puppet connection).
    pub flood_control: bool,
    /// Lines a puppet may send at once before the rate applies.
    pub flood_burst: u32,
    /// Lines per second after the burst.
    pub flood_per_second: u32,
    /// Server password (PASS), for servers that want one; `Debug` shows `***`.
    pub password: Option<String>,
    /// Seconds of silence after which a puppet pings the server.
    pub ping_interval_secs: u64,
    /// Seconds to wait for any data after that ping before the connection counts as dead.
    pub ping_timeout_secs: u64,
    /// Reconnection attempts after a lost connection before giving up (0: none).
    pub reconnect_attempts: u32,
    /// Connections to this server (all puppets together) opened at least this many
    /// milliseconds apart, plus up to half again at random, so that a thousand puppets
    /// dropped at once do not come back at once (0: no pacing).
    pub reconnect_interval_ms: u64,
    /// Connections to this server registering at once, at most.
    pub reconnect_concurrency: u32,
    /// Send XEP-0393 styling from XMPP (`*bold*`, `_italic_`, `~strike~`, `` `code` ``) as
    /// IRC formatting codes, the directives left out; off, it goes as typed.
    pub irc_formatting: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            port: 6697,
            tls: true,
            verify_tls: true,
            flood_control: true,
            flood_burst: 10,
            flood_per_second: 2,
            password: None,
            ping_interval_secs: 60,
            ping_timeout_secs: 90,
            reconnect_attempts: 16,
            reconnect_interval_ms: 3000,
            reconnect_concurrency: 2,
            irc_formatting: false,
        }
    }
}

impl std::fmt::Debug for ServerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSettings")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("verify_tls", &self.verify_tls)
            .field("flood_control", &self.flood_control)
            .field("flood_burst", &self.flood_burst)
            .field("flood_per_second", &self.flood_per_second)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ping_interval_secs", &self.ping_interval_secs)
            .field("ping_timeout_secs", &self.ping_timeout_secs)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("reconnect_interval_ms", &self.reconnect_interval_ms)
            .field("reconnect_concurrency", &self.reconnect_concurrency)
            .field("irc_formatting", &self.irc_formatting)
            .finish()
    }
}

impl ServerSettings {
    /// Silence after which the puppet pings the server.
    pub fn ping_after(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    /// Silence after which the connection counts as dead: the ping interval, then the
    /// timeout.
    pub fn dead_after(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs + self.ping_timeout_secs)
    }

    /// What is wrong with these settings: (key, what), for the configuration check.
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut problems = Vec::new();
        if self.flood_control && (self.flood_burst == 0 || self.flood_per_second == 0) {
            problems.push((
                "flood_per_second",
                "flood control needs a burst and a rate of at least 1",
            ));
        }
        if self.ping_interval_secs == 0 || self.ping_timeout_secs == 0 {
            problems.push((
                "ping_interval_secs",
                "ping interval and timeout must be at least 1 second",
            ));
        }
        if self.port == 0 {
            problems.push(("port", "must be a port number from 1 to 65535"));
        }
        if self.reconnect_concurrency == 0 {
            problems.push(("reconnect_concurrency", "must be at least 1"));
        }
        problems
    }
}

/// Who the puppet is on a server.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    /// The nick to register with.
    pub nick: String,
    /// The username (ident).
    pub username: String,
    /// The realname (gecos).
    pub realname: String,
    /// SASL PLAIN account, when it differs from the nick.
    pub sasl_account: Option<String>,
    /// SASL PLAIN password; SASL is used only when set.
    pub sasl_password: Option<String>,
    /// Raw lines sent right after registering (identify to a bot, set user modes…).
    pub after_connect: Vec<String>,
    /// The user's own choices for reaching the server, over the configured ones.
    pub transport: TransportOverrides,
}

/// A user's own choices for reaching a server; `None` keeps the configured value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TransportOverrides {
    /// Port.
    pub port: Option<u16>,
    /// TLS on or off.
    pub tls: Option<bool>,
    /// Certificate verification.
    pub verify_tls: Option<bool>,
    /// Flood control on or off.
    pub flood_control: Option<bool>,
    /// Server password (PASS).
    pub password: Option<String>,
    /// Encoding of what the server sends that is not UTF-8 (instead of latin-1).
    pub encoding_in: Option<String>,
    /// Encoding of what we send (instead of UTF-8).
    pub encoding_out: Option<String>,
}

impl std::fmt::Debug for TransportOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportOverrides")
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("verify_tls", &self.verify_tls)
            .field("flood_control", &self.flood_control)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("encoding_in", &self.encoding_in)
            .field("encoding_out", &self.encoding_out)
            .finish()
    }
}

impl ServerSettings {
    /// These settings with a user's overrides applied.
    pub fn overridden(mut self, overrides: &TransportOverrides) -> ServerSettings {
        self.port = overrides.port.unwrap_or(self.port);
        self.tls = overrides.tls.unwrap_or(self.tls);
        self.verify_tls = overrides.verify_tls.unwrap_or(self.verify_tls);
        self.flood_control = overrides.flood_control.unwrap_or(self.flood_control);
        if overrides.password.is_some() {
            self.password = overrides.password.clone();
        }
        self
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("nick", &self.nick)
            .field("username", &self.username)
            .field("realname", &self.realname)
            .field("sasl_account", &self.sasl_account)
            .field("sasl_password", &self.sasl_password.as_ref().map(|_| "***"))
            .field("after_connect", &self.after_connect.len())
            .field("transport", &self.transport)
            .finish()
    }
}

/// Where a puppet's identity comes from: the gateway's database and defaults. Asked once per
/// connection, so settings changed by the user apply on the next connect.
#[async_trait]
pub trait IdentitySource: Send + Sync + std::fmt::Debug + 'static {
    /// The identity of `user` on `server`, joining under `nick`.
    async fn identity(&self, user: &UserRef, server: &str, nick: &str) -> Identity;

    /// The encoding the user chose for a channel, if any (`koi8-r`…).
    async fn channel_encoding(
        &self,
        user: &UserRef,
        server: &str,
        channel: &str,
    ) -> Option<String> {
        let _ = (user, server, channel);
        None
    }

    /// The nick to connect with when no room gives one (raw commands, channel lists).
    async fn nick(&self, user: &UserRef, server: &str) -> String {
        let _ = server;
        let local = user.0.split('@').next().unwrap_or("causeway");
        let nick: String = local
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-_[]{}|^`".contains(*c))
            .take(16)
            .collect();
        if nick.is_empty() {
            "causeway".into()
        } else {
            nick
        }
    }
}

/// Identities from the nick alone: username from its letters and digits, realname the nick.
#[derive(Debug, Default)]
pub struct NickIdentity;

#[async_trait]
impl IdentitySource for NickIdentity {
    async fn identity(&self, _user: &UserRef, _server: &str, nick: &str) -> Identity {
        Identity::from_nick(nick)
    }
}

impl Identity {
    /// Username from the nick's letters and digits, realname the nick, no SASL.
    pub fn from_nick(nick: &str) -> Identity {
        Identity {
            nick: nick.to_owned(),
            username: sanitize_username(nick),
            realname: nick.to_owned(),
            sasl_account: None,
            sasl_password: None,
            after_connect: Vec::new(),
            transport: TransportOverrides::default(),
        }
    }
}

/// Settings for the whole network.
#[derive(Debug, Clone, Default)]
pub struct IrcSettings {
    /// Per-server settings by host name (lower case).
    pub servers: HashMap<String, ServerSettings>,
    /// For servers not listed.
    pub default_server: ServerSettings,
    /// The connection keeper's socket: connections go through it (`[irc] keeper`).
    pub keeper: Option<std::path::PathBuf>,
}

impl IrcSettings {
    pub(crate) fn server(&self, host: &str) -> ServerSettings {
        self.servers
            .get(&host.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| self.default_server.clone())
    }
}

/// An ident is ASCII letters and digits; derive one from the nick.
fn sanitize_username(nick: &str) -> String {
    let clean: String = nick
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(10)
        .collect();
    if clean.is_empty() {
        "causeway".into()
    } else {
        clean.to_ascii_lowercase()
    }
}
