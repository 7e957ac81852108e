//! Files both ways (issue #19), end to end against Prosody and Synapse: a Matrix file
//! reaches XMPP as a link to the gateway's own endpoint (XEP-0066), fetched from the
//! homeserver with authentication; an XMPP user's upload link becomes a Matrix media event
//! with the file in the homeserver's media repository; what cannot cross says why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use xmpp_client::parsers::message::Message;

use crate::harness::muc::*;
use crate::harness::process::free_port;
use crate::harness::scene::Scene;

const OOB: &str = "jabber:x:oob";
const WAIT: Duration = Duration::from_secs(20);
/// The gateway's size limit in these tests.
const LIMIT: usize = 200_000;

/// A PNG as far as anyone checks: its signature, then bytes.
pub(crate) fn png() -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n".to_vec();
    data.extend((0..3000u32).map(|i| (i % 251) as u8));
    data
}

/// A web server on loopback with fixed files: path → (content type, content). The type
/// `redirect` sends the client to the content as an address; a type starting with `unsized `
/// is served without a length, until the connection closes.
pub(crate) async fn file_server(files: HashMap<&'static str, (&'static str, Vec<u8>)>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::new(files);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let files = files.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let answer = match files.get(path.as_str()) {
                    Some((kind, data)) if *kind == "redirect" => {
                        let to = String::from_utf8_lossy(data);
                        format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                            .into_bytes()
                    }
                    Some((kind, data)) => {
                        let length = match kind.strip_prefix("unsized ") {
                            Some(_) => String::new(),
                            None => format!("Content-Length: {}\r\n", data.len()),
                        };
                        let kind = kind.trim_start_matches("unsized ");
                        let mut head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\n{length}\
                             Connection: close\r\n\r\n"
                        )
                        .into_bytes();
                        head.extend_from_slice(data);
                        head
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = socket.write_all(&answer).await;
            });
        }
    });
    base
}

/// A groupchat message carrying `url` as XEP-0066 data, its body the address (as clients
/// send uploads).
pub(crate) fn file_to(room: &str, url: &str) -> Message {
    let mut m = groupchat_to(room, url);
    m.payloads.push(
        format!("<x xmlns='{OOB}'><url>{url}</url></x>")
            .parse()
            .unwrap(),
    );
    m
}

/// The out-of-band address of a message.
pub(crate) fn oob_url(m: &Message) -> Option<String> {
    let x = payload(m, "x", OOB)?;
    Some(x.get_child("url", OOB)?.text())
}

/// GET `url`: status, headers, content.
pub(crate) async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let answer = reqwest::get(url).await.unwrap();
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    (status, headers, answer.bytes().await.unwrap().to_vec())
}

pub(crate) fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// A Matrix image reaches XMPP as the gateway's link with XEP-0066 data, which serves the
/// file from the homeserver; an SVG is served as a download, never inline; a file above the
/// limit is named, with no link; an unknown link is refused. A file an XMPP user links to
/// on the gateway's own network is not fetched (the configuration does not allow it).
#[tokio::test]
async fn matrix_files_reach_xmpp_through_the_gateways_links() {
    let port = free_port();
    let scene = Scene::matrix()
        .keys(&format!(
            "media_url = \"http://127.0.0.1:{port}/media\"\n\
             media_listen = \"127.0.0.1:{port}\"\nmedia_max_size = {LIMIT}"
        ))
        .start()
        .await;
    let room = scene.public_room("files", "").await;
    scene.bob.set_displayname("Bob").await;
    let mut alice = scene.xmpp_user("alice").await;
    let room_jid = crate::matrix::room_jid("files");
    enter(&mut alice, &room_jid, "Alice").await;

    let image = png();
    let mxc = scene.bob.upload(image.clone(), "image/png").await;
    let content = json!({"msgtype": "m.image", "body": "cat.png", "url": mxc,
                         "info": {"mimetype": "image/png", "size": image.len()}});
    scene.bob.send(&room, "m.room.message", content).await;
    let got = live_groupchat_from(&mut alice, "/Bob").await;
    let link = body(&got).unwrap().to_owned();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/media/")) && link.ends_with("/cat.png"),
        "{link}"
    );
    assert_eq!(oob_url(&got).as_deref(), Some(link.as_str()));
    let (status, headers, served) = get(&link).await;
    assert_eq!(status, 200);
    assert_eq!(served, image);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert!(header(&headers, "content-security-policy").contains("sandbox"));
    // Asked what it would get, a client hears the size the event gave.
    let head = reqwest::Client::new().head(&link).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(head.headers(), "content-length"),
        image.len().to_string()
    );

    // A caption (Matrix 1.10: the body, the name apart) is the file's XEP-0066 description;
    // the link names the file.
    let content = json!({"msgtype": "m.image", "body": "my cat, asleep", "filename": "cat2.png",
                         "url": mxc, "info": {"mimetype": "image/png"}});
    let captioned = scene.bob.send(&room, "m.room.message", content).await;
    let got = live_groupchat_from(&mut alice, "/Bob").await;
    let link = body(&got).unwrap().to_owned();
    assert!(link.ends_with("/cat2.png"), "{link}");
    let desc = payload(&got, "x", OOB).and_then(|x| x.get_child("desc", OOB));
    assert_eq!(desc.map(|d| d.text()).as_deref(), Some("my cat, asleep"));
    assert_eq!(get(&link).await.0, 200);
    // Redacted, it is no longer served.
    scene.bob.redact(&room, &captioned, "wrong cat").await;
    with_payload(&mut alice, "", "retract", "urn:xmpp:message-retract:1").await;
    assert_eq!(get(&link).await.0, 404);

    // A hostile SVG: a download, in a sandbox.
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>".to_vec();
    let mxc = scene.bob.upload(svg.clone(), "image/svg+xml").await;
    let content = json!({"msgtype": "m.image", "body": "../../x.svg", "url": mxc,
                         "info": {"mimetype": "image/svg+xml"}});
    scene.bob.send(&room, "m.room.message", content).await;
    let got = live_groupchat_from(&mut alice, "/Bob").await;
    let link = body(&got).unwrap().to_owned();
    assert!(link.ends_with("/x.svg"), "the name keeps no path: {link}");
    let (status, headers, served) = get(&link).await;
    assert_eq!((status, served), (200, svg));
    assert_eq!(header(&headers, "content-type"), "application/octet-stream");
    assert!(header(&headers, "content-disposition").starts_with("attachment"));

    // Too large to pass on: named, no link.
    let content = json!({"msgtype": "m.file", "body": "film.mkv", "url": mxc,
                         "info": {"mimetype": "video/x-matroska", "size": 10_000_000}});
    scene.bob.send(&room, "m.room.message", content).await;
    let got = live_groupchat_from(&mut alice, "/Bob").await;
    let text = body(&got).unwrap();
    assert!(
        text.contains("film.mkv") && text.contains("larger than"),
        "{text}"
    );
    assert!(oob_url(&got).is_none());

    // A link never handed out.
    let (status, _, _) = get(&format!(
        "http://127.0.0.1:{port}/media/{}/x.png",
        "0".repeat(32)
    ))
    .await;
    assert_eq!(status, 404);

    // An address inside: not fetched, sent as a link, and the sender hears why.
    let files = HashMap::from([("/up/cat.png", ("image/png", png()))]);
    // A name that resolves there.
    let base = file_server(files).await.replace("127.0.0.1", "localhost");
    let url = format!("{base}/up/cat.png");
    alice.send(file_to(&room_jid, &url)).await;
    let puppet = Scene::puppet("alice");
    let event = scene
        .bob
        .next_event(&room, |e| crate::matrix::is_message_from(e, &puppet), WAIT)
        .await;
    assert_eq!(event["content"]["msgtype"], "m.text");
    assert_eq!(event["content"]["body"], url.as_str());
    let why = room_notice(&mut alice, &room_jid).await;
    assert!(why.contains("inside the gateway"), "{why}");
}

/// The next message event of the XMPP user's puppet in `room`.
async fn puppet_message(scene: &Scene<crate::harness::scene::MatrixSide>, room: &str) -> Value {
    let puppet = Scene::puppet("alice");
    scene
        .bob
        .next_event(room, |e| crate::matrix::is_message_from(e, &puppet), WAIT)
        .await
}

/// An XMPP user's upload link becomes a Matrix media event whose file is in the media
/// repository; a file claiming to be an image it is not, and an SVG, go as plain files; a
/// file above the limit and a dead address go as the link, with a word to the sender.
#[tokio::test]
async fn xmpp_files_become_matrix_media_events() {
    let scene = Scene::matrix()
        .keys(&format!(
            "media_fetch_private = true\nmedia_max_size = {LIMIT}"
        ))
        .start()
        .await;
    let room = scene.public_room("uploads", "").await;
    let mut alice = scene.xmpp_user("alice").await;
    let room_jid = crate::matrix::room_jid("uploads");
    enter(&mut alice, &room_jid, "Alice").await;
    scene.bob.catch_up().await;
    let files = HashMap::from([
        ("/up/a%20cat.png", ("image/png", png())),
        (
            "/up/fake.png",
            ("image/png", b"<html><script>x</script></html>".to_vec()),
        ),
        (
            "/up/evil.svg",
            ("image/svg+xml", b"<svg onload='alert(1)'/>".to_vec()),
        ),
        (
            "/up/big.bin",
            ("application/octet-stream", vec![7u8; LIMIT + 1]),
        ),
        (
            "/up/endless.bin",
            ("unsized application/octet-stream", vec![7u8; LIMIT + 1]),
        ),
        ("/up/moved.png", ("redirect", b"/up/a%20cat.png".to_vec())),
    ]);
    let base = file_server(files).await;

    let url = format!("{base}/up/a%20cat.png");
    alice.send(file_to(&room_jid, &url)).await;
    let event = puppet_message(&scene, &room).await;
    let content = &event["content"];
    assert_eq!(content["msgtype"], "m.image", "{event}");
    assert_eq!(content["body"], "a cat.png");
    assert_eq!(content["filename"], "a cat.png");
    assert_eq!(content["info"]["mimetype"], "image/png");
    assert_eq!(content["info"]["size"], png().len());
    let (data, kind) = scene.bob.download(content["url"].as_str().unwrap()).await;
    assert_eq!(data, png());
    assert_eq!(kind, "image/png");
    // The sender sees their own message as sent, with its file.
    let echo = live_groupchat_from(&mut alice, "/Alice").await;
    assert_eq!(oob_url(&echo).as_deref(), Some(url.as_str()));

    // Redirects are followed.
    alice
        .send(file_to(&room_jid, &format!("{base}/up/moved.png")))
        .await;
    let event = puppet_message(&scene, &room).await;
    assert_eq!(event["content"]["msgtype"], "m.image", "{event}");
    assert_eq!(event["content"]["info"]["size"], png().len());

    for (path, kind) in [
        ("fake.png", "application/octet-stream"),
        ("evil.svg", "image/svg+xml"),
    ] {
        alice
            .send(file_to(&room_jid, &format!("{base}/up/{path}")))
            .await;
        let event = puppet_message(&scene, &room).await;
        assert_eq!(event["content"]["msgtype"], "m.file", "{event}");
        assert_eq!(event["content"]["info"]["mimetype"], kind, "{event}");
    }

    let dead = format!("http://127.0.0.1:{}/gone.png", free_port());
    for (url, reason) in [
        (format!("{base}/up/big.bin"), "larger than"),
        (format!("{base}/up/endless.bin"), "larger than"),
        (dead, "could not be fetched"),
    ] {
        alice.send(file_to(&room_jid, &url)).await;
        let event = puppet_message(&scene, &room).await;
        assert_eq!(event["content"]["msgtype"], "m.text", "{event}");
        assert_eq!(event["content"]["body"], url.as_str());
        let why = room_notice(&mut alice, &room_jid).await;
        assert!(why.contains("as a link") && why.contains(reason), "{why}");
    }
}
