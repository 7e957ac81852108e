//! What makes the gateway feel native in XMPP clients (issue #19), end to end against the
//! real servers: occupant-ids, styling.

use std::time::Duration;

use serde_json::json;
use xmpp_client::parsers::message::MessageType;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::Stanza;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;

const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
const WAIT: Duration = Duration::from_secs(15);

/// The features a room's disco#info advertises.
async fn room_features(client: &mut crate::harness::TestClient, room: &str) -> Vec<String> {
    let query =
        xmpp_client::minidom::Element::builder("query", "http://jabber.org/protocol/disco#info")
            .build();
    let xmpp_client::IqResponse::Result(Some(info)) = client.get(room, query).await else {
        panic!("no disco#info from {room}")
    };
    info.children()
        .filter_map(|f| f.attr("var"))
        .map(str::to_owned)
        .collect()
}

/// An IRC user keeps one occupant-id through a nick change and a gateway restart, on every
/// presence and message, and the room says it gives them; IRC's formatting reaches XMPP as
/// XEP-0393 styling, and styling goes back as IRC's codes where the server asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_users_keep_their_occupant_id_and_formatting_becomes_styling() {
    // InspIRCd shows every member's host in NAMES (userhost-in-names): ids from hosts.
    let mut s = Scene::irc(IrcKind::Inspircd)
        .server_keys("irc_formatting = true\n")
        .await;
    let room = Scene::room("#native");
    let mut bob = s.irc_user_in("bob", "#native").await;
    let mut alice = s.xmpp_user("alice").await;
    alice.send(join(&format!("{room}/alice"))).await;
    let first = presence_from(&mut alice, "/bob", PresenceType::None).await;
    let bobs = occupant_id(&first.into()).expect("bob's presence has an occupant-id");
    let own = self_presence(&mut alice, "alice").await;
    let alices = occupant_id(&own.into()).expect("the self-presence has one too");
    assert_ne!(bobs, alices);

    assert!(
        room_features(&mut alice, &room)
            .await
            .contains(&OCCUPANT_ID.to_owned()),
        "rooms advertise occupant-ids"
    );

    // A nick change: both presences carry bob's id; so does what he says after.
    bob.send("NICK robert").await;
    let gone = presence_from(&mut alice, "/bob", PresenceType::Unavailable).await;
    assert_eq!(occupant_id(&gone.into()).as_ref(), Some(&bobs));
    let back = presence_from(&mut alice, "/robert", PresenceType::None).await;
    assert_eq!(occupant_id(&back.into()).as_ref(), Some(&bobs));
    bob.send("PRIVMSG #native :\x02loud\x02 and \x0304,1red\x03 \x1dsoft\x1d \x1funder\x1f")
        .await;
    let said = groupchat_from(&mut alice, "/robert").await;
    assert_eq!(body(&said), Some("*loud* and red _soft_ under"));
    assert_eq!(occupant_id(&said.into()).as_ref(), Some(&bobs));

    // Styling from XMPP becomes IRC's codes (irc_formatting), the directives left out.
    alice
        .send(groupchat_to(&room, "*bold* _it_ ~gone~ `x*y` 2*3*4"))
        .await;
    let line = bob
        .expect("alice's styled message", |l| {
            l.starts_with(":alice!") && l.contains("PRIVMSG #native :")
        })
        .await;
    assert!(
        line.ends_with("PRIVMSG #native :\x02bold\x02 \x1dit\x1d \x1egone\x1e \x11x*y\x11 2*3*4"),
        "{line:?}"
    );
    // The room shows alice her message as she wrote it.
    let echo = groupchat_from(&mut alice, "/alice").await;
    assert_eq!(body(&echo), Some("*bold* _it_ ~gone~ `x*y` 2*3*4"));

    // Another gateway on the same database: the same ids.
    s.stop_gateway().await;
    s.start_gateway().await;
    let mut alice = s.xmpp_user_again("alice").await;
    alice.send(join(&format!("{room}/alice"))).await;
    let again = presence_from(&mut alice, "/robert", PresenceType::None).await;
    assert_eq!(occupant_id(&again.into()), Some(bobs));
    let own = self_presence(&mut alice, "alice").await;
    assert_eq!(occupant_id(&own.into()), Some(alices));

    // A topic with codes comes as styling too.
    bob.send("TOPIC #native :\x02news\x02 today").await;
    let subject = alice
        .expect("the topic", |s| match s {
            Stanza::Message(m) if m.type_ == MessageType::Groupchat => m
                .subjects
                .values()
                .next()
                .filter(|s| !s.is_empty())
                .cloned(),
            _ => None,
        })
        .await;
    assert_eq!(subject, "*news* today");
}

/// Matrix HTML reaches XMPP as XEP-0393 styling with mentions as names; styling from XMPP
/// reaches Matrix as HTML, and addressing a member (`Bob: …`) mentions them.
#[tokio::test]
async fn matrix_html_and_xmpp_styling_map_both_ways_with_mentions() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("styled", "").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;
    let room_jid = crate::matrix::room_jid("styled");
    enter(&mut alice, &room_jid, "Alice").await;
    scene.bob.catch_up().await;

    let puppet = Scene::puppet("alice");
    let html = format!(
        "<a href=\"https://matrix.to/#/{puppet}\">Alice</a>: <b>look</b> at \
         <a href=\"https://example.org/x\">this</a><pre><code>a *b*</code></pre>"
    );
    let content = json!({"msgtype": "m.text", "body": "Alice: look at this\n    a *b*",
                         "format": "org.matrix.custom.html", "formatted_body": html});
    scene.bob.send(&room, "m.room.message", content).await;
    let got = groupchat_from(&mut alice, "/Bob").await;
    assert_eq!(
        body(&got),
        Some("Alice: *look* at this <https://example.org/x>\n\n```\na *b*\n```")
    );

    alice
        .send(groupchat_to(&room_jid, "Bob: *sure*, _later_"))
        .await;
    let event = scene
        .bob
        .next_event(&room, |e| crate::matrix::is_message_from(e, &puppet), WAIT)
        .await;
    let content = &event["content"];
    assert_eq!(content["body"], "Bob: *sure*, _later_");
    assert_eq!(content["format"], "org.matrix.custom.html");
    assert_eq!(
        content["formatted_body"],
        format!(
            "<a href=\"https://matrix.to/#/{}\">Bob</a>: <strong>sure</strong>, <em>later</em>",
            scene.bob.user_id()
        )
    );
    assert_eq!(
        content["m.mentions"]["user_ids"],
        json!([scene.bob.user_id()])
    );

    // Plain text goes plain.
    alice.send(groupchat_to(&room_jid, "2*3*4")).await;
    let event = scene
        .bob
        .next_event(&room, |e| crate::matrix::is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(event["content"]["body"], "2*3*4");
    assert!(event["content"].get("formatted_body").is_none(), "{event}");
    assert!(event["content"].get("m.mentions").is_none(), "{event}");

    // A nick named anywhere mentions its member; the sender's own never.
    alice
        .send(groupchat_to(&room_jid, "Alice thanks Bob, not bob!"))
        .await;
    let event = scene
        .bob
        .next_event(&room, |e| crate::matrix::is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(
        event["content"]["m.mentions"]["user_ids"],
        json!([scene.bob.user_id()])
    );
}

/// XEP-0425: `<moderate>` for the message with `id`, with a reason.
fn moderation(id: &str, reason: &str) -> xmpp_client::minidom::Element {
    format!(
        "<moderate xmlns='urn:xmpp:message-moderate:1' id='{id}'>\
         <retract xmlns='urn:xmpp:message-retract:1'/><reason>{reason}</reason></moderate>"
    )
    .parse()
    .unwrap()
}

/// An XMPP moderator removes a Matrix user's message: a redaction with the reason, which
/// the homeserver refuses without the power to redact (the moderator is told) and carries
/// out with it; the room shows the removal as XEP-0425.
#[tokio::test]
async fn an_xmpp_moderator_removes_a_matrix_message_as_a_redaction() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("moderated", "").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = crate::matrix::room_jid("moderated");
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;
    let spam = scene.bob.send_text(&room, "buy now").await;
    let got = groupchat_from(&mut alice, "/Bob").await;
    let stanza_id = payload(&got, "stanza-id", "urn:xmpp:sid:0")
        .and_then(|s| s.attr("id"))
        .map(str::to_owned);
    assert_eq!(stanza_id.as_deref(), Some(spam.as_str()));

    // Without the power to redact: the homeserver's refusal reaches alice.
    let answer = alice.set(&jid, moderation(&spam, "spam")).await;
    assert!(
        matches!(answer, xmpp_client::IqResponse::Result(_)),
        "{answer:?}"
    );
    let refused = room_notice(&mut alice, &jid).await;
    assert!(refused.contains("not removed"), "{refused}");

    // With it (power level 50, a moderator): removed with the reason.
    let puppet = Scene::puppet("alice");
    let mut power = scene.bob.state(&room, "m.room.power_levels", "").await;
    power["users"][&puppet] = json!(50);
    scene
        .bob
        .set_state(&room, "m.room.power_levels", "", power)
        .await;
    presence_from(&mut alice, "/Alice", PresenceType::None).await;
    let answer = alice.set(&jid, moderation(&spam, "spam")).await;
    assert!(
        matches!(answer, xmpp_client::IqResponse::Result(_)),
        "{answer:?}"
    );
    let redaction = scene
        .bob
        .next_event(
            &room,
            |e| e["type"] == "m.room.redaction" && e["sender"] == puppet.as_str(),
            WAIT,
        )
        .await;
    let redacts = redaction["redacts"]
        .as_str()
        .or(redaction["content"]["redacts"].as_str());
    assert_eq!(redacts, Some(spam.as_str()));
    assert_eq!(redaction["content"]["reason"], "spam");
    let shown = alice
        .expect("the removal", |s| match s {
            Stanza::Message(m) if sender(s) == jid => {
                let retract = payload(m, "retract", "urn:xmpp:message-retract:1")?;
                let by = retract.get_child("moderated", "urn:xmpp:message-moderate:1")?;
                Some((retract.attr("id")?.to_owned(), by.attr("by")?.to_owned()))
            }
            _ => None,
        })
        .await;
    assert_eq!(shown, (spam, format!("{jid}/Alice")));

    // The room says it takes moderation.
    assert!(room_features(&mut alice, &jid)
        .await
        .contains(&"urn:xmpp:message-moderate:1".to_owned()));
}

/// A body-less message to `to` carrying one signal payload (`xml`).
fn signal(to: &str, type_: MessageType, xml: &str) -> xmpp_client::parsers::message::Message {
    let mut m = xmpp_client::parsers::message::Message::new(Some(to.parse().unwrap()));
    m.type_ = type_;
    m.payloads.push(xml.parse().unwrap());
    m
}

const COMPOSING: &str = "<composing xmlns='http://jabber.org/protocol/chatstates'/>";
const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
const MARKERS: &str = "urn:xmpp:chat-markers:0";

/// The next body-less message from `from` (a JID, or an in-room suffix) carrying a payload
/// of `ns`: (its name, its `id`).
async fn next_signal(
    client: &mut crate::harness::TestClient,
    from: &str,
    ns: &str,
) -> (String, Option<String>) {
    client
        .expect(&format!("a {ns} signal from {from}"), |s| match s {
            Stanza::Message(m) if sender(s).ends_with(from) && body(m).is_none() => m
                .payloads
                .iter()
                .find(|p| p.ns() == ns)
                .map(|p| (p.name().to_owned(), p.attr("id").map(str::to_owned))),
            _ => None,
        })
        .await
}

fn typists(event: &serde_json::Value) -> Vec<String> {
    event["content"]["user_ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect()
}

/// Typing (XEP-0085 ↔ m.typing) and read markers (XEP-0333 ↔ m.read) cross both ways, in a
/// room and in a direct chat; a message ends its sender's typing.
#[tokio::test]
async fn typing_and_read_markers_cross_between_xmpp_and_matrix() {
    let scene = Scene::matrix().await;
    let room = scene.public_room("signals", "").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = crate::matrix::room_jid("signals");
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;
    let puppet = Scene::puppet("alice");

    // Matrix → XMPP in a room.
    scene.bob.typing(&room, true).await;
    let got = next_signal(&mut alice, "/Bob", CHAT_STATES).await;
    assert_eq!(got.0, "composing");
    scene.bob.typing(&room, false).await;
    let got = next_signal(&mut alice, "/Bob", CHAT_STATES).await;
    assert_eq!(got.0, "active");
    alice.send(groupchat_to(&jid, "read me")).await;
    let mine = scene
        .bob
        .next_event(&room, |e| crate::matrix::is_message_from(e, &puppet), WAIT)
        .await;
    let mine = mine["event_id"].as_str().unwrap().to_owned();
    scene.bob.read_up_to(&room, &mine).await;
    let got = next_signal(&mut alice, "/Bob", MARKERS).await;
    assert_eq!(got, ("displayed".to_owned(), Some(mine)));

    // XMPP → Matrix in a room: the puppet types, its message ends it, it reads.
    alice
        .send(signal(&jid, MessageType::Groupchat, COMPOSING))
        .await;
    scene
        .bob
        .next_event(
            &room,
            |e| e["type"] == "m.typing" && typists(e).contains(&puppet),
            WAIT,
        )
        .await;
    alice.send(groupchat_to(&jid, "typed")).await;
    scene
        .bob
        .next_event(
            &room,
            |e| e["type"] == "m.typing" && !typists(e).contains(&puppet),
            WAIT,
        )
        .await;
    let theirs = scene.bob.send_text(&room, "did you read this?").await;
    groupchat_from(&mut alice, "/Bob").await;
    let marker = format!("<displayed xmlns='{MARKERS}' id='{theirs}'/>");
    alice
        .send(signal(&jid, MessageType::Groupchat, &marker))
        .await;
    scene
        .bob
        .next_event(
            &room,
            |e| {
                e["type"] == "m.receipt"
                    && e["content"][theirs.as_str()]["m.read"][puppet.as_str()].is_object()
            },
            WAIT,
        )
        .await;

    // A direct chat: both ways too.
    let bob_jid = format!(
        "bob%{}@{}",
        crate::harness::scene::HS,
        crate::harness::scene::GW
    );
    let mut hello = xmpp_client::parsers::message::Message::chat(Some(bob_jid.parse().unwrap()));
    hello.bodies.insert(Default::default(), "hello bob".into());
    hello.id = Some(xmpp_client::parsers::message::Id("dm-1".into()));
    alice.send(hello).await;
    let invite = scene.bob.next_invite(WAIT).await;
    let direct = invite["room_id"].as_str().unwrap().to_owned();
    scene.bob.join(&direct).await;
    let first = scene
        .bob
        .next_event(
            &direct,
            |e| crate::matrix::is_message_from(e, &puppet),
            WAIT,
        )
        .await;
    scene.bob.typing(&direct, true).await;
    let got = next_signal(&mut alice, &bob_jid, CHAT_STATES).await;
    assert_eq!(got.0, "composing");
    // bob reads alice's message: the marker names it by the id alice sent it with.
    scene
        .bob
        .read_up_to(&direct, first["event_id"].as_str().unwrap())
        .await;
    let got = next_signal(&mut alice, &bob_jid, MARKERS).await;
    assert_eq!(got, ("displayed".to_owned(), Some("dm-1".to_owned())));
    alice
        .send(signal(&bob_jid, MessageType::Chat, COMPOSING))
        .await;
    scene
        .bob
        .next_event(
            &direct,
            |e| e["type"] == "m.typing" && typists(e).contains(&puppet),
            WAIT,
        )
        .await;
}

/// IRC's `+typing` client tag ↔ XEP-0085, where the server passes client tags on
/// (InspIRCd with message-tags).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_typing_tags_cross_both_ways() {
    let s = Scene::irc(IrcKind::Inspircd).await;
    let room = Scene::room("#typing");
    let mut bob = s.irc_user("bob").await;
    bob.send("CAP REQ :message-tags").await;
    bob.expect("message-tags", |l| {
        l.contains(" ACK ") && l.contains("message-tags")
    })
    .await;
    bob.join("#typing").await;
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, &room, "alice").await;
    bob.expect("alice joining", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    alice
        .send(signal(&room, MessageType::Groupchat, COMPOSING))
        .await;
    bob.expect("alice typing", |l| {
        l.starts_with("@")
            && l.contains("+typing=active")
            && l.contains(" TAGMSG ")
            && l.ends_with("#typing")
    })
    .await;
    let paused = "<paused xmlns='http://jabber.org/protocol/chatstates'/>";
    alice
        .send(signal(&room, MessageType::Groupchat, paused))
        .await;
    bob.expect("alice done", |l| {
        l.contains("+typing=done") && l.contains(" TAGMSG ") && l.ends_with("#typing")
    })
    .await;

    bob.send("@+typing=active TAGMSG #typing").await;
    let got = next_signal(&mut alice, "/bob", CHAT_STATES).await;
    assert_eq!(got.0, "composing");
    bob.send("@+typing=done TAGMSG #typing").await;
    let got = next_signal(&mut alice, "/bob", CHAT_STATES).await;
    assert_eq!(got.0, "active");
}

/// A chat message to `to` with `body` and `id`, asking for a receipt when `ask`.
fn chat(to: &str, body: &str, id: &str, ask: bool) -> xmpp_client::parsers::message::Message {
    let mut m = xmpp_client::parsers::message::Message::chat(Some(to.parse().unwrap()));
    m.bodies.insert(Default::default(), body.into());
    m.id = Some(xmpp_client::parsers::message::Id(id.into()));
    if ask {
        m.payloads
            .push("<request xmlns='urn:xmpp:receipts'/>".parse().unwrap());
    }
    m
}

/// The id of the next XEP-0184 receipt from `from`.
async fn next_receipt(client: &mut crate::harness::TestClient, from: &str) -> String {
    client
        .expect(&format!("a receipt from {from}"), |s| match s {
            Stanza::Message(m) if sender(s) == from => m
                .payloads
                .iter()
                .find(|p| p.is("received", "urn:xmpp:receipts"))
                .and_then(|p| p.attr("id"))
                .map(str::to_owned),
            _ => None,
        })
        .await
}

/// XEP-0184: a private message that asks for a receipt gets one from the contact once the
/// remote server took it (the homeserver accepted the event; the IRC server echoed it); one
/// that does not ask gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_come_once_the_remote_server_took_the_message() {
    let scene = Scene::matrix().await;
    let mut alice = scene.xmpp_user("alice").await;
    let bob_jid = format!(
        "bob%{}@{}",
        crate::harness::scene::HS,
        crate::harness::scene::GW
    );
    let puppet = Scene::puppet("alice");
    alice.send(chat(&bob_jid, "no receipt", "p-1", false)).await;
    let invite = scene.bob.next_invite(WAIT).await;
    let direct = invite["room_id"].as_str().unwrap().to_owned();
    scene.bob.join(&direct).await;
    alice
        .send(chat(&bob_jid, "receipt please", "r-1", true))
        .await;
    scene
        .bob
        .next_event(
            &direct,
            |e| {
                crate::matrix::is_message_from(e, &puppet)
                    && e["content"]["body"] == "receipt please"
            },
            WAIT,
        )
        .await;
    // The first receipt is the asked one: none came for the message before it.
    assert_eq!(next_receipt(&mut alice, &bob_jid).await, "r-1");
    drop(scene);

    // IRC, where the server echoes what it took (InspIRCd's echo-message).
    let s = Scene::irc(IrcKind::Inspircd).await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#receipts").await;
    let bob_jid = "bob%127.0.0.1@irc.localhost";
    alice.send(chat(bob_jid, "over IRC", "i-1", true)).await;
    bob.expect("alice's private message", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG bob :over IRC")
    })
    .await;
    assert_eq!(next_receipt(&mut alice, bob_jid).await, "i-1");
}
