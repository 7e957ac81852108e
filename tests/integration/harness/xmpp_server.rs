//! Prosody and ejabberd on loopback, each with the hosts `localhost` and `other.localhost`
//! and the components `irc.localhost` and `matrix.localhost` attached as the snippets in
//! `config/` say.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::{free_port, render, snippet, ServerProcess};

/// Which XMPP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Prosody,
    Ejabberd,
}

/// A running (or stopped, between restarts) XMPP server.
#[derive(Debug)]
pub struct XmppServer {
    pub flavor: Flavor,
    pub c2s_port: u16,
    pub component_port: u16,
    pub secret: String,
    dist_port: u16,
    extra_components: Vec<String>,
    /// A command that runs the server (Prosody only): a profiler's, for the benchmark.
    wrap: Vec<String>,
    /// The components are privileged entities (XEP-0356, Prosody's `mod_privilege`), and
    /// users have PEP (bookmarks).
    privileged: bool,
    dir: tempfile::TempDir,
    process: Option<ServerProcess>,
}

impl XmppServer {
    /// Configure and start a server of `flavor` on fresh ports.
    pub fn start(flavor: Flavor) -> XmppServer {
        Self::start_with_components(flavor, &[])
    }

    /// [`start`](Self::start) with more external components (Prosody only; the benchmark's
    /// biboumi), sharing the component port and secret.
    pub fn start_with_components(flavor: Flavor, extra: &[&str]) -> XmppServer {
        Self::start_wrapped(flavor, extra, &[])
    }

    /// [`start_with_components`](Self::start_with_components), Prosody run by `wrap` (a
    /// command and its arguments, `prosody …` appended; the benchmark's valgrind).
    pub fn start_wrapped(flavor: Flavor, extra: &[&str], wrap: &[&str]) -> XmppServer {
        Self::start_configured(flavor, extra, wrap, false)
    }

    /// Prosody whose users have PEP, and which grants the gateway's components XEP-0356
    /// privileges: roster sets, and pubsub sets as the user (bookmarks).
    pub fn start_privileged() -> XmppServer {
        Self::start_configured(Flavor::Prosody, &[], &[], true)
    }

    fn start_configured(
        flavor: Flavor,
        extra: &[&str],
        wrap: &[&str],
        privileged: bool,
    ) -> XmppServer {
        let dir = tempfile::Builder::new()
            .prefix(&format!("causeway-{flavor:?}-"))
            .tempdir()
            .unwrap();
        let mut server = XmppServer {
            flavor,
            c2s_port: free_port(),
            component_port: free_port(),
            secret: "component-secret".into(),
            dist_port: free_port(),
            extra_components: extra.iter().map(|c| c.to_string()).collect(),
            wrap: wrap.iter().map(|c| c.to_string()).collect(),
            privileged,
            dir,
            process: None,
        };
        server.configure();
        server.resume();
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn configure(&self) {
        let dir = self.dir.path().display().to_string();
        match self.flavor {
            Flavor::Prosody => {
                std::fs::create_dir_all(self.path("data")).unwrap();
                std::fs::create_dir_all(self.path("certs")).unwrap();
                let mut components = snippet("prosody.cfg.lua", self.component_port, &self.secret);
                let (mut modules, mut privileges) = (String::new(), String::new());
                if self.privileged {
                    let line = format!("component_secret = \"{}\"\n", self.secret);
                    components = components.replace(
                        &line,
                        &format!("{line}    modules_enabled = {{ \"privilege\" }}\n"),
                    );
                    modules = "\"pep\"; \"privilege\"".into();
                    let grant = "{ roster = \"set\"; \
                                 iq = { [\"http://jabber.org/protocol/pubsub\"] = \"set\" } }";
                    privileges = format!(
                        "privileged_entities = {{ [\"irc.localhost\"] = {grant}, \
                         [\"matrix.localhost\"] = {grant} }}"
                    );
                }
                let config = render(
                    "prosody.cfg.lua.in",
                    &[
                        ("DIR", dir),
                        ("C2S_PORT", self.c2s_port.to_string()),
                        ("MODULES", modules),
                        ("PRIVILEGES", privileges),
                        (
                            "COMPONENTS",
                            components
                                + self
                                    .extra_components
                                    .iter()
                                    .map(|c| {
                                        format!(
                                            "\nComponent \"{c}\"\n    component_secret = \"{}\"\n",
                                            self.secret
                                        )
                                    })
                                    .collect::<String>()
                                    .as_str(),
                        ),
                    ],
                );
                std::fs::write(self.path("prosody.cfg.lua"), config).unwrap();
            }
            Flavor::Ejabberd => {
                for sub in ["logs", "spool"] {
                    std::fs::create_dir_all(self.path(sub)).unwrap();
                }
                let config = render(
                    "ejabberd.yml.in",
                    &[
                        ("C2S_PORT", self.c2s_port.to_string()),
                        (
                            "COMPONENTS",
                            snippet("ejabberd.yml", self.component_port, &self.secret),
                        ),
                    ],
                );
                std::fs::write(self.path("ejabberd.yml"), config).unwrap();
                let ctl = render(
                    "ejabberdctl.cfg.in",
                    &[
                        ("DIST_PORT", self.dist_port.to_string()),
                        ("DIR", self.dir.path().display().to_string()),
                    ],
                );
                std::fs::write(self.path("ejabberdctl.cfg"), ctl).unwrap();
                std::fs::write(self.path("inetrc"), "").unwrap();
                // ejabberdctl run as root drops to the `ejabberd` user.
                let status = Command::new("chown")
                    .arg("-R")
                    .arg("ejabberd:")
                    .arg(self.dir.path())
                    .status()
                    .unwrap();
                assert!(status.success(), "chown for ejabberd failed");
            }
        }
    }

    fn ejabberdctl(&self) -> Command {
        let mut command = Command::new("ejabberdctl");
        command
            .arg("--config-dir")
            .arg(self.dir.path())
            .arg("--config")
            .arg(self.path("ejabberd.yml"))
            .arg("--ctl-config")
            .arg(self.path("ejabberdctl.cfg"))
            .arg("--logs")
            .arg(self.path("logs"))
            .arg("--spool")
            .arg(self.path("spool"));
        command
    }

    /// Start the server again on the same ports and data (after [`stop`](Self::stop)).
    pub fn resume(&mut self) {
        assert!(self.process.is_none(), "server already running");
        let (mut process, timeout) = match self.flavor {
            Flavor::Prosody => {
                let mut command = match self.wrap.split_first() {
                    Some((program, args)) => {
                        let mut command = Command::new(program);
                        command.args(args).arg("prosody");
                        command
                    }
                    None => Command::new("prosody"),
                };
                command
                    .arg("--config")
                    .arg(self.path("prosody.cfg.lua"))
                    .arg("-F");
                (
                    ServerProcess::spawn(
                        "prosody",
                        command,
                        self.dir.path(),
                        vec![self.path("prosody.log")],
                    ),
                    20,
                )
            }
            Flavor::Ejabberd => {
                let mut command = self.ejabberdctl();
                command.arg("foreground");
                let logs = vec![self.path("logs/ejabberd.log"), self.path("logs/error.log")];
                let mut process = ServerProcess::spawn("ejabberd", command, self.dir.path(), logs);
                // ejabberdctl runs the VM through `su`, outside our process group: stop it by
                // the PID it writes.
                process.pid_file = Some(self.path("ejabberd.pid"));
                (process, 60)
            }
        };
        process.wait_ports(
            &[self.c2s_port, self.component_port],
            Duration::from_secs(timeout),
        );
        self.process = Some(process);
    }

    /// Stop the server, keeping its configuration and data for [`resume`](Self::resume).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Create an account.
    pub fn register(&self, user: &str, host: &str, password: &str) {
        let output = match self.flavor {
            Flavor::Prosody => Command::new("prosodyctl")
                .arg("--config")
                .arg(self.path("prosody.cfg.lua"))
                .args(["register", user, host, password])
                .output(),
            Flavor::Ejabberd => self
                .ejabberdctl()
                .args(["register", user, host, password])
                .output(),
        }
        .unwrap();
        assert!(
            output.status.success(),
            "register {user}@{host} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The server process's id, while it runs.
    #[allow(dead_code)] // for the benchmark (benches/gateways)
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(|p| p.pid())
    }

    /// The server's logs, for failure messages.
    pub fn logs(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log_dump())
            .unwrap_or_default()
    }
}

impl Drop for XmppServer {
    fn drop(&mut self) {
        // Before the directory goes: ejabberd's PID file is in it.
        if let Some(process) = self.process.as_mut() {
            if std::thread::panicking() {
                eprintln!("{}", process.log_dump());
            }
            process.stop();
        }
    }
}
