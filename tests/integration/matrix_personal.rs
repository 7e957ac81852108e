//! Personal Matrix logins end to end: an XMPP user on Prosody logs in to their own account
//! on a real Synapse (by ad-hoc command and by XEP-0077), joins a room as themselves, and
//! talks with Matrix users; the login survives a gateway restart, and a logout from another
//! Matrix client is noticed. How a test logs in is in `login`; the rooms of spaces, as
//! the Matrix service lists them, in `spaces`.

mod login;
mod spaces;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use xmpp_client::minidom::Element;
use xmpp_client::parsers::message::MessageType;
use xmpp_client::{IqResponse, Stanza};

use crate::harness::muc::{
    body, chat_from, enter, groupchat_from, groupchat_to, invitation, payload, sender, with_payload,
};
use crate::harness::scene::{Scene, GW, HS};
pub(crate) use login::{command, gateway_devices, log_in, next_step, note, register_carol, DATA};
use login::{form, nc, COMMANDS};

const WAIT: Duration = Duration::from_secs(20);
const REGISTER: &str = "jabber:iq:register";
const CORRECT: &str = "urn:xmpp:message-correct:0";
const REACTIONS: &str = "urn:xmpp:reactions:0";
const RETRACT: &str = "urn:xmpp:message-retract:1";

fn room_jid(alias: &str) -> String {
    format!("#{alias}%{HS}@{GW}")
}

fn is_text(event: &Value, sender: &str, text: &str) -> bool {
    event["type"] == "m.room.message"
        && event["sender"] == sender
        && event["content"]["body"] == text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_to_their_own_account_and_talks_as_themselves() {
    let mut scene = Scene::matrix().await;
    let (phone, carol) = register_carol(&scene).await;
    let room = scene.public_room("plaza", "Personal logins").await;
    phone.join(&room).await;
    let mut alice = scene.xmpp_user("alice").await;

    // The service offers the login command.
    let list = Element::builder("query", "http://jabber.org/protocol/disco#items")
        .attr(nc("node"), COMMANDS)
        .build();
    let IqResponse::Result(Some(items)) = alice.get(GW, list).await else {
        panic!("no command list")
    };
    assert!(
        items
            .children()
            .any(|i| i.attr("node") == Some("matrix-login")),
        "{items:?}"
    );

    // A wrong password is an error with the homeserver's words; the right one logs in.
    let (kind, text) = log_in(&scene, &mut alice, &carol, "wrong").await;
    assert_eq!(kind, "error", "{text}");
    assert!(text.contains("Invalid username or password"), "{text}");
    let (kind, text) = log_in(&scene, &mut alice, &carol, "carol-password").await;
    assert_eq!(kind, "info", "{text}");
    assert!(text.contains(&carol), "{text}");
    assert_eq!(
        gateway_devices(&phone).await.len(),
        1,
        "one device for the gateway"
    );
    assert!(text.contains("connected"), "the first sync is done: {text}");

    // No password: a login on the homeserver's web page, which Synapse (no authorization
    // server) does not offer: the form again, saying so, and her session untouched.
    let url = scene.synapse.url();
    let browser = [("account", carol.as_str()), ("homeserver", url.as_str())];
    let again = command(&mut alice, "matrix-login", &browser).await;
    assert_eq!(again.attr("status"), Some("executing"), "{again:?}");
    let problem = again.get_child("note", COMMANDS).map(|n| n.text());
    let problem = problem.unwrap_or_default();
    assert!(
        problem.contains("takes passwords, not browser logins"),
        "{problem}"
    );
    let (_, status) = note(&command(&mut alice, "matrix-status", &[]).await);
    assert!(
        status.contains(&carol) && status.contains("connected"),
        "{status}"
    );
    assert_eq!(
        gateway_devices(&phone).await.len(),
        1,
        "still the one device"
    );

    // The service lists her rooms, at the addresses that join them.
    let query = Element::builder("query", "http://jabber.org/protocol/disco#items").build();
    let IqResponse::Result(Some(items)) = alice.get(GW, query).await else {
        panic!("no room list")
    };
    let plaza = items
        .children()
        .find(|i| i.attr("jid") == Some(room_jid("plaza").as_str()))
        .unwrap_or_else(|| panic!("her room is listed: {items:?}"));
    let label = plaza.attr("name").unwrap_or_default();
    assert!(label.contains("Personal logins"), "with its topic: {label}");

    // Alice joins the room as carol, not as a puppet.
    enter(&mut alice, &room_jid("plaza"), "Carol").await;
    scene.bob.catch_up().await;
    alice
        .send(groupchat_to(&room_jid("plaza"), "hello from XMPP"))
        .await;
    scene
        .bob
        .next_event(&room, |e| is_text(e, &carol, "hello from XMPP"), WAIT)
        .await;

    // Bob's message reaches her; so does what she sends from her phone, as her own.
    let hi = scene.bob.send_text(&room, "hi carol").await;
    let m = groupchat_from(&mut alice, "/bob").await;
    assert_eq!(body(&m), Some("hi carol"));
    assert_eq!(
        m.id.map(|id| id.0),
        Some(hi.clone()),
        "known by its event id"
    );
    let from_phone = phone.send_text(&room, "from my phone").await;
    let (m, id) = alice
        .expect("her own message from her phone", |s| match s {
            Stanza::Message(m)
                if m.type_ == MessageType::Groupchat && body(m) == Some("from my phone") =>
            {
                Some((sender(s), m.id.clone().map(|id| id.0)))
            }
            _ => None,
        })
        .await;
    assert!(m.ends_with("/Carol"), "shown under her nick: {m}");
    assert_eq!(id, Some(from_phone.clone()), "known by its event id");

    // And what she does to messages from her phone: an edit, a reaction, a redaction.
    let edit = serde_json::json!({
        "msgtype": "m.text", "body": "* from my phone!",
        "m.new_content": {"msgtype": "m.text", "body": "from my phone!"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": from_phone},
    });
    phone.send(&room, "m.room.message", edit).await;
    let m = with_payload(&mut alice, "/Carol", "replace", CORRECT).await;
    assert_eq!(body(&m), Some("from my phone!"));
    let replace = payload(&m, "replace", CORRECT).unwrap();
    assert_eq!(replace.attr("id"), Some(from_phone.as_str()));
    let reaction = serde_json::json!({
        "m.relates_to": {"rel_type": "m.annotation", "event_id": hi, "key": "👍"}
    });
    phone.send(&room, "m.reaction", reaction).await;
    let m = with_payload(&mut alice, "/Carol", "reactions", REACTIONS).await;
    let reactions = payload(&m, "reactions", REACTIONS).unwrap();
    assert_eq!(reactions.attr("id"), Some(hi.as_str()));
    assert_eq!(
        reactions.children().next().map(|r| r.text()),
        Some("👍".to_owned())
    );
    phone.redact(&room, &from_phone, "never mind").await;
    let m = with_payload(&mut alice, "/Carol", "retract", RETRACT).await;
    let retract = payload(&m, "retract", RETRACT).unwrap();
    assert_eq!(retract.attr("id"), Some(from_phone.as_str()));

    // Invited to a private room with a mixed-case room version 12 id (in no directory), she
    // joins it through its lower-cased JID: her own rooms know its case.
    let private = scene
        .bob
        .create_room(serde_json::json!({"preset": "private_chat", "invite": [carol]}))
        .await;
    assert_ne!(
        private,
        private.to_lowercase(),
        "the id has upper case: {private}"
    );
    let private_jid = format!("{}@{GW}", private.to_lowercase());
    let invited_to = invitation(&mut alice).await.to_lowercase();
    assert_eq!(invited_to, private_jid);
    enter(&mut alice, &private_jid, "Carol").await;
    alice.send(groupchat_to(&private_jid, "found it")).await;
    scene
        .bob
        .next_event(&private, |e| is_text(e, &carol, "found it"), WAIT)
        .await;

    // The status command tells who and how.
    let (_, text) = note(&command(&mut alice, "matrix-status", &[]).await);
    assert!(text.contains(&carol), "{text}");

    // A restart of the gateway keeps the login: no new device, and the room still works.
    // What bob says meanwhile comes in the join history, from the homeserver, once.
    scene.stop_gateway().await;
    scene
        .bob
        .send_text(&room, "while the gateway was down")
        .await;
    scene.start_gateway().await;
    enter(&mut alice, &room_jid("plaza"), "Carol").await;
    let mut history = Vec::new();
    let plaza = room_jid("plaza");
    alice
        .expect("the join history, up to the subject", |s| match s {
            _ if !sender(s).starts_with(&plaza) => None,
            Stanza::Message(m) if !m.subjects.is_empty() => Some(()),
            Stanza::Message(m) => {
                history.extend(body(m).map(str::to_owned));
                None
            }
            _ => None,
        })
        .await;
    let count = |text: &str| history.iter().filter(|b| *b == text).count();
    assert_eq!(count("while the gateway was down"), 1, "{history:?}");
    assert_eq!(
        count("hi carol"),
        1,
        "once, though archived before: {history:?}"
    );
    scene.bob.send_text(&room, "after the restart").await;
    let from = alice
        .expect("bob's message after the restart", |s| match s {
            Stanza::Message(m) if body(m) == Some("after the restart") => Some(sender(s)),
            _ => None,
        })
        .await;
    assert!(from.ends_with("/bob"), "{from}");
    assert_eq!(gateway_devices(&phone).await.len(), 1, "still one device");

    // Logged out from another client: the gateway notices and tells her.
    let devices = gateway_devices(&phone).await;
    let path = ["devices", devices[0].as_str()];
    phone.request(Method::DELETE, &path, Some(serde_json::json!({
        "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "carol"}, "password": "carol-password"}
    }))).await;
    let told = alice
        .expect("the notice of the ended session", |s| match s {
            Stanza::Message(m) if body(m).is_some_and(|b| b.contains("ended elsewhere")) => {
                Some(sender(s))
            }
            _ => None,
        })
        .await;
    assert!(told.ends_with(GW), "{told}");
    let (_, text) = note(&command(&mut alice, "matrix-status", &[]).await);
    assert!(text.contains("not logged in"), "{text}");
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_band_registration_logs_in_and_out() {
    let scene = Scene::matrix().await;
    let dave = scene.synapse.register("dave", "dave-password", false).await;
    let mut alice = scene.xmpp_user("alice").await;

    // The registration form.
    let query = Element::builder("query", REGISTER).build();
    let IqResponse::Result(Some(asked)) = alice.get(GW, query).await else {
        panic!("no registration form")
    };
    assert!(
        asked.get_child("registered", REGISTER).is_none(),
        "{asked:?}"
    );
    let fields: Vec<_> = asked
        .get_child("x", DATA)
        .expect("a data form")
        .children()
        .filter_map(|f| f.attr("var"))
        .map(str::to_owned)
        .collect();
    assert!(fields.iter().any(|f| f == "account"), "{fields:?}");

    // A wrong password is not-authorized; the right one registers.
    let url = scene.synapse.url();
    let register = |password: &str| {
        Element::builder("query", REGISTER)
            .append(form(
                "submit",
                &[
                    ("FORM_TYPE", REGISTER),
                    ("account", dave.user_id()),
                    ("password", password),
                    ("homeserver", &url),
                ],
            ))
            .build()
    };
    match alice.set(GW, register("wrong")).await {
        IqResponse::Error(e) => {
            let text = format!("{e:?}");
            assert!(text.contains("NotAuthorized"), "{text}");
        }
        other => panic!("a wrong password registered: {other:?}"),
    }
    let IqResponse::Result(_) = alice.set(GW, register("dave-password")).await else {
        panic!("the right password did not register")
    };
    let query = Element::builder("query", REGISTER).build();
    let IqResponse::Result(Some(asked)) = alice.get(GW, query).await else {
        panic!("no registration form")
    };
    assert!(
        asked.get_child("registered", REGISTER).is_some(),
        "{asked:?}"
    );
    assert_eq!(gateway_devices(&dave).await.len(), 1);

    // Unregistering logs out: the device is gone.
    let remove = Element::builder("query", REGISTER)
        .append(Element::builder("remove", REGISTER).build())
        .build();
    let IqResponse::Result(_) = alice.set(GW, remove).await else {
        panic!("unregistering failed")
    };
    assert!(
        gateway_devices(&dave).await.is_empty(),
        "the device is signed out"
    );

    // An access token from another client logs in too, its account found from the token.
    let other = scene.synapse.login("dave", "dave-password").await;
    let answer = command(
        &mut alice,
        "matrix-login",
        &[("token", other.access_token()), ("homeserver", &url)],
    )
    .await;
    let (kind, text) = note(&answer);
    assert_eq!(kind, "info", "{text}");
    assert!(text.contains(dave.user_id()), "{text}");
    let (_, text) = note(&command(&mut alice, "matrix-status", &[]).await);
    assert!(text.contains(dave.user_id()), "{text}");
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_chat_maps_messages_edits_reactions_and_retractions_both_ways() {
    let scene = Scene::matrix().await;
    let (_, carol) = register_carol(&scene).await;
    let mut alice = scene.xmpp_user("alice").await;
    let (kind, text) = log_in(&scene, &mut alice, &carol, "carol-password").await;
    assert_eq!(kind, "info", "{text}");

    // Bob opens a direct chat with carol: the gateway joins it for her.
    let direct = scene
        .bob
        .create_room(serde_json::json!({
            "is_direct": true, "invite": [carol], "preset": "trusted_private_chat"
        }))
        .await;
    let joined = |e: &Value| {
        e["type"] == "m.room.member"
            && e["state_key"] == carol.as_str()
            && e["content"]["membership"] == "join"
    };
    scene.bob.next_event(&direct, joined, WAIT).await;

    // Matrix → XMPP: a message, its edit, a reaction, and its retraction.
    let bob_jid = format!("bob%{HS}@{GW}");
    let original = scene.bob.send_text(&direct, "psst").await;
    let m = chat_from(&mut alice, &bob_jid).await;
    assert_eq!(body(&m), Some("psst"));
    assert_eq!(
        m.id.map(|id| id.0),
        Some(original.clone()),
        "known by its event id"
    );
    let edit = serde_json::json!({
        "msgtype": "m.text", "body": "* psst!",
        "m.new_content": {"msgtype": "m.text", "body": "psst!"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    });
    scene.bob.send(&direct, "m.room.message", edit).await;
    let m = with_payload(&mut alice, &bob_jid, "replace", CORRECT).await;
    assert_eq!(body(&m), Some("psst!"));
    let replace = payload(&m, "replace", CORRECT).unwrap();
    assert_eq!(replace.attr("id"), Some(original.as_str()));
    let reaction = serde_json::json!({
        "m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}
    });
    scene.bob.send(&direct, "m.reaction", reaction).await;
    let m = with_payload(&mut alice, &bob_jid, "reactions", REACTIONS).await;
    let reactions = payload(&m, "reactions", REACTIONS).unwrap();
    assert_eq!(reactions.attr("id"), Some(original.as_str()));
    assert_eq!(
        reactions.children().next().map(|r| r.text()),
        Some("👍".to_owned())
    );
    scene.bob.redact(&direct, &original, "oops").await;
    let m = with_payload(&mut alice, &bob_jid, "retract", RETRACT).await;
    let retract = payload(&m, "retract", RETRACT).unwrap();
    assert_eq!(retract.attr("id"), Some(original.as_str()));

    // XMPP → Matrix: a message into the same room, as carol, and a reaction to bob's.
    let later = scene.bob.send_text(&direct, "still there?").await;
    chat_from(&mut alice, &bob_jid).await;
    let mut reply = xmpp_client::parsers::message::Message::chat(Some(bob_jid.parse().unwrap()));
    reply.bodies.insert(Default::default(), "yes".into());
    reply.id = Some(xmpp_client::parsers::message::Id("yes-1".into()));
    alice.send(reply).await;
    let sent = scene
        .bob
        .next_event(&direct, |e| is_text(e, &carol, "yes"), WAIT)
        .await;
    assert_eq!(sent["room_id"], direct.as_str(), "the same direct room");
    let mut react = xmpp_client::parsers::message::Message::chat(Some(bob_jid.parse().unwrap()));
    react.payloads.push(
        Element::builder("reactions", REACTIONS)
            .attr(nc("id"), later.as_str())
            .append(Element::builder("reaction", REACTIONS).append("🎉").build())
            .build(),
    );
    alice.send(react).await;
    let reacted = scene
        .bob
        .next_event(
            &direct,
            |e| e["type"] == "m.reaction" && e["sender"] == carol.as_str(),
            WAIT,
        )
        .await;
    assert_eq!(
        reacted["content"]["m.relates_to"]["event_id"],
        later.as_str()
    );
    assert_eq!(reacted["content"]["m.relates_to"]["key"], "🎉");

    // Typing and read markers, both ways, through carol's own account.
    scene.bob.typing(&direct, true).await;
    alice
        .expect("bob typing", |s| match s {
            Stanza::Message(m) if sender(s) == bob_jid && body(m).is_none() => m
                .payloads
                .iter()
                .find(|p| p.is("composing", "http://jabber.org/protocol/chatstates"))
                .map(|_| ()),
            _ => None,
        })
        .await;
    scene
        .bob
        .read_up_to(&direct, sent["event_id"].as_str().unwrap())
        .await;
    let read = alice
        .expect("bob's read marker", |s| match s {
            Stanza::Message(m) if sender(s) == bob_jid && body(m).is_none() => m
                .payloads
                .iter()
                .find(|p| p.is("displayed", "urn:xmpp:chat-markers:0"))
                .and_then(|p| p.attr("id").map(str::to_owned)),
            _ => None,
        })
        .await;
    // Known to alice's client by the id it sent "yes" with.
    assert_eq!(read, "yes-1");
    let mut composing =
        xmpp_client::parsers::message::Message::chat(Some(bob_jid.parse().unwrap()));
    composing.bodies.clear();
    composing
        .payloads
        .push(Element::builder("composing", "http://jabber.org/protocol/chatstates").build());
    alice.send(composing).await;
    scene
        .bob
        .next_event(
            &direct,
            |e| {
                e["type"] == "m.typing"
                    && e["content"]["user_ids"]
                        .as_array()
                        .is_some_and(|u| u.iter().any(|u| u == carol.as_str()))
            },
            WAIT,
        )
        .await;
    let mut marker = xmpp_client::parsers::message::Message::chat(Some(bob_jid.parse().unwrap()));
    marker.payloads.push(
        Element::builder("displayed", "urn:xmpp:chat-markers:0")
            .attr(nc("id"), later.as_str())
            .build(),
    );
    alice.send(marker).await;
    scene
        .bob
        .next_event(
            &direct,
            |e| {
                e["type"] == "m.receipt"
                    && e["content"][later.as_str()]["m.read"][carol.as_str()].is_object()
            },
            WAIT,
        )
        .await;
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_restart_loses_nothing_and_the_user_is_told() {
    let mut scene = Scene::matrix().await;
    let (phone, carol) = register_carol(&scene).await;
    let room = scene.public_room("outage", "").await;
    phone.join(&room).await;
    let mut alice = scene.xmpp_user("alice").await;
    log_in(&scene, &mut alice, &carol, "carol-password").await;
    let jid = room_jid("outage");
    enter(&mut alice, &jid, "Carol").await;
    scene.bob.catch_up().await;

    // Sent while the homeserver is down: kept and delivered once it is back, in order.
    scene.synapse.stop().await;
    for n in 0..5 {
        alice
            .send(groupchat_to(&jid, &format!("while down {n}")))
            .await;
    }
    let notice = |words: &'static str| {
        move |s: &Stanza| match s {
            Stanza::Message(m) if body(m).is_some_and(|b| b.contains(words)) => Some(sender(s)),
            _ => None,
        }
    };
    let from = alice
        .expect(
            "the notice of the outage",
            notice("cannot reach the homeserver"),
        )
        .await;
    assert!(from.ends_with(GW), "{from}");
    scene.synapse.restart().await;
    let mut received = Vec::new();
    while received.len() < 5 {
        let event = scene
            .bob
            .next_event(
                &room,
                |e| e["type"] == "m.room.message" && e["sender"] == carol.as_str(),
                Duration::from_secs(90),
            )
            .await;
        received.push(event["content"]["body"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (0..5).map(|n| format!("while down {n}")).collect();
    assert_eq!(received, expected, "all five, in order, once");
    alice
        .expect(
            "the notice of the return",
            notice("connected to the homeserver again"),
        )
        .await;

    // And the sync is back: bob's message reaches her.
    scene.bob.send_text(&room, "welcome back").await;
    alice
        .expect("bob's message after the outage", |s| match s {
            Stanza::Message(m) if body(m) == Some("welcome back") => Some(()),
            _ => None,
        })
        .await;
    scene.stop().await;
}
