//! The gateway processes under test: causeway's release binary, Debian's biboumi and
//! matridge (from PyPI), each attached to the run's Prosody as a component, and what /proc
//! says of them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bare::{self, BARE};
use crate::harness::xmpp_server::XmppServer;

/// biboumi's component domain: as long as causeway's `irc.localhost` (and the bare
/// relay's), since Prosody's work per message grows with the length of the addresses.
pub const BIBOUMI: &str = "bib.localhost";
/// matridge's component domain: as long as causeway's `matrix.localhost`.
pub const MATRIDGE: &str = "matrid.localhost";
/// The domain of the load generator's own component (idle puppets, see `memory.rs`).
pub const LOAD: &str = "load.localhost";

/// Which gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Causeway,
    Biboumi,
    /// The bare relay (`bare.rs`): the throughput scenario's ceiling.
    Bare,
    /// slidge's Matrix gateway: the personal-login scenario's peer (`personal.rs`).
    Matridge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Causeway => "causeway",
            Kind::Biboumi => "biboumi",
            Kind::Bare => "bare",
            Kind::Matridge => "matridge",
        }
    }

    /// The domain of the gateway's Matrix service.
    pub fn matrix_domain(self) -> &'static str {
        match self {
            Kind::Matridge => MATRIDGE,
            _ => "matrix.localhost",
        }
    }

    pub fn domain(self) -> &'static str {
        match self {
            Kind::Causeway => "irc.localhost",
            Kind::Biboumi => BIBOUMI,
            Kind::Bare => BARE,
            Kind::Matridge => MATRIDGE,
        }
    }

    /// The JID of a channel on the run's IRC server.
    pub fn room(self, channel: &str) -> String {
        format!("#{channel}%127.0.0.1@{}", self.domain())
    }
}

/// A gateway process attached to the Prosody of the run; killed on drop.
pub struct Gateway {
    pub kind: Kind,
    child: Child,
    dir: tempfile::TempDir,
}

impl Gateway {
    /// causeway's release build, history recording `record`, `extra` appended to its
    /// configuration (the `[matrix]` table).
    pub fn causeway(xmpp: &XmppServer, irc_port: u16, record: bool, extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "[xmpp]\nhost = \"127.0.0.1\"\nport = {}\n[database]\nurl = \"sqlite://{}\"\n\
             [access]\nallow = [\"localhost\", \"{LOAD}\"]\nmessages_per_minute = 0\n[history]\nrecord = {record}\n\
             spill_dir = \"{}\"\n[irc]\ndomain = \"irc.localhost\"\nsecret = \"{}\"\n\
             [irc.servers.\"127.0.0.1\"]\nport = {irc_port}\ntls = false\nflood_control = false\n\
             reconnect_interval_ms = 0\n\
             {extra}",
            xmpp.component_port,
            dir.path().join("causeway.db").display(),
            dir.path().join("archive-spill").display(),
            xmpp.secret,
        );
        let file = dir.path().join("causeway.toml");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("causeway.log")).unwrap();
        // `CAUSEWAY_BENCH_WRAP="perf record -g --"`, say, runs causeway under a profiler.
        let wrap = std::env::var("CAUSEWAY_BENCH_WRAP").unwrap_or_default();
        let mut command = wrap.split_whitespace();
        let mut command = match command.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(command).arg(env!("CARGO_BIN_EXE_causeway"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_causeway")),
        };
        let child = command
            .arg("--config")
            .arg(&file)
            // `CAUSEWAY_BENCH_LOG` (default `warn`): the log level it runs at.
            .env(
                "RUST_LOG",
                std::env::var("CAUSEWAY_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("causeway starts");
        Gateway {
            kind: Kind::Causeway,
            child,
            dir,
        }
    }

    /// `causeway generate-registration` for a configuration with `extra` (the `[matrix]`
    /// table), as an admin would run it.
    pub fn causeway_registration(xmpp: &XmppServer, extra: &str) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("causeway.toml");
        std::fs::write(
            &file,
            format!(
                "[xmpp]\nhost = \"127.0.0.1\"\nport = {}\n[access]\nallow = [\"localhost\"]\n{extra}",
                xmpp.component_port
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["generate-registration", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "generate-registration: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// biboumi from Debian's package. Its database gets, for every user in `owners`, server
    /// options (throttle off, the test server's plain port, no TLS-first ports) and, without
    /// `record`, history recording off.
    pub async fn biboumi(
        xmpp: &XmppServer,
        irc_port: u16,
        record: bool,
        owners: &[String],
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("biboumi.sqlite");
        let config = format!(
            "hostname={BIBOUMI}\npassword={}\nxmpp_server_ip=127.0.0.1\nport={}\n\
             db_name={}\nlog_level=3\nrealname_customization=true\n",
            xmpp.secret,
            xmpp.component_port,
            db.display()
        );
        let file = dir.path().join("biboumi.cfg");
        std::fs::write(&file, config).unwrap();
        let log = std::fs::File::create(dir.path().join("biboumi.log")).unwrap();
        let child = Command::new("biboumi")
            .arg(&file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("biboumi starts (tests/setup.sh bench installs it)");
        // biboumi creates its tables at start; options are read when a user connects.
        let url = format!("sqlite://{}", db.display());
        let pool = loop {
            if let Ok(pool) = sqlx::SqlitePool::connect(&url).await {
                let ready = sqlx::query("SELECT 1 FROM globaloptions_ LIMIT 1")
                    .fetch_optional(&pool)
                    .await
                    .is_ok();
                if ready {
                    break pool;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut tx = pool.begin().await.unwrap();
        for owner in owners {
            sqlx::query(
                "INSERT INTO ircserveroptions_ (owner_, server_, pass_, tlsports_, ports_, username_, \
                 realname_, verifycert_, trustedfingerprint_, encodingout_, encodingin_, \
                 maxhistorylength_, address_, nick_, saslpassword_, throttlelimit_) \
                 VALUES ($1, '127.0.0.1', '', '', $2, '', '', 0, '', '', '', 20, '', '', '', -1)",
            )
            .bind(owner)
            .bind(irc_port.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO globaloptions_ (owner_, maxhistorylength_, recordhistory_, persistent_) \
                 VALUES ($1, 20, $2, 0)",
            )
            .bind(owner)
            .bind(i64::from(record))
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        pool.close().await;
        Gateway {
            kind: Kind::Biboumi,
            child,
            dir,
        }
    }

    /// Whether matridge's venv is there.
    pub fn matridge_installed() -> bool {
        std::path::Path::new(&matridge_venv())
            .join("bin/matridge")
            .exists()
    }

    /// matridge 0.4 from its venv (`tests/setup.sh bench`, `CAUSEWAY_MATRIDGE_VENV`), its
    /// state (slidge's SQLite database, matrix-nio's stores) in a directory of its own.
    pub fn matridge(xmpp: &XmppServer) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let venv = matridge_venv();
        let log = std::fs::File::create(dir.path().join("matridge.log")).unwrap();
        let child = Command::new(format!("{venv}/bin/matridge"))
            // Warnings only, as causeway runs in the bench (`CAUSEWAY_BENCH_LOG`).
            .arg("--quiet")
            .args([
                "--jid",
                MATRIDGE,
                "--secret",
                &xmpp.secret,
                "--server",
                "127.0.0.1",
            ])
            .arg("--port")
            .arg(xmpp.component_port.to_string())
            .arg("--home-dir")
            .arg(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("matridge starts (tests/setup.sh bench installs it)");
        Gateway {
            kind: Kind::Matridge,
            child,
            dir,
        }
    }

    /// The bare relay (`bare.rs`), in a process of its own.
    pub fn bare(xmpp: &XmppServer, irc_port: u16) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("bare.log")).unwrap();
        let child = bare::spawn(xmpp.component_port, &xmpp.secret, irc_port, log);
        Gateway {
            kind: Kind::Bare,
            child,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// The end of the gateway's log, for runs that went wrong.
    pub fn log_tail(&self) -> String {
        let name = match self.kind {
            Kind::Causeway => "causeway.log",
            Kind::Biboumi => "biboumi.log",
            Kind::Bare => "bare.log",
            Kind::Matridge => "matridge.log",
        };
        let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The room of bench channel `n`.
    pub fn room(&self, n: usize) -> String {
        self.kind.room(&format!("bench{n}"))
    }

    /// Stop politely (SIGTERM), then for good.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Where `tests/setup.sh bench` puts matridge: `CAUSEWAY_MATRIDGE_VENV`, by default
/// `~/.cache/causeway/matridge-venv`.
fn matridge_venv() -> String {
    std::env::var("CAUSEWAY_MATRIDGE_VENV").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/causeway/matridge-venv")
    })
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `CAUSEWAY_BENCH_KEEP=1`: keep the gateway's directory (log, database, stores).
        if std::env::var_os("CAUSEWAY_BENCH_KEEP").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("{} kept in {}", self.kind.name(), dir.keep().display());
        }
    }
}

/// CPU seconds of a process: the time its threads ran, from /proc/PID/task/*/schedstat
/// (nanoseconds). /proc/PID/stat counts user and system time in ticks of 10 ms, a tenth of
/// a gateway's CPU in a throughput run. A thread that ended takes its time with it (none of
/// the gateways' do during a run; tokio's idle blocking threads end after 10 s).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    nanos as f64 / 1e9
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_fields(pid, &["VmRSS:"])[0]
}

/// Of a process's resident memory, KiB in anonymous pages (its heap and stacks) and in
/// file pages (its binary and libraries' code and data, as far as they were touched); and
/// its threads.
pub fn rss_split_kib(pid: u32) -> (u64, u64, u64) {
    let [anon, file, shmem, threads] =
        status_fields(pid, &["RssAnon:", "RssFile:", "RssShmem:", "Threads:"]);
    (anon, file + shmem, threads)
}

/// The numbers of some lines of /proc/PID/status (0 for one it lacks), read at once.
fn status_fields<const N: usize>(pid: u32, names: &[&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    })
}

/// CPU seconds of every process in a run, for "what bounds this figure".
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub gateway: f64,
    pub load: f64,
    pub xmpp: f64,
    pub irc: f64,
}

impl Usage {
    /// CPU so far of the gateway, this process (the load generator), Prosody and the IRC
    /// server.
    pub fn now(gateway: u32, xmpp: Option<u32>, irc: Option<u32>) -> Usage {
        Usage {
            gateway: cpu_seconds(gateway),
            load: cpu_seconds(std::process::id()),
            xmpp: xmpp.map(cpu_seconds).unwrap_or(0.0),
            irc: irc.map(cpu_seconds).unwrap_or(0.0),
        }
    }

    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            gateway: self.gateway + other.gateway,
            load: self.load + other.load,
            xmpp: self.xmpp + other.xmpp,
            irc: self.irc + other.irc,
        }
    }

    pub fn since(self, before: Usage) -> Usage {
        Usage {
            gateway: self.gateway - before.gateway,
            load: self.load - before.load,
            xmpp: self.xmpp - before.xmpp,
            irc: self.irc - before.irc,
        }
    }

    /// "gateway 1.23 s, load generator …, Prosody …, IRC server … " for the log of a run.
    pub fn describe(&self, seconds: f64) -> String {
        let share = |cpu: f64| 100.0 * cpu / seconds.max(1e-9);
        format!(
            "CPU gateway {:.3} s ({:.0}%), load generator {:.2} s ({:.0}%), Prosody {:.2} s ({:.0}%), IRC server {:.2} s ({:.0}%)",
            self.gateway,
            share(self.gateway),
            self.load,
            share(self.load),
            self.xmpp,
            share(self.xmpp),
            self.irc,
            share(self.irc)
        )
    }
}
