//! The cases of the conformance suite, one `pub async fn` each, in the order
//! [`network_conformance_tests!`](crate::network_conformance_tests) lists them. Each makes
//! its own network and rooms, so cases never see each other.

use super::{within, Harness, Running};
use crate::{Action, BridgeError, Departure, Event, JoinFailure, MessageKind, Peer, Refs};
use crate::{Member, Network, RoomRef, UserRef};

/// The nicks the two users join with: short enough for any IRC server's NICKLEN.
const NICKS: [&str; 2] = ["ann", "bob"];

fn join(room: &RoomRef, nick: &str) -> Action {
    Action::Join {
        room: room.clone(),
        nick: nick.into(),
        password: None,
    }
}

fn send(to: Peer, body: &str, kind: MessageKind, id: &str) -> Action {
    Action::Send {
        to,
        body: body.into(),
        kind,
        id: id.into(),
        refs: Refs::none(),
        media: None,
    }
}

fn nicks(members: &[Member]) -> Vec<&str> {
    members.iter().map(|m| m.nick.as_str()).collect()
}

/// `user` joins `room` as `nick`: the network's `Joined`, with its nick and members.
async fn joined<N: Network>(
    net: &mut Running<N>,
    user: &UserRef,
    room: &RoomRef,
    nick: &str,
) -> (String, Vec<Member>) {
    net.act(user, join(room, nick)).await;
    net.expect(&format!("{user} joins {room}"), |e| match e {
        Event::Joined {
            user: u,
            room: r,
            nick,
            members,
            ..
        } if u == user && r == room => Some((nick.clone(), members.clone())),
        Event::JoinFailed {
            user: u, room: r, ..
        } if u == user && r == room => {
            panic!("{user} could not join {room}: {e:?}")
        }
        _ => None,
    })
    .await
}

/// The first message `user` receives in `peer` with `body`.
async fn message<N: Network>(
    net: &mut Running<N>,
    user: &UserRef,
    peer: &Peer,
    body: &str,
) -> Event {
    net.expect(&format!("{user} gets {body:?} in {peer:?}"), |e| match e {
        Event::Message {
            user: u,
            peer: p,
            body: b,
            ..
        } if u == user && p == peer && b == body => Some(e.clone()),
        _ => None,
    })
    .await
}

/// A running network, a room, and the two users.
async fn started<H: Harness>(h: &H) -> (Running<H::Network>, RoomRef, [UserRef; 2]) {
    (Running::start(h.network().await), h.room().await, h.users())
}

/// A running network with both users in one room, the first having seen the second come;
/// and the members the second user's `Joined` listed.
async fn both_in<H: Harness>(h: &H) -> (Running<H::Network>, RoomRef, [UserRef; 2], Vec<Member>) {
    let (mut net, room, [a, b]) = started(h).await;
    joined(&mut net, &a, &room, NICKS[0]).await;
    let (_, members) = joined(&mut net, &b, &room, NICKS[1]).await;
    if h.capabilities().sees_puppets_join {
        net.expect("the first user sees the second join", |e| match e {
            Event::MemberJoined {
                user,
                room: r,
                member,
                ..
            } if *user == a && *r == room && member.nick == NICKS[1] => Some(()),
            _ => None,
        })
        .await;
    }
    (net, room, [a, b], members)
}

/// An action taken before `run` has started is held until it has, not lost or refused:
/// the core rejoins rooms at startup right after spawning `run`.
pub async fn actions_before_run_are_held<H: Harness>(h: &H) {
    let network = h.network().await;
    let room = h.room().await;
    let [a, _] = h.users();
    let early = {
        let (network, a, room) = (network.clone(), a.clone(), room.clone());
        tokio::spawn(async move { network.act(&a, join(&room, NICKS[0])).await })
    };
    // Let the action reach the network before `run` starts.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut net = Running::start(network);
    let accepted = within("the early join", early).await.expect("act panicked");
    assert_eq!(accepted, Ok(()), "an action before run is refused");
    net.expect("the early join is carried out", |e| match e {
        Event::Joined { user, room: r, .. } if *user == a && *r == room => Some(()),
        _ => None,
    })
    .await;
}

/// A join reports the puppet's nick and puts it among the members; nobody else hears of it.
pub async fn join_lists_the_puppet_among_the_members<H: Harness>(h: &H) {
    let (mut net, room, [a, b]) = started(h).await;
    let (nick, members) = joined(&mut net, &a, &room, NICKS[0]).await;
    assert_eq!(nick, NICKS[0], "the nick asked for is free");
    assert!(
        nicks(&members).contains(&NICKS[0]),
        "the puppet is not among the members: {members:?}"
    );
    net.refute("an event for a user who did nothing", |e| *e.user() == b)
        .await;
}

/// The second user's `Joined` lists both; the first sees the second as `MemberJoined`
/// (checked by `both_in`).
pub async fn a_second_join_is_seen_by_the_first<H: Harness>(h: &H) {
    let (_net, _room, _users, members) = both_in(h).await;
    for nick in NICKS {
        assert!(
            nicks(&members).contains(&nick),
            "{nick} missing: {members:?}"
        );
    }
}

/// A room message reaches the other member from the sender's nick, and comes back to the
/// sender marked with the id of its `Send`.
pub async fn a_room_message_reaches_the_others_and_is_reflected<H: Harness>(h: &H) {
    let (mut net, room, [a, b], _) = both_in(h).await;
    let to = Peer::Room(room);
    let body = "hello, conformance";
    net.act(&a, send(to.clone(), body, MessageKind::Normal, "m-1"))
        .await;
    let Event::Message {
        from, kind, own_id, ..
    } = message(&mut net, &b, &to, body).await
    else {
        unreachable!()
    };
    assert_eq!(
        (from.as_str(), kind, own_id),
        (NICKS[0], MessageKind::Normal, None)
    );
    let Event::Message { from, own_id, .. } = message(&mut net, &a, &to, body).await else {
        unreachable!()
    };
    assert_eq!((from.as_str(), own_id.as_deref()), (NICKS[0], Some("m-1")));
}

/// An action (`/me`) and a notice arrive as what they are.
pub async fn an_action_message_keeps_its_kind<H: Harness>(h: &H) {
    let (mut net, room, [a, b], _) = both_in(h).await;
    let to = Peer::Room(room);
    for (body, kind) in [("waves", MessageKind::Action), ("fyi", MessageKind::Notice)] {
        net.act(&a, send(to.clone(), body, kind, body)).await;
        let Event::Message { kind: got, .. } = message(&mut net, &b, &to, body).await else {
            unreachable!()
        };
        assert_eq!(got, kind, "{body:?}");
    }
}

/// A part is `Left` for the one who parts and `MemberLeft` for the others, with the reason;
/// the room's messages no longer reach the one who left.
pub async fn a_part_is_reported_to_both_sides<H: Harness>(h: &H) {
    let (mut net, room, [a, b], _) = both_in(h).await;
    let reason = Some("back later".to_owned());
    let part = Action::Part {
        room: room.clone(),
        reason: reason.clone(),
    };
    net.act(&a, part).await;
    // Exactly these: the departure and the reason are part of what the API promises.
    let reports = [
        Event::Left {
            user: a.clone(),
            room: room.clone(),
            departure: Departure::Part,
            reason: reason.clone(),
        },
        Event::MemberLeft {
            user: b.clone(),
            room: room.clone(),
            nick: NICKS[0].into(),
            departure: Departure::Part,
            reason,
        },
    ];
    for wanted in reports {
        net.expect(&format!("{wanted:?}"), |e| (*e == wanted).then_some(()))
            .await;
    }
    let to = Peer::Room(room);
    net.act(
        &b,
        send(to.clone(), "still here?", MessageKind::Normal, "m-2"),
    )
    .await;
    message(&mut net, &b, &to, "still here?").await;
    net.refute(
        "a message after the part",
        |e| matches!(e, Event::Message { user, peer, .. } if *user == a && *peer == to),
    )
    .await;
}

/// Joining under a nick someone has in the room fails with `NickInUse`; the room does not
/// see the second user come.
pub async fn a_taken_nick_fails_the_join<H: Harness>(h: &H) {
    let (mut net, room, [a, b]) = started(h).await;
    joined(&mut net, &a, &room, NICKS[0]).await;
    net.act(&b, join(&room, NICKS[0])).await;
    // `Some(failure)` for a failed join, `None` for one that succeeded.
    let failure = net
        .expect("the second join's outcome", |e| match e {
            Event::JoinFailed {
                user,
                room: r,
                failure,
                ..
            } if *user == b && *r == room => Some(Some(*failure)),
            Event::Joined { user, room: r, .. } if *user == b && *r == room => Some(None),
            _ => None,
        })
        .await;
    assert_eq!(
        failure,
        Some(JoinFailure::NickInUse),
        "a join under a taken nick"
    );
    net.refute(
        "the first user sees a member join",
        |e| matches!(e, Event::MemberJoined { user, .. } if *user == a),
    )
    .await;
}

/// An empty nick is malformed: `BridgeError::Invalid`, as its documentation says, and the
/// refused join reports nothing.
pub async fn an_empty_nick_is_invalid<H: Harness>(h: &H) {
    if !h.capabilities().refuses_empty_nick {
        return;
    }
    let (mut net, room, [a, _]) = started(h).await;
    let refused = net.try_act(&a, join(&room, "")).await;
    assert!(
        matches!(refused, Err(BridgeError::Invalid(_))),
        "a join with an empty nick: {refused:?}"
    );
    net.refute("an event after a refused join", |e| *e.user() == a)
        .await;
}

/// A message to a room the user is not in is refused (`NotFound`) or fails (`SendFailed`
/// with its id), and reaches nobody.
pub async fn a_message_to_a_room_not_joined_fails<H: Harness>(h: &H) {
    let mut net = Running::start(h.network().await);
    let (joined_room, other) = (h.room().await, h.room().await);
    let [a, b] = h.users();
    joined(&mut net, &a, &joined_room, NICKS[0]).await;
    joined(&mut net, &b, &other, NICKS[1]).await;
    let to = Peer::Room(other);
    let body = "not from a member";
    match net
        .try_act(&a, send(to.clone(), body, MessageKind::Normal, "m-3"))
        .await
    {
        Err(BridgeError::NotFound(_)) => {}
        Ok(()) => {
            let id = net
                .expect("SendFailed for the message", |e| match e {
                    Event::SendFailed { user, peer, id, .. } if *user == a && *peer == to => {
                        Some(id.clone())
                    }
                    _ => None,
                })
                .await;
            assert_eq!(id.as_deref(), Some("m-3"), "SendFailed names the message");
        }
        Err(e) => panic!("a message to a room not joined: {e:?}, not NotFound"),
    }
    net.refute(
        "the message is delivered",
        |e| matches!(e, Event::Message { body: got, .. } if got == body),
    )
    .await;
}

/// A subject change reaches every member, the one who made it included, naming who did.
pub async fn a_subject_change_reaches_everyone<H: Harness>(h: &H) {
    let (mut net, room, users, _) = both_in(h).await;
    let subject = "conformance subject";
    let set = Action::SetSubject {
        room: room.clone(),
        subject: subject.into(),
    };
    net.act(&users[0], set).await;
    for user in &users {
        let by = net
            .expect(&format!("{user} sees the subject"), |e| match e {
                Event::Subject {
                    user: u,
                    room: r,
                    subject: s,
                    by,
                } if u == user && *r == room && s == subject => Some(by.clone()),
                _ => None,
            })
            .await;
        assert_eq!(by.as_deref(), Some(NICKS[0]), "who set the subject");
    }
}

/// A private message reaches the user it is addressed to, from the sender's nick and marked
/// as coming from the sender.
pub async fn a_private_message_reaches_the_user<H: Harness>(h: &H) {
    if !h.capabilities().delivers_private_messages_between_puppets {
        return;
    }
    let (mut net, _room, [a, b], _) = both_in(h).await;
    let to = h.private_peer(&b, NICKS[1]);
    let body = "just between us";
    net.act(&a, send(to, body, MessageKind::Normal, "pm-1"))
        .await;
    let Event::Message { from, own_id, .. } =
        message(&mut net, &b, &h.private_peer(&a, NICKS[0]), body).await
    else {
        unreachable!()
    };
    assert_eq!((from.as_str(), own_id), (NICKS[0], None));
}

/// After the shutdown signal `run` returns `Ok` within a bound, and every action from then
/// on is refused with `ShutDown`.
pub async fn shutdown_ends_run_and_later_actions<H: Harness>(h: &H) {
    let (mut net, room, [a, b]) = started(h).await;
    joined(&mut net, &a, &room, NICKS[0]).await;
    assert_eq!(net.shut_down().await, Ok(()), "run's result at shutdown");
    let caps = h.capabilities();
    let later = [
        (caps.refuses_joins_after_shutdown, b, join(&room, NICKS[1])),
        (
            caps.refuses_actions_after_shutdown,
            a,
            send(Peer::Room(room), "too late", MessageKind::Normal, "m-4"),
        ),
    ];
    for (refuses, user, action) in later {
        if !refuses {
            continue;
        }
        let what = format!("{action:?}");
        let result = net.try_act(&user, action).await;
        assert_eq!(result, Err(BridgeError::ShutDown), "{what} after shutdown");
    }
}
