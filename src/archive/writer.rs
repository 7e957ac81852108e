//! The archiver's task: takes messages from the channel, writes them in batches, and holds
//! on to them — in memory, then in spill files — while the database takes no writes.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::spill::Spill;
use super::{Limits, BATCH};
use crate::store::{ArchivedMessage, Store, StoreError};

/// The first wait before writing again after a failure.
const FIRST_WAIT: Duration = Duration::from_millis(100);
/// The longest wait between two tries.
const LONGEST_WAIT: Duration = Duration::from_secs(5);
/// How often a database that keeps failing is reported again.
const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The database has been failing since `since`.
struct Failing {
    since: Instant,
    wait: Duration,
    /// When to try again.
    next_try: Instant,
    reported: Instant,
    /// Whether "cannot spill either" has been said in this failure.
    spill_failed: bool,
}

pub(super) struct Writer {
    store: Store,
    limits: Limits,
    rx: mpsc::Receiver<ArchivedMessage>,
    flushes: mpsc::UnboundedReceiver<oneshot::Sender<bool>>,
    /// Messages taken from the channel, neither archived nor spilled yet, oldest first.
    pending: Vec<ArchivedMessage>,
    /// How many messages have been taken from the channel in all.
    taken: u64,
    /// Flushes waiting for every message up to a count taken.
    waiting: Vec<(u64, oneshot::Sender<bool>)>,
    spill: Spill,
    /// Whether spill files wait to be archived.
    spilled: bool,
    failing: Option<Failing>,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        limits: Limits,
        rx: mpsc::Receiver<ArchivedMessage>,
        flushes: mpsc::UnboundedReceiver<oneshot::Sender<bool>>,
    ) -> Writer {
        Writer {
            store,
            spill: Spill::new(limits.spill_dir.clone()),
            limits,
            rx,
            flushes,
            pending: Vec::with_capacity(BATCH),
            taken: 0,
            waiting: Vec::new(),
            spilled: false,
            failing: None,
        }
    }

    pub(super) async fn run(mut self) {
        self.spilled = self.spill.any().await;
        while self.take().await {
            self.write().await;
            self.answer();
        }
        self.finish().await;
    }

    /// Wait for something to write (or for the next try while failing); `false` once every
    /// handle is gone.
    async fn take(&mut self) -> bool {
        loop {
            if self.failing.is_some() && self.pending.is_empty() && !self.spilled {
                // Nothing left to write (a replay found only unreadable files): nothing to
                // try again either, until the next message.
                self.failing = None;
            }
            if self.failing.is_none() && (!self.pending.is_empty() || self.spilled) {
                // Under load batches grow by themselves: take what has queued up meanwhile.
                while self.pending.len() < BATCH {
                    match self.rx.try_recv() {
                        Ok(message) => self.push(message),
                        Err(_) => break,
                    }
                }
                return true;
            }
            let room = self.pending.len() < self.limits.held;
            if !room && self.rx.is_closed() {
                return false;
            }
            let next_try = self.failing.as_ref().map(|f| f.next_try);
            tokio::select! {
                biased;
                Some(done) = self.flushes.recv() => self.add_flush(done),
                message = self.rx.recv(), if room => match message {
                    Some(message) => self.push(message),
                    None => return false,
                },
                _ = tokio::time::sleep_until(next_try.unwrap_or_else(Instant::now).into()), if next_try.is_some() => return true,
            }
        }
    }

    fn push(&mut self, message: ArchivedMessage) {
        self.pending.push(message);
        self.taken += 1;
    }

    /// A flush covers what was taken and what waits in the channel when it came.
    fn add_flush(&mut self, done: oneshot::Sender<bool>) {
        if self.failing.is_some() {
            let _ = done.send(false);
            return;
        }
        let upto = self.taken + self.rx.len() as u64;
        self.waiting.push((upto, done));
        self.answer();
    }

    /// Answer the flushes whose messages are all in the database, or all of them while it
    /// fails.
    fn answer(&mut self) {
        if self.failing.is_some() {
            for (_, done) in self.waiting.drain(..) {
                let _ = done.send(false);
            }
            return;
        }
        if self.spilled {
            return;
        }
        let written = self.taken - self.pending.len() as u64;
        let (ready, wait): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|(upto, _)| *upto <= written);
        self.waiting = wait;
        for (_, done) in ready {
            let _ = done.send(true);
        }
    }

    /// Archive what was spilled (older), then what is pending.
    async fn write(&mut self) {
        if self.spilled && !self.replay().await {
            self.spill_excess().await;
            return;
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            match store_rows(&self.store, &mut self.spill, &self.pending[..n]).await {
                Ok(()) => {
                    self.pending.drain(..n);
                    self.recovered();
                }
                Err(e) => {
                    self.failed(&e);
                    self.spill_excess().await;
                    return;
                }
            }
        }
    }

    /// Archive the spill files in order, deleting each once written; `false` when the
    /// database failed meanwhile.
    async fn replay(&mut self) -> bool {
        let files = match self.spill.waiting().await {
            Ok(files) => files,
            Err(e) => {
                error!(dir = %self.spill.dir().display(), error = %e,
                    "cannot read the archive's spill directory: its messages are not archived until it can be read and causeway restarted");
                self.spilled = false;
                return true;
            }
        };
        for path in files {
            let spilled = match Spill::read(&path).await {
                Ok(spilled) => spilled,
                Err(e) => {
                    let aside = Spill::set_aside(&path).await;
                    error!(file = %path.display(), error = %e, set_aside = ?aside.ok(),
                        "an archive spill file cannot be read: it is set aside, not archived");
                    continue;
                }
            };
            if let Err(e) = store_rows(&self.store, &mut self.spill, &spilled.messages).await {
                self.failed(&e);
                return false;
            }
            self.recovered();
            if let Err(e) = tokio::fs::remove_file(&spilled.path).await {
                // Archived twice at the next start is harmless: rows are written once.
                warn!(file = %spilled.path.display(), error = %e, "cannot delete an archived spill file");
            }
            info!(file = %spilled.path.display(), messages = spilled.messages.len(), "spilled messages archived");
        }
        self.spilled = false;
        true
    }

    fn failed(&mut self, e: &StoreError) {
        let now = Instant::now();
        match &mut self.failing {
            None => {
                warn!(error = %e, pending = self.pending.len(),
                    "archive writes fail: the messages are kept and archived once the database takes writes again");
                self.failing = Some(Failing {
                    since: now,
                    wait: FIRST_WAIT,
                    next_try: now + FIRST_WAIT,
                    reported: now,
                    spill_failed: false,
                });
            }
            Some(failing) => {
                failing.wait = (failing.wait * 2).min(LONGEST_WAIT);
                failing.next_try = now + failing.wait;
                if now.duration_since(failing.reported) >= REPORT_EVERY {
                    failing.reported = now;
                    warn!(error = %e, pending = self.pending.len(), spilled = self.spilled,
                        failing_for_s = failing.since.elapsed().as_secs(), "archive writes still fail");
                }
            }
        }
    }

    fn recovered(&mut self) {
        if let Some(failing) = self.failing.take() {
            info!(
                after_ms = failing.since.elapsed().as_millis() as u64,
                "archive writes work again"
            );
        }
    }

    /// While the database fails, messages past what memory holds go to a spill file; when
    /// that fails too, nothing more is taken (the channel fills, the gateway waits).
    async fn spill_excess(&mut self) {
        if self.pending.len() < self.limits.held {
            return;
        }
        match self.spill.write(&self.pending).await {
            Ok(path) => {
                warn!(file = %path.display(), messages = self.pending.len(),
                    "the database still takes no writes: messages spilled to disk, archived once it does");
                self.pending.clear();
                self.spilled = true;
            }
            Err(e) => {
                if let Some(failing) = self.failing.as_mut().filter(|f| !f.spill_failed) {
                    failing.spill_failed = true;
                    error!(dir = %self.spill.dir().display(), error = %e, pending = self.pending.len(),
                        "cannot spill the archive either: no more messages are taken until the database or the spill directory takes writes; the gateway slows down");
                }
            }
        }
    }

    /// Every handle is gone: write what is left, giving the database the grace, then spill
    /// the rest so that the next start archives it.
    async fn finish(mut self) {
        while let Ok(message) = self.rx.try_recv() {
            self.push(message);
        }
        let deadline = Instant::now() + self.limits.grace;
        while !self.pending.is_empty() || self.spilled {
            if let Some(failing) = &self.failing {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                tokio::time::sleep_until(failing.next_try.min(deadline).into()).await;
            }
            self.write().await;
            self.answer();
        }
        if !self.pending.is_empty() {
            match self.spill.write(&self.pending).await {
                Ok(path) => warn!(file = %path.display(), messages = self.pending.len(),
                    "the database took no writes before shutdown: messages spilled to disk, archived at the next start"),
                Err(e) => {
                    error!(dir = %self.spill.dir().display(), error = %e, messages = self.pending.len(),
                    "the database took no writes before shutdown and the spill failed: these messages are not archived")
                }
            }
        }
        for (_, done) in self.waiting.drain(..) {
            let _ = done.send(false);
        }
    }
}

/// Write rows in batches. Rows the database refuses for what they hold are found by halving
/// the batch, kept in a `rejected-` file, and the rest written; `Err` only for a failure
/// that may pass (the same rows are worth writing again).
async fn store_rows(
    store: &Store,
    spill: &mut Spill,
    rows: &[ArchivedMessage],
) -> Result<(), StoreError> {
    let mut parts: Vec<&[ArchivedMessage]> = rows.chunks(BATCH).rev().collect();
    while let Some(part) = parts.pop() {
        match store.archive(part).await {
            Ok(()) => {}
            Err(e) if e.rejects_data() && part.len() > 1 => {
                let (first, second) = part.split_at(part.len() / 2);
                parts.push(second);
                parts.push(first);
            }
            Err(e) if e.rejects_data() => match spill.reject(part).await {
                Ok(path) => {
                    error!(error = %e, stanza_id = %part[0].stanza_id, file = %path.display(),
                    "the database refuses this message: it is kept in the file, not archived")
                }
                Err(io) => error!(error = %e, stanza_id = %part[0].stanza_id, spill_error = %io,
                    "the database refuses this message and it cannot be kept either: it is not archived"),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
