//! An in-memory network, the reference implementation of the conformance suite
//! ([`crate::conformance`]): every room exists, every join succeeds unless the nick is empty or
//! taken in the room, room messages reach everyone in the room (the sender's own copy marked
//! with its XMPP id), private messages reach whoever has the nick on the server, and subjects
//! reach the whole room. [`FakeNetwork::with_accounts`] adds users' own accounts, as Matrix
//! personal logins have them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::{
    AccountReply, AccountRequest, Action, BridgeError, Departure, Event, JoinFailure, Member,
    Network, NetworkContext, NetworkKind, Peer, Privilege, Refs, RoomRef, UserRef,
};

mod accounts;

use self::accounts::Accounts;
pub use self::accounts::{BROWSER_SERVER, FAKE_EMOJI, RIGHT_SECRET, UNREACHABLE_SERVER};

/// The fake network's state: who is in which room under which nick.
#[derive(Debug)]
pub struct FakeNetwork {
    state: Mutex<FakeState>,
    /// Set once `run` has installed the event channel: actions wait for it, as the core
    /// expects of every network.
    started: watch::Sender<bool>,
    /// Users' sessions, when the network has accounts ([`FakeNetwork::with_accounts`]).
    accounts: Option<Accounts>,
}

impl Default for FakeNetwork {
    fn default() -> Self {
        FakeNetwork {
            state: Mutex::default(),
            started: watch::Sender::new(false),
            accounts: None,
        }
    }
}

#[derive(Debug, Default)]
struct FakeState {
    /// While `run` runs; `None` before (actions wait) and after (actions are refused).
    events: Option<mpsc::Sender<Event>>,
    rooms: BTreeMap<RoomRef, BTreeMap<UserRef, String>>,
    subjects: BTreeMap<RoomRef, String>,
}

impl FakeState {
    /// `user`'s nick in `room`, or the `NotFound` for a room they are not in.
    fn nick_in(&self, user: &UserRef, room: &RoomRef) -> Result<String, BridgeError> {
        self.rooms
            .get(room)
            .and_then(|members| members.get(user))
            .cloned()
            .ok_or_else(|| BridgeError::NotFound(format!("not in {room}")))
    }

    /// Who has `nick` in a room on `server`, the first found.
    fn holder_of(&self, server: &str, nick: &str) -> Option<(UserRef, String)> {
        self.rooms
            .iter()
            .filter(|(room, _)| room.server == server)
            .flat_map(|(_, members)| members.iter())
            .find(|(_, n)| n.as_str() == nick)
            .map(|(user, n)| (user.clone(), n.clone()))
    }

    /// `user`'s nick on `server`: the one of a room they are in there.
    fn nick_on(&self, user: &UserRef, server: &str) -> Option<String> {
        self.rooms
            .iter()
            .filter(|(room, _)| room.server == server)
            .find_map(|(_, members)| members.get(user).cloned())
    }
}

impl FakeNetwork {
    /// A network whose users log in to their own accounts, as Matrix personal logins: it
    /// calls itself Matrix; any account logs in with the password or token
    /// [`RIGHT_SECRET`], anything else is refused as a homeserver refuses it; an account
    /// that is no Matrix ID is invalid, and [`UNREACHABLE_SERVER`] cannot be reached.
    pub fn with_accounts() -> FakeNetwork {
        FakeNetwork {
            accounts: Some(Accounts::default()),
            ..FakeNetwork::default()
        }
    }

    /// The nicks of the users in `room`.
    pub fn members(&self, room: &RoomRef) -> Vec<String> {
        let state = self.state.lock().expect("fake network state poisoned");
        state
            .rooms
            .get(room)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    fn plan(
        &self,
        user: &UserRef,
        action: Action,
    ) -> Result<(mpsc::Sender<Event>, Vec<Event>), BridgeError> {
        let mut state = self.state.lock().expect("fake network state poisoned");
        let events = state.events.clone().ok_or(BridgeError::ShutDown)?;
        let out = match action {
            Action::Join { nick, .. } if nick.is_empty() => {
                return Err(BridgeError::Invalid("an empty nick".into()))
            }
            Action::Join { room, nick, .. } => {
                let subject = state.subjects.get(&room).cloned().unwrap_or_default();
                let members = state.rooms.entry(room.clone()).or_default();
                if members.iter().any(|(u, n)| n == &nick && u != user) {
                    let text = format!("{nick} is already in use");
                    return Ok((
                        events,
                        vec![Event::JoinFailed {
                            user: user.clone(),
                            room,
                            failure: JoinFailure::NickInUse,
                            text,
                        }],
                    ));
                }
                members.insert(user.clone(), nick.clone());
                // Who a fake member is: the XMPP user behind the puppet.
                let all = members
                    .iter()
                    .map(|(u, n)| Member {
                        nick: n.clone(),
                        privilege: Privilege::None,
                        id: Some(u.0.clone()),
                        picture: None,
                    })
                    .collect();
                let mut out = vec![Event::Joined {
                    user: user.clone(),
                    room: room.clone(),
                    nick: nick.clone(),
                    members: all,
                    subject,
                }];
                for other in members.keys().filter(|u| *u != user) {
                    let member = Member {
                        nick: nick.clone(),
                        privilege: Privilege::None,
                        id: Some(user.0.clone()),
                        picture: None,
                    };
                    out.push(Event::MemberJoined {
                        user: other.clone(),
                        room: room.clone(),
                        member,
                    });
                }
                out
            }
            Action::Part { room, reason } => {
                let members = state.rooms.entry(room.clone()).or_default();
                let nick = members
                    .remove(user)
                    .ok_or_else(|| BridgeError::NotFound(format!("not in {room}")))?;
                let mut out = vec![Event::Left {
                    user: user.clone(),
                    room: room.clone(),
                    departure: Departure::Part,
                    reason: reason.clone(),
                }];
                for other in members.keys() {
                    out.push(Event::MemberLeft {
                        user: other.clone(),
                        room: room.clone(),
                        nick: nick.clone(),
                        departure: Departure::Part,
                        reason: reason.clone(),
                    });
                }
                out
            }
            Action::Send {
                to: Peer::Room(room),
                body,
                kind,
                id,
                media,
                ..
            } => {
                let from = state.nick_in(user, &room)?;
                state.rooms[&room]
                    .keys()
                    .map(|member| Event::Message {
                        user: member.clone(),
                        peer: Peer::Room(room.clone()),
                        from: from.clone(),
                        body: body.clone(),
                        kind,
                        time: None,
                        own_id: (member == user).then(|| id.clone()),
                        remote_id: None,
                        refs: Refs::none(),
                        media: media.clone(),
                    })
                    .collect()
            }
            Action::Send {
                to: Peer::User { server, nick },
                body,
                kind,
                id,
                media,
                ..
            } => {
                let from = state
                    .nick_on(user, &server)
                    .ok_or_else(|| BridgeError::NotFound(format!("not connected to {server}")))?;
                let (to, _) = state
                    .holder_of(&server, &nick)
                    .ok_or_else(|| BridgeError::NotFound(format!("no {nick} on {server}")))?;
                let message =
                    |user: &UserRef, peer_nick: &str, own_id: Option<String>| Event::Message {
                        user: user.clone(),
                        peer: Peer::User {
                            server: server.clone(),
                            nick: peer_nick.to_owned(),
                        },
                        from: from.clone(),
                        body: body.clone(),
                        kind,
                        time: None,
                        own_id,
                        remote_id: None,
                        refs: Refs::none(),
                        media: media.clone(),
                    };
                vec![message(&to, &from, None), message(user, &nick, Some(id))]
            }
            Action::SetSubject { room, subject } => {
                let by = state.nick_in(user, &room)?;
                state.subjects.insert(room.clone(), subject.clone());
                state.rooms[&room]
                    .keys()
                    .map(|member| Event::Subject {
                        user: member.clone(),
                        room: room.clone(),
                        subject: subject.clone(),
                        by: Some(by.clone()),
                    })
                    .collect()
            }
            other => {
                return Err(BridgeError::Invalid(format!(
                    "the fake network does not do {other:?}"
                )))
            }
        };
        Ok((events, out))
    }
}

#[async_trait]
impl Network for FakeNetwork {
    fn kind(&self) -> NetworkKind {
        if self.has_accounts() {
            NetworkKind::Matrix
        } else {
            NetworkKind::Irc
        }
    }

    fn has_accounts(&self) -> bool {
        self.accounts.is_some()
    }

    async fn account(
        &self,
        user: &UserRef,
        request: AccountRequest,
    ) -> Result<AccountReply, BridgeError> {
        match &self.accounts {
            Some(accounts) => accounts.answer(user, request),
            None => Err(BridgeError::Invalid(
                "this network has no accounts to log in to".into(),
            )),
        }
    }

    async fn run(
        &self,
        ctx: NetworkContext,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), BridgeError> {
        self.state
            .lock()
            .expect("fake network state poisoned")
            .events = Some(ctx.events.clone());
        self.started.send_replace(true);
        let _ = shutdown.wait_for(|stop| *stop).await;
        self.state
            .lock()
            .expect("fake network state poisoned")
            .events = None;
        Ok(())
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        // Held until `run` has started; the sender lives as long as `self`.
        let _ = self.started.subscribe().wait_for(|started| *started).await;
        let (events, out) = self.plan(user, action)?;
        for event in out {
            events
                .send(event)
                .await
                .map_err(|_| BridgeError::ShutDown)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageKind;
    use std::sync::Arc;

    fn room() -> RoomRef {
        RoomRef {
            server: "irc.example.net".into(),
            name: "#rust".into(),
        }
    }

    #[tokio::test]
    async fn join_message_part_round_trip() {
        let net = Arc::new(FakeNetwork::default());
        let (tx, mut rx) = mpsc::channel(16);
        let (stop, shutdown) = watch::channel(false);
        let runner = {
            let net = net.clone();
            tokio::spawn(async move { net.run(NetworkContext { events: tx }, shutdown).await })
        };
        while net.state.lock().unwrap().events.is_none() {
            tokio::task::yield_now().await;
        }
        let alice = UserRef("alice@example.org".into());
        let bob = UserRef("bob@example.org".into());
        let join = |nick: &str| Action::Join {
            room: room(),
            nick: nick.into(),
            password: None,
        };
        net.act(&alice, join("alice")).await.unwrap();
        assert!(matches!(rx.recv().await, Some(Event::Joined { ref nick, .. }) if nick == "alice"));
        net.act(&bob, join("alice")).await.unwrap();
        assert!(matches!(
            rx.recv().await,
            Some(Event::JoinFailed {
                failure: JoinFailure::NickInUse,
                ..
            })
        ));
        net.act(&bob, join("bob")).await.unwrap();
        assert!(
            matches!(rx.recv().await, Some(Event::Joined { ref members, .. }) if members.len() == 2)
        );
        assert!(
            matches!(rx.recv().await, Some(Event::MemberJoined { ref user, .. }) if *user == alice)
        );
        let send = Action::Send {
            to: Peer::Room(room()),
            body: "hi".into(),
            kind: MessageKind::Normal,
            id: "m1".into(),
            refs: Refs::none(),
            media: None,
        };
        net.act(&alice, send).await.unwrap();
        for _ in 0..2 {
            match rx.recv().await.unwrap() {
                Event::Message {
                    user, own_id, from, ..
                } => {
                    assert_eq!(from, "alice");
                    assert_eq!(own_id.is_some(), user == alice);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        net.act(
            &alice,
            Action::Part {
                room: room(),
                reason: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(net.members(&room()), ["bob"]);
        stop.send(true).unwrap();
        runner.await.unwrap().unwrap();
    }
}

/// The fake network runs the conformance suite: the reference every real network is held to.
#[cfg(test)]
mod conformance {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::FakeNetwork;
    use crate::conformance::Harness;
    use crate::{Peer, RoomRef, UserRef};

    const SERVER: &str = "irc.example.net";

    #[derive(Debug, Default)]
    struct FakeHarness {
        rooms: AtomicUsize,
    }

    #[async_trait]
    impl Harness for FakeHarness {
        type Network = FakeNetwork;

        async fn network(&self) -> Arc<FakeNetwork> {
            Arc::new(FakeNetwork::default())
        }

        async fn room(&self) -> RoomRef {
            RoomRef {
                server: SERVER.into(),
                name: format!("#room{}", self.rooms.fetch_add(1, Ordering::Relaxed)),
            }
        }

        fn users(&self) -> [UserRef; 2] {
            ["ann@example.org", "bob@example.org"].map(|jid| UserRef(jid.into()))
        }

        fn private_peer(&self, _user: &UserRef, nick: &str) -> Peer {
            Peer::User {
                server: SERVER.into(),
                nick: nick.into(),
            }
        }
    }

    async fn conformance_harness() -> FakeHarness {
        FakeHarness::default()
    }

    crate::network_conformance_tests!();
}
