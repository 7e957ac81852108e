//! The connection keeper (`causeway keeper`), with the gateway as a process of its own,
//! against real Prosody and ngircd: IRC through the keeper works as without it, and a
//! gateway killed with SIGKILL drops no IRC connection — the puppet stays connected and in
//! its channel. A new gateway attaches (the keeper kept lines for it) and, as taking the
//! connections over is not done yet, quits them.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use xmpp_client::parsers::ping::Ping;
use xmpp_client::IqResponse;

use crate::harness::irc_client::IrcClient;
use crate::harness::irc_server::IrcServer;
use crate::harness::muc::*;
use crate::harness::xmpp_server::{Flavor, XmppServer};
use crate::harness::{config_toml_with_irc, TestClient, ANSWER};

fn causeway(args: &[&str], config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_hard_drops_no_irc_connection_held_by_the_keeper() {
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("keeper.sock");
    let irc_keys = format!("keeper = \"{}\"\n", socket.display());
    let config = dir.path().join("causeway.toml");
    std::fs::write(
        &config,
        config_toml_with_irc(&xmpp, dir.path(), irc.port, &irc_keys, ""),
    )
    .unwrap();
    let keeper_log = dir.path().join("keeper.log");
    let mut keeper = causeway(&["keeper"], &config, &keeper_log);
    let up = Instant::now();
    while !socket.exists() {
        assert!(up.elapsed() < ANSWER, "the keeper never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gateway_log = dir.path().join("gateway.log");
    let gateway = causeway(&["run"], &config, &gateway_log);
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    while !matches!(
        alice
            .try_get("irc.localhost", Ping, Duration::from_millis(500))
            .await,
        Some(IqResponse::Result(_))
    ) {
        assert!(up.elapsed() < ANSWER * 2, "the gateway never answered");
    }

    // IRC through the keeper, both ways.
    let room = "#kept%127.0.0.1@irc.localhost";
    let mut bob = IrcClient::connect(irc.port, "bob").await;
    bob.join("#kept").await;
    enter(&mut alice, room, "alice").await;
    bob.expect("alice joining", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
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
    let quit = |l: &str| l.starts_with(":alice!") && (l.contains(" QUIT") || l.contains(" PART"));
    assert_eq!(
        bob.nothing_within(Duration::from_secs(3), quit).await,
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

    // A new gateway attaches, although the keeper kept lines for it meanwhile; taking the
    // connection over is not done yet, so it quits it (no second puppet, no nick clash).
    bob.send("PRIVMSG #kept :while you were away").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _gateway = causeway(&["run"], &config, &dir.path().join("gateway-2.log"));
    bob.expect("alice's old connection quit by the new gateway", |l| {
        l.starts_with(":alice!") && l.contains(" QUIT") && l.contains("causeway restarted")
    })
    .await;
    let gateway_log = std::fs::read_to_string(dir.path().join("gateway-2.log")).unwrap();
    assert!(
        gateway_log.contains("attached to the keeper"),
        "{gateway_log}"
    );

    // The keeper stopping closes what it holds.
    signal(&keeper, "-TERM");
    tokio::time::timeout(Duration::from_secs(10), keeper.wait())
        .await
        .expect("the keeper stops on SIGTERM")
        .unwrap();
    assert!(!socket.exists(), "the keeper removes its socket");
}
