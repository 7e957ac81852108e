//! XEP-0050 ad-hoc configuration from an XMPP client, with its effect seen on IRC.

use xmpp_client::minidom::Element;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::IqResponse;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;
use crate::harness::{Flavor, Gateway, TestClient, XmppServer};

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";
const SERVER: &str = "127.0.0.1@irc.localhost";
const ROOM: &str = "#adhoc%127.0.0.1@irc.localhost";

use crate::harness::nc;

fn command(action: &str, session: Option<&str>, fields: &[(&str, &[&str])]) -> Element {
    command_on("configure", action, session, fields)
}

fn command_on(
    node: &str,
    action: &str,
    session: Option<&str>,
    fields: &[(&str, &[&str])],
) -> Element {
    let mut command = Element::builder("command", COMMANDS)
        .attr(nc("node"), node)
        .attr(nc("action"), action);
    if let Some(session) = session {
        command = command.attr(nc("sessionid"), session);
    }
    if !fields.is_empty() {
        let mut form = Element::builder("x", DATA).attr(nc("type"), "submit");
        for (var, values) in fields {
            let mut field = Element::builder("field", DATA).attr(nc("var"), *var);
            for value in *values {
                field = field.append(Element::builder("value", DATA).append(*value).build());
            }
            form = form.append(field.build());
        }
        command = command.append(form.build());
    }
    command.build()
}

async fn run(client: &mut TestClient, to: &str, step: Element) -> Element {
    match client.set(to, step).await {
        IqResponse::Result(Some(command)) => command,
        other => panic!("command refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_a_server_and_a_channel_from_the_client() {
    let s = Scene::irc(IrcKind::Ngircd).await;
    let mut bob = s.irc_user_in("bob", "#adhoc").await;
    let mut alice = s.xmpp_user("alice").await;

    // The server JID lists its command.
    let list = Element::builder("query", "http://jabber.org/protocol/disco#items")
        .attr(nc("node"), COMMANDS)
        .build();
    let IqResponse::Result(Some(items)) = alice.get(SERVER, list).await else {
        panic!("no command list")
    };
    assert!(
        items
            .children()
            .any(|i| i.attr("node") == Some("configure")),
        "{items:?}"
    );

    // Execute: a form. Submit a realname and an after-connect command.
    let form = run(&mut alice, SERVER, command("execute", None, &[])).await;
    assert_eq!(form.attr("status"), Some("executing"));
    let session = form.attr("sessionid").unwrap().to_owned();
    let x = form.get_child("x", DATA).expect("a form");
    assert!(x.children().any(|f| f.attr("var") == Some("realname")));
    let done = run(
        &mut alice,
        SERVER,
        command(
            "complete",
            Some(&session),
            &[
                ("realname", &["Alice via ad-hoc"]),
                ("after_connect", &["AWAY :set after connecting"]),
            ],
        ),
    )
    .await;
    assert_eq!(done.attr("status"), Some("completed"));

    // Applied on the next connection: WHOIS shows both.
    enter(&mut alice, ROOM, "alice").await;
    bob.send("WHOIS alice").await;
    let whois = bob
        .expect("WHOIS", |l| l.split(' ').nth(1) == Some("311"))
        .await;
    assert!(whois.ends_with(":Alice via ad-hoc"), "{whois}");
    let away = bob
        .expect("away line", |l| {
            matches!(l.split(' ').nth(1), Some("301") | Some("318"))
        })
        .await;
    assert!(
        away.contains(" 301 ") && away.ends_with(":set after connecting"),
        "{away}"
    );

    // Connection information on the server JID.
    let info = run(&mut alice, SERVER, command_on("info", "execute", None, &[])).await;
    let note = info
        .get_child("note", COMMANDS)
        .map(|n| n.text())
        .unwrap_or_default();
    assert!(
        note.contains("Connected to 127.0.0.1 as alice") && note.contains("#adhoc"),
        "{note}"
    );

    // The channel: made persistent, the puppet stays when alice leaves.
    let form = run(&mut alice, ROOM, command("execute", None, &[])).await;
    let session = form.attr("sessionid").unwrap().to_owned();
    run(
        &mut alice,
        ROOM,
        command("complete", Some(&session), &[("persistent", &["1"])]),
    )
    .await;
    // Settings apply on join: leave and join again, then leave for good.
    alice.send(leave(&format!("{ROOM}/alice"))).await;
    presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    enter(&mut alice, ROOM, "alice").await;
    alice.send(leave(&format!("{ROOM}/alice"))).await;
    presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    let parted = bob
        .nothing_within(std::time::Duration::from_secs(4), |l| {
            l.starts_with(":alice!") && (l.ends_with("QUIT") || l.contains(" QUIT :"))
        })
        .await;
    assert_eq!(parted, Ok(()), "the puppet quit a persistent channel");

    // Disconnect from every IRC server, with a quit message; the rooms are left.
    enter(&mut alice, "#other%127.0.0.1@irc.localhost", "alice").await;
    let disconnect = |action: &str, fields: &[(&str, &[&str])]| {
        command_on("disconnect", action, Some("d"), fields)
    };
    let form = run(&mut alice, "irc.localhost", disconnect("execute", &[])).await;
    assert!(form.get_child("x", DATA).is_some());
    let done = run(
        &mut alice,
        "irc.localhost",
        disconnect("complete", &[("quit_message", &["see you"])]),
    )
    .await;
    assert_eq!(done.attr("status"), Some("completed"));
    bob.expect("alice quitting", |l| {
        l.starts_with(":alice!") && l.contains(" QUIT") && l.contains("see you")
    })
    .await;
    presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;

    // Cancel works at any step.
    let canceled = run(
        &mut alice,
        "irc.localhost",
        command("cancel", Some("x"), &[]),
    )
    .await;
    assert_eq!(canceled.attr("status"), Some("canceled"));
    // A bad value is refused with a text.
    let refused = alice
        .set(
            ROOM,
            command("complete", Some("y"), &[("persistent", &["maybe"])]),
        )
        .await;
    assert!(
        matches!(refused, IqResponse::Error(ref e) if !e.texts.is_empty()),
        "{refused:?}"
    );
    alice.logout().await;
    s.stop().await;
}

/// The administrators' commands: the sessions list, and disconnecting a user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_list_sessions_and_disconnect_users() {
    let s = Scene::irc(IrcKind::Ngircd).await;
    let mut bob = s.irc_user_in("bob", "#adhoc").await;
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, ROOM, "alice").await;
    let mut admin = s.xmpp_user("admin").await;

    let list = Element::builder("query", "http://jabber.org/protocol/disco#items")
        .attr(nc("node"), COMMANDS)
        .build();
    let IqResponse::Result(Some(items)) = admin.get("irc.localhost", list.clone()).await else {
        panic!("no command list")
    };
    let nodes: Vec<&str> = items.children().filter_map(|i| i.attr("node")).collect();
    assert!(
        nodes.contains(&"sessions") && nodes.contains(&"disconnect-user"),
        "{nodes:?}"
    );
    let IqResponse::Result(Some(items)) = alice.get("irc.localhost", list).await else {
        panic!("no command list")
    };
    assert!(
        !items.children().any(|i| i.attr("node") == Some("sessions")),
        "a user sees admin commands"
    );

    let sessions = run(
        &mut admin,
        "irc.localhost",
        command_on("sessions", "execute", None, &[]),
    )
    .await;
    let form = sessions.get_child("x", DATA).expect("a result form");
    let alice_field = form
        .children()
        .find(|f| f.attr("var") == Some("alice@localhost"))
        .expect("alice listed");
    assert!(
        alice_field.children().any(|v| v.text().starts_with(ROOM)),
        "{alice_field:?}"
    );

    let refused = alice
        .set(
            "irc.localhost",
            command_on("sessions", "execute", None, &[]),
        )
        .await;
    assert!(
        matches!(refused, IqResponse::Error(ref e) if format!("{:?}", e.defined_condition) == "Forbidden"),
        "{refused:?}"
    );

    let done = run(
        &mut admin,
        "irc.localhost",
        command_on(
            "disconnect-user",
            "complete",
            Some("s"),
            &[
                ("user", &["alice@localhost"]),
                ("quit_message", &["maintenance"]),
            ],
        ),
    )
    .await;
    assert_eq!(done.attr("status"), Some("completed"));
    bob.expect("alice disconnected", |l| {
        l.starts_with(":alice!") && l.contains(" QUIT") && l.contains("maintenance")
    })
    .await;
    presence_from(&mut alice, "/alice", PresenceType::Unavailable).await;
    alice.logout().await;
    admin.logout().await;
    s.stop().await;
}

/// The MUC owner form (muc#owner) of a channel reads and writes the same settings as the
/// channel's configure command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_form_is_the_channel_configuration() {
    const OWNER: &str = "http://jabber.org/protocol/muc#owner";
    let s = Scene::irc(IrcKind::Ngircd).await;
    let mut alice = s.xmpp_user("alice").await;
    let IqResponse::Result(Some(query)) = alice
        .get(ROOM, Element::builder("query", OWNER).build())
        .await
    else {
        panic!("no owner form")
    };
    let form = query.get_child("x", DATA).expect("a form");
    assert!(form
        .children()
        .any(|f| f.attr("var") == Some("muc#roomconfig_persistentroom")));
    let submit = Element::builder("query", OWNER)
        .append(
            Element::builder("x", DATA)
                .attr(nc("type"), "submit")
                .append(
                    Element::builder("field", DATA)
                        .attr(nc("var"), "muc#roomconfig_persistentroom")
                        .append(Element::builder("value", DATA).append("1").build())
                        .build(),
                )
                .build(),
        )
        .build();
    assert!(matches!(
        alice.set(ROOM, submit).await,
        IqResponse::Result(_)
    ));
    let configure = run(&mut alice, ROOM, command("execute", None, &[])).await;
    let persistent = configure
        .get_child("x", DATA)
        .and_then(|x| x.children().find(|f| f.attr("var") == Some("persistent")))
        .and_then(|f| f.children().next())
        .map(|v| v.text());
    assert_eq!(persistent.as_deref(), Some("1"));
    alice.logout().await;
    s.stop().await;
}

/// An administrator reloads the configuration file: a newly allowed domain is served at
/// once, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_reload_the_configuration() {
    let xmpp = XmppServer::start(Flavor::Prosody);
    let db = tempfile::tempdir().unwrap();
    let file = db.path().join("causeway.toml");
    let toml = crate::harness::config_toml(&xmpp, &xmpp.secret, db.path());
    std::fs::write(&file, &toml).unwrap();
    let gateway = Gateway::start_from_file(&xmpp, db, &file).await;
    let mut admin = TestClient::login(&xmpp, "admin", "localhost").await;
    let mut mallory = TestClient::login(&xmpp, "mallory", "other.localhost").await;
    let ping = || Element::builder("ping", "urn:xmpp:ping").build();
    assert!(
        matches!(
            mallory.get("irc.localhost", ping()).await,
            IqResponse::Error(_)
        ),
        "other.localhost allowed too early"
    );

    std::fs::write(
        &file,
        toml.replace(
            r#"allow = ["localhost"]"#,
            r#"allow = ["localhost", "other.localhost"]"#,
        ),
    )
    .unwrap();
    let done = run(
        &mut admin,
        "irc.localhost",
        command_on("reload", "execute", None, &[]),
    )
    .await;
    let note = done
        .get_child("note", COMMANDS)
        .map(|n| n.text())
        .unwrap_or_default();
    assert!(note.contains("reloaded"), "{note}");
    assert!(
        matches!(
            mallory.get("irc.localhost", ping()).await,
            IqResponse::Result(_)
        ),
        "the reload did not apply"
    );

    // A broken file is refused and changes nothing.
    std::fs::write(&file, "[access]\nallow = []\n").unwrap();
    let refused = admin
        .set("irc.localhost", command_on("reload", "execute", None, &[]))
        .await;
    assert!(
        matches!(refused, IqResponse::Error(ref e) if e.texts.values().any(|t| t.contains("access.allow"))),
        "{refused:?}"
    );
    assert!(matches!(
        mallory.get("irc.localhost", ping()).await,
        IqResponse::Result(_)
    ));
    admin.logout().await;
    mallory.logout().await;
    gateway.stop().await;
}

/// Raw commands to a server JID open a connection when there is none, under the nick the
/// user set for that server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_commands_connect_with_the_users_server_nick() {
    let s = Scene::irc(IrcKind::Ngircd).await;
    let mut bob = s.irc_user("bob").await;
    let mut alice = s.xmpp_user("alice").await;
    crate::harness::muc::configure(&mut alice, SERVER, &[("nick", "alicia")]).await;
    let mut raw = xmpp_client::parsers::message::Message::chat(Some(SERVER.parse().unwrap()));
    raw.bodies.insert(
        Default::default(),
        "PRIVMSG bob :hello from a raw line".into(),
    );
    alice.send(raw).await;
    bob.expect("the raw line, from alicia", |l| {
        l.starts_with(":alicia!") && l.ends_with("PRIVMSG bob :hello from a raw line")
    })
    .await;
    alice.logout().await;
    s.stop().await;
}
