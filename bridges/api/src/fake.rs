//! An in-memory network for unit tests of the gateway core: every room exists, every join
//! succeeds unless the nick is taken, and messages are echoed to everyone in the room.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{Action, BridgeError, Event, Network, NetworkContext, NetworkKind, RoomRef, UserRef};

/// The fake network's state: who is in which room under which nick.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    events: Option<mpsc::Sender<Event>>,
    rooms: HashMap<RoomRef, HashMap<UserRef, String>>,
}

impl FakeNetwork {
    /// The users in `room` and their nicks.
    pub fn members(&self, room: &RoomRef) -> HashSet<(UserRef, String)> {
        let state = self.state.lock().expect("fake network state poisoned");
        state
            .rooms
            .get(room)
            .map(|m| m.iter().map(|(u, n)| (u.clone(), n.clone())).collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl Network for FakeNetwork {
    fn kind(&self) -> NetworkKind {
        NetworkKind::Irc
    }

    async fn run(&self, ctx: NetworkContext) -> Result<(), BridgeError> {
        self.state
            .lock()
            .expect("fake network state poisoned")
            .events = Some(ctx.events.clone());
        ctx.events.closed().await;
        Ok(())
    }

    async fn act(&self, user: &UserRef, action: Action) -> Result<(), BridgeError> {
        let (events, out) = {
            let mut state = self.state.lock().expect("fake network state poisoned");
            let events = state.events.clone().ok_or(BridgeError::ShutDown)?;
            let out = match action {
                Action::Join { room, nick } => {
                    if nick.is_empty() {
                        return Err(BridgeError::Invalid("empty nick".into()));
                    }
                    let members = state.rooms.entry(room.clone()).or_default();
                    if members.iter().any(|(u, n)| n == &nick && u != user) {
                        return Err(BridgeError::Refused(format!("nick {nick} is in use")));
                    }
                    members.insert(user.clone(), nick.clone());
                    vec![Event::Joined {
                        user: user.clone(),
                        room,
                        nick,
                    }]
                }
                Action::Part { room, reason } => {
                    let members = state.rooms.entry(room.clone()).or_default();
                    if members.remove(user).is_none() {
                        return Err(BridgeError::NotFound(format!("not in {}", room.name)));
                    }
                    vec![Event::Parted {
                        user: user.clone(),
                        room,
                        reason,
                    }]
                }
                Action::Message { room, body, id } => {
                    let members = state.rooms.get(&room).cloned().unwrap_or_default();
                    let from = members
                        .get(user)
                        .cloned()
                        .ok_or_else(|| BridgeError::NotFound(format!("not in {}", room.name)))?;
                    members
                        .keys()
                        .map(|member| Event::Message {
                            user: member.clone(),
                            room: room.clone(),
                            from: from.clone(),
                            body: body.clone(),
                            remote_id: Some(id.clone()),
                        })
                        .collect()
                }
            };
            (events, out)
        };
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

    fn room() -> RoomRef {
        RoomRef {
            server: "irc.example.net".into(),
            name: "#rust".into(),
        }
    }

    #[tokio::test]
    async fn join_message_part_round_trip() {
        let net = std::sync::Arc::new(FakeNetwork::default());
        let (tx, mut rx) = mpsc::channel(16);
        let runner = {
            let net = net.clone();
            tokio::spawn(async move { net.run(NetworkContext { events: tx }).await })
        };
        tokio::task::yield_now().await;
        while net.state.lock().unwrap().events.is_none() {
            tokio::task::yield_now().await;
        }
        let alice = UserRef("alice@example.org".into());
        let bob = UserRef("bob@example.org".into());
        net.act(
            &alice,
            Action::Join {
                room: room(),
                nick: "alice".into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            net.act(
                &bob,
                Action::Join {
                    room: room(),
                    nick: "alice".into()
                }
            )
            .await,
            Err(BridgeError::Refused("nick alice is in use".into()))
        );
        net.act(
            &bob,
            Action::Join {
                room: room(),
                nick: "bob".into(),
            },
        )
        .await
        .unwrap();
        net.act(
            &alice,
            Action::Message {
                room: room(),
                body: "hi".into(),
                id: "m1".into(),
            },
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(rx.recv().await.unwrap());
        }
        let got_by: HashSet<_> = seen[2..]
            .iter()
            .map(|e| match e {
                Event::Message {
                    user, from, body, ..
                } => {
                    assert_eq!((from.as_str(), body.as_str()), ("alice", "hi"));
                    user.clone()
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got_by, HashSet::from([alice.clone(), bob.clone()]));
        net.act(
            &alice,
            Action::Part {
                room: room(),
                reason: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            net.members(&room()),
            HashSet::from([(bob, "bob".to_string())])
        );
        drop(rx);
        runner.await.unwrap().unwrap();
    }
}
