//! The MUC core in a closed loop with `FakeNetwork`, the adapter API's reference network:
//! every action the core asks for is carried out by the network, every event the network
//! reports goes back to the core. Where the other tests type the events by hand, these hold
//! the core to what a network that meets the API's contract really reports.

use std::collections::VecDeque;
use std::sync::Arc;

use causeway_bridge::fake::FakeNetwork;
use causeway_bridge::{Network, NetworkContext};
use tokio::sync::{mpsc, watch};
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, StanzaError};

use super::super::*;
use super::ROOM;

/// The core and the fake network, joined.
struct Loop {
    muc: Muc,
    network: Arc<FakeNetwork>,
    events: mpsc::Receiver<Event>,
    /// Every stanza the core sent, in order.
    sent: Vec<Stanza>,
    _stop: watch::Sender<bool>,
}

impl Loop {
    async fn start() -> Loop {
        let network = Arc::new(FakeNetwork::default());
        let (tx, events) = mpsc::channel(64);
        let (stop, shutdown) = watch::channel(false);
        let running = network.clone();
        tokio::spawn(async move { running.run(NetworkContext { events: tx }, shutdown).await });
        Loop {
            muc: super::muc(),
            network,
            events,
            sent: Vec::new(),
            _stop: stop,
        }
    }

    /// Carry out `fx` and everything it leads to, until nothing moves.
    async fn settle(&mut self, fx: Effects) {
        let mut todo = VecDeque::from([fx]);
        while let Some(fx) = todo.pop_front() {
            self.sent.extend(fx.stanzas);
            for request in fx.requests {
                if let Err(e) = self.network.act(&request.user, request.action).await {
                    let refused = self.muc.request_failed(request.on_error, &e);
                    self.sent.extend(refused);
                }
                while let Ok(event) = self.events.try_recv() {
                    todo.push_back(self.muc.handle_event(event));
                }
            }
        }
    }

    /// `who` joins the room as `nick`.
    async fn join(&mut self, who: &FullJid, nick: &str) {
        let to: Jid = format!("{ROOM}/{nick}").parse().unwrap();
        let address = self.muc.addressing().parse(&to).unwrap();
        let fx = self
            .muc
            .handle_presence(Presence::available(), who.clone(), to, address);
        self.settle(fx).await;
    }

    /// `who` says `body` in the room, with message id `id`.
    async fn say(&mut self, who: &FullJid, id: &str, body: &str) {
        let to: Jid = ROOM.parse().unwrap();
        let mut msg = Message::groupchat(Some(to.clone()));
        msg.id = Some(Id(id.into()));
        msg.bodies.insert(Default::default(), body.into());
        let address = self.muc.addressing().parse(&to).unwrap();
        let fx = self.muc.handle_message(msg, who.clone(), to, address);
        self.settle(fx).await;
    }

    /// The stanzas sent to `to` since the last look, taken.
    fn taken_for(&mut self, to: &FullJid) -> Vec<Stanza> {
        let to = Jid::from(to.clone());
        let (mine, rest) = std::mem::take(&mut self.sent)
            .into_iter()
            .partition(|s| match s {
                Stanza::Message(m) => m.to.as_ref() == Some(&to),
                Stanza::Presence(p) => p.to.as_ref() == Some(&to),
                Stanza::Iq(_) => false,
            });
        self.sent = rest;
        mine
    }
}

fn alice() -> FullJid {
    "alice@example.org/phone".parse().unwrap()
}

fn bob() -> FullJid {
    "bob@example.org/laptop".parse().unwrap()
}

/// The occupant JIDs of the available presences among `stanzas`, in order.
fn present(stanzas: &[Stanza]) -> Vec<String> {
    stanzas
        .iter()
        .filter_map(|s| match s {
            Stanza::Presence(p) if p.type_ == PresenceType::None => {
                p.from.as_ref().map(|f| f.to_string())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn two_users_join_and_see_each_other() {
    let mut net = Loop::start().await;
    net.join(&alice(), "alice").await;
    assert_eq!(
        present(&net.taken_for(&alice())),
        [format!("{ROOM}/alice")],
        "alice, alone, gets her own presence"
    );
    net.join(&bob(), "bob").await;
    assert_eq!(
        present(&net.taken_for(&bob())),
        [format!("{ROOM}/alice"), format!("{ROOM}/bob")],
        "bob gets alice, then himself"
    );
    assert_eq!(
        present(&net.taken_for(&alice())),
        [format!("{ROOM}/bob")],
        "alice sees bob come"
    );
}

#[tokio::test]
async fn a_message_reaches_the_other_user_and_is_reflected_with_its_id() {
    let mut net = Loop::start().await;
    net.join(&alice(), "alice").await;
    net.join(&bob(), "bob").await;
    net.taken_for(&alice());
    net.taken_for(&bob());

    net.say(&alice(), "m1", "hello bob").await;
    let bodies = |stanzas: &[Stanza]| -> Vec<(String, Option<String>, String)> {
        stanzas
            .iter()
            .filter_map(|s| match s {
                Stanza::Message(m) if m.type_ == MessageType::Groupchat => Some((
                    m.from.as_ref()?.to_string(),
                    m.id.as_ref().map(|i| i.0.clone()),
                    m.bodies.get("")?.clone(),
                )),
                _ => None,
            })
            .collect()
    };
    let to_bob = bodies(&net.taken_for(&bob()));
    assert_eq!(to_bob.len(), 1, "{to_bob:?}");
    assert_eq!(
        (to_bob[0].0.as_str(), to_bob[0].2.as_str()),
        (format!("{ROOM}/alice").as_str(), "hello bob")
    );
    assert_eq!(
        bodies(&net.taken_for(&alice())),
        [(
            format!("{ROOM}/alice"),
            Some("m1".to_owned()),
            "hello bob".to_owned()
        )],
        "alice's own message comes back once, with her id"
    );
}

#[tokio::test]
async fn a_nick_in_use_is_a_conflict() {
    let mut net = Loop::start().await;
    net.join(&alice(), "alice").await;
    net.taken_for(&alice());
    net.join(&bob(), "alice").await;
    let to_bob = net.taken_for(&bob());
    let conflict = to_bob.iter().any(|s| match s {
        Stanza::Presence(p) if p.type_ == PresenceType::Error => p
            .payloads
            .iter()
            .filter_map(|e| StanzaError::try_from(e.clone()).ok())
            .any(|e| e.defined_condition == DefinedCondition::Conflict),
        _ => false,
    });
    assert!(conflict, "{to_bob:?}");
    assert!(
        present(&net.taken_for(&alice())).is_empty(),
        "alice sees nobody come"
    );
}
