//! Connections to one IRC server are paced, all puppets together: at most
//! `reconnect_concurrency` register at once, and each opens at least
//! `reconnect_interval_ms` after the one before (plus up to half of that at random, so
//! that two gateways, or two restarts, do not fall into step). A connection with nothing
//! before it opens at once; after an outage that dropped a thousand puppets, they come back
//! one by one, as a network that bans storms of connections wants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::settings::ServerSettings;

/// The pace of one server's connections.
#[derive(Debug)]
struct Pace {
    /// Registrations in progress.
    slots: Arc<Semaphore>,
    /// How many slots there are (to notice a reload that changes them).
    concurrency: u32,
    /// When the next connection may open.
    next: Mutex<Instant>,
}

/// The pace of each server's connections, by server name (lower-cased).
#[derive(Debug, Default)]
pub(crate) struct Pacing {
    servers: Mutex<HashMap<String, Arc<Pace>>>,
}

/// A connection's turn: its registration slot, held until dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    _slot: OwnedSemaphorePermit,
}

impl Pacing {
    /// Wait for this connection's turn to open to `server`.
    pub(crate) async fn turn(&self, server: &str, settings: &ServerSettings) -> Turn {
        let pace = self.pace(server, settings);
        let slot = pace
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the slots are never closed");
        let interval = Duration::from_millis(settings.reconnect_interval_ms);
        let at = {
            let mut next = pace.next.lock().expect("pacing lock");
            let now = Instant::now();
            let at = (*next).max(now);
            let jitter = interval.mul_f64(fastrand::f64() * 0.5);
            *next = at + interval + jitter;
            at
        };
        tokio::time::sleep_until(at).await;
        Turn { _slot: slot }
    }

    fn pace(&self, server: &str, settings: &ServerSettings) -> Arc<Pace> {
        let concurrency = settings.reconnect_concurrency.max(1);
        let mut servers = self.servers.lock().expect("pacing lock");
        let pace = servers
            .entry(server.to_ascii_lowercase())
            .or_insert_with(|| Arc::new(Pace::new(concurrency, Instant::now())));
        if pace.concurrency != concurrency {
            // A reload changed it: turns taken keep their slot of the old pace.
            let next = *pace.next.lock().expect("pacing lock");
            *pace = Arc::new(Pace::new(concurrency, next));
        }
        pace.clone()
    }
}

impl Pace {
    fn new(concurrency: u32, next: Instant) -> Pace {
        Pace {
            slots: Arc::new(Semaphore::new(concurrency as usize)),
            concurrency,
            next: Mutex::new(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(interval_ms: u64, concurrency: u32) -> ServerSettings {
        ServerSettings {
            reconnect_interval_ms: interval_ms,
            reconnect_concurrency: concurrency,
            ..ServerSettings::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn turns_come_an_interval_apart_with_jitter() {
        let pacing = Pacing::default();
        let s = settings(1000, 100);
        let start = Instant::now();
        let mut opened = Vec::new();
        for _ in 0..10 {
            let _turn = pacing.turn("irc.example.net", &s).await;
            opened.push(start.elapsed());
        }
        assert_eq!(opened[0], Duration::ZERO, "the first opens at once");
        for pair in opened.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(1000) && gap <= Duration::from_millis(1500),
                "{gap:?}"
            );
        }
        // Another server has its own pace.
        let before = Instant::now();
        let _other = pacing.turn("irc.other.net", &s).await;
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn registrations_in_progress_are_bounded() {
        let pacing = Arc::new(Pacing::default());
        let s = settings(0, 2);
        let first = pacing.turn("irc.example.net", &s).await;
        let _second = pacing.turn("irc.example.net", &s).await;
        let third = {
            let (pacing, s) = (pacing.clone(), s.clone());
            tokio::spawn(async move { pacing.turn("IRC.example.net", &s).await })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !third.is_finished(),
            "two register at once, the third waits"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(1), third)
            .await
            .expect("a slot freed is taken")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn no_pacing_with_an_interval_of_zero() {
        let pacing = Pacing::default();
        let s = settings(0, 1);
        let start = Instant::now();
        for _ in 0..100 {
            drop(pacing.turn("irc.example.net", &s).await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
