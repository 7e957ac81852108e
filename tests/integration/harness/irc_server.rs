//! IRC servers on loopback. ngircd is the default; InspIRCd joins with the IRC bridge.

use std::process::Command;
use std::time::Duration;

use super::process::{free_port, render, ServerProcess};

/// Which IRC server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrcKind {
    /// ngircd: plain, no IRCv3 beyond multi-prefix.
    Ngircd,
    /// InspIRCd with its IRCv3 modules (echo-message, server-time, message-tags, …).
    Inspircd,
}

/// A running (or, between restarts, stopped) IRC server.
#[derive(Debug)]
pub struct IrcServer {
    pub kind: IrcKind,
    pub port: u16,
    // Declared first so that it stops before its directory is removed.
    process: Option<ServerProcess>,
    dir: tempfile::TempDir,
}

impl IrcServer {
    /// A server of `kind` with per-IP limits lifted (one connection per puppet, all from
    /// 127.0.0.1), configured from `tests/servers/`.
    pub fn start(kind: IrcKind) -> IrcServer {
        let name = match kind {
            IrcKind::Ngircd => "ngircd",
            IrcKind::Inspircd => "inspircd",
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("causeway-{name}-"))
            .tempdir()
            .unwrap();
        let port = free_port();
        let vars = [
            ("DIR", dir.path().display().to_string()),
            ("PORT", port.to_string()),
        ];
        let config = render(&format!("{name}.conf.in"), &vars);
        std::fs::write(dir.path().join(format!("{name}.conf")), config).unwrap();
        let mut server = IrcServer {
            kind,
            port,
            process: None,
            dir,
        };
        server.resume();
        server
    }

    /// ngircd, the default.
    pub fn ngircd() -> IrcServer {
        Self::start(IrcKind::Ngircd)
    }

    /// Start again on the same port (after [`stop`](Self::stop)).
    pub fn resume(&mut self) {
        assert!(self.process.is_none(), "already running");
        let dir = self.dir.path();
        let mut process = match self.kind {
            IrcKind::Ngircd => {
                let mut command = Command::new("ngircd");
                command.arg("-n").arg("-f").arg(dir.join("ngircd.conf"));
                ServerProcess::spawn("ngircd", command, dir, vec![])
            }
            IrcKind::Inspircd => {
                let mut command = Command::new("inspircd");
                command
                    .arg(format!("--config={}", dir.join("inspircd.conf").display()))
                    .arg("--nofork")
                    .arg("--runasroot");
                ServerProcess::spawn("inspircd", command, dir, vec![dir.join("inspircd.log")])
            }
        };
        process.wait_ports(&[self.port], Duration::from_secs(20));
        self.process = Some(process);
    }

    /// Stop the server: every connection to it drops.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }
}
