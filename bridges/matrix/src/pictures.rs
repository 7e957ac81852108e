//! Avatars as pictures: a room's and its members', fetched from the homeserver as small
//! thumbnails (authenticated media) when a user joins a room or an avatar changes, a few
//! at a time on the side — never in the way of the messages — kept by `mxc://` address,
//! and reported to the XMPP users concerned ([`Rooms::fetched`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_bridge::{Event, Picture, RoomRef, UserRef};
use ruma::api::client::profile::set_profile_field;
use ruma::events::room::MediaSource;
use ruma::{OwnedMxcUri, OwnedRoomId};
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use crate::client::{Client, Retry};
use crate::puppets::Puppets;
use crate::rooms::Wanted;
use crate::SharedRooms;

/// The thumbnail's side, in pixels: what clients show an avatar at, and a size Synapse
/// makes by default.
const SIDE: u32 = 96;
/// The largest picture taken: a thumbnail is far smaller.
const MAX_BYTES: u64 = 256 * 1024;
/// Pictures kept; past it the oldest half goes.
const KEPT: usize = 4096;
/// Fetches at once.
const AT_ONCE: usize = 4;
/// How long one thumbnail may take: an avatar on a server that does not answer is given up.
const PATIENCE: Duration = Duration::from_secs(10);
/// The largest own picture compared with the puppet's avatar.
const MAX_OWN: u64 = 1024 * 1024;

/// The pictures fetched, by avatar address, each with its age (a count of insertions).
#[derive(Debug, Default)]
struct Kept {
    next: u64,
    by_avatar: HashMap<String, (u64, Option<Picture>)>,
}

/// The avatars' pictures of one way of reaching Matrix (the appservice, or one login).
#[derive(Debug)]
pub(crate) struct Pictures {
    client: Client,
    rooms: SharedRooms,
    emit: mpsc::Sender<Event>,
    /// Pictures by avatar address (none: not an image, or not fetched), with their age.
    kept: Mutex<Kept>,
    turns: Semaphore,
}

impl Pictures {
    pub(crate) fn new(client: Client, rooms: SharedRooms, emit: mpsc::Sender<Event>) -> Pictures {
        Pictures {
            client,
            rooms,
            emit,
            kept: Mutex::default(),
            turns: Semaphore::new(AT_ONCE),
        }
    }

    /// `user` has joined `room` (told already): the pictures known, to tell them now; the
    /// avatars not fetched yet are fetched on the side.
    pub(crate) fn joined(self: &Arc<Self>, user: &UserRef, room: &RoomRef) -> Vec<Event> {
        let rooms = self.rooms.lock().expect("rooms lock");
        let Some((room_id, _)) = rooms.joined(user, room) else {
            return vec![];
        };
        let now = rooms.pictures_for(&room_id, user);
        let wanted = rooms.unfetched(&room_id);
        drop(rooms);
        self.fetch(room_id, wanted);
        now
    }

    /// Fetch the pictures of `wanted` in `room` on the side, and tell them.
    pub(crate) fn fetch(self: &Arc<Self>, room: OwnedRoomId, wanted: Vec<Wanted>) {
        if wanted.is_empty() {
            return;
        }
        let pictures = self.clone();
        tokio::spawn(async move {
            for wanted in wanted {
                let picture = pictures.picture(&wanted.avatar).await;
                let events = pictures
                    .rooms
                    .lock()
                    .expect("rooms lock")
                    .fetched(&room, &wanted, picture);
                for event in events {
                    if pictures.emit.send(event).await.is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// The user's own picture is now `picture`: their puppet's avatar (a personal login's
    /// account is the user's own, and keeps its avatar). An avatar the puppet has already
    /// (the same image, after a restart) is left as it is: a new one would be told in every
    /// room the puppet is in.
    pub(crate) async fn set_own(
        &self,
        puppets: &Puppets,
        user: &UserRef,
        picture: Option<Picture>,
    ) {
        if self.client.is_personal() {
            return;
        }
        let name = user.0.split('@').next().unwrap_or_default();
        let puppet = match (&picture, puppets.is_registered(user)) {
            // No puppet, no avatar to take off.
            (None, false) => return,
            _ => match puppets.ensure(user, name).await {
                Ok(puppet) => puppet,
                Err(e) => {
                    warn!(%user, error = %e, "no puppet to show the user's picture on");
                    return;
                }
            },
        };
        let current = self.client.avatar_of(&puppet).await;
        match (&picture, current) {
            (None, None) => return,
            (Some(picture), Some(current)) => {
                let source = MediaSource::Plain(current);
                let same = self.client.download(&source, MAX_OWN).await.ok();
                if same.is_some_and(|data| Picture::new(data, "").sha1 == picture.sha1) {
                    return;
                }
            }
            _ => {}
        }
        let avatar = match picture {
            Some(picture) => {
                let uploaded = self
                    .client
                    .upload(
                        None,
                        picture.data.to_vec(),
                        &picture.mimetype,
                        "avatar",
                        &puppet,
                    )
                    .await;
                match uploaded {
                    Ok(MediaSource::Plain(uri)) => Some(uri),
                    Ok(MediaSource::Encrypted(_)) => return,
                    Err(e) => {
                        warn!(%user, error = %e, "the user's picture was not uploaded");
                        return;
                    }
                }
            }
            None => None,
        };
        // No avatar is an empty one, as the homeservers take it.
        let avatar = avatar.unwrap_or_else(|| OwnedMxcUri::from(""));
        let value = ruma::profile::ProfileFieldValue::AvatarUrl(avatar);
        let request = set_profile_field::v3::Request::new(puppet.clone(), value);
        if let Err(e) = self.client.call(request, Some(&puppet), Retry::Once).await {
            warn!(%user, error = %e, "the puppet's avatar was not set");
        }
    }

    /// The picture of the avatar at `avatar`, fetched once.
    async fn picture(&self, avatar: &str) -> Option<Picture> {
        if let Some((_, kept)) = self
            .kept
            .lock()
            .expect("pictures lock")
            .by_avatar
            .get(avatar)
        {
            return kept.clone();
        }
        let _turn = self.turns.acquire().await.ok()?;
        // Fetched meanwhile by another task.
        if let Some((_, kept)) = self
            .kept
            .lock()
            .expect("pictures lock")
            .by_avatar
            .get(avatar)
        {
            return kept.clone();
        }
        let picture = match OwnedMxcUri::from(avatar).validate() {
            Ok(()) => {
                let uri = OwnedMxcUri::from(avatar);
                let fetched = self.client.thumbnail(&uri, SIDE, MAX_BYTES);
                match tokio::time::timeout(PATIENCE, fetched).await {
                    Ok(Ok(data)) if data.len() as u64 <= MAX_BYTES => {
                        image_type(&data).map(|kind| Picture::new(data, kind))
                    }
                    Ok(Ok(_)) => None,
                    // Kept as none too: not asked again and again.
                    Ok(Err(e)) => {
                        debug!(avatar, error = %e, "no thumbnail of the avatar");
                        None
                    }
                    Err(_) => {
                        debug!(avatar, "no thumbnail of the avatar in time");
                        None
                    }
                }
            }
            Err(_) => None,
        };
        let mut kept = self.kept.lock().expect("pictures lock");
        if kept.by_avatar.len() >= KEPT {
            let mut ages: Vec<u64> = kept.by_avatar.values().map(|(age, _)| *age).collect();
            ages.sort_unstable();
            let median = ages[ages.len() / 2];
            kept.by_avatar.retain(|_, (age, _)| *age > median);
        }
        kept.next += 1;
        let age = kept.next;
        kept.by_avatar
            .insert(avatar.to_owned(), (age, picture.clone()));
        picture
    }
}

/// The type of an image clients show as an avatar, from its first bytes.
pub(crate) fn image_type(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && data.starts_with(b"RIFF") && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_known_by_their_first_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\nxx"), Some("image/png"));
        assert_eq!(image_type(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(image_type(b"GIF89a.."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg/>"), None);
    }
}
