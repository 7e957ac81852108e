//! Persistent channels (bouncer mode): whether a joined channel is persistent and recorded,
//! which channels the puppets are in, and joining the persistent ones again at startup.

use causeway_bridge::{Event, RoomRef};
use tokio_xmpp::jid::BareJid;
use tracing::{info, warn};

use super::muc::Effects;
use super::serve::Core;
use super::Gateway;
use crate::store::{Store, StoreError};

impl Core {
    /// Bookkeeping an event needs before the gateway core sees it: whether a joined channel
    /// is persistent and recorded, and which channels the puppet is in (for rejoining after
    /// a restart).
    pub(crate) async fn note_event(&self, gateway: &mut Gateway, event: &Event) {
        match event {
            Event::Joined {
                user, room, nick, ..
            } => {
                let (persistent, record) = channel_settings(
                    &self.store,
                    &user.0,
                    room,
                    self.persistent_default,
                    self.record_default,
                )
                .await;
                if let (Some(muc), Ok(jid)) = (gateway.muc_mut(), user.0.parse::<BareJid>()) {
                    muc.set_channel_settings(&jid, room, persistent, record);
                }
                if let Err(e) = self
                    .store
                    .mark_joined(&user.0, &room.server, &room.name, nick, true)
                    .await
                {
                    warn!(%user, %room, error = %e, "cannot note the joined channel");
                }
            }
            Event::Left { user, room, .. } => self.note_left(&user.0, room).await,
            _ => {}
        }
    }

    /// The puppets are in these channels no longer (the keeper did not keep them).
    pub(crate) async fn forget_channels(&self, channels: &[(BareJid, RoomRef)]) {
        for (user, room) in channels {
            self.note_left(user.as_str(), room).await;
        }
    }

    /// The puppet of `user` is in `room` no longer: not to be joined again at startup.
    async fn note_left(&self, user: &str, room: &RoomRef) {
        if let Err(e) = self.store.mark_left(user, &room.server, &room.name).await {
            warn!(%user, %room, error = %e, "cannot note the left channel");
        }
    }
}

/// Whether a user's channel is (persistent, recorded): the channel's own setting, else the
/// user's settings for its server, else the user's, else the configuration.
async fn channel_settings(
    store: &Store,
    user: &str,
    room: &RoomRef,
    persistent_default: bool,
    record_default: bool,
) -> (bool, bool) {
    let channel = store
        .channel_settings(user, &room.server, &room.name)
        .await
        .unwrap_or_default();
    let server = store
        .irc_server_settings(user, &room.server)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let user_wide = store
        .user_settings(user)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let persistent = channel
        .persistent
        .or(server.persistent)
        .or(user_wide.persistent)
        .unwrap_or(persistent_default);
    let record = channel
        .record
        .or(server.record_history)
        .or(user_wide.record_history)
        .unwrap_or(record_default);
    (persistent, record)
}

/// At startup: join again the persistent channels the puppets were in; forget the others
/// (their users learnt it from the 332 at shutdown, and self-pings tell their clients).
/// With `kept` (the IRC connections kept by the keeper across the restart) the others are
/// not joined but expected: the channels whose connection the keeper kept are reported
/// joined by the network and taken over — the puppet never left them — then left once the
/// grace is over unless a client came back; those it did not keep are forgotten then
/// ([`super::muc::Muc::release_unclaimed`]). Nothing shows on IRC for either.
pub(crate) async fn rejoin_persistent(
    gateway: &mut Gateway,
    store: &Store,
    default: bool,
    kept: bool,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    if gateway.muc_mut().is_none() {
        return Ok(effects);
    }
    for join in store.joined_channels().await? {
        let keep = match join.user.parse::<BareJid>() {
            Ok(user) if gateway.allows(&user.clone().into()) => {
                let room = RoomRef {
                    server: join.server.clone(),
                    name: join.channel.clone(),
                };
                let persistent = channel_settings(store, &join.user, &room, default, true)
                    .await
                    .0;
                (persistent || kept).then_some((user, room, persistent))
            }
            _ => None,
        };
        match keep {
            Some((user, room, false)) => {
                info!(user = %join.user, room = %room, "expecting the channel from the keeper");
                gateway
                    .muc_mut()
                    .expect("checked above")
                    .expect_kept(&user, &room);
            }
            Some((user, room, persistent)) => {
                info!(user = %join.user, room = %room, persistent, "rejoining channel");
                let more = gateway.muc_mut().expect("checked above").rejoin(
                    &user,
                    room,
                    join.nick.clone(),
                    persistent,
                );
                effects.requests.extend(more.requests);
            }
            None => {
                store
                    .mark_left(&join.user, &join.server, &join.channel)
                    .await?
            }
        }
    }
    Ok(effects)
}
