//! The conformance suite every [`Network`] implementation runs: what the API in this crate
//! promises, checked through [`Network::run`] and [`Network::act`] and the events a running
//! network reports.
//!
//! A network takes part by implementing [`Harness`] (how to make it, which room and users
//! to test with) and invoking [`network_conformance_tests!`](crate::network_conformance_tests)
//! next to an `async fn conformance_harness() -> impl Harness`; each case becomes its own
//! test. [`FakeNetwork`](crate::fake::FakeNetwork) runs the suite in this crate's unit tests,
//! the IRC and Matrix bridges against real servers in the integration tests.
//!
//! Built for this crate's tests and behind the `conformance` feature for the others: it needs
//! tokio's runtime and timers, which the adapter API itself does not.

pub mod cases;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{Action, BridgeError, Event, Network, NetworkContext, Peer, RoomRef, UserRef};

/// How long the suite waits for an event a network owes: Synapse on a loaded machine takes
/// seconds to push a transaction.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long the suite watches for an event that must not come.
pub const QUIET: Duration = Duration::from_millis(1500);

/// How long `run` may take to return once the shutdown signal is given.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(15);

/// What a network gives the suite: a fresh network for each case, rooms to test in, and
/// users allowed to act.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The network under test.
    type Network: Network;

    /// A new network, not running yet. Each case makes one and runs it itself.
    async fn network(&self) -> Arc<Self::Network>;

    /// A room that exists (or that joining creates), that nobody has joined through this
    /// network yet, where the users may speak and set the subject. A new one per call.
    async fn room(&self) -> RoomRef;

    /// Two distinct XMPP users the network serves.
    fn users(&self) -> [UserRef; 2];

    /// How others address `user`, in the room under `nick`, in a private message; and how
    /// a private message from them is marked.
    fn private_peer(&self, user: &UserRef, nick: &str) -> Peer;

    /// Where the network is known not to do what the API documents: each `false` skips the
    /// step of the suite that would fail, until the network is fixed. All `true` by default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// What the network does of what the API documents. A `false` is a known defect, reported
/// with the case that found it, never a difference the API allows: those the suite accepts
/// for every network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A puppet sees another XMPP user's puppet join a room it is in
    /// ([`Event::MemberJoined`]).
    pub sees_puppets_join: bool,
    /// A join under an empty nick is refused with [`BridgeError::Invalid`].
    pub refuses_empty_nick: bool,
    /// A join after `run` has returned is refused with [`BridgeError::ShutDown`].
    pub refuses_joins_after_shutdown: bool,
    /// Any other action after `run` has returned is refused with [`BridgeError::ShutDown`].
    pub refuses_actions_after_shutdown: bool,
    /// A private message to another XMPP user's puppet reaches that user.
    pub delivers_private_messages_between_puppets: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            sees_puppets_join: true,
            refuses_empty_nick: true,
            refuses_joins_after_shutdown: true,
            refuses_actions_after_shutdown: true,
            delivers_private_messages_between_puppets: true,
        }
    }
}

/// A network under test, running on its own task, with everything it reported.
#[derive(Debug)]
pub struct Running<N: Network> {
    /// The network.
    pub network: Arc<N>,
    events: mpsc::Receiver<Event>,
    /// Events received and not yet taken by an expectation, oldest first.
    unread: VecDeque<Event>,
    stop: watch::Sender<bool>,
    run: JoinHandle<Result<(), BridgeError>>,
}

impl<N: Network> Running<N> {
    /// Start `network`'s `run` on a task, reporting into a channel the suite reads.
    pub fn start(network: Arc<N>) -> Running<N> {
        let (tx, events) = mpsc::channel(1024);
        let (stop, shutdown) = watch::channel(false);
        let run = {
            let network = network.clone();
            tokio::spawn(async move { network.run(NetworkContext { events: tx }, shutdown).await })
        };
        Running {
            network,
            events,
            unread: VecDeque::new(),
            stop,
            run,
        }
    }

    /// Carry out `action` for `user`, which the network must accept.
    pub async fn act(&self, user: &UserRef, action: Action) {
        let what = format!("{action:?}");
        if let Err(e) = self.try_act(user, action).await {
            panic!("{user}: the network refused {what}: {e}");
        }
    }

    /// Hand `action` for `user` to the network; its answer, which must come within
    /// [`PATIENCE`].
    pub async fn try_act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        within(
            &format!("{user}: {action:?}"),
            self.network.act(user, action),
        )
        .await
    }

    /// The first event, in the order reported, that `pick` takes; the others stay unread.
    /// Fails the case after [`PATIENCE`].
    pub async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        if let Some(found) = self.take_unread(&mut pick) {
            return found;
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => match pick(&event) {
                    Some(found) => return found,
                    None => self.unread.push_back(event),
                },
                Ok(None) => panic!("{what}: the network closed its event channel"),
                Err(_) => panic!(
                    "{what}: not reported within {PATIENCE:?}; reported instead: {:#?}",
                    self.unread
                ),
            }
        }
    }

    /// Fails the case if an event `bad` matches has been reported, or is within [`QUIET`].
    pub async fn refute(&mut self, what: &str, mut bad: impl FnMut(&Event) -> bool) {
        if let Some(event) = self.unread.iter().find(|e| bad(e)) {
            panic!("{what}: {event:?}");
        }
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            assert!(!bad(&event), "{what}: {event:?}");
            self.unread.push_back(event);
        }
    }

    /// Give the shutdown signal; `run`'s result, which must come within [`SHUTDOWN_BOUND`].
    pub async fn shut_down(&mut self) -> Result<(), BridgeError> {
        self.stop.send_replace(true);
        match tokio::time::timeout(SHUTDOWN_BOUND, &mut self.run).await {
            Ok(result) => result.expect("the network's run task panicked"),
            Err(_) => panic!("run did not return within {SHUTDOWN_BOUND:?} of the shutdown"),
        }
    }

    fn take_unread<T>(&mut self, pick: &mut impl FnMut(&Event) -> Option<T>) -> Option<T> {
        let (at, found) = self
            .unread
            .iter()
            .enumerate()
            .find_map(|(at, e)| pick(e).map(|found| (at, found)))?;
        self.unread.remove(at);
        Some(found)
    }
}

/// `future`'s output, which must come within [`PATIENCE`]: a network that never answers
/// fails the case rather than hanging it.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: no answer within {PATIENCE:?}"),
    }
}

impl<N: Network> Drop for Running<N> {
    fn drop(&mut self) {
        // A failed case still lets the network say goodbye to its servers.
        self.stop.send_replace(true);
    }
}

/// One test per conformance case for the network that `conformance_harness()`, an
/// `async fn` in the invoking module returning an [`Harness`], makes. The tests use
/// `#[tokio::test]`: the invoking crate needs tokio with `macros` and `rt`.
///
/// ```ignore
/// async fn conformance_harness() -> MyHarness {
///     MyHarness::start().await
/// }
///
/// causeway_bridge::network_conformance_tests!();
/// ```
#[macro_export]
macro_rules! network_conformance_tests {
    () => {
        $crate::network_conformance_tests!(@cases
            actions_before_run_are_held,
            join_lists_the_puppet_among_the_members,
            a_second_join_is_seen_by_the_first,
            a_room_message_reaches_the_others_and_is_reflected,
            an_action_message_keeps_its_kind,
            a_part_is_reported_to_both_sides,
            a_taken_nick_fails_the_join,
            an_empty_nick_is_invalid,
            a_message_to_a_room_not_joined_fails,
            a_subject_change_reaches_everyone,
            a_private_message_reaches_the_user,
            shutdown_ends_run_and_later_actions,
        );
    };
    (@cases $($case:ident),* $(,)?) => {
        mod network_conformance {
            $(
                #[::tokio::test]
                async fn $case() {
                    let harness = super::conformance_harness().await;
                    $crate::conformance::cases::$case(&harness).await;
                }
            )*
        }
    };
}
