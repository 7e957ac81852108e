//! What one user may take of the gateway: rooms and servers at once ([`RoomLimits`],
//! checked at each join by the MUC state), and messages a minute across every network
//! ([`SendRate`], shared by every domain's core). Past a limit the user gets an error that
//! says so; nobody else's traffic waits.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use causeway_bridge::NetworkKind;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio_xmpp::jid::BareJid;

use crate::config::Config;

/// Rooms and servers one user may be in at once on one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Rooms (channels), on every server together.
    pub rooms: usize,
    /// Servers the rooms are on.
    pub servers: usize,
}

impl RoomLimits {
    /// No limit (tests, and a domain without a network).
    pub const NONE: RoomLimits = RoomLimits {
        rooms: usize::MAX,
        servers: usize::MAX,
    };

    /// The limits the configuration sets for `network`.
    pub fn of(network: NetworkKind, config: &Config) -> RoomLimits {
        match network {
            NetworkKind::Irc => config.irc.as_ref().map_or(Self::NONE, |irc| RoomLimits {
                rooms: irc.max_channels_per_user,
                servers: irc.max_servers_per_user,
            }),
            NetworkKind::Matrix => config.matrix.as_ref().map_or(Self::NONE, |m| RoomLimits {
                rooms: m.max_rooms_per_user,
                servers: usize::MAX,
            }),
        }
    }
}

/// A limiter, with the rate (a minute, burst) it was made for; none without a limit.
type Limiter = (u32, u32, Option<Arc<DefaultKeyedRateLimiter<BareJid>>>);

/// Checks between which the limiter forgets users who have not sent for a while.
const FORGET_EVERY: u64 = 10_000;

/// Messages a minute per user, every domain together; cheap to clone (one limiter shared).
#[derive(Debug, Clone)]
pub struct SendRate {
    /// Replaced whole on a reload with another rate; with the rate it was made for.
    limiter: Arc<Mutex<Limiter>>,
    checks: Arc<AtomicU64>,
}

impl SendRate {
    /// `per_minute` messages a minute after a burst of `burst` (0 a minute: no limit).
    pub fn new(per_minute: u32, burst: u32) -> SendRate {
        let rate = SendRate {
            limiter: Arc::new(Mutex::new((0, 0, None))),
            checks: Arc::default(),
        };
        rate.set(per_minute, burst);
        rate
    }

    /// A new rate (a configuration reload): when it differs, every user starts again with
    /// a full burst.
    pub fn set(&self, per_minute: u32, burst: u32) {
        let mut current = self.limiter.lock().expect("send rate lock");
        if current.2.is_some() && (current.0, current.1) == (per_minute, burst) {
            return;
        }
        let limiter = NonZeroU32::new(per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Arc::new(RateLimiter::keyed(
                Quota::per_minute(per_minute).allow_burst(burst),
            ))
        });
        *current = (per_minute, burst, limiter);
    }

    /// Whether `user` may send one more message now (and it is counted).
    pub fn allows(&self, user: &BareJid) -> bool {
        let Some(limiter) = self.limiter.lock().expect("send rate lock").2.clone() else {
            return true;
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter.check_key(user).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_burst_waits_and_others_do_not() {
        let rate = SendRate::new(60, 5);
        let alice: BareJid = "alice@example.org".parse().unwrap();
        let bob: BareJid = "bob@example.org".parse().unwrap();
        let allowed = (0..20).filter(|_| rate.allows(&alice)).count();
        // One a second comes back: the test may take part of one.
        assert!((5..=6).contains(&allowed), "{allowed}");
        assert!(rate.allows(&bob), "bob has his own burst");

        // A reload with no limit lets alice through again.
        rate.set(0, 0);
        assert!((0..100).all(|_| rate.allows(&alice)));
    }
}
