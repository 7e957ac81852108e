//! The Matrix network as the gateway sets it up: settings from `[matrix]` and the
//! appservice registration file, state in the gateway's store.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use causeway_matrix::registration;
use causeway_matrix::{MatrixNetwork, MatrixSettings};

use crate::config::MatrixConfig;
use crate::store::Store;

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
    /// `[matrix] listen` is not an address.
    #[error("[matrix] listen {0:?} is not an address like 127.0.0.1:9993")]
    Listen(String),
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

/// The Matrix network for `[matrix]`, serving the users `allowed` accepts.
pub fn network(
    config: &MatrixConfig,
    store: Store,
    allowed: causeway_matrix::Allowed,
) -> Result<Arc<MatrixNetwork>, MatrixSetupError> {
    let registration = registration::load(&config.registration)?;
    let listen: SocketAddr = config
        .listen
        .parse()
        .map_err(|_| MatrixSetupError::Listen(config.listen.clone()))?;
    let settings = MatrixSettings {
        homeserver: config.homeserver.clone(),
        server_name: config.server_name.clone(),
        user_prefix: config.user_prefix.clone(),
        listen,
        as_token: registration.as_token,
        hs_token: registration.hs_token,
        member_limit: config.member_limit,
    };
    Ok(Arc::new(MatrixNetwork::new(
        settings,
        Arc::new(store),
        allowed,
    )))
}

/// Write a new appservice registration to `[matrix] registration`, never over an
/// existing one; returns where it went.
pub fn generate_registration(config: &MatrixConfig) -> Result<PathBuf, MatrixSetupError> {
    let path = config.registration.clone();
    let url = format!("http://{}", config.listen);
    let reg = registration::generate(&config.server_name, &config.user_prefix, &url);
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
