//! Synapse on loopback: plain HTTP, SQLite, no federation and no rate limits, configured from
//! `tests/servers/synapse.yaml.in`, run from the Python venv `tests/setup.sh` makes.
//!
//! Starting, stopping and restarting are async: the gateway under test runs on the test's own
//! runtime (one thread under `#[tokio::test]`), and must keep running while Synapse is away.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use super::matrix_client::MatrixClient;
use super::process::{free_port, render, ServerProcess};

/// How long Synapse may take to answer `/health` (≈ 1.5 s on a fresh database).
const STARTUP: Duration = Duration::from_secs(60);

/// A running (or, between [`stop`](Synapse::stop) and [`restart`](Synapse::restart), stopped)
/// Synapse homeserver.
#[derive(Debug)]
pub struct Synapse {
    server_name: String,
    port: u16,
    /// For the admin registration API; written into the configuration.
    shared_secret: String,
    python: PathBuf,
    http: reqwest::Client,
    // Declared before the directory so that it stops (on drop too) before the directory is
    // removed.
    process: Option<ServerProcess>,
    dir: tempfile::TempDir,
}

impl Synapse {
    /// Configure and start a homeserver for `server_name` on a fresh port, with the
    /// appservice registration file `appservice_registration` if given.
    pub async fn start(server_name: &str, appservice_registration: Option<&Path>) -> Synapse {
        Self::start_with(server_name, appservice_registration, "").await
    }

    /// [`start`](Self::start) with `extra` YAML appended to the configuration: a top-level key
    /// given there replaces the template's.
    pub async fn start_with(
        server_name: &str,
        appservice_registration: Option<&Path>,
        extra: &str,
    ) -> Synapse {
        Self::start_patched(server_name, appservice_registration, extra, "").await
    }

    /// [`start_with`](Self::start_with), running the Python `site` at every start-up of
    /// Synapse's interpreter (as its `sitecustomize`), to change its behaviour where no
    /// setting does (the benchmark's lower-case room ids).
    pub async fn start_patched(
        server_name: &str,
        appservice_registration: Option<&Path>,
        extra: &str,
        site: &str,
    ) -> Synapse {
        let python = venv().join("bin/python");
        assert!(
            python.exists(),
            "Synapse is not installed at {}: run tests/setup.sh",
            python.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("causeway-synapse-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let shared_secret = "causeway-registration-secret".to_owned();
        let appservice = appservice_registration
            .map(|path| serde_json::to_string(&path.display().to_string()).unwrap())
            .unwrap_or_default();
        let dir_text = dir.path().display().to_string();
        let vars = [
            ("SERVER_NAME", server_name.to_owned()),
            ("PORT", port.to_string()),
            ("DIR", dir_text.clone()),
            ("SHARED_SECRET", shared_secret.clone()),
            ("APPSERVICE", appservice),
            ("EXTRA", extra.to_owned()),
        ];
        let path = |name: &str| dir.path().join(name);
        std::fs::write(path("homeserver.yaml"), render("synapse.yaml.in", &vars)).unwrap();
        std::fs::write(
            path("log.yaml"),
            render("synapse.log.yaml.in", &[("DIR", dir_text)]),
        )
        .unwrap();
        // What `--generate-keys` would write, without its 1.3 s of Python start-up.
        std::fs::write(path("signing.key"), signing_key()).unwrap();
        if !site.is_empty() {
            std::fs::create_dir(path("site")).unwrap();
            std::fs::write(path("site/sitecustomize.py"), site).unwrap();
        }
        let mut synapse = Synapse {
            server_name: server_name.to_owned(),
            port,
            shared_secret,
            python,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            process: None,
            dir,
        };
        synapse.resume().await;
        synapse
    }

    /// The loopback port of the client API.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL of the client API, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server name: the part after `:` in user ids and aliases.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The tail of Synapse's logs, for failure messages.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_dump())
            .unwrap_or_default()
    }

    async fn resume(&mut self) {
        assert!(self.process.is_none(), "Synapse already running");
        let dir = self.dir.path();
        let mut command = Command::new(&self.python);
        command
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(dir.join("homeserver.yaml"))
            .current_dir(dir);
        if dir.join("site").exists() {
            command.env("PYTHONPATH", dir.join("site"));
        }
        let mut process =
            ServerProcess::spawn("synapse", command, dir, vec![dir.join("homeserver.log")]);
        let started = Instant::now();
        // The port opens once Synapse is set up; a process that dies first fails here, with
        // its logs (ServerProcess reports them when dropped while panicking).
        let port = self.port;
        let process = tokio::task::spawn_blocking(move || {
            process.wait_ports(&[port], STARTUP);
            process
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let health = format!("{}/health", self.url());
        loop {
            let answer = self
                .http
                .get(&health)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answer.is_ok_and(|a| a.status() == reqwest::StatusCode::OK) {
                break;
            }
            if started.elapsed() > STARTUP {
                panic!(
                    "Synapse did not answer {health} within {STARTUP:?}\n{}",
                    process.log_dump()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.process = Some(process);
    }

    /// Stop Synapse (SIGTERM, as an operator would), keeping its configuration and database
    /// for [`restart`](Self::restart).
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // A frozen server would not hear SIGTERM.
            process.signal("-CONT");
            tokio::task::spawn_blocking(move || process.stop())
                .await
                .unwrap();
        }
    }

    /// Start again on the same port, configuration and database (stopping first if running).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    /// Freeze Synapse (SIGSTOP) or thaw it (SIGCONT): connections stay open, nothing answers
    /// meanwhile.
    pub fn freeze(&self, frozen: bool) {
        if let Some(process) = &self.process {
            process.signal(if frozen { "-STOP" } else { "-CONT" });
        }
    }

    /// Create the user `@localpart:server_name` through the shared-secret admin API and
    /// return a client logged in as them.
    pub async fn register(&self, localpart: &str, password: &str, admin: bool) -> MatrixClient {
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce = self.request(self.http.get(&url)).await["nonce"]
            .as_str()
            .expect("nonce in the answer")
            .to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(self.shared_secret.as_bytes()).unwrap();
        let role = if admin { "admin" } else { "notadmin" };
        mac.update(
            [nonce.as_str(), localpart, password, role]
                .join("\0")
                .as_bytes(),
        );
        let mac: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = json!({
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac,
        });
        let answer = self.request(self.http.post(&url).json(&body)).await;
        MatrixClient::new(
            &self.url(),
            answer["access_token"].as_str().expect("access_token"),
            answer["user_id"].as_str().expect("user_id"),
        )
    }

    /// Log in as an existing user with their password: a new device and access token.
    pub async fn login(&self, localpart: &str, password: &str) -> MatrixClient {
        let url = format!("{}/_matrix/client/v3/login", self.url());
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
        });
        let answer = self.request(self.http.post(&url).json(&body)).await;
        MatrixClient::new(
            &self.url(),
            answer["access_token"].as_str().expect("access_token"),
            answer["user_id"].as_str().expect("user_id"),
        )
    }

    async fn request(&self, request: reqwest::RequestBuilder) -> Value {
        let request = request.build().unwrap();
        let what = format!("{} {}", request.method(), request.url().path());
        let answer = self
            .http
            .execute(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", self.logs()));
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "{what}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
    }
}

/// Where `tests/setup.sh` installs Synapse.
fn venv() -> PathBuf {
    match std::env::var_os("CAUSEWAY_SYNAPSE_VENV") {
        Some(path) => path.into(),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/causeway/synapse-venv")
        }
    }
}

/// A fresh ed25519 signing key file: a 32-byte seed, as Synapse writes it.
fn signing_key() -> String {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut seed))
        .unwrap();
    let seed = base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed);
    format!("ed25519 a_test {seed}\n")
}
