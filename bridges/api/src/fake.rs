//! An in-memory network for unit tests of the gateway core: every room exists, every join
//! succeeds unless the nick is taken, and room messages reach everyone in the room (the
//! sender's own copy marked with its XMPP id).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};

use crate::{
    Action, BridgeError, Departure, Event, JoinFailure, Member, Network, NetworkContext,
    NetworkKind, Peer, Privilege, Refs, RoomRef, UserRef,
};

/// The fake network's state: who is in which room under which nick.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    events: Option<mpsc::Sender<Event>>,
    rooms: BTreeMap<RoomRef, BTreeMap<UserRef, String>>,
}

impl FakeNetwork {
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
            Action::Join { room, nick, .. } => {
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
                let all = members
                    .values()
                    .map(|n| Member {
                        nick: n.clone(),
                        privilege: Privilege::None,
                    })
                    .collect();
                let mut out = vec![Event::Joined {
                    user: user.clone(),
                    room: room.clone(),
                    nick: nick.clone(),
                    members: all,
                    subject: String::new(),
                }];
                for other in members.keys().filter(|u| *u != user) {
                    let member = Member {
                        nick: nick.clone(),
                        privilege: Privilege::None,
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
                ..
            } => {
                let members = state.rooms.get(&room).cloned().unwrap_or_default();
                let from = members
                    .get(user)
                    .cloned()
                    .ok_or_else(|| BridgeError::NotFound(format!("not in {room}")))?;
                members
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
        NetworkKind::Irc
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
        let _ = shutdown.wait_for(|stop| *stop).await;
        self.state
            .lock()
            .expect("fake network state poisoned")
            .events = None;
        Ok(())
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
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
