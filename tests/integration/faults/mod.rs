//! The fault suite (issue 18, section 3): real load through the real servers, a fault in
//! the middle of it, and for each case what was sent, delivered, archived, duplicated and
//! lost — asserted, and written as rows of the table `tests/run.sh` prints at the end
//! (docs/RELIABILITY.md keeps a run of it). This file has what the cases share: the table,
//! an IRC user who talks and listens at once, an XMPP user who sends in windows while
//! reading, and the archive's count.

mod gateway;
mod kill;
mod matrix;
mod restarts;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use xmpp_client::parsers::message::MessageType;
use xmpp_client::Stanza;

use crate::harness::irc_client::IrcClient;
use crate::harness::muc::{body, groupchat_to, sender};
use crate::harness::TestClient;

/// One row of the table.
pub struct Row {
    pub case: String,
    pub direction: &'static str,
    pub sent: usize,
    pub delivered: usize,
    /// `None` where nothing is archived (connections, not messages).
    pub archived: Option<usize>,
    pub duplicated: usize,
    pub lost: usize,
    pub note: String,
}

/// The table's header, as docs/RELIABILITY.md has it.
pub const HEADER: &str = "| case | direction | sent | delivered | archived | duplicated | lost | note |\n|---|---|---|---|---|---|---|---|";

/// Write the rows to the table (`CAUSEWAY_FAULTS_TABLE`, else `faults.md` in cargo's
/// temporary directory) and to the test's output.
pub fn record(rows: &[Row]) {
    let path = std::env::var_os("CAUSEWAY_FAULTS_TABLE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults.md"));
    let mut text = String::new();
    for r in rows {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.case,
            r.direction,
            r.sent,
            r.delivered,
            r.archived.map_or("–".to_owned(), |a| a.to_string()),
            r.duplicated,
            r.lost,
            r.note
        ));
    }
    eprint!("{HEADER}\n{text}");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// How many times each numbered body (`prefix` then a number) occurs.
pub fn tally<'a>(
    bodies: impl IntoIterator<Item = &'a str>,
    prefix: &str,
) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for body in bodies {
        if let Some(n) = body.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
            *counts.entry(n).or_insert(0) += 1;
        }
    }
    counts
}

/// How many occurrences beyond the first.
pub fn extra(counts: &BTreeMap<usize, usize>) -> usize {
    counts.values().map(|c| c - 1).sum()
}

/// Numbered messages coming in to an XMPP user: those delivered live and those archived,
/// each counted by number.
pub struct Incoming {
    pub live: BTreeMap<usize, usize>,
    pub archived: BTreeMap<usize, usize>,
}

impl Incoming {
    /// The bodies `prefix{n}` among what `seen` got live and what `archive` holds.
    pub fn count(seen: &Seen, archive: &[String], prefix: &str) -> Incoming {
        Incoming {
            live: tally(seen.live.iter().map(String::as_str), prefix),
            archived: tally(archive.iter().map(String::as_str), prefix),
        }
    }

    /// Copies beyond the first, live and in the archive.
    pub fn doubled(&self) -> usize {
        extra(&self.live) + extra(&self.archived)
    }

    /// The table's row for them: lost is what the archive misses of `sent`.
    pub fn row(&self, case: &str, direction: &'static str, sent: usize, note: String) -> Row {
        Row {
            case: case.into(),
            direction,
            sent,
            delivered: self.live.len(),
            archived: Some(self.archived.len()),
            duplicated: self.doubled(),
            lost: sent - self.archived.len(),
            note,
        }
    }
}

/// Read what comes to `client` in `room` into `seen`, half a second at a time, and read
/// the archive again after each until `complete` takes it or `within` has passed; the
/// archive as last read.
pub async fn read_until_archived(
    seen: &mut Seen,
    client: &mut TestClient,
    (room, own_nick): (&str, &str),
    within: Duration,
    mut archive: impl AsyncFnMut() -> Vec<String>,
    mut complete: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    loop {
        seen.read_for(client, room, own_nick, Duration::from_millis(500))
            .await;
        let read = archive().await;
        if complete(&read) || start.elapsed() > within {
            return read;
        }
    }
}

/// Whether `archive` holds every number below `count` with `prefix`.
pub fn holds_all(archive: &[String], prefix: &str, count: usize) -> bool {
    tally(archive.iter().map(String::as_str), prefix).len() == count
}

/// An IRC user in one channel who says lines while a task of its own reads what comes
/// (answering PINGs).
pub struct IrcPeer {
    write: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    /// Every line read, in order.
    seen: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl IrcPeer {
    /// Connect as `nick` and join `channel`.
    pub async fn join(port: u16, nick: &str, channel: &str) -> IrcPeer {
        let mut client = IrcClient::connect(port, nick).await;
        client.join(channel).await;
        let (mut read, write) = client.into_parts();
        let write = Arc::new(tokio::sync::Mutex::new(write));
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let (pong, lines) = (write.clone(), seen.clone());
        let reader = tokio::spawn(async move {
            let mut line = Vec::new();
            loop {
                line.clear();
                match read.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                if let Some(token) = text.strip_prefix("PING ") {
                    let answer = format!("PONG {token}\r\n");
                    let _ = pong.lock().await.write_all(answer.as_bytes()).await;
                }
                lines.lock().unwrap().push(text);
            }
        });
        IrcPeer {
            write,
            seen,
            reader,
        }
    }

    /// Say `count` lines `prefix{n}` in `channel`, from `first` on, in writes of 50.
    pub async fn say_numbered(&self, channel: &str, prefix: &str, first: usize, count: usize) {
        let mut batch = String::new();
        for n in first..first + count {
            batch.push_str(&format!("PRIVMSG {channel} :{prefix}{n}\r\n"));
            if (n + 1 - first) % 50 == 0 || n + 1 == first + count {
                let mut write = self.write.lock().await;
                write.write_all(batch.as_bytes()).await.unwrap();
                drop(write);
                batch.clear();
                tokio::task::yield_now().await;
            }
        }
    }

    /// Say `count` lines `prefix{n}` in `channel` from 0 on, `per_second` of them a second
    /// in writes of 50, counting them in `said` as they go; with `pause_while_out`, writing
    /// stops while `nick` is out of the channel (from its QUIT until its next JOIN), and
    /// how many had been said when it first stopped is returned.
    pub async fn flow(
        self: Arc<Self>,
        channel: &str,
        (prefix, count, per_second): (&str, usize, usize),
        said: Arc<std::sync::atomic::AtomicUsize>,
        pause_while_out: Option<&str>,
    ) -> Option<usize> {
        use std::sync::atomic::Ordering;
        // How many had been said when the first pause began.
        let mut paused_at = None;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(50.0 / per_second as f64));
        let mut n = 0;
        while n < count {
            tick.tick().await;
            if let Some(nick) = pause_while_out {
                let head = format!(":{nick}!");
                let out = self
                    .lines(|l| {
                        l.starts_with(&head) && (l.contains(" QUIT") || l.contains(" JOIN "))
                    })
                    .last()
                    .is_some_and(|l| l.contains(" QUIT"));
                if out {
                    paused_at.get_or_insert(n);
                    continue;
                }
            }
            let batch = 50.min(count - n);
            self.say_numbered(channel, prefix, n, batch).await;
            n += batch;
            said.store(n, Ordering::Release);
        }
        paused_at
    }

    /// Send one raw line.
    pub async fn send(&self, line: &str) {
        let mut write = self.write.lock().await;
        write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Who is in `channel` now (NAMES), without their prefixes.
    pub async fn names(&self, channel: &str) -> BTreeSet<String> {
        let from = self.seen.lock().unwrap().len();
        self.send(&format!("NAMES {channel}")).await;
        let end = " 366 ";
        let start = Instant::now();
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let fresh = &seen[from.min(seen.len())..];
                if let Some(at) = fresh
                    .iter()
                    .position(|l| l.contains(end) && l.contains(channel))
                {
                    return fresh[..at]
                        .iter()
                        .filter(|l| l.split(' ').nth(1) == Some("353") && l.contains(channel))
                        .filter_map(|l| l[1..].split_once(" :").map(|(_, names)| names))
                        .flat_map(|names| names.split(' '))
                        .map(|n| n.trim_start_matches(['@', '+', '%', '&', '~']).to_owned())
                        .filter(|n| !n.is_empty())
                        .collect();
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no NAMES for {channel}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The lines read so far that `matches` accepts.
    pub fn lines(&self, mut matches: impl FnMut(&str) -> bool) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|l| matches(l)).cloned().collect()
    }

    /// Wait until a line `matches` has been read, within `within`.
    pub async fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) {
        let start = Instant::now();
        while !self.seen.lock().unwrap().iter().any(|l| matches(l)) {
            assert!(
                start.elapsed() < within,
                "no {what} on IRC within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The bodies of the PRIVMSGs from `nick` to `channel`, in order.
    pub fn said_by(&self, nick: &str, channel: &str) -> Vec<String> {
        let head = format!(":{nick}!");
        let verb = format!(" PRIVMSG {channel} :");
        self.lines(|l| l.starts_with(&head))
            .into_iter()
            .filter_map(|l| l.split_once(&verb).map(|(_, body)| body.to_owned()))
            .collect()
    }
}

impl Drop for IrcPeer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What an XMPP user in a room saw: live messages from others, reflections of their own,
/// and errors for what they sent.
#[derive(Default)]
pub struct Seen {
    /// Bodies of live (undelayed) messages from others, in order.
    pub live: Vec<String>,
    /// Ids of their own messages reflected.
    pub reflected: BTreeSet<String>,
    /// Ids of their own messages that came back as errors.
    pub bounced: BTreeSet<String>,
}

impl Seen {
    fn take(&mut self, room: &str, own_nick: &str, stanza: Stanza) {
        let Stanza::Message(m) = &stanza else { return };
        if m.type_ == MessageType::Error {
            if let Some(id) = &m.id {
                self.bounced.insert(id.0.clone());
            }
            return;
        }
        if m.type_ != MessageType::Groupchat || !sender(&stanza).starts_with(room) {
            return;
        }
        let from_self = sender(&stanza).ends_with(&format!("/{own_nick}"));
        if from_self {
            if let Some(id) = &m.id {
                self.reflected.insert(id.0.clone());
            }
        } else if !m.payloads.iter().any(|p| p.is("delay", "urn:xmpp:delay")) {
            if let Some(body) = body(m) {
                self.live.push(body.to_owned());
            }
        }
    }

    /// Read what has arrived for `client` in `room`.
    pub fn read(&mut self, client: &mut TestClient, room: &str, own_nick: &str) {
        client.read_arrived(|s| self.take(room, own_nick, s));
    }

    /// Read for `quiet` more.
    pub async fn read_for(
        &mut self,
        client: &mut TestClient,
        room: &str,
        own_nick: &str,
        quiet: Duration,
    ) {
        let stop = tokio_util::sync::CancellationToken::new();
        let cancel = stop.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(quiet).await;
            cancel.cancel();
        });
        client
            .read_until(&stop, |s| self.take(room, own_nick, s))
            .await;
        let _ = timer.await;
    }
}

/// Send `count` messages `prefix{n}` (id `prefix{n}`) to `room` from `first` on, never more
/// than `window` without their reflection (or an error), reading all the while.
pub async fn send_windowed(
    client: &mut TestClient,
    seen: &mut Seen,
    room: &str,
    own_nick: &str,
    (prefix, first, count): (&str, usize, usize),
    window: usize,
) {
    let mut unanswered = BTreeSet::new();
    for n in first..first + count {
        let id = format!("{prefix}{n}");
        let mut message = groupchat_to(room, &id);
        message.id = Some(xmpp_client::parsers::message::Id(id.clone()));
        client.send(message).await;
        unanswered.insert(id);
        let start = Instant::now();
        loop {
            seen.read(client, room, own_nick);
            unanswered.retain(|id| !seen.reflected.contains(id) && !seen.bounced.contains(id));
            if unanswered.len() < window {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{window} messages unanswered for 30 s"
            );
            seen.read_for(client, room, own_nick, Duration::from_millis(20))
                .await;
        }
    }
}

/// The bodies in `user`'s archive of `room` (`sqlite://…` at `url`), oldest first.
pub async fn archived(url: &str, user: &str, room: &str) -> Vec<String> {
    let store = causeway::store::Store::open(url, 1).await.unwrap();
    let bodies = archived_in(&store, user, room).await;
    store.close().await;
    bodies
}

/// [`archived`] from an open store.
pub async fn archived_in(store: &causeway::store::Store, user: &str, room: &str) -> Vec<String> {
    let page = store
        .archive_page(&causeway::store::ArchiveQuery {
            user: user.into(),
            room: room.into(),
            max: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    page.messages.into_iter().map(|m| m.body).collect()
}
