//! The gateway's side of the keeper link: one Unix socket to the keeper for every IRC
//! connection, each opened through it and read and written as if it were a socket of the
//! gateway's own. Lines come numbered; the session acknowledges them once what they brought
//! is durable. The connections an earlier gateway left are claimed by the sessions that
//! take them over; their lines wait for them meanwhile.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::protocol::{frame_len, ConnId, FromKeeper, Held, ToKeeper, VERSION};
use crate::session::io::Inbound;

/// Where a connection's lines go, and who waits for it to open.
struct Route {
    lines: flume::Sender<Inbound>,
    opened: Option<oneshot::Sender<Result<(), String>>>,
}

type Routes = Arc<Mutex<HashMap<ConnId, Route>>>;

/// What goes to the writer task: a frame, a wish to hear once all before it is written, or
/// the end of the link (the socket is closed, so the keeper sees the gateway detach).
enum Outgoing {
    Frame(Vec<u8>),
    Flushed(oneshot::Sender<()>),
    End,
}

/// The frames to the keeper, in order.
#[derive(Clone)]
struct Frames(mpsc::UnboundedSender<Outgoing>);

impl Frames {
    fn send(&self, frame: Vec<u8>) -> Result<(), ()> {
        self.0.send(Outgoing::Frame(frame)).map_err(|_| ())
    }
}

/// The gateway's link to its keeper; cheap to share.
pub(crate) struct KeeperLink {
    frames: Frames,
    routes: Routes,
    /// The connections the keeper held when the gateway attached.
    held: Vec<Held>,
    /// Their lines, until a session claims them.
    unclaimed: Mutex<HashMap<ConnId, flume::Receiver<Inbound>>>,
    /// Whether the link is up. Once it ends, nothing more is written through it: a new link
    /// is attached instead (see `lib.rs`).
    alive: Arc<AtomicBool>,
    /// The link's end: why, once it ended.
    ended: watch::Receiver<Option<String>>,
    /// The connections sessions were using when the link ended: the keeper still holds
    /// them, and the next link hands each back to its session.
    orphans: Arc<Mutex<Vec<ConnId>>>,
    /// Set when the gateway stops leaving its connections to the keeper: closing a
    /// connection's writer then closes nothing.
    detaching: Arc<AtomicBool>,
}

impl std::fmt::Debug for KeeperLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeeperLink")
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route")
    }
}

impl KeeperLink {
    /// Attach to the keeper listening on `path`.
    pub(crate) async fn attach(path: &Path) -> io::Result<Arc<KeeperLink>> {
        let stream = UnixStream::connect(path).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot reach the keeper at {}: {e} (is `causeway keeper` running?)",
                    path.display()
                ),
            )
        })?;
        let (mut read, mut write) = stream.into_split();
        write
            .write_all(&ToKeeper::Hello { version: VERSION }.encode())
            .await?;
        let mut buf = Vec::with_capacity(4096);
        let held = match next_frame(&mut read, &mut buf).await? {
            FromKeeper::Welcome { version, held } => {
                info!(version, held = held.len(), "attached to the keeper");
                held
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the keeper answered {other:?} to Hello"),
                ))
            }
        };
        let (frames, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
        let frames = Frames(frames);
        let alive = Arc::new(AtomicBool::new(true));
        let writing = alive.clone();
        tokio::spawn(async move {
            while let Some(out) = outgoing.recv().await {
                match out {
                    // Nothing is written once the link ended: a Close meant for a
                    // connection a session drops then must not reach the keeper, which
                    // holds it for the next link.
                    Outgoing::Frame(frame) if writing.load(Ordering::Acquire) => {
                        if write.write_all(&frame).await.is_err() {
                            break;
                        }
                    }
                    Outgoing::Frame(_) => {}
                    Outgoing::Flushed(done) => {
                        let _ = done.send(());
                    }
                    Outgoing::End => break,
                }
            }
        });
        // The held connections' lines follow the Welcome at once: their routes must be
        // there before they are read.
        let routes: Routes = Arc::default();
        let mut unclaimed = HashMap::new();
        for held in &held {
            let (lines, waiting) = flume::unbounded();
            routes.lock().expect("routes").insert(
                held.conn,
                Route {
                    lines,
                    opened: None,
                },
            );
            unclaimed.insert(held.conn, waiting);
        }
        let (end, ended) = watch::channel(None);
        let orphans: Arc<Mutex<Vec<ConnId>>> = Arc::default();
        let link = Arc::new(KeeperLink {
            frames: frames.clone(),
            routes: routes.clone(),
            held,
            unclaimed: Mutex::new(unclaimed),
            alive: alive.clone(),
            ended,
            orphans: orphans.clone(),
            detaching: Arc::default(),
        });
        tokio::spawn(async move {
            let why = loop {
                match next_frame(&mut read, &mut buf).await {
                    Ok(frame) => route(&routes, &frames, frame).await,
                    Err(e) => break e.to_string(),
                }
            };
            alive.store(false, Ordering::Release);
            let _ = frames.0.send(Outgoing::End);
            warn!(%why, "the keeper link ended: attaching again");
            let routes: Vec<(ConnId, Route)> = routes.lock().expect("routes").drain().collect();
            for (conn, route) in routes {
                let reason = format!("the link to the keeper ended: {why}");
                match route.opened {
                    Some(opened) => {
                        let _ = opened.send(Err(reason));
                    }
                    None => {
                        orphans.lock().expect("orphans").push(conn);
                        let _ = route.lines.send_async(Inbound::Unlinked(reason)).await;
                    }
                }
            }
            end.send_replace(Some(why));
        });
        Ok(link)
    }

    /// The connections the keeper held when this gateway attached.
    pub(crate) fn held(&self) -> &[Held] {
        &self.held
    }

    /// Whether the link is up.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Quit a connection the keeper holds, unless a session claimed it.
    pub(crate) fn quit_unclaimed(&self, conn: ConnId, line: &[u8]) {
        let unclaimed = self.unclaimed.lock().expect("unclaimed").remove(&conn);
        if unclaimed.is_some() {
            self.quit(conn, line);
        }
    }

    /// Wait for the link to end; why it did.
    pub(crate) async fn ended(&self) -> String {
        let mut ended = self.ended.clone();
        let why = match ended.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "the link's reader is gone".into(),
        };
        why
    }

    /// The connections sessions were using when the link ended (each told with
    /// [`Inbound::Unlinked`]): on the next link they are theirs to claim again, not to adopt.
    pub(crate) fn orphans(&self) -> Vec<ConnId> {
        self.orphans.lock().expect("orphans").clone()
    }

    /// Write raw bytes to a connection, and close it (a held connection this gateway does
    /// not take over).
    pub(crate) fn quit(&self, conn: ConnId, line: &[u8]) {
        self.unclaimed.lock().expect("unclaimed").remove(&conn);
        self.routes.lock().expect("routes").remove(&conn);
        let _ = self.frames.send(
            ToKeeper::Send {
                conn,
                bytes: line.to_vec(),
            }
            .encode(),
        );
        let _ = self.frames.send(ToKeeper::Close { conn }.encode());
    }

    /// Take over a connection the keeper held: it is written as a socket of this
    /// gateway's, and its lines (those kept since the last acknowledgement first) come on
    /// the receiver. `None` when it is gone or claimed already.
    pub(crate) fn claim(&self, conn: ConnId) -> Option<(KeptIo, flume::Receiver<Inbound>)> {
        let lines = self.unclaimed.lock().expect("unclaimed").remove(&conn)?;
        Some((self.io(conn), lines))
    }

    fn io(&self, conn: ConnId) -> KeptIo {
        KeptIo {
            conn,
            frames: self.frames.clone(),
            routes: self.routes.clone(),
            alive: self.alive.clone(),
            detaching: self.detaching.clone(),
        }
    }

    /// Keep this state blob with the connection, for a successor.
    pub(crate) fn save_state(&self, conn: ConnId, state: Vec<u8>) {
        let _ = self.frames.send(ToKeeper::State { conn, state }.encode());
    }

    /// From now on closing a connection's writer leaves the connection to the keeper (the
    /// gateway is stopping and a successor takes it over).
    pub(crate) fn detach(&self) {
        self.detaching.store(true, Ordering::Release);
    }

    /// Wait until every frame queued so far is written to the keeper.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.frames.0.send(Outgoing::Flushed(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Open a connection through the keeper; its lines go to `lines`.
    pub(crate) async fn open(
        &self,
        host: &str,
        port: u16,
        tls: bool,
        verify_tls: bool,
        lines: flume::Sender<Inbound>,
    ) -> Result<KeptIo, String> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(
                "the link to the connection keeper is down: causeway attaches again as soon as the keeper answers"
                    .into(),
            );
        }
        let conn = fastrand::u64(1..);
        let (opened, wait) = oneshot::channel();
        self.routes.lock().expect("routes").insert(
            conn,
            Route {
                lines,
                opened: Some(opened),
            },
        );
        let open = ToKeeper::Open {
            conn,
            host: host.to_owned(),
            port,
            tls,
            verify_tls,
        };
        // Given up (the caller's timeout, or a failure): the route goes, and a connection
        // the keeper makes after all is closed.
        let mut pending = Pending {
            link: self,
            conn,
            done: false,
        };
        if self.frames.send(open.encode()).is_err() {
            return Err("the link to the keeper is down".into());
        }
        let result = match wait.await {
            Ok(Ok(())) => Ok(self.io(conn)),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err("the link to the keeper is down".into()),
        };
        pending.done = result.is_ok();
        result
    }

    /// Every line of `conn` up to `seq` is handled.
    pub(crate) fn ack(&self, conn: ConnId, seq: u64) {
        let _ = self.frames.send(ToKeeper::Ack { conn, seq }.encode());
    }
}

/// A connection asked of the keeper, not handed to its session yet.
struct Pending<'a> {
    link: &'a KeeperLink,
    conn: ConnId,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.link.routes.lock().expect("routes").remove(&self.conn);
            let _ = self
                .link
                .frames
                .send(ToKeeper::Close { conn: self.conn }.encode());
        }
    }
}

async fn route(routes: &Routes, frames: &Frames, frame: FromKeeper) {
    match frame {
        FromKeeper::Line { conn, seq, bytes } => {
            let lines = routes
                .lock()
                .expect("routes")
                .get(&conn)
                .map(|r| r.lines.clone());
            if let Some(lines) = lines {
                let _ = lines.send_async(Inbound::Numbered(seq, bytes)).await;
            }
        }
        FromKeeper::Opened { conn } => {
            let opened = routes
                .lock()
                .expect("routes")
                .get_mut(&conn)
                .and_then(|r| r.opened.take());
            match opened {
                Some(opened) => {
                    if opened.send(Ok(())).is_err() {
                        // Its session gave up waiting meanwhile.
                        let _ = frames.send(ToKeeper::Close { conn }.encode());
                    }
                }
                // Made after its session gave up: nobody wants it.
                None => {
                    let _ = frames.send(ToKeeper::Close { conn }.encode());
                }
            }
        }
        FromKeeper::Closed { conn, reason } => {
            let route = routes.lock().expect("routes").remove(&conn);
            match route {
                Some(Route {
                    opened: Some(opened),
                    ..
                }) => {
                    let _ = opened.send(Err(reason));
                }
                Some(route) => {
                    let _ = route.lines.send_async(Inbound::Closed(reason)).await;
                }
                None => {}
            }
        }
        FromKeeper::Ping { token } => {
            let _ = frames.send(ToKeeper::Pong { token }.encode());
        }
        FromKeeper::Welcome { .. } => warn!("a second Welcome from the keeper, ignored"),
    }
}

/// Read one frame from the keeper.
async fn next_frame(
    read: &mut tokio::net::unix::OwnedReadHalf,
    buf: &mut Vec<u8>,
) -> io::Result<FromKeeper> {
    loop {
        match frame_len(buf) {
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            Ok(Some(len)) => {
                let frame = FromKeeper::decode(&buf[4..4 + len]);
                buf.drain(..4 + len);
                return frame.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
            }
            Ok(None) => {}
        }
        if read.read_buf(buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the keeper closed the link",
            ));
        }
    }
}

/// A connection held by the keeper, written as a socket: what the session writes goes to
/// the keeper to send; shutting it down closes the connection. Its lines come through the
/// link (nothing is read here).
pub(crate) struct KeptIo {
    conn: ConnId,
    frames: Frames,
    routes: Routes,
    /// Whether its link is up.
    alive: Arc<AtomicBool>,
    detaching: Arc<AtomicBool>,
}

impl std::fmt::Debug for KeptIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeptIo({})", self.conn)
    }
}

impl KeptIo {
    /// The keeper's number for it.
    pub(crate) fn conn(&self) -> ConnId {
        self.conn
    }
}

impl AsyncWrite for KeptIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let down = || io::Error::new(io::ErrorKind::BrokenPipe, "the keeper link is down");
        if !self.alive.load(Ordering::Acquire) {
            return Poll::Ready(Err(down()));
        }
        let send = ToKeeper::Send {
            conn: self.conn,
            bytes: buf.to_vec(),
        };
        Poll::Ready(match self.frames.send(send.encode()) {
            Ok(()) => Ok(buf.len()),
            Err(_) => Err(down()),
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.routes.lock().expect("routes").remove(&self.conn);
        if !self.detaching.load(Ordering::Acquire) {
            let _ = self
                .frames
                .send(ToKeeper::Close { conn: self.conn }.encode());
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for KeptIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // The lines come through the link; nothing reads this side.
        Poll::Pending
    }
}
