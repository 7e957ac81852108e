//! `kill -9` of the gateway in the middle of 5,000 IRC→XMPP and 5,000 XMPP→IRC messages,
//! with the IRC connections in the gateway's own process and held by the keeper.
//!
//! What each mode must show. Both: no archived message lost (every row committed before the
//! kill is there after it), the database sound, no message archived twice, every message
//! the sender saw reflected delivered on IRC, nothing delivered twice on IRC, and at most
//! the sender's window of messages unconfirmed (neither reflected nor bounced: what was in
//! the gateway's memory — XEP-0114 has no acknowledgements). Single process: the puppet
//! back in its channel after the restart (persistent channel). Keeper: no IRC connection
//! dropped (no QUIT, PART or JOIN of the puppet seen), and every IRC line — those said while
//! no gateway ran included — archived exactly once.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{
    archived, extra, holds_all, read_until_archived, record, send_windowed, tally, IrcPeer, Row,
    Seen,
};
use crate::harness::gateway_process::{self, signal, spawn};
use crate::harness::irc_server::IrcServer;
use crate::harness::muc::{enter, join, presence_from};
use crate::harness::xmpp_server::{Flavor, XmppServer};
use crate::harness::{config_toml_with_irc, TestClient};

const EACH_WAY: usize = 5_000;
/// Messages the XMPP sender may have unanswered (not reflected, not bounced) at once.
const WINDOW: usize = 50;
const CHANNEL: &str = "#load";
const ROOM: &str = "#load%127.0.0.1@irc.localhost";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_in_one_process() {
    kill_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_with_the_keeper() {
    kill_under_load(true).await;
}

async fn kill_under_load(kept: bool) {
    let mode = if kept { "keeper" } else { "one process" };
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("keeper.sock");
    let mut irc_keys = "persistent = true\n".to_owned();
    if kept {
        irc_keys.push_str(&format!("keeper = \"{}\"\n", socket.display()));
    }
    let config = dir.path().join("causeway.toml");
    std::fs::write(
        &config,
        config_toml_with_irc(&xmpp, dir.path(), irc.port, &irc_keys, ""),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("causeway.db").display());
    let _keeper = match kept {
        true => {
            Some(gateway_process::keeper(&config, &socket, &dir.path().join("keeper.log")).await)
        }
        false => None,
    };
    let log = |n: usize| dir.path().join(format!("gateway-{n}.log"));
    let gateway = spawn(&["run"], &config, &log(1));
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    gateway_process::answering(&mut alice, "irc.localhost", &log(1)).await;
    let bob = IrcPeer::join(irc.port, "bob", CHANNEL).await;
    enter(&mut alice, ROOM, "alice").await;
    let puppet = |verbs: &'static [&'static str]| {
        move |l: &str| l.starts_with(":alice!") && verbs.iter().any(|v| l.contains(v))
    };
    bob.wait_for(
        "alice joining",
        Duration::from_secs(10),
        puppet(&[" JOIN "]),
    )
    .await;

    // IRC flows all along, 1,000 lines a second; the XMPP user sends half, and the kill
    // comes while both are in flight.
    let bob = std::sync::Arc::new(bob);
    let said = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flow = tokio::spawn(bob.clone().flow(
        CHANNEL,
        ("i", EACH_WAY, 1_000),
        said.clone(),
        (!kept).then_some("alice"),
    ));
    let half = EACH_WAY / 2;
    let mut seen = Seen::default();
    send_windowed(&mut alice, &mut seen, ROOM, "alice", ("x", 0, half), WINDOW).await;
    let said_at_kill = said.load(std::sync::atomic::Ordering::Acquire);
    assert!(
        said_at_kill < EACH_WAY,
        "IRC was no longer flowing at the kill"
    );
    signal(&gateway, "-KILL");
    let mut gateway = gateway;
    gateway_process::ended(&mut gateway, Duration::from_secs(5)).await;

    // What the archive held at the kill, and whether the file is sound.
    let store = causeway::store::Store::open(&db, 1).await.unwrap();
    let sound = store.integrity_check().await.unwrap();
    store.close().await;
    assert_eq!(sound, Ok(()), "the database after kill -9");
    let at_kill: BTreeSet<String> = archived(&db, "alice@localhost", ROOM)
        .await
        .into_iter()
        .collect();

    // A second of IRC with no gateway, then a new one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let gateway = spawn(&["run"], &config, &log(2));
    if !kept {
        // The puppet is back in its persistent channel on its own.
        let joins = |l: &str| l.starts_with(":alice!") && l.contains(" JOIN ");
        let start = std::time::Instant::now();
        while bob.lines(joins).len() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the puppet not back in its persistent channel after the restart\n{}",
                std::fs::read_to_string(log(2)).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    gateway_process::answering(&mut alice, "irc.localhost", &log(2)).await;
    // The client finds itself out (a self-ping would tell it) and joins again.
    alice.send(join(&format!("{ROOM}/alice"))).await;
    presence_from(
        &mut alice,
        "/alice",
        xmpp_client::parsers::presence::Type::None,
    )
    .await;
    send_windowed(
        &mut alice,
        &mut seen,
        ROOM,
        "alice",
        ("x", half, EACH_WAY - half),
        WINDOW,
    )
    .await;
    let paused_at = flow.await.unwrap();

    // Everything settles: IRC lines archived, XMPP messages on IRC.
    // In one process some lines are gone for good: five seconds is enough to tell.
    let within = Duration::from_secs(if kept { 30 } else { 5 });
    let archive = read_until_archived(
        &mut seen,
        &mut alice,
        (ROOM, "alice"),
        within,
        async || archived(&db, "alice@localhost", ROOM).await,
        |archive| holds_all(archive, "i", EACH_WAY),
    )
    .await;
    drop(gateway);

    // IRC → XMPP.
    let live = tally(seen.live.iter().map(String::as_str), "i");
    let in_archive = tally(archive.iter().map(String::as_str), "i");
    let kept_rows: BTreeSet<&String> = archive.iter().collect();
    let archived_lost = at_kill.iter().filter(|b| !kept_rows.contains(b)).count();
    let missing: Vec<usize> = (0..EACH_WAY)
        .filter(|n| !in_archive.contains_key(n))
        .collect();
    let irc_lost = missing.len();
    // One process: what the gateway held at the kill and had not archived yet — lines read
    // from its socket or waiting there — is gone with it: the lines after the last archived
    // at the kill, up to those said before the QUIT reached the IRC user (who stops then).
    let last_kept = tally(at_kill.iter().map(String::as_str), "i")
        .keys()
        .next_back()
        .map_or(0, |n| n + 1);
    let window = match kept {
        true => 0..0,
        false => last_kept..paused_at.unwrap_or(said_at_kill).max(last_kept),
    };
    record(&[
        Row {
            case: format!("kill -9 ({mode})"),
            direction: "IRC→XMPP",
            sent: EACH_WAY,
            delivered: live.len(),
            archived: Some(in_archive.len()),
            duplicated: extra(&in_archive),
            lost: irc_lost,
            note: format!(
                "{} delivered live twice; {} rows archived at the kill, {archived_lost} of them gone after; {}",
                extra(&live),
                at_kill.len(),
                match kept {
                    true => "IRC said 1 s with no gateway".to_owned(),
                    false => format!(
                        "lines {}–{} in flight at the kill (after the last archived, before the QUIT reached IRC; the kill came after line {said_at_kill})",
                        window.start,
                        window.end
                    ),
                }
            ),
        },
        xmpp_to_irc_row(mode, &seen, &bob, &archive),
    ]);
    assert_eq!(archived_lost, 0, "rows archived before the kill are gone");
    assert_eq!(extra(&in_archive), 0, "IRC lines archived twice");
    let outside: Vec<&usize> = missing.iter().filter(|n| !window.contains(n)).collect();
    assert!(
        outside.is_empty(),
        "IRC lines lost outside the in-flight window {window:?}: {outside:?}"
    );
    if kept {
        assert_eq!(
            irc_lost, 0,
            "IRC lines not archived (keeper mode): {missing:?}"
        );
        // Its one JOIN, from before the kill, and nothing since.
        let comings_and_goings = bob.lines(puppet(&[" QUIT", " PART ", " JOIN "]));
        assert_eq!(
            comings_and_goings.len(),
            1,
            "the puppet's connection dropped: {comings_and_goings:?}"
        );
    }
    check_xmpp_to_irc(&seen, &bob);
    let own = tally(archive.iter().map(String::as_str), "x");
    assert_eq!(extra(&own), 0, "XMPP messages archived twice");
    assert_eq!(
        reflected_not_archived(&seen, &own),
        0,
        "messages reflected to the sender that are not in the archive"
    );
}

/// XMPP → IRC: what reached IRC of what the client sent.
fn xmpp_to_irc_row(mode: &str, seen: &Seen, bob: &IrcPeer, archive: &[String]) -> Row {
    let on_irc = tally(
        bob.said_by("alice", CHANNEL).iter().map(String::as_str),
        "x",
    );
    let in_archive = tally(archive.iter().map(String::as_str), "x");
    let unconfirmed = EACH_WAY - seen.reflected.len().min(EACH_WAY) - seen.bounced.len();
    let unarchived = reflected_not_archived(seen, &in_archive);
    Row {
        case: format!("kill -9 ({mode})"),
        direction: "XMPP→IRC",
        sent: EACH_WAY,
        delivered: on_irc.len(),
        archived: Some(in_archive.len()),
        duplicated: extra(&on_irc) + extra(&in_archive),
        lost: reflected_not_delivered(seen, bob),
        note: format!(
            "{} bounced to the sender (the gateway gone), {unconfirmed} unconfirmed (≤ the window of {WINDOW}); {unarchived} reflected but not archived",
            seen.bounced.len()
        ),
    }
}

/// Messages the sender saw reflected that are not in the archive: a reflection goes out
/// only once the archive has the message, so a crash cannot take it back.
fn reflected_not_archived(
    seen: &Seen,
    in_archive: &std::collections::BTreeMap<usize, usize>,
) -> usize {
    seen.reflected
        .iter()
        .filter(|id| {
            id.strip_prefix('x')
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| !in_archive.contains_key(&n))
        })
        .count()
}

fn reflected_not_delivered(seen: &Seen, bob: &IrcPeer) -> usize {
    let on_irc: BTreeSet<String> = bob.said_by("alice", CHANNEL).into_iter().collect();
    seen.reflected
        .iter()
        .filter(|id| !on_irc.contains(*id))
        .count()
}

fn check_xmpp_to_irc(seen: &Seen, bob: &IrcPeer) {
    let on_irc = tally(
        bob.said_by("alice", CHANNEL).iter().map(String::as_str),
        "x",
    );
    assert_eq!(extra(&on_irc), 0, "XMPP messages said twice on IRC");
    assert_eq!(
        reflected_not_delivered(seen, bob),
        0,
        "messages reflected to the sender that never reached IRC"
    );
    let answered = seen.reflected.len() + seen.bounced.len();
    assert!(
        answered + WINDOW >= EACH_WAY,
        "{} of {EACH_WAY} messages neither reflected nor bounced (window {WINDOW})",
        EACH_WAY - answered
    );
}
