//! IRC servers on loopback: ngircd (the default) and InspIRCd with its IRCv3 modules.

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

impl IrcKind {
    fn name(self) -> &'static str {
        match self {
            IrcKind::Ngircd => "ngircd",
            IrcKind::Inspircd => "inspircd",
        }
    }
}

/// A running (or, between restarts, stopped) IRC server.
#[derive(Debug)]
pub struct IrcServer {
    pub kind: IrcKind,
    pub port: u16,
    /// The TLS port, for a server started with [`IrcServer::ngircd_with_tls`].
    pub tls_port: Option<u16>,
    // Declared before the directory so that it stops before the directory is removed.
    process: Option<ServerProcess>,
    dir: tempfile::TempDir,
}

impl IrcServer {
    /// A server of `kind` with per-IP limits lifted (one connection per puppet, all from
    /// 127.0.0.1), configured from `tests/servers/`.
    pub fn start(kind: IrcKind) -> IrcServer {
        Self::configure(kind, false)
    }

    /// ngircd, the default.
    pub fn ngircd() -> IrcServer {
        Self::start(IrcKind::Ngircd)
    }

    /// ngircd with a second, TLS port using a self-signed certificate for 127.0.0.1.
    pub fn ngircd_with_tls() -> IrcServer {
        Self::configure(IrcKind::Ngircd, true)
    }

    fn configure(kind: IrcKind, tls: bool) -> IrcServer {
        let name = kind.name();
        let dir = tempfile::Builder::new()
            .prefix(&format!("causeway-{name}-"))
            .tempdir()
            .unwrap();
        let port = free_port();
        let tls_port = tls.then(free_port);
        let ssl = match tls_port {
            Some(tls_port) => {
                let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
                let status = Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "rsa:2048",
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        "/CN=127.0.0.1",
                    ])
                    .args(["-addext", "subjectAltName=IP:127.0.0.1"])
                    .arg("-keyout")
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success(), "openssl could not make a certificate");
                format!(
                    "[SSL]\nCertFile = {}\nKeyFile = {}\nPorts = {tls_port}\n",
                    cert.display(),
                    key.display()
                )
            }
            None => String::new(),
        };
        let vars = [
            ("DIR", dir.path().display().to_string()),
            ("PORT", port.to_string()),
            ("SSL", ssl),
        ];
        std::fs::write(
            dir.path().join(format!("{name}.conf")),
            render(&format!("{name}.conf.in"), &vars),
        )
        .unwrap();
        let mut server = IrcServer {
            kind,
            port,
            tls_port,
            process: None,
            dir,
        };
        server.resume();
        server
    }

    /// Start again on the same ports (after [`stop`](Self::stop)).
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
        let ports: Vec<u16> = std::iter::once(self.port).chain(self.tls_port).collect();
        process.wait_ports(&ports, Duration::from_secs(20));
        self.process = Some(process);
    }

    /// Freeze the server (SIGSTOP) or thaw it (SIGCONT): connections stay open, nothing
    /// answers meanwhile.
    pub fn freeze(&self, frozen: bool) {
        if let Some(process) = &self.process {
            process.signal(if frozen { "-STOP" } else { "-CONT" });
        }
    }

    /// Stop the server: every connection to it drops.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            // A frozen server would not hear SIGTERM.
            process.signal("-CONT");
            process.stop();
        }
    }
}
