//! A plain IRC client for tests: the "other side" of the gateway, a real user on the real
//! IRC server.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::ANSWER;

/// A registered IRC user.
pub struct IrcClient {
    pub nick: String,
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    /// Everything read so far, for failure messages.
    pub seen: Vec<String>,
}

impl IrcClient {
    /// Connect and register as `nick`.
    pub async fn connect(port: u16, nick: &str) -> IrcClient {
        Self::connect_with(port, nick, None).await
    }

    /// Connect with a server password, and register as `nick`.
    pub async fn connect_with(port: u16, nick: &str, password: Option<&str>) -> IrcClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, write) = stream.into_split();
        let mut client = IrcClient {
            nick: nick.to_owned(),
            read: BufReader::new(read),
            write,
            seen: vec![],
        };
        if let Some(password) = password {
            client.send(&format!("PASS {password}")).await;
        }
        client.send(&format!("NICK {nick}")).await;
        client.send(&format!("USER {nick} 0 * :{nick}")).await;
        client
            .expect("welcome", |l| l.split(' ').nth(1) == Some("001"))
            .await;
        client
    }

    /// The connection's two halves, for a reader and a writer of their own.
    pub fn into_parts(self) -> (BufReader<OwnedReadHalf>, OwnedWriteHalf) {
        (self.read, self.write)
    }

    /// Send one raw line.
    pub async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Send raw bytes (for encodings other than UTF-8).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    /// The next line as bytes, without its line ending; `None` at the end of the stream.
    async fn next_raw(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        if self.read.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        while matches!(line.last(), Some(b'\n' | b'\r')) {
            line.pop();
        }
        Some(line)
    }

    /// Read lines until one's bytes match (answering PINGs), within [`ANSWER`].
    pub async fn expect_raw(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&[u8]) -> bool,
    ) -> Vec<u8> {
        let wait = async {
            loop {
                let raw = self.next_raw().await.unwrap_or_else(|| {
                    panic!("{}: connection closed waiting for {what}", self.nick)
                });
                let line = String::from_utf8_lossy(&raw).into_owned();
                self.seen.push(line.clone());
                if let Some(token) = line.strip_prefix("PING ") {
                    self.write
                        .write_all(format!("PONG {token}\r\n").as_bytes())
                        .await
                        .unwrap();
                    continue;
                }
                if matches(&raw) {
                    return raw;
                }
            }
        };
        match tokio::time::timeout(ANSWER, wait).await {
            Ok(raw) => raw,
            Err(_) => panic!(
                "{}: no {what} within {ANSWER:?}; saw:\n{}",
                self.nick,
                self.seen.join("\n")
            ),
        }
    }

    /// Read lines until one matches (answering PINGs), within [`ANSWER`].
    pub async fn expect(&mut self, what: &str, mut matches: impl FnMut(&str) -> bool) -> String {
        let wait = async {
            loop {
                let line = self
                    .next_raw()
                    .await
                    .map(|raw| String::from_utf8_lossy(&raw).into_owned())
                    .unwrap_or_else(|| {
                        panic!("{}: connection closed waiting for {what}", self.nick)
                    });
                self.seen.push(line.clone());
                if let Some(token) = line.strip_prefix("PING ") {
                    self.write
                        .write_all(format!("PONG {token}\r\n").as_bytes())
                        .await
                        .unwrap();
                    continue;
                }
                if matches(&line) {
                    return line;
                }
            }
        };
        match tokio::time::timeout(ANSWER, wait).await {
            Ok(line) => line,
            Err(_) => panic!(
                "{}: no {what} within {ANSWER:?}; saw:\n{}",
                self.nick,
                self.seen.join("\n")
            ),
        }
    }

    /// Join a channel and wait for the end of NAMES.
    pub async fn join(&mut self, channel: &str) {
        self.send(&format!("JOIN {channel}")).await;
        self.expect("end of NAMES", |l| l.split(' ').nth(1) == Some("366"))
            .await;
    }

    /// Whether nothing matching arrives within `quiet`.
    pub async fn nothing_within(
        &mut self,
        quiet: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<(), String> {
        let wait = async {
            loop {
                let Some(raw) = self.next_raw().await else {
                    return Ok(());
                };
                let line = String::from_utf8_lossy(&raw).into_owned();
                self.seen.push(line.clone());
                if matches(&line) {
                    return Err(line);
                }
            }
        };
        tokio::time::timeout(quiet, wait).await.unwrap_or(Ok(()))
    }
}
