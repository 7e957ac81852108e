//! Matrix spaces through a personal login on a real Synapse: the Matrix service lists a
//! space the user is in at a disco node of its own JID, disco#items at that node lists the
//! space's rooms (those the user is in and those they are not, sub-spaces at nodes again)
//! at the addresses that join them, and a node that is no space the user can see is
//! `item-not-found`.

use serde_json::{json, Value};
use xmpp_client::minidom::Element;
use xmpp_client::parsers::stanza_error::DefinedCondition;
use xmpp_client::IqResponse;

use super::login::nc;
use super::{log_in, register_carol, room_jid, WAIT};
use crate::harness::muc::enter;
use crate::harness::scene::{MatrixSide, Scene, GW, HS};
use crate::harness::TestClient;

/// An item of a disco#items answer: its JID, node and name.
type Item = (String, Option<String>, String);

/// disco#items on the Matrix service, at `node`.
async fn items(client: &mut TestClient, node: Option<&str>) -> IqResponse {
    let mut query = Element::builder("query", "http://jabber.org/protocol/disco#items");
    if let Some(node) = node {
        query = query.attr(nc("node"), node);
    }
    client.get(GW, query.build()).await
}

/// The items at `node`, which must be listed, and the node the answer names.
async fn listed(client: &mut TestClient, node: Option<&str>) -> (Vec<Item>, Option<String>) {
    let IqResponse::Result(Some(answer)) = items(client, node).await else {
        panic!("no list at {node:?}")
    };
    let attr = |e: &Element, name: &str| e.attr(name).map(str::to_owned);
    let items = answer
        .children()
        .map(|i| {
            (
                attr(i, "jid").unwrap(),
                attr(i, "node"),
                attr(i, "name").unwrap(),
            )
        })
        .collect();
    (items, attr(&answer, "node"))
}

/// The item at `jid` (and `node`), which must be there.
fn item<'a>(items: &'a [Item], jid: &str, node: Option<&str>) -> &'a Item {
    items
        .iter()
        .find(|(j, n, _)| j == jid && n.as_deref() == node)
        .unwrap_or_else(|| panic!("{jid} {node:?} is not listed: {items:?}"))
}

/// A room made by bob with an alias `#alias:HS`, public, with a name and topic, and
/// `extra` keys of `/createRoom` (a space's creation content).
async fn bobs_room(scene: &Scene<MatrixSide>, alias: &str, name: &str, extra: Value) -> String {
    let mut options = json!({
        "room_alias_name": alias, "name": name, "topic": format!("about {name}"),
        "preset": "public_chat",
    });
    options
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    scene.bob.create_room(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_is_browsed_at_its_node_and_its_rooms_joined_from_there() {
    let scene = Scene::matrix().await;
    let (phone, carol) = register_carol(&scene).await;

    // Bob's space holds two rooms and a sub-space; carol is in the space and one room.
    let space_kind = json!({"creation_content": {"type": "m.space"}});
    let space = bobs_room(&scene, "team", "Team", space_kind.clone()).await;
    let inside = bobs_room(&scene, "inside", "Inside", json!({})).await;
    let outside = bobs_room(&scene, "outside", "Outside", json!({})).await;
    let sub = bobs_room(&scene, "subteam", "Subteam", space_kind).await;
    for child in [&inside, &outside, &sub] {
        let via = json!({"via": [HS]});
        scene
            .bob
            .set_state(&space, "m.space.child", child, via)
            .await;
    }
    phone.join(&space).await;
    phone.join(&inside).await;
    let mut alice = scene.xmpp_user("alice").await;
    let (kind, text) = log_in(&scene, &mut alice, &carol, "carol-password").await;
    assert_eq!(kind, "info", "{text}");

    // Her rooms: the space at a node of the service's JID, the room at its address.
    let (top, _) = listed(&mut alice, None).await;
    let node = format!("space/#team%{HS}");
    let (_, _, name) = item(&top, GW, Some(&node));
    assert!(name.contains("space: Team: about Team"), "{name}");
    item(&top, &room_jid("inside"), None);

    // At the node: every room of the space, whether she is in it or not, with its name,
    // topic and member count; the sub-space at a node again.
    let (children, echoed) = listed(&mut alice, Some(&node)).await;
    assert_eq!(echoed.as_deref(), Some(node.as_str()));
    assert_eq!(children.len(), 3, "{children:?}");
    let (_, _, name) = item(&children, &room_jid("inside"), None);
    assert!(name.contains("(2) – Inside: about Inside"), "{name}");
    let (_, _, name) = item(&children, &room_jid("outside"), None);
    assert!(name.contains("(1) – Outside: about Outside"), "{name}");
    let sub_node = format!("space/#subteam%{HS}");
    let (_, _, name) = item(&children, GW, Some(&sub_node));
    assert!(name.contains("space: Subteam"), "{name}");

    // The room she is not in joins at the address listed.
    enter(&mut alice, &room_jid("outside"), "Carol").await;
    let joined = |e: &Value| {
        e["type"] == "m.room.member"
            && e["state_key"] == carol.as_str()
            && e["content"]["membership"] == "join"
    };
    scene.bob.next_event(&outside, joined, WAIT).await;

    // A room that is no space, and a space that does not exist, are not found.
    for node in [
        format!("space/#inside%{HS}"),
        format!("space/#nowhere%{HS}"),
    ] {
        match items(&mut alice, Some(&node)).await {
            IqResponse::Error(e) => {
                assert_eq!(e.defined_condition, DefinedCondition::ItemNotFound, "{e:?}")
            }
            other => panic!("{node} answered {other:?}"),
        }
    }
    scene.stop().await;
}
