//! Matrix ids as causeway uses them: puppet user ids for XMPP users, the split of Matrix
//! room and user ids into the (server, name) pairs of the address scheme, and rooms as the
//! room lists name them.

use causeway_bridge::{ListedRoom, RoomRef, UserRef};

/// Characters a puppet localpart keeps as they are; everything else is written `=xx` per
/// UTF-8 byte (`=` itself included), so the mapping is reversible and the localpart stays
/// within the Matrix user id grammar (lower-case letters, digits, `.`, `_`, `-`, `=`).
fn kept(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
}

/// The localpart of the puppet that stands for `user`: `prefix` followed by the escaped
/// bare JID, e.g. `_xmpp_alice=40example.org`.
pub fn puppet_localpart(prefix: &str, user: &UserRef) -> String {
    let mut out = String::with_capacity(prefix.len() + user.0.len() + 8);
    out.push_str(prefix);
    for b in user.0.bytes() {
        if kept(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02x}"));
        }
    }
    out
}

/// The name a puppet starts with when no MUC nick gave it one: the JID's localpart.
pub fn default_nick(user: &UserRef) -> &str {
    user.0.split('@').next().unwrap_or(&user.0)
}

/// The XMPP user a puppet localpart stands for, when it is one of ours.
pub fn puppet_owner(prefix: &str, localpart: &str) -> Option<UserRef> {
    let escaped = localpart.strip_prefix(prefix)?;
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else if kept(b) {
            bytes.push(b);
            rest = tail;
        } else {
            return None;
        }
    }
    let jid = String::from_utf8(bytes).ok()?;
    (!jid.is_empty()).then_some(UserRef(jid))
}

/// `@local:server` split into (localpart, server name).
pub fn split_user_id(user_id: &str) -> Option<(&str, &str)> {
    user_id.strip_prefix('@')?.split_once(':')
}

/// The room reference for a room id: `!opaque:server` → (`server`, `!opaque`); room
/// version 12 ids have no server part → (``, `!opaque`).
pub fn room_ref_of_id(room_id: &str) -> RoomRef {
    match room_id.split_once(':') {
        Some((name, server)) => RoomRef {
            server: server.to_owned(),
            name: name.to_owned(),
        },
        None => RoomRef {
            server: String::new(),
            name: room_id.to_owned(),
        },
    }
}

/// The Matrix name a room reference stands for: `#alias:server`, `!opaque:server` or
/// `!opaque`.
pub fn matrix_name(room: &RoomRef) -> String {
    if room.server.is_empty() {
        room.name.clone()
    } else {
        format!("{}:{}", room.name, room.server)
    }
}

/// A room's address as a MUC localpart: `#alias%server` by its alias, else `!opaque%server`
/// or (room version 12) `!opaque`.
pub fn room_localpart(alias: Option<&ruma::RoomAliasId>, room_id: &ruma::RoomId) -> String {
    match alias {
        Some(alias) => format!("#{}%{}", alias.alias(), alias.server_name()),
        None => match room_id.as_str().split_once(':') {
            Some((opaque, server)) => format!("{opaque}%{server}"),
            None => room_id.to_string(),
        },
    }
}

/// A room as the room lists show it: at its address `name`, with its member count and
/// its name and topic (`name: topic`, each where set); a space says so, and holds rooms.
pub(crate) fn listed_room(
    name: String,
    members: u64,
    title: Option<String>,
    topic: Option<String>,
    space: bool,
) -> ListedRoom {
    let about: Vec<String> = [title, topic]
        .into_iter()
        .flatten()
        .filter(|text| !text.is_empty())
        .collect();
    let mut about = about.join(": ");
    if space {
        about = match about.is_empty() {
            true => "space".to_owned(),
            false => format!("space: {about}"),
        };
    }
    ListedRoom {
        name,
        members: u32::try_from(members).unwrap_or(u32::MAX),
        about,
        holds_rooms: space,
    }
}

/// A sync event as a room event (with its room id), as the incoming side takes them.
pub(crate) fn with_room(
    raw: &ruma::serde::Raw<ruma::events::AnySyncTimelineEvent>,
    room: &ruma::RoomId,
) -> Option<ruma::serde::Raw<ruma::events::AnyTimelineEvent>> {
    let mut event: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw.json().get()).ok()?;
    event.insert("room_id".into(), room.as_str().into());
    serde_json::value::to_raw_value(&event)
        .ok()
        .map(ruma::serde::Raw::from_json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puppet_localparts_match_the_design_example_and_round_trip() {
        let alice = UserRef("alice@example.org".into());
        assert_eq!(
            puppet_localpart("_xmpp_", &alice),
            "_xmpp_alice=40example.org"
        );
        for jid in ["alice@example.org", "Ünï=code+x@h.example", "a_b-c.d@e"] {
            let user = UserRef(jid.into());
            let local = puppet_localpart("_xmpp_", &user);
            assert!(local
                .bytes()
                .all(|b| kept(b) || b == b'=' || b.is_ascii_hexdigit()));
            assert_eq!(puppet_owner("_xmpp_", &local), Some(user));
        }
        assert_eq!(puppet_owner("_xmpp_", "alice"), None);
        assert_eq!(puppet_owner("_xmpp_", "_xmpp_bad=zz"), None);
        assert_eq!(puppet_owner("_xmpp_", "_xmpp_"), None);
    }

    #[test]
    fn room_ids_split_into_references_and_back() {
        for id in ["!AbC:example.org", "!fT7EpjDY8j90RmXEuty6OQ"] {
            assert_eq!(matrix_name(&room_ref_of_id(id)), id);
        }
        assert_eq!(room_ref_of_id("!x").server, "");
        assert_eq!(split_user_id("@a:b.c"), Some(("a", "b.c")));
        assert_eq!(split_user_id("a:b"), None);
    }

    #[test]
    fn a_sync_event_gets_its_room() {
        let json = serde_json::json!({
            "type": "m.room.message", "sender": "@b:hs", "event_id": "$3",
            "origin_server_ts": 1, "content": {"msgtype": "m.text", "body": "hi"}
        });
        let event = ruma::serde::Raw::from_json(serde_json::value::to_raw_value(&json).unwrap());
        let room = <&ruma::RoomId>::try_from("!r:hs").unwrap();
        let with = with_room(&event, room).unwrap();
        assert_eq!(
            with.get_field::<String>("room_id").unwrap().as_deref(),
            Some("!r:hs")
        );
        assert!(matches!(
            with.deserialize(),
            Ok(ruma::events::AnyTimelineEvent::MessageLike(_))
        ));
    }

    #[test]
    fn rooms_are_listed_at_the_addresses_that_join_them() {
        let alias = <&ruma::RoomAliasId>::try_from("#lobby:hs.example").unwrap();
        let v10 = <&ruma::RoomId>::try_from("!AbC:hs.example").unwrap();
        let v12 = <&ruma::RoomId>::try_from("!AbCdEf").unwrap();
        assert_eq!(room_localpart(Some(alias), v10), "#lobby%hs.example");
        assert_eq!(room_localpart(None, v10), "!AbC%hs.example");
        assert_eq!(room_localpart(None, v12), "!AbCdEf");
    }
}
