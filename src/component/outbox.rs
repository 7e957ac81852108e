//! The bounded queue of stanzas waiting for a component link.
//!
//! Everything the gateway sends goes through here, whether the link is up or not, so a
//! stanza produced while the link is down simply waits. While the link is down, past the
//! capacity the oldest stanza is dropped: never silently, each drop is counted and logged.
//! While it is up nothing is dropped: the gateway core waits for [`Outbox::room`] before
//! taking more work, so a burst faster than the server reads slows the bridges down (down to
//! the remote servers' sockets) instead of losing stanzas.

use std::collections::VecDeque;
use std::sync::Mutex;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;
use tokio_xmpp::Stanza;

/// A bounded FIFO of outbound stanzas with a wake-up for the link that drains it.
#[derive(Debug)]
pub struct Outbox {
    domain: String,
    capacity: usize,
    state: Mutex<State>,
    ready: Notify,
    /// Whether the link is connected and draining.
    up: AtomicBool,
    /// Woken when the queue was drained or the link went down.
    drained: Notify,
    /// Woken when stanzas were written (or dropped).
    settled: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Stanza>,
    /// Stanzas dropped since the link last reported them.
    dropped: u64,
    /// Stanzas ever queued.
    pushed: u64,
    /// Stanzas ever written to the server, or dropped: the first `settled` stanzas queued
    /// are done with (the link writes in order).
    settled: u64,
}

impl Outbox {
    /// An empty outbox for `domain`'s link holding at most `capacity` stanzas.
    pub fn new(domain: impl Into<String>, capacity: usize) -> Outbox {
        Outbox {
            domain: domain.into(),
            capacity: capacity.max(1),
            state: Mutex::default(),
            ready: Notify::new(),
            up: AtomicBool::new(false),
            drained: Notify::new(),
            settled: Notify::new(),
        }
    }

    /// Queue a stanza for sending. While the link is down and the queue full, the oldest
    /// stanza is dropped (and counted); while it is up, the queue may pass its capacity by
    /// what the core produces between two waits for [`room`](Self::room).
    pub fn push(&self, stanza: Stanza) {
        let dropped = {
            let mut state = self.lock();
            let before = state.dropped;
            while !self.is_up() && state.queue.len() >= self.capacity {
                state.queue.pop_front();
                state.dropped += 1;
                state.settled += 1;
            }
            state.queue.push_back(stanza);
            state.pushed += 1;
            (state.dropped > before).then_some((before, state.dropped))
        };
        // Log the first drop and then each time the count passes a power of two, so a long
        // outage cannot flood the log.
        let passed_power = |(before, after): (u64, u64)| 1 << after.ilog2() > before;
        if dropped.is_some() {
            self.settled.notify_waiters();
        }
        if let Some((_, n)) = dropped.filter(|d| passed_power(*d)) {
            tracing::warn!(domain = %self.domain, dropped = n, capacity = self.capacity, "outbound queue full, oldest stanzas dropped");
        }
        self.ready.notify_one();
    }

    /// Everything queued, oldest first, into `batch` (empty), leaving the queue empty. The
    /// two swap buffers: no stanza is moved and, batch after batch, nothing allocated.
    pub fn take_all_into(&self, batch: &mut VecDeque<Stanza>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.lock().queue, batch);
        self.drained.notify_waiters();
    }

    #[cfg(test)]
    fn take_all(&self) -> Vec<Stanza> {
        let mut batch = VecDeque::new();
        self.take_all_into(&mut batch);
        batch.into()
    }

    /// Note whether the link is connected (it drains the queue) or not (the queue keeps at
    /// most its capacity, dropping the oldest).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Release);
        if !up {
            self.drained.notify_waiters();
        }
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Whether [`room`](Self::room) would return at once.
    pub fn has_room(&self) -> bool {
        !self.is_up() || self.len() < self.capacity
    }

    /// Wait while the link is up and the queue holds its capacity or more: the producer
    /// slows to the pace the server reads at. Returns at once while the link is down.
    pub async fn room(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_up() || self.len() < self.capacity {
                return;
            }
            drained.await;
        }
    }

    /// Put back stanzas that could not be written, ahead of anything queued since. None is
    /// dropped here, so the queue may pass its capacity by a batch: the next push while the
    /// link is down drops the oldest back to it. (Dropping the newest here instead would
    /// count them done while older ones still wait, and [`settled`](Self::settled) would
    /// answer too early.)
    pub fn requeue_front<I>(&self, stanzas: I)
    where
        I: IntoIterator<Item = Stanza>,
        I::IntoIter: DoubleEndedIterator,
    {
        let mut state = self.lock();
        for stanza in stanzas.into_iter().rev() {
            state.queue.push_front(stanza);
        }
    }

    /// The link wrote this many stanzas, the oldest taken (they are done with).
    pub fn written(&self, stanzas: usize) {
        self.lock().settled += stanzas as u64;
        self.settled.notify_waiters();
    }

    /// A mark for everything queued so far, for [`settled`](Self::settled).
    pub fn mark(&self) -> u64 {
        self.lock().pushed
    }

    /// Wait until every stanza queued before `mark` was written to the server (or dropped,
    /// past the capacity while the link was down). While the link is down this waits for
    /// it to come back.
    pub async fn settled(&self, mark: u64) {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.lock().settled >= mark {
                return;
            }
            settled.await;
        }
    }

    /// How many stanzas wait.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of stanzas dropped since the last call, resetting the count.
    pub fn take_dropped(&self) -> u64 {
        std::mem::take(&mut self.lock().dropped)
    }

    /// Wait until something may have been queued since the last wait.
    pub async fn wait(&self) {
        self.ready.notified().await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::parsers::message::Message;

    fn msg(n: usize) -> Stanza {
        let mut m = Message::chat(None);
        m.id = Some(tokio_xmpp::parsers::message::Id(n.to_string()));
        m.into()
    }

    /// A task waiting for everything queued before `mark` to settle.
    fn settling(outbox: &std::sync::Arc<Outbox>, mark: u64) -> tokio::task::JoinHandle<()> {
        let outbox = outbox.clone();
        tokio::spawn(async move { outbox.settled(mark).await })
    }

    fn ids(stanzas: &[Stanza]) -> Vec<String> {
        stanzas
            .iter()
            .map(|s| match s {
                Stanza::Message(m) => m.id.clone().unwrap().0,
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn keeps_order_and_drops_oldest_when_full_counting_each() {
        let outbox = Outbox::new("irc.example.org", 3);
        for n in 0..5 {
            outbox.push(msg(n));
        }
        assert_eq!(outbox.take_dropped(), 2);
        assert_eq!(outbox.take_dropped(), 0);
        assert_eq!(ids(&outbox.take_all()), ["2", "3", "4"]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn requeued_stanzas_go_first() {
        let outbox = Outbox::new("irc.example.org", 10);
        outbox.push(msg(1));
        outbox.push(msg(2));
        let batch = outbox.take_all();
        outbox.push(msg(3));
        outbox.requeue_front(batch);
        assert_eq!(ids(&outbox.take_all()), ["1", "2", "3"]);
    }

    #[tokio::test]
    async fn while_up_nothing_is_dropped_and_producers_wait_for_room() {
        let outbox = std::sync::Arc::new(Outbox::new("irc.example.org", 3));
        outbox.set_up(true);
        for n in 0..5 {
            outbox.push(msg(n));
        }
        assert_eq!(outbox.take_dropped(), 0);
        assert_eq!(outbox.len(), 5);
        // Full: a producer waits until the link drains the queue.
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no room while full");
        assert_eq!(ids(&outbox.take_all()), ["0", "1", "2", "3", "4"]);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("room once drained")
            .unwrap();
        // Down: no waiting, and the capacity holds again by dropping the oldest.
        for n in 5..10 {
            outbox.push(msg(n));
        }
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.room().await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        outbox.set_up(false);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("no waiting while down")
            .unwrap();
        outbox.push(msg(10));
        assert_eq!(outbox.take_dropped(), 3);
        assert_eq!(ids(&outbox.take_all()), ["8", "9", "10"]);
    }

    #[tokio::test]
    async fn a_mark_settles_once_what_came_before_it_is_written_or_dropped() {
        let outbox = std::sync::Arc::new(Outbox::new("irc.example.org", 3));
        let pause = || tokio::time::sleep(std::time::Duration::from_millis(50));
        outbox.set_up(true);
        outbox.push(msg(1));
        outbox.push(msg(2));
        let waiter = settling(&outbox, outbox.mark());
        outbox.push(msg(3));
        // Taken, but the write failed: back in the queue, not settled.
        let batch = outbox.take_all();
        outbox.requeue_front(batch);
        pause().await;
        assert!(!waiter.is_finished(), "settled before anything was written");
        // The first written: one before the mark is left.
        let mut batch: VecDeque<Stanza> = outbox.take_all().into();
        batch.pop_front();
        outbox.written(1);
        outbox.requeue_front(batch);
        pause().await;
        assert!(
            !waiter.is_finished(),
            "settled with one before the mark unwritten"
        );
        // The link down and the queue full: the oldest is dropped, which settles it too.
        outbox.set_up(false);
        outbox.push(msg(4));
        pause().await;
        assert!(!waiter.is_finished(), "settled with room left in the queue");
        outbox.push(msg(5));
        assert_eq!(outbox.take_dropped(), 1);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("settled once written or dropped")
            .unwrap();
        // A mark of what is still queued settles once that is written.
        let waiter = settling(&outbox, outbox.mark());
        pause().await;
        assert!(!waiter.is_finished());
        let n = outbox.take_all().len();
        outbox.written(n);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("settled")
            .unwrap();
    }

    #[tokio::test]
    async fn a_requeue_past_the_capacity_drops_nothing_and_settles_nothing() {
        let outbox = std::sync::Arc::new(Outbox::new("irc.example.org", 2));
        outbox.set_up(true);
        outbox.push(msg(1));
        outbox.push(msg(2));
        let mark = outbox.mark();
        let batch = outbox.take_all();
        // Queued while the write failed.
        outbox.push(msg(3));
        outbox.push(msg(4));
        outbox.requeue_front(batch);
        assert_eq!(outbox.take_dropped(), 0);
        let waiter = settling(&outbox, mark);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "settled with its stanzas unwritten");
        let written = outbox.take_all();
        assert_eq!(ids(&written), ["1", "2", "3", "4"]);
        outbox.written(written.len());
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter)
            .await
            .expect("settled once written")
            .unwrap();
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let outbox = Outbox::new("irc.example.org", 10);
        outbox.push(msg(1));
        tokio::time::timeout(std::time::Duration::from_secs(1), outbox.wait())
            .await
            .expect("woken");
    }
}
