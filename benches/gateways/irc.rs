//! The IRC scenarios: throughput, paced latency and fan-out, each run the same way against
//! either gateway. An IRC client (the observer) sits in every bench channel and notes when
//! each message arrives; it also speaks, for the IRC → XMPP direction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::gateway::{Gateway, Usage};
use crate::harness::muc::{enter, groupchat_to};
use crate::harness::TestClient;
use crate::{body_starting, percentiles, wait_for, Percentiles, Pids};

/// When each message text arrived, and when the last one did.
type Arrivals = (HashMap<String, Instant>, Option<Instant>);

/// An IRC client in every bench channel, noting when each message arrives; it also sends
/// (IRC → XMPP latency).
pub struct Observer {
    seen: Arc<Mutex<Arrivals>>,
    send: tokio::sync::mpsc::UnboundedSender<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        // Closes the connection: the next run's observer starts clean.
        self.task.abort();
    }
}

impl Observer {
    pub async fn start(port: u16, channels: usize) -> Observer {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nick = format!(
            "observer{}",
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        write
            .write_all(format!("NICK {nick}\r\nUSER {nick} 0 * :bench observer\r\n").as_bytes())
            .await
            .unwrap();
        let joins: String = (0..channels)
            .map(|n| format!("JOIN #bench{n}\r\n"))
            .collect();
        write.write_all(joins.as_bytes()).await.unwrap();
        let seen = Arc::new(Mutex::new((HashMap::new(), None)));
        let counter = seen.clone();
        let (send, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<String>();
        let task = tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            loop {
                let line = tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => line,
                        _ => break,
                    },
                    Some(out) = outgoing.recv() => {
                        let _ = write.write_all(out.as_bytes()).await;
                        continue;
                    }
                };
                if let Some(rest) = line.strip_prefix("PING ") {
                    let _ = write.write_all(format!("PONG {rest}\r\n").as_bytes()).await;
                    continue;
                }
                if let Some((_, text)) = line
                    .split_once(" PRIVMSG #bench")
                    .and_then(|(_, r)| r.split_once(" :"))
                {
                    let now = Instant::now();
                    let mut seen = counter.lock().unwrap();
                    seen.0.entry(text.to_owned()).or_insert(now);
                    seen.1 = Some(now);
                }
            }
        });
        // Joined when the server has answered every JOIN: give it a moment.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Observer { seen, send, task }
    }

    /// When the message with this text arrived.
    pub fn arrival(&self, text: &str) -> Option<Instant> {
        self.seen.lock().unwrap().0.get(text).copied()
    }

    /// Send a message to a bench channel.
    pub fn say(&self, channel: usize, text: &str) {
        let _ = self
            .send
            .send(format!("PRIVMSG #bench{channel} :{text}\r\n"));
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().0.len()
    }

    pub fn last(&self) -> Option<Instant> {
        self.seen.lock().unwrap().1
    }

    pub fn reset(&self) {
        *self.seen.lock().unwrap() = (HashMap::new(), None);
    }
}

/// One throughput run: every user sends its share into its channel at once.
pub struct Throughput {
    pub per_second: f64,
    pub received: usize,
    pub seconds: f64,
    pub usage: Usage,
    pub rss_kib: u64,
    /// The gateway's echoes of the messages back to their senders: by the time the last
    /// message reached IRC, and in all.
    pub echoes_in_time: usize,
    pub echoes: usize,
    /// The wall time over which `usage` was taken: to the last echo.
    pub usage_seconds: f64,
    /// The XMPP server's instructions over the same time, when it runs under callgrind.
    pub xmpp_instructions: Option<u64>,
}

impl Throughput {
    /// The median of the runs' rates; arrivals, time, CPU and instructions of all runs
    /// together (so CPU per message counts every message).
    pub fn median(mut runs: Vec<Throughput>) -> Throughput {
        runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        let middle = &runs[(runs.len() - 1) / 2..=runs.len() / 2];
        let mut all = Throughput {
            per_second: middle.iter().map(|r| r.per_second).sum::<f64>() / middle.len() as f64,
            received: 0,
            seconds: 0.0,
            usage: Usage::default(),
            rss_kib: runs.iter().map(|r| r.rss_kib).max().unwrap_or(0),
            echoes_in_time: 0,
            echoes: 0,
            usage_seconds: 0.0,
            // Counted in every run (under callgrind), or in none.
            xmpp_instructions: runs.iter().map(|r| r.xmpp_instructions).sum(),
        };
        for run in &runs {
            all.received += run.received;
            all.echoes_in_time += run.echoes_in_time;
            all.echoes += run.echoes;
            all.usage_seconds += run.usage_seconds;
            all.seconds += run.seconds;
            all.usage = all.usage.plus(run.usage);
        }
        all
    }
}

pub async fn throughput(
    gateway: &Gateway,
    pids: Pids,
    clients: &mut Vec<TestClient>,
    observer: &Observer,
    tag: &str,
    total: usize,
) -> Throughput {
    for (n, client) in clients.iter_mut().enumerate() {
        enter(client, &gateway.room(n), &format!("user{n}")).await;
    }
    // Puppets are in: let the joins settle before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    observer.reset();
    pids.zero_instructions();
    let before = pids.usage(gateway);
    let started = Instant::now();
    let per_user = total / clients.len();
    // Each client reads its stream while it sends, and after, until the run is over: the
    // gateway's echoes of its messages come back meanwhile, and a client that left them
    // unread would have Prosody queue them (a cost of the load generator, not the gateway).
    let over = CancellationToken::new();
    let echoes = Arc::new(AtomicUsize::new(0));
    let mut sends = Vec::new();
    let expected = per_user * clients.len();
    for (n, mut client) in clients.drain(..).enumerate() {
        let room = gateway.room(n);
        let tag = tag.to_owned();
        let over = over.clone();
        let echoes = echoes.clone();
        sends.push(tokio::spawn(async move {
            let echo = |stanza: xmpp_client::Stanza| {
                if body_starting(&stanza, &tag).is_some() {
                    echoes.fetch_add(1, Ordering::Relaxed);
                }
            };
            for i in 0..per_user {
                client
                    .send(groupchat_to(&room, &format!("{tag} user{n} message {i}")))
                    .await;
                client.read_arrived(echo);
            }
            client.read_until(&over, echo).await;
            client
        }));
    }
    let arrived = wait_for(|| observer.count(), expected, Duration::from_secs(20));
    let _ = tokio::time::timeout(Duration::from_secs(300), arrived).await;
    let finished = observer.last().unwrap_or_else(Instant::now);
    let received = observer.count();
    let echoes_in_time = echoes.load(Ordering::Relaxed);
    // The gateway's work for these messages ends with their echoes: its CPU is read once
    // they are all back (or none came for a while), not while it is still sending them.
    let echoed = wait_for(|| echoes.load(Ordering::Relaxed), expected, ECHO_SILENCE);
    let _ = tokio::time::timeout(Duration::from_secs(300), echoed).await;
    let usage = pids.usage(gateway).since(before);
    let xmpp_instructions = pids.instructions();
    let usage_seconds = started.elapsed().as_secs_f64();
    over.cancel();
    for send in sends {
        clients.push(send.await.unwrap());
    }
    let seconds = finished.duration_since(started).as_secs_f64();
    let result = Throughput {
        per_second: received as f64 / seconds.max(1e-9),
        received,
        seconds,
        usage,
        rss_kib: gateway.rss_kib(),
        echoes_in_time,
        echoes: echoes.load(Ordering::Relaxed),
        usage_seconds,
        xmpp_instructions,
    };
    leave_all(clients, |n| gateway.room(n)).await;
    result
}

/// Every user (nick `userN`) leaves its room, `room_of(N)`.
pub async fn leave_all(clients: &mut [TestClient], room_of: impl Fn(usize) -> String) {
    for (n, client) in clients.iter_mut().enumerate() {
        let mut leave = xmpp_client::parsers::presence::Presence::unavailable();
        leave.to = Some(format!("{}/user{n}", room_of(n)).parse().unwrap());
        client.send(leave).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// How long to wait after [`leave_all`] for every puppet to be gone from the IRC server:
/// causeway keeps a connection with no channel left for 3 s (so that leaving and coming back
/// at once costs no reconnect), and `leave_all` waited 2 s already; a second more for the
/// QUITs to reach the server on a loaded machine.
pub const PUPPET_LINGER: Duration = Duration::from_secs(3);

/// How long the throughput run waits for the next echo before it counts the rest as lost.
const ECHO_SILENCE: Duration = Duration::from_secs(3);

pub const PACED_RATE: usize = 1_000;
pub const PACED_SECONDS: usize = 10;
/// How long the paced scenario waits for the next arrival before the rest count as lost.
const PACED_SILENCE: Duration = Duration::from_secs(60);

/// Paced latency both ways; the clients are in their channels already.
pub async fn latency(
    gateway: &Gateway,
    clients: &mut Vec<TestClient>,
    observer: &Observer,
) -> (Percentiles, Percentiles) {
    let per_user = PACED_RATE * PACED_SECONDS / clients.len();
    let interval = Duration::from_secs_f64(clients.len() as f64 / PACED_RATE as f64);
    // XMPP → IRC: every user paced, staggered so that the total is even.
    observer.reset();
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tasks = Vec::new();
    let users = clients.len();
    for (n, mut client) in clients.drain(..).enumerate() {
        let room = gateway.room(n);
        let sent_at = sent_at.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(interval.mul_f64(n as f64 / users as f64)).await;
            let mut ticks = tokio::time::interval(interval);
            for i in 0..per_user {
                ticks.tick().await;
                let text = format!("lat user{n} {i}");
                sent_at.lock().unwrap().insert(text.clone(), Instant::now());
                client.send(groupchat_to(&room, &text)).await;
            }
            client
        }));
    }
    for task in tasks {
        clients.push(task.await.unwrap());
    }
    // Until all arrived, or nothing did for a while: the rest count as lost.
    wait_for(|| observer.count(), per_user * users, PACED_SILENCE).await;
    let samples: Vec<Duration> = sent_at
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(text, at)| Some(observer.arrival(text)?.duration_since(*at)))
        .collect();
    let to_irc = percentiles(samples, per_user * users);

    // IRC → XMPP: the observer speaks in every channel at the same pace; each user notes
    // what reaches it.
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut readers = Vec::new();
    for (n, mut client) in clients.drain(..).enumerate() {
        readers.push(tokio::spawn(async move {
            let mut arrivals = Vec::new();
            let prefix = format!("rev {n} ");
            while arrivals.len() < per_user {
                let next = client
                    .try_expect(PACED_SILENCE, |s| body_starting(s, &prefix))
                    .await;
                let Ok(text) = next else { break };
                arrivals.push((text, Instant::now()));
            }
            (client, arrivals)
        }));
    }
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / PACED_RATE as f64));
    for i in 0..per_user * users {
        ticks.tick().await;
        let channel = i % users;
        let text = format!("rev {channel} {i}");
        sent_at.lock().unwrap().insert(text.clone(), Instant::now());
        observer.say(channel, &text);
    }
    let mut samples = Vec::new();
    for reader in readers {
        let (client, arrivals) = reader.await.unwrap();
        clients.push(client);
        let sent = sent_at.lock().unwrap();
        samples.extend(
            arrivals
                .into_iter()
                .filter_map(|(text, at)| Some(at.duration_since(*sent.get(&text)?))),
        );
    }
    (to_irc, percentiles(samples, per_user * users))
}

/// Messages each user sends in the fan-out scenario.
pub const FANOUT_MESSAGES: usize = 20;
/// How long a user waits for the next message before the rest count as lost. Long: with
/// history on, biboumi writes every delivery to SQLite first (one transaction each) and sends
/// nothing for tens of seconds.
const FANOUT_SILENCE: Duration = Duration::from_secs(120);

/// One fan-out run: all users in one channel, every message to every other user.
pub struct FanOut {
    /// Messages per second delivered to every other user.
    pub per_second: f64,
    /// Deliveries (one message to one user) per second.
    pub deliveries_per_second: f64,
    pub delivered: usize,
    pub expected: usize,
    /// From the sender's send to a receiver's arrival.
    pub latency: Percentiles,
    pub seconds: f64,
    pub usage: Usage,
}

/// Every user joins one shared channel, then all send [`FANOUT_MESSAGES`] each at once;
/// each user counts what reaches it from the others (through their IRC connections).
pub async fn fan_out(gateway: &Gateway, pids: Pids, clients: &mut Vec<TestClient>) -> FanOut {
    let room = gateway.kind.room("fanout");
    for (n, client) in clients.iter_mut().enumerate() {
        enter(client, &room, &format!("user{n}")).await;
    }
    // Every join is announced to those already in: let that settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let users = clients.len();
    let per_user = (users - 1) * FANOUT_MESSAGES;
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let before = pids.usage(gateway);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, mut client) in clients.drain(..).enumerate() {
        let room = room.clone();
        let sent_at = sent_at.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..FANOUT_MESSAGES {
                let text = format!("fan {n} {i}");
                sent_at.lock().unwrap().insert(text.clone(), Instant::now());
                client.send(groupchat_to(&room, &text)).await;
            }
            let own = format!("fan {n} ");
            let mut arrivals = Vec::with_capacity(per_user);
            while arrivals.len() < per_user {
                let next = client
                    .try_expect(FANOUT_SILENCE, |s| {
                        body_starting(s, "fan ").filter(|b| !b.starts_with(&own))
                    })
                    .await;
                match next {
                    Ok(text) => arrivals.push((text, Instant::now())),
                    Err(_) => break,
                }
            }
            (client, arrivals)
        }));
    }
    let mut samples = Vec::new();
    let mut last = started;
    for task in tasks {
        let (client, arrivals) = task.await.unwrap();
        clients.push(client);
        let sent = sent_at.lock().unwrap();
        for (text, at) in arrivals {
            if let Some(sent) = sent.get(&text) {
                samples.push(at.duration_since(*sent));
                last = last.max(at);
            }
        }
    }
    let usage = pids.usage(gateway).since(before);
    let seconds = last.duration_since(started).as_secs_f64().max(1e-9);
    let delivered = samples.len();
    let expected = per_user * users;
    if delivered < expected {
        eprintln!(
            "--- {} log ---\n{}",
            gateway.kind.name(),
            gateway.log_tail()
        );
    }
    leave_all(clients, |_| room.clone()).await;
    FanOut {
        per_second: delivered as f64 / (users - 1) as f64 / seconds,
        deliveries_per_second: delivered as f64 / seconds,
        delivered,
        expected,
        latency: percentiles(samples, expected),
        seconds,
        usage,
    }
}
