//! The Matrix bridge end to end: real Prosody, real Synapse with the registration written by
//! `causeway generate-registration`, the gateway in process, XMPP users on tokio-xmpp and
//! Matrix users on the Client-Server API.

use std::time::Duration;

use serde_json::{json, Value};
use xmpp_client::parsers::message::Message;
use xmpp_client::parsers::muc::user::Status;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::parsers::stanza_error::DefinedCondition;
use xmpp_client::Stanza;

use crate::harness::matrix_client::MatrixClient;
use crate::harness::matrix_server::Synapse;
use crate::harness::muc::{
    body, chat_from, enter, groupchat_from, groupchat_to, invitation, join, join_error,
    join_listing, muc_user, occupant_id, payload, sender, with_payload,
};
use crate::harness::scene::{MatrixSide, Scene, BULK_TOKEN, GW, HS};
use crate::harness::{TestClient, ANSWER};

const WAIT: Duration = Duration::from_secs(15);

pub(crate) fn room_jid(alias: &str) -> String {
    format!("#{alias}%{HS}@{GW}")
}

pub(crate) fn is_message_from(event: &Value, sender: &str) -> bool {
    event["type"] == "m.room.message" && event["sender"] == sender
}

#[tokio::test]
async fn a_room_joined_by_alias_shows_members_topic_and_carries_messages_both_ways() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("lobby", "Welcome to the lobby").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;

    // Join: bob as occupant, then the self-presence (110 last), then the subject.
    let (seen, own) = join_listing(&mut alice, &format!("{}/Alice", room_jid("lobby"))).await;
    assert!(own.ends_with("/Alice"), "{own}");
    assert!(
        seen.iter().any(|s| s.ends_with("/Bob")),
        "bob is an occupant before the self-presence: {seen:?}"
    );
    let subject = alice
        .expect("subject", |s| match s {
            Stanza::Message(m) if !m.subjects.is_empty() => m.subjects.values().next().cloned(),
            _ => None,
        })
        .await;
    assert_eq!(subject, "Welcome to the lobby");

    // XMPP → Matrix, as alice's own puppet under her nick.
    bob_catches_up(&scene).await;
    alice
        .send(groupchat_to(&room_jid("lobby"), "hello from XMPP"))
        .await;
    let puppet = Scene::puppet("alice");
    let event = scene
        .bob
        .next_event(&room, |e| is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(event["content"]["body"], "hello from XMPP");
    assert_eq!(event["content"]["msgtype"], "m.text");
    let member = scene.bob.state(&room, "m.room.member", &puppet).await;
    assert_eq!(member["displayname"], "Alice");
    // The reflection reaches alice once, with the event id as stanza-id.
    let echo = groupchat_from(&mut alice, "/Alice").await;
    assert_eq!(body(&echo), Some("hello from XMPP"));
    // The event comes back in a transaction too: it is not shown a second time.
    let again = alice
        .quiet_for(
            Duration::from_secs(2),
            |s| matches!(s, Stanza::Message(m) if body(m) == Some("hello from XMPP")),
        )
        .await;
    assert!(again.is_none(), "echoed: {again:?}");

    alice
        .send(groupchat_to(&room_jid("lobby"), "/me waves"))
        .await;
    let emote = scene
        .bob
        .next_event(&room, |e| is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(emote["content"]["msgtype"], "m.emote");
    assert_eq!(emote["content"]["body"], "waves");

    // Matrix → XMPP: text, HTML reduced to text, emote, notice.
    let id = scene.bob.send_text(&room, "hi alice").await;
    let got = groupchat_from(&mut alice, "/Bob").await;
    assert_eq!(body(&got), Some("hi alice"));
    let stanza_id = got
        .payloads
        .iter()
        .find(|p| p.name() == "stanza-id")
        .and_then(|p| p.attr("id"))
        .map(str::to_owned);
    assert!(stanza_id.is_some(), "room messages carry a stanza-id");
    let _ = id;
    let shown = [
        (
            json!({"msgtype": "m.text", "body": "**bold** fallback",
                   "format": "org.matrix.custom.html",
                   "formatted_body": "<strong>bold</strong> and <em>more</em>"}),
            "*bold* and _more_",
        ),
        (
            json!({"msgtype": "m.emote", "body": "dances"}),
            "/me dances",
        ),
        (
            json!({"msgtype": "m.notice", "body": "a notice"}),
            "a notice",
        ),
    ];
    for (content, expected) in shown {
        scene.bob.send(&room, "m.room.message", content).await;
        assert_eq!(
            body(&groupchat_from(&mut alice, "/Bob").await),
            Some(expected)
        );
    }
}

async fn bob_catches_up(scene: &Scene<MatrixSide>) {
    scene.bob.catch_up().await;
}

#[tokio::test]
async fn nick_clashes_conflict_and_display_name_clashes_are_disambiguated() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("names", "").await;
    scene.bob.set_displayname("Bob").await;
    let carol = scene.synapse.register("carol", "password", false).await;
    carol.set_displayname("Bob").await;
    carol.join(&room).await;
    let mut alice = scene.xmpp_user("alice").await;
    alice
        .send(join(&format!("{}/bob", room_jid("names"))))
        .await;
    let err = join_error(&mut alice).await;
    assert_eq!(err.defined_condition, DefinedCondition::Conflict);

    let (seen, _) = join_listing(&mut alice, &format!("{}/Alice", room_jid("names"))).await;
    let bobs: Vec<&String> = seen.iter().filter(|s| s.contains("/Bob")).collect();
    assert_eq!(
        bobs.len(),
        2,
        "two occupants called Bob, told apart: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.ends_with(&format!("/Bob (@carol:{HS})"))),
        "{seen:?}"
    );
}

#[tokio::test]
async fn members_joining_renaming_leaving_and_topics_show_in_the_muc() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("moves", "first topic").await;
    let mut alice = scene.xmpp_user("alice").await;
    enter(&mut alice, &room_jid("moves"), "Alice").await;

    let carol = scene.synapse.register("carol", "password", false).await;
    carol.join(&room).await;
    let p = crate::harness::muc::presence_from(&mut alice, "/carol", PresenceType::None).await;
    assert!(muc_user(&p).is_some());
    // Her XEP-0421 occupant-id is made from her user id: the same under her new name.
    let carols = occupant_id(&p.into()).expect("an occupant-id");
    carol.set_displayname("Caroline").await;
    let p =
        crate::harness::muc::presence_from(&mut alice, "/carol", PresenceType::Unavailable).await;
    let user = muc_user(&p).unwrap();
    assert!(user.status.contains(&Status::NewNick), "303 on rename");
    assert_eq!(user.items[0].nick.as_deref(), Some("Caroline"));
    assert_eq!(occupant_id(&p.into()).as_ref(), Some(&carols));
    let p = crate::harness::muc::presence_from(&mut alice, "/Caroline", PresenceType::None).await;
    assert_eq!(occupant_id(&p.into()).as_ref(), Some(&carols));

    // Topic both ways.
    scene.bob.set_topic(&room, "second topic").await;
    let subject = alice
        .expect("subject", |s| match s {
            Stanza::Message(m) => m.subjects.values().next().cloned(),
            _ => None,
        })
        .await;
    assert_eq!(subject, "second topic");
    let subject_change = || {
        let mut change = Message::groupchat(Some(room_jid("moves").parse().unwrap()));
        change
            .subjects
            .insert(Default::default(), "from XMPP".into());
        change
    };
    // A puppet without the power to change the topic gets the homeserver's refusal.
    alice.send(subject_change()).await;
    let refused = crate::harness::muc::room_notice(&mut alice, &room_jid("moves")).await;
    assert!(refused.contains("the topic was not changed"), "{refused}");
    // Given power level 50, the puppet is a moderator and may.
    let mut power = scene.bob.state(&room, "m.room.power_levels", "").await;
    power["users"][Scene::puppet("alice")] = json!(50);
    scene
        .bob
        .set_state(&room, "m.room.power_levels", "", power)
        .await;
    let p = crate::harness::muc::presence_from(&mut alice, "/Alice", PresenceType::None).await;
    let role = muc_user(&p).unwrap().items[0].role.clone();
    assert_eq!(role, xmpp_client::parsers::muc::user::Role::Moderator);
    alice.send(subject_change()).await;
    scene
        .bob
        .next_event(
            &room,
            |e| e["type"] == "m.room.topic" && e["content"]["topic"] == "from XMPP",
            WAIT,
        )
        .await;

    carol.leave(&room).await;
    crate::harness::muc::presence_from(&mut alice, "/Caroline", PresenceType::Unavailable).await;
}

#[tokio::test]
async fn kicks_and_bans_of_a_puppet_reach_the_xmpp_user() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("strict", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    enter(&mut alice, &room_jid("strict"), "Alice").await;
    let puppet = Scene::puppet("alice");

    scene.bob.kick(&room, &puppet, "behave").await;
    let p =
        crate::harness::muc::presence_from(&mut alice, "/Alice", PresenceType::Unavailable).await;
    let user = muc_user(&p).unwrap();
    assert!(user.status.contains(&Status::Kicked), "307: {user:?}");
    assert!(user.status.contains(&Status::SelfPresence));

    enter(&mut alice, &room_jid("strict"), "Alice").await;
    scene.bob.ban(&room, &puppet, "out").await;
    let p =
        crate::harness::muc::presence_from(&mut alice, "/Alice", PresenceType::Unavailable).await;
    assert!(
        muc_user(&p).unwrap().status.contains(&Status::Banned),
        "301"
    );
    alice
        .send(join(&format!("{}/Alice", room_jid("strict"))))
        .await;
    let err = join_error(&mut alice).await;
    assert_eq!(err.defined_condition, DefinedCondition::Forbidden);
}

#[tokio::test]
async fn mixed_case_room_ids_are_joined_through_lower_cased_jids_and_invites_arrive() {
    let scene = Scene::matrix().await;
    // A public room without alias, listed in the directory: a room version 12 id.
    let room = scene
        .bob
        .create_room(json!({"preset": "public_chat", "visibility": "public"}))
        .await;
    assert!(
        !room.contains(':'),
        "room version 12 ids have no server: {room}"
    );
    assert_ne!(room, room.to_lowercase(), "the id has upper case: {room}");
    let mut alice = scene.xmpp_user("alice").await;
    let jid = format!("{}@{GW}", room.to_lowercase());
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;
    alice.send(groupchat_to(&jid, "found it")).await;
    let puppet = Scene::puppet("alice");
    scene
        .bob
        .next_event(&room, |e| is_message_from(e, &puppet), WAIT)
        .await;

    // An older room version: `!opaque:server`, reached as `!opaque%server@…`.
    let old = scene
        .bob
        .create_room(json!({"preset": "public_chat", "visibility": "public", "room_version": "10"}))
        .await;
    let (opaque, server) = old
        .split_once(':')
        .expect("room version 10 ids carry their server");
    let old_jid = format!("{}%{server}@{GW}", opaque.to_lowercase());
    enter(&mut alice, &old_jid, "Alice").await;
    alice.send(groupchat_to(&old_jid, "old rooms too")).await;
    scene
        .bob
        .next_event(&old, |e| is_message_from(e, &puppet), WAIT)
        .await;

    // An invite-only room: the invitation arrives as XEP-0249, and then the join works.
    let private = scene
        .bob
        .create_room(json!({"preset": "private_chat", "name": "secret"}))
        .await;
    let private_jid = format!("{}@{GW}", private.to_lowercase());
    alice.send(join(&format!("{private_jid}/Alice"))).await;
    let err = join_error(&mut alice).await;
    assert!(
        matches!(
            err.defined_condition,
            DefinedCondition::RegistrationRequired | DefinedCondition::ItemNotFound
        ),
        "{err:?}"
    );
    let invited = Scene::puppet("carl");
    let mut carl = scene.xmpp_user("carl").await;
    scene.bob.invite(&private, &invited).await;
    let invitation = invitation(&mut carl).await;
    assert_eq!(invitation, private_jid);
    enter(&mut carl, &invitation, "Carl").await;
    // A puppet of someone the gateway does not serve stands for nobody: inviting it relays
    // nothing to that JID.
    let mut eve = TestClient::login(&scene.xmpp, "eve", "other.localhost").await;
    let stranger = format!("@_xmpp_eve=40other.localhost:{HS}");
    let _ = reqwest::Client::new()
        .post(format!(
            "{}/_matrix/client/v3/rooms/{}/invite",
            scene.synapse.url(),
            private.replace('!', "%21")
        ))
        .bearer_auth(scene.bob.access_token())
        .json(&json!({"user_id": stranger}))
        .send()
        .await
        .unwrap();
    let relayed = eve
        .quiet_for(Duration::from_secs(2), |s| {
            matches!(s, Stanza::Message(_)) && sender(s).contains(GW)
        })
        .await;
    assert!(relayed.is_none(), "relayed to a stranger: {relayed:?}");
    let members = scene.bob.members(&private).await;
    assert!(
        members
            .iter()
            .any(|(id, m, _)| *id == invited && m == "join"),
        "{members:?}"
    );
    let _ = ANSWER;
}

/// One HTTP/1.1 request to the gateway's listener: the status and the raw head.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(ANSWER, stream.read_to_string(&mut answer))
        .await
        .expect("the listener answers")
        .unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, head)
}

fn hs_token(registration: &std::path::Path) -> String {
    let yaml = std::fs::read_to_string(registration).unwrap();
    yaml.lines()
        .find_map(|l| l.strip_prefix("hs_token: "))
        .expect("hs_token in the registration")
        .trim_matches(|c| c == '\'' || c == '"')
        .to_owned()
}

fn crafted(room: &str, id: &str, body: &str) -> String {
    json!({"events": [{
        "type": "m.room.message",
        "room_id": room,
        "sender": format!("@bob:{HS}"),
        "event_id": id,
        "origin_server_ts": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
        "content": {"msgtype": "m.text", "body": body},
    }]})
    .to_string()
}

async fn crafted_arrives(alice: &mut TestClient, body_text: &str) -> bool {
    alice
        .quiet_for(
            Duration::from_secs(2),
            // Live only: a rejoin replays the room's history (with <delay/>).
            |s| {
                matches!(s, Stanza::Message(m) if body(m) == Some(body_text)
                    && !m.payloads.iter().any(|p| p.name() == "delay"))
            },
        )
        .await
        .is_some()
}

#[tokio::test]
async fn the_listener_checks_the_token_and_processes_each_transaction_once_across_restarts() {
    let mut scene = Scene::matrix().await;
    let room = scene.public_room("txn", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    enter(&mut alice, &room_jid("txn"), "Alice").await;
    let token = hs_token(&scene.registration);
    let path = "/_matrix/app/v1/transactions/causeway-test-1";
    let body = crafted(&room, "$crafted-1", "crafted once");

    let (status, head) = http(scene.listen, "PUT", path, None, &body).await;
    assert_eq!(status, 401, "{head}");
    assert!(head.to_lowercase().contains("content-length:"), "{head}");
    let (status, _) = http(scene.listen, "PUT", path, Some("not-the-token"), &body).await;
    assert_eq!(status, 403);
    assert!(
        !crafted_arrives(&mut alice, "crafted once").await,
        "refused requests do nothing"
    );

    let (status, head) = http(scene.listen, "PUT", path, Some(&token), &body).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_lowercase().contains("content-length: 2"), "{head}");
    assert!(crafted_arrives(&mut alice, "crafted once").await);
    let (status, _) = http(scene.listen, "PUT", path, Some(&token), &body).await;
    assert_eq!(status, 200, "a replay is acknowledged");
    assert!(
        !crafted_arrives(&mut alice, "crafted once").await,
        "and not processed again"
    );

    let (status, _) = http(scene.listen, "PUT", path, Some(&token), "{not json").await;
    assert_eq!(
        status, 400,
        "malformed transactions are refused with a clear status"
    );
    let (status, _) = http(
        scene.listen,
        "GET",
        "/_matrix/app/v1/nothing",
        Some(&token),
        "",
    )
    .await;
    assert_eq!(status, 404);

    // The processed transaction ids outlive the gateway.
    scene.stop_gateway().await;
    scene.start_gateway().await;
    enter(&mut alice, &room_jid("txn"), "Alice").await;
    let (status, _) = http(scene.listen, "PUT", path, Some(&token), &body).await;
    assert_eq!(status, 200);
    assert!(
        !crafted_arrives(&mut alice, "crafted once").await,
        "not after a restart either"
    );
    let fresh = crafted(&room, "$crafted-2", "a new transaction");
    let (status, _) = http(
        scene.listen,
        "PUT",
        "/_matrix/app/v1/transactions/causeway-test-2",
        Some(&token),
        &fresh,
    )
    .await;
    assert_eq!(status, 200);
    assert!(crafted_arrives(&mut alice, "a new transaction").await);

    // A homeserver whose transaction ids start again (its database new or reset) sends a
    // known id with other events: processed, not taken for a replay; and that once.
    let again = crafted(&room, "$crafted-3", "ids started again");
    for (attempt, expected) in [(1, true), (2, false)] {
        let (status, _) = http(scene.listen, "PUT", path, Some(&token), &again).await;
        assert_eq!(status, 200);
        assert_eq!(
            crafted_arrives(&mut alice, "ids started again").await,
            expected,
            "attempt {attempt}"
        );
    }
}

#[tokio::test]
async fn private_messages_go_through_direct_rooms_both_ways() {
    let scene = Scene::matrix().await;
    let mut alice = scene.xmpp_user("alice").await;
    let bob_jid = format!("bob%{HS}@{GW}");
    let puppet = Scene::puppet("alice");
    let chat = |text: &str| {
        let mut m = Message::chat(Some(bob_jid.parse().unwrap()));
        m.bodies.insert(Default::default(), text.into());
        m
    };
    alice.send(chat("hello bob")).await;
    let invite = scene.bob.next_invite(WAIT).await;
    assert_eq!(invite["sender"], puppet.as_str());
    assert_eq!(invite["content"]["is_direct"], true);
    let direct = invite["room_id"].as_str().unwrap().to_owned();
    scene.bob.join(&direct).await;
    let first = scene
        .bob
        .next_event(&direct, |e| is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(first["content"]["body"], "hello bob");
    alice.send(chat("same room again")).await;
    let second = scene
        .bob
        .next_event(&direct, |e| is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(
        second["room_id"],
        direct.as_str(),
        "the direct room is remembered"
    );
    scene.bob.send_text(&direct, "hello alice").await;
    assert_eq!(
        body(&chat_from(&mut alice, &bob_jid).await),
        Some("hello alice")
    );

    // A Matrix user opening a direct chat with the puppet.
    let carol = scene.synapse.register("carol", "password", false).await;
    let room = carol.direct_chat_with(&puppet, WAIT).await;
    carol.send_text(&room, "hi from carol").await;
    let carol_jid = format!("carol%{HS}@{GW}");
    assert_eq!(
        body(&chat_from(&mut alice, &carol_jid).await),
        Some("hi from carol")
    );
}

#[tokio::test]
async fn room_messages_are_archived_with_their_event_ids() {
    use crate::history::{mam_query, run_query_at};
    let scene = Scene::matrix().await;
    let room = scene.public_room("archive", "").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = room_jid("archive");
    enter(&mut alice, &jid, "Alice").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(scene.bob.send_text(&room, &format!("kept {n}")).await);
        groupchat_from(&mut alice, "/Bob").await;
    }
    alice.send(groupchat_to(&jid, "mine too")).await;
    groupchat_from(&mut alice, "/Alice").await;
    // The archive is written in batches: wait until the query sees all four.
    let mut results = Vec::new();
    for _ in 0..50 {
        (results, _) = run_query_at(&mut alice, &jid, mam_query("q1", None, 10, None)).await;
        if results.len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bodies: Vec<&str> = results.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["kept 0", "kept 1", "kept 2", "mine too"]);
    let archived: Vec<&str> = results.iter().take(3).map(|(id, _)| id.as_str()).collect();
    assert_eq!(archived, ids, "the stanza-ids are the Matrix event ids");
}

/// Make `count` Matrix users `@bulk_N` through the bulk appservice and join them to `room`,
/// a few requests at a time.
async fn bulk_members(synapse: &Synapse, room: &str, count: usize) {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    let base = synapse.url();
    futures::stream::iter(0..count)
        .map(|n| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let local = format!("bulk_{n}");
                let answer = http
                    .post(format!("{base}/_matrix/client/v3/register"))
                    .bearer_auth(BULK_TOKEN)
                    .json(
                        &json!({"type": "m.login.application_service", "username": local,
                                  "inhibit_login": true}),
                    )
                    .send()
                    .await
                    .unwrap();
                assert!(
                    answer.status().is_success(),
                    "{}",
                    answer.text().await.unwrap()
                );
                let user = format!("@{local}:{HS}");
                let answer = http
                    .post(format!(
                        "{base}/_matrix/client/v3/join/{}?user_id={}",
                        room.replace('!', "%21"),
                        encode(&user)
                    ))
                    .bearer_auth(BULK_TOKEN)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    answer.status().is_success(),
                    "{}",
                    answer.text().await.unwrap()
                );
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test]
async fn a_room_of_five_hundred_members_is_joined_at_once_and_speakers_appear() {
    let scene = Scene::matrix()
        .keys("member_limit = 50")
        .bulk_appservice()
        .await;
    let room = scene.public_room("crowd", "many people").await;
    let started = std::time::Instant::now();
    bulk_members(&scene.synapse, &room, 520).await;
    eprintln!("520 members joined in {:?}", started.elapsed());
    let mut alice = scene.xmpp_user("alice").await;
    let jid = room_jid("crowd");
    let (occupants, _) = join_listing(&mut alice, &format!("{jid}/Alice")).await;
    assert_eq!(
        occupants.len(),
        50,
        "member_limit members shown at join (bob and 49 others)"
    );
    // Someone not shown speaks: they appear, then their message.
    let http = reqwest::Client::new();
    let speaker = format!("@bulk_519:{HS}");
    let answer = http
        .put(format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/late-1?user_id={}",
            scene.synapse.url(),
            room.replace('!', "%21"),
            encode(&speaker)
        ))
        .bearer_auth(BULK_TOKEN)
        .json(&json!({"msgtype": "m.text", "body": "I was here all along"}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    crate::harness::muc::presence_from(&mut alice, "/bulk_519", PresenceType::None).await;
    assert_eq!(
        body(&groupchat_from(&mut alice, "/bulk_519").await),
        Some("I was here all along")
    );
}

/// A Matrix id as a URL query value.
fn encode(id: &str) -> String {
    id.replace('@', "%40").replace(':', "%3A")
}

/// A groupchat message with extra payloads (XML in the jabber:client namespace).
fn rich_message(room: &str, id: &str, body: Option<&str>, payloads: &str) -> Message {
    let body = body
        .map(|b| {
            format!(
                "<body>{}</body>",
                b.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            )
        })
        .unwrap_or_default();
    let xml = format!(
        "<message xmlns='jabber:client' type='groupchat' to='{room}' id='{id}'>{body}{payloads}</message>"
    );
    Message::try_from(xml.parse::<xmpp_client::minidom::Element>().unwrap()).unwrap()
}

const CORRECT: &str = "urn:xmpp:message-correct:0";
const REACTIONS: &str = "urn:xmpp:reactions:0";
const RETRACT: &str = "urn:xmpp:message-retract:1";
const REPLY: &str = "urn:xmpp:reply:0";

#[tokio::test]
async fn edits_reactions_replies_and_retractions_map_both_ways() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("rich", "").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = room_jid("rich");
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;
    let puppet = Scene::puppet("alice");
    let from_puppet = |e: &Value| e["sender"] == puppet.as_str();

    // XMPP correction → m.replace of the event the first message became.
    alice
        .send(rich_message(&jid, "m1", Some("teh typo"), ""))
        .await;
    let first = scene
        .bob
        .next_event(&room, |e| is_message_from(e, &puppet), WAIT)
        .await;
    let e1 = first["event_id"].as_str().unwrap().to_owned();
    groupchat_from(&mut alice, "/Alice").await;
    alice
        .send(rich_message(
            &jid,
            "m2",
            Some("the typo"),
            &format!("<replace xmlns='{CORRECT}' id='m1'/>"),
        ))
        .await;
    let edit = scene
        .bob
        .next_event(&room, |e| is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(edit["content"]["m.relates_to"]["rel_type"], "m.replace");
    assert_eq!(edit["content"]["m.relates_to"]["event_id"], e1.as_str());
    assert_eq!(edit["content"]["m.new_content"]["body"], "the typo");
    let echo = groupchat_from(&mut alice, "/Alice").await;
    assert_eq!(
        payload(&echo, "replace", CORRECT).and_then(|r| r.attr("id")),
        Some("m1")
    );

    // Matrix edit → XEP-0308 naming the event id the message came with.
    let b1 = scene.bob.send_text(&room, "hello wrold").await;
    let original = groupchat_from(&mut alice, "/Bob").await;
    assert_eq!(
        original.id.as_ref().map(|i| i.0.as_str()),
        Some(b1.as_str())
    );
    scene
        .bob
        .send(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": "* hello world",
                   "m.new_content": {"msgtype": "m.text", "body": "hello world"},
                   "m.relates_to": {"rel_type": "m.replace", "event_id": b1}}),
        )
        .await;
    let corrected = with_payload(&mut alice, "/Bob", "replace", CORRECT).await;
    assert_eq!(body(&corrected), Some("hello world"));
    assert_eq!(
        payload(&corrected, "replace", CORRECT).and_then(|r| r.attr("id")),
        Some(b1.as_str())
    );

    // Reactions, XMPP → Matrix: adding, then taking back.
    let react = |set: &str| format!("<reactions xmlns='{REACTIONS}' id='{b1}'>{set}</reactions>");
    alice
        .send(rich_message(
            &jid,
            "r1",
            None,
            &react("<reaction>👍</reaction>"),
        ))
        .await;
    let reaction = scene
        .bob
        .next_event(&room, |e| e["type"] == "m.reaction" && from_puppet(e), WAIT)
        .await;
    assert_eq!(reaction["content"]["m.relates_to"]["key"], "👍");
    assert_eq!(reaction["content"]["m.relates_to"]["event_id"], b1.as_str());
    alice.send(rich_message(&jid, "r2", None, &react(""))).await;
    let redacted = redaction_by(&scene.bob, &room, &puppet).await;
    assert_eq!(Some(redacted.as_str()), reaction["event_id"].as_str());

    // Reactions, Matrix → XMPP.
    let bob_reaction = scene
        .bob
        .send(
            &room,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": e1, "key": "🎉"}}),
        )
        .await;
    let got = with_payload(&mut alice, "/Bob", "reactions", REACTIONS).await;
    let set = payload(&got, "reactions", REACTIONS).unwrap();
    assert_eq!(set.attr("id"), Some(e1.as_str()));
    let keys: Vec<String> = set.children().map(|c| c.text()).collect();
    assert_eq!(keys, ["🎉"]);
    scene.bob.redact(&room, &bob_reaction, "").await;
    let got = with_payload(&mut alice, "/Bob", "reactions", REACTIONS).await;
    assert_eq!(
        payload(&got, "reactions", REACTIONS)
            .unwrap()
            .children()
            .count(),
        0
    );

    // Replies both ways, fallbacks stripped.
    scene
        .bob
        .send(
            &room,
            "m.room.message",
            json!({"msgtype": "m.text",
                   "body": format!("> <{puppet}> the typo\n\nyes indeed"),
                   "m.relates_to": {"m.in_reply_to": {"event_id": e1}}}),
        )
        .await;
    let answer = with_payload(&mut alice, "/Bob", "reply", REPLY).await;
    // The Matrix fallback is gone; the quote for clients without XEP-0461 is marked.
    let quote = "> Alice: the typo\n";
    assert_eq!(body(&answer), Some(format!("{quote}yes indeed").as_str()));
    let range = payload(&answer, "fallback", "urn:xmpp:fallback:0")
        .and_then(|f| f.get_child("body", "urn:xmpp:fallback:0"))
        .map(|b| {
            (
                b.attr("start").unwrap().to_owned(),
                b.attr("end").unwrap().to_owned(),
            )
        });
    assert_eq!(range, Some(("0".into(), quote.chars().count().to_string())));
    let reply = payload(&answer, "reply", REPLY).unwrap();
    assert_eq!(reply.attr("id"), Some(e1.as_str()));
    assert_eq!(reply.attr("to"), Some(format!("{jid}/Alice").as_str()));
    let quote = "> Bob: hello world\n";
    alice
        .send(rich_message(
            &jid,
            "m3",
            Some(&format!("{quote}right back")),
            &format!(
                "<reply xmlns='{REPLY}' to='{jid}/Bob' id='{b1}'/>\
                 <fallback xmlns='urn:xmpp:fallback:0' for='{REPLY}'>\
                 <body start='0' end='{}'/></fallback>",
                quote.chars().count()
            ),
        ))
        .await;
    let replied = scene
        .bob
        .next_event(&room, |e| is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(replied["content"]["body"], "right back");
    assert_eq!(
        replied["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        b1.as_str()
    );
    let e3 = replied["event_id"].as_str().unwrap().to_owned();

    // Retractions: alice's own, bob's own, and bob moderating alice.
    alice
        .send(rich_message(
            &jid,
            "x1",
            None,
            &format!("<retract xmlns='{RETRACT}' id='{e1}'/>"),
        ))
        .await;
    let redacted = redaction_by(&scene.bob, &room, &puppet).await;
    assert_eq!(redacted, e1);
    scene.bob.redact(&room, &b1, "").await;
    let gone = with_payload(&mut alice, "/Bob", "retract", RETRACT).await;
    assert_eq!(
        payload(&gone, "retract", RETRACT).unwrap().attr("id"),
        Some(b1.as_str())
    );
    scene.bob.redact(&room, &e3, "off topic").await;
    let moderated = alice
        .expect("moderation", |s| match s {
            Stanza::Message(m) if sender(s) == jid => {
                let retract = payload(m, "retract", RETRACT)?;
                let by = retract.get_child("moderated", "urn:xmpp:message-moderate:1")?;
                Some((
                    retract.attr("id")?.to_owned(),
                    by.attr("by")?.to_owned(),
                    retract.clone(),
                ))
            }
            _ => None,
        })
        .await;
    assert_eq!(moderated.0, e3);
    assert_eq!(moderated.1, format!("{jid}/Bob"));
    assert_eq!(
        moderated
            .2
            .get_child("reason", RETRACT)
            .map(|r| r.text())
            .as_deref(),
        Some("off topic")
    );
}

/// The event the next redaction by `sender` in the room removes.
async fn redaction_by(client: &MatrixClient, room: &str, sender: &str) -> String {
    let redaction = client
        .next_event(
            room,
            |e| e["type"] == "m.room.redaction" && e["sender"] == sender,
            WAIT,
        )
        .await;
    // Room version 11 moved `redacts` into the content.
    redaction["content"]["redacts"]
        .as_str()
        .or(redaction["redacts"].as_str())
        .expect("a redaction names its event")
        .to_owned()
}
