//! Real servers on loopback and an XMPP test client, for the end-to-end tests.

pub mod e2ee_client;
pub mod gateway_process;
pub mod irc_client;
pub mod irc_server;
pub mod lossy_proxy;
pub mod matrix_client;
pub mod matrix_server;
pub mod muc;
pub mod process;
pub mod scene;
pub mod xmpp_server;

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;
use xmpp_client::connect::DnsConfig;
use xmpp_client::jid::{BareJid, Jid};
use xmpp_client::minidom::Element;
use xmpp_client::parsers::presence::Presence;
use xmpp_client::xmlstream::Timeouts;
use xmpp_client::{Client, Event, IqRequest, IqResponse, Stanza};

pub use xmpp_server::{Flavor, XmppServer};

/// How long any single expected answer may take before the test fails.
pub const ANSWER: Duration = Duration::from_secs(10);

/// A causeway configuration (TOML) pointing at `server`, allowing the users of `localhost`,
/// with a SQLite database in `db_dir`.
pub fn config_toml(server: &XmppServer, secret: &str, db_dir: &std::path::Path) -> String {
    format!(
        r#"
[xmpp]
host = "127.0.0.1"
port = {port}
reconnect_initial_ms = 100
reconnect_max_ms = 2000
[database]
url = "sqlite://{db}"
[history]
spill_dir = "{spill}"
[access]
allow = ["localhost"]
admins = ["admin@localhost"]
# Tests send bursts; tests/integration/limits.rs sets a rate.
messages_per_minute = 0
[irc]
domain = "irc.localhost"
secret = "{secret}"
"#,
        port = server.component_port,
        db = db_dir.join("causeway.db").display(),
        spill = db_dir.join("archive-spill").display(),
    )
}

/// [`config_toml`] plus an IRC server on `127.0.0.1:irc_port`, plain TCP, no flood control;
/// `irc_keys` go into `[irc]`, `server_keys` into the server's table (overriding).
pub fn config_toml_with_irc(
    server: &XmppServer,
    db_dir: &std::path::Path,
    irc_port: u16,
    irc_keys: &str,
    server_keys: &str,
) -> String {
    let key_of = |line: &str| line.split('=').next().unwrap_or_default().trim().to_owned();
    let overridden: Vec<String> = server_keys.lines().map(key_of).collect();
    let mut table: String = [
        format!("port = {irc_port}"),
        "tls = false".into(),
        "flood_control = false".into(),
        // Tests open connections back to back; tests/integration/irc_pacing.rs paces them.
        "reconnect_interval_ms = 0".into(),
    ]
    .into_iter()
    .filter(|line| !overridden.contains(&key_of(line)))
    .map(|line| line + "\n")
    .collect();
    table.push_str(server_keys);
    config_toml(server, &server.secret, db_dir)
        + irc_keys
        + "\n[irc.servers.\"127.0.0.1\"]\n"
        + table.as_str()
        + "\n"
}

/// [`config_toml`], parsed.
pub fn gateway_config(
    server: &XmppServer,
    secret: &str,
    db_dir: &std::path::Path,
) -> causeway::config::Config {
    causeway::config::Config::from_toml_str(&config_toml(server, secret, db_dir))
        .expect("test config is valid")
}

/// The gateway running in this process, stopped on drop.
pub struct Gateway {
    pub shutdown: CancellationToken,
    pub links: Vec<causeway::component::Link>,
    task: Option<tokio::task::JoinHandle<()>>,
    _db: tempfile::TempDir,
}

impl Gateway {
    /// Start causeway against `server`, with the right secret.
    pub async fn start(server: &XmppServer) -> Gateway {
        let db = tempfile::tempdir().unwrap();
        let config = gateway_config(server, &server.secret, db.path());
        Self::start_with(server, config, db).await
    }

    /// Start causeway from a configuration file in `db` (so that it can be reloaded).
    pub async fn start_from_file(
        server: &XmppServer,
        db: tempfile::TempDir,
        file: &std::path::Path,
    ) -> Gateway {
        init_logging();
        let config = causeway::config::Config::load(file).unwrap_or_else(|e| panic!("{e}"));
        Self::start_with(server, config, db).await
    }

    /// Start causeway from configuration text, its database in `db`.
    pub async fn start_with_toml(
        server: &XmppServer,
        toml: &str,
        db: tempfile::TempDir,
    ) -> Gateway {
        init_logging();
        let config =
            causeway::config::Config::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        Self::start_with(server, config, db).await
    }

    /// Where this gateway's database is.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self._db.path().join("causeway.db").display())
    }

    async fn start_with(
        server: &XmppServer,
        config: causeway::config::Config,
        db: tempfile::TempDir,
    ) -> Gateway {
        let shutdown = CancellationToken::new();
        let running = causeway::start(config, shutdown.clone())
            .await
            .unwrap_or_else(|e| panic!("gateway failed to start: {e}\n{}", server.logs()));
        let links = running.links.clone();
        let task = tokio::spawn(running.finished());
        Gateway {
            shutdown,
            links,
            task: Some(task),
            _db: db,
        }
    }

    /// Shut down and wait for every task.
    pub async fn stop(self) {
        self.stop_keeping_database().await;
    }

    /// Shut down, handing back the database directory for a restart on the same data
    /// ([`start_with_toml`](Self::start_with_toml) on it).
    pub async fn stop_keeping_database(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(ANSWER, task)
                .await
                .expect("gateway stops promptly")
                .unwrap();
        }
        let empty = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self._db, empty)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Logs of the gateway and of tokio-xmpp in test output, filtered by `RUST_LOG`.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// An XML name, for building stanzas by hand.
pub fn nc(name: &str) -> xmpp_client::minidom::rxml::NcName {
    xmpp_client::minidom::rxml::NcName::try_from(name).unwrap()
}

/// A data form (XEP-0004) of `kind` (`submit`) with these fields, one value each.
pub fn data_form(kind: &str, fields: &[(&str, &str)]) -> Element {
    const DATA: &str = "jabber:x:data";
    let mut form = Element::builder("x", DATA).attr(nc("type"), kind);
    for (var, value) in fields {
        let value = Element::builder("value", DATA).append(*value).build();
        let field = Element::builder("field", DATA).attr(nc("var"), *var);
        form = form.append(field.append(value).build());
    }
    form.build()
}

/// Why [`TestClient::try_expect`] found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// The client's stream ended.
    Ended,
    /// Nothing wanted arrived in time.
    TimedOut,
}
/// A logged-in XMPP user.
pub struct TestClient {
    client: Client,
    /// Stanzas read while waiting for something else, for later [`TestClient::expect`]s.
    buffer: std::collections::VecDeque<Stanza>,
}

impl TestClient {
    /// Register `user@host` on `server` and log in, announcing availability.
    pub async fn login(server: &XmppServer, user: &str, host: &str) -> TestClient {
        server.register(user, host, "password");
        Self::connect(server, user, host).await
    }

    /// Log in to an existing account.
    pub async fn connect(server: &XmppServer, user: &str, host: &str) -> TestClient {
        init_logging();
        let jid: BareJid = format!("{user}@{host}").parse().unwrap();
        let mut client = Client::new_plaintext(
            jid.clone(),
            "password",
            DnsConfig::addr(&format!("127.0.0.1:{}", server.c2s_port)),
            Timeouts::tight(),
        );
        let online = tokio::time::timeout(ANSWER, async {
            loop {
                match client.next().await {
                    Some(Event::Online { .. }) => return,
                    Some(Event::Disconnected(e)) => panic!("login of {jid} failed: {e}"),
                    Some(_) => {}
                    None => panic!("client stream of {jid} ended"),
                }
            }
        });
        online
            .await
            .unwrap_or_else(|_| panic!("{jid} not online within {ANSWER:?}\n{}", server.logs()));
        client
            .send_stanza(Presence::available().into())
            .await
            .unwrap();
        TestClient {
            client,
            buffer: Default::default(),
        }
    }

    /// Send an iq get and return its response.
    pub async fn get(&mut self, to: &str, payload: impl Into<Element>) -> IqResponse {
        self.request(to, IqRequest::Get(payload.into()), ANSWER)
            .await
            .unwrap_or_else(|| panic!("no answer from {to} within {ANSWER:?}"))
    }

    /// Send an iq set and return its response.
    pub async fn set(&mut self, to: &str, payload: impl Into<Element>) -> IqResponse {
        self.request(to, IqRequest::Set(payload.into()), ANSWER)
            .await
            .unwrap_or_else(|| panic!("no answer from {to} within {ANSWER:?}"))
    }

    /// Like [`get`](Self::get) but gives up after `timeout`, for polling.
    pub async fn try_get(
        &mut self,
        to: &str,
        payload: impl Into<Element>,
        timeout: Duration,
    ) -> Option<IqResponse> {
        self.request(to, IqRequest::Get(payload.into()), timeout)
            .await
    }

    /// Like [`set`](Self::set) but waits up to `timeout` (a gateway's login, or a step that
    /// waits for another Matrix session, can take longer than [`ANSWER`]).
    pub async fn try_set(
        &mut self,
        to: &str,
        payload: impl Into<Element>,
        timeout: Duration,
    ) -> Option<IqResponse> {
        self.request(to, IqRequest::Set(payload.into()), timeout)
            .await
    }

    /// Send an iq get to the user's own account (no `to`: the server answers without a
    /// `from`) and return its response.
    pub async fn get_own(&mut self, payload: impl Into<Element>) -> IqResponse {
        self.request("", IqRequest::Get(payload.into()), ANSWER)
            .await
            .unwrap_or_else(|| panic!("no answer from the account within {ANSWER:?}"))
    }

    /// Send an iq set to the user's own account and return its response.
    pub async fn set_own(&mut self, payload: impl Into<Element>) -> IqResponse {
        self.request("", IqRequest::Set(payload.into()), ANSWER)
            .await
            .unwrap_or_else(|| panic!("no answer from the account within {ANSWER:?}"))
    }

    /// An iq to `to`, or to the user's own account when it is empty.
    async fn request(
        &mut self,
        to: &str,
        request: IqRequest,
        timeout: Duration,
    ) -> Option<IqResponse> {
        let to: Option<Jid> = (!to.is_empty()).then(|| to.parse().unwrap());
        let mut token = self.client.send_iq(to.clone(), request).await;
        let to = to.map(|t| t.to_string()).unwrap_or_default();
        // This client matches responses while its stream is read; keep what else arrives.
        let wait = async {
            loop {
                tokio::select! {
                    response = &mut token => return response.unwrap_or_else(|e| panic!("iq to {to} failed: {e}")),
                    event = self.client.next() => match event {
                        Some(Event::Stanza(stanza)) => self.buffer.push_back(stanza),
                        Some(_) => {}
                        None => panic!("client stream ended while waiting for {to}"),
                    },
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Send any stanza.
    pub async fn send(&mut self, stanza: impl Into<Stanza>) {
        self.client.send_stanza(stanza.into()).await.unwrap();
    }

    /// The next stanza that `pick` accepts, skipping others, within [`ANSWER`].
    pub async fn expect<T>(&mut self, what: &str, pick: impl FnMut(&Stanza) -> Option<T>) -> T {
        match self.try_expect(ANSWER, pick).await {
            Ok(found) => found,
            Err(Missed::Ended) => panic!("client stream ended while waiting for {what}"),
            Err(Missed::TimedOut) => panic!("no {what} within {ANSWER:?}"),
        }
    }

    /// The next stanza that `pick` accepts, skipping others, within `timeout`; buffered
    /// stanzas first.
    pub async fn try_expect<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Stanza) -> Option<T>,
    ) -> Result<T, Missed> {
        let buffered: Vec<Stanza> = self.buffer.drain(..).collect();
        let mut found = None;
        for stanza in buffered {
            match found {
                None => {
                    found = pick(&stanza);
                    if found.is_none() {
                        self.buffer.push_back(stanza);
                    }
                }
                Some(_) => self.buffer.push_back(stanza),
            }
        }
        if let Some(found) = found {
            return Ok(found);
        }
        let wait = async {
            loop {
                match self.client.next().await {
                    Some(Event::Stanza(stanza)) => {
                        if let Some(found) = pick(&stanza) {
                            return Ok(found);
                        }
                    }
                    Some(_) => {}
                    None => return Err(Missed::Ended),
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Err(Missed::TimedOut))
    }

    /// The first stanza matching `unwanted` within `quiet`, if any arrives.
    pub async fn quiet_for(
        &mut self,
        quiet: Duration,
        mut unwanted: impl FnMut(&Stanza) -> bool,
    ) -> Option<String> {
        if let Some(stanza) = self.buffer.iter().find(|s| unwanted(s)) {
            return Some(format!("{stanza:?}"));
        }
        let wait = async {
            loop {
                match self.client.next().await {
                    Some(Event::Stanza(stanza)) if unwanted(&stanza) => {
                        return format!("{stanza:?}")
                    }
                    Some(Event::Stanza(stanza)) => self.buffer.push_back(stanza),
                    Some(_) => {}
                    None => return "stream ended".to_owned(),
                }
            }
        };
        tokio::time::timeout(quiet, wait).await.ok()
    }

    /// Take the buffered stanzas that `wanted` accepts, in order.
    pub fn take_buffered(&mut self, mut wanted: impl FnMut(&Stanza) -> bool) -> Vec<Stanza> {
        let (taken, kept): (Vec<Stanza>, Vec<Stanza>) =
            self.buffer.drain(..).partition(|s| wanted(s));
        self.buffer = kept.into();
        taken
    }

    /// Hand what has arrived already to `each`, without waiting. A client sending a burst
    /// calls this between sends, as a real client reads its stream while it writes: left
    /// unread, what the server sends here backs up into its queues.
    #[allow(dead_code)] // for the benchmark (benches/gateways)
    pub fn read_arrived(&mut self, mut each: impl FnMut(Stanza)) {
        for stanza in self.buffer.drain(..) {
            each(stanza);
        }
        while let Some(Some(event)) = self.client.next().now_or_never() {
            if let Event::Stanza(stanza) = event {
                each(stanza);
            }
        }
    }

    /// Hand what arrives to `each` until `stop` is cancelled.
    #[allow(dead_code)] // for the benchmark (benches/gateways)
    pub async fn read_until(&mut self, stop: &CancellationToken, mut each: impl FnMut(Stanza)) {
        self.read_arrived(&mut each);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return self.read_arrived(each),
                event = self.client.next() => match event {
                    Some(Event::Stanza(stanza)) => each(stanza),
                    Some(_) => {}
                    None => return,
                },
            }
        }
    }

    /// Log out cleanly.
    pub async fn logout(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.client.send_end()).await;
    }
}
