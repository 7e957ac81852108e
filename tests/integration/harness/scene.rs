//! The stage a scenario plays on, in one line: Prosody, the network on the far side (an IRC
//! server, or Synapse with causeway's appservice registration), and the gateway between them,
//! with its database kept across gateway restarts.
//!
//! ```ignore
//! let mut s = Scene::irc(kind).await;
//! let mut s = Scene::irc_on(IrcServer::ngircd_with_tls()).over_tls().await;
//! let scene = Scene::matrix().keys("member_limit = 50").bulk_appservice().await;
//! ```
//!
//! A scene derefs to its far side, so a test says `s.irc.port` or `scene.bob` for what it
//! talks to there.

use std::future::{Future, IntoFuture};
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;

use serde_json::json;

use super::irc_client::IrcClient;
use super::irc_server::{IrcKind, IrcServer};
use super::lossy_proxy::LossyProxy;
use super::matrix_client::MatrixClient;
use super::matrix_server::Synapse;
use super::muc::enter;
use super::process::free_port;
use super::{config_toml, config_toml_with_irc, Flavor, Gateway, TestClient, XmppServer};

/// The homeserver's server name in a Matrix scene.
pub const HS: &str = "hs.localhost";
/// The gateway's Matrix domain.
pub const GW: &str = "matrix.localhost";
/// The as_token of the bulk appservice ([`MatrixSetup::bulk_appservice`]).
pub const BULK_TOKEN: &str = "bulk-as-token";

/// The servers of a scenario and the gateway between them; see the module documentation.
pub struct Scene<Far> {
    // Declared first: dropped (cancelled) before the servers it talks to go.
    gateway: Option<Gateway>,
    pub xmpp: XmppServer,
    far: Far,
    /// The gateway's configuration, pointing at `db`.
    toml: String,
    /// The gateway's database directory while the gateway is stopped.
    db: Option<tempfile::TempDir>,
}

impl<Far> Deref for Scene<Far> {
    type Target = Far;
    fn deref(&self) -> &Far {
        &self.far
    }
}

impl<Far> DerefMut for Scene<Far> {
    fn deref_mut(&mut self) -> &mut Far {
        &mut self.far
    }
}

impl<Far> Scene<Far> {
    /// The scene of `far`, the gateway started from `toml` on the database in `db`.
    async fn open(xmpp: XmppServer, far: Far, toml: String, db: tempfile::TempDir) -> Self {
        let mut scene = Scene {
            gateway: None,
            xmpp,
            far,
            toml,
            db: Some(db),
        };
        scene.start_gateway().await;
        scene
    }

    /// Start the gateway on the kept database, as it was configured.
    pub async fn start_gateway(&mut self) {
        let db = self.db.take().expect("the gateway is stopped");
        self.gateway = Some(Gateway::start_with_toml(&self.xmpp, &self.toml, db).await);
    }

    /// Shut the gateway down, keeping its database for [`start_gateway`](Self::start_gateway).
    pub async fn stop_gateway(&mut self) {
        let gateway = self.gateway.take().expect("the gateway runs");
        self.db = Some(gateway.stop_keeping_database().await);
    }

    /// The running gateway's database, opened beside it (to write what a user would have
    /// set before, or to read what the gateway keeps).
    pub async fn store(&self) -> causeway::store::Store {
        let gateway = self.gateway.as_ref().expect("the gateway runs");
        causeway::store::Store::open(&gateway.database_url(), 1)
            .await
            .unwrap()
    }

    /// Shut the gateway down and wait for every task, at the end of a scenario.
    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
    }

    /// Register `name@localhost` and log in.
    pub async fn xmpp_user(&self, name: &str) -> TestClient {
        TestClient::login(&self.xmpp, name, "localhost").await
    }

    /// Log in again as `name@localhost`, registered already: another resource, or the user
    /// coming back.
    pub async fn xmpp_user_again(&self, name: &str) -> TestClient {
        TestClient::connect(&self.xmpp, name, "localhost").await
    }
}

/// The far side of an IRC scene.
pub struct IrcSide {
    pub irc: IrcServer,
    /// How the gateway is configured for it, kept for a gateway on a fresh database.
    config: IrcConfig,
}

/// The IRC part of the gateway's configuration.
#[derive(Clone)]
struct IrcConfig {
    /// The port the configuration names: the server's, unless a scenario says otherwise.
    port: u16,
    /// Extra keys in `[irc]`.
    irc_keys: String,
    /// Extra keys in the server's table, overriding the harness's.
    server_keys: String,
    /// `[xmpp] queue_size`, if not the default.
    queue_size: Option<usize>,
    /// Extra keys in `[access]`.
    access_keys: String,
}

impl IrcConfig {
    fn toml(&self, xmpp: &XmppServer, db: &std::path::Path) -> String {
        let mut toml = config_toml_with_irc(xmpp, db, self.port, &self.irc_keys, &self.server_keys);
        if !self.access_keys.is_empty() {
            // In place of the harness's "no message rate".
            toml = toml.replacen("messages_per_minute = 0\n", &self.access_keys, 1);
        }
        match self.queue_size {
            Some(size) => toml.replacen("[xmpp]\n", &format!("[xmpp]\nqueue_size = {size}\n"), 1),
            None => toml,
        }
    }
}

/// An IRC scene to be: the server is up; awaiting it starts Prosody and the gateway.
pub struct IrcSetup {
    irc: IrcServer,
    config: IrcConfig,
}

impl Scene<IrcSide> {
    /// An IRC server of `kind`, Prosody, and the gateway with the harness's IRC configuration
    /// (plain TCP, no flood control).
    pub fn irc(kind: IrcKind) -> IrcSetup {
        Self::irc_on(IrcServer::start(kind))
    }

    /// [`irc`](Self::irc) on a server started some other way (TLS, a password, services).
    pub fn irc_on(irc: IrcServer) -> IrcSetup {
        let config = IrcConfig {
            port: irc.port,
            irc_keys: String::new(),
            server_keys: String::new(),
            queue_size: None,
            access_keys: String::new(),
        };
        IrcSetup { irc, config }
    }

    /// The room JID of `channel` on the scene's server.
    pub fn room(channel: &str) -> String {
        format!("{channel}%127.0.0.1@irc.localhost")
    }

    /// Connect an IRC user.
    pub async fn irc_user(&self, nick: &str) -> IrcClient {
        IrcClient::connect(self.irc.port, nick).await
    }

    /// Connect an IRC user and join `channel`.
    pub async fn irc_user_in(&self, nick: &str, channel: &str) -> IrcClient {
        let mut user = self.irc_user(nick).await;
        user.join(channel).await;
        user
    }

    /// The everyday start: bob is in `channel` on IRC (its operator, if the first there);
    /// alice logs in, enters its room as `alice`, and bob sees her puppet join.
    pub async fn alice_joins_bob_in(&self, channel: &str) -> (IrcClient, TestClient) {
        let mut bob = self.irc_user_in("bob", channel).await;
        let mut alice = self.xmpp_user("alice").await;
        enter(&mut alice, &Self::room(channel), "alice").await;
        bob.expect("alice joining", |l| {
            l.starts_with(":alice!") && l.contains(" JOIN ")
        })
        .await;
        (bob, alice)
    }

    /// Stop the gateway and start another on a fresh database, its IRC server table with
    /// `server_keys` instead.
    pub async fn replace_gateway(&mut self, server_keys: &str) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        self.far.config.server_keys = server_keys.to_owned();
        let db = tempfile::tempdir().unwrap();
        self.toml = self.far.config.toml(&self.xmpp, db.path());
        self.db = Some(db);
        self.start_gateway().await;
    }
}

impl IrcSetup {
    /// Extra `[irc]` keys.
    pub fn irc_keys(mut self, keys: &str) -> Self {
        self.config.irc_keys = keys.to_owned();
        self
    }

    /// Extra keys in the server's table (overriding the harness's `tls` and `flood_control`).
    pub fn server_keys(mut self, keys: &str) -> Self {
        self.config.server_keys = keys.to_owned();
        self
    }

    /// Extra `[access]` keys.
    pub fn access_keys(mut self, keys: &str) -> Self {
        self.config.access_keys = keys.to_owned();
        self
    }

    /// The gateway's outbound queue to Prosody holds only `size` stanzas.
    pub fn queue_size(mut self, size: usize) -> Self {
        self.config.queue_size = Some(size);
        self
    }

    /// The configuration names `port` for the server instead of its own.
    pub fn configured_port(mut self, port: u16) -> Self {
        self.config.port = port;
        self
    }

    /// The configuration names the server's TLS port, with `tls = true` (verified).
    pub fn over_tls(self) -> Self {
        let port = self.irc.tls_port.expect("a server with a TLS port");
        self.configured_port(port).server_keys("tls = true\n")
    }

    /// Start Prosody and the gateway.
    pub async fn start(self) -> Scene<IrcSide> {
        let xmpp = XmppServer::start(Flavor::Prosody);
        let db = tempfile::tempdir().unwrap();
        let toml = self.config.toml(&xmpp, db.path());
        let far = IrcSide {
            irc: self.irc,
            config: self.config,
        };
        Scene::open(xmpp, far, toml, db).await
    }
}

impl IntoFuture for IrcSetup {
    type Output = Scene<IrcSide>;
    type IntoFuture = Pin<Box<dyn Future<Output = Scene<IrcSide>>>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}

/// The far side of a Matrix scene.
pub struct MatrixSide {
    pub synapse: Synapse,
    /// A Matrix user, admin of the homeserver, who makes the rooms.
    pub bob: MatrixClient,
    /// causeway's appservice registration, as `generate-registration` wrote it.
    pub registration: PathBuf,
    /// The gateway's transaction listener port.
    pub listen: u16,
    /// Between the gateway and Synapse, where the scene asked for it.
    pub proxy: Option<LossyProxy>,
}

impl MatrixSide {
    /// A public room with an alias `#name:HS`, made by bob; its id.
    pub async fn public_room(&self, name: &str, topic: &str) -> String {
        self.bob
            .create_room(json!({
                "room_alias_name": name,
                "preset": "public_chat",
                "visibility": "public",
                "topic": topic,
            }))
            .await
    }
}

/// A Matrix scene to be; awaiting it starts everything.
#[derive(Default)]
pub struct MatrixSetup {
    /// Extra `[matrix]` keys.
    keys: String,
    bulk: bool,
    lossy: bool,
    privileged: bool,
}

impl Scene<MatrixSide> {
    /// Prosody, Synapse with causeway's appservice registration, the gateway, and bob.
    pub fn matrix() -> MatrixSetup {
        MatrixSetup::default()
    }

    /// The puppet's Matrix id for an XMPP user of `localhost`.
    pub fn puppet(name: &str) -> String {
        format!("@_xmpp_{name}=40localhost:{HS}")
    }
}

impl MatrixSetup {
    /// Extra `[matrix]` keys.
    pub fn keys(mut self, keys: &str) -> Self {
        self.keys = keys.to_owned();
        self
    }

    /// A second appservice (`@bulk_…`, token [`BULK_TOKEN`], nothing pushed to it) lets the
    /// test make and join many Matrix users quickly.
    pub fn bulk_appservice(mut self) -> Self {
        self.bulk = true;
        self
    }

    /// Prosody grants the gateway XEP-0356 privileges (and its users have PEP).
    pub fn privileged(mut self) -> Self {
        self.privileged = true;
        self
    }

    /// The gateway reaches Synapse through a [`LossyProxy`] (`scene.proxy`).
    pub fn lossy(mut self) -> Self {
        self.lossy = true;
        self
    }

    /// Start Prosody, Synapse and the gateway; register bob.
    pub async fn start(self) -> Scene<MatrixSide> {
        let xmpp = match self.privileged {
            true => XmppServer::start_privileged(),
            false => XmppServer::start(Flavor::Prosody),
        };
        let dir = tempfile::tempdir().unwrap();
        let registration = dir.path().join("registration.yaml");
        let listen = free_port();
        let toml_for = |homeserver: &str| {
            config_toml(&xmpp, &xmpp.secret, dir.path())
                + format!(
                    "[matrix]\ndomain = \"{GW}\"\nsecret = \"{}\"\nhomeserver = \"{homeserver}\"\n\
                     server_name = \"{HS}\"\nlisten = \"127.0.0.1:{listen}\"\n\
                     registration = \"{}\"\nstore_dir = \"{}\"\n{}\n",
                    xmpp.secret,
                    registration.display(),
                    dir.path().join("matrix").display(),
                    self.keys
                )
                .as_str()
        };
        // The registration comes from the CLI, as an admin would make it.
        let config_file = dir.path().join("causeway.toml");
        std::fs::write(&config_file, toml_for("http://127.0.0.1:1")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["generate-registration", "--config"])
            .arg(&config_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let synapse = if self.bulk {
            let bulk_file = dir.path().join("bulk.yaml");
            std::fs::write(
                &bulk_file,
                format!(
                    "id: bulk\nurl: null\nas_token: {BULK_TOKEN}\nhs_token: bulk-hs-token\n\
                     sender_localpart: bulkbot\nrate_limited: false\nnamespaces:\n  users:\n\
                     \x20   - exclusive: true\n      regex: '@bulk_.*:{}'\n",
                    HS.replace('.', "\\.")
                ),
            )
            .unwrap();
            let files = format!(
                "app_service_config_files: [{:?}, {:?}]\n",
                registration.display().to_string(),
                bulk_file.display().to_string()
            );
            Synapse::start_with(HS, Some(&registration), &files).await
        } else {
            Synapse::start(HS, Some(&registration)).await
        };
        let proxy = match self.lossy {
            true => Some(LossyProxy::start(synapse.port()).await),
            false => None,
        };
        let toml = toml_for(&proxy.as_ref().map_or(synapse.url(), LossyProxy::url));
        let bob = synapse.register("bob", "password", true).await;
        let far = MatrixSide {
            synapse,
            bob,
            registration,
            listen,
            proxy,
        };
        Scene::open(xmpp, far, toml, dir).await
    }
}

impl IntoFuture for MatrixSetup {
    type Output = Scene<MatrixSide>;
    type IntoFuture = Pin<Box<dyn Future<Output = Scene<MatrixSide>>>>;
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}
