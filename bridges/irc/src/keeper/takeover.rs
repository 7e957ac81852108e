//! The gateway's attachment to its keeper over the gateway's life: attach at startup and
//! take over what an earlier gateway left, then, whenever the link breaks (the keeper was
//! restarted, or dropped a gateway that stopped reading), attach again with backoff. The
//! keeper keeps holding the connections while no gateway is attached: on the new link
//! each session claims its own again (`session/kept.rs`), and what no session claims is
//! adopted or, after a grace, quit.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::client::KeeperLink;
use super::protocol::ConnId;
use super::state::Adoptable;
use crate::session::{self, SessionSpec};
use crate::{Inner, SessionHandle, SessionKey};

/// How long a connection whose session was waiting for the link stays unclaimed before it
/// is quit (its session ended meanwhile).
const ORPHAN_GRACE: Duration = Duration::from_secs(60);
/// The longest wait between two attempts to attach again.
const MAX_REATTACH_DELAY: Duration = Duration::from_secs(30);
/// How long the keeper may take to welcome a gateway.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// What a held connection nobody takes over says as it goes.
const QUIT: &[u8] = b"QUIT :causeway restarted\r\n";

/// Attach to the keeper at `path`, within [`ATTACH_TIMEOUT`].
async fn attach(path: &Path) -> std::io::Result<Arc<KeeperLink>> {
    tokio::time::timeout(ATTACH_TIMEOUT, KeeperLink::attach(path))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the keeper at {} did not answer", path.display()),
            ))
        })
}

impl Inner {
    /// The keeper's link, once one is up: a session whose link broke waits here.
    pub(crate) async fn attached(&self) -> Arc<KeeperLink> {
        let mut links = self.keeper.subscribe();
        let link = links
            .wait_for(|link| link.as_ref().is_some_and(|l| l.is_alive()))
            .await
            .expect("the sender lives in Inner");
        link.clone().expect("checked by wait_for")
    }

    /// Attach to the keeper at `path` and take over what it holds; `None` when it cannot
    /// be reached at startup — connections are refused with the reason until
    /// [`stay_attached`](Self::stay_attached) reaches it.
    pub(crate) async fn attach_first(
        self: &Arc<Self>,
        path: &Path,
        shutdown: &watch::Receiver<bool>,
    ) -> Option<Arc<KeeperLink>> {
        match attach(path).await {
            Ok(link) => {
                self.keeper.send_replace(Some(link.clone()));
                self.adopt(&link, shutdown, &[]).await;
                Some(link)
            }
            Err(e) => {
                warn!(error = %e, "no keeper yet: IRC connections are refused until it answers");
                *self.keeper_failed.lock().expect("keeper lock") = Some(e.to_string());
                None
            }
        }
    }

    /// Until shutdown: attach (when the first attempt failed, `link` is `None`), and
    /// whenever the link breaks, attach again — with backoff while the keeper does not
    /// answer — and hand the connections back.
    pub(crate) async fn stay_attached(
        self: &Arc<Self>,
        path: &Path,
        mut link: Option<Arc<KeeperLink>>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        loop {
            if let Some(link) = &link {
                let why = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    why = link.ended() => why,
                };
                warn!(%why, "the link to the keeper broke: attaching again");
            }
            let mut delay = Duration::from_millis(250);
            let mut attempts = 0u32;
            let next = loop {
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                attempts += 1;
                match attach(path).await {
                    Ok(next) => break next,
                    Err(e) => {
                        warn!(error = %e, attempts, "cannot attach to the keeper yet");
                        delay = (delay * 2).min(MAX_REATTACH_DELAY);
                        let jitter = fastrand::u64(..=delay.as_millis() as u64 / 4);
                        delay += Duration::from_millis(jitter);
                    }
                }
            };
            let orphans = link.as_ref().map(|l| l.orphans()).unwrap_or_default();
            info!(
                held = next.held().len(),
                waiting = orphans.len(),
                attempts,
                "attached to the keeper again"
            );
            // Connections are no longer refused; sessions waiting for the link claim
            // their connections from here on; the link is in place before any session is
            // made on it (a session shutting down leaves its connection through the link
            // it was made on).
            *self.keeper_failed.lock().expect("keeper lock") = None;
            self.keeper.send_replace(Some(next.clone()));
            self.adopt(&next, shutdown, &orphans).await;
            let unclaimed = next.clone();
            tokio::spawn(async move {
                tokio::time::sleep(ORPHAN_GRACE).await;
                for conn in orphans {
                    unclaimed.quit_unclaimed(conn, QUIT);
                }
            });
            link = Some(next);
        }
    }

    /// Take over the connections an earlier gateway left with the keeper: each becomes
    /// its user's session for its server, registered and in its channels. What cannot be
    /// taken over (a state this build cannot read, a connection that never registered, a
    /// second one for the same user and server) is quit. Called before actions are taken,
    /// so that a join for a kept channel finds its session. `orphans` are the connections
    /// of this gateway's own sessions, when the link broke: those claim them again.
    async fn adopt(
        self: &Arc<Self>,
        link: &KeeperLink,
        shutdown: &watch::Receiver<bool>,
        orphans: &[ConnId],
    ) {
        for held in link.held().to_vec() {
            if orphans.contains(&held.conn) {
                // Its session is there, waiting to claim it again.
                continue;
            }
            let state = match Adoptable::decode(&held.state) {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(conn = held.conn, error = %e, "a connection the keeper holds cannot be taken over: quitting it");
                    link.quit(held.conn, QUIT);
                    continue;
                }
            };
            let key: SessionKey = (state.user.clone(), state.server.clone());
            let taken = self
                .sessions
                .lock()
                .expect("sessions lock")
                .contains_key(&key);
            let claimed = if taken { None } else { link.claim(held.conn) };
            let Some((io, lines)) = claimed else {
                tracing::warn!(user = %state.user, server = %state.server, "a second kept connection for the same user and server: quitting it");
                link.quit(held.conn, QUIT);
                continue;
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = mpsc::unbounded_channel();
            self.sessions
                .lock()
                .expect("sessions lock")
                .insert(key.clone(), SessionHandle { id, commands: tx });
            let (user, server) = key;
            let identity = self.identities.identity(&user, &server, &state.nick).await;
            let spec = SessionSpec {
                user: user.clone(),
                server: server.clone(),
                settings: self
                    .settings
                    .lock()
                    .expect("settings lock")
                    .server(&server)
                    .overridden(&identity.transport),
                identity,
                id,
            };
            let adopted = session::Adopted {
                state,
                io,
                lines,
                dropped: held.dropped,
            };
            let span = tracing::info_span!("irc", network = "irc", user = %user, server = %server);
            self.tasks
                .lock()
                .await
                .spawn(tracing::Instrument::instrument(
                    session::run(spec, self.clone(), rx, shutdown.clone(), Some(adopted)),
                    span,
                ));
        }
    }
}
