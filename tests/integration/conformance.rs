//! The adapter API's conformance suite (`causeway_bridge::conformance`), run by the real
//! bridges against real servers: the IRC bridge on ngircd and on InspIRCd, the Matrix bridge
//! on Synapse as the application service the gateway registers. Each case gets its own
//! server, network and rooms.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use causeway_bridge::conformance::Harness;
use causeway_bridge::{Peer, RoomRef, UserRef};
use causeway_irc::{IrcNetwork, IrcSettings, NickIdentity, ServerSettings};
use causeway_matrix::{
    registration, AppserviceSettings, MatrixNetwork, MatrixSettings, MediaSettings,
};
use serde_json::json;

use crate::harness::irc_server::{IrcKind, IrcServer};
use crate::harness::matrix_client::MatrixClient;
use crate::harness::matrix_server::Synapse;
use crate::harness::process::free_port;

/// The XMPP users the cases act for.
fn users() -> [UserRef; 2] {
    ["ann@localhost", "bob@localhost"].map(|jid| UserRef(jid.into()))
}

/// One IRC server, reached by the bridge as the gateway configures it: plain TCP, no flood
/// control (the cases send a handful of lines), identities from the nick.
struct IrcHarness {
    server: IrcServer,
    channels: AtomicUsize,
}

/// How the bridge names the server, and the configuration key for it.
const IRC_HOST: &str = "127.0.0.1";

impl IrcHarness {
    fn start(kind: IrcKind) -> IrcHarness {
        IrcHarness {
            server: IrcServer::start(kind),
            channels: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Harness for IrcHarness {
    type Network = IrcNetwork;

    async fn network(&self) -> Arc<IrcNetwork> {
        let server = ServerSettings {
            port: self.server.port,
            tls: false,
            flood_control: false,
            reconnect_interval_ms: 0,
            ..ServerSettings::default()
        };
        let settings = IrcSettings {
            servers: HashMap::from([(IRC_HOST.to_owned(), server)]),
            default_server: ServerSettings::default(),
            keeper: None,
        };
        Arc::new(IrcNetwork::new(settings, Arc::new(NickIdentity)))
    }

    async fn room(&self) -> RoomRef {
        RoomRef {
            server: IRC_HOST.into(),
            name: format!("#conf{}", self.channels.fetch_add(1, Ordering::Relaxed)),
        }
    }

    fn users(&self) -> [UserRef; 2] {
        users()
    }

    fn private_peer(&self, _user: &UserRef, nick: &str) -> Peer {
        Peer::User {
            server: IRC_HOST.into(),
            nick: nick.into(),
        }
    }
}

mod ngircd {
    async fn conformance_harness() -> super::IrcHarness {
        super::IrcHarness::start(super::IrcKind::Ngircd)
    }

    causeway_bridge::network_conformance_tests!();
}

mod inspircd {
    async fn conformance_harness() -> super::IrcHarness {
        super::IrcHarness::start(super::IrcKind::Inspircd)
    }

    causeway_bridge::network_conformance_tests!();
}

/// The homeserver's server name.
const HS: &str = "hs.localhost";
/// The puppets' localpart prefix, as `[matrix] user_prefix` defaults it.
const PREFIX: &str = "_xmpp_";

/// Synapse with the bridge's appservice registration, a Matrix user who makes the rooms,
/// and the gateway's store (SQLite) for the bridge's state.
struct MatrixHarness {
    synapse: Synapse,
    settings: MatrixSettings,
    owner: MatrixClient,
    database: String,
    _dir: tempfile::TempDir,
}

impl MatrixHarness {
    async fn start() -> MatrixHarness {
        let dir = tempfile::tempdir().unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let registration = registration::generate(HS, PREFIX, &format!("http://{listen}"));
        let file = dir.path().join("registration.yaml");
        std::fs::write(&file, registration::to_yaml(&registration)).unwrap();
        let synapse = Synapse::start(HS, Some(&file)).await;
        let owner = synapse.register("owner", "password", true).await;
        let settings = MatrixSettings {
            appservice: Some(AppserviceSettings {
                homeserver: synapse.url(),
                server_name: HS.into(),
                user_prefix: PREFIX.into(),
                listen,
                as_token: registration.as_token,
                hs_token: registration.hs_token,
            }),
            personal: None,
            member_limit: 100,
            media: MediaSettings {
                public_url: None,
                listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
                max_size: 1024 * 1024,
                lifetime: std::time::Duration::from_secs(3600),
                fetch_private: false,
            },
        };
        MatrixHarness {
            synapse,
            settings,
            owner,
            database: format!("sqlite://{}", dir.path().join("causeway.db").display()),
            _dir: dir,
        }
    }
}

#[async_trait]
impl Harness for MatrixHarness {
    type Network = MatrixNetwork;

    async fn network(&self) -> Arc<MatrixNetwork> {
        let store = causeway::store::Store::open(&self.database, 1)
            .await
            .expect("the bridge's store opens");
        let allowed: causeway_matrix::Allowed = Arc::new(|_| true);
        Arc::new(MatrixNetwork::new(
            self.settings.clone(),
            Arc::new(store),
            allowed,
            causeway::matrix::nick_rule(),
        ))
    }

    /// A public room of the owner's in which everyone may set the topic.
    async fn room(&self) -> RoomRef {
        let id = self
            .owner
            .create_room(json!({
                "preset": "public_chat",
                "power_level_content_override": {"events": {"m.room.topic": 0}},
            }))
            .await;
        causeway_matrix::ids::room_ref_of_id(&id)
    }

    fn users(&self) -> [UserRef; 2] {
        users()
    }

    /// Matrix users are addressed by their user id: the puppet's, for an XMPP user.
    fn private_peer(&self, user: &UserRef, _nick: &str) -> Peer {
        Peer::User {
            server: self.synapse.server_name().into(),
            nick: causeway_matrix::ids::puppet_localpart(PREFIX, user),
        }
    }
}

mod synapse {
    async fn conformance_harness() -> super::MatrixHarness {
        super::MatrixHarness::start().await
    }

    causeway_bridge::network_conformance_tests!();
}
