//! XEP-0421 occupant-ids: one opaque id per remote member and room, the same across nick
//! changes and restarts, so that clients attribute corrections, reactions and moderation
//! to the right person.
//!
//! The id is HMAC-SHA-256, keyed by the install's secret (kept in the store), of the room
//! and of who the member is on the network ([`Member::id`]: a Matrix user id, an IRC
//! account or `user@host`), or of their nick where the network does not say. Keyed, so
//! that nobody can tell from the id who is behind it; per room, so that ids do not link a
//! person's rooms (XEP-0421 §5).

use std::sync::Arc;

use base64::Engine;
use causeway_bridge::{Member, RoomRef};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::Stanza;

use super::stanzas::nc;

/// XEP-0421's namespace, also the feature rooms advertise.
pub const NS: &str = "urn:xmpp:occupant-id:0";

/// How ids are made: the install's key.
#[derive(Clone)]
pub struct OccupantIds {
    key: Arc<Hmac<Sha256>>,
}

impl std::fmt::Debug for OccupantIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OccupantIds(***)")
    }
}

impl OccupantIds {
    /// Ids keyed by `secret`.
    pub fn new(secret: &[u8]) -> OccupantIds {
        let key = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        OccupantIds { key: Arc::new(key) }
    }

    /// The id of whoever the network calls `identity` (else the one with `nick`) in `room`.
    pub fn of(&self, room: &RoomRef, identity: Option<&str>, nick: &str) -> String {
        let mut mac = (*self.key).clone();
        // Each field ends with a byte no name holds, so that no two lists of fields make
        // the same input.
        for field in [
            room.server.to_ascii_lowercase().as_bytes(),
            room.name.to_lowercase().as_bytes(),
        ] {
            mac.update(field);
            mac.update(&[0]);
        }
        match identity {
            Some(identity) => {
                mac.update(b"id\0");
                mac.update(identity.as_bytes());
            }
            None => {
                mac.update(b"nick\0");
                mac.update(nick.to_lowercase().as_bytes());
            }
        }
        // 128 bits are plenty for an id, and keep stanzas short.
        let digest = mac.finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
    }

    /// `member` as the core keeps it: its `id` is now its occupant-id, one that `taken`
    /// says nobody else in the room holds. Two people can look alike to the network (one
    /// host and ident, or a nick someone else had before): the second then gets an id of
    /// its own, made from its nick too.
    pub fn admit(
        &self,
        room: &RoomRef,
        mut member: Member,
        taken: impl Fn(&str) -> bool,
    ) -> Member {
        let identity = member.id.take();
        let mut id = self.of(room, identity.as_deref(), &member.nick);
        for n in 1..=8 {
            if !taken(&id) {
                break;
            }
            let apart = format!(
                "{}\0{}\0{n}",
                identity.as_deref().unwrap_or_default(),
                member.nick.to_lowercase()
            );
            id = self.of(room, Some(&apart), &member.nick);
        }
        member.id = Some(id);
        member
    }
}

/// The `<occupant-id/>` element for `id`.
pub fn element(id: &str) -> Element {
    Element::builder("occupant-id", NS)
        .attr(nc("id"), id)
        .build()
}

/// `stanza` with the occupant-id `id` (a presence or a message from an occupant).
pub fn stamp(mut stanza: Stanza, id: &str) -> Stanza {
    let element = element(id);
    match &mut stanza {
        Stanza::Presence(p) => p.payloads.push(element),
        Stanza::Message(m) => m.payloads.push(element),
        Stanza::Iq(_) => {}
    }
    stanza
}

#[cfg(test)]
mod tests {
    use super::*;
    use causeway_bridge::Privilege;

    fn room(name: &str) -> RoomRef {
        RoomRef {
            server: "irc.example".into(),
            name: name.into(),
        }
    }

    #[test]
    fn ids_follow_the_person_not_the_nick() {
        let ids = OccupantIds::new(b"secret");
        let a = ids.of(&room("#a"), Some("~bob@host"), "bob");
        assert_eq!(a, ids.of(&room("#A"), Some("~bob@host"), "bobby"));
        assert_eq!(a.len(), 22);
        // Another room, another person, another install: another id.
        assert_ne!(a, ids.of(&room("#b"), Some("~bob@host"), "bob"));
        assert_ne!(a, ids.of(&room("#a"), Some("~eve@host"), "bob"));
        assert_ne!(
            a,
            OccupantIds::new(b"other").of(&room("#a"), Some("~bob@host"), "bob")
        );
        // Known only by nick: the nick, folded.
        let by_nick = ids.of(&room("#a"), None, "Bob");
        assert_eq!(by_nick, ids.of(&room("#a"), None, "bob"));
        assert_ne!(by_nick, ids.of(&room("#a"), Some("bob"), "bob"));
    }

    #[test]
    fn admitted_members_carry_their_id() {
        let ids = OccupantIds::new(b"secret");
        let bob = |nick: &str| Member {
            nick: nick.into(),
            privilege: Privilege::None,
            id: Some("~u@gateway.host".into()),
            picture: None,
        };
        let first = ids.admit(&room("#a"), bob("bob"), |_| false);
        let plain = ids.of(&room("#a"), Some("~u@gateway.host"), "x");
        assert_eq!(first.id.as_deref(), Some(plain.as_str()));
        // Someone else looking the same to the network: an id of their own.
        let second = ids.admit(&room("#a"), bob("bobby"), |id| id == plain);
        assert!(second.id.is_some());
        assert_ne!(second.id, first.id);
    }
}
