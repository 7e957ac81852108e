//! How a test's XMPP user logs in to their own Matrix account: the ad-hoc commands of the
//! Matrix service (execute, then submit the form), and the devices the gateway made.

use std::time::Duration;

use reqwest::Method;
use xmpp_client::minidom::Element;
use xmpp_client::IqResponse;

use crate::harness::matrix_client::MatrixClient;
use crate::harness::scene::{MatrixSide, Scene, GW};
use crate::harness::TestClient;

pub(crate) const COMMANDS: &str = "http://jabber.org/protocol/commands";
pub(crate) const DATA: &str = "jabber:x:data";

pub(crate) use crate::harness::{data_form as form, nc};

/// Run the ad-hoc command `node` on the Matrix service: execute, then submit `fields`
/// when it answers with a form. The last answer.
pub(crate) async fn command(
    client: &mut TestClient,
    node: &str,
    fields: &[(&str, &str)],
) -> Element {
    let execute = Element::builder("command", COMMANDS)
        .attr(nc("node"), node)
        .attr(nc("action"), "execute")
        .build();
    let first = match client.set(GW, execute).await {
        IqResponse::Result(Some(answer)) => answer,
        other => panic!("{node} refused: {other:?}"),
    };
    if first.attr("status") != Some("executing") {
        return first;
    }
    next_step(client, &first, fields).await
}

/// Submit `fields` as the next step of the command session `answer` came from, with the
/// hidden fields of its form. The answer, which may wait for the network (up to 40 s).
pub(crate) async fn next_step(
    client: &mut TestClient,
    answer: &Element,
    fields: &[(&str, &str)],
) -> Element {
    let node = answer.attr("node").expect("a node");
    let hidden: Vec<(String, String)> = answer
        .get_child("x", DATA)
        .into_iter()
        .flat_map(|x| x.children())
        .filter(|f| f.attr("type") == Some("hidden"))
        .map(|f| {
            let value = f.get_child("value", DATA).map(|v| v.text());
            (
                f.attr("var").unwrap_or_default().to_owned(),
                value.unwrap_or_default(),
            )
        })
        .collect();
    let mut given: Vec<(&str, &str)> = hidden
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    given.extend_from_slice(fields);
    let submit = Element::builder("command", COMMANDS)
        .attr(nc("node"), node)
        .attr(
            nc("sessionid"),
            answer.attr("sessionid").expect("a session"),
        )
        .append(form("submit", &given))
        .build();
    match client.try_set(GW, submit, Duration::from_secs(40)).await {
        Some(IqResponse::Result(Some(answer))) => answer,
        other => panic!("{node} submit refused: {other:?}"),
    }
}

/// The note of a completed command: its type and text.
pub(crate) fn note(answer: &Element) -> (String, String) {
    assert_eq!(answer.attr("status"), Some("completed"), "{answer:?}");
    let note = answer
        .get_child("note", COMMANDS)
        .unwrap_or_else(|| panic!("no note: {answer:?}"));
    (note.attr("type").unwrap_or("info").to_owned(), note.text())
}

/// carol, a Matrix user on the scene's Synapse (password `carol-password`): her phone, a
/// plain client of hers, and her user id.
pub(crate) async fn register_carol(scene: &Scene<MatrixSide>) -> (MatrixClient, String) {
    let phone = scene
        .synapse
        .register("carol", "carol-password", false)
        .await;
    let carol = phone.user_id().to_owned();
    (phone, carol)
}

/// Log `client` in to `account` with `password` by the ad-hoc command.
pub(crate) async fn log_in(
    scene: &Scene<MatrixSide>,
    client: &mut TestClient,
    account: &str,
    password: &str,
) -> (String, String) {
    let url = scene.synapse.url();
    let answer = command(
        client,
        "matrix-login",
        &[
            ("account", account),
            ("password", password),
            ("homeserver", &url),
        ],
    )
    .await;
    note(&answer)
}

/// The devices of a Matrix account that the gateway made.
pub(crate) async fn gateway_devices(account: &MatrixClient) -> Vec<String> {
    let devices = account.request(Method::GET, &["devices"], None).await;
    devices["devices"]
        .as_array()
        .expect("a device list")
        .iter()
        .filter(|d| {
            d["display_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("causeway"))
        })
        .map(|d| d["device_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}
