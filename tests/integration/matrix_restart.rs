//! The Matrix bridge across Synapse restarts: what the gateway sends while Synapse is
//! away arrives once it is back, each message once — also when a restart loses the answer
//! to a send Synapse had carried out (through the scene's lossy proxy).

use std::time::Duration;

use xmpp_client::parsers::message::MessageType;
use xmpp_client::Stanza;

use crate::harness::muc::{body, enter, groupchat_from, groupchat_to};
use crate::harness::scene::{MatrixSide, Scene};
use crate::harness::TestClient;
use crate::matrix::{is_message_from, room_jid};

#[tokio::test]
async fn a_synapse_restart_in_the_middle_of_twenty_messages_loses_none() {
    let mut scene = Scene::matrix().await;
    let room = scene.public_room("restart", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = room_jid("restart");
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;
    for n in 0..10 {
        alice
            .send(groupchat_to(&jid, &format!("message {n}")))
            .await;
    }
    scene.synapse.stop().await;
    for n in 10..20 {
        alice
            .send(groupchat_to(&jid, &format!("message {n}")))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    scene.synapse.restart().await;
    alice_said_once_each(&scene, &mut alice, &room, 20).await;
}

/// Synapse keeps an appservice's transaction ids in memory only: an event whose answer a
/// restart lost was sent a second time when the gateway tried again. The proxy loses the
/// answer to message 0 (Synapse has it), Synapse restarts, and message 0 is on Matrix once.
#[tokio::test]
async fn a_message_whose_answer_a_synapse_restart_lost_is_not_sent_twice() {
    let mut scene = Scene::matrix().lossy().await;
    let room = scene.public_room("lost", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = room_jid("lost");
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;
    let proxy = scene.proxy.take().expect("the scene's proxy");
    proxy.lose_next_send();
    alice.send(groupchat_to(&jid, "message 0")).await;
    proxy.lost().await;
    scene.synapse.restart().await;
    proxy.pass();
    alice.send(groupchat_to(&jid, "message 1")).await;
    alice_said_once_each(&scene, &mut alice, &room, 2).await;
}

/// Bob has alice's puppet's `message 0` … `message {count - 1}` in `room`, in order, each
/// once, and alice's client saw each reflected once.
async fn alice_said_once_each(
    scene: &Scene<MatrixSide>,
    alice: &mut TestClient,
    room: &str,
    count: usize,
) {
    let puppet = Scene::puppet("alice");
    let mut received = Vec::new();
    while received.len() < count {
        let event = scene
            .bob
            .next_event(
                room,
                |e| is_message_from(e, &puppet),
                Duration::from_secs(60),
            )
            .await;
        received.push(event["content"]["body"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (0..count).map(|n| format!("message {n}")).collect();
    assert_eq!(received, expected, "all, in order, once");
    scene
        .bob
        .nothing_matching(
            room,
            |e| is_message_from(e, &puppet),
            Duration::from_secs(3),
        )
        .await;
    for n in 0..count {
        let echo = groupchat_from(alice, "/Alice").await;
        assert_eq!(body(&echo), Some(format!("message {n}").as_str()));
    }
    let extra = alice
        .quiet_for(Duration::from_secs(2), |s| {
            matches!(s, Stanza::Message(m) if m.type_ == MessageType::Groupchat && body(m).is_some())
        })
        .await;
    assert!(extra.is_none(), "a message reflected twice: {extra:?}");
}
