//! A TCP proxy in front of Synapse that loses, on cue, the homeserver's answer to one event
//! send, and then cuts every connection until told to pass again: the answer a homeserver
//! restart loses, at a moment the test chooses.
//!
//! It reads no HTTP beyond the start of what the gateway writes, where it looks for an event
//! send's request line (`PUT …/send/…`): hyper writes a request's head in one go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Relay both ways.
    Pass,
    /// Relay; lose the answer to the next event send.
    LoseNextSend,
    /// An event send went through; its answer will be lost.
    Losing,
    /// An answer was lost: every connection is closed, new ones at once.
    Cut,
}

/// The proxy; it stops when dropped.
pub struct LossyProxy {
    port: u16,
    mode: watch::Sender<Mode>,
    accepting: tokio::task::JoinHandle<()>,
}

impl LossyProxy {
    /// A proxy on a fresh loopback port to `upstream` (a port on 127.0.0.1).
    pub async fn start(upstream: u16) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, _) = watch::channel(Mode::Pass);
        let accepting = tokio::spawn({
            let mode = mode.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(relay(client, upstream, mode.clone()));
                }
            }
        });
        LossyProxy {
            port,
            mode,
            accepting,
        }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lose the answer to the next event send, then cut every connection.
    pub fn lose_next_send(&self) {
        self.mode.send_replace(Mode::LoseNextSend);
    }

    /// Wait until an answer was lost: the homeserver has the event, the gateway never heard.
    pub async fn lost(&self) {
        let mut mode = self.mode.subscribe();
        tokio::time::timeout(Duration::from_secs(30), mode.wait_for(|m| *m == Mode::Cut))
            .await
            .expect("an event send came through the proxy within 30 s")
            .unwrap();
    }

    /// Relay everything again.
    pub fn pass(&self) {
        self.mode.send_replace(Mode::Pass);
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        self.mode.send_replace(Mode::Cut);
    }
}

/// One connection of the gateway's, relayed to `upstream` until either side closes or the
/// proxy cuts it.
async fn relay(mut client: TcpStream, upstream: u16, mode: watch::Sender<Mode>) {
    let mut cut = mode.subscribe();
    if *cut.borrow() == Mode::Cut {
        return;
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let losing = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if is_event_send(&buf[..n])
                && mode.send_if_modified(|m| {
                    let armed = *m == Mode::LoseNextSend;
                    if armed {
                        *m = Mode::Losing;
                    }
                    armed
                })
            {
                losing.store(true, Ordering::SeqCst);
            }
            if to_server.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from_server.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if losing.load(Ordering::SeqCst) {
                mode.send_replace(Mode::Cut);
                return;
            }
            if to_client.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        _ = cut.wait_for(|m| *m == Mode::Cut) => {}
    }
}

/// Whether `head` starts an event send: `PUT /_matrix/client/v3/rooms/…/send/…`.
fn is_event_send(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    line.starts_with("PUT /_matrix/client/") && line.contains("/send/")
}
