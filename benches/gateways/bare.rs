//! The bare relay: the least any gateway must do in the throughput scenario, to show what
//! the XMPP server alone allows. It is this bench binary run again as a process of its own
//! (`CAUSEWAY_BENCH_BARE_RELAY`), attached to the run's Prosody as `raw.localhost`, and it
//! does only this: a MUC join opens an IRC connection for the user (their nick) and joins
//! the channel, a groupchat message is written to that connection as a PRIVMSG and echoed
//! back, a leave parts. No database, no state beyond the connections, no checks: it trusts
//! what Prosody sends (Prosody escapes `<` and `>` in attribute values and text, so a tag
//! ends at the first `>`). It is measured exactly as the gateways are.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};

use memchr::memmem;
use quick_xml::events::Event;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::component;

/// The bare relay's component domain, as long as the gateways' (see `BIBOUMI`).
pub const BARE: &str = "raw.localhost";
/// Set (to "COMPONENT_PORT SECRET IRC_PORT") in the relay's own process.
const ENV: &str = "CAUSEWAY_BENCH_BARE_RELAY";

/// Start the relay as a child process of the bench.
pub fn spawn(component_port: u16, secret: &str, irc_port: u16, log: std::fs::File) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ENV, format!("{component_port} {secret} {irc_port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the bare relay starts")
}

/// In the relay's own process: serve until Prosody closes the stream. Returns false in the
/// bench's process.
pub fn run_if_asked() -> bool {
    let Ok(args) = std::env::var(ENV) else {
        return false;
    };
    let mut args = args.split(' ');
    let (Some(port), Some(secret), Some(irc_port)) = (args.next(), args.next(), args.next()) else {
        panic!("{ENV}: COMPONENT_PORT SECRET IRC_PORT");
    };
    let (port, irc_port) = (port.parse().unwrap(), irc_port.parse().unwrap());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(relay(port, secret, irc_port));
    true
}

/// What a user's IRC connection is asked to do.
enum Order {
    /// Join the channel; send `presence` (the self-presence) once the server confirms.
    Join {
        channel: String,
        presence: Vec<u8>,
    },
    Part {
        channel: String,
    },
    Say {
        channel: String,
        text: String,
    },
}

/// A user (full JID) in the relay: their IRC connection and their rooms (room → nick).
struct User {
    irc: UnboundedSender<Order>,
    rooms: HashMap<String, String>,
}

async fn relay(port: u16, secret: &str, irc_port: u16) {
    let (mut read, write, mut buf) = component::connect(port, BARE, secret).await;
    let (out, outgoing) = unbounded_channel::<Vec<u8>>();
    tokio::spawn(write_stream(write, outgoing));
    let mut users: HashMap<String, User> = HashMap::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let mut at = 0;
        while let Some(len) = stanza_len(&buf[at..]) {
            handle(&buf[at..at + len], &mut users, &out, irc_port);
            at += len;
        }
        buf.drain(..at);
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Write what the relay sends Prosody, everything queued at once.
async fn write_stream(mut write: OwnedWriteHalf, mut outgoing: UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::new();
    while let Some(first) = outgoing.recv().await {
        batch.extend_from_slice(&first);
        while let Ok(more) = outgoing.try_recv() {
            batch.extend_from_slice(&more);
        }
        if write.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
}

/// The length of the first whole top-level element in `buf` (after any whitespace), if it
/// is all there.
fn stanza_len(buf: &[u8]) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    loop {
        at += memchr::memchr(b'<', &buf[at..])?;
        let end = at + memchr::memchr(b'>', &buf[at..])?;
        if buf[at + 1] == b'/' {
            depth = depth.saturating_sub(1);
        } else if buf[end - 1] != b'/' {
            depth += 1;
        }
        at = end + 1;
        if depth == 0 {
            return Some(at);
        }
    }
}

/// One stanza from Prosody.
fn handle(
    stanza: &[u8],
    users: &mut HashMap<String, User>,
    out: &UnboundedSender<Vec<u8>>,
    irc_port: u16,
) {
    let mut reader = quick_xml::Reader::from_reader(stanza);
    let root = loop {
        match reader.read_event() {
            Ok(Event::Start(e) | Event::Empty(e)) => break e,
            Ok(Event::Eof) | Err(_) => return,
            Ok(_) => {}
        }
    };
    let attr = |name: &[u8]| {
        root.try_get_attribute(name)
            .ok()
            .flatten()
            .map(|a| String::from_utf8_lossy(&a.value).into_owned())
    };
    let (Some(from), Some(to)) = (attr(b"from"), attr(b"to")) else {
        return;
    };
    let (room, nick) = to.split_once('/').unwrap_or((&to, ""));
    // `#channel%server@domain`: the channel is what comes before the `%`.
    let channel = room.split('%').next().unwrap_or_default().to_owned();
    let kind = attr(b"type");
    match root.name().as_ref() {
        b"presence" if kind.as_deref() == Some("unavailable") => {
            if let Some(user) = users.get_mut(&from) {
                user.rooms.remove(room);
                let _ = user.irc.send(Order::Part { channel });
                if user.rooms.is_empty() {
                    users.remove(&from);
                }
            }
            let _ = out.send(self_presence(room, nick, &from, " type='unavailable'"));
        }
        b"presence" if kind.is_none() => {
            let user = users.entry(from.clone()).or_insert_with(|| User {
                irc: puppet(irc_port, nick.to_owned(), out.clone()),
                rooms: HashMap::new(),
            });
            user.rooms.insert(room.to_owned(), nick.to_owned());
            let _ = user.irc.send(Order::Join {
                channel,
                presence: self_presence(room, nick, &from, ""),
            });
        }
        b"message" if kind.as_deref() == Some("groupchat") => {
            let Some(user) = users.get(&from) else { return };
            let Some(nick) = user.rooms.get(room) else {
                return;
            };
            let Some(body) = body(stanza) else { return };
            let text = quick_xml::escape::unescape(&String::from_utf8_lossy(body))
                .map(|t| t.replace(['\r', '\n'], " "))
                .unwrap_or_default();
            let _ = user.irc.send(Order::Say { channel, text });
            let mut echo = format!("<message from='{room}/{nick}' to='{from}'");
            if let Some(id) = attr(b"id") {
                echo.push_str(&format!(" id='{id}'"));
            }
            echo.push_str(" type='groupchat'><body>");
            let mut echo = echo.into_bytes();
            // The body as Prosody escaped it.
            echo.extend_from_slice(body);
            echo.extend_from_slice(b"</body></message>");
            let _ = out.send(echo);
        }
        _ => {}
    }
}

/// The escaped text of a message's `<body>`.
fn body(stanza: &[u8]) -> Option<&[u8]> {
    let open = memmem::find(stanza, b"<body")?;
    let start = open + memchr::memchr(b'>', &stanza[open..])? + 1;
    let len = memmem::find(&stanza[start..], b"</body>")?;
    Some(&stanza[start..start + len])
}

fn self_presence(room: &str, nick: &str, to: &str, kind: &str) -> Vec<u8> {
    format!(
        "<presence from='{room}/{nick}' to='{to}'{kind}>\
         <x xmlns='http://jabber.org/protocol/muc#user'>\
         <item affiliation='none' role='participant'/><status code='110'/></x></presence>"
    )
    .into_bytes()
}

/// A user's IRC connection, as nick `nick`: it registers, then carries out what it is
/// asked; it sends a join's self-presence once the server has confirmed the join, and
/// quits when its last channel is parted.
fn puppet(irc_port: u16, nick: String, out: UnboundedSender<Vec<u8>>) -> UnboundedSender<Order> {
    let (tx, mut commands) = unbounded_channel();
    tokio::spawn(async move {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", irc_port))
            .await
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut nick = nick;
        let _ = write
            .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :bare relay\r\n").as_bytes())
            .await;
        // Channel → the self-presence to send once joined.
        let mut joining: HashMap<String, Vec<u8>> = HashMap::new();
        let mut channels = 0usize;
        let mut registered = false;
        let mut batch = String::new();
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { return };
                    let mut words = line.split(' ');
                    let first = words.next().unwrap_or_default();
                    if first == "PING" {
                        batch.push_str(&format!("PONG {}\r\n", words.next().unwrap_or_default()));
                    } else {
                        match words.next() {
                            Some("001") => {
                                registered = true;
                                for channel in joining.keys() {
                                    batch.push_str(&format!("JOIN {channel}\r\n"));
                                }
                            }
                            // Nick in use (a gateway's puppet lingering): take another.
                            Some("433") if !registered => {
                                nick.push('_');
                                batch.push_str(&format!("NICK {nick}\r\n"));
                            }
                            Some("JOIN") if first.starts_with(&format!(":{nick}!")) => {
                                let channel = words.next().unwrap_or_default().trim_start_matches(':');
                                if let Some(presence) = joining.remove(channel) {
                                    let _ = out.send(presence);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                command = commands.recv() => {
                    let Some(command) = command else { return };
                    let mut next = Some(command);
                    while let Some(command) = next.take() {
                        match command {
                            Order::Join { channel, presence } => {
                                channels += 1;
                                if registered {
                                    batch.push_str(&format!("JOIN {channel}\r\n"));
                                }
                                joining.insert(channel, presence);
                            }
                            Order::Part { channel } => {
                                channels = channels.saturating_sub(1);
                                batch.push_str(&format!("PART {channel}\r\n"));
                                if channels == 0 {
                                    batch.push_str("QUIT\r\n");
                                }
                            }
                            Order::Say { channel, text } => {
                                batch.push_str(&format!("PRIVMSG {channel} :{text}\r\n"));
                            }
                        }
                        next = commands.try_recv().ok();
                    }
                }
            }
            if !batch.is_empty() {
                if write.write_all(batch.as_bytes()).await.is_err() {
                    return;
                }
                batch.clear();
            }
        }
    });
    tx
}
