//! The bench's own XEP-0114 connections to the run's Prosody: the load component of the
//! memory scenario and the bare relay (`bare.rs`) speak it with a few lines each.

use std::time::Duration;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Connect to Prosody's component port and authenticate as `domain` with `secret`. Returns
/// the stream's halves and what came after the handshake's answer in the same reads.
pub async fn connect(
    port: u16,
    domain: &str,
    secret: &str,
) -> (OwnedReadHalf, OwnedWriteHalf, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(
            format!(
                "<stream:stream xmlns='jabber:component:accept' \
                 xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = String::new();
    let id = loop {
        if let Some(id) = stream_id(&seen) {
            break id;
        }
        read_more(&mut read, &mut seen).await;
    };
    let digest = Sha1::digest(format!("{id}{secret}"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    write
        .write_all(format!("<handshake>{hex}</handshake>").as_bytes())
        .await
        .unwrap();
    let answer = loop {
        assert!(!seen.contains("stream:error"), "handshake refused: {seen}");
        if let Some(at) = seen.find("<handshake") {
            let rest = &seen[at..];
            // `<handshake/>` or `<handshake></handshake>`.
            if let Some(end) = rest
                .find("/>")
                .filter(|&e| !rest[..e].contains('>'))
                .map(|e| e + 2)
                .or_else(|| rest.find("</handshake>").map(|e| e + 12))
            {
                break at + end;
            }
        }
        read_more(&mut read, &mut seen).await;
    };
    (read, write, seen.as_bytes()[answer..].to_vec())
}

async fn read_more(read: &mut OwnedReadHalf, seen: &mut String) {
    let mut buf = [0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf))
        .await
        .expect("Prosody answers the component")
        .unwrap();
    assert!(n > 0, "Prosody closed the component's stream: {seen}");
    seen.push_str(&String::from_utf8_lossy(&buf[..n]));
}

/// The `id` of the stream header Prosody sent, once it is all there.
fn stream_id(header: &str) -> Option<String> {
    let tag = header.find("<stream:stream")?;
    let header = &header[tag..];
    header.find('>')?;
    for quote in ['\'', '"'] {
        if let Some(start) = header.find(&format!(" id={quote}")) {
            let rest = &header[start + 5..];
            return rest.find(quote).map(|end| rest[..end].to_owned());
        }
    }
    None
}
