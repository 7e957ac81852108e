//! The byte pumps of a connection: the reader cuts what the server sends into lines (CR LF
//! removed, overlong lines skipped), the writer sends queued lines in as few writes as it can,
//! through the flood-control token bucket unless they are urgent (PONG, QUIT, registration).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{Quota, RateLimiter};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::warn;

use crate::transport::IrcIo;
use crate::ServerSettings;

/// Longest line accepted from a server (IRCv3 allows 8191 bytes of tags plus 512).
pub(super) const MAX_INBOUND: usize = 8191 + 512;

/// What the reader hands on.
pub(crate) enum Inbound {
    Line(Vec<u8>),
    /// A line through the keeper, with its number there (acknowledged once handled).
    Numbered(u64, Vec<u8>),
    Closed(String),
    /// The link to the keeper ended, not the connection: the keeper still holds it, for
    /// the session to claim again on the next link.
    Unlinked(String),
}

pub(super) struct Writer {
    urgent: flume::Sender<Vec<u8>>,
    normal: flume::Sender<Vec<u8>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub(super) fn start(io: WriteHalf<Box<dyn IrcIo>>, settings: &ServerSettings) -> Writer {
        // flume's queues allocate as they fill, tokio's a block of slots up front: an idle
        // puppet's channels cost next to nothing.
        let (urgent, urgent_rx) = flume::unbounded();
        let (normal, normal_rx) = flume::unbounded();
        let limiter = settings.flood_control.then(|| {
            let per_second =
                NonZeroU32::new(settings.flood_per_second.max(1)).expect("at least one");
            let burst = NonZeroU32::new(settings.flood_burst.max(1)).expect("at least one");
            RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
        });
        let task = tokio::spawn(tracing::Instrument::in_current_span(write_lines(
            io, urgent_rx, normal_rx, limiter,
        )));
        Writer {
            urgent,
            normal,
            task,
        }
    }

    /// Queue a line as it goes on the wire (its encoding applied, no CR LF).
    pub(super) fn send(&self, bytes: Vec<u8>) {
        let _ = self.normal.send(bytes);
    }

    /// Queue a protocol line ahead of flood control.
    pub(super) fn send_urgent(&self, bytes: Vec<u8>) {
        let _ = self.urgent.send(bytes);
    }

    /// Send the last line and close the connection, waiting briefly for the bytes to go.
    pub(super) async fn finish(self, last: Option<Vec<u8>>) {
        if let Some(line) = last {
            self.send_urgent(line);
        }
        drop(self.urgent);
        drop(self.normal);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.task).await;
    }
}

/// How many bytes of queued lines one write may carry.
const COALESCE_BYTES: usize = 16 * 1024;

async fn write_lines(
    mut io: WriteHalf<Box<dyn IrcIo>>,
    urgent: flume::Receiver<Vec<u8>>,
    normal: flume::Receiver<Vec<u8>>,
    limiter: Option<governor::DefaultDirectRateLimiter>,
) {
    loop {
        let mut batch = tokio::select! {
            biased;
            Ok(line) = urgent.recv_async() => line,
            Ok(line) = normal.recv_async() => {
                if let Some(limiter) = &limiter {
                    limiter.until_ready().await;
                }
                line
            }
            else => break,
        };
        batch.extend_from_slice(b"\r\n");
        // Lines queued meanwhile go in the same write: a burst costs one system call, not
        // one per line. Flood control still passes each normal line.
        while batch.len() < COALESCE_BYTES {
            let next = match urgent.try_recv() {
                Ok(line) => line,
                Err(_) if normal.is_empty() => break,
                Err(_) if limiter.as_ref().is_some_and(|l| l.check().is_err()) => break,
                Err(_) => match normal.try_recv() {
                    Ok(line) => line,
                    Err(_) => break,
                },
            };
            batch.extend_from_slice(&next);
            batch.extend_from_slice(b"\r\n");
        }
        if io.write_all(&batch).await.is_err() || io.flush().await.is_err() {
            break;
        }
    }
    let _ = io.shutdown().await;
}

/// What one read asks for while a connection is quiet. A read that fills it doubles the
/// next (a burst is read in few system calls, up to [`BURST_READ`]); once every line is
/// handed on, the buffer goes back to this size, so an idle puppet holds half a KiB here.
const QUIET_READ: usize = 512;
const BURST_READ: usize = 16 * 1024;

pub(crate) async fn read_lines(mut io: ReadHalf<Box<dyn IrcIo>>, tx: flume::Sender<Inbound>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = QUIET_READ;
    // Inside an overlong line, whose rest is skipped up to its end.
    let mut skipping = false;
    let reason = loop {
        let mut start = 0;
        while let Some(at) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + at];
            start += at + 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            if line.len() >= MAX_INBOUND {
                warn!("overlong line from the IRC server skipped");
                continue;
            }
            if tx.send_async(Inbound::Line(trim_line(line))).await.is_err() {
                return;
            }
        }
        buf.drain(..start);
        if buf.len() >= MAX_INBOUND {
            // An overlong line: skip the rest of it, keep the connection.
            if !skipping {
                warn!("overlong line from the IRC server skipped");
            }
            skipping = true;
            buf.clear();
        }
        if buf.is_empty() && buf.capacity() > QUIET_READ {
            buf = Vec::new();
            chunk = QUIET_READ;
        }
        buf.reserve_exact(chunk);
        let room = buf.capacity() - buf.len();
        match io.read_buf(&mut buf).await {
            Ok(0) => {
                // A last line without its end still counts.
                if !buf.is_empty() && !skipping {
                    let _ = tx.send_async(Inbound::Line(trim_line(&buf))).await;
                }
                break "the server closed the connection".to_owned();
            }
            Ok(n) if n == room => chunk = (chunk * 2).min(BURST_READ),
            Ok(_) => {}
            Err(e) => break format!("read error: {e}"),
        }
    };
    let _ = tx.send_async(Inbound::Closed(reason)).await;
}

/// A line without its CR LF.
fn trim_line(line: &[u8]) -> Vec<u8> {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    line[..end].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `chunks` to the line reader, one write each, then close; what it hands on.
    async fn lines_read(chunks: Vec<Vec<u8>>) -> Vec<Inbound> {
        let (server, client) = tokio::io::duplex(64 * 1024);
        let (read, _write) = tokio::io::split(Box::new(client) as Box<dyn IrcIo>);
        let (tx, rx) = flume::unbounded();
        let reader = tokio::spawn(read_lines(read, tx));
        let mut server = server;
        for chunk in chunks {
            server.write_all(&chunk).await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(server);
        reader.await.unwrap();
        rx.drain().collect()
    }

    fn texts(inbound: &[Inbound]) -> Vec<String> {
        inbound
            .iter()
            .map(|i| match i {
                Inbound::Line(bytes) | Inbound::Numbered(_, bytes) => {
                    String::from_utf8_lossy(bytes).into_owned()
                }
                Inbound::Closed(reason) | Inbound::Unlinked(reason) => format!("closed: {reason}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn lines_split_across_reads_come_whole_without_their_ends() {
        let read = lines_read(vec![
            b"PING :a\r\nPRIVMSG #c :he".to_vec(),
            b"llo\r".to_vec(),
            b"\nNOTICE x :bare lf\nlast without end".to_vec(),
        ])
        .await;
        assert_eq!(
            texts(&read),
            [
                "PING :a",
                "PRIVMSG #c :hello",
                "NOTICE x :bare lf",
                "last without end",
                "closed: the server closed the connection"
            ]
        );
    }

    #[tokio::test]
    async fn a_burst_larger_than_any_read_loses_nothing() {
        let burst: Vec<u8> = (0..2_000)
            .flat_map(|i| format!("PRIVMSG #c :message {i}\r\n").into_bytes())
            .collect();
        let read = lines_read(vec![burst]).await;
        let texts = texts(&read);
        assert_eq!(texts.len(), 2_001);
        assert_eq!(texts[0], "PRIVMSG #c :message 0");
        assert_eq!(texts[1_999], "PRIVMSG #c :message 1999");
    }

    #[tokio::test]
    async fn overlong_lines_are_skipped_and_the_next_ones_kept() {
        let long = vec![b'x'; MAX_INBOUND + 10];
        // One overlong line that arrives in one piece, one that comes in several reads.
        let mut first = b"PING :1\r\n".to_vec();
        first.extend_from_slice(&long);
        first.extend_from_slice(b"\r\nPING :2\r\n");
        let read = lines_read(vec![
            first,
            long[..5_000].to_vec(),
            long[5_000..].to_vec(),
            b"yy\r\nPING :3\r\n".to_vec(),
        ])
        .await;
        assert_eq!(
            texts(&read),
            [
                "PING :1",
                "PING :2",
                "PING :3",
                "closed: the server closed the connection"
            ]
        );
    }
}
