//! Personal logins in encrypted rooms, against a real Synapse and a real E2EE Matrix client
//! on the other side: what the XMPP user sends is encrypted (a plain client sees only
//! `m.room.encrypted`), what they receive was decrypted by the gateway's own device, both
//! still after a gateway restart; and the recovery key cross-signs the gateway's session.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use xmpp_client::minidom::Element;
use xmpp_client::parsers::message::Message;

use crate::harness::e2ee_client::E2eeClient;
use crate::harness::matrix_client::MatrixClient;
use crate::harness::muc::{body, chat_from, enter, groupchat_to, invitation, live_groupchat_from};
use crate::harness::scene::{MatrixSide, Scene, GW, HS};
use crate::harness::TestClient;
use crate::matrix_personal::{command, gateway_devices, log_in, next_step, note, DATA};

const WAIT: Duration = Duration::from_secs(30);

/// An encrypted event `sender` sent to `room`, as a client without keys sees it.
fn is_encrypted_from(event: &Value, sender: &str) -> bool {
    event["type"] == "m.room.encrypted" && event["sender"] == sender
}

/// Carol (registered; her plain client), erin (an E2EE device) and alice on XMPP.
async fn carol_erin_and_alice(scene: &Scene<MatrixSide>) -> (MatrixClient, E2eeClient, TestClient) {
    let carol = scene
        .synapse
        .register("carol", "carol-password", false)
        .await;
    scene.synapse.register("erin", "erin-password", false).await;
    let erin = E2eeClient::login(&scene.synapse.url(), "erin", "erin-password").await;
    let alice = scene.xmpp_user("alice").await;
    (carol, erin, alice)
}

/// Alice logs in as carol; the gateway's device id.
async fn alice_as_carol(
    scene: &Scene<MatrixSide>,
    alice: &mut TestClient,
    carol: &MatrixClient,
) -> String {
    let (kind, text) = log_in(scene, alice, carol.user_id(), "carol-password").await;
    assert_eq!(kind, "info", "{text}");
    let devices = gateway_devices(carol).await;
    assert_eq!(devices.len(), 1, "{devices:?}");
    devices[0].clone()
}

/// Erin and alice (as carol) exchange one message each in `room` (`jid` on XMPP): each
/// arrives decrypted, and what the gateway sent is encrypted on the homeserver.
async fn both_ways(
    alice: &mut TestClient,
    erin: &E2eeClient,
    carol: &MatrixClient,
    (room, jid): (&str, &str),
    (to_alice, to_erin): (&str, &str),
) {
    erin.send_text(room, to_alice).await;
    let m = live_groupchat_from(alice, "/erin").await;
    assert_eq!(body(&m), Some(to_alice));
    alice.send(groupchat_to(jid, to_erin)).await;
    assert_eq!(erin.next_text(room, carol.user_id(), WAIT).await, to_erin);
    carol
        .next_event(room, |e| is_encrypted_from(e, carol.user_id()), WAIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_room_decrypts_both_ways_and_after_a_restart() {
    let mut scene = Scene::matrix().await;
    let (carol, erin, mut alice) = carol_erin_and_alice(&scene).await;
    let room = erin.create_encrypted_room(&[carol.user_id()], false).await;
    // Sent before the gateway's session existed: history, not news, when she enters.
    erin.send_text(&room, "before carol came").await;

    // The invitation reaches alice on her first sync; she accepts it by entering the room.
    let device = alice_as_carol(&scene, &mut alice, &carol).await;
    let jid = invitation(&mut alice).await;
    assert_eq!(jid, format!("{}@{GW}", room.to_lowercase()));
    enter(&mut alice, &jid, "Carol").await;
    erin.wait_joined(&room, carol.user_id(), WAIT).await;
    erin.wait_device(carol.user_id(), &device, WAIT).await;
    both_ways(
        &mut alice,
        &erin,
        &carol,
        (&room, &jid),
        ("a secret for carol", "a secret for erin"),
    )
    .await;

    // After a restart the session and its keys are the same: no new device, and both
    // ways still decrypt.
    scene.stop_gateway().await;
    scene.start_gateway().await;
    enter(&mut alice, &jid, "Carol").await;
    both_ways(
        &mut alice,
        &erin,
        &carol,
        (&room, &jid),
        ("after the restart", "still secret"),
    )
    .await;
    assert_eq!(gateway_devices(&carol).await, [device], "the same device");
    scene.stop().await;
}

/// Erin's encrypted direct chat with carol, whom alice is on XMPP: a direct chat is joined
/// at once, and is erin's JID on XMPP. (carol, erin, alice, the room, erin's JID.)
async fn direct_chat(
    scene: &Scene<MatrixSide>,
) -> (MatrixClient, E2eeClient, TestClient, String, String) {
    let (carol, erin, mut alice) = carol_erin_and_alice(scene).await;
    let room = erin.create_encrypted_room(&[carol.user_id()], true).await;
    let device = alice_as_carol(scene, &mut alice, &carol).await;
    erin.wait_joined(&room, carol.user_id(), WAIT).await;
    erin.wait_device(carol.user_id(), &device, WAIT).await;
    (carol, erin, alice, room, format!("erin%{HS}@{GW}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_direct_chat_carries_messages_both_ways() {
    let scene = Scene::matrix().await;
    let (carol, erin, mut alice, room, erin_jid) = direct_chat(&scene).await;
    erin.send_text(&room, "just between us").await;
    assert_eq!(
        body(&chat_from(&mut alice, &erin_jid).await),
        Some("just between us")
    );
    let mut reply = Message::chat(Some(erin_jid.parse().unwrap()));
    reply.bodies.insert(Default::default(), "agreed".into());
    alice.send(reply).await;
    assert_eq!(erin.next_text(&room, carol.user_id(), WAIT).await, "agreed");
    carol
        .next_event(&room, |e| is_encrypted_from(e, carol.user_id()), WAIT)
        .await;
    scene.stop().await;
}

/// Files in an encrypted direct chat of a personal login: erin's encrypted file reaches
/// alice as the gateway's link, which serves it decrypted; alice's upload goes to erin
/// encrypted (only its key in the event), and decrypts to the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_direct_chat_carries_files_both_ways() {
    use crate::media::{file_server, get, oob_url, png};
    let port = crate::harness::process::free_port();
    let scene = Scene::matrix()
        .keys(&format!(
            "media_url = \"http://127.0.0.1:{port}/files/\"\n\
             media_listen = \"127.0.0.1:{port}\"\nmedia_fetch_private = true"
        ))
        .start()
        .await;
    let (carol, erin, mut alice, room, erin_jid) = direct_chat(&scene).await;
    erin.send_file(&room, "secret.png", "image/png", png())
        .await;
    let got = chat_from(&mut alice, &erin_jid).await;
    let link = body(&got).unwrap().to_owned();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/files/")),
        "{link}"
    );
    assert_eq!(oob_url(&got).as_deref(), Some(link.as_str()));
    let (status, _, served) = get(&link).await;
    assert_eq!((status, served), (200, png()));

    let base = file_server([("/up/mine.png", ("image/png", png()))].into()).await;
    let url = format!("{base}/up/mine.png");
    let mut file = Message::chat(Some(erin_jid.parse().unwrap()));
    file.bodies.insert(Default::default(), url.clone());
    file.payloads.push(
        format!("<x xmlns='jabber:x:oob'><url>{url}</url></x>")
            .parse()
            .unwrap(),
    );
    alice.send(file).await;
    let content = erin.next_message(&room, carol.user_id(), WAIT).await;
    assert_eq!(content["msgtype"], "m.image", "{content}");
    assert!(
        content.get("file").is_some() && content.get("url").is_none(),
        "{content}"
    );
    assert_eq!(erin.file_of(&content).await, png());
    scene.stop().await;
}

/// Carol, whose phone set up secure backup as Element does (cross-signing keys, the
/// recovery key it shows her), and alice logged in as carol, the phone knowing the gateway's
/// device: (carol, her phone, the recovery key, alice, the gateway's device id).
async fn carol_with_a_phone(
    scene: &Scene<MatrixSide>,
) -> (MatrixClient, E2eeClient, String, TestClient, String) {
    let carol = scene
        .synapse
        .register("carol", "carol-password", false)
        .await;
    let phone = E2eeClient::login(&scene.synapse.url(), "carol", "carol-password").await;
    let key = phone.enable_recovery().await;
    let mut alice = scene.xmpp_user("alice").await;
    let device = alice_as_carol(scene, &mut alice, &carol).await;
    phone.wait_device(carol.user_id(), &device, WAIT).await;
    (carol, phone, key, alice, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_with_the_recovery_key_makes_the_session_cross_signed() {
    let scene = Scene::matrix().await;
    let (carol, phone, key, mut alice, device) = carol_with_a_phone(&scene).await;
    assert!(
        !phone.is_device_verified(carol.user_id(), &device).await,
        "a new session is not verified"
    );

    // A wrong key is refused, with what to give instead.
    let wrong = command(&mut alice, "matrix-verify", &[("recovery", "not the key")]).await;
    let (kind, text) = note(&wrong);
    assert_eq!(kind, "error", "{text}");
    assert!(text.contains("recovery key"), "{text}");

    let answer = command(&mut alice, "matrix-verify", &[("recovery", &key)]).await;
    let (kind, text) = note(&answer);
    assert_eq!(kind, "info", "{text}");
    assert!(text.contains("(verified)"), "{text}");
    assert!(
        phone.is_device_verified(carol.user_id(), &device).await,
        "her phone trusts the gateway's session"
    );
    let (_, status) = note(&command(&mut alice, "matrix-status", &[]).await);
    assert!(status.contains("(verified)"), "{status}");
    scene.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comparing_emoji_with_her_phone_makes_the_session_cross_signed() {
    let scene = Scene::matrix().await;
    let (carol, phone, _, mut alice, device) = carol_with_a_phone(&scene).await;
    let mut requests = phone.verification_requests();
    let mut compare_with_phone = async |alice: &mut TestClient| {
        let requested = command(alice, "matrix-verify", &[("emoji", "1")]).await;
        assert_eq!(requested.attr("status"), Some("executing"), "{requested:?}");
        // She accepts on her phone while the gateway waits for it.
        let ((sas, on_phone), compare) = tokio::join!(
            phone.accept_comparison(&mut requests, WAIT),
            next_step(alice, &requested, &[]),
        );
        let shown = form_value(&compare, "emoji");
        assert_eq!(shown, on_phone.join(", "), "both show the same emoji");
        assert_eq!(on_phone.len(), 7);
        (sas, compare)
    };

    // Her answer that they differ calls the comparison off on the phone too.
    let (sas, compare) = compare_with_phone(&mut alice).await;
    let (kind, text) = note(&next_step(&mut alice, &compare, &[("match", "0")]).await);
    assert_eq!(kind, "error", "{text}");
    assert!(text.contains("did not match"), "{text}");
    let mut changes = sas.changes();
    while !sas.is_cancelled() {
        let next = tokio::time::timeout(WAIT, changes.next()).await;
        assert!(
            next.is_ok(),
            "the phone's comparison goes on: {:?}",
            sas.state()
        );
    }
    let (_, status) = note(&command(&mut alice, "matrix-status", &[]).await);
    assert!(status.contains("(not verified)"), "{status}");

    // They match: she says so on both.
    let (sas, compare) = compare_with_phone(&mut alice).await;
    let (confirmed, answer) = tokio::join!(
        sas.confirm(),
        next_step(&mut alice, &compare, &[("match", "1")])
    );
    confirmed.unwrap();
    let (kind, text) = note(&answer);
    assert_eq!(kind, "info", "{text}");
    assert!(text.contains("(verified)"), "{text}");
    assert!(sas.is_done());
    assert!(
        phone.is_device_verified(carol.user_id(), &device).await,
        "her phone trusts the gateway's session"
    );
    scene.stop().await;
}

/// The value of field `var` in the form of a command's answer.
fn form_value(answer: &Element, var: &str) -> String {
    let form = answer
        .get_child("x", DATA)
        .unwrap_or_else(|| panic!("no form: {answer:?}"));
    let field = form
        .children()
        .find(|f| f.attr("var") == Some(var))
        .unwrap_or_else(|| panic!("no field {var}: {answer:?}"));
    field
        .get_child("value", DATA)
        .map(|v| v.text())
        .unwrap_or_default()
}
