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
    // Declared before the directory so that they stop before the directory is removed.
    services: Option<ServerProcess>,
    process: Option<ServerProcess>,
    dir: tempfile::TempDir,
}

impl IrcServer {
    /// A server of `kind` with per-IP limits lifted (one connection per puppet, all from
    /// 127.0.0.1), configured from `tests/servers/`.
    pub fn start(kind: IrcKind) -> IrcServer {
        Self::configure(kind, false, "")
    }

    /// ngircd that wants a server password (PASS) from every client.
    pub fn ngircd_with_password(password: &str) -> IrcServer {
        Self::configure(IrcKind::Ngircd, false, &format!("Password = {password}"))
    }

    /// ngircd, the default.
    pub fn ngircd() -> IrcServer {
        Self::start(IrcKind::Ngircd)
    }

    /// ngircd with a second, TLS port using a self-signed certificate for 127.0.0.1.
    pub fn ngircd_with_tls() -> IrcServer {
        Self::configure(IrcKind::Ngircd, true, "")
    }

    fn configure(kind: IrcKind, tls: bool, global_extra: &str) -> IrcServer {
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
            ("EXTRA", String::new()),
            ("GLOBAL_EXTRA", global_extra.to_owned()),
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
            services: None,
            process: None,
            dir,
        };
        server.resume();
        server
    }

    /// InspIRCd linked to Atheme services (NickServ accounts, SASL PLAIN through SaslServ).
    pub fn inspircd_with_services() -> IrcServer {
        let dir = tempfile::Builder::new()
            .prefix("causeway-inspircd-services-")
            .tempdir()
            .unwrap();
        let (port, link_port) = (free_port(), free_port());
        let dir_text = dir.path().display().to_string();
        let extra = render(
            "inspircd-services.conf.in",
            &[("LINK_PORT", link_port.to_string())],
        );
        let vars = [
            ("DIR", dir_text.clone()),
            ("PORT", port.to_string()),
            ("EXTRA", extra),
        ];
        std::fs::write(
            dir.path().join("inspircd.conf"),
            render("inspircd.conf.in", &vars),
        )
        .unwrap();
        let atheme = render(
            "atheme.conf.in",
            &[("DIR", dir_text), ("LINK_PORT", link_port.to_string())],
        );
        std::fs::write(dir.path().join("atheme.conf"), atheme).unwrap();
        let mut server = IrcServer {
            kind: IrcKind::Inspircd,
            port,
            tls_port: None,
            services: None,
            process: None,
            dir,
        };
        server.resume();
        let dir = server.dir.path();
        let mut command = Command::new("atheme-services");
        command
            .arg("-n")
            .arg("-c")
            .arg(dir.join("atheme.conf"))
            .arg("-D")
            .arg(dir);
        command
            .arg("-l")
            .arg(dir.join("atheme.log"))
            .arg("-p")
            .arg(dir.join("atheme.pid"));
        let services = ServerProcess::spawn("atheme", command, dir, vec![dir.join("atheme.log")]);
        wait_for_line(
            &dir.join("atheme.log"),
            "finished synching with uplink",
            Duration::from_secs(20),
            &services,
        );
        server.services = Some(services);
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

    /// The server process's id, while it runs.
    #[allow(dead_code)] // for the benchmark (benches/gateways)
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.pid())
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
        if let Some(mut services) = self.services.take() {
            services.stop();
        }
        if let Some(mut process) = self.process.take() {
            // A frozen server would not hear SIGTERM.
            process.signal("-CONT");
            process.stop();
        }
    }
}

/// Wait until `needle` shows in the log at `path`.
fn wait_for_line(path: &std::path::Path, needle: &str, timeout: Duration, process: &ServerProcess) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|log| log.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no {needle:?} in {} within {timeout:?}\n{}",
        path.display(),
        process.log_dump()
    );
}
