//! The archiver: messages to archive go into a channel, and one task writes them in batches,
//! one transaction per batch — never an fsync per message.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::store::{ArchivedMessage, Store};

/// Messages taken into one transaction at most.
const BATCH: usize = 2000;

enum Command {
    Write(ArchivedMessage),
    Flush(oneshot::Sender<()>),
}

/// A handle to the archiver task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Archiver {
    tx: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Write(m) => write!(f, "Write({})", m.stanza_id),
            Command::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Archiver {
    /// Start the task; it ends once every handle is dropped and all is written.
    pub fn start(store: Store) -> (Archiver, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Archiver { tx }, tokio::spawn(run(store, rx)))
    }

    /// Queue a message for the archive.
    pub fn record(&self, message: ArchivedMessage) {
        if self.tx.send(Command::Write(message)).is_err() {
            error!("archiver is gone: a message was not archived");
        }
    }

    /// Wait until everything queued so far is written (before reading the archive).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Take what has queued up meanwhile: under load batches grow by themselves.
        while let Some(command) = next.take() {
            match command {
                Command::Write(message) => batch.push(message),
                Command::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&store, &mut batch).await;
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Write a batch, retrying a failing database a few times before giving up on the batch.
async fn write(store: &Store, batch: &mut Vec<ArchivedMessage>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 1..=5u32 {
        match store.archive(batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(e) if attempt < 5 => {
                warn!(error = %e, messages = batch.len(), attempt, "archive write failed, retrying");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            Err(e) => {
                error!(error = %e, messages = batch.len(), "archive write failed: these messages are not archived")
            }
        }
    }
    batch.clear();
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
