//! Reloading the configuration file (SIGHUP, or an administrator's ad-hoc command): what can
//! change while running (access, admins, history and persistence defaults, IRC server
//! settings and identity defaults) is applied; what cannot (links, domains, secrets, the
//! database, the Matrix network's keys) is reported as needing a restart.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;

/// Re-reads the configuration file and hands the result to the running gateway.
#[derive(Debug, Clone)]
pub struct Reloader {
    current: Arc<Mutex<Config>>,
    tx: watch::Sender<Arc<Config>>,
}

impl Reloader {
    /// A reloader starting from `config`, and the receiver the gateway cores watch.
    pub fn new(config: Config) -> (Reloader, watch::Receiver<Arc<Config>>) {
        let (tx, rx) = watch::channel(Arc::new(config.clone()));
        (
            Reloader {
                current: Arc::new(Mutex::new(config)),
                tx,
            },
            rx,
        )
    }

    /// Read the file again and apply what can be applied. `Ok` says what happened, line by
    /// line; `Err` says why nothing was applied (no file, or a file with problems).
    pub fn reload(&self) -> Result<String, String> {
        let path = self
            .current
            .lock()
            .expect("config lock")
            .source
            .clone()
            .ok_or("this gateway was not started from a configuration file")?;
        let new = Config::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut notes = vec![format!("{} reloaded.", path.display())];
        {
            let old = self.current.lock().expect("config lock");
            let restart = |what: &str| format!("{what} changed: restart causeway to apply it.");
            if old.xmpp.host != new.xmpp.host || old.xmpp.port != new.xmpp.port {
                notes.push(restart("[xmpp] host or port"));
            }
            if old.database.url != new.database.url {
                notes.push(restart("[database] url"));
            }
            let links = |c: &Config| {
                c.component_domains()
                    .into_iter()
                    .map(|d| (d.domain, d.secret))
                    .collect::<Vec<_>>()
            };
            if links(&old) != links(&new) {
                notes.push(restart("a component domain or secret"));
            }
            // The Matrix network is built once: its appservice, personal logins and limits.
            let matrix = |c: &Config| {
                c.matrix.clone().map(|mut m| {
                    (m.domain, m.secret) = Default::default();
                    m
                })
            };
            if matrix(&old) != matrix(&new) {
                notes.push(restart("[matrix] (appservice or personal logins)"));
            }
        }
        *self.current.lock().expect("config lock") = new.clone();
        self.tx.send_replace(Arc::new(new));
        info!(file = %path.display(), "configuration reloaded");
        for note in &notes[1..] {
            warn!("{note}");
        }
        Ok(notes.join("\n"))
    }
}
