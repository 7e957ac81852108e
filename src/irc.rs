//! The IRC network as the gateway sets it up: settings from `[irc]`, and puppet identities
//! from the user's stored settings, then the configured defaults, then the nick.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use causeway_bridge::UserRef;
use causeway_irc::{Identity, IdentitySource, IrcNetwork, IrcSettings, ServerSettings};
use tracing::warn;

use crate::config::{IrcConfig, IrcServerConfig};
use crate::store::Store;

/// The IRC network for `[irc]`, reading identities from `store`.
pub fn network(config: &IrcConfig, store: Store) -> IrcNetwork {
    let servers = config
        .servers
        .iter()
        .map(|(host, s)| (host.to_ascii_lowercase(), server_settings(s)))
        .collect();
    let settings = IrcSettings {
        servers,
        default_server: server_settings(&IrcServerConfig::default()),
    };
    let identities = StoredIdentities {
        store,
        username: config.username.clone(),
        realname: config.realname.clone(),
    };
    IrcNetwork::new(settings, Arc::new(identities))
}

fn server_settings(s: &IrcServerConfig) -> ServerSettings {
    ServerSettings {
        port: s.port,
        tls: s.tls,
        verify_tls: s.verify_tls,
        flood_control: s.flood_control,
        flood_burst: s.flood_burst,
        flood_per_second: s.flood_per_second,
        password: s.password.as_ref().map(|p| p.expose().to_owned()),
        ping_after: Duration::from_secs(s.ping_interval_secs),
        dead_after: Duration::from_secs(s.ping_interval_secs + s.ping_timeout_secs),
        reconnect_attempts: s.reconnect_attempts,
    }
}

/// Identities from the database (per user and server: username, realname, SASL password),
/// falling back to the `[irc]` defaults and the nick.
#[derive(Debug)]
struct StoredIdentities {
    store: Store,
    username: Option<String>,
    realname: Option<String>,
}

#[async_trait]
impl IdentitySource for StoredIdentities {
    async fn identity(&self, user: &UserRef, server: &str, nick: &str) -> Identity {
        let mut identity = Identity::from_nick(nick);
        if let Some(username) = &self.username {
            identity.username = username.clone();
        }
        if let Some(realname) = &self.realname {
            identity.realname = realname.clone();
        }
        match self.store.irc_server_settings(&user.0, server).await {
            Ok(Some(stored)) => {
                if let Some(username) = stored.username {
                    identity.username = username;
                }
                if let Some(realname) = stored.realname {
                    identity.realname = realname;
                }
                identity.sasl_password = stored.sasl_password;
                identity.after_connect = stored.after_connect;
                identity.transport = causeway_irc::TransportOverrides {
                    port: stored.port,
                    tls: stored.tls,
                    verify_tls: stored.verify_tls,
                    flood_control: stored.throttle,
                    password: stored.server_password,
                };
            }
            Ok(None) => {}
            // The connection still goes ahead, with the defaults.
            Err(e) => warn!(%user, %server, error = %e, "cannot read the user's IRC settings"),
        }
        identity
    }
}
