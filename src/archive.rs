//! The archiver: messages to archive go into a bounded channel, and one task writes them in
//! batches, one transaction per batch — never an fsync per message.
//!
//! Nothing handed to it is dropped. While the database takes no writes (locked, read-only,
//! full, unreachable) the task keeps the messages and tries again with growing waits; past
//! [`Limits::held`] it spills them to files in the spill directory, archived in order once
//! the database is back (or at the next start). When even the spill cannot be written, the
//! task takes no more, the channel fills and [`Archiver::record`] waits: the gateway slows
//! down rather than forget. See `writer.rs` for the task, `spill.rs` for the files.

mod spill;
#[cfg(test)]
mod tests;
mod writer;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::store::{ArchivedMessage, Store};

/// Messages taken into one transaction at most.
const BATCH: usize = 2000;

/// How much the archiver holds, and where it spills.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Messages waiting in the channel before [`Archiver::record`] waits.
    pub queue: usize,
    /// Messages held in memory while the database fails, before they are spilled.
    pub held: usize,
    /// How long the database gets at shutdown before what is left is spilled.
    pub grace: Duration,
    /// The spill directory (`[history] spill_dir`).
    pub spill_dir: PathBuf,
}

impl Limits {
    /// The limits a gateway runs with.
    pub fn new(spill_dir: PathBuf) -> Limits {
        Limits {
            queue: 20_000,
            held: 20_000,
            grace: Duration::from_secs(10),
            spill_dir,
        }
    }
}

/// A handle to the archiver task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Archiver {
    tx: mpsc::Sender<ArchivedMessage>,
    flushes: mpsc::UnboundedSender<oneshot::Sender<bool>>,
}

impl Archiver {
    /// Start the task: it first archives what an earlier run spilled, and ends once every
    /// handle is dropped and all is written (or, after the grace, spilled).
    pub fn start(store: Store, limits: Limits) -> (Archiver, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        let (flushes, flush_rx) = mpsc::unbounded_channel();
        let task = writer::Writer::new(store, limits, rx, flush_rx);
        (Archiver { tx, flushes }, tokio::spawn(task.run()))
    }

    /// Queue a message for the archive; waits while the archiver is full.
    pub async fn record(&self, message: ArchivedMessage) {
        if self.tx.send(message).await.is_err() {
            error!("archiver is gone: a message was not archived");
        }
    }

    /// Wait until everything recorded so far is in the database (before reading the
    /// archive): `true` once it is, `false` as soon as the database fails a write (the
    /// reader then reads what is there rather than wait for it to come back).
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.flushes.send(done).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

/// Apply the archive retention limits now and then every hour, until shutdown.
pub async fn prune_archive(
    store: Store,
    history: crate::config::HistoryConfig,
    shutdown: CancellationToken,
) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hourly.tick() => {}
        }
        let days = history.retention_days;
        let before = (days > 0).then(|| {
            crate::gateway::mam::now_ms()
                - i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX)
        });
        let keep = (history.retention_rows > 0)
            .then(|| i64::try_from(history.retention_rows).unwrap_or(i64::MAX));
        match store.prune_archive(before, keep).await {
            Ok(0) => {}
            Ok(removed) => info!(removed, "archive retention applied"),
            Err(e) => warn!(error = %e, "archive retention failed"),
        }
    }
}
