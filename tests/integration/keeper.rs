//! The connection keeper (`causeway keeper`), with the gateway as a process of its own,
//! against real Prosody and ngircd: IRC through the keeper works as without it, and neither
//! a gateway killed with SIGKILL nor one stopped with SIGTERM drops the IRC connection —
//! the puppet stays connected and in its channel, nobody on IRC sees it leave or join
//! again, the next gateway takes the connection over, and what was said meanwhile is
//! archived once, in order.

use std::time::Duration;

use crate::harness::gateway_process::{self, signal, spawn as causeway};
use crate::harness::irc_client::IrcClient;
use crate::harness::irc_server::IrcServer;
use crate::harness::muc::*;
use crate::harness::xmpp_server::{Flavor, XmppServer};
use crate::harness::{config_toml_with_irc, TestClient};

/// A keeper and a gateway, each a process of its own, with alice's puppet and bob in
/// `channel` on ngircd.
pub(crate) struct Kept {
    pub irc: IrcServer,
    pub xmpp: XmppServer,
    pub dir: tempfile::TempDir,
    pub socket: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub keeper: tokio::process::Child,
    pub keeper_log: std::path::PathBuf,
    pub gateway: tokio::process::Child,
    pub gateway_log: std::path::PathBuf,
    pub alice: TestClient,
    pub bob: IrcClient,
    pub room: String,
}

impl Kept {
    pub(crate) async fn start(channel: &str) -> Kept {
        Kept::start_with(channel, "").await
    }

    /// With more `[irc]` keys.
    pub(crate) async fn start_with(channel: &str, irc_keys: &str) -> Kept {
        let irc = IrcServer::ngircd();
        let xmpp = XmppServer::start(Flavor::Prosody);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("keeper.sock");
        let irc_keys = format!("keeper = \"{}\"\n{irc_keys}", socket.display());
        let config = dir.path().join("causeway.toml");
        std::fs::write(
            &config,
            config_toml_with_irc(&xmpp, dir.path(), irc.port, &irc_keys, ""),
        )
        .unwrap();
        let keeper_log = dir.path().join("keeper.log");
        let keeper = gateway_process::keeper(&config, &socket, &keeper_log).await;
        let gateway_log = dir.path().join("gateway.log");
        let gateway = causeway(&["run"], &config, &gateway_log);
        let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
        gateway_process::answering(&mut alice, "irc.localhost", &gateway_log).await;
        let room = format!("{channel}%127.0.0.1@irc.localhost");
        let mut bob = IrcClient::connect(irc.port, "bob").await;
        bob.join(channel).await;
        enter(&mut alice, &room, "alice").await;
        bob.expect("alice joining", |l| {
            l.starts_with(":alice!") && l.contains(" JOIN ")
        })
        .await;
        Kept {
            irc,
            xmpp,
            dir,
            socket,
            config,
            keeper,
            keeper_log,
            gateway,
            gateway_log,
            alice,
            bob,
            room,
        }
    }
}

/// Whether an IRC line shows alice's puppet leaving, joining or changing its nick.
pub(crate) fn left(l: &str) -> bool {
    l.starts_with(":alice")
        && [" QUIT", " PART ", " JOIN ", " NICK "]
            .iter()
            .any(|verb| l.contains(verb))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_hard_drops_no_irc_connection_held_by_the_keeper() {
    // Every field bound: what a pattern leaves out is dropped at once (the servers too).
    let Kept {
        irc: _irc,
        xmpp: _xmpp,
        dir,
        gateway_log: _,
        socket,
        config,
        mut keeper,
        keeper_log,
        gateway,
        mut alice,
        mut bob,
        room,
    } = Kept::start("#kept").await;
    let room = room.as_str();

    // IRC through the keeper, both ways.
    alice.send(groupchat_to(room, "through the keeper")).await;
    bob.expect("alice's message", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #kept :through the keeper")
    })
    .await;
    bob.send("PRIVMSG #kept :hello alice").await;
    alice
        .expect("bob's message", |s| match s {
            xmpp_client::Stanza::Message(m) => (body(m) == Some("hello alice")).then_some(()),
            _ => None,
        })
        .await;

    // SIGKILL: nothing of the gateway says goodbye, and the connection stays.
    signal(&gateway, "-KILL");
    assert_eq!(
        bob.nothing_within(Duration::from_secs(3), left).await,
        Ok(()),
        "the puppet left when the gateway died\n{}",
        std::fs::read_to_string(&keeper_log).unwrap_or_default()
    );
    bob.send("WHOIS alice").await;
    let channels = bob
        .expect("alice still connected and in her channel", |l| {
            l.split(' ').nth(1) == Some("319")
        })
        .await;
    assert!(channels.contains("#kept"), "{channels}");
    // Said while no gateway is there: the keeper keeps it.
    for i in 0..50 {
        bob.send(&format!("PRIVMSG #kept :away {i}")).await;
    }

    // A new gateway takes the connection over: no QUIT, no JOIN seen on IRC; what was
    // said meanwhile is archived, in order, once; the connection works both ways.
    let mut gateway = causeway(&["run"], &config, &dir.path().join("gateway-2.log"));
    assert_eq!(
        bob.nothing_within(Duration::from_secs(4), left).await,
        Ok(()),
        "the puppet left or joined again when the new gateway took over\n{}",
        std::fs::read_to_string(dir.path().join("gateway-2.log")).unwrap_or_default()
    );
    let gateway_log = std::fs::read_to_string(dir.path().join("gateway-2.log")).unwrap();
    assert!(
        gateway_log.contains("taken over from the keeper"),
        "{gateway_log}"
    );
    back_in(&mut alice, room).await;
    assert_eq!(
        said(&mut alice, room, "away ", "k1").await,
        numbered("away ", 50)
    );
    alice.send(groupchat_to(room, "after the takeover")).await;
    bob.expect("alice's message after the takeover", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #kept :after the takeover")
    })
    .await;

    // A planned restart (SIGTERM) leaves the connection with the keeper as well, and the
    // lines it kept meanwhile are archived once — those archived before are not again.
    signal(&gateway, "-TERM");
    gateway_process::ended(&mut gateway, Duration::from_secs(15)).await;
    for i in 0..20 {
        bob.send(&format!("PRIVMSG #kept :planned {i}")).await;
    }
    assert_eq!(
        bob.nothing_within(Duration::from_secs(2), left).await,
        Ok(()),
        "the puppet left at a planned shutdown"
    );
    let mut gateway = causeway(&["run"], &config, &dir.path().join("gateway-3.log"));
    assert_eq!(
        bob.nothing_within(Duration::from_secs(4), left).await,
        Ok(()),
        "the puppet left or joined again after the planned restart\n{}",
        std::fs::read_to_string(dir.path().join("gateway-3.log")).unwrap_or_default()
    );
    back_in(&mut alice, room).await;
    assert_eq!(
        said(&mut alice, room, "planned ", "k2").await,
        numbered("planned ", 20)
    );
    assert_eq!(
        said(&mut alice, room, "away ", "k3").await,
        numbered("away ", 50)
    );
    bob.send("PRIVMSG #kept :live again").await;
    alice
        .expect("bob's message after the second takeover", |s| match s {
            xmpp_client::Stanza::Message(m) => (body(m) == Some("live again")).then_some(()),
            _ => None,
        })
        .await;

    // The keeper stopping closes what it holds.
    signal(&gateway, "-TERM");
    gateway_process::ended(&mut gateway, Duration::from_secs(15)).await;
    signal(&keeper, "-TERM");
    gateway_process::ended(&mut keeper, Duration::from_secs(10)).await;
    assert!(!socket.exists(), "the keeper removes its socket");
    bob.expect("alice's connection closed with the keeper", |l| {
        l.starts_with(":alice!") && l.contains(" QUIT")
    })
    .await;

    // A gateway that starts with a keeper holding nothing shows nothing on IRC: the
    // channel (not persistent) is expected from the keeper, not joined again.
    let _keeper = gateway_process::keeper(&config, &socket, &dir.path().join("keeper-2.log")).await;
    let log = dir.path().join("gateway-4.log");
    let _gateway = causeway(&["run"], &config, &log);
    gateway_process::answering(&mut alice, "irc.localhost", &log).await;
    assert_eq!(
        bob.nothing_within(Duration::from_secs(4), left).await,
        Ok(()),
        "the puppet joined again with nothing kept\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("expecting the channel from the keeper"),
        "{log}"
    );
}

/// A private message said while the XMPP server is away waits in the gateway's outbox: the
/// keeper must keep its line until the stanza is written, so that a gateway killed
/// meanwhile delivers it once it is back. (The channel is persistent, so that the puppet
/// stays when its user's client goes with the server.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_is_acknowledged_to_the_keeper_only_once_its_stanza_is_written() {
    let Kept {
        irc: _irc,
        mut xmpp,
        dir,
        socket: _,
        config,
        keeper: _keeper,
        keeper_log,
        gateway,
        gateway_log,
        alice,
        mut bob,
        room: _,
    } = Kept::start_with("#pm", "persistent = true\n").await;
    drop(alice);
    xmpp.stop();
    bob.send("PRIVMSG alice :said while the server was away")
        .await;
    // Time for several checkpoints: none may cover the line while its stanza waits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&gateway, "-KILL");
    xmpp.resume();
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    let log = dir.path().join("gateway-2.log");
    let _gateway = causeway(&["run"], &config, &log);
    let logs = || {
        format!(
            "--- first gateway\n{}\n--- next gateway\n{}\n--- keeper\n{}",
            std::fs::read_to_string(&gateway_log).unwrap_or_default(),
            std::fs::read_to_string(&log).unwrap_or_default(),
            std::fs::read_to_string(&keeper_log).unwrap_or_default()
        )
    };
    let from = alice
        .try_expect(Duration::from_secs(15), |s| match s {
            xmpp_client::Stanza::Message(m)
                if body(m) == Some("said while the server was away") =>
            {
                m.from.as_ref().map(|f| f.to_string())
            }
            _ => None,
        })
        .await;
    let from = from.unwrap_or_else(|_| panic!("the private message was lost\n{}", logs()));
    assert!(
        from.starts_with("bob%127.0.0.1@irc.localhost"),
        "{from}\n{}",
        logs()
    );
}

/// The client joins the room again (the new gateway does not know its old presence) and is
/// in, with bob among the occupants.
async fn back_in(alice: &mut TestClient, room: &str) {
    alice.send(join(&format!("{room}/alice"))).await;
    alice
        .expect("bob's presence in the join sequence", |s| match s {
            xmpp_client::Stanza::Presence(p)
                if p.from
                    .as_ref()
                    .is_some_and(|f| f.to_string().ends_with("/bob")) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    presence_from(alice, "/alice", xmpp_client::parsers::presence::Type::None).await;
}

/// The bodies in the room's archive that start with `prefix`, oldest first.
pub(crate) async fn said(
    alice: &mut TestClient,
    room: &str,
    prefix: &str,
    queryid: &str,
) -> Vec<String> {
    let (results, _) = crate::history::run_query_at(
        alice,
        room,
        crate::history::mam_query(queryid, None, 500, None),
    )
    .await;
    results
        .into_iter()
        .map(|(_, body)| body)
        .filter(|b| b.starts_with(prefix))
        .collect()
}

pub(crate) fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}
