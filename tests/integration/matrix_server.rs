//! The harness's Synapse and Matrix client behave as the Matrix tests assume.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::matrix_client::MatrixClient;
use crate::harness::matrix_server::Synapse;
use crate::harness::ANSWER;

fn body_is(body: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == "m.room.message" && event["content"]["body"] == body
}

/// Two users, a room with an alias, messages both ways through `/sync`, and a restart of
/// Synapse — while a client waits — that keeps the room, its messages and the sync positions.
#[tokio::test]
async fn synapse_serves_a_room_and_keeps_it_across_a_restart() {
    let mut synapse = Synapse::start("matrix.localhost", None).await;
    assert_eq!(
        synapse.url(),
        format!("http://127.0.0.1:{}", synapse.port())
    );
    let alice = synapse.register("alice", "alice-password", true).await;
    let bob = synapse.register("bob", "bob-password", false).await;
    assert_eq!(alice.user_id(), "@alice:matrix.localhost");
    assert_eq!(bob.whoami().await["user_id"], "@bob:matrix.localhost");
    alice.set_displayname("Alice").await;

    let room = alice
        .create_room(json!({ "room_alias_name": "lobby", "preset": "public_chat" }))
        .await;
    // Room version 12 by default: the id has no server part.
    assert!(room.starts_with('!') && !room.contains(':'), "{room}");
    let alias = format!("#lobby:{}", synapse.server_name());
    assert_eq!(bob.join(&alias).await, room);
    assert_eq!(bob.resolve_alias(&alias).await, room);
    alice.set_topic(&room, "Where we meet").await;
    assert_eq!(
        bob.state(&room, "m.room.topic", "").await["topic"],
        "Where we meet"
    );
    assert_eq!(bob.try_state(&room, "m.room.name", "").await, None);
    let mut members = alice.members(&room).await;
    members.sort();
    assert_eq!(
        members,
        [
            (
                "@alice:matrix.localhost".into(),
                "join".into(),
                Some("Alice".into())
            ),
            (
                "@bob:matrix.localhost".into(),
                "join".into(),
                Some("bob".into())
            ),
        ]
    );

    let hello = alice.send_text(&room, "hello").await;
    let event = bob.next_event(&room, body_is("hello"), ANSWER).await;
    assert_eq!(event["event_id"], hello.as_str());
    assert_eq!(event["sender"], alice.user_id());
    assert_eq!(event["room_id"], room.as_str());
    bob.send_text(&room, "hi").await;
    alice.next_event(&alias, body_is("hi"), ANSWER).await;

    // Bob waits through the restart; Alice speaks once Synapse is back.
    let (_, after) = tokio::join!(
        async {
            synapse.restart().await;
            alice.send_text(&room, "after the restart").await
        },
        bob.next_event(&room, body_is("after the restart"), ANSWER),
    );
    assert_eq!(after["sender"], alice.user_id());
    assert_eq!(bob.event(&room, &hello).await["content"]["body"], "hello");
    // The sync position survived: nothing already taken comes again.
    bob.nothing_matching(
        &room,
        body_is("hello"),
        std::time::Duration::from_millis(300),
    )
    .await;
    let again = bob.send_text(&room, "again").await;
    let event = alice.next_event(&room, body_is("again"), ANSWER).await;
    assert_eq!(event["event_id"], again.as_str());
}

fn membership_of(user: &str, membership: &'static str) -> impl Fn(&Value) -> bool {
    let user = user.to_owned();
    move |event| {
        event["type"] == "m.room.member"
            && event["state_key"] == user
            && event["content"]["membership"] == membership
    }
}

/// An appservice registration for [`matrix_client_sees_membership_changes_and_redactions`],
/// with no URL: Synapse pushes nothing.
const APPSERVICE: &str = r#"
id: causeway-test
url: null
as_token: as-token
hs_token: hs-token
sender_localpart: causeway
rate_limited: false
namespaces:
  users: [{ exclusive: true, regex: '@_xmpp_.*:matrix\.localhost' }]
  aliases: []
  rooms: []
"#;

/// Invitations reach the invitee and kicks the kicked through `/sync`; redactions, custom
/// events, bans, a second login, an appservice and a frozen server work as the Matrix tests
/// expect.
#[tokio::test]
async fn matrix_client_sees_membership_changes_and_redactions() {
    let registration = tempfile::tempdir().unwrap();
    let registration = registration.path().join("appservice.yaml");
    std::fs::write(&registration, APPSERVICE).unwrap();
    let synapse = Synapse::start("matrix.localhost", Some(&registration)).await;
    let bridge = MatrixClient::new(&synapse.url(), "as-token", "@causeway:matrix.localhost");
    assert_eq!(bridge.whoami().await["user_id"], bridge.user_id());
    let body = json!({ "type": "m.login.application_service", "username": "_xmpp_ghost" });
    let ghost = bridge
        .request(Method::POST, &["register"], Some(body))
        .await;
    assert_eq!(ghost["user_id"], "@_xmpp_ghost:matrix.localhost");
    let alice = synapse.register("alice", "alice-password", false).await;
    let bob = synapse.register("bob", "bob-password", false).await;
    let carol = synapse.register("carol", "carol-password", false).await;
    let alice_again = synapse.login("alice", "alice-password").await;
    assert_ne!(alice_again.access_token(), alice.access_token());
    assert_eq!(alice_again.whoami().await["user_id"], alice.user_id());

    let room = alice
        .create_room(json!({ "preset": "private_chat", "invite": [bob.user_id()] }))
        .await;
    bob.next_event(&room, membership_of(bob.user_id(), "invite"), ANSWER)
        .await;
    bob.join(&room).await;
    alice.kick(&room, bob.user_id(), "out").await;
    let kick = bob
        .next_event(&room, membership_of(bob.user_id(), "leave"), ANSWER)
        .await;
    assert_eq!(kick["content"]["reason"], "out");
    alice.invite(&room, bob.user_id()).await;
    bob.join(&room).await;
    bob.leave(&room).await;
    alice
        .next_event(&room, membership_of(bob.user_id(), "leave"), ANSWER)
        .await;
    alice.ban(&room, carol.user_id(), "no").await;
    alice
        .next_event(&room, membership_of(carol.user_id(), "ban"), ANSWER)
        .await;

    alice_again.catch_up().await;
    let sent = alice
        .send(&room, "org.example.custom", json!({ "n": 1 }))
        .await;
    let redaction = alice.redact(&room, &sent, "oops").await;
    let custom = alice_again
        .next_event(&room, |e| e["type"] == "org.example.custom", ANSWER)
        .await;
    assert_eq!(custom["event_id"], sent.as_str());
    let redacted = alice_again
        .next_event(&room, |e| e["type"] == "m.room.redaction", ANSWER)
        .await;
    assert_eq!(redacted["event_id"], redaction.as_str());
    assert_eq!(redacted["redacts"], sent.as_str());
    assert!(alice.event(&room, &sent).await["content"]
        .as_object()
        .is_some_and(|c| c.is_empty()));

    // Frozen, Synapse takes requests but answers none; thawed, it goes on.
    synapse.freeze(true);
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        alice.send_text(&room, "frozen"),
    )
    .await;
    assert!(waited.is_err(), "a frozen Synapse answered");
    synapse.freeze(false);
    alice.send_text(&room, "thawed").await;
    alice_again
        .next_event(&room, body_is("thawed"), ANSWER)
        .await;
}
