//! Room lists on the Matrix service's own JID, through the core with hand-written network
//! answers: a room holding rooms (a space) listed at a node, browsed there (disco#items
//! asks the network for its rooms, disco#info names it), and unknown nodes or spaces the
//! network cannot show answered with `item-not-found`, never silence.

use causeway_bridge::{Action, BridgeError, Event, ListedRoom, RoomRef, UserRef};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::{DiscoInfoResult, DiscoItemsResult};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza_error::DefinedCondition;
use tokio_xmpp::Stanza;

use super::super::muc::{Effects, Muc};
use super::super::stanzas::nc;
use super::accounts::GW;
use super::{AccessList, Gateway, NetworkKind, ALICE};
use crate::address::IrcAddressing;

const SPACE: &str = "#team%example.org";
const SPACE_NODE: &str = "space/#team%example.org";

fn gateway() -> Gateway {
    let muc = Muc::new(IrcAddressing::matrix(GW), true, 20);
    Gateway::new(
        NetworkKind::Matrix,
        GW.parse().unwrap(),
        AccessList::new(&["example.org".to_string()]),
        Some(muc),
    )
}

/// A disco query from alice to the service, at `node`.
fn query(namespace: &str, node: Option<&str>) -> Stanza {
    let mut query = Element::builder("query", namespace);
    if let Some(node) = node {
        query = query.attr(nc("node"), node);
    }
    super::get(GW, ALICE, query.build())
}

fn room(name: &str, members: u32, about: &str, holds_rooms: bool) -> ListedRoom {
    ListedRoom {
        name: name.into(),
        members,
        about: about.into(),
        holds_rooms,
    }
}

/// The network's answer to alice's list (of the service, or `within` a room).
fn listed(within: Option<RoomRef>, rooms: Result<Vec<ListedRoom>, BridgeError>) -> Event {
    Event::RoomList {
        user: UserRef("alice@example.org".into()),
        server: String::new(),
        within,
        rooms,
    }
}

fn space_ref() -> RoomRef {
    RoomRef {
        server: "example.org".into(),
        name: "#team".into(),
    }
}

/// The one iq of `effects`.
fn the_iq(effects: Effects) -> Iq {
    match <[Stanza; 1]>::try_from(effects.stanzas) {
        Ok([Stanza::Iq(iq)]) => iq,
        other => panic!("expected one iq: {other:?}"),
    }
}

fn items(effects: Effects) -> DiscoItemsResult {
    match the_iq(effects) {
        Iq::Result {
            payload: Some(payload),
            ..
        } => DiscoItemsResult::try_from(payload).unwrap(),
        other => panic!("expected items: {other:?}"),
    }
}

/// Each item's JID and node.
fn shown(items: &DiscoItemsResult) -> Vec<(String, Option<String>)> {
    let shown = items.items.iter();
    shown.map(|i| (i.jid.to_string(), i.node.clone())).collect()
}

/// The one list the network is asked for, of the service or `within` a room.
fn asked_for(effects: &Effects, within: Option<RoomRef>) {
    let actions: Vec<_> = effects.requests.iter().map(|r| &r.action).collect();
    let list = Action::ListRooms {
        server: String::new(),
        within,
    };
    assert_eq!(actions, [&list]);
}

fn condition(effects: Effects) -> DefinedCondition {
    match the_iq(effects) {
        Iq::Error { error, .. } => error.defined_condition,
        other => panic!("expected an error: {other:?}"),
    }
}

/// Alice's top-level list, as the network gives it: a room and a space.
fn listed_top_level(gateway: &mut Gateway) -> DiscoItemsResult {
    let effects = gateway.handle_stanza(query(ns::DISCO_ITEMS, None));
    asked_for(&effects, None);
    let rooms = vec![
        room("#plaza%example.org", 12, "Plaza: hello", false),
        room(SPACE, 3, "space: Team", true),
    ];
    items(gateway.handle_event(listed(None, Ok(rooms))))
}

#[test]
fn a_space_is_listed_at_a_node_of_the_service_and_browsed_there() {
    let mut gateway = gateway();
    let top = listed_top_level(&mut gateway);
    assert_eq!(
        shown(&top),
        [
            (format!("#plaza%example.org@{GW}"), None),
            (GW.to_owned(), Some(SPACE_NODE.to_owned())),
        ]
    );
    assert_eq!(
        top.items[1].name.as_deref(),
        Some("#team%example.org (3) – space: Team")
    );

    // disco#info on the node names it as a directory of chatrooms, as its list did.
    let info = match the_iq(gateway.handle_stanza(query(ns::DISCO_INFO, Some(SPACE_NODE)))) {
        Iq::Result {
            payload: Some(payload),
            ..
        } => DiscoInfoResult::try_from(payload).unwrap(),
        other => panic!("expected info: {other:?}"),
    };
    assert_eq!(info.node.as_deref(), Some(SPACE_NODE));
    let identity = &info.identities[0];
    assert_eq!(
        (identity.category.as_str(), identity.type_.as_str()),
        ("directory", "chatroom")
    );
    assert!(info.features.iter().any(|f| f == ns::DISCO_ITEMS));

    // disco#items on the node asks the network for the space's rooms; a sub-space among
    // them is a node again, the rooms are their own JIDs (sorted by name, as ever).
    let effects = gateway.handle_stanza(query(ns::DISCO_ITEMS, Some(SPACE_NODE)));
    assert!(effects.stanzas.is_empty());
    asked_for(&effects, Some(space_ref()));
    let children = vec![
        room("#dev%example.org", 2, "Dev", false),
        room("!sub%example.org", 1, "space: Sub", true),
    ];
    let inside = items(gateway.handle_event(listed(Some(space_ref()), Ok(children))));
    assert_eq!(
        inside.node.as_deref(),
        Some(SPACE_NODE),
        "the node is echoed"
    );
    assert_eq!(
        shown(&inside),
        [
            (GW.to_owned(), Some("space/!sub%example.org".to_owned())),
            (format!("#dev%example.org@{GW}"), None),
        ]
    );
}

#[test]
fn unknown_nodes_and_spaces_out_of_sight_are_item_not_found() {
    let mut gateway = gateway();
    // Not a space node at all: answered at once.
    let effects = gateway.handle_stanza(query(ns::DISCO_ITEMS, Some("nonsense")));
    assert!(effects.requests.is_empty());
    assert_eq!(condition(effects), DefinedCondition::ItemNotFound);
    // A space never listed to her has no info.
    let effects = gateway.handle_stanza(query(ns::DISCO_INFO, Some(SPACE_NODE)));
    assert_eq!(condition(effects), DefinedCondition::ItemNotFound);
    // A space the network cannot show her.
    let effects = gateway.handle_stanza(query(ns::DISCO_ITEMS, Some(SPACE_NODE)));
    assert_eq!(effects.requests.len(), 1);
    let refused = Err(BridgeError::NotFound("M_FORBIDDEN (403): not yours".into()));
    let effects = gateway.handle_event(listed(Some(space_ref()), refused));
    assert_eq!(condition(effects), DefinedCondition::ItemNotFound);
    // A network that cannot list at all says so the same way for a space.
    let effects = gateway.handle_stanza(query(ns::DISCO_ITEMS, Some(SPACE_NODE)));
    let request = effects.requests.into_iter().next().unwrap();
    let failed = gateway.request_failed(request.on_error, &BridgeError::NotFound("no".into()));
    let effects = Effects {
        stanzas: failed,
        ..Default::default()
    };
    assert_eq!(condition(effects), DefinedCondition::ItemNotFound);
}
