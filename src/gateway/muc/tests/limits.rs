//! What one user may join: past the rooms or servers the gateway allows, a join is refused
//! with a text that says why and nothing is asked of the network.

use super::*;
use crate::gateway::limits::RoomLimits;

fn join_room(muc: &mut Muc, who: &str, room: &str) -> Effects {
    let from: FullJid = format!("{who}@example.org/laptop").parse().unwrap();
    let to: Jid = format!("{room}/{who}").parse().unwrap();
    let address = muc.addressing().parse(&to).unwrap();
    muc.handle_presence(Presence::available(), from, to, address)
}

/// The error a join got, if it was refused.
fn refusal(fx: &Effects) -> Option<StanzaError> {
    fx.stanzas.iter().find_map(|s| match s {
        Stanza::Presence(p) if p.type_ == PresenceType::Error => p
            .payloads
            .iter()
            .find_map(|e| StanzaError::try_from(e.clone()).ok()),
        _ => None,
    })
}

fn text(error: &StanzaError) -> &str {
    error.texts.values().next().map_or("", String::as_str)
}

#[test]
fn joins_past_a_users_rooms_or_servers_are_refused_with_the_reason() {
    let mut muc = muc().with_limits(RoomLimits {
        rooms: 3,
        servers: 2,
    });
    for room in [
        "#a%one.net@irc.gw",
        "#b%one.net@irc.gw",
        "#c%two.net@irc.gw",
    ] {
        let fx = join_room(&mut muc, "alice", room);
        assert_eq!((fx.requests.len(), refusal(&fx)), (1, None), "{room}");
    }

    let fx = join_room(&mut muc, "alice", "#d%one.net@irc.gw");
    let error = refusal(&fx).expect("a fourth room is refused");
    assert!(fx.requests.is_empty(), "nothing is asked of the network");
    assert_eq!(error.defined_condition, DefinedCondition::PolicyViolation);
    assert!(text(&error).contains("in 3 rooms"), "{}", text(&error));

    // A room she is in already is no new room; bob has limits of his own.
    assert_eq!(
        refusal(&join_room(&mut muc, "alice", "#a%one.net@irc.gw")),
        None
    );
    assert_eq!(
        join_room(&mut muc, "bob", "#d%one.net@irc.gw")
            .requests
            .len(),
        1
    );

    // More rooms allowed (a reload), but not a third server.
    muc.set_limits(RoomLimits {
        rooms: 10,
        servers: 2,
    });
    assert_eq!(
        join_room(&mut muc, "alice", "#d%one.net@irc.gw")
            .requests
            .len(),
        1
    );
    let fx = join_room(&mut muc, "alice", "#x%three.net@irc.gw");
    let error = refusal(&fx).expect("a third server is refused");
    assert!(text(&error).contains("on 2 servers"), "{}", text(&error));
    assert!(fx.requests.is_empty());
}
