//! The bounded queue of stanzas waiting for a component link.
//!
//! Everything the gateway sends goes through here, whether the link is up or not, so a
//! stanza produced while the link is down simply waits. Past the capacity the oldest stanza
//! is dropped: never silently, each drop is counted and logged.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio_xmpp::Stanza;

/// A bounded FIFO of outbound stanzas with a wake-up for the link that drains it.
#[derive(Debug)]
pub struct Outbox {
    domain: String,
    capacity: usize,
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Stanza>,
    /// Stanzas dropped since the link last reported them.
    dropped: u64,
}

impl Outbox {
    /// An empty outbox for `domain`'s link holding at most `capacity` stanzas.
    pub fn new(domain: impl Into<String>, capacity: usize) -> Outbox {
        Outbox {
            domain: domain.into(),
            capacity: capacity.max(1),
            state: Mutex::default(),
            ready: Notify::new(),
        }
    }

    /// Queue a stanza for sending; drops (and counts) the oldest one when full.
    pub fn push(&self, stanza: Stanza) {
        let dropped = {
            let mut state = self.lock();
            let dropped = if state.queue.len() >= self.capacity {
                state.queue.pop_front();
                state.dropped += 1;
                Some(state.dropped)
            } else {
                None
            };
            state.queue.push_back(stanza);
            dropped
        };
        // Log the first drop and then every power of two, so a long outage cannot flood the log.
        if let Some(n) = dropped.filter(|n| n.is_power_of_two()) {
            tracing::warn!(domain = %self.domain, dropped = n, capacity = self.capacity, "outbound queue full, oldest stanzas dropped");
        }
        self.ready.notify_one();
    }

    /// Everything queued, oldest first, leaving the queue empty.
    pub fn take_all(&self) -> Vec<Stanza> {
        self.lock().queue.drain(..).collect()
    }

    /// Put back stanzas that could not be written, ahead of anything queued since.
    pub fn requeue_front(&self, stanzas: Vec<Stanza>) {
        let mut state = self.lock();
        for stanza in stanzas.into_iter().rev() {
            if state.queue.len() >= self.capacity {
                state.queue.pop_back();
                state.dropped += 1;
            }
            state.queue.push_front(stanza);
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
    async fn a_push_before_the_wait_is_not_lost() {
        let outbox = Outbox::new("irc.example.org", 10);
        outbox.push(msg(1));
        tokio::time::timeout(std::time::Duration::from_secs(1), outbox.wait())
            .await
            .expect("woken");
    }
}
