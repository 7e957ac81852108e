//! Two XMPP users meeting through their puppets on Synapse: in a room each sees the other's
//! puppet come, speak and change its nick; privately, each one's messages reach the other
//! through the direct room their puppets share.

use xmpp_client::parsers::message::Message;
use xmpp_client::parsers::muc::user::Status;
use xmpp_client::parsers::presence::Type as PresenceType;

use crate::harness::muc::{
    body, chat_from, enter, groupchat_from, groupchat_to, join, muc_user, presence_from,
};
use crate::harness::scene::{Scene, GW, HS};

fn room_jid(alias: &str) -> String {
    format!("#{alias}%{HS}@{GW}")
}

/// The JID an XMPP user's puppet has for the other XMPP users: a Matrix user like any.
fn puppet_jid(name: &str) -> String {
    let puppet = Scene::puppet(name);
    let (local, server) = puppet[1..].split_once(':').unwrap();
    format!("{local}%{server}@{GW}")
}

#[tokio::test]
async fn two_xmpp_users_in_one_room_see_each_other_and_odd_display_names() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("together", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let mut dave = scene.xmpp_user("dave").await;
    let jid = room_jid("together");
    // Both join at once: neither seat may be lost.
    alice.send(join(&format!("{jid}/Alice"))).await;
    dave.send(join(&format!("{jid}/Dave"))).await;
    crate::harness::muc::self_presence(&mut alice, "Alice").await;
    crate::harness::muc::self_presence(&mut dave, "Dave").await;

    // Each one's messages reach the other through the homeserver, under their nick.
    dave.send(groupchat_to(&jid, "hi alice, dave here")).await;
    assert_eq!(
        body(&groupchat_from(&mut alice, "/Dave").await),
        Some("hi alice, dave here")
    );
    alice.send(groupchat_to(&jid, "hi dave")).await;
    assert_eq!(
        body(&groupchat_from(&mut dave, "/Alice").await),
        Some("hi dave")
    );

    // Display names that are no JID resource (an emoji beyond Unicode 3.2) still speak.
    let carol = scene.synapse.register("carol", "password", false).await;
    carol.set_displayname("🦀 crab").await;
    carol.join(&room).await;
    carol.send_text(&room, "from the crab").await;
    assert_eq!(
        body(&groupchat_from(&mut alice, "/carol").await),
        Some("from the crab")
    );
    assert_eq!(
        body(&groupchat_from(&mut dave, "/carol").await),
        Some("from the crab")
    );
}

#[tokio::test]
async fn a_puppet_joining_after_another_and_changing_its_nick_is_seen_by_the_first() {
    let scene = Scene::matrix().await;
    scene.public_room("meet", "").await;
    let jid = room_jid("meet");
    let mut alice = scene.xmpp_user("alice").await;
    let mut dave = scene.xmpp_user("dave").await;
    enter(&mut alice, &jid, "Alice").await;
    enter(&mut dave, &jid, "Dave").await;
    let came = presence_from(&mut alice, "/Dave", PresenceType::None).await;
    assert!(muc_user(&came).is_some(), "an occupant's presence");

    dave.send(join(&format!("{jid}/David"))).await;
    let gone = presence_from(&mut alice, "/Dave", PresenceType::Unavailable).await;
    let user = muc_user(&gone).unwrap();
    assert!(user.status.contains(&Status::NewNick), "303 on rename");
    assert_eq!(user.items[0].nick.as_deref(), Some("David"));
    presence_from(&mut alice, "/David", PresenceType::None).await;
}

#[tokio::test]
async fn two_xmpp_users_talk_privately_through_their_puppets_both_ways() {
    let scene = Scene::matrix().await;
    let mut alice = scene.xmpp_user("alice").await;
    let mut dave = scene.xmpp_user("dave").await;
    let chat = |to: &str, text: &str| {
        let mut m = Message::chat(Some(to.parse().unwrap()));
        m.bodies.insert(Default::default(), text.into());
        m
    };
    alice.send(chat(&puppet_jid("dave"), "hello dave")).await;
    assert_eq!(
        body(&chat_from(&mut dave, &puppet_jid("alice")).await),
        Some("hello dave")
    );
    dave.send(chat(&puppet_jid("alice"), "hello alice")).await;
    assert_eq!(
        body(&chat_from(&mut alice, &puppet_jid("dave")).await),
        Some("hello alice")
    );
    alice.send(chat(&puppet_jid("dave"), "same room")).await;
    assert_eq!(
        body(&chat_from(&mut dave, &puppet_jid("alice")).await),
        Some("same room")
    );
}
