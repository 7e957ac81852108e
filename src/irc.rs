//! The IRC network as the gateway sets it up: settings from `[irc]`, and puppet identities
//! from the user's stored settings, then the configured defaults, then the nick.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use causeway_bridge::UserRef;
use causeway_irc::{Identity, IdentitySource, IrcNetwork, IrcSettings, ServerSettings};
use tracing::warn;

use crate::config::IrcConfig;
use crate::store::Store;

/// The IRC network for `[irc]`, reading identities from `store`, and the handle that
/// applies a reloaded `[irc]` to it.
pub fn network(config: &IrcConfig, store: Store) -> (Arc<IrcNetwork>, IrcReconfigure) {
    let identities = Arc::new(StoredIdentities {
        store,
        defaults: Mutex::new((config.username.clone(), config.realname.clone())),
    });
    let network = Arc::new(IrcNetwork::new(settings(config), identities.clone()));
    (
        network.clone(),
        IrcReconfigure {
            network,
            identities,
        },
    )
}

/// Applies a reloaded `[irc]` section: server settings and identity defaults for the
/// connections opened from then on.
#[derive(Debug, Clone)]
pub struct IrcReconfigure {
    network: Arc<IrcNetwork>,
    identities: Arc<StoredIdentities>,
}

impl IrcReconfigure {
    /// Take the new section.
    pub fn apply(&self, config: &IrcConfig) {
        self.network.set_settings(settings(config));
        *self
            .identities
            .defaults
            .lock()
            .expect("identity defaults lock") = (config.username.clone(), config.realname.clone());
    }
}

fn settings(config: &IrcConfig) -> IrcSettings {
    let servers = config
        .servers
        .iter()
        .map(|(host, s)| (host.to_ascii_lowercase(), s.clone()))
        .collect();
    IrcSettings {
        servers,
        default_server: ServerSettings::default(),
        keeper: config.keeper.clone(),
    }
}

/// Identities from the database (per user and server: username, realname, SASL password),
/// falling back to the `[irc]` defaults and the nick.
#[derive(Debug)]
struct StoredIdentities {
    store: Store,
    /// `[irc] username` and `realname`, replaced on a reload.
    defaults: Mutex<(Option<String>, Option<String>)>,
}

#[async_trait]
impl IdentitySource for StoredIdentities {
    async fn channel_encoding(
        &self,
        user: &UserRef,
        server: &str,
        channel: &str,
    ) -> Option<String> {
        self.store
            .channel_settings(&user.0, server, channel)
            .await
            .ok()
            .and_then(|s| s.encoding)
    }

    async fn nick(&self, user: &UserRef, server: &str) -> String {
        // The user's nick for this server, else their default nick, else from their JID.
        let for_server = self
            .store
            .irc_server_settings(&user.0, server)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.nick);
        let default = match for_server {
            Some(nick) => return nick,
            None => self
                .store
                .user_settings(&user.0)
                .await
                .ok()
                .flatten()
                .and_then(|s| s.default_nick),
        };
        match default {
            Some(nick) => nick,
            None => causeway_irc::NickIdentity.nick(user, server).await,
        }
    }

    async fn identity(&self, user: &UserRef, server: &str, nick: &str) -> Identity {
        let mut identity = Identity::from_nick(nick);
        let (username, realname) = self
            .defaults
            .lock()
            .expect("identity defaults lock")
            .clone();
        if let Some(username) = username {
            identity.username = username;
        }
        if let Some(realname) = realname {
            identity.realname = realname;
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
                    encoding_in: stored.encoding_in,
                    encoding_out: stored.encoding_out,
                };
            }
            Ok(None) => {}
            // The connection still goes ahead, with the defaults.
            Err(e) => warn!(%user, %server, error = %e, "cannot read the user's IRC settings"),
        }
        identity
    }
}
