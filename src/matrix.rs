//! The Matrix network as the gateway sets it up: settings from `[matrix]` (the appservice,
//! with its registration file, when `homeserver` is set; users' own logins when `personal`
//! is), state in the gateway's store (the bridge's [`MatrixStore`] over [`Store`]).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use causeway_matrix::registration;
use causeway_matrix::store::{MatrixStore, MessageLink, OfferedFile, SavedLogin, StoreFailure};
use causeway_matrix::{
    AppserviceSettings, MatrixNetwork, MatrixSettings, MediaSettings, PersonalSettings,
};

use crate::config::MatrixConfig;
use crate::store::{LinkedMessage, MatrixLogin, OfferedMedia, Store, StoreError};

/// Why the Matrix network cannot start, or the registration cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum MatrixSetupError {
    /// The registration file is missing or broken.
    #[error("{0} (write one with `causeway generate-registration --config FILE`)")]
    Registration(#[from] registration::RegistrationError),
    /// The registration file exists already.
    #[error("{0} exists already: remove it first to make new tokens (and tell the homeserver)")]
    Exists(PathBuf),
    /// Writing the file failed.
    #[error("{0}: {1}")]
    Write(PathBuf, std::io::Error),
    /// `[matrix] listen` or `media_listen` is not an address.
    #[error("[matrix] {0} {1:?} is not an address like 127.0.0.1:9993")]
    Listen(&'static str, String),
    /// `[matrix] media_url` is not a URL.
    #[error("[matrix] media_url {0:?} is not an http(s) URL")]
    MediaUrl(String),
    /// A registration is asked for, but `[matrix]` runs no appservice.
    #[error("[matrix] runs no appservice, so there is nothing to register: set homeserver and server_name (the registration is for the appservice only; personal logins need none)")]
    NoAppservice,
}

/// Who the gateway serves, as the Matrix bridge asks it.
pub fn allowed(access: &crate::config::AccessConfig) -> causeway_matrix::Allowed {
    let list = crate::gateway::access::AccessList::new(&access.allow);
    Arc::new(move |user| {
        user.0
            .parse::<tokio_xmpp::jid::Jid>()
            .is_ok_and(|jid| list.allows(&jid))
    })
}

/// What the gateway accepts as a nick, as the Matrix bridge asks it: a valid JID
/// resource, normalised as the XMPP server will (resourceprep).
pub fn nick_rule() -> causeway_matrix::NickRule {
    Arc::new(|name| {
        tokio_xmpp::jid::ResourcePart::new(name)
            .ok()
            .map(|nick| nick.to_string())
    })
}

/// The Matrix network for `[matrix]`, serving the users `allowed` accepts.
pub fn network(
    config: &MatrixConfig,
    store: Store,
    allowed: causeway_matrix::Allowed,
) -> Result<Arc<MatrixNetwork>, MatrixSetupError> {
    let appservice = match config.appservice() {
        Some(keys) => {
            let registration = registration::load(&config.registration)?;
            let listen: SocketAddr = config
                .listen
                .parse()
                .map_err(|_| MatrixSetupError::Listen("listen", config.listen.clone()))?;
            Some(AppserviceSettings {
                homeserver: keys.homeserver.to_owned(),
                server_name: keys.server_name.to_owned(),
                user_prefix: config.user_prefix.clone(),
                listen,
                as_token: registration.as_token,
                hs_token: registration.hs_token,
            })
        }
        None => None,
    };
    // Relative to the working directory, as the database file and the registration are.
    let personal = config.personal.then(|| PersonalSettings {
        store_dir: config.store_dir.clone(),
        max_logins: config.max_logins,
        home: format!("https://{}/", config.domain),
    });
    let media = MediaSettings {
        public_url: match &config.media_url {
            Some(url) => {
                Some(url::Url::parse(url).map_err(|_| MatrixSetupError::MediaUrl(url.clone()))?)
            }
            None => None,
        },
        listen: config
            .media_listen
            .parse()
            .map_err(|_| MatrixSetupError::Listen("media_listen", config.media_listen.clone()))?,
        max_size: config.media_max_size,
        lifetime: Duration::from_secs(
            config
                .media_lifetime_days
                .clamp(1, crate::config::MAX_LIFETIME_DAYS)
                * 86_400,
        ),
        fetch_private: config.media_fetch_private,
    };
    let settings = MatrixSettings {
        appservice,
        personal,
        member_limit: config.member_limit,
        media,
    };
    Ok(Arc::new(MatrixNetwork::new(
        settings,
        Arc::new(store),
        allowed,
        nick_rule(),
    )))
}

/// Write a new appservice registration to `[matrix] registration`, never over an
/// existing one; returns where it went.
pub fn generate_registration(config: &MatrixConfig) -> Result<PathBuf, MatrixSetupError> {
    let keys = config.appservice().ok_or(MatrixSetupError::NoAppservice)?;
    let path = config.registration.clone();
    let url = format!("http://{}", config.listen);
    let reg = registration::generate(keys.server_name, &config.user_prefix, &url);
    let yaml = registration::to_yaml(&reg);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // The tokens are secrets: readable by the gateway's user only.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => MatrixSetupError::Exists(path.clone()),
        _ => MatrixSetupError::Write(path.clone(), e),
    })?;
    file.write_all(yaml.as_bytes())
        .map_err(|e| MatrixSetupError::Write(path.clone(), e))?;
    Ok(path)
}

/// A store error in the bridge's terms.
fn failure(e: StoreError) -> StoreFailure {
    StoreFailure(e.to_string())
}

/// A login as the store keeps it.
fn kept(login: &SavedLogin) -> MatrixLogin {
    let SavedLogin {
        user,
        account,
        session,
        store_key,
    } = login.clone();
    MatrixLogin {
        user,
        account,
        session,
        store_key,
    }
}

/// The Matrix bridge's state, kept in the gateway's database.
#[async_trait]
impl MatrixStore for Store {
    async fn transaction_seen(&self, txn_id: &str) -> Result<Option<String>, StoreFailure> {
        self.matrix_transaction(txn_id).await.map_err(failure)
    }

    async fn transaction_done(&self, txn_id: &str, fingerprint: &str) -> Result<(), StoreFailure> {
        self.matrix_transaction_done(txn_id, fingerprint)
            .await
            .map_err(failure)
    }

    async fn prune_transactions(&self, older_than: Duration) -> Result<u64, StoreFailure> {
        let seconds = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        self.prune_matrix_transactions(seconds)
            .await
            .map_err(failure)
    }

    async fn remember_room(&self, room_id: &str) -> Result<(), StoreFailure> {
        self.remember_matrix_room(room_id).await.map_err(failure)
    }

    async fn find_room(&self, folded: &str) -> Result<Option<String>, StoreFailure> {
        self.find_matrix_room(folded).await.map_err(failure)
    }

    async fn link_message(&self, link: &MessageLink) -> Result<(), StoreFailure> {
        self.insert_message_link(&link.room, &link.xmpp_id, &link.event_id, &link.sender)
            .await
            .map_err(failure)
    }

    async fn find_message(
        &self,
        room: &str,
        id: &str,
    ) -> Result<Option<MessageLink>, StoreFailure> {
        let found = self.message_link(room, id).await.map_err(failure)?;
        Ok(found.map(|linked| {
            let LinkedMessage {
                room,
                xmpp_id,
                event_id,
                sender,
            } = linked;
            MessageLink {
                room,
                xmpp_id,
                event_id,
                sender,
            }
        }))
    }

    async fn unlink(&self, room: &str, event_id: &str) -> Result<(), StoreFailure> {
        self.delete_message_link(room, event_id)
            .await
            .map_err(failure)
    }

    async fn reactions(
        &self,
        room: &str,
        target: &str,
        sender: &str,
    ) -> Result<Vec<(String, String)>, StoreFailure> {
        self.reaction_links(room, target, sender)
            .await
            .map_err(failure)
    }

    async fn direct_room(
        &self,
        puppet: &str,
        remote: &str,
    ) -> Result<Option<String>, StoreFailure> {
        self.matrix_direct_room(puppet, remote)
            .await
            .map_err(failure)
    }

    async fn set_direct_room(
        &self,
        puppet: &str,
        remote: &str,
        room: &str,
    ) -> Result<(), StoreFailure> {
        self.set_matrix_direct_room(puppet, remote, room)
            .await
            .map_err(failure)
    }

    async fn direct_room_parties(&self, room: &str) -> Result<Vec<(String, String)>, StoreFailure> {
        self.matrix_direct_room_parties(room).await.map_err(failure)
    }

    async fn save_login(&self, login: &SavedLogin) -> Result<(), StoreFailure> {
        self.save_matrix_login(&kept(login)).await.map_err(failure)
    }

    async fn renew_login(&self, login: &SavedLogin) -> Result<bool, StoreFailure> {
        self.renew_matrix_login(&kept(login)).await.map_err(failure)
    }

    async fn logins(&self) -> Result<Vec<SavedLogin>, StoreFailure> {
        let logins = self.matrix_logins().await.map_err(failure)?;
        Ok(logins
            .into_iter()
            .map(|login| {
                let MatrixLogin {
                    user,
                    account,
                    session,
                    store_key,
                } = login;
                SavedLogin {
                    user,
                    account,
                    session,
                    store_key,
                }
            })
            .collect())
    }

    async fn forget_login(&self, user: &str) -> Result<(), StoreFailure> {
        self.forget_matrix_login(user).await.map_err(failure)
    }

    async fn offer_file(&self, file: &OfferedFile) -> Result<String, StoreFailure> {
        let expires_at = file
            .expires
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let offered = OfferedMedia {
            token: file.token.clone(),
            event_id: file.event_id.clone(),
            owner: file.owner.clone().unwrap_or_default(),
            source: file.source.clone(),
            name: file.name.clone(),
            mimetype: file.mimetype.clone(),
            size: file.size.and_then(|size| i64::try_from(size).ok()),
            expires_at,
        };
        self.offer_matrix_media(&offered).await.map_err(failure)
    }

    async fn offered_file(&self, token: &str) -> Result<Option<OfferedFile>, StoreFailure> {
        let found = self.offered_matrix_media(token).await.map_err(failure)?;
        Ok(found.map(|media| OfferedFile {
            token: media.token,
            event_id: media.event_id,
            owner: Some(media.owner).filter(|owner| !owner.is_empty()),
            source: media.source,
            name: media.name,
            mimetype: media.mimetype,
            size: media.size.and_then(|size| u64::try_from(size).ok()),
            expires: UNIX_EPOCH + Duration::from_secs(u64::try_from(media.expires_at).unwrap_or(0)),
        }))
    }

    async fn withdraw_files(&self, event_id: &str) -> Result<(), StoreFailure> {
        self.withdraw_matrix_media(event_id).await.map_err(failure)
    }

    async fn prune_files(&self) -> Result<u64, StoreFailure> {
        self.prune_matrix_media().await.map_err(failure)
    }
}

#[cfg(test)]
pub(crate) mod tests;
