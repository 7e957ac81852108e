//! The link between the gateway and its connection keeper breaks while both live on,
//! against real Prosody and ngircd (the gateway and the keeper are processes of their own):
//! - a gateway that stops reading (SIGSTOP, as a wedged or swapping process would) is
//!   detached by the keeper, which answers the servers' PINGs meanwhile; once it runs
//!   again it attaches again and each session claims its own connection back — nobody on
//!   IRC sees anything, and what was said meanwhile reaches the XMPP user once, in order;
//! - a keeper restarted (its connections lost with it) is attached again, and the puppet
//!   reconnects through it and joins its channel again, its user told;
//! - a gateway started before its keeper refuses joins with the reason, then attaches by
//!   itself once the keeper runs.

use std::time::{Duration, Instant};

use crate::harness::gateway_process::{self, signal};
use crate::harness::muc::*;
use crate::harness::TestClient;
use crate::keeper::{left, numbered, said, Kept};

/// How long the keeper lets an attached gateway send nothing (its `SILENT_LIMIT`), and the
/// ping period on top of it.
const DETACHED_WITHIN: Duration = Duration::from_secs(20 + 5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_keeper_link_is_attached_again_and_the_connections_claimed_back() {
    // Every field bound: what a pattern leaves out is dropped at once (the servers too).
    let Kept {
        irc: _irc,
        xmpp: _xmpp,
        dir: _dir,
        config,
        socket,
        mut keeper,
        keeper_log,
        gateway,
        gateway_log,
        mut alice,
        mut bob,
        room,
    } = Kept::start("#link").await;
    let room = room.as_str();
    let logs = || {
        format!(
            "--- keeper\n{}\n--- gateway\n{}",
            std::fs::read_to_string(&keeper_log).unwrap_or_default(),
            std::fs::read_to_string(&gateway_log).unwrap_or_default()
        )
    };
    // The gateway stops reading: the keeper detaches it and holds on.
    signal(&gateway, "-STOP");
    for i in 0..30 {
        bob.send(&format!("PRIVMSG #link :wedged {i}")).await;
    }
    assert_eq!(
        bob.nothing_within(DETACHED_WITHIN, left).await,
        Ok(()),
        "the puppet left while the gateway was stopped\n{}",
        logs()
    );
    wait_for_log(
        &keeper_log,
        "the gateway read nothing for",
        Duration::from_secs(10),
    )
    .await;

    // It runs again: it attaches again and claims the connection back, unseen on IRC.
    signal(&gateway, "-CONT");
    wait_for_log(&gateway_log, "claimed again", Duration::from_secs(15)).await;
    assert_eq!(
        bob.nothing_within(Duration::from_secs(3), left).await,
        Ok(()),
        "the puppet left or joined again when the link came back\n{}",
        logs()
    );
    assert_eq!(
        live(&mut alice, "wedged ", 30).await,
        numbered("wedged ", 30),
        "{}",
        logs()
    );
    assert_eq!(
        said(&mut alice, room, "wedged ", "l1").await,
        numbered("wedged ", 30)
    );
    alice.send(groupchat_to(room, "after the link broke")).await;
    bob.expect("alice's message after the link came back", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #link :after the link broke")
    })
    .await;

    // The keeper dies, and its connections with it: the gateway attaches to the next one
    // and the puppet connects again through it, into its channel; its user is told.
    signal(&keeper, "-KILL");
    gateway_process::ended(&mut keeper, Duration::from_secs(5)).await;
    bob.expect("alice's connection gone with the keeper", |l| {
        l.starts_with(":alice!") && l.contains(" QUIT")
    })
    .await;
    let _keeper = gateway_process::keeper(&config, &socket, &keeper_log.with_extension("2")).await;
    alice
        .expect("the notice that the connection is back", |s| match s {
            xmpp_client::Stanza::Message(m) => body(m)
                .is_some_and(|b| b.starts_with("Reconnected to 127.0.0.1"))
                .then_some(()),
            _ => None,
        })
        .await;
    bob.expect("alice joining again", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
    bob.send("PRIVMSG #link :through the new keeper").await;
    assert_eq!(
        live(&mut alice, "through the new keeper", 1).await,
        ["through the new keeper"],
        "{}",
        logs()
    );
    alice.send(groupchat_to(room, "and back")).await;
    bob.expect("alice's message through the new keeper", |l| {
        l.starts_with(":alice!") && l.ends_with("PRIVMSG #link :and back")
    })
    .await;
}

/// The next `n` groupchat bodies that start with `prefix`, as they arrive live.
async fn live(alice: &mut TestClient, prefix: &str, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    while bodies.len() < n {
        let next = alice
            .try_expect(Duration::from_secs(15), |s| match s {
                xmpp_client::Stanza::Message(m) => {
                    body(m).filter(|b| b.starts_with(prefix)).map(str::to_owned)
                }
                _ => None,
            })
            .await;
        match next {
            Ok(body) => bodies.push(body),
            Err(_) => break,
        }
    }
    bodies
}

/// Wait until `log` holds `text`.
async fn wait_for_log(log: &std::path::Path, text: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let seen = std::fs::read_to_string(log).unwrap_or_default();
        if seen.contains(text) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "no {text:?} in the log within {within:?}\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A gateway started before its keeper refuses IRC joins with the reason, and attaches by
/// itself once the keeper runs: the next join works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_before_its_keeper_attaches_once_it_runs() {
    use crate::harness::config_toml_with_irc;
    use crate::harness::gateway_process::spawn as causeway;
    use crate::harness::irc_client::IrcClient;
    use crate::harness::irc_server::IrcServer;
    use crate::harness::xmpp_server::{Flavor, XmppServer};

    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("keeper.sock");
    let config = dir.path().join("causeway.toml");
    let irc_keys = format!("keeper = \"{}\"\n", socket.display());
    std::fs::write(
        &config,
        config_toml_with_irc(&xmpp, dir.path(), irc.port, &irc_keys, ""),
    )
    .unwrap();
    let log = dir.path().join("gateway.log");
    let _gateway = causeway(&["run"], &config, &log);
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    gateway_process::answering(&mut alice, "irc.localhost", &log).await;
    let room = "#late%127.0.0.1@irc.localhost";
    alice.send(join(&format!("{room}/alice"))).await;
    let refused = join_error(&mut alice).await;
    let text = refused.texts.values().next().cloned().unwrap_or_default();
    assert!(text.contains("causeway keeper"), "{text}");

    let _keeper = gateway_process::keeper(&config, &socket, &dir.path().join("keeper.log")).await;
    wait_for_log(&log, "attached to the keeper", Duration::from_secs(40)).await;
    let mut bob = IrcClient::connect(irc.port, "bob").await;
    bob.join("#late").await;
    enter(&mut alice, room, "alice").await;
    bob.expect("alice joining through the keeper", |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;
}
