//! causeway: an XMPP gateway to IRC and Matrix, attached to an XMPP server as XEP-0114
//! components. See ARCHITECTURE.md for the map.
//!
//! [`run`] is the whole gateway: `main` and the integration tests call it the same way,
//! with a configuration and a shutdown token.

pub mod address;
pub mod component;
pub mod config;
pub mod gateway;
pub mod store;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::NetworkKind;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::jid::BareJid;
use tracing::{info, warn};

use crate::component::{Link, LinkError, LinkSettings, Outbox};
use crate::config::Config;
use crate::gateway::access::AccessList;
use crate::gateway::Gateway;
use crate::store::{Store, StoreError};

/// Inbound stanzas waiting for the gateway core, per link, before the link stops reading.
const INBOUND_QUEUE: usize = 1024;

/// Why the gateway stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A component link could not be established at startup.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A configured domain is not a valid JID domain.
    #[error("component domain {0:?} is not a valid JID domain")]
    Domain(String),
}

/// What [`start`] hands back: the links, for callers (and tests) that send stanzas.
#[derive(Debug)]
pub struct Running {
    /// One link per component domain, in configuration order.
    pub links: Vec<Link>,
    tasks: JoinSet<()>,
    store: Store,
}

/// Run the gateway until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    start(config, shutdown).await?.finished().await;
    Ok(())
}

/// Open the database, attach every component domain, and start serving. Fails if any link
/// cannot be established now (a wrong secret is a configuration error, not a transient one).
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, RunError> {
    let store = Store::open(
        config.database.url.expose(),
        config.database.max_connections,
    )
    .await?;
    info!(backend = ?store.backend(), "database ready");
    let addr = format!("{}:{}", config.xmpp.host, config.xmpp.port);
    let access = AccessList::new(&config.access.allow);

    // Connect every link before serving any, so a bad secret anywhere fails the start.
    let mut connected = Vec::new();
    for component in config.component_domains() {
        let domain: BareJid = component
            .domain
            .parse()
            .map_err(|_| RunError::Domain(component.domain.clone()))?;
        let settings = LinkSettings {
            domain: component.domain.clone(),
            secret: component.secret.clone(),
            addr: addr.clone(),
            backoff_initial: Duration::from_millis(config.xmpp.reconnect_initial_ms),
            backoff_max: Duration::from_millis(config.xmpp.reconnect_max_ms),
        };
        let stream = component::connect(&settings).await?;
        connected.push((component.network, domain, settings, stream));
    }

    let mut tasks = JoinSet::new();
    let mut links = Vec::new();
    for (network, domain, settings, stream) in connected {
        let outbox = Arc::new(Outbox::new(settings.domain.clone(), config.xmpp.queue_size));
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        links.push(Link {
            domain: settings.domain.clone(),
            outbox: outbox.clone(),
        });
        tasks.spawn(component::run_link(
            settings,
            stream,
            outbox.clone(),
            inbound_tx,
            shutdown.clone(),
        ));
        let gateway = Gateway::new(network, domain, access.clone());
        tasks.spawn(serve_domain(network, gateway, inbound_rx, outbox));
    }
    Ok(Running {
        links,
        tasks,
        store,
    })
}

impl Running {
    /// Wait until every task has stopped (after shutdown), then close the database.
    pub async fn finished(mut self) {
        while let Some(result) = self.tasks.join_next().await {
            if let Err(e) = result {
                warn!(error = %e, "a gateway task failed");
            }
        }
        self.store.close().await;
        info!("causeway stopped");
    }
}

/// The gateway core's loop for one domain: stanzas in, replies out.
async fn serve_domain(
    network: NetworkKind,
    gateway: Gateway,
    mut inbound: mpsc::Receiver<tokio_xmpp::Stanza>,
    outbox: Arc<Outbox>,
) {
    while let Some(stanza) = inbound.recv().await {
        if let Some(reply) = gateway.handle(stanza) {
            outbox.push(reply);
        }
    }
    tracing::debug!(%network, "gateway core stopped");
}
