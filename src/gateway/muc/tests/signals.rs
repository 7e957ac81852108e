//! Typing and read markers from the network: body-less messages from the occupant (never
//! from the user's own puppet), kept out of archives.

use super::*;
use crate::gateway::muc::signals::{CHAT_MARKERS, CHAT_STATES};

#[test]
fn typing_and_markers_come_from_the_occupant_and_are_not_stored() {
    let mut gw = muc();
    let laptop = resource("laptop");
    join_presence(&mut gw, &laptop, "alice");
    gw.handle_event(joined(
        "alice",
        &[("alice", Privilege::None), ("bob", Privilege::None)],
        "",
    ));
    let fx = gw.handle_event(Event::Typing {
        user: user(),
        peer: Peer::Room(room()),
        from: "bob".into(),
        typing: true,
    });
    let [Stanza::Message(m)] = &fx.stanzas[..] else {
        panic!("{:?}", fx.stanzas)
    };
    assert_eq!(m.from, Some(format!("{ROOM}/bob").parse().unwrap()));
    assert_eq!(m.type_, MessageType::Groupchat);
    assert!(m.bodies.is_empty());
    assert!(m.payloads.iter().any(|p| p.is("composing", CHAT_STATES)));
    assert!(m
        .payloads
        .iter()
        .any(|p| p.is("no-store", "urn:xmpp:hints")));
    assert!(fx.archive.is_empty());

    let fx = gw.handle_event(Event::Displayed {
        user: user(),
        peer: Peer::Room(room()),
        from: "bob".into(),
        id: "$e".into(),
    });
    let [Stanza::Message(m)] = &fx.stanzas[..] else {
        panic!("{:?}", fx.stanzas)
    };
    let marker = m.payloads.iter().find(|p| p.is("displayed", CHAT_MARKERS));
    assert_eq!(marker.and_then(|p| p.attr("id")), Some("$e"));

    // The user's own puppet reading or typing is nothing new to their clients.
    let fx = gw.handle_event(Event::Typing {
        user: user(),
        peer: Peer::Room(room()),
        from: "Alice".into(),
        typing: true,
    });
    assert!(fx.stanzas.is_empty(), "{:?}", fx.stanzas);
}
