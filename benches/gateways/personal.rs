//! Personal Matrix logins (issue 17), causeway against matridge (slidge's Matrix gateway,
//! matrix-nio), one after the other on the same Prosody and Synapse: each XMPP user logs in
//! to an account of their own by XEP-0077 registration on the gateway, as Gajim's
//! "Register" does, and joins one public room as a MUC. Measured: the gateway's RSS with 0,
//! 1 and 10 logged-in users idle, and with 10 while messages flow; and the latency
//! XMPP → Matrix and Matrix → XMPP of one user's messages, paced as in `matrix.rs`.
//!
//! Each gateway gets accounts and a room of its own (`cw0`…, `md0`…), made before it
//! starts, so both begin from the same state: ten accounts already in the room.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use xmpp_client::minidom::Element;
use xmpp_client::parsers::muc::user::Status;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::{IqResponse, Stanza};

use crate::gateway::{Gateway, Kind, MATRIDGE};
use crate::harness::matrix_client::MatrixClient;
use crate::harness::matrix_server::Synapse;
use crate::harness::muc::{join, muc_user, sender};
use crate::harness::xmpp_server::XmppServer;
use crate::harness::{data_form, TestClient};
use crate::matrix::paced;
use crate::Percentiles;

/// matridge 0.4.1 cannot join a room whose id has capitals: the XMPP server folds the
/// room JID's localpart to lower case, and slidge looks the room up by it ("No room named
/// !abc…", item-not-found). Synapse's ids are random mixed-case letters (room version 10)
/// or a hash (version 12), so the bench's Synapse makes its random strings lower case and
/// both gateways' rooms are version 10: ids such as `!qwertyuiopasdfghjk:hs.localhost`.
const LOWER_CASE_IDS: &str = "\
# causeway's bench (benches/gateways/personal.rs): random strings, room ids among them, in
# lower case, for matridge.
import synapse.util.stringutils as strings
_random_string = strings.random_string
strings.random_string = lambda length: _random_string(length).lower()
";

/// Logged-in users in the busiest measure.
pub const LOGINS: usize = 10;
/// The paced messages each way: 5 a second for 20 s. One account's sends go one after the
/// other (both gateways keep a room's order so), and Synapse takes some 60–180 ms a send
/// in a room of eleven members on this machine: a faster pace would measure that queue.
const PACE: (usize, usize) = (5, 20);
/// How long a gateway is left alone before its idle RSS is read: long enough for the
/// first syncs' work to be over and its memory to settle.
const SETTLE: Duration = Duration::from_secs(10);
/// How long a login (the registration, then the room as a MUC) may take.
const LOGIN_WITHIN: Duration = Duration::from_secs(90);
const REGISTER: &str = "jabber:iq:register";

/// What one gateway did.
#[derive(Debug, Clone, Copy)]
pub struct Personal {
    /// RSS in KiB with 0, 1 and `LOGINS` logged-in users, idle.
    pub idle_kib: [u64; 3],
    /// The most RSS seen with `LOGINS` users while the paced messages flowed.
    pub flowing_kib: u64,
    pub to_matrix: Percentiles,
    pub to_xmpp: Percentiles,
}

impl Personal {
    /// KiB each logged-in user adds, idle: (RSS with `LOGINS` − RSS with none) / `LOGINS`.
    pub fn kib_per_login(&self) -> f64 {
        (self.idle_kib[2] as f64 - self.idle_kib[0] as f64) / LOGINS as f64
    }
}

/// The scenario for `kind` (causeway or matridge) on `xmpp` and `synapse`.
pub async fn logins(xmpp: &XmppServer, synapse: &Synapse, irc_port: u16, kind: Kind) -> Personal {
    let tag = match kind {
        Kind::Causeway => "cw",
        Kind::Matridge => "md",
        other => unreachable!("{} has no personal Matrix logins", other.name()),
    };
    let bob = Arc::new(
        synapse
            .register(&format!("{tag}-bob"), "password", false)
            .await,
    );
    let alias = format!("{tag}-bench");
    let room = bob
        .create_room(json!({
            "room_alias_name": alias,
            "room_version": "10",
            "preset": "public_chat",
            "visibility": "public",
            "name": "personal bench",
        }))
        .await;
    let mut accounts = Vec::new();
    for n in 0..LOGINS {
        let account = synapse
            .register(&format!("{tag}{n}"), "password", false)
            .await;
        account.join(&room).await;
        accounts.push(account);
    }
    let store = tempfile::tempdir().unwrap();
    let (gateway, room_jid) = match kind {
        Kind::Causeway => {
            let matrix = format!(
                "[matrix]\ndomain = \"matrix.localhost\"\nsecret = \"{}\"\nstore_dir = \"{}\"\n",
                xmpp.secret,
                store.path().display()
            );
            let room_jid = format!("#{alias}%{}@matrix.localhost", synapse.server_name());
            (Gateway::causeway(xmpp, irc_port, true, &matrix), room_jid)
        }
        _ => {
            // slidge names a room by its id, XEP-0106-escaped.
            let room_jid = format!("{}@{MATRIDGE}", room.replace(':', "\\3a"));
            (Gateway::matridge(xmpp), room_jid)
        }
    };
    let mut clients = Vec::new();
    for n in 0..LOGINS {
        clients.push(TestClient::connect(xmpp, &format!("user{n}"), "localhost").await);
    }
    let service = kind.matrix_domain();
    until_answers(&mut clients[0], service).await;
    tokio::time::sleep(SETTLE).await;
    let none = gateway.rss_kib();
    let split = |what: &str| {
        let (anon, file, threads) = crate::gateway::rss_split_kib(gateway.pid());
        println!(
            "personal {}: {what}: {anon} KiB anonymous, {file} KiB from files, {threads} threads",
            kind.name()
        );
    };
    split("no login");

    let mut one = 0;
    for (n, (client, account)) in clients.iter_mut().zip(&accounts).enumerate() {
        let started = Instant::now();
        register(client, kind, account, &synapse.url()).await;
        if let Err(e) = enter_any(client, &room_jid, &format!("{tag}{n}")).await {
            panic!("{e}\n--- {} log ---\n{}", kind.name(), gateway.log_tail());
        }
        println!(
            "personal {}: user {n} logged in and in the room in {:.1} s",
            kind.name(),
            started.elapsed().as_secs_f64()
        );
        if n == 0 {
            tokio::time::sleep(SETTLE).await;
            one = gateway.rss_kib();
            split("1 login");
        }
    }
    tokio::time::sleep(SETTLE).await;
    let ten = gateway.rss_kib();
    split("10 logins");

    // The paced messages, with every user in the room: each comes to all ten through their
    // own logins. The RSS is read as they flow.
    let most = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (most, pid) = (most.clone(), gateway.pid());
        tokio::spawn(async move {
            loop {
                most.fetch_max(crate::gateway::rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    bob.catch_up().await;
    let (to_matrix, to_xmpp) = paced(&mut clients[0], &room_jid, &bob, &room, PACE).await;
    sampler.abort();
    let result = Personal {
        idle_kib: [none, one, ten],
        flowing_kib: most.load(Ordering::Relaxed),
        to_matrix,
        to_xmpp,
    };
    if to_matrix.lost + to_xmpp.lost > 0 {
        eprintln!("--- {} log ---\n{}", kind.name(), gateway.log_tail());
    }
    for client in clients {
        client.logout().await;
    }
    gateway.stop();
    result
}

/// Wait until the gateway's component answers disco#info (matridge takes seconds to start).
async fn until_answers(client: &mut TestClient, service: &str) {
    let deadline = Instant::now() + LOGIN_WITHIN;
    let info = || Element::builder("query", "http://jabber.org/protocol/disco#info").build();
    loop {
        let answer = client
            .try_get(service, info(), Duration::from_secs(2))
            .await;
        if let Some(IqResponse::Result(_)) = answer {
            return;
        }
        assert!(Instant::now() < deadline, "{service} never answered");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Log `client` in to `account` by XEP-0077 registration with `kind`'s form.
async fn register(client: &mut TestClient, kind: Kind, account: &MatrixClient, homeserver: &str) {
    let fields: Vec<(&str, &str)> = match kind {
        Kind::Causeway => vec![
            ("FORM_TYPE", REGISTER),
            ("account", account.user_id()),
            ("password", "password"),
            ("homeserver", homeserver),
        ],
        _ => vec![
            ("FORM_TYPE", REGISTER),
            ("homeserver", homeserver),
            ("username", account.user_id()),
            ("password", "password"),
            ("device", "bench"),
        ],
    };
    let query = Element::builder("query", REGISTER)
        .append(data_form("submit", &fields))
        .build();
    match client
        .try_set(kind.matrix_domain(), query, LOGIN_WITHIN)
        .await
    {
        Some(IqResponse::Result(_)) => {}
        other => panic!(
            "{} did not register {}: {other:?}",
            kind.name(),
            account.user_id()
        ),
    }
}

/// Join `room` as `nick` and wait for the self-presence, whatever nick the gateway gives
/// (slidge may use the account's own). A login's rooms may come a moment after its
/// registration answer: an error is tried again.
async fn enter_any(client: &mut TestClient, room: &str, nick: &str) -> Result<(), String> {
    let deadline = Instant::now() + LOGIN_WITHIN;
    // The server folds the room's localpart to lower case (slidge's rooms are ids).
    let prefix = format!("{room}/").to_lowercase();
    loop {
        client.send(join(&format!("{room}/{nick}"))).await;
        let joined = client
            .try_expect(Duration::from_secs(10), |s| match s {
                Stanza::Presence(p) if sender(s).to_lowercase().starts_with(&prefix) => {
                    match p.type_ {
                        PresenceType::Error => Some(Err(format!("{p:?}"))),
                        PresenceType::None => muc_user(p)
                            .filter(|u| u.status.contains(&Status::SelfPresence))
                            .map(|_| Ok(())),
                        _ => None,
                    }
                }
                _ => None,
            })
            .await;
        if let Ok(Ok(())) = joined {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{room} not joined: {joined:?}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sittings per gateway, taken in turns (causeway, matridge, matridge, causeway, …) so
/// that whatever drifts over the run falls on both alike; each on a Synapse of its own, so
/// that no gateway meets what another left there.
const SITTINGS: usize = 2;

/// The scenario for causeway and matridge (or the one `CAUSEWAY_BENCH_ONLY` names): every
/// sitting's figures, by gateway.
pub async fn scenario(xmpp: &XmppServer, irc_port: u16) -> Vec<(Kind, Vec<Personal>)> {
    let only = std::env::var("CAUSEWAY_BENCH_ONLY").ok();
    let mut kinds: Vec<Kind> = [Kind::Causeway, Kind::Matridge]
        .into_iter()
        .filter(|k| only.as_deref().is_none_or(|o| o == k.name()))
        .collect();
    if kinds.contains(&Kind::Matridge) && !Gateway::matridge_installed() {
        eprintln!("matridge is not installed (tests/setup.sh bench): causeway alone");
        kinds.retain(|k| *k != Kind::Matridge);
    }
    let mut all: Vec<(Kind, Vec<Personal>)> = kinds.iter().map(|k| (*k, Vec::new())).collect();
    for sitting in 0..SITTINGS {
        let mut order = all.iter().map(|(k, _)| *k).collect::<Vec<_>>();
        if sitting % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            let synapse = Synapse::start_patched("hs.localhost", None, "", LOWER_CASE_IDS).await;
            let result = logins(xmpp, &synapse, irc_port, kind).await;
            report(kind, sitting, &result);
            if let Some((_, runs)) = all.iter_mut().find(|(k, _)| *k == kind) {
                runs.push(result);
            }
        }
    }
    all
}

/// One sitting's figures, as a log line each.
fn report(kind: Kind, sitting: usize, result: &Personal) {
    let [none, one, ten] = result.idle_kib;
    println!(
        "personal {} sitting {sitting}: RSS {none} KiB with no login, {one} KiB with 1, {ten} KiB \
         with {LOGINS} ({:.0} KiB a login), {} KiB while messages flow",
        kind.name(),
        result.kib_per_login(),
        result.flowing_kib
    );
    for (way, p) in [
        ("XMPP→Matrix", result.to_matrix),
        ("Matrix→XMPP", result.to_xmpp),
    ] {
        println!(
            "personal {} sitting {sitting}: latency {way} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, lost {}",
            kind.name(),
            p.p50,
            p.p99,
            p.max,
            p.lost
        );
    }
}

/// The median of some figures (the mean of the middle two of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The table of the personal-login figures, causeway beside matridge: each the median of
/// the gateway's sittings.
pub fn print_table(all: &[(Kind, Vec<Personal>)]) {
    if all.is_empty() {
        return;
    }
    let of = |kind: Kind| {
        all.iter()
            .find(|(k, runs)| *k == kind && !runs.is_empty())
            .map(|(_, runs)| runs.as_slice())
    };
    let (c, m) = (of(Kind::Causeway), of(Kind::Matridge));
    println!(
        "\n| personal Matrix logins (median of {SITTINGS} sittings) | causeway | matridge | causeway/matridge |\n|---|---|---|---|"
    );
    let row = |name: &str, get: &dyn Fn(&Personal) -> f64, decimals: usize| {
        let median_of = |runs: &[Personal]| median(runs.iter().map(get).collect());
        let (cv, mv) = (c.map(median_of), m.map(median_of));
        println!(
            "| {name} | {} | {} | {} |",
            crate::table::figure(cv, decimals),
            crate::table::figure(mv, decimals),
            crate::table::ratio(cv.unwrap_or(f64::NAN), mv.unwrap_or(f64::NAN))
        );
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    row("RSS, no login (MiB)", &|p| mib(p.idle_kib[0]), 1);
    row("RSS, 1 login, idle (MiB)", &|p| mib(p.idle_kib[1]), 1);
    let ten = format!("RSS, {LOGINS} logins, idle (MiB)");
    row(&ten, &|p| mib(p.idle_kib[2]), 1);
    let flowing = format!("RSS, {LOGINS} logins, messages flowing (MiB)");
    row(&flowing, &|p| mib(p.flowing_kib), 1);
    let per_login = format!("RSS per login, idle: ({LOGINS} logins − none) / {LOGINS} (MiB)");
    row(&per_login, &|p| p.kib_per_login() / 1024.0, 1);
    row(
        "RSS of the first login: (1 login − none) (MiB)",
        &|p| mib(p.idle_kib[1].saturating_sub(p.idle_kib[0])),
        1,
    );
    type Pick = fn(&Percentiles) -> f64;
    let stats: [(&str, Pick); 3] = [("p50", |p| p.p50), ("p99", |p| p.p99), ("max", |p| p.max)];
    for (way, first) in [("XMPP→Matrix", true), ("Matrix→XMPP", false)] {
        for (what, pick) in stats {
            row(
                &format!("latency {way} {what} (ms)"),
                &|p| pick(if first { &p.to_matrix } else { &p.to_xmpp }),
                1,
            );
        }
    }
}
