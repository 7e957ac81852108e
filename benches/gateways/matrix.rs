//! XMPP ↔ Matrix latency through a real Synapse, causeway only (biboumi has no Matrix): an
//! XMPP user in a public room, a Matrix user (bob, on `/sync`) in the same room, paced
//! messages each way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway::Gateway;
use crate::harness::matrix_client::MatrixClient;
use crate::harness::matrix_server::Synapse;
use crate::harness::muc::{enter, groupchat_to};
use crate::harness::process::free_port;
use crate::harness::xmpp_server::XmppServer;
use crate::harness::TestClient;
use crate::{body_starting, percentiles, Percentiles};

/// The homeserver's server name.
const HS: &str = "hs.localhost";
/// Messages per second each way.
pub const MATRIX_RATE: usize = 20;
/// Seconds of paced messages each way.
pub const MATRIX_SECONDS: usize = 10;
/// How long one message may take before it counts as lost.
const LOST_AFTER: Duration = Duration::from_secs(30);

/// Paced latency XMPP → Matrix and Matrix → XMPP.
pub async fn latency(xmpp: &XmppServer, irc_port: u16) -> (Percentiles, Percentiles) {
    let dir = tempfile::tempdir().unwrap();
    let registration = dir.path().join("registration.yaml");
    let listen = free_port();
    let matrix = |homeserver: &str| {
        format!(
            "[matrix]\ndomain = \"matrix.localhost\"\nsecret = \"{}\"\nhomeserver = \"{homeserver}\"\n\
             server_name = \"{HS}\"\nlisten = \"127.0.0.1:{listen}\"\nregistration = \"{}\"\n",
            xmpp.secret,
            registration.display()
        )
    };
    Gateway::causeway_registration(xmpp, &matrix("http://127.0.0.1:1"));
    let synapse = Synapse::start(HS, Some(&registration)).await;
    let gateway = Gateway::causeway(xmpp, irc_port, true, &matrix(&synapse.url()));
    let bob = Arc::new(synapse.register("bob", "password", true).await);
    let room = bob
        .create_room(json!({
            "room_alias_name": "bench",
            "preset": "public_chat",
            "visibility": "public",
        }))
        .await;
    let room_jid = format!("#bench%{HS}@matrix.localhost");
    let mut alice = TestClient::connect(xmpp, "user0", "localhost").await;
    enter(&mut alice, &room_jid, "alice").await;
    bob.catch_up().await;

    let pace = (MATRIX_RATE, MATRIX_SECONDS);
    let (to_matrix, to_xmpp) = paced(&mut alice, &room_jid, &bob, &room, pace).await;
    alice.logout().await;
    gateway.stop();
    (to_matrix, to_xmpp)
}

/// `rate` messages a second for `seconds` each way between `alice`, an XMPP user in the
/// MUC `room_jid`, and `bob`, a Matrix user in `room` (the same room), one way after the
/// other: latency XMPP → Matrix (until bob's sync brings each) and Matrix → XMPP.
pub async fn paced(
    alice: &mut TestClient,
    room_jid: &str,
    bob: &Arc<MatrixClient>,
    room: &str,
    (rate, seconds): (usize, usize),
) -> (Percentiles, Percentiles) {
    let count = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);

    // XMPP → Matrix: bob notes each message as his sync brings it.
    let reader = {
        let (bob, room) = (bob.clone(), room.to_owned());
        tokio::spawn(async move {
            let mut arrivals = Vec::new();
            let is_ours = |e: &Value| {
                e["type"] == "m.room.message"
                    && e["content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.starts_with("xm "))
            };
            while arrivals.len() < count {
                let event = bob.next_event(&room, is_ours, LOST_AFTER).await;
                let text = event["content"]["body"].as_str().unwrap_or_default();
                arrivals.push((text.to_owned(), Instant::now()));
            }
            arrivals
        })
    };
    let mut sent_at = HashMap::new();
    let mut ticks = tokio::time::interval(interval);
    for i in 0..count {
        ticks.tick().await;
        let text = format!("xm {i}");
        sent_at.insert(text.clone(), Instant::now());
        alice.send(groupchat_to(room_jid, &text)).await;
    }
    let arrivals = reader.await.expect("every message reaches Matrix");
    let to_matrix = percentiles(
        arrivals
            .iter()
            .filter_map(|(text, at)| Some(at.duration_since(*sent_at.get(text)?)))
            .collect(),
        count,
    );

    // Matrix → XMPP: bob sends, alice notes.
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let sender = {
        let (bob, room, sent_at) = (bob.clone(), room.to_owned(), sent_at.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            for i in 0..count {
                ticks.tick().await;
                let text = format!("mx {i}");
                sent_at.lock().unwrap().insert(text.clone(), Instant::now());
                bob.send_text(&room, &text).await;
            }
        })
    };
    let mut samples = Vec::new();
    while samples.len() < count {
        let next = alice
            .try_expect(LOST_AFTER, |s| body_starting(s, "mx "))
            .await;
        let Ok(text) = next else { break };
        let at = Instant::now();
        if let Some(sent) = sent_at.lock().unwrap().get(&text) {
            samples.push(at.duration_since(*sent));
        }
    }
    sender.await.unwrap();
    let to_xmpp = percentiles(samples, count);
    (to_matrix, to_xmpp)
}
