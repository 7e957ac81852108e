//! causeway against its peers, side by side on the same Prosody and ngircd (and Synapse),
//! in one run: biboumi for IRC, matridge for personal Matrix logins.
//! `cargo bench --bench gateways` (after `tests/setup.sh bench`). Prints tables of the
//! figures and of the ratios causeway/peer; asserts nothing. docs/BENCHMARKS.md has a
//! run and says what bounds each figure.
//!
//! Scenarios (issue 6), each against both gateways (throughput runs taking turns, the rest
//! one gateway at a time):
//! - throughput: 50 XMPP users, each in its own channel, send 10,000 groupchat messages in
//!   all as fast as they can; an IRC client in every channel counts what arrives. With
//!   history recording on (both gateways' default) and off; the median of eight runs each.
//!   biboumi's per-user throttle is switched off and its TLS-first ports set to plain.
//!   A third contender takes its turns too: the bare relay (bare.rs), which does only what
//!   any gateway must, so shows what Prosody alone allows.
//! - instructions: Prosody's instructions per relayed message with each of the three
//!   (history off), counted by callgrind in a Prosody of its own, where its CPU time moves
//!   with the machine.
//! - CPU: CPU seconds of each gateway process per 10,000 relayed messages, to the last echo,
//!   from its threads' /proc schedstat, beside the load generator's (this process),
//!   Prosody's and ngircd's.
//! - latency: 1,000 msg/s paced for 10 s, end to end p50/p99/max XMPP→IRC, then IRC→XMPP.
//! - fan-out: the 50 users in one channel, 20 messages each at once, each to the 49 others.
//! - memory: RSS with 1, 200, 1,000 and 10,000 idle puppets (memory.rs).
//! - Matrix: XMPP→Matrix and Matrix→XMPP latency through Synapse, causeway only (matrix.rs).
//! - personal (issue 17): personal Matrix logins, causeway against matridge on the same
//!   Prosody and Synapse: RSS with 0, 1 and 10 logged-in users, idle and while messages
//!   flow, and one user's latency each way (personal.rs).
//!
//! Knobs, for profiling and partial runs: `CAUSEWAY_BENCH_ONLY=causeway|biboumi|bare|matridge`,
//! `CAUSEWAY_BENCH_SCENARIOS=throughput,instructions,latency,fanout,memory,matrix,personal`
//! (a subset),
//! `CAUSEWAY_BENCH_HISTORY=on|off`, `CAUSEWAY_BENCH_MESSAGES=N` (throughput run length),
//! `CAUSEWAY_BENCH_PUPPETS=N` (most idle puppets), `CAUSEWAY_BENCH_LOG=info` (causeway's
//! `RUST_LOG`; `warn` by default), `CAUSEWAY_BENCH_WRAP="perf record -g --"` (causeway run
//! under a tool), `CAUSEWAY_BENCH_KEEP=1` (keep each gateway's directory: log, database,
//! stores), `CAUSEWAY_MATRIDGE_VENV` (where matridge is; tests/setup.sh's default).

#[allow(dead_code, unused_imports)]
#[path = "../../tests/integration/harness/mod.rs"]
mod harness;

mod bare;
mod component;
mod gateway;
mod irc;
mod matrix;
mod memory;
mod personal;
mod table;

use std::process::Command;
use std::time::{Duration, Instant};

use bare::BARE;
use gateway::{Gateway, Kind, Usage, BIBOUMI, LOAD, MATRIDGE};
use harness::irc_server::IrcServer;
use harness::muc::enter;
use harness::xmpp_server::{Flavor, XmppServer};
use harness::TestClient;

const USERS: usize = 50;
const MESSAGES: usize = 10_000;
/// Throughput runs per gateway and history setting: even, so that each gateway goes first
/// as often as the other.
const THROUGHPUT_ROUNDS: usize = 8;
/// Throughput runs per gateway with Prosody under callgrind, and messages in each: the
/// count hardly moves between runs, and Prosody runs some 50 times slower.
const INSTRUCTION_ROUNDS: usize = 2;
const INSTRUCTION_MESSAGES: usize = 2_000;
/// The external components on the run's Prosody besides causeway's own.
const COMPONENTS: [&str; 4] = [BIBOUMI, LOAD, BARE, MATRIDGE];

/// Messages per throughput run: `CAUSEWAY_BENCH_MESSAGES` (longer runs for profiling).
fn messages() -> usize {
    env_number("CAUSEWAY_BENCH_MESSAGES").unwrap_or(MESSAGES)
}

fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|m| m.parse().ok())
}

/// Whether `CAUSEWAY_BENCH_SCENARIOS` (all when unset) includes `name`.
fn scenario(name: &str) -> bool {
    std::env::var("CAUSEWAY_BENCH_SCENARIOS")
        .map(|s| s.split(',').any(|s| s.trim() == name))
        .unwrap_or(true)
}

/// The servers' process ids, for their CPU use.
#[derive(Debug, Clone, Copy)]
pub struct Pids {
    xmpp: Option<u32>,
    irc: Option<u32>,
    /// Whether the XMPP server runs under callgrind (`prosody_instructions`).
    callgrind: bool,
}

impl Pids {
    fn usage(self, gateway: &Gateway) -> Usage {
        Usage::now(gateway.pid(), self.xmpp, self.irc)
    }

    /// Under callgrind, start counting the XMPP server's instructions from zero.
    fn zero_instructions(self) {
        self.callgrind_control("-z");
    }

    /// Under callgrind, the XMPP server's instructions since they were last zeroed.
    fn instructions(self) -> Option<u64> {
        // "  Totals:  Ir \n   Th 1  1,725,000 \n": a row per thread.
        let out = self.callgrind_control("-e")?;
        let sum = out
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Th "))
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter_map(|n| n.replace(',', "").parse::<u64>().ok())
            .sum();
        Some(sum)
    }

    fn callgrind_control(self, action: &str) -> Option<String> {
        let pid = self.xmpp.filter(|_| self.callgrind)?;
        let out = Command::new("callgrind_control")
            .args([action, &pid.to_string()])
            .output()
            .expect("callgrind_control runs (valgrind, tests/setup.sh bench)");
        assert!(out.status.success(), "callgrind_control {action}: {out:?}");
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// p50, p99 and max of some latencies, in milliseconds, and how many never arrived.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
    lost: usize,
}

/// Wait until `count()` reaches `expected`, or has not moved for `silence`.
async fn wait_for(count: impl Fn() -> usize, expected: usize, silence: Duration) {
    let mut progress = (Instant::now(), count());
    while progress.1 < expected && progress.0.elapsed() < silence {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = count();
        if now != progress.1 {
            progress = (Instant::now(), now);
        }
    }
}

/// The body of a message that starts with `prefix`, for picking a scenario's messages out of
/// what a client receives.
fn body_starting(stanza: &xmpp_client::Stanza, prefix: &str) -> Option<String> {
    match stanza {
        xmpp_client::Stanza::Message(m) => m
            .bodies
            .values()
            .next()
            .filter(|b| b.starts_with(prefix))
            .cloned(),
        _ => None,
    }
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

/// What one gateway did in the run.
#[derive(Default)]
struct Results {
    /// Per history setting ("on", "off").
    throughput: Vec<(&'static str, irc::Throughput)>,
    latency: Option<(Percentiles, Percentiles)>,
    fan_out: Option<irc::FanOut>,
    /// (puppets asked, puppets joined, RSS KiB), from 0 puppets up.
    memory: Vec<(usize, usize, u64)>,
    /// Prosody's instructions per relayed message, history off (under callgrind).
    prosody_instructions: Option<f64>,
    matrix: Option<(Percentiles, Percentiles)>,
}

impl Results {
    fn throughput(&self, history: &str) -> Option<&irc::Throughput> {
        self.throughput
            .iter()
            .find(|(h, _)| *h == history)
            .map(|(_, t)| t)
    }

    /// KiB per idle puppet between 1 and the most puppets measured.
    fn kib_per_puppet(&self) -> Option<f64> {
        let one = self.memory.iter().find(|(asked, _, _)| *asked == 1)?;
        let most = self.memory.last().filter(|(_, joined, _)| *joined > 1)?;
        Some((most.2 as f64 - one.2 as f64) / (most.1 - 1) as f64)
    }

    fn rss_at(&self, puppets: usize) -> Option<f64> {
        self.memory
            .iter()
            .find(|(asked, joined, _)| *asked == puppets && *joined == puppets)
            .map(|(_, _, rss)| *rss as f64)
    }
}

/// Let this process and its children (the servers, the gateways) hold 10,000 sockets and more.
fn raise_open_files_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("could not raise the open files limit: {e}");
    }
}

/// The gateways of one sitting, attached to the same XMPP server at once, the 50 users
/// logged in there, and the IRC observer in every bench channel.
struct Sitting {
    gateways: Vec<Gateway>,
    clients: Vec<TestClient>,
    observer: irc::Observer,
}

impl Sitting {
    async fn start(
        xmpp: &XmppServer,
        irc: &IrcServer,
        users: &[String],
        kinds: impl Iterator<Item = Kind>,
        record: bool,
    ) -> Sitting {
        let mut gateways = Vec::new();
        for kind in kinds {
            gateways.push(match kind {
                Kind::Causeway => Gateway::causeway(xmpp, irc.port, record, ""),
                Kind::Biboumi => Gateway::biboumi(xmpp, irc.port, record, users).await,
                Kind::Bare => Gateway::bare(xmpp, irc.port),
                Kind::Matridge => unreachable!("matridge has no IRC"),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let observer = irc::Observer::start(irc.port, USERS).await;
        let mut clients = Vec::new();
        for n in 0..USERS {
            clients.push(TestClient::connect(xmpp, &format!("user{n}"), "localhost").await);
        }
        Sitting {
            gateways,
            clients,
            observer,
        }
    }

    /// `rounds` throughput runs of `messages` each per gateway, the gateways taking turns
    /// and the turns alternating who goes first (AB BA AB …), so that whatever drifts over
    /// the sitting (Prosody's cost per message moved by half between runs of the same
    /// binary) falls on all alike. The runs, per gateway.
    async fn take_turns(
        &mut self,
        pids: Pids,
        history: &str,
        rounds: usize,
        messages: usize,
    ) -> Vec<Vec<irc::Throughput>> {
        let mut runs: Vec<Vec<irc::Throughput>> =
            self.gateways.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            let mut order: Vec<usize> = (0..self.gateways.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for g in order {
                let gateway = &self.gateways[g];
                // The tag starts every message's body: as long for every gateway, since
                // Prosody's work per message grows with its length (as with the domains').
                let tag = format!("{:-<8}-{history}-{round}", gateway.kind.name());
                let result = irc::throughput(
                    gateway,
                    pids,
                    &mut self.clients,
                    &self.observer,
                    &tag,
                    messages,
                )
                .await;
                if result.received < messages {
                    eprintln!(
                        "--- {} log ---\n{}",
                        gateway.kind.name(),
                        gateway.log_tail()
                    );
                }
                let instructions = result
                    .xmpp_instructions
                    .map(|i| {
                        format!(
                            "; Prosody ran {:.0} instructions a message",
                            i as f64 / result.received.max(1) as f64
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "throughput history {history:3} {:9}: {:8.0} msg/s, {}/{messages} arrived in {:.2} s, echoes {} by then, {} in all; RSS {} KiB; {}{instructions}",
                    gateway.kind.name(),
                    result.per_second,
                    result.received,
                    result.seconds,
                    result.echoes_in_time,
                    result.echoes,
                    result.rss_kib,
                    result.usage.describe(result.usage_seconds)
                );
                runs[g].push(result);
                // The puppets use the same nicks on every gateway: let causeway's quit (it
                // keeps a connection a few seconds after its last channel) before the next
                // gateway's join.
                tokio::time::sleep(irc::PUPPET_LINGER).await;
            }
        }
        runs
    }

    async fn end(self) {
        for client in self.clients {
            client.logout().await;
        }
        for gateway in self.gateways {
            gateway.stop();
        }
    }
}

/// The gateways through the IRC scenarios that use the 50 XMPP users. For each history
/// setting all gateways are up at once and their throughput runs take turns; the other
/// scenarios run one gateway at a time, and not for the bare relay.
async fn irc_scenarios(
    xmpp: &XmppServer,
    irc: &IrcServer,
    pids: Pids,
    users: &[String],
    all: &mut [(Kind, Results)],
) {
    let histories = match std::env::var("CAUSEWAY_BENCH_HISTORY").as_deref() {
        Ok("on") => vec![true],
        Ok("off") => vec![false],
        _ => vec![true, false],
    };
    for record in histories {
        let history = if record { "on" } else { "off" };
        let mut sitting =
            Sitting::start(xmpp, irc, users, all.iter().map(|(k, _)| *k), record).await;
        if scenario("throughput") {
            // A run lasts about half a second, and Prosody bounds it: take the median of
            // a few, and the CPU of them all.
            let runs = sitting
                .take_turns(pids, history, THROUGHPUT_ROUNDS, messages())
                .await;
            for ((_, results), runs) in all.iter_mut().zip(runs) {
                results
                    .throughput
                    .push((history, irc::Throughput::median(runs)));
            }
        }
        // The rest runs once, at the default (history on).
        let Sitting {
            gateways,
            clients,
            observer,
        } = &mut sitting;
        for (gateway, (_, results)) in gateways.iter().zip(all.iter_mut()) {
            if !record {
                break;
            }
            if gateway.kind == Kind::Bare {
                continue;
            }
            if scenario("latency") {
                for (n, client) in clients.iter_mut().enumerate() {
                    enter(client, &gateway.room(n), &format!("user{n}")).await;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (to_irc, to_xmpp) = irc::latency(gateway, clients, observer).await;
                for (way, p) in [("XMPP→IRC", to_irc), ("IRC→XMPP", to_xmpp)] {
                    println!(
                        "latency {way} {:9}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, lost {}",
                        gateway.kind.name(),
                        p.p50,
                        p.p99,
                        p.max,
                        p.lost
                    );
                }
                irc::leave_all(clients, |n| gateway.room(n)).await;
                results.latency = Some((to_irc, to_xmpp));
                tokio::time::sleep(irc::PUPPET_LINGER).await;
            }
            if scenario("fanout") {
                let result = irc::fan_out(gateway, pids, clients).await;
                println!(
                    "fan-out {:9}: {:.0} msg/s to all, {:.0} deliveries/s, {}/{} delivered in {:.2} s, p50 {:.1} ms, p99 {:.1} ms; {}",
                    gateway.kind.name(),
                    result.per_second,
                    result.deliveries_per_second,
                    result.delivered,
                    result.expected,
                    result.seconds,
                    result.latency.p50,
                    result.latency.p99,
                    result.usage.describe(result.seconds)
                );
                results.fan_out = Some(result);
                tokio::time::sleep(irc::PUPPET_LINGER).await;
            }
        }
        sitting.end().await;
    }
}

/// Prosody's instructions per relayed message with each gateway, history off: a Prosody of
/// its own runs under callgrind, which counts the instructions of each throughput run.
/// Prosody's CPU time for the same run moves by half with the machine; this count does not.
async fn prosody_instructions(irc: &IrcServer, users: &[String], all: &mut [(Kind, Results)]) {
    let dir = tempfile::tempdir().unwrap();
    let out = format!(
        "--callgrind-out-file={}/callgrind.out.%p",
        dir.path().display()
    );
    // `prosody` is a script: its interpreter is a child of `env`.
    let wrap = ["valgrind", "--tool=callgrind", "--trace-children=yes", &out];
    let xmpp = XmppServer::start_wrapped(Flavor::Prosody, &COMPONENTS, &wrap);
    register(&xmpp);
    let pids = Pids {
        xmpp: xmpp.pid(),
        irc: irc.pid(),
        callgrind: true,
    };
    let mut sitting = Sitting::start(&xmpp, irc, users, all.iter().map(|(k, _)| *k), false).await;
    let runs = sitting
        .take_turns(pids, "off", INSTRUCTION_ROUNDS, INSTRUCTION_MESSAGES)
        .await;
    sitting.end().await;
    for ((_, results), runs) in all.iter_mut().zip(runs) {
        let all = irc::Throughput::median(runs);
        results.prosody_instructions = all
            .xmpp_instructions
            .map(|i| i as f64 / all.received.max(1) as f64);
    }
}

/// The bench's users, `user0@localhost` …, on `xmpp`.
fn register(xmpp: &XmppServer) {
    for n in 0..USERS {
        xmpp.register(&format!("user{n}"), "localhost", "password");
    }
}

fn main() {
    if bare::run_if_asked() {
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(bench());
}

async fn bench() {
    if Command::new("biboumi").arg("--help").output().is_err() {
        eprintln!("biboumi is not installed: run tests/setup.sh bench");
        std::process::exit(2);
    }
    raise_open_files_limit();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "causeway vs biboumi — {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let xmpp = XmppServer::start_with_components(Flavor::Prosody, &COMPONENTS);
    let irc = IrcServer::ngircd();
    let pids = Pids {
        xmpp: xmpp.pid(),
        irc: irc.pid(),
        callgrind: false,
    };
    let users: Vec<String> = (0..USERS).map(|n| format!("user{n}@localhost")).collect();
    register(&xmpp);
    let only = std::env::var("CAUSEWAY_BENCH_ONLY").ok();
    let kinds: Vec<Kind> = [Kind::Causeway, Kind::Biboumi, Kind::Bare]
        .into_iter()
        .filter(|k| only.as_deref().is_none_or(|o| o == k.name()))
        .collect();
    let mut all: Vec<(Kind, Results)> = kinds.iter().map(|&k| (k, Results::default())).collect();

    if ["throughput", "latency", "fanout"]
        .iter()
        .any(|s| scenario(s))
    {
        irc_scenarios(&xmpp, &irc, pids, &users, &mut all).await;
    }
    if scenario("instructions") {
        prosody_instructions(&irc, &users, &mut all).await;
    }
    if scenario("matrix") {
        if let Some((_, results)) = all.iter_mut().find(|(k, _)| *k == Kind::Causeway) {
            let (to_matrix, to_xmpp) = matrix::latency(&xmpp, irc.port).await;
            for (way, p) in [("XMPP→Matrix", to_matrix), ("Matrix→XMPP", to_xmpp)] {
                println!(
                    "latency {way} causeway: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, lost {}",
                    p.p50, p.p99, p.max, p.lost
                );
            }
            results.matrix = Some((to_matrix, to_xmpp));
        }
    }
    let personal = if scenario("personal") {
        personal::scenario(&xmpp, irc.port).await
    } else {
        Vec::new()
    };
    if scenario("memory") {
        let max = env_number("CAUSEWAY_BENCH_PUPPETS").unwrap_or(10_000);
        for (kind, results) in all.iter_mut().filter(|(k, _)| *k != Kind::Bare) {
            // An ngircd of its own per gateway: ngircd spends over a minute of CPU on 10,000
            // connections closing at once, which would hold up the next gateway's puppets.
            let irc = IrcServer::ngircd();
            let gateway = match kind {
                Kind::Causeway => Gateway::causeway(&xmpp, irc.port, true, ""),
                Kind::Biboumi => {
                    Gateway::biboumi(&xmpp, irc.port, true, &memory::owners(max)).await
                }
                Kind::Bare | Kind::Matridge => {
                    unreachable!("only causeway and biboumi run the memory scenario")
                }
            };
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut load = memory::LoadComponent::connect(&xmpp).await;
            results.memory = memory::memory(&gateway, &mut load, max).await;
            gateway.stop();
            // Let Prosody route the puppets' last presences and ngircd see them go before
            // the next gateway comes.
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(load);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    table::print_table(&all);
    personal::print_table(&personal);
}
