//! Pictures (avatars) of occupants and rooms: the hash in their presences (XEP-0153), the
//! image in the vCard of their JIDs (XEP-0054), and a room's hash in its disco#info and in a
//! presence from the room itself (XEP-0486). The network brings the pictures, fetched on
//! its side when it has them ([`Event::MemberPicture`], [`Event::RoomPicture`]); a
//! member's comes with them through nick changes.
//!
//! [`Event::MemberPicture`]: causeway_bridge::Event::MemberPicture
//! [`Event::RoomPicture`]: causeway_bridge::Event::RoomPicture

use base64::Engine;
use causeway_bridge::{Picture, RoomRef};
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

use super::{fold, Effects, Muc, RoomState};
use crate::gateway::stanzas::{error, nc};

/// XEP-0054's namespace, which rooms advertise.
pub const VCARD: &str = "vcard-temp";
/// XEP-0153's presence payload.
const UPDATE: &str = "vcard-temp:x:update";

/// The XEP-0153 payload naming a picture's hash; empty: no picture.
pub(super) fn photo(picture: Option<&Picture>) -> Element {
    let mut photo = Element::builder("photo", UPDATE);
    if let Some(picture) = picture {
        photo = photo.append(picture.sha1.as_str());
    }
    Element::builder("x", UPDATE).append(photo.build()).build()
}

/// A vCard holding `picture` (none: an empty vCard), and `nick` when given.
fn vcard(picture: Option<&Picture>, nick: Option<&str>) -> Element {
    let mut card = Element::builder("vCard", VCARD);
    if let Some(nick) = nick {
        card = card.append(Element::builder("NICKNAME", VCARD).append(nick).build());
    }
    if let Some(picture) = picture {
        let data = base64::engine::general_purpose::STANDARD.encode(&picture.data);
        card = card.append(
            Element::builder("PHOTO", VCARD)
                .append(
                    Element::builder("TYPE", VCARD)
                        .append(picture.mimetype.as_str())
                        .build(),
                )
                .append(Element::builder("BINVAL", VCARD).append(data).build())
                .build(),
        );
    }
    card.build()
}

impl RoomState {
    /// An occupant's presence with the hash of their picture, when it is known.
    pub(super) fn with_photo(&self, nick: &str, mut stanza: Stanza) -> Stanza {
        let picture = self
            .members
            .get(&fold(nick))
            .and_then(|m| m.picture.as_ref());
        if let (Stanza::Presence(p), Some(picture)) = (&mut stanza, picture) {
            if p.type_ != PresenceType::Unavailable {
                p.payloads.push(photo(Some(picture)));
            }
        }
        stanza
    }

    /// The presence from the room naming its picture (an empty one: none), to `to`.
    pub(super) fn room_photo(&self, to: Jid) -> Option<Stanza> {
        let mut presence = Presence::new(PresenceType::None);
        presence.from = Some(self.room_jid()?);
        presence.to = Some(to);
        presence.payloads.push(photo(self.picture.as_ref()));
        Some(presence.into())
    }

    /// The room's picture hash, for its disco#info.
    pub(super) fn picture_hash(&self) -> Option<&str> {
        self.picture.as_ref().map(|p| p.sha1.as_str())
    }
}

impl Muc {
    /// A member's picture is known or changed: kept, and their presence sent again with
    /// its hash (an empty one when they have none now).
    pub(super) fn member_picture(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        nick: &str,
        picture: Option<Picture>,
    ) {
        let key = Self::key(user, room);
        let Some(member) = self
            .rooms
            .get_mut(&key)
            .and_then(|state| state.members.get_mut(&fold(nick)))
        else {
            return;
        };
        if member.picture == picture {
            return;
        }
        let had = member.picture.is_some();
        member.picture = picture;
        let member = member.clone();
        self.broadcast_to(fx, &key, |state, to| {
            let mut presence = state.member_presence(&member, to, false)?;
            if let (Stanza::Presence(p), None, true) = (&mut presence, &member.picture, had) {
                p.payloads.push(photo(None));
            }
            Some(presence)
        });
    }

    /// A room's picture is known or changed: kept, and told in a presence from the room
    /// itself (XEP-0486); a change of a picture known before also with status 104, "the
    /// configuration changed", so that clients reading the hash from the room's disco#info
    /// (Conversations) ask again.
    pub(super) fn room_picture(
        &mut self,
        fx: &mut Effects,
        user: &BareJid,
        room: &RoomRef,
        picture: Option<Picture>,
    ) {
        let key = Self::key(user, room);
        let Some(state) = self.rooms.get_mut(&key) else {
            return;
        };
        if state.picture == picture {
            return;
        }
        let changed = state.picture.is_some();
        state.picture = picture;
        self.broadcast_to(fx, &key, |state, to| state.room_photo(to));
        if !changed {
            return;
        }
        self.broadcast_to(fx, &key, |state, to| {
            let mut message = Message::groupchat(Some(to));
            message.from = state.room_jid();
            let status = Element::builder("status", ns::MUC_USER).attr(nc("code"), "104");
            message.payloads.push(
                Element::builder("x", ns::MUC_USER)
                    .append(status.build())
                    .build(),
            );
            Some(message.into())
        });
    }

    /// The vCard of a room (`nick` none) or an occupant, as the user's puppet sees it.
    pub(super) fn vcard(
        &self,
        from: &FullJid,
        room: &RoomRef,
        nick: Option<&str>,
    ) -> Result<Element, StanzaError> {
        let not_here =
            |what: String| error(ErrorType::Cancel, DefinedCondition::ItemNotFound, what);
        let Some(state) = self.rooms.get(&Self::key(&from.to_bare(), room)) else {
            return Err(not_here(format!("you are not in {}", room.name)));
        };
        match nick {
            None => Ok(vcard(state.picture.as_ref(), None)),
            Some(nick) => match state.members.get(&fold(nick)) {
                Some(member) => Ok(vcard(member.picture.as_ref(), Some(&member.nick))),
                None => Err(not_here(format!("{nick} is not in {}", room.name))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vcard_holds_the_picture_and_the_hash_names_it() {
        let picture = Picture::new(b"\x89PNG".to_vec(), "image/png");
        let card = vcard(Some(&picture), Some("Bob"));
        let binval = card
            .get_child("PHOTO", VCARD)
            .and_then(|p| p.get_child("BINVAL", VCARD))
            .map(|b| b.text())
            .unwrap();
        assert_eq!(binval, "iVBORw==");
        assert_eq!(card.get_child("NICKNAME", VCARD).unwrap().text(), "Bob");
        let x = photo(Some(&picture));
        assert_eq!(x.get_child("photo", UPDATE).unwrap().text(), picture.sha1);
        assert_eq!(photo(None).get_child("photo", UPDATE).unwrap().text(), "");
        assert!(vcard(None, None).children().next().is_none());
    }
}
