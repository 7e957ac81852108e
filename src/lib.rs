//! causeway: an XMPP gateway to IRC and Matrix, attached to an XMPP server as XEP-0114
//! components. See ARCHITECTURE.md for the map.
//!
//! [`run`] is the whole gateway: `main` and the integration tests call it the same way,
//! with a configuration and a shutdown token.

pub mod address;
pub mod archive;
pub mod component;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
#[cfg(feature = "irc")]
mod irc;
#[cfg(feature = "matrix")]
pub mod matrix;
pub mod reload;
pub mod store;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use causeway_bridge::{Network, NetworkContext, NetworkKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::jid::BareJid;
use tracing::{info, warn, Instrument};

use crate::component::{Link, LinkError, LinkSettings, Outbox};
use crate::config::Config;
use crate::gateway::access::AccessList;
use crate::gateway::limits::{RoomLimits, SendRate};
use crate::gateway::muc::Muc;
use crate::gateway::occupant_id::OccupantIds;
use crate::gateway::persistent;
use crate::gateway::serve::{serve_domain, Core, Reconfigure, Reload};
use crate::gateway::Gateway;
use crate::store::{Store, StoreError};

/// Inbound stanzas waiting for the gateway core, per link, before the link stops reading.
const INBOUND_QUEUE: usize = 1024;
/// Network events waiting for the gateway core.
const EVENT_QUEUE: usize = 4096;
/// How long the networks get to say goodbye (QUIT) at shutdown.
const NETWORK_GOODBYE: Duration = Duration::from_secs(5);
/// With a connection keeper: how long the channels taken over after a restart wait for a
/// client to come back before those that are not persistent are left (clients rejoin on
/// reconnecting, or when a self-ping (XEP-0410) tells them they are out).
const ADOPTION_GRACE: Duration = Duration::from_secs(300);

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
    /// A network could not be set up (a missing Matrix registration file…).
    #[error("{0}")]
    Network(String),
}

/// What [`start`] hands back: the links, for callers (and tests) that send stanzas.
#[derive(Debug)]
pub struct Running {
    /// One link per component domain, in configuration order.
    pub links: Vec<Link>,
    /// Reloads the configuration file (SIGHUP, admins).
    pub reloader: reload::Reloader,
    tasks: JoinSet<()>,
    store: Store,
}

/// Run the gateway until `shutdown` is cancelled.
/// Run the IRC connection keeper on `[irc] keeper` until `shutdown` (`causeway keeper`).
#[cfg(feature = "irc")]
pub async fn run_keeper(config: &Config, shutdown: CancellationToken) -> Result<(), String> {
    let Some(path) = config.irc.as_ref().and_then(|irc| irc.keeper.clone()) else {
        return Err("no keeper socket: set [irc] keeper = \"PATH\" in the configuration".into());
    };
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.cancelled().await;
        let _ = stop.send(true);
    });
    causeway_irc::keeper::serve(&path, stopped)
        .await
        .map_err(|e| format!("the keeper cannot listen on {}: {e}", path.display()))
}

pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    start(config, shutdown).await?.finished().await;
    Ok(())
}

/// Open the database, attach every component domain, and start serving. Fails if any link
/// cannot be established now (a wrong secret is a configuration error, not a transient one).
///
/// Shutdown runs in order: each gateway core tells its joined users (332), the networks
/// quit their puppets, then the links flush what is queued and close their streams.
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

    let (archiver, archiver_task) = archive::Archiver::start(
        store.clone(),
        archive::Limits::new(config.history.spill_dir.clone()),
    );
    let (reloader, config_rx) = reload::Reloader::new(config.clone());
    // One rate per user across every domain.
    let send_rate = SendRate::new(
        config.access.messages_per_minute,
        config.access.message_burst,
    );
    let reload: Reload = {
        let reloader = reloader.clone();
        Arc::new(move || reloader.reload())
    };
    let links_shutdown = CancellationToken::new();
    let (network_stop, network_stopped) = watch::channel(false);
    let mut cores = JoinSet::new();
    let mut networks = JoinSet::new();
    let mut tasks = JoinSet::new();
    let mut links = Vec::new();
    let occupant_ids = OccupantIds::new(store.install_secret("occupant-id").await?.as_bytes());
    for (kind, domain, settings, stream) in connected {
        let domain_name = settings.domain.clone();
        let outbox = Arc::new(Outbox::new(settings.domain.clone(), config.xmpp.queue_size));
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        links.push(Link {
            domain: settings.domain.clone(),
            outbox: outbox.clone(),
        });
        let (network, reconfigure) = build_network(kind, &config, &store)?;
        let muc = network.as_ref().map(|_| {
            Muc::new(
                addressing(kind, &config, &settings.domain),
                config.history.record,
                config.history.join_lines,
            )
            .with_limits(RoomLimits::of(kind, &config))
            .with_occupant_ids(occupant_ids.clone())
        });
        tasks.spawn(component::run_link(
            settings,
            stream,
            outbox.clone(),
            inbound_tx,
            links_shutdown.clone(),
        ));
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        if let Some(network) = &network {
            let network = network.clone();
            let stopped = network_stopped.clone();
            networks.spawn(async move {
                if let Err(e) = network
                    .run(NetworkContext { events: events_tx }, stopped)
                    .await
                {
                    warn!(network = %network.kind(), error = %e, "network stopped with an error");
                }
            });
        }
        let persistent_default = config.irc.as_ref().is_some_and(|irc| irc.persistent);
        let admins = config
            .access
            .admins
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let accounts = network.as_ref().is_some_and(|n| n.has_accounts());
        let mut gateway = Gateway::new(kind, domain, access.clone(), muc)
            .with_admins(admins)
            .with_accounts(accounts)
            .with_send_rate(send_rate.clone());
        // The IRC connections outlive the gateway with a keeper: what they are in is joined
        // again, not only what is persistent.
        let kept =
            kind == NetworkKind::Irc && config.irc.as_ref().is_some_and(|irc| irc.keeper.is_some());
        let initial =
            persistent::rejoin_persistent(&mut gateway, &store, persistent_default, kept).await?;
        let core = Core {
            network,
            outbox,
            archiver: archiver.clone(),
            store: store.clone(),
            persistent_default,
            record_default: config.history.record,
            reconfigure,
            reload: reload.clone(),
            adoption_grace: kept.then_some(ADOPTION_GRACE),
        };
        let serve = serve_domain(
            gateway,
            core,
            initial,
            inbound_rx,
            events_rx,
            config_rx.clone(),
            shutdown.clone(),
        );
        // Every line the core logs names its domain.
        cores.spawn(serve.instrument(tracing::info_span!("core", domain = %domain_name)));
    }
    drop(archiver);
    if config.history.retention_days > 0 || config.history.retention_rows > 0 {
        tasks.spawn(archive::prune_archive(
            store.clone(),
            config.history.clone(),
            links_shutdown.clone(),
        ));
    }
    tasks.spawn(async move {
        shutdown.cancelled().await;
        while cores.join_next().await.is_some() {}
        // The cores held the last archiver handles: it writes what is left and ends.
        if archiver_task.await.is_err() {
            warn!("the archiver failed at shutdown");
        }
        let _ = network_stop.send(true);
        let goodbye = async { while networks.join_next().await.is_some() {} };
        if tokio::time::timeout(NETWORK_GOODBYE, goodbye)
            .await
            .is_err()
        {
            warn!("networks did not finish saying goodbye in time");
        }
        links_shutdown.cancel();
    });
    Ok(Running {
        links,
        tasks,
        store,
        reloader,
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

/// A domain's network, if one is configured, and how to apply a reload to it.
type BuiltNetwork = (Option<Arc<dyn Network>>, Option<Reconfigure>);

fn build_network(
    kind: NetworkKind,
    config: &Config,
    store: &Store,
) -> Result<BuiltNetwork, RunError> {
    match kind {
        #[cfg(feature = "irc")]
        NetworkKind::Irc => {
            let Some(irc) = config.irc.as_ref() else {
                return Ok((None, None));
            };
            let (network, reconfigure) = irc::network(irc, store.clone());
            let apply: Reconfigure = Arc::new(move |config: &Config| {
                if let Some(irc) = &config.irc {
                    reconfigure.apply(irc);
                }
            });
            Ok((Some(network), Some(apply)))
        }
        #[cfg(feature = "matrix")]
        NetworkKind::Matrix => {
            let Some(matrix) = config.matrix.as_ref() else {
                return Ok((None, None));
            };
            let network = matrix::network(matrix, store.clone(), matrix::allowed(&config.access))
                .map_err(|e| RunError::Network(e.to_string()))?;
            let handle = network.clone();
            let apply: Reconfigure = Arc::new(move |config: &Config| {
                handle.set_allowed(matrix::allowed(&config.access));
            });
            Ok((Some(network), Some(apply)))
        }
        #[allow(unreachable_patterns)]
        _ => {
            let _ = (config, store);
            Ok((None, None))
        }
    }
}

fn addressing(kind: NetworkKind, config: &Config, domain: &str) -> address::IrcAddressing {
    match kind {
        NetworkKind::Matrix => address::IrcAddressing::matrix(domain),
        NetworkKind::Irc => irc_addressing(config, domain),
    }
}

fn irc_addressing(config: &Config, domain: &str) -> address::IrcAddressing {
    let fixed = config.irc.as_ref().and_then(|irc| irc.fixed_server.clone());
    address::IrcAddressing::new(domain, fixed)
}
