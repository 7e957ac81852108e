//! Server processes started from a private directory, in their own process group, stopped
//! by PID (never by name), with their logs kept for failure reports.

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on, never handed out twice by this process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Whether something accepts connections on the loopback port.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A running server process group.
#[derive(Debug)]
pub struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    /// Files to show when a test fails.
    pub logs: Vec<PathBuf>,
    /// Where the real server writes its PID, when it runs outside our process group.
    pub pid_file: Option<PathBuf>,
}

impl ServerProcess {
    /// Start `command` in its own process group with output to `DIR/NAME.out`.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        dir: &Path,
        logs: Vec<PathBuf>,
    ) -> ServerProcess {
        use std::os::unix::process::CommandExt;
        let out = dir.join(format!("{name}.out"));
        let file = std::fs::File::create(&out).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e} (run tests/setup.sh)"));
        let mut logs = logs;
        logs.push(out);
        ServerProcess {
            name,
            child: Some(child),
            logs,
            pid_file: None,
        }
    }

    /// The process id of the server (its group leader).
    #[allow(dead_code)] // for the benchmark (benches/gateways)
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Wait until every port accepts connections; panics with the logs if the process dies
    /// or the ports stay closed.
    pub fn wait_ports(&mut self, ports: &[u16], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if ports.iter().all(|p| port_open(*p)) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{} exited with {status} before listening\n{}",
                    self.name,
                    self.log_dump()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not open ports {ports:?} within {timeout:?}\n{}",
                    self.name,
                    self.log_dump()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop the whole process group: SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // A server that runs outside our group (ejabberd under `su`) goes first, by its PID.
        let server_pid = self
            .pid_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok());
        if let Some(pid) = server_pid.as_deref().map(str::trim) {
            signal("-TERM", pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            signal("-KILL", pid);
        }
        let group = format!("-{}", child.id());
        signal("-TERM", &group);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Whatever the leader left behind in its group.
        signal("-KILL", &group);
        let _ = child.wait();
    }

    /// Send a signal to the whole process group.
    pub fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            signal(name, &format!("-{}", child.id()));
        }
    }

    /// The tail of every log, for failure messages.
    pub fn log_dump(&self) -> String {
        self.logs
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- {} ---\n{}\n", path.display(), tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("{}", self.log_dump());
        }
        self.stop();
    }
}

/// Send a signal to a PID, or to a process group given as `-PGID`.
fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Fill `@KEY@` placeholders of a template under `tests/servers/`.
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/servers")
        .join(template);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (key, value) in vars {
        text = text.replace(&format!("@{key}@"), value);
    }
    text
}

/// A snippet from `config/`, made to serve the test domains: what the README tells users
/// to paste is exactly what the tests run.
pub fn snippet(name: &str, component_port: u16, secret: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("example.org", "localhost")
        .replace("change-me", secret)
        .replace("5347", &component_port.to_string())
}
