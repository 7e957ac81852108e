//! XEP-0421: every presence and groupchat message from an occupant carries its occupant-id,
//! the same under a new nick, made from who the network says the member is.

use super::*;
use crate::gateway::occupant_id::{OccupantIds, NS};

/// The occupant-id on a stanza, if any.
fn occupant_id(stanza: &Stanza) -> Option<String> {
    let payloads = match stanza {
        Stanza::Presence(p) => &p.payloads,
        Stanza::Message(m) => &m.payloads,
        Stanza::Iq(_) => return None,
    };
    let ids: Vec<_> = payloads
        .iter()
        .filter(|e| e.is("occupant-id", NS))
        .collect();
    assert!(ids.len() <= 1, "one occupant-id at most: {stanza:?}");
    ids.first().and_then(|e| e.attr("id")).map(str::to_owned)
}

fn from_resource(stanza: &Stanza) -> Option<String> {
    let from = match stanza {
        Stanza::Presence(p) => p.from.as_ref(),
        Stanza::Message(m) => m.from.as_ref(),
        Stanza::Iq(_) => None,
    };
    from.and_then(|f| f.resource()).map(|r| r.to_string())
}

fn said(from: &str) -> Event {
    Event::Message {
        user: user(),
        peer: Peer::Room(room()),
        from: from.into(),
        body: "hi".into(),
        kind: MessageKind::Normal,
        time: None,
        own_id: None,
        remote_id: None,
        refs: causeway_bridge::Refs::none(),
        media: None,
    }
}

#[test]
fn occupants_keep_their_id_across_nick_changes_and_speakers_carry_it() {
    let ids = OccupantIds::new(b"install secret");
    let mut gw = muc().with_occupant_ids(ids.clone());
    let laptop = resource("laptop");
    join_presence(&mut gw, &laptop, "alice");
    let bob = Member {
        nick: "bob".into(),
        privilege: Privilege::None,
        id: Some("~b@host".into()),
        picture: None,
    };
    let fx = gw.handle_event(Event::Joined {
        user: user(),
        room: room(),
        nick: "alice".into(),
        members: vec![Member::named("alice", Privilege::None), bob],
        subject: String::new(),
    });
    let bobs = ids.of(&room(), Some("~b@host"), "bob");
    let alices = ids.of(&room(), None, "alice");
    let seen: Vec<_> = fx
        .stanzas
        .iter()
        .filter(|s| matches!(s, Stanza::Presence(_)))
        .map(|s| (from_resource(s), occupant_id(s)))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("bob".into()), Some(bobs.clone())),
            (Some("alice".into()), Some(alices.clone()))
        ]
    );
    // The subject comes from the room: no occupant's id.
    let subject = fx.stanzas.last().unwrap();
    assert_eq!(occupant_id(subject), None);

    let fx = gw.handle_event(Event::NickChanged {
        user: user(),
        rooms: vec![room()],
        old: "bob".into(),
        new: "robert".into(),
    });
    let seen: Vec<_> = fx.stanzas.iter().map(occupant_id).collect();
    assert_eq!(seen, [Some(bobs.clone()), Some(bobs.clone())]);

    let fx = gw.handle_event(said("robert"));
    assert_eq!(occupant_id(&fx.stanzas[0]), Some(bobs.clone()));
    // Someone the room does not list (an IRC user speaking from outside): an id of the nick.
    let fx = gw.handle_event(said("carol"));
    assert_eq!(
        occupant_id(&fx.stanzas[0]),
        Some(ids.of(&room(), None, "carol"))
    );

    // A newcomer the network knows by account; their departure carries the same id.
    let fx = gw.handle_event(Event::MemberJoined {
        user: user(),
        room: room(),
        member: Member {
            nick: "dave".into(),
            privilege: Privilege::Voice,
            id: Some("account:dave".into()),
            picture: None,
        },
    });
    let daves = ids.of(&room(), Some("account:dave"), "dave");
    assert_eq!(occupant_id(&fx.stanzas[0]), Some(daves.clone()));
    let fx = gw.handle_event(Event::MemberLeft {
        user: user(),
        room: room(),
        nick: "dave".into(),
        departure: Departure::Part,
        reason: None,
    });
    assert_eq!(occupant_id(&fx.stanzas[0]), Some(daves));

    // Two who look the same to the network (one host and ident) get ids of their own.
    let twin = |nick: &str| Member {
        nick: nick.into(),
        privilege: Privilege::None,
        id: Some("~u@gateway.host".into()),
        picture: None,
    };
    let mut ids_seen = Vec::new();
    for nick in ["twin1", "twin2"] {
        let fx = gw.handle_event(Event::MemberJoined {
            user: user(),
            room: room(),
            member: twin(nick),
        });
        ids_seen.push(occupant_id(&fx.stanzas[0]).unwrap());
    }
    assert_ne!(ids_seen[0], ids_seen[1]);

    // The same install makes the same ids after a restart; another install others.
    let mut again = muc().with_occupant_ids(OccupantIds::new(b"install secret"));
    join_presence(&mut again, &laptop, "alice");
    let fx = again.handle_event(joined("alice", &[("alice", Privilege::None)], ""));
    assert_eq!(occupant_id(&fx.stanzas[0]), Some(alices.clone()));
    let mut other = muc();
    join_presence(&mut other, &laptop, "alice");
    let fx = other.handle_event(joined("alice", &[("alice", Privilege::None)], ""));
    assert_ne!(occupant_id(&fx.stanzas[0]), Some(alices));
}
