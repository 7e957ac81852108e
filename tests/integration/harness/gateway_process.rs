//! causeway as a process of its own (the gateway, and the IRC connection keeper), for what
//! cannot be done to a gateway inside the test's process: SIGKILL, SIGTERM, SIGHUP.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use xmpp_client::parsers::ping::Ping;
use xmpp_client::IqResponse;

use super::{TestClient, ANSWER};

/// `causeway ARGS --config CONFIG`, its log (RUST_LOG=info) in `log`; killed on drop.
pub fn spawn(args: &[&str], config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Send `signal` (`-KILL`, `-TERM`, `-HUP`) to a child.
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap()
        .success());
}

/// Wait for a child to end after a signal, within `within`.
pub async fn ended(child: &mut Child, within: Duration) {
    tokio::time::timeout(within, child.wait())
        .await
        .expect("the process ends")
        .unwrap();
}

/// Start the keeper on the socket `[irc] keeper` of `config`; it listens when this returns.
pub async fn keeper(config: &Path, socket: &Path, log: &Path) -> Child {
    let child = spawn(&["keeper"], config, log);
    let up = Instant::now();
    while !socket.exists() {
        assert!(
            up.elapsed() < ANSWER,
            "the keeper never listened\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Wait until the gateway `domain` answers `client`'s pings (its component is up).
pub async fn answering(client: &mut TestClient, domain: &str, log: &Path) {
    let up = Instant::now();
    while !matches!(
        client
            .try_get(domain, Ping, Duration::from_millis(500))
            .await,
        Some(IqResponse::Result(_))
    ) {
        assert!(
            up.elapsed() < ANSWER * 2,
            "the gateway never answered\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}
