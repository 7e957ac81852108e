//! The MUC logic on synthetic stanzas and events: no server needed.

use super::*;
use causeway_bridge::{Departure, JoinFailure, MessageKind, Privilege};
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::muc::user::Status;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, StanzaError};

use crate::gateway::stanzas::nc;
use tokio_xmpp::parsers::muc::user::MucUser;

const ROOM: &str = "#rust%irc.example.net@irc.gw";

fn muc() -> Muc {
    Muc::new(IrcAddressing::new("irc.gw", None), true, 20)
}

fn room() -> RoomRef {
    RoomRef {
        server: "irc.example.net".into(),
        name: "#rust".into(),
    }
}

fn resource(r: &str) -> FullJid {
    format!("alice@example.org/{r}").parse().unwrap()
}

fn user() -> UserRef {
    UserRef("alice@example.org".into())
}

fn join_presence(muc: &mut Muc, from: &FullJid, nick: &str) -> Effects {
    let to: Jid = format!("{ROOM}/{nick}").parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    muc.handle_presence(Presence::available(), from.clone(), to, address)
}

/// `from` joins as alice, and the network has her in, alone.
fn join_alone(muc: &mut Muc, from: &FullJid) {
    join_presence(muc, from, "alice");
    muc.handle_event(joined("alice", &[("alice", Privilege::None)], ""));
}

fn leave_presence(muc: &mut Muc, from: &FullJid, nick: &str) -> Effects {
    let to: Jid = format!("{ROOM}/{nick}").parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    muc.handle_presence(Presence::unavailable(), from.clone(), to, address)
}

fn joined(nick: &str, members: &[(&str, Privilege)], subject: &str) -> Event {
    Event::Joined {
        user: user(),
        room: room(),
        nick: nick.into(),
        members: members.iter().map(|(n, p)| Member::named(*n, *p)).collect(),
        subject: subject.into(),
    }
}

fn left(departure: Departure, reason: Option<&str>) -> Event {
    Event::Left {
        user: user(),
        room: room(),
        departure,
        reason: reason.map(str::to_owned),
    }
}

/// (from, statuses) of the presences, in order; statuses empty for non-MUC presences.
fn presences(stanzas: &[Stanza]) -> Vec<(String, Vec<Status>, PresenceType)> {
    stanzas
        .iter()
        .filter_map(|s| match s {
            Stanza::Presence(p) => {
                let statuses = p
                    .payloads
                    .iter()
                    .find_map(|e| MucUser::try_from(e.clone()).ok())
                    .map(|u| u.status)
                    .unwrap_or_default();
                Some((
                    p.from.as_ref().unwrap().to_string(),
                    statuses,
                    p.type_.clone(),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn join_sequence_is_occupants_then_self_then_subject() {
    let mut muc = muc();
    let phone = resource("phone");
    let fx = join_presence(&mut muc, &phone, "alice");
    assert!(fx.stanzas.is_empty());
    assert!(
        matches!(&fx.requests[..], [Request { action: Action::Join { nick, .. }, .. }] if nick == "alice")
    );

    // The server gave another nick: 210 with the 110.
    let fx = muc.handle_event(joined(
        "alice_",
        &[("alice_", Privilege::None), ("bob", Privilege::Op)],
        "",
    ));
    let seen = presences(&fx.stanzas);
    assert_eq!(seen[0].0, format!("{ROOM}/bob"));
    assert_eq!(seen[1].0, format!("{ROOM}/alice_"));
    assert!(seen[1].1.contains(&Status::SelfPresence) && seen[1].1.contains(&Status::AssignedNick));
    match fx.stanzas.last() {
        Some(Stanza::Message(m)) => {
            assert_eq!(m.subjects.values().next().map(String::as_str), Some(""))
        }
        other => panic!("no subject last: {other:?}"),
    }
}

#[test]
fn a_second_resource_gets_the_state_without_a_new_join() {
    let mut muc = muc();
    let (phone, laptop) = (resource("phone"), resource("laptop"));
    join_presence(&mut muc, &phone, "alice");
    muc.handle_event(joined(
        "alice",
        &[("alice", Privilege::None), ("bob", Privilege::Voice)],
        "topic",
    ));
    let fx = join_presence(&mut muc, &laptop, "alice");
    assert!(fx.requests.is_empty(), "{:?}", fx.requests);
    let seen = presences(&fx.stanzas);
    assert_eq!(seen.len(), 2);
    assert!(fx.stanzas.iter().all(|s| match s {
        Stanza::Presence(p) => p.to == Some(laptop.clone().into()),
        Stanza::Message(m) => m.to == Some(laptop.clone().into()),
        _ => false,
    }));
    // Messages now reach both.
    let fx = muc.handle_event(Event::Message {
        user: user(),
        peer: Peer::Room(room()),
        from: "bob".into(),
        body: "hi".into(),
        kind: MessageKind::Normal,
        time: None,
        own_id: None,
        remote_id: None,
        refs: causeway_bridge::Refs::none(),
        media: None,
    });
    assert_eq!(fx.stanzas.len(), 2);
}

#[test]
fn the_last_resource_leaving_parts_the_channel() {
    let mut muc = muc();
    let (phone, laptop) = (resource("phone"), resource("laptop"));
    join_alone(&mut muc, &phone);
    join_presence(&mut muc, &laptop, "alice");
    let fx = leave_presence(&mut muc, &phone, "alice");
    assert!(fx.requests.is_empty());
    assert_eq!(presences(&fx.stanzas)[0].2, PresenceType::Unavailable);
    let fx = leave_presence(&mut muc, &laptop, "alice");
    assert!(matches!(
        &fx.requests[..],
        [Request {
            action: Action::Part { .. },
            ..
        }]
    ));
}

#[test]
fn join_failures_map_to_muc_errors() {
    for (failure, condition) in [
        (JoinFailure::NickInUse, DefinedCondition::Conflict),
        (
            JoinFailure::InviteOnly,
            DefinedCondition::RegistrationRequired,
        ),
        (JoinFailure::Banned, DefinedCondition::Forbidden),
        (JoinFailure::BadKey, DefinedCondition::NotAuthorized),
        (JoinFailure::Full, DefinedCondition::ServiceUnavailable),
        (JoinFailure::NoSuchRoom, DefinedCondition::ItemNotFound),
    ] {
        let mut muc = muc();
        join_presence(&mut muc, &resource("phone"), "alice");
        let fx = muc.handle_event(Event::JoinFailed {
            user: user(),
            room: room(),
            failure,
            text: "no".into(),
        });
        let Some(Stanza::Presence(p)) = fx.stanzas.first() else {
            panic!("no error for {failure:?}")
        };
        let error = p
            .payloads
            .iter()
            .find_map(|e| StanzaError::try_from(e.clone()).ok())
            .unwrap();
        assert_eq!(error.defined_condition, condition, "{failure:?}");
        // The state is gone: a new join asks the network again.
        assert_eq!(
            join_presence(&mut muc, &resource("phone"), "alice")
                .requests
                .len(),
            1
        );
    }
}

#[test]
fn messages_need_a_joined_resource_and_reflections_keep_origin_id() {
    let mut muc = muc();
    let phone = resource("phone");
    let to: Jid = ROOM.parse().unwrap();
    let mut msg = Message::groupchat(Some(to.clone()));
    msg.id = Some(tokio_xmpp::parsers::message::Id("m1".into()));
    msg.bodies.insert(Default::default(), "hello".into());
    msg.payloads.push(
        tokio_xmpp::parsers::stanza_id::OriginId {
            id: "origin-1".into(),
        }
        .into(),
    );
    let address = muc.addressing().parse(&to).unwrap();
    let fx = muc.handle_message(msg.clone(), phone.clone(), to.clone(), address.clone());
    assert!(matches!(&fx.stanzas[..], [Stanza::Message(m)] if m.type_ == MessageType::Error));

    join_alone(&mut muc, &phone);
    let fx = muc.handle_message(msg, phone.clone(), to, address);
    let Some(Request {
        action: Action::Send { id, body, .. },
        ..
    }) = fx.requests.first()
    else {
        panic!("{:?}", fx.requests)
    };
    assert_eq!((id.as_str(), body.as_str()), ("m1", "hello"));
    let fx = muc.handle_event(Event::Message {
        user: user(),
        peer: Peer::Room(room()),
        from: "alice".into(),
        body: "hello".into(),
        kind: MessageKind::Normal,
        time: None,
        own_id: Some("m1".into()),
        remote_id: None,
        refs: causeway_bridge::Refs::none(),
        media: None,
    });
    let Some(Stanza::Message(reflected)) = fx.stanzas.first() else {
        panic!()
    };
    assert_eq!(reflected.id.as_ref().unwrap().0, "m1");
    assert!(reflected
        .payloads
        .iter()
        .any(|p| p.is("origin-id", ns::SID) && p.attr("id") == Some("origin-1")));
}

#[test]
fn being_kicked_is_307_with_110() {
    let mut muc = muc();
    let phone = resource("phone");
    join_alone(&mut muc, &phone);
    let fx = muc.handle_event(left(Departure::Kick { by: "bob".into() }, Some("spam")));
    let seen = presences(&fx.stanzas);
    assert_eq!(seen[0].2, PresenceType::Unavailable);
    assert!(seen[0].1.contains(&Status::Kicked) && seen[0].1.contains(&Status::SelfPresence));
}

#[test]
fn the_echo_of_a_part_leaves_a_join_made_since_alone() {
    let mut muc = muc();
    let phone = resource("phone");
    join_alone(&mut muc, &phone);
    let fx = leave_presence(&mut muc, &phone, "alice");
    assert!(fx
        .requests
        .iter()
        .any(|r| matches!(r.action, Action::Part { .. })));
    // Back in before the network's answer to the PART: a new join goes out.
    let fx = join_presence(&mut muc, &phone, "alice");
    assert!(fx
        .requests
        .iter()
        .any(|r| matches!(r.action, Action::Join { .. })));
    // The PART's echo comes first; the join in progress stands.
    let fx = muc.handle_event(left(Departure::Part, None));
    assert!(fx.stanzas.is_empty() && fx.requests.is_empty(), "{fx:?}");
    let fx = muc.handle_event(joined("alice", &[("alice", Privilege::None)], ""));
    assert!(fx.requests.is_empty(), "joined, not parted again: {fx:?}");
    let seen = presences(&fx.stanzas);
    assert!(seen.iter().any(
        |(_, statuses, t)| statuses.contains(&Status::SelfPresence) && *t == PresenceType::None
    ));
    // Later departures are the network's again: a kick is told.
    let fx = muc.handle_event(left(Departure::Kick { by: "bob".into() }, None));
    assert!(presences(&fx.stanzas)
        .iter()
        .any(|(_, statuses, _)| statuses.contains(&Status::Kicked)));
}

#[test]
fn a_rejoin_tells_only_what_changed() {
    let mut muc = muc();
    let phone = resource("phone");
    join_presence(&mut muc, &phone, "alice");
    muc.handle_event(joined(
        "alice",
        &[
            ("alice", Privilege::None),
            ("bob", Privilege::None),
            ("carol", Privilege::None),
        ],
        "t",
    ));
    let fx = muc.handle_event(joined(
        "alice",
        &[
            ("alice", Privilege::None),
            ("bob", Privilege::None),
            ("dave", Privilege::None),
        ],
        "t",
    ));
    let seen = presences(&fx.stanzas);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.contains(&(format!("{ROOM}/carol"), vec![], PresenceType::Unavailable)));
    assert!(seen.contains(&(format!("{ROOM}/dave"), vec![], PresenceType::None)));
    assert!(
        !fx.stanzas.iter().any(|s| matches!(s, Stanza::Message(_))),
        "subject unchanged, not resent"
    );
}

#[test]
fn self_ping_tells_whether_the_resource_is_joined() {
    let mut muc = muc();
    let (phone, laptop) = (resource("phone"), resource("laptop"));
    let ping = |muc: &mut Muc, from: &FullJid| {
        let to: Jid = format!("{ROOM}/alice").parse().unwrap();
        let address = muc.addressing().parse(&to).unwrap();
        muc.handle_iq(
            from.clone(),
            address,
            tokio_xmpp::parsers::ping::Ping.into(),
            true,
        )
    };
    assert_eq!(
        ping(&mut muc, &phone).unwrap_err().defined_condition,
        DefinedCondition::NotAcceptable
    );
    join_presence(&mut muc, &phone, "alice");
    // Joining, not joined yet.
    assert!(ping(&mut muc, &phone).is_err());
    muc.handle_event(joined("alice", &[("alice", Privilege::None)], ""));
    assert!(ping(&mut muc, &phone).is_ok());
    assert!(
        ping(&mut muc, &laptop).is_err(),
        "another resource of the same user is not joined"
    );
}

#[test]
fn join_history_goes_before_the_subject_with_the_asked_limits() {
    let mut muc = muc();
    let phone = resource("phone");
    let to: Jid = format!("{ROOM}/alice").parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    let mut presence = Presence::available();
    presence.payloads.push(
        Element::builder("x", ns::MUC)
            .append(
                Element::builder("history", ns::MUC)
                    .attr(nc("maxstanzas"), "5")
                    .build(),
            )
            .build(),
    );
    muc.handle_presence(presence, phone.clone(), to, address);
    let fx = muc.handle_event(joined("alice", &[("alice", Privilege::None)], "subject"));
    let [request] = &fx.history[..] else {
        panic!("{:?}", fx.history)
    };
    assert_eq!(request.query.max, 5);
    assert!(request.query.newest);
    assert!(
        matches!(fx.stanzas[request.position], Stanza::Message(ref m) if !m.subjects.is_empty())
    );
    // Without <history/>, the configured default.
    let fx = join_presence(&mut muc, &resource("laptop"), "alice");
    assert_eq!(fx.history[0].query.max, 20);
}

#[test]
fn a_persistent_channel_keeps_the_puppet_when_the_last_resource_leaves() {
    let mut muc = muc();
    let phone = resource("phone");
    join_alone(&mut muc, &phone);
    muc.set_channel_settings(&phone.to_bare(), &room(), true, true);
    let fx = leave_presence(&mut muc, &phone, "alice");
    assert!(
        fx.requests.is_empty(),
        "parted a persistent channel: {:?}",
        fx.requests
    );
    // Still recording with nobody there.
    let fx = muc.handle_event(Event::Message {
        user: user(),
        peer: Peer::Room(room()),
        from: "bob".into(),
        body: "anyone?".into(),
        kind: MessageKind::Normal,
        time: None,
        own_id: None,
        remote_id: None,
        refs: causeway_bridge::Refs::none(),
        media: None,
    });
    assert_eq!(fx.archive.len(), 1);
    assert!(fx.stanzas.is_empty());
    // Coming back needs no new join.
    let fx = join_presence(&mut muc, &phone, "alice");
    assert!(fx.requests.is_empty());
    assert!(!fx.stanzas.is_empty());
}

/// The rooms the effects leave.
fn parted_rooms(fx: &Effects) -> Vec<&RoomRef> {
    fx.requests
        .iter()
        .filter_map(|r| match &r.action {
            Action::Part { room, .. } => Some(room),
            _ => None,
        })
        .collect()
}

#[test]
fn a_channel_a_client_joins_before_the_keeper_reports_it_is_not_forgotten() {
    let mut muc = muc();
    let alice = resource("phone").to_bare();
    muc.expect_kept(&alice, &room());
    // The client comes back before the network reports the channel (or the keeper did not
    // keep it, and the join goes to IRC).
    join_presence(&mut muc, &resource("laptop"), "alice");
    muc.handle_event(joined("alice", &[("alice", Privilege::None)], ""));
    let (fx, not_kept) = muc.release_unclaimed();
    assert!(parted_rooms(&fx).is_empty(), "{:?}", fx.requests);
    assert!(not_kept.is_empty(), "forgotten while in it: {not_kept:?}");
    // Before the network reports it at all: not forgotten either.
    let mut muc = self::muc();
    muc.expect_kept(&alice, &room());
    join_presence(&mut muc, &resource("laptop"), "alice");
    let (_, not_kept) = muc.release_unclaimed();
    assert!(not_kept.is_empty(), "forgotten while joining: {not_kept:?}");
}

#[test]
fn channels_kept_across_a_restart_are_taken_over_wait_for_a_client_then_go_unless_persistent() {
    let mut muc = muc();
    let alice = resource("phone").to_bare();
    let room_in = |name: &str| RoomRef {
        server: room().server,
        name: name.into(),
    };
    // At startup: the persistent channel is joined again; the others are only expected
    // from the keeper — nothing is asked of IRC for them.
    let fx = muc.rejoin(&alice, room_in("#persistent"), "alice".into(), true);
    assert_eq!(fx.requests.len(), 1);
    for name in ["#rust", "#left", "#gone"] {
        muc.expect_kept(&alice, &room_in(name));
    }
    // The keeper kept two of them: reported joined, they are taken over, not left again.
    for name in ["#rust", "#left"] {
        let fx = muc.handle_event(Event::Joined {
            user: user(),
            room: room_in(name),
            nick: "alice".into(),
            members: Vec::new(),
            subject: String::new(),
        });
        assert!(fx.requests.is_empty(), "{name}: {:?}", fx.requests);
    }
    // A client came back to one of them.
    let laptop = resource("laptop");
    join_presence(&mut muc, &laptop, "alice");
    // The grace is over: the kept channel no client came back to is left; the one the
    // keeper did not keep is forgotten (nothing to leave on IRC); the others stay.
    let (fx, not_kept) = muc.release_unclaimed();
    assert_eq!(parted_rooms(&fx), [&room_in("#left")]);
    assert_eq!(not_kept, [(alice.clone(), room_in("#gone"))]);
    // Expected no longer: reported joined now, it is a join nobody waits for.
    let fx = muc.handle_event(Event::Joined {
        user: user(),
        room: room_in("#gone"),
        nick: "alice".into(),
        members: Vec::new(),
        subject: String::new(),
    });
    assert_eq!(parted_rooms(&fx), [&room_in("#gone")]);
    let (fx, not_kept) = muc.release_unclaimed();
    assert!(fx.requests.is_empty() && not_kept.is_empty());
}

#[test]
fn a_channel_not_recorded_gets_stanza_ids_but_no_archive() {
    let mut muc = muc();
    let phone = resource("phone");
    join_alone(&mut muc, &phone);
    muc.set_channel_settings(&phone.to_bare(), &room(), false, false);
    let fx = muc.handle_event(Event::Message {
        user: user(),
        peer: Peer::Room(room()),
        from: "bob".into(),
        body: "off the record".into(),
        kind: MessageKind::Normal,
        time: None,
        own_id: None,
        remote_id: None,
        refs: causeway_bridge::Refs::none(),
        media: None,
    });
    assert!(fx.archive.is_empty());
    assert_eq!(fx.stanzas.len(), 1);
}

mod limits;
mod occupant_ids;
mod pictures;
mod signals;
mod with_fake_network;
