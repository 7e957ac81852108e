//! causeway: an XMPP gateway to IRC and Matrix, attached to an XMPP server as XEP-0114
//! components. See ARCHITECTURE.md for the map.
//!
//! [`run`] is the whole gateway: `main` and the integration tests call it the same way,
//! with a configuration and a shutdown token.

pub mod address;
pub mod archive;
pub mod component;
pub mod config;
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

use causeway_bridge::{Event, Network, NetworkContext, NetworkKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::jid::BareJid;
use tokio_xmpp::Stanza;
use tracing::{info, warn};

use crate::component::{Link, LinkError, LinkSettings, Outbox};
use crate::config::Config;
use crate::gateway::access::AccessList;
use crate::gateway::muc::{Effects, Muc};
use crate::gateway::Gateway;
use crate::store::{Store, StoreError};

/// Inbound stanzas waiting for the gateway core, per link, before the link stops reading.
const INBOUND_QUEUE: usize = 1024;
/// Network events waiting for the gateway core.
const EVENT_QUEUE: usize = 4096;
/// How long the networks get to say goodbye (QUIT) at shutdown.
const NETWORK_GOODBYE: Duration = Duration::from_secs(5);

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

    let (archiver, archiver_task) = archive::Archiver::start(store.clone());
    let (reloader, config_rx) = reload::Reloader::new(config.clone());
    let links_shutdown = CancellationToken::new();
    let (network_stop, network_stopped) = watch::channel(false);
    let mut cores = JoinSet::new();
    let mut networks = JoinSet::new();
    let mut tasks = JoinSet::new();
    let mut links = Vec::new();
    for (kind, domain, settings, stream) in connected {
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
        let mut gateway = Gateway::new(kind, domain, access.clone(), muc).with_admins(admins);
        let initial = rejoin_persistent(&mut gateway, &store, persistent_default).await?;
        let core = Core {
            network,
            outbox,
            archiver: archiver.clone(),
            store: store.clone(),
            persistent_default,
            record_default: config.history.record,
            reconfigure,
            reloader: reloader.clone(),
        };
        cores.spawn(serve_domain(
            gateway,
            core,
            initial,
            inbound_rx,
            events_rx,
            config_rx.clone(),
            shutdown.clone(),
        ));
    }
    drop(archiver);
    if config.history.retention_days > 0 || config.history.retention_rows > 0 {
        tasks.spawn(prune_archive(
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

/// Applies a reloaded configuration to a network.
type Reconfigure = Arc<dyn Fn(&Config) + Send + Sync>;

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

/// The gateway core's loop for one domain: stanzas and network events in, stanzas and
/// network actions out, one at a time, so the MUC state needs no lock.
/// Apply the archive retention limits now and then every hour, until shutdown.
async fn prune_archive(store: Store, history: config::HistoryConfig, shutdown: CancellationToken) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hourly.tick() => {}
        }
        let days = history.retention_days;
        let before = (days > 0).then(|| {
            gateway::mam::now_ms()
                - i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
        });
        let keep = (history.retention_rows > 0)
            .then(|| i64::try_from(history.retention_rows).unwrap_or(i64::MAX));
        match store.prune_archive(before, keep).await {
            Ok(0) => {}
            Ok(removed) => info!(removed, "archive retention applied"),
            Err(e) => warn!(error = %e, "archive retention failed"),
        }
    }
}

/// What a gateway core acts through.
struct Core {
    network: Option<Arc<dyn Network>>,
    outbox: Arc<Outbox>,
    archiver: archive::Archiver,
    store: Store,
    /// `[irc] persistent`.
    persistent_default: bool,
    /// `[history] record`.
    record_default: bool,
    /// Applies a reloaded configuration to the network.
    reconfigure: Option<Reconfigure>,
    /// For the administrators' reload command.
    reloader: reload::Reloader,
}

impl Core {
    /// Bookkeeping an event needs before the gateway core sees it: whether a joined channel
    /// is persistent and recorded, and which channels the puppet is in (for rejoining after
    /// a restart).
    async fn note_event(&self, gateway: &mut Gateway, event: &Event) {
        match event {
            Event::Joined {
                user, room, nick, ..
            } => {
                let (persistent, record) = channel_settings(
                    &self.store,
                    &user.0,
                    room,
                    self.persistent_default,
                    self.record_default,
                )
                .await;
                if let (Some(muc), Ok(jid)) = (gateway.muc_mut(), user.0.parse::<BareJid>()) {
                    muc.set_channel_settings(&jid, room, persistent, record);
                }
                if let Err(e) = self
                    .store
                    .mark_joined(&user.0, &room.server, &room.name, nick, true)
                    .await
                {
                    warn!(%user, %room, error = %e, "cannot note the joined channel");
                }
            }
            Event::Left { user, room, .. } => {
                if let Err(e) = self
                    .store
                    .mark_left(&user.0, &room.server, &room.name)
                    .await
                {
                    warn!(%user, %room, error = %e, "cannot note the left channel");
                }
            }
            _ => {}
        }
    }
}

/// Whether a user's channel is (persistent, recorded): the channel's own setting, else the
/// user's settings for its server, else the user's, else the configuration.
async fn channel_settings(
    store: &Store,
    user: &str,
    room: &causeway_bridge::RoomRef,
    persistent_default: bool,
    record_default: bool,
) -> (bool, bool) {
    let channel = store
        .channel_settings(user, &room.server, &room.name)
        .await
        .unwrap_or_default();
    let server = store
        .irc_server_settings(user, &room.server)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let user_wide = store
        .user_settings(user)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let persistent = channel
        .persistent
        .or(server.persistent)
        .or(user_wide.persistent)
        .unwrap_or(persistent_default);
    let record = channel
        .record
        .or(server.record_history)
        .or(user_wide.record_history)
        .unwrap_or(record_default);
    (persistent, record)
}

/// At startup: join again the persistent channels the puppets were in; forget the others
/// (their users learnt it from the 332 at shutdown, and self-pings tell their clients).
async fn rejoin_persistent(
    gateway: &mut Gateway,
    store: &Store,
    default: bool,
) -> Result<Effects, RunError> {
    let mut effects = Effects::default();
    if gateway.muc_mut().is_none() {
        return Ok(effects);
    }
    for join in store.joined_channels().await? {
        let keep = match join.user.parse::<BareJid>() {
            Ok(user) if gateway.allows(&user.clone().into()) => {
                let room = causeway_bridge::RoomRef {
                    server: join.server.clone(),
                    name: join.channel.clone(),
                };
                channel_settings(store, &join.user, &room, default, true)
                    .await
                    .0
                    .then_some((user, room))
            }
            _ => None,
        };
        match keep {
            Some((user, room)) => {
                info!(user = %join.user, room = %room, "rejoining persistent channel");
                let more = gateway.muc_mut().expect("checked above").rejoin(
                    &user,
                    room,
                    join.nick.clone(),
                );
                effects.requests.extend(more.requests);
            }
            None => {
                store
                    .mark_left(&join.user, &join.server, &join.channel)
                    .await?
            }
        }
    }
    Ok(effects)
}

/// How many stanzas and events already waiting are taken between two looks at the shutdown
/// token and the configuration.
const BURST: usize = 64;

/// One piece of work for the core: an event from a network, or a stanza from the link.
enum Work {
    Event(Event),
    Stanza(Stanza),
}

#[allow(clippy::too_many_arguments)]
async fn serve_domain(
    mut gateway: Gateway,
    mut core: Core,
    initial: Effects,
    mut inbound: mpsc::Receiver<Stanza>,
    mut events: mpsc::Receiver<Event>,
    mut config: tokio::sync::watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    apply(&mut gateway, &core, initial).await;
    loop {
        // While the link is up but behind, take no more work: the bridges wait, nothing is
        // dropped.
        if !core.outbox.has_room() {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = core.outbox.room() => {}
            }
        }
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Ok(()) = config.changed() => {
                let new = config.borrow_and_update().clone();
                reconfigure(&mut gateway, &mut core, &new);
                continue;
            }
            Some(event) = events.recv() => Work::Event(event),
            stanza = inbound.recv() => match stanza {
                Some(stanza) => Work::Stanza(stanza),
                None => break,
            },
        };
        // Work already waiting is taken without a select each, a burst at a time: every
        // select registers with the shutdown token and the configuration watch, and takes
        // itself off again, once per stanza.
        let (mut next, mut taken) = (Some(first), 0);
        while let Some(work) = next.take() {
            let effects = match work {
                Work::Event(event) => {
                    core.note_event(&mut gateway, &event).await;
                    gateway.handle_event(event)
                }
                Work::Stanza(stanza) => gateway.handle_stanza(stanza),
            };
            apply(&mut gateway, &core, effects).await;
            taken += 1;
            // Only what will be handled is taken from a queue.
            if taken < BURST && core.outbox.has_room() {
                next = match events.try_recv() {
                    Ok(event) => Some(Work::Event(event)),
                    Err(_) => inbound.try_recv().ok().map(Work::Stanza),
                };
            }
        }
    }
    for stanza in gateway.shutdown_presences() {
        core.outbox.push(stanza);
    }
}

/// What a reloaded configuration changes for one domain.
fn reconfigure(gateway: &mut Gateway, core: &mut Core, config: &Config) {
    gateway.set_access(AccessList::new(&config.access.allow));
    gateway.set_admins(
        config
            .access
            .admins
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect(),
    );
    if let Some(muc) = gateway.muc_mut() {
        muc.set_defaults(config.history.record, config.history.join_lines);
    }
    core.persistent_default = config.irc.as_ref().is_some_and(|irc| irc.persistent);
    core.record_default = config.history.record;
    if let Some(reconfigure) = &core.reconfigure {
        reconfigure(config);
    }
}

async fn apply(gateway: &mut Gateway, core: &Core, effects: Effects) {
    for message in effects.archive {
        core.archiver.record(message);
    }
    let mut stanzas = effects.stanzas;
    if !effects.history.is_empty() {
        // Join history goes inside the join sequence (before the subject): read it now.
        core.archiver.flush().await;
        for request in effects.history.iter().rev() {
            match core.store.archive_page(&request.query).await {
                Ok(page) => {
                    let history = gateway::mam::history_stanzas(request, &page);
                    let at = request.position.min(stanzas.len());
                    stanzas.splice(at..at, history);
                }
                Err(e) => warn!(error = %e, room = %request.room, "cannot read join history"),
            }
        }
    }
    for stanza in stanzas {
        core.outbox.push(stanza);
    }
    for request in effects.adhoc {
        let (store, outbox, network, reloader) = (
            core.store.clone(),
            core.outbox.clone(),
            core.network.clone(),
            core.reloader.clone(),
        );
        tokio::spawn(async move {
            outbox.push(
                gateway::adhoc::run(&store, network.as_deref(), Some(&reloader), &request).await,
            )
        });
    }
    for request in effects.mam {
        // Answered on the side: a long query does not hold up the room.
        let (archiver, store, outbox) = (
            core.archiver.clone(),
            core.store.clone(),
            core.outbox.clone(),
        );
        tokio::spawn(async move {
            archiver.flush().await;
            let reply = match store.archive_page(&request.query).await {
                Ok(page) => gateway::mam::mam_results(&request, &page),
                Err(e) => {
                    warn!(error = %e, room = %request.room, "MAM query failed");
                    let error = tokio_xmpp::parsers::stanza_error::StanzaError::new(
                        tokio_xmpp::parsers::stanza_error::ErrorType::Wait,
                        tokio_xmpp::parsers::stanza_error::DefinedCondition::InternalServerError,
                        "en",
                        "the archive cannot be read right now",
                    );
                    let iq = tokio_xmpp::parsers::iq::Iq::Error {
                        from: Some(request.room.clone().into()),
                        to: Some(request.requester.clone().into()),
                        id: request.iq_id.clone(),
                        error,
                        payload: None,
                    };
                    vec![iq.into()]
                }
            };
            for stanza in reply {
                outbox.push(stanza);
            }
        });
    }
    let Some(network) = core.network.as_deref() else {
        return;
    };
    for request in effects.requests {
        if let Err(e) = network.act(&request.user, request.action).await {
            for stanza in gateway.request_failed(request.on_error, &e) {
                core.outbox.push(stanza);
            }
        }
    }
}
