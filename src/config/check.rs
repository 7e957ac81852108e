//! `check()`: every rule the configuration breaks, each with its key, at once.

use std::net::SocketAddr;
use tokio_xmpp::jid::BareJid;

use super::{Config, MatrixConfig, Problem, Secret};

impl Config {
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
        if self.history.spill_dir.as_os_str().is_empty() {
            p.add(
                "history.spill_dir",
                "must name the folder where messages wait while the database takes no writes",
            );
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
        if self.access.messages_per_minute > 0 && self.access.message_burst == 0 {
            p.add(
                "access.message_burst",
                "must be at least 1 while access.messages_per_minute limits the rate",
            );
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
            if irc
                .keeper
                .as_ref()
                .is_some_and(|p| p.as_os_str().is_empty())
            {
                p.add(
                    "irc.keeper",
                    "must name the keeper's Unix socket (or be left out)",
                );
            }
            if irc.max_channels_per_user == 0 {
                p.add("irc.max_channels_per_user", "must be at least 1");
            }
            if irc.max_servers_per_user == 0 {
                p.add("irc.max_servers_per_user", "must be at least 1");
            }
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
            if matrix.max_rooms_per_user == 0 {
                p.add("matrix.max_rooms_per_user", "must be at least 1");
            }
            check_matrix_modes(matrix, &mut p);
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

/// What `[matrix]` runs: the appservice needs `homeserver` and `server_name` together;
/// personal logins a store folder and room for one login; and one of the two must run.
fn check_matrix_modes(matrix: &MatrixConfig, p: &mut Problems) {
    match (&matrix.homeserver, &matrix.server_name) {
        (Some(_), None) => p.add(
            "matrix.server_name",
            "is missing: the appservice (matrix.homeserver is set) needs the homeserver's server name",
        ),
        (None, Some(_)) => p.add(
            "matrix.homeserver",
            "is missing: matrix.server_name is set, but the appservice runs only with the homeserver's URL (remove server_name for personal logins only)",
        ),
        _ => {}
    }
    if let Some(homeserver) = matrix.homeserver.as_ref().filter(|u| !is_web_url(u)) {
        p.add(
            "matrix.homeserver",
            format!("{homeserver:?} is not an http(s) URL"),
        );
    }
    if let Some(server_name) = &matrix.server_name {
        if !is_host_name(server_name.split(':').next().unwrap_or_default()) {
            p.add(
                "matrix.server_name",
                format!("{server_name:?} is not a server name"),
            );
        }
    }
    check_matrix_media(matrix, p);
    if matrix.homeserver.is_none() && !matrix.personal {
        p.add(
            "matrix",
            "nothing to run: set homeserver and server_name for the appservice, or personal = true for users' own logins",
        );
    }
    if matrix.personal {
        if matrix.store_dir.as_os_str().is_empty() {
            p.add(
                "matrix.store_dir",
                "must name the folder of the users' Matrix stores",
            );
        }
        if matrix.max_logins == 0 {
            p.add(
                "matrix.max_logins",
                "must be at least 1 (personal = false turns personal logins off)",
            );
        }
    }
}

/// Whether `url` is an http(s) URL with a host.
fn is_web_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// The longest a file's link may work: ten years.
pub(crate) const MAX_LIFETIME_DAYS: u64 = 3650;

/// The file endpoint's address and limits.
fn check_matrix_media(matrix: &MatrixConfig, p: &mut Problems) {
    if let Some(public) = matrix.media_url.as_ref().filter(|u| !is_web_url(u)) {
        p.add(
            "matrix.media_url",
            format!("{public:?} is not an http(s) URL (the public address of the file links, like https://gw.example.org/media)"),
        );
    }
    if matrix.media_listen.parse::<SocketAddr>().is_err() {
        p.add(
            "matrix.media_listen",
            format!(
                "{:?} is not an address like 127.0.0.1:9994",
                matrix.media_listen
            ),
        );
    }
    if matrix.media_max_size == 0 {
        p.add("matrix.media_max_size", "must be at least 1 byte");
    }
    if !(1..=MAX_LIFETIME_DAYS).contains(&matrix.media_lifetime_days) {
        p.add(
            "matrix.media_lifetime_days",
            format!("must be between 1 and {MAX_LIFETIME_DAYS} days"),
        );
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
