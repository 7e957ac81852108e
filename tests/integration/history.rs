//! History end to end: stanza-ids on room messages, MAM queries with paging and filters on
//! room JIDs, join history with its limits.

use xmpp_client::minidom::Element;
use xmpp_client::parsers::message::Message;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::Stanza;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;
use crate::harness::TestClient;

const ROOM: &str = "#history%127.0.0.1@irc.localhost";
const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";

use crate::harness::nc;

fn stanza_id(m: &Message) -> Option<(String, String)> {
    let sid = m
        .payloads
        .iter()
        .find(|p| p.is("stanza-id", "urn:xmpp:sid:0"))?;
    Some((sid.attr("by")?.to_owned(), sid.attr("id")?.to_owned()))
}

/// A MAM query: `with` as an occupant JID, RSM `max` and `after`.
pub(crate) fn mam_query(
    queryid: &str,
    with: Option<&str>,
    max: usize,
    after: Option<&str>,
) -> Element {
    let x = "jabber:x:data";
    let field = |var: &str, value: &str| {
        Element::builder("field", x)
            .attr(nc("var"), var)
            .append(Element::builder("value", x).append(value).build())
            .build()
    };
    let mut form = Element::builder("x", x)
        .attr(nc("type"), "submit")
        .append(field("FORM_TYPE", MAM));
    if let Some(with) = with {
        form = form.append(field("with", with));
    }
    let mut set = Element::builder("set", RSM)
        .append(Element::builder("max", RSM).append(max.to_string()).build());
    if let Some(after) = after {
        set = set.append(Element::builder("after", RSM).append(after).build());
    }
    Element::builder("query", MAM)
        .attr(nc("queryid"), queryid)
        .append(form.build())
        .append(set.build())
        .build()
}

/// Run a MAM query; the bodies it returned in order, and the `fin` element.
async fn run_query(client: &mut TestClient, query: Element) -> (Vec<(String, String)>, Element) {
    run_query_at(client, ROOM, query).await
}

/// Run a MAM query on `room`; the ids and bodies it returned in order, and the `fin`.
pub(crate) async fn run_query_at(
    client: &mut TestClient,
    room: &str,
    query: Element,
) -> (Vec<(String, String)>, Element) {
    let queryid = query.attr("queryid").unwrap().to_owned();
    let xmpp_client::IqResponse::Result(Some(fin)) = client.set(room, query).await else {
        panic!("MAM query not answered with a fin")
    };
    // Results arrive before the iq result, in order: reading up to it buffered them all.
    let mut results = Vec::new();
    for stanza in client.take_buffered(|s| matches!(s, Stanza::Message(m) if m.payloads.iter().any(|p| p.is("result", MAM) && p.attr("queryid") == Some(queryid.as_str())))) {
        let Stanza::Message(m) = stanza else { continue };
        let result = m.payloads.iter().find(|p| p.is("result", MAM)).unwrap();
        let forwarded = result.get_child("forwarded", "urn:xmpp:forward:0").expect("forwarded");
        assert!(forwarded.get_child("delay", "urn:xmpp:delay").is_some(), "no delay in {result:?}");
        let inner = forwarded.get_child("message", "jabber:client").expect("jabber:client message");
        let body = inner.get_child("body", "jabber:client").map(|b| b.text()).unwrap_or_default();
        results.push((result.attr("id").unwrap().to_owned(), body));
    }
    (results, fin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stanza_ids_mam_paging_and_join_history() {
    let mut s = Scene::irc(IrcKind::Ngircd).await;
    let mut carol = s.irc_user_in("carol", "#history").await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#history").await;

    // 25 messages from bob and 5 from carol, each with a stanza-id by the room.
    for i in 0..30 {
        let (client, text) = if i % 6 == 5 {
            (&mut carol, format!("carol {i}"))
        } else {
            (&mut bob, format!("bob {i}"))
        };
        client.send(&format!("PRIVMSG #history :{text}")).await;
    }
    // (Two IRC connections: the order they arrive in is the room's order.)
    let (mut ids, mut live) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let (by, id, text) = alice
            .expect("a message with a stanza-id", |s| match s {
                Stanza::Message(m)
                    if body(m)
                        .is_some_and(|b| b.starts_with("bob ") || b.starts_with("carol ")) =>
                {
                    stanza_id(m).map(|(by, id)| (by, id, body(m).unwrap().to_owned()))
                }
                _ => None,
            })
            .await;
        assert_eq!(by, ROOM);
        ids.push(id);
        live.push(text);
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 30, "stanza-ids repeat");

    // The room advertises MAM.
    let info = alice
        .get(
            ROOM,
            Element::builder("query", "http://jabber.org/protocol/disco#info").build(),
        )
        .await;
    let xmpp_client::IqResponse::Result(Some(info)) = info else {
        panic!("no room disco#info")
    };
    assert!(
        info.children().any(|f| f.attr("var") == Some(MAM)),
        "{info:?}"
    );
    // ... and how many are in it: bob, carol and alice.
    let occupants = info
        .get_child("x", "jabber:x:data")
        .and_then(|x| {
            x.children()
                .find(|f| f.attr("var") == Some("muc#roominfo_occupants"))
        })
        .and_then(|f| f.children().next())
        .map(|v| v.text());
    assert_eq!(occupants.as_deref(), Some("3"), "{info:?}");

    // Paging forward 12 at a time: 12, 12, 6, with the same ids the live messages had.
    let (page1, fin1) = run_query(&mut alice, mam_query("q1", None, 12, None)).await;
    assert_eq!(page1.len(), 12);
    assert_eq!(fin1.attr("complete"), None, "first page cannot be complete");
    assert_eq!(page1[0], (ids[0].clone(), live[0].clone()));
    let last = fin1
        .get_child("set", RSM)
        .unwrap()
        .get_child("last", RSM)
        .unwrap()
        .text();
    assert_eq!(last, ids[11]);
    let count = fin1
        .get_child("set", RSM)
        .unwrap()
        .get_child("count", RSM)
        .unwrap()
        .text();
    assert_eq!(count, "30");
    let (page2, _) = run_query(&mut alice, mam_query("q2", None, 12, Some(&last))).await;
    assert_eq!(page2[0].0, ids[12]);
    let last2 = page2.last().unwrap().0.clone();
    let (page3, fin3) = run_query(&mut alice, mam_query("q3", None, 12, Some(&last2))).await;
    assert_eq!(page3.len(), 6);
    assert_eq!(fin3.attr("complete"), Some("true"));
    // Only carol's.
    let (carols, _) = run_query(
        &mut alice,
        mam_query("q4", Some(&format!("{ROOM}/carol")), 50, None),
    )
    .await;
    assert_eq!(carols.len(), 5);
    assert!(carols.iter().all(|(_, b)| b.starts_with("carol ")));

    // XEP-0410 self-ping: joined, so a result; after leaving, not-acceptable.
    let ping = || Element::builder("ping", "urn:xmpp:ping").build();
    let joined = alice.get(&format!("{ROOM}/alice"), ping()).await;
    assert!(
        matches!(joined, xmpp_client::IqResponse::Result(_)),
        "{joined:?}"
    );

    // Leave and come back asking for 5 lines: the last 5, delayed, before the subject.
    alice.send(leave(&format!("{ROOM}/alice"))).await;
    presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    let xmpp_client::IqResponse::Error(gone) = alice.get(&format!("{ROOM}/alice"), ping()).await
    else {
        panic!("self-ping answered after leaving")
    };
    assert_eq!(
        gone.defined_condition,
        xmpp_client::parsers::stanza_error::DefinedCondition::NotAcceptable
    );
    let mut rejoin = join(&format!("{ROOM}/alice"));
    rejoin.payloads.clear();
    rejoin.payloads.push(
        Element::builder("x", "http://jabber.org/protocol/muc")
            .append(
                Element::builder("history", "http://jabber.org/protocol/muc")
                    .attr(nc("maxstanzas"), "5")
                    .build(),
            )
            .build(),
    );
    alice.send(rejoin).await;
    let mut history = Vec::new();
    loop {
        let stanza = alice
            .expect("history or subject", |s| match s {
                Stanza::Message(m) if !m.subjects.is_empty() => Some(None),
                Stanza::Message(m)
                    if m.payloads.iter().any(|p| p.is("delay", "urn:xmpp:delay")) =>
                {
                    Some(body(m).map(str::to_owned))
                }
                _ => None,
            })
            .await;
        match stanza {
            Some(text) => history.push(text),
            None => break,
        }
    }
    assert_eq!(history, live[25..]);

    // A restart keeps the archive and its ids: MAM answers the same, without any rejoin.
    s.stop_gateway().await;
    s.start_gateway().await;
    let (again, _) = run_query(&mut alice, mam_query("q5", None, 12, None)).await;
    assert_eq!(again, page1);
    alice.logout().await;
    s.stop().await;
}

/// disco#items on the IRC server JID lists its channels (IRC LIST), paged with XEP-0059.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_list_is_paged() {
    const RSM: &str = "http://jabber.org/protocol/rsm";
    let s = Scene::irc(IrcKind::Ngircd).await;
    let mut bob = s.irc_user("bob").await;
    for i in 0..25 {
        bob.join(&format!("#list{i:02}")).await;
        bob.send(&format!("TOPIC #list{i:02} :topic {i}")).await;
    }
    bob.expect("last topic", |l| l.contains(" TOPIC #list24 "))
        .await;
    let mut alice = s.xmpp_user("alice").await;
    let server = "127.0.0.1@irc.localhost";
    let items_query = |after: Option<&str>| {
        let mut set =
            Element::builder("set", RSM).append(Element::builder("max", RSM).append("10").build());
        if let Some(after) = after {
            set = set.append(Element::builder("after", RSM).append(after).build());
        }
        Element::builder("query", "http://jabber.org/protocol/disco#items")
            .append(set.build())
            .build()
    };
    // Bob opens one more channel; alice lists without being in any (a connection opens
    // for the list).
    bob.join("#lobby").await;

    let mut seen = Vec::new();
    let mut counts = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let xmpp_client::IqResponse::Result(Some(page)) =
            alice.get(server, items_query(after.as_deref())).await
        else {
            panic!("no list")
        };
        let items: Vec<(String, String)> = page
            .children()
            .filter(|c| c.name() == "item")
            .map(|i| {
                (
                    i.attr("jid").unwrap().to_owned(),
                    i.attr("name").unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let set = page.get_child("set", RSM).expect("an RSM set");
        counts.push(set.get_child("count", RSM).unwrap().text());
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 10);
        after = Some(set.get_child("last", RSM).unwrap().text());
        seen.extend(items);
    }
    // Every page tells the same total, and the pages add up to it, with nothing twice.
    let total = seen.len().to_string();
    assert!(counts.iter().all(|c| *c == total), "{counts:?} vs {total}");
    let jids: std::collections::HashSet<&str> = seen.iter().map(|(j, _)| j.as_str()).collect();
    assert_eq!(jids.len(), seen.len());
    for i in 0..25 {
        assert!(
            jids.contains(format!("#list{i:02}%127.0.0.1@irc.localhost").as_str()),
            "#list{i:02} missing"
        );
    }
    assert!(jids.contains("#lobby%127.0.0.1@irc.localhost"));
    let first = seen.iter().find(|(j, _)| j.starts_with("#list00")).unwrap();
    assert!(first.1.contains("topic 0"), "{first:?}");
    alice.logout().await;
    s.stop().await;
}

/// A persistent channel (bouncer mode): the puppet stays while the user is offline, the
/// archive keeps recording, the returning client gets the history; after a restart of the
/// gateway the puppet is back in the channel by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_channels_keep_the_puppet_and_the_history() {
    let mut s = Scene::irc(IrcKind::Ngircd).await;
    let store = s.store().await;
    let persistent = causeway::store::ChannelSettings {
        persistent: Some(true),
        ..Default::default()
    };
    store
        .set_channel_settings("alice@localhost", "127.0.0.1", "#history", persistent)
        .await
        .unwrap();
    store.close().await;

    let (mut bob, mut alice) = s.alice_joins_bob_in("#history").await;

    // Alice's client goes away; her puppet does not.
    alice.send(leave(&format!("{ROOM}/alice"))).await;
    presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    alice.logout().await;
    let parted = bob
        .nothing_within(std::time::Duration::from_secs(4), |l| {
            l.starts_with(":alice!") && (l.contains(" PART ") || l.contains(" QUIT"))
        })
        .await;
    assert_eq!(parted, Ok(()), "the puppet left a persistent channel");
    bob.send("PRIVMSG #history :while you were away").await;

    // Back: the join history has what was said meanwhile.
    let mut alice = s.xmpp_user_again("alice").await;
    alice.send(join(&format!("{ROOM}/alice"))).await;
    presence_from(&mut alice, "/alice", PresenceType::None).await;
    alice
        .expect("the missed message, delayed", |s| match s {
            Stanza::Message(m)
                if body(m) == Some("while you were away")
                    && m.payloads.iter().any(|p| p.is("delay", "urn:xmpp:delay")) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    alice.logout().await;

    // A restart: the puppet rejoins on its own, with nobody online.
    s.stop_gateway().await;
    bob.expect("alice quitting at shutdown", |l| {
        l.starts_with(":alice!") && l.contains(" QUIT")
    })
    .await;
    s.start_gateway().await;
    bob.expect("alice back after the restart", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
    s.stop().await;
}

/// "Record history" off for a user: messages stay out of the archive, so MAM has nothing,
/// and carry no stanza-id (an archive id that no archive holds would send clients paging
/// from nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_can_switch_recording_off() {
    let s = Scene::irc(IrcKind::Ngircd).await;
    let store = s.store().await;
    let off = causeway::store::UserSettings {
        record_history: Some(false),
        ..Default::default()
    };
    store
        .set_user_settings("alice@localhost", &off)
        .await
        .unwrap();
    store.close().await;
    let (mut bob, mut alice) = s.alice_joins_bob_in("#history").await;
    bob.send("PRIVMSG #history :not for the record").await;
    let live = alice
        .expect("the live message", |s| match s {
            Stanza::Message(m) if body(m) == Some("not for the record") => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(stanza_id(&live), None, "{live:?}");
    let (results, fin) = run_query(&mut alice, mam_query("off", None, 10, None)).await;
    assert!(results.is_empty(), "{results:?}");
    assert_eq!(
        fin.get_child("set", RSM)
            .unwrap()
            .get_child("count", RSM)
            .unwrap()
            .text(),
        "0"
    );
    alice.logout().await;
    s.stop().await;
}

/// At shutdown, every joined resource of a non-persistent channel is told with 332, and
/// after the restart a self-ping says it is no longer joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_joined_clients_with_332() {
    let mut s = Scene::irc(IrcKind::Ngircd).await;
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, ROOM, "alice").await;
    s.stop_gateway().await;
    let gone = presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    let statuses = muc_user(&gone).expect("muc#user").status;
    assert!(
        statuses.contains(&xmpp_client::parsers::muc::user::Status::ServiceShutdown),
        "{statuses:?}"
    );
    s.start_gateway().await;
    let ping = Element::builder("ping", "urn:xmpp:ping").build();
    let answer = alice.get(&format!("{ROOM}/alice"), ping).await;
    assert!(
        matches!(answer, xmpp_client::IqResponse::Error(_)),
        "still joined after a restart: {answer:?}"
    );
    alice.logout().await;
    s.stop().await;
}
