//! The harness's own servers behave as the tests assume.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::harness::irc_server::IrcServer;

/// ngircd accepts more connections from 127.0.0.1 than its default per-IP limit of 5:
/// the gateway opens one per user.
#[tokio::test]
async fn ngircd_takes_many_clients_from_one_address() {
    let server = IrcServer::ngircd();
    let mut clients = Vec::new();
    for n in 0..8 {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write
            .write_all(format!("NICK user{n}\r\nUSER u{n} 0 * :User {n}\r\n").as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        let welcome = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.split(' ').nth(1) == Some("001") {
                    return line;
                }
            }
            panic!("connection {n} closed before the welcome");
        })
        .await
        .unwrap_or_else(|_| panic!("no welcome for connection {n}"));
        assert!(welcome.contains(&format!("user{n}")), "{welcome}");
        clients.push((lines, write));
    }
}
