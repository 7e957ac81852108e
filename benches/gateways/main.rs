//! causeway against biboumi, side by side on the same Prosody and ngircd, in one run:
//! `cargo bench --bench gateways` (after `tests/setup.sh bench`). Prints a table of the
//! figures and of the ratios causeway/biboumi; asserts nothing.
//!
//! Scenarios so far (issue 6 lists the rest):
//! - throughput: 50 XMPP users, each in its own channel, send 10,000 groupchat messages in
//!   all as fast as they can; an IRC client in every channel counts what arrives (every
//!   message accounted for). With history recording on (both gateways' default) and off.
//!   biboumi's per-user throttle is switched off and its TLS-first ports set to plain.
//! - CPU: user+system seconds of each gateway process per 10,000 relayed messages, from
//!   /proc, with the load generator's (this process's) own CPU shown beside it.
//! - latency: 1,000 msg/s paced for 10 s (each of the 50 users 20 msg/s into its channel),
//!   end to end p50/p99/max XMPP→IRC, then the same from IRC to the XMPP users.

#[allow(dead_code, unused_imports)]
#[path = "../tests/integration/harness/mod.rs"]
mod harness;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::irc_server::IrcServer;
use harness::muc::{enter, groupchat_to};
use harness::xmpp_server::{Flavor, XmppServer};
use harness::TestClient;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const USERS: usize = 50;
const MESSAGES: usize = 10_000;
const BIBOUMI: &str = "biboumi.localhost";

/// Which gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Causeway,
    Biboumi,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Causeway => "causeway",
            Kind::Biboumi => "biboumi",
        }
    }

    fn domain(self) -> &'static str {
        match self {
            Kind::Causeway => "irc.localhost",
            Kind::Biboumi => BIBOUMI,
        }
    }
}

/// A gateway process attached to the Prosody of the run.
struct Gateway {
    kind: Kind,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// causeway's release build, history recording `record`.
    fn causeway(xmpp: &XmppServer, irc_port: u16, record: bool) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[xmpp]\nhost = \"127.0.0.1\"\nport = {}\n[database]\nurl = \"sqlite://{}\"\n\
             [access]\nallow = [\"localhost\"]\n[history]\nrecord = {record}\n\
             [irc]\ndomain = \"irc.localhost\"\nsecret = \"{}\"\n\
             [irc.servers.\"127.0.0.1\"]\nport = {irc_port}\ntls = false\nflood_control = false\n",
            xmpp.component_port,
            dir.path().join("causeway.db").display(),
            xmpp.secret,
        );
        let file = dir.path().join("causeway.toml");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("causeway.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("causeway starts");
        Gateway {
            kind: Kind::Causeway,
            child,
            _dir: dir,
        }
    }

    /// biboumi from Debian's package; its database gets per-user server options (throttle
    /// off, plain port) and, without `record`, history recording off.
    async fn biboumi(xmpp: &XmppServer, irc_port: u16, record: bool, users: &[String]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("biboumi.sqlite");
        let config = format!(
            "hostname={BIBOUMI}\npassword={}\nxmpp_server_ip=127.0.0.1\nport={}\n\
             db_name={}\nlog_level=3\nrealname_customization=true\n",
            xmpp.secret,
            xmpp.component_port,
            db.display()
        );
        let file = dir.path().join("biboumi.cfg");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("biboumi.log")).unwrap();
        let child = Command::new("biboumi")
            .arg(&file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("biboumi starts (tests/setup.sh bench installs it)");
        // biboumi creates its tables at start; options are read when a user connects.
        let url = format!("sqlite://{}", db.display());
        let pool = loop {
            if let Ok(pool) = sqlx::SqlitePool::connect(&url).await {
                let ready = sqlx::query("SELECT 1 FROM globaloptions_ LIMIT 1")
                    .fetch_optional(&pool)
                    .await
                    .is_ok();
                if ready {
                    break pool;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        for user in users {
            sqlx::query(
                "INSERT INTO ircserveroptions_ (owner_, server_, pass_, tlsports_, ports_, username_, \
                 realname_, verifycert_, trustedfingerprint_, encodingout_, encodingin_, \
                 maxhistorylength_, address_, nick_, saslpassword_, throttlelimit_) \
                 VALUES ($1, '127.0.0.1', '', '', $2, '', '', 0, '', '', '', 20, '', '', '', -1)",
            )
            .bind(user)
            .bind(irc_port.to_string())
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_) \
                 VALUES ($1, 20, $2, 0)",
            )
            .bind(user)
            .bind(i64::from(record))
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
        Gateway {
            kind: Kind::Biboumi,
            child,
            _dir: dir,
        }
    }

    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.child.id())
    }

    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }

    /// The end of the gateway's log, for runs that went wrong.
    fn log_tail(&self) -> String {
        let name = match self.kind {
            Kind::Causeway => "causeway.log",
            Kind::Biboumi => "biboumi.log",
        };
        let log = std::fs::read_to_string(self._dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn room(&self, n: usize) -> String {
        format!("#bench{n}%127.0.0.1@{}", self.kind.domain())
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// user+system CPU seconds of a process, from /proc (clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// When each message text arrived, and when the last one did.
type Arrivals = (HashMap<String, Instant>, Option<Instant>);

/// An IRC client in every bench channel, noting when each message arrives; it also sends
/// (IRC → XMPP latency).
struct Observer {
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
    async fn start(port: u16, channels: usize) -> Observer {
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
    fn arrival(&self, text: &str) -> Option<Instant> {
        self.seen.lock().unwrap().0.get(text).copied()
    }

    /// Send a message to a bench channel.
    fn say(&self, channel: usize, text: &str) {
        let _ = self
            .send
            .send(format!("PRIVMSG #bench{channel} :{text}\r\n"));
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().0.len()
    }

    fn last(&self) -> Option<Instant> {
        self.seen.lock().unwrap().1
    }

    fn reset(&self) {
        *self.seen.lock().unwrap() = (HashMap::new(), None);
    }
}

/// One throughput run: every user sends its share into its channel at once.
struct Throughput {
    per_second: f64,
    received: usize,
    cpu: f64,
    load_cpu: f64,
    rss_kib: u64,
}

async fn throughput(
    gateway: &Gateway,
    clients: &mut Vec<TestClient>,
    observer: &Observer,
    tag: &str,
) -> Throughput {
    for (n, client) in clients.iter_mut().enumerate() {
        enter(client, &gateway.room(n), &format!("user{n}")).await;
    }
    // Puppets are in: let the joins settle before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    observer.reset();
    let cpu_before = gateway.cpu_seconds();
    let load_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let per_user = MESSAGES / clients.len();
    let mut sends = Vec::new();
    for (n, mut client) in clients.drain(..).enumerate() {
        let room = gateway.room(n);
        let tag = tag.to_owned();
        sends.push(tokio::spawn(async move {
            for i in 0..per_user {
                client
                    .send(groupchat_to(&room, &format!("{tag} user{n} message {i}")))
                    .await;
            }
            client
        }));
    }
    for send in sends {
        clients.push(send.await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_count = 0;
    let mut quiet_since = Instant::now();
    while observer.count() < MESSAGES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let count = observer.count();
        if count != last_count {
            last_count = count;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    let finished = observer.last().unwrap_or_else(Instant::now);
    let received = observer.count();
    let elapsed = finished.duration_since(started).as_secs_f64();
    let result = Throughput {
        per_second: received as f64 / elapsed.max(1e-9),
        received,
        cpu: gateway.cpu_seconds() - cpu_before,
        load_cpu: cpu_seconds(std::process::id()) - load_before,
        rss_kib: gateway.rss_kib(),
    };
    for (n, client) in clients.iter_mut().enumerate() {
        let mut leave = xmpp_client::parsers::presence::Presence::unavailable();
        leave.to = Some(format!("{}/user{n}", gateway.room(n)).parse().unwrap());
        client.send(leave).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    result
}

/// p50, p99 and max of some latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
    lost: usize,
}

fn percentiles(mut samples: Vec<Duration>, expected: usize) -> Percentiles {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        lost: expected.saturating_sub(samples.len()),
    }
}

const PACED_RATE: usize = 1_000;
const PACED_SECONDS: usize = 10;

/// Paced latency both ways; the clients are in their channels already.
async fn latency(
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
    tokio::time::sleep(Duration::from_secs(5)).await;
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
                let text = client
                    .expect("a paced message", |s| match s {
                        xmpp_client::Stanza::Message(m) => m
                            .bodies
                            .values()
                            .next()
                            .filter(|b| b.starts_with(&prefix))
                            .cloned(),
                        _ => None,
                    })
                    .await;
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

/// Register `count` users on Prosody in one shell session (prosodyctl register per user
/// takes about half a second each).
fn register_users(xmpp: &XmppServer, dir: &Path, count: usize) -> Vec<String> {
    let users: Vec<String> = (0..count).map(|n| format!("user{n}@localhost")).collect();
    for user in &users {
        let (name, host) = user.split_once('@').unwrap();
        xmpp.register(name, host, "password");
    }
    let _ = dir;
    users
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "—".into()
    }
}

#[tokio::main]
async fn main() {
    if Command::new("biboumi").arg("--help").output().is_err() {
        eprintln!("biboumi is not installed: run tests/setup.sh bench");
        std::process::exit(2);
    }
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "causeway vs biboumi — {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        machine.replace("  ", "")
    );
    let xmpp = XmppServer::start_with_components(Flavor::Prosody, &[BIBOUMI]);
    let irc = IrcServer::ngircd();
    let scratch = tempfile::tempdir().unwrap();
    let users = register_users(&xmpp, scratch.path(), USERS);
    let mut rows = Vec::new();
    for record in [true, false] {
        let history = if record { "on" } else { "off" };
        let mut results = Vec::new();
        let only = std::env::var("CAUSEWAY_BENCH_ONLY").ok();
        for kind in [Kind::Causeway, Kind::Biboumi] {
            if only.as_deref().is_some_and(|o| o != kind.name()) {
                continue;
            }
            let gateway = match kind {
                Kind::Causeway => Gateway::causeway(&xmpp, irc.port, record),
                Kind::Biboumi => Gateway::biboumi(&xmpp, irc.port, record, &users).await,
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
            let observer = Observer::start(irc.port, USERS).await;
            let mut clients = Vec::new();
            for n in 0..USERS {
                clients.push(TestClient::connect(&xmpp, &format!("user{n}"), "localhost").await);
            }
            let tag = format!("{}-{history}", kind.name());
            let result = throughput(&gateway, &mut clients, &observer, &tag).await;
            if result.received < MESSAGES {
                eprintln!("--- {} log ---\n{}", kind.name(), gateway.log_tail());
            }
            println!(
                "throughput history {history:3} {:9}: {:8.0} msg/s, {}/{} arrived, gateway CPU {:.2} s, load generator CPU {:.2} s, RSS {} KiB",
                kind.name(),
                result.per_second,
                result.received,
                MESSAGES,
                result.cpu,
                result.load_cpu,
                result.rss_kib
            );
            let paced = if record {
                for (n, client) in clients.iter_mut().enumerate() {
                    enter(client, &gateway.room(n), &format!("user{n}")).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (to_irc, to_xmpp) = latency(&gateway, &mut clients, &observer).await;
                for (way, p) in [("XMPP→IRC", to_irc), ("IRC→XMPP", to_xmpp)] {
                    println!(
                        "latency {way} {:9}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, lost {}",
                        kind.name(),
                        p.p50,
                        p.p99,
                        p.max,
                        p.lost
                    );
                }
                Some((to_irc, to_xmpp))
            } else {
                None
            };
            for client in clients {
                client.logout().await;
            }
            gateway.stop();
            results.push((result, paced));
        }
        rows.push((history, results));
    }
    println!("\n| scenario | causeway | biboumi | causeway/biboumi |\n|---|---|---|---|");
    for (history, results) in &rows {
        let [(c, c_paced), (b, b_paced)] = &results[..] else {
            continue;
        };
        if let (Some(c_paced), Some(b_paced)) = (c_paced, b_paced) {
            for (way, c, b) in [
                ("XMPP→IRC", c_paced.0, b_paced.0),
                ("IRC→XMPP", c_paced.1, b_paced.1),
            ] {
                for (what, cv, bv) in [
                    ("p50", c.p50, b.p50),
                    ("p99", c.p99, b.p99),
                    ("max", c.max, b.max),
                ] {
                    println!(
                        "| latency {way} {what} at 1,000 msg/s (ms) | {cv:.1} | {bv:.1} | {} |",
                        ratio(cv, bv)
                    );
                }
            }
        }
        println!(
            "| throughput, history {history} (msg/s) | {:.0} | {:.0} | {} |",
            c.per_second,
            b.per_second,
            ratio(c.per_second, b.per_second)
        );
        let per = |r: &Throughput| r.cpu * MESSAGES as f64 / r.received.max(1) as f64;
        println!(
            "| CPU per 10,000 messages, history {history} (s) | {:.2} | {:.2} | {} |",
            per(c),
            per(b),
            ratio(per(c), per(b))
        );
    }
}
