//! XEP-0356 against a real Prosody with `mod_privilege`: a room joined through the gateway
//! lands in the user's XEP-0402 bookmarks (their PEP node), and a Matrix user writing to
//! them in a direct chat becomes a contact in their roster, in the group "Matrix".

use std::time::{Duration, Instant};

use xmpp_client::minidom::Element;
use xmpp_client::IqResponse;

use crate::harness::muc::*;
use crate::harness::scene::{Scene, GW, HS};
use crate::harness::{nc, TestClient};

const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
const ROSTER: &str = "jabber:iq:roster";
const COMMANDS: &str = "http://jabber.org/protocol/commands";
const WAIT: Duration = Duration::from_secs(15);

/// The first of the answers of `client`'s own account to `query` that `wanted` accepts,
/// asked again until it comes (the gateway's pushes reach the server on the side).
async fn own_until(
    client: &mut TestClient,
    query: impl Fn() -> Element,
    wanted: impl Fn(&Element) -> Option<Element>,
) -> Element {
    let deadline = Instant::now() + WAIT;
    loop {
        if let IqResponse::Result(Some(answer)) = client.get_own(query()).await {
            if let Some(found) = wanted(&answer) {
                return found;
            }
        }
        assert!(
            Instant::now() < deadline,
            "nothing as wanted within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn joined_rooms_are_bookmarked_and_direct_chat_partners_become_contacts() {
    let scene = Scene::matrix().privileged().start().await;
    scene.public_room("marked", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let room_jid = crate::matrix::room_jid("marked");
    enter(&mut alice, &room_jid, "Alice").await;

    let bookmarks = || {
        let items = Element::builder("items", PUBSUB).attr(nc("node"), BOOKMARKS);
        Element::builder("pubsub", PUBSUB)
            .append(items.build())
            .build()
    };
    let conference = own_until(&mut alice, bookmarks, |answer| {
        let items = answer.get_child("items", PUBSUB)?;
        let item = items
            .children()
            .find(|i| i.attr("id") == Some(room_jid.as_str()))?;
        item.get_child("conference", BOOKMARKS).cloned()
    })
    .await;
    assert_eq!(conference.attr("autojoin"), Some("true"));
    let nick = conference.get_child("nick", BOOKMARKS).map(|n| n.text());
    assert_eq!(nick.as_deref(), Some("Alice"));

    // Bob writes to alice in a direct chat: he is a contact of hers, by his name.
    scene.bob.set_displayname("Bob").await;
    let puppet = Scene::puppet("alice");
    let direct = scene.bob.direct_chat_with(&puppet, WAIT).await;
    scene.bob.send_text(&direct, "hello alice").await;
    let bob_jid = format!("bob%{HS}@{GW}");
    chat_from(&mut alice, &bob_jid).await;
    let roster = || Element::builder("query", ROSTER).build();
    let item = own_until(&mut alice, roster, |answer| {
        answer
            .children()
            .find(|i| i.attr("jid") == Some(bob_jid.as_str()))
            .cloned()
    })
    .await;
    assert_eq!(item.attr("name"), Some("Bob"));
    let group = item.get_child("group", ROSTER).map(|g| g.text());
    assert_eq!(group.as_deref(), Some("Matrix"));

    // Asked to, the gateway takes both out again.
    let forget = Element::builder("command", COMMANDS)
        .attr(nc("node"), "forget-pushes")
        .attr(nc("action"), "execute")
        .build();
    let IqResponse::Result(Some(done)) = alice.set(GW, forget).await else {
        panic!("the command was refused");
    };
    assert_eq!(done.attr("status"), Some("completed"));
    let note = done
        .get_child("note", COMMANDS)
        .map(|n| n.text())
        .unwrap_or_default();
    assert!(note.contains("1 bookmark(s) and 1 contact(s)"), "{note}");
    own_until(&mut alice, bookmarks, |answer| {
        let items = answer.get_child("items", PUBSUB)?;
        let gone = !items
            .children()
            .any(|i| i.attr("id") == Some(room_jid.as_str()));
        gone.then(|| items.clone())
    })
    .await;
    own_until(&mut alice, roster, |answer| {
        let gone = !answer
            .children()
            .any(|i| i.attr("jid") == Some(bob_jid.as_str()));
        gone.then(|| answer.clone())
    })
    .await;
}
