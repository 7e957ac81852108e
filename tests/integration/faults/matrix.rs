//! Synapse restarted while messages go both ways through the appservice: none lost, none
//! twice — Synapse keeps the transactions it owes the gateway across its restart, and the
//! gateway keeps (and sends again) what Synapse did not take.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{
    archived_in, extra, holds_all, read_until_archived, record, send_windowed, tally, Incoming,
    Row, Seen,
};
use crate::harness::matrix_client::MatrixClient;
use crate::harness::muc::enter;
use crate::harness::scene::Scene;
use crate::matrix::{is_message_from, room_jid};

/// Messages each way.
const EACH_WAY: usize = 300;
/// What the XMPP sender may have unreflected at once.
const WINDOW: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synapse_restarted_during_traffic_both_ways() {
    let mut scene = Scene::matrix().await;
    let room = scene.public_room("faults", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let jid = room_jid("faults");
    enter(&mut alice, &jid, "Alice").await;
    scene.bob.catch_up().await;

    // Half of each way, the Matrix side's in a task of its own.
    let half = EACH_WAY / 2;
    let said = Arc::new(AtomicUsize::new(0));
    // Bob's sends from a client of their own (the scene's bob reads).
    let bob = Arc::new(MatrixClient::new(
        &scene.synapse.url(),
        scene.bob.access_token(),
        scene.bob.user_id(),
    ));
    let first = {
        let (bob, room, said) = (bob.clone(), room.clone(), said.clone());
        tokio::spawn(async move {
            for n in 0..half {
                bob.send_text(&room, &format!("m{n}")).await;
                said.fetch_add(1, Ordering::Release);
            }
        })
    };
    let mut seen = Seen::default();
    send_windowed(&mut alice, &mut seen, &jid, "Alice", ("x", 0, half), WINDOW).await;
    first.await.unwrap();

    // Synapse restarts with transactions still owed both ways; the XMPP side keeps sending
    // meanwhile (its messages wait in the gateway).
    {
        let synapse = &mut scene.synapse;
        let restart = synapse.restart();
        let sending = send_windowed(
            &mut alice,
            &mut seen,
            &jid,
            "Alice",
            ("x", half, WINDOW),
            WINDOW,
        );
        let ((), ()) = tokio::join!(restart, sending);
    };
    for n in half..EACH_WAY {
        bob.send_text(&room, &format!("m{n}")).await;
    }
    send_windowed(
        &mut alice,
        &mut seen,
        &jid,
        "Alice",
        ("x", half + WINDOW, EACH_WAY - half - WINDOW),
        WINDOW,
    )
    .await;

    // Everything on both sides.
    let puppet = Scene::puppet("alice");
    // Until the last message is there (or nothing more comes), then all of the room.
    let last = format!("x{}", EACH_WAY - 1);
    let _ = scene
        .bob
        .try_next_event(
            &room,
            |e| is_message_from(e, &puppet) && e["content"]["body"] == last.as_str(),
            Duration::from_secs(60),
        )
        .await;
    // Anything sent twice would follow soon after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let on_matrix: Vec<String> = scene
        .bob
        .room_messages(&room)
        .await
        .iter()
        .filter(|e| is_message_from(e, &puppet))
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect();
    let store = scene.store().await;
    let archive = read_until_archived(
        &mut seen,
        &mut alice,
        (&jid, "Alice"),
        Duration::from_secs(30),
        async || archived_in(&store, "alice@localhost", &jid).await,
        |archive| holds_all(archive, "m", EACH_WAY),
    )
    .await;
    store.close().await;
    let incoming = Incoming::count(&seen, &archive, "m");
    let matrix = tally(on_matrix.iter().map(String::as_str), "x");
    let own = tally(archive.iter().map(String::as_str), "x");
    record(&[
        incoming.row(
            "Synapse restarted",
            "Matrix→XMPP",
            EACH_WAY,
            format!(
                "restarted after {half} each way; {WINDOW} XMPP messages sent while it was down"
            ),
        ),
        Row {
            case: "Synapse restarted".into(),
            direction: "XMPP→Matrix",
            sent: EACH_WAY,
            delivered: matrix.len(),
            archived: Some(own.len()),
            duplicated: extra(&matrix) + extra(&own),
            lost: EACH_WAY - matrix.len(),
            note: format!("{} reflected to the sender", seen.reflected.len()),
        },
    ]);
    let missing: Vec<usize> = (0..EACH_WAY)
        .filter(|n| !incoming.archived.contains_key(n))
        .collect();
    assert_eq!(
        incoming.live.len(),
        EACH_WAY,
        "Matrix messages not delivered to XMPP (not archived: {missing:?})"
    );
    assert_eq!(
        incoming.archived.len(),
        EACH_WAY,
        "Matrix messages not archived"
    );
    assert_eq!(matrix.len(), EACH_WAY, "XMPP messages not on Matrix");
    assert_eq!(
        seen.reflected.len(),
        EACH_WAY,
        "XMPP messages not reflected"
    );
    assert_eq!(
        incoming.doubled() + extra(&matrix) + extra(&own),
        0,
        "messages twice"
    );
}
