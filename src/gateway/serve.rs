//! The gateway core's task for one component domain: stanzas from the link and events from
//! the network in, one at a time (so the MUC state needs no lock), and their effects out —
//! stanzas to the outbox, messages to the archive, join history and MAM from the store,
//! ad-hoc steps on the side, actions to the network.

use std::sync::Arc;

use causeway_bridge::{Event, Network};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::Stanza;
use tracing::{debug, debug_span, warn, Instrument, Span};

use super::access::AccessList;
use super::muc::Effects;
use super::Gateway;
use crate::archive::Archiver;
use crate::component::Outbox;
use crate::config::Config;
use crate::store::Store;

/// Applies a reloaded configuration to a network.
pub(crate) type Reconfigure = Arc<dyn Fn(&Config) + Send + Sync>;

/// Reads the configuration file again and applies it: `Ok` says what happened, `Err` why
/// nothing was applied (the administrators' `reload` command).
pub type Reload = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// What a gateway core acts through.
pub(crate) struct Core {
    pub(crate) network: Option<Arc<dyn Network>>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) archiver: Archiver,
    pub(crate) store: Store,
    /// `[irc] persistent`.
    pub(crate) persistent_default: bool,
    /// `[history] record`.
    pub(crate) record_default: bool,
    /// Applies a reloaded configuration to the network.
    pub(crate) reconfigure: Option<Reconfigure>,
    /// The administrators' reload command: reads the configuration file again.
    pub(crate) reload: Reload,
    /// With the IRC connections kept across a restart: how long the channels taken over
    /// wait for a client before those that are not persistent are left.
    pub(crate) adoption_grace: Option<std::time::Duration>,
}

/// How many stanzas and events already waiting are taken between two looks at the shutdown
/// token and the configuration.
const BURST: usize = 64;

/// One piece of work for the core: an event from a network, or a stanza from the link.
enum Work {
    Event(Event),
    Stanza(Stanza),
}

impl Work {
    /// The span of this piece of work: whom it concerns.
    fn span(&self) -> Span {
        match self {
            Work::Event(event) => debug_span!("event", user = %event.user()),
            Work::Stanza(stanza) => {
                let from = match stanza {
                    Stanza::Message(m) => m.from.as_ref(),
                    Stanza::Presence(p) => p.from.as_ref(),
                    Stanza::Iq(iq) => iq.from(),
                };
                debug_span!("stanza", user = from.map(tracing::field::display))
            }
        }
    }
}

/// The core's loop for one domain, until shutdown; then every joined resource is told the
/// room is gone (332).
pub(crate) async fn serve_domain(
    mut gateway: Gateway,
    mut core: Core,
    initial: Effects,
    mut inbound: mpsc::Receiver<Stanza>,
    mut events: mpsc::Receiver<Event>,
    mut config: tokio::sync::watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
) {
    let mut held = Held::default();
    apply(&mut gateway, &core, initial, &mut held).await;
    held.deliver(&core).await;
    let grace = tokio::time::sleep(core.adoption_grace.unwrap_or_default());
    tokio::pin!(grace);
    let mut graced = core.adoption_grace.is_none();
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
            _ = &mut grace, if !graced => {
                graced = true;
                if let Some(muc) = gateway.muc_mut() {
                    let (effects, not_kept) = muc.release_unclaimed();
                    core.forget_channels(&not_kept).await;
                    apply(&mut gateway, &core, effects, &mut held).await;
                    held.deliver(&core).await;
                }
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
            // Each piece of work in a span naming its user (the whole JID of a stanza's
            // sender), so that one user's story can be filtered out of the debug log. A
            // span nobody listens to costs a check of the filter.
            let span = work.span();
            async {
                let effects = match work {
                    Work::Event(Event::Checkpoint { receipt, .. }) => {
                        held.checkpoints.push(receipt);
                        Effects::default()
                    }
                    Work::Event(event) => {
                        debug!(?event, "from the network");
                        core.note_event(&mut gateway, &event).await;
                        gateway.handle_event(event)
                    }
                    Work::Stanza(stanza) => gateway.handle_stanza(stanza),
                };
                apply(&mut gateway, &core, effects, &mut held).await;
            }
            .instrument(span)
            .await;
            taken += 1;
            // Only what will be handled is taken from a queue.
            if taken < BURST && core.outbox.has_room() {
                next = match events.try_recv() {
                    Ok(event) => Some(Work::Event(event)),
                    Err(_) => inbound.try_recv().ok().map(Work::Stanza),
                };
            }
        }
        held.deliver(&core).await;
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
    let limits = super::limits::RoomLimits::of(gateway.network(), config);
    if let Some(muc) = gateway.muc_mut() {
        muc.set_defaults(config.history.record, config.history.join_lines);
        muc.set_limits(limits);
    }
    gateway.set_send_rate(
        config.access.messages_per_minute,
        config.access.message_burst,
    );
    core.persistent_default = config.irc.as_ref().is_some_and(|irc| irc.persistent);
    core.record_default = config.history.record;
    if let Some(reconfigure) = &core.reconfigure {
        reconfigure(config);
    }
}

/// How long delivery waits for the archive to have what it announces.
const ARCHIVED_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The stanzas of a burst of work, held until the archive has what they announce, and the
/// checkpoints the networks asked for meanwhile.
#[derive(Default)]
struct Held {
    stanzas: Vec<Stanza>,
    /// Whether messages were handed to the archiver for them.
    archived: bool,
    /// Answered once what the events before them brought is durable.
    checkpoints: Vec<causeway_bridge::Receipt>,
}

impl Held {
    /// Send the held stanzas on, once the archiver has written what was handed to it
    /// (one wait per burst, not per message): a client does not see a message the archive
    /// could still lose to a crash. A database that is failing or slow holds delivery up no
    /// longer than [`ARCHIVED_WAIT`]: the archiver keeps the messages (in memory, then on
    /// disk) and delivery goes on.
    async fn deliver(&mut self, core: &Core) {
        if std::mem::take(&mut self.archived) {
            let _ = tokio::time::timeout(ARCHIVED_WAIT, core.archiver.flush()).await;
        }
        for stanza in self.stanzas.drain(..) {
            core.outbox.push(stanza);
        }
        if !self.checkpoints.is_empty() {
            core.checkpoint(std::mem::take(&mut self.checkpoints));
        }
    }
}

impl Core {
    /// Answer a network's checkpoints once what the events before them brought is durable:
    /// the archive holds every message handed to it so far, and every stanza queued so far
    /// (a private message, a line in a room not recorded) is written to the server — a
    /// keeper may then forget the lines, and a crash loses none of it. While the database
    /// fails the receipts go unanswered and the network asks again later; while the server
    /// is away they wait for the link (the keeper keeps the lines meanwhile). A stanza
    /// dropped past `queue_size` while the server is away counts as done with: that is
    /// the outbox's stated bound.
    fn checkpoint(&self, receipts: Vec<causeway_bridge::Receipt>) {
        let (archiver, outbox) = (self.archiver.clone(), self.outbox.clone());
        let mark = outbox.mark();
        tokio::spawn(
            async move {
                let durable = archiver.flush().await;
                // Not held while waiting for the link: shutdown waits for every archiver
                // handle to go, and the link may be down then.
                drop(archiver);
                if durable {
                    outbox.settled(mark).await;
                    for receipt in receipts {
                        receipt.durable();
                    }
                }
            }
            .in_current_span(),
        );
    }
}

async fn apply(gateway: &mut Gateway, core: &Core, effects: Effects, held: &mut Held) {
    held.archived |= !effects.archive.is_empty();
    for message in effects.archive {
        core.archiver.record(message).await;
    }
    let mut stanzas = effects.stanzas;
    if !effects.history.is_empty() {
        // Join history goes inside the join sequence (before the subject): read it now.
        core.archiver.flush().await;
        for request in effects.history.iter().rev() {
            match core.store.archive_page(&request.query).await {
                Ok(page) => {
                    let history = super::mam::history_stanzas(request, &page);
                    let at = request.position.min(stanzas.len());
                    stanzas.splice(at..at, history);
                }
                Err(e) => warn!(error = %e, room = %request.room, "cannot read join history"),
            }
        }
    }
    held.stanzas.extend(stanzas);
    // Each push once ever: what the user removed or changed stays as they left it.
    for ((user, kind, target), stanza) in gateway.pushes(effects.pushes) {
        match core.store.record_push(&user, kind, &target).await {
            Ok(true) => held.stanzas.push(stanza),
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, %user, kind, "cannot note a push into the account: not made")
            }
        }
    }
    for request in effects.adhoc {
        let (store, outbox, network, reload) = (
            core.store.clone(),
            core.outbox.clone(),
            core.network.clone(),
            core.reload.clone(),
        );
        let step = async move {
            let stanzas =
                super::adhoc::run(&store, network.as_deref(), Some(&reload), &request).await;
            for stanza in stanzas {
                outbox.push(stanza);
            }
        };
        tokio::spawn(step.in_current_span());
    }
    for request in effects.register {
        let (outbox, network) = (core.outbox.clone(), core.network.clone());
        let step =
            async move { outbox.push(super::register::run(network.as_deref(), &request).await) };
        tokio::spawn(step.in_current_span());
    }
    for request in effects.mam {
        // Answered on the side: a long query does not hold up the room.
        let (archiver, store, outbox) = (
            core.archiver.clone(),
            core.store.clone(),
            core.outbox.clone(),
        );
        let answer = async move {
            archiver.flush().await;
            let reply = match store.archive_page(&request.query).await {
                Ok(page) => super::mam::mam_results(&request, &page),
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
        };
        tokio::spawn(answer.in_current_span());
    }
    let Some(network) = core.network.as_deref() else {
        return;
    };
    for request in effects.requests {
        if let Err(e) = network.act(&request.user, request.action).await {
            // After what the burst said before it, as any other stanza of the burst.
            held.stanzas
                .extend(gateway.request_failed(request.on_error, &e));
        }
    }
}
