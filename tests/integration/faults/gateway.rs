//! Faults at the gateway's own feet: its database takes no writes for 30 s under load, and
//! its configuration is reloaded (SIGHUP) under load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    archived, archived_in, extra, holds_all, read_until_archived, record, send_windowed, tally,
    Incoming, IrcPeer, Row, Seen,
};
use crate::harness::gateway_process::{self, signal, spawn};
use crate::harness::irc_server::{IrcKind, IrcServer};
use crate::harness::muc::enter;
use crate::harness::scene::Scene;
use crate::harness::xmpp_server::{Flavor, XmppServer};
use crate::harness::{config_toml_with_irc, TestClient};

/// How long the database takes no writes.
const UNWRITABLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_unwritable_for_30_s_under_load() {
    let s = Scene::irc(IrcKind::Ngircd)
        .irc_keys("persistent = true\n")
        .await;
    let channel = "#locked";
    let room = Scene::room(channel);
    let bob = Arc::new(IrcPeer::join(s.irc.port, "bob", channel).await);
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, &room, "alice").await;
    bob.wait_for("alice joining", Duration::from_secs(10), |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // Another connection holds SQLite's write lock: every write of the gateway's fails
    // ("database is locked" once its busy timeout is over), as on a read-only or full disk.
    let locker = s.store().await;
    let lock = locker.hold_write_lock().await.unwrap();
    let store = s.store().await;
    let lines = 100 * UNWRITABLE.as_secs() as usize;
    let said = Arc::new(AtomicUsize::new(0));
    let flow = tokio::spawn(
        bob.clone()
            .flow(channel, ("i", lines, 100), said.clone(), None),
    );
    let mut seen = Seen::default();
    seen.read_for(&mut alice, &room, "alice", UNWRITABLE).await;
    let archived_while_locked = tally(
        archived_in(&store, "alice@localhost", &room)
            .await
            .iter()
            .map(String::as_str),
        "i",
    )
    .len();
    drop(lock);
    let unlocked = Instant::now();
    flow.await.unwrap();
    let archive = read_until_archived(
        &mut seen,
        &mut alice,
        (&room, "alice"),
        Duration::from_secs(30),
        async || archived_in(&store, "alice@localhost", &room).await,
        |archive| holds_all(archive, "i", lines),
    )
    .await;
    let caught_up = unlocked.elapsed();
    store.close().await;
    locker.close().await;
    let incoming = Incoming::count(&seen, &archive, "i");
    let row = incoming.row(
        "database unwritable 30 s",
        "IRC→XMPP",
        lines,
        format!(
            "SQLite write lock held by another connection for 30 s; {archived_while_locked} archived meanwhile; all in {} ms after it was released",
            caught_up.as_millis()
        ),
    );
    let lost = row.lost;
    record(&[row]);
    assert_eq!(archived_while_locked, 0, "the lock did not stop the writes");
    assert_eq!(
        lost, 0,
        "lines not archived once the database took writes again"
    );
    assert_eq!(extra(&incoming.archived), 0, "lines archived twice");
    assert_eq!(
        incoming.live.len(),
        lines,
        "live delivery waited for the database"
    );
    assert_eq!(extra(&incoming.live), 0, "lines delivered twice");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_under_load() {
    const LINES: usize = 2_000;
    const MESSAGES: usize = 1_000;
    let irc = IrcServer::ngircd();
    let xmpp = XmppServer::start(Flavor::Prosody);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("causeway.toml");
    // Each reload changes a setting (the join history's length).
    let toml = |join_lines: usize| {
        config_toml_with_irc(&xmpp, dir.path(), irc.port, "persistent = true\n", "").replace(
            "[history]\n",
            &format!("[history]\njoin_lines = {join_lines}\n"),
        )
    };
    std::fs::write(&config, toml(20)).unwrap();
    let changed: Vec<String> = (0..10).map(|n| toml(10 + n)).collect();
    let log = dir.path().join("gateway.log");
    let gateway = spawn(&["run"], &config, &log);
    let mut alice = TestClient::login(&xmpp, "alice", "localhost").await;
    gateway_process::answering(&mut alice, "irc.localhost", &log).await;
    let channel = "#reloaded";
    let room = Scene::room(channel);
    let bob = Arc::new(IrcPeer::join(irc.port, "bob", channel).await);
    enter(&mut alice, &room, "alice").await;
    bob.wait_for("alice joining", Duration::from_secs(10), |l| {
        l.starts_with(":alice!") && l.contains(" JOIN ")
    })
    .await;

    // Both ways at once, and a reload every 300 ms meanwhile, each with a changed setting.
    let said = Arc::new(AtomicUsize::new(0));
    let flow = tokio::spawn(bob.clone().flow(channel, ("i", LINES, 500), said, None));
    let reloads = Arc::new(AtomicUsize::new(0));
    let reloading = {
        let (reloads, pid, config) = (reloads.clone(), gateway.id().unwrap(), config.clone());
        tokio::spawn(async move {
            for toml in changed {
                tokio::time::sleep(Duration::from_millis(300)).await;
                std::fs::write(&config, toml).unwrap();
                let status = std::process::Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .unwrap();
                assert!(status.success());
                reloads.fetch_add(1, Ordering::Release);
            }
        })
    };
    let mut seen = Seen::default();
    send_windowed(
        &mut alice,
        &mut seen,
        &room,
        "alice",
        ("x", 0, MESSAGES),
        50,
    )
    .await;
    flow.await.unwrap();
    reloading.await.unwrap();
    let db = format!("sqlite://{}", dir.path().join("causeway.db").display());
    let archive = read_until_archived(
        &mut seen,
        &mut alice,
        (&room, "alice"),
        Duration::from_secs(20),
        async || archived(&db, "alice@localhost", &room).await,
        |archive| {
            let on_irc = bob.said_by("alice", channel);
            holds_all(archive, "i", LINES) && holds_all(&on_irc, "x", MESSAGES)
        },
    )
    .await;
    let reloaded = std::fs::read_to_string(&log)
        .unwrap()
        .matches("configuration reloaded")
        .count();
    signal(&gateway, "-TERM");
    let incoming = Incoming::count(&seen, &archive, "i");
    let on_irc = tally(
        bob.said_by("alice", channel).iter().map(String::as_str),
        "x",
    );
    let own = tally(archive.iter().map(String::as_str), "x");
    let note = format!(
        "{} SIGHUPs during the traffic, {reloaded} reloads logged",
        reloads.load(Ordering::Acquire)
    );
    record(&[
        incoming.row("SIGHUP reload ×10", "IRC→XMPP", LINES, note.clone()),
        Row {
            case: "SIGHUP reload ×10".into(),
            direction: "XMPP→IRC",
            sent: MESSAGES,
            delivered: on_irc.len(),
            archived: Some(own.len()),
            duplicated: extra(&on_irc) + extra(&own),
            lost: MESSAGES - on_irc.len(),
            note,
        },
    ]);
    assert_eq!(
        reloaded,
        10,
        "every SIGHUP reloads the configuration\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert_eq!(
        incoming.archived.len(),
        LINES,
        "IRC lines lost across reloads"
    );
    assert_eq!(
        incoming.live.len(),
        LINES,
        "IRC lines not delivered across reloads"
    );
    assert_eq!(on_irc.len(), MESSAGES, "XMPP messages lost across reloads");
    assert_eq!(
        own.len(),
        MESSAGES,
        "XMPP messages not archived across reloads"
    );
    assert_eq!(
        incoming.doubled() + extra(&on_irc) + extra(&own),
        0,
        "duplicates"
    );
}
