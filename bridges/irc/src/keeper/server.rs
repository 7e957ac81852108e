//! The keeper process's loop: it owns the IRC sockets, hands their lines to the attached
//! gateway, numbered, and keeps those not acknowledged; while no gateway is attached it
//! answers the servers' PINGs itself and keeps what arrives, up to a bound per connection
//! (past it the oldest lines go, counted, and the count is reported on attach). A gateway
//! that speaks version 2 is pinged: one that stops reading (wedged, stopped, swapping) is
//! detached, so that the keeper answers the servers' PINGs again and the connections live
//! until it attaches again.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::protocol::{frame_len, ConnId, FromKeeper, Held, ToKeeper, VERSION};
use crate::line::Line;
use crate::session::io::{read_lines, Inbound};
use crate::text::decode_line;
use crate::transport::{self, IrcIo};

/// Lines kept per connection while they are not acknowledged.
pub const KEPT_LINES: usize = 10_000;
/// Bytes kept per connection while they are not acknowledged.
pub const KEPT_BYTES: usize = 4 << 20;
/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an attached gateway is pinged (version 2).
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long an attached gateway may send nothing, not even a Pong, before it is detached:
/// well within the servers' own ping timeouts (2 minutes and more), which the keeper must
/// answer meanwhile.
pub const SILENT_LIMIT: Duration = Duration::from_secs(20);

/// One IRC connection the keeper holds.
struct Kept {
    /// To the socket's writer; `None` once the connection is gone.
    writer: Option<mpsc::UnboundedSender<Vec<u8>>>,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// The number the next line gets (from 1).
    next_seq: u64,
    /// Lines not acknowledged, oldest first.
    unacked: VecDeque<(u64, Vec<u8>)>,
    unacked_bytes: usize,
    /// Lines dropped past the bound since the last attach.
    dropped: u64,
    state: Vec<u8>,
    /// Why the connection ended, while the gateway has not heard.
    ended: Option<String>,
}

enum Work {
    Line(ConnId, Vec<u8>),
    Ended(ConnId, String),
    Opened(ConnId, Result<Box<dyn IrcIo>, String>),
    /// A frame from the gateway link of this number.
    Frame(u64, ToKeeper),
    /// The gateway link of this number ended.
    Detached(u64, String),
}

/// Listen on `path` and keep connections until `shutdown`; the socket is made for this
/// user only. Fails when another keeper listens there already.
pub async fn serve(path: &Path, mut shutdown: watch::Receiver<bool>) -> io::Result<()> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("a keeper already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    info!(socket = %path.display(), version = VERSION, "keeper listening");
    let (work_tx, mut work) = mpsc::unbounded_channel();
    let mut keeper = Keeper {
        kept: HashMap::new(),
        gateway: None,
        link: None,
        links: 0,
        work_tx,
    };
    let mut pings = tokio::time::interval(PING_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => keeper.attach(stream),
                Err(e) => warn!(error = %e, "keeper accept failed"),
            },
            Some(item) = work.recv() => keeper.handle(item),
            _ = pings.tick() => keeper.ping(),
        }
    }
    let _ = std::fs::remove_file(path);
    info!(
        connections = keeper.kept.len(),
        "keeper stopping: its IRC connections close"
    );
    Ok(())
}

struct Keeper {
    kept: HashMap<ConnId, Kept>,
    /// Frames to the attached gateway, once it has said Hello.
    gateway: Option<mpsc::UnboundedSender<Vec<u8>>>,
    /// The gateway link being served.
    link: Option<GatewayLink>,
    /// Links accepted so far: each gets the next number.
    links: u64,
    work_tx: mpsc::UnboundedSender<Work>,
}

/// A gateway's link, as the keeper serves it.
struct GatewayLink {
    /// Its number: frames of an earlier link are ignored.
    number: u64,
    /// Its frames (sent once it has said Hello).
    frames: mpsc::UnboundedSender<Vec<u8>>,
    /// The protocol version agreed on (0 before Hello).
    version: u16,
    /// When a frame last came from it.
    heard: Instant,
    /// Dropped with the link: its writer stops at once, even mid-write to a gateway that
    /// does not read, and closes the socket.
    _cut: oneshot::Sender<()>,
}

impl Keeper {
    fn attach(&mut self, stream: UnixStream) {
        if self.link.as_ref().is_some_and(|l| !l.frames.is_closed()) {
            warn!("a second gateway tried to attach: refused while one is attached");
            return;
        }
        self.links += 1;
        let number = self.links;
        let (mut read, mut write) = stream.into_split();
        let (tx, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
        let (cut, mut cut_off) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let write_all = async {
                while let Some(frame) = frames.recv().await {
                    if write.write_all(&frame).await.is_err() {
                        break;
                    }
                }
            };
            tokio::select! {
                _ = write_all => {}
                _ = &mut cut_off => {}
            }
        });
        let work = self.work_tx.clone();
        tokio::spawn(async move {
            let why = read_frames(number, &mut read, &work).await;
            let _ = work.send(Work::Detached(number, why));
        });
        // Attached once it has said Hello: until then what arrives is kept, not sent.
        self.gateway = None;
        self.link = Some(GatewayLink {
            number,
            frames: tx,
            version: 0,
            heard: Instant::now(),
            _cut: cut,
        });
        info!("a gateway connected");
    }

    /// Ping the attached gateway, or detach it when it has not been heard for too long.
    fn ping(&mut self) {
        let Some(link) = &self.link else {
            return;
        };
        if link.version < 2 || self.gateway.is_none() {
            return;
        }
        let silent = link.heard.elapsed();
        if silent > SILENT_LIMIT {
            let number = link.number;
            let why = format!("the gateway read nothing for {} s", silent.as_secs());
            self.handle(Work::Detached(number, why));
            return;
        }
        self.to_gateway(FromKeeper::Ping { token: link.number });
    }

    fn to_gateway(&self, frame: FromKeeper) -> bool {
        self.gateway
            .as_ref()
            .is_some_and(|g| g.send(frame.encode()).is_ok())
    }

    fn handle(&mut self, item: Work) {
        match item {
            Work::Frame(number, frame) => {
                if let Some(link) = self.link.as_mut().filter(|l| l.number == number) {
                    link.heard = Instant::now();
                    self.frame(frame);
                } else if !matches!(frame, ToKeeper::Hello { .. } | ToKeeper::Pong { .. }) {
                    // From a gateway detached for its silence, which wrote before it knew:
                    // what it said (a message, a QUIT, an acknowledgement) still counts.
                    self.frame(frame);
                }
            }
            Work::Line(conn, line) => self.line(conn, line),
            Work::Ended(conn, reason) => {
                if !self.kept.contains_key(&conn) {
                    return;
                }
                let told = self.to_gateway(FromKeeper::Closed {
                    conn,
                    reason: reason.clone(),
                });
                if told {
                    self.kept.remove(&conn);
                } else if let Some(kept) = self.kept.get_mut(&conn) {
                    // Told on the next attach, after its last lines.
                    kept.writer = None;
                    kept.ended = Some(reason);
                }
            }
            Work::Opened(conn, Ok(io)) => {
                let (read, mut write) = tokio::io::split(io);
                let (writer, mut bytes) = mpsc::unbounded_channel::<Vec<u8>>();
                tokio::spawn(async move {
                    while let Some(chunk) = bytes.recv().await {
                        if write.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = write.shutdown().await;
                });
                let work = self.work_tx.clone();
                let reader = tokio::spawn(async move {
                    let (lines_tx, lines) = flume::bounded(256);
                    tokio::spawn(read_lines(read, lines_tx));
                    while let Ok(inbound) = lines.recv_async().await {
                        let item = match inbound {
                            Inbound::Line(line) | Inbound::Numbered(_, line) => {
                                Work::Line(conn, line)
                            }
                            Inbound::Closed(reason) | Inbound::Unlinked(reason) => {
                                Work::Ended(conn, reason)
                            }
                        };
                        if work.send(item).is_err() {
                            return;
                        }
                    }
                });
                self.kept.insert(
                    conn,
                    Kept {
                        writer: Some(writer),
                        reader: Some(reader),
                        next_seq: 1,
                        unacked: VecDeque::new(),
                        unacked_bytes: 0,
                        dropped: 0,
                        state: Vec::new(),
                        ended: None,
                    },
                );
                self.to_gateway(FromKeeper::Opened { conn });
            }
            Work::Opened(conn, Err(reason)) => {
                self.to_gateway(FromKeeper::Closed { conn, reason });
            }
            Work::Detached(number, why) => {
                if self.link.as_ref().is_none_or(|l| l.number != number) {
                    return;
                }
                self.gateway = None;
                self.link = None;
                info!(%why, connections = self.kept.len(), "the gateway detached: keeping its connections");
            }
        }
    }

    fn frame(&mut self, frame: ToKeeper) {
        match frame {
            ToKeeper::Hello { version } => self.welcome(version),
            ToKeeper::Open {
                conn,
                host,
                port,
                tls,
                verify_tls,
            } => {
                let work = self.work_tx.clone();
                tokio::spawn(async move {
                    let connect = transport::connect(&host, port, tls, verify_tls);
                    let result = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                        Ok(Ok(io)) => Ok(io),
                        Ok(Err(e)) => Err(format!("cannot connect to {host}:{port}: {e}")),
                        Err(_) => Err(format!("cannot connect to {host}:{port}: timed out")),
                    };
                    let _ = work.send(Work::Opened(conn, result));
                });
            }
            ToKeeper::Send { conn, bytes } => {
                if let Some(writer) = self.kept.get(&conn).and_then(|k| k.writer.as_ref()) {
                    let _ = writer.send(bytes);
                }
            }
            ToKeeper::Ack { conn, seq } => {
                if let Some(kept) = self.kept.get_mut(&conn) {
                    while kept.unacked.front().is_some_and(|(s, _)| *s <= seq) {
                        if let Some((_, line)) = kept.unacked.pop_front() {
                            kept.unacked_bytes -= line.len();
                        }
                    }
                }
            }
            ToKeeper::State { conn, state } => {
                if let Some(kept) = self.kept.get_mut(&conn) {
                    kept.state = state;
                }
            }
            ToKeeper::Pong { .. } => {}
            ToKeeper::Close { conn } => {
                if let Some(kept) = self.kept.remove(&conn) {
                    // The writer ends once it has written what was queued (the QUIT).
                    drop(kept.writer);
                    if let Some(reader) = kept.reader {
                        reader.abort();
                    }
                }
            }
        }
    }

    /// The version both speak, every connection kept, then what each kept for the gateway.
    fn welcome(&mut self, version: u16) {
        let version = version.min(VERSION);
        if let Some(link) = &mut self.link {
            link.version = version;
        }
        self.gateway = self.link.as_ref().map(|l| l.frames.clone());
        let held = self
            .kept
            .iter_mut()
            .map(|(conn, kept)| Held {
                conn: *conn,
                next_seq: kept.unacked.front().map_or(kept.next_seq, |(seq, _)| *seq),
                dropped: std::mem::take(&mut kept.dropped),
                state: kept.state.clone(),
            })
            .collect();
        self.to_gateway(FromKeeper::Welcome { version, held });
        let mut ended = Vec::new();
        for (conn, kept) in &self.kept {
            for (seq, line) in &kept.unacked {
                self.to_gateway(FromKeeper::Line {
                    conn: *conn,
                    seq: *seq,
                    bytes: line.clone(),
                });
            }
            if let Some(reason) = &kept.ended {
                self.to_gateway(FromKeeper::Closed {
                    conn: *conn,
                    reason: reason.clone(),
                });
                ended.push(*conn);
            }
        }
        for conn in ended {
            self.kept.remove(&conn);
        }
    }

    fn line(&mut self, conn: ConnId, line: Vec<u8>) {
        let attached = self.gateway.as_ref().is_some_and(|g| !g.is_closed());
        let Some(kept) = self.kept.get_mut(&conn) else {
            return;
        };
        if !attached {
            if let Some(pong) = pong_for(&line) {
                if let Some(writer) = &kept.writer {
                    let _ = writer.send(pong);
                }
                return;
            }
        }
        let seq = kept.next_seq;
        kept.next_seq += 1;
        kept.unacked_bytes += line.len();
        kept.unacked.push_back((seq, line.clone()));
        // The stated overflow rule: past the bound the oldest lines go, counted.
        while kept.unacked.len() > KEPT_LINES || kept.unacked_bytes > KEPT_BYTES {
            if let Some((_, old)) = kept.unacked.pop_front() {
                kept.unacked_bytes -= old.len();
                kept.dropped += 1;
            }
        }
        if attached {
            self.to_gateway(FromKeeper::Line {
                conn,
                seq,
                bytes: line,
            });
        }
    }
}

/// The answer to a server's PING, if `line` is one.
fn pong_for(line: &[u8]) -> Option<Vec<u8>> {
    let parsed = Line::parse(&decode_line(line))?;
    (parsed.command == "PING").then(|| {
        let token = parsed.params.first().map_or("", String::as_str);
        crate::line::format("PONG", &[token])
            .into_bytes()
            .into_iter()
            .chain(*b"\r\n")
            .collect()
    })
}

/// Read the gateway's frames into `work` until the socket ends or breaks; why it did.
async fn read_frames(
    number: u64,
    read: &mut tokio::net::unix::OwnedReadHalf,
    work: &mpsc::UnboundedSender<Work>,
) -> String {
    let mut buf = Vec::with_capacity(4096);
    loop {
        loop {
            match frame_len(&buf) {
                Err(e) => return e.to_string(),
                Ok(None) => break,
                Ok(Some(len)) => {
                    let frame = ToKeeper::decode(&buf[4..4 + len]);
                    buf.drain(..4 + len);
                    match frame {
                        Ok(frame) => {
                            if work.send(Work::Frame(number, frame)).is_err() {
                                return "the keeper is stopping".into();
                            }
                        }
                        Err(e) => return e.to_string(),
                    }
                }
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => return "the gateway closed the socket".into(),
            Ok(_) => {}
            Err(e) => return e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keeper_answers_pings_and_nothing_else() {
        assert_eq!(
            pong_for(b"PING :irc.example.net").unwrap(),
            b"PONG irc.example.net\r\n"
        );
        assert_eq!(pong_for(b":srv PING token").unwrap(), b"PONG token\r\n");
        assert_eq!(pong_for(b"PING").unwrap(), b"PONG :\r\n");
        assert_eq!(pong_for(b":bob!b@h PRIVMSG #c :PING"), None);
        assert_eq!(pong_for(b""), None);
    }
}
