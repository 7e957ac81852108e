//! Building the stanzas the gateway sends: MUC presences, groupchat and chat messages,
//! errors, delays. Small pure helpers so that the MUC logic reads as what it means.

use std::time::{SystemTime, UNIX_EPOCH};

use causeway_bridge::Privilege;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::delay::Delay;
use tokio_xmpp::parsers::message::{Id, Message, MessageType};
use tokio_xmpp::parsers::muc::user::{Affiliation, Item, MucUser, Reason, Role, Status};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

/// An XML attribute name known at compile time.
pub(crate) fn nc(name: &'static str) -> tokio_xmpp::minidom::rxml::NcName {
    tokio_xmpp::minidom::rxml::NcName::try_from(name).expect("a valid attribute name")
}

/// biboumi's mapping of IRC privileges to MUC affiliation and role, so clients show the
/// same moderators as before.
pub fn affiliation_and_role(privilege: Privilege) -> (Affiliation, Role) {
    match privilege {
        Privilege::Owner => (Affiliation::Owner, Role::Moderator),
        Privilege::Admin | Privilege::Op => (Affiliation::Admin, Role::Moderator),
        Privilege::HalfOp => (Affiliation::Member, Role::Moderator),
        Privilege::Voice => (Affiliation::Member, Role::Participant),
        Privilege::None => (Affiliation::None, Role::Participant),
    }
}

/// [`affiliation_and_role`] as the attribute values.
pub fn affiliation_and_role_names(privilege: Privilege) -> (&'static str, &'static str) {
    match privilege {
        Privilege::Owner => ("owner", "moderator"),
        Privilege::Admin | Privilege::Op => ("admin", "moderator"),
        Privilege::HalfOp => ("member", "moderator"),
        Privilege::Voice => ("member", "participant"),
        Privilege::None => ("none", "participant"),
    }
}

/// An occupant's presence (available, or unavailable with `gone`), with status codes.
pub fn occupant_presence(
    from: Jid,
    to: Jid,
    privilege: Privilege,
    gone: bool,
    statuses: Vec<Status>,
    new_nick: Option<String>,
    reason: Option<String>,
) -> Stanza {
    let (affiliation, role) = if gone {
        (affiliation_and_role(privilege).0, Role::None)
    } else {
        affiliation_and_role(privilege)
    };
    let mut item = Item::new(affiliation, role);
    item.nick = new_nick;
    item.reason = reason.clone().map(Reason);
    let mut presence = Presence::new(if gone {
        PresenceType::Unavailable
    } else {
        PresenceType::None
    });
    presence.from = Some(from);
    presence.to = Some(to);
    if let Some(reason) = reason.filter(|_| gone) {
        presence.set_status(String::new(), reason);
    }
    let mut x: Element = MucUser {
        status: statuses,
        items: vec![item],
        invite: None,
        decline: None,
        affiliations: None,
    }
    .into();
    // XEP-0045 requires both attributes on every item; xmpp-parsers leaves out the
    // defaults ("none"), and strict clients then reject the presence.
    for item in x.children_mut().filter(|c| c.is("item", ns::MUC_USER)) {
        for attr in ["affiliation", "role"] {
            if item.attr(attr).is_none() {
                let name = nc(attr);
                item.set_attr(tokio_xmpp::minidom::rxml::Namespace::NONE, name, "none");
            }
        }
    }
    presence.payloads.push(x);
    presence.into()
}

/// A presence error for a join, from the occupant JID asked for.
pub fn presence_error(from: Jid, to: Jid, id: Option<String>, error: StanzaError) -> Stanza {
    let mut presence = Presence::error();
    presence.from = Some(from);
    presence.to = Some(to);
    presence.id = id;
    presence.add_payload(tokio_xmpp::parsers::muc::Muc::new());
    presence.add_payload(error);
    presence.into()
}

/// A message error.
pub fn message_error(from: Jid, to: Jid, id: Option<String>, error: StanzaError) -> Stanza {
    let mut message = Message::error(Some(to));
    message.from = Some(from);
    message.id = id.map(Id);
    message.payloads.push(error.into());
    message.into()
}

/// A message with a body.
pub fn message(type_: MessageType, from: Jid, to: Jid, id: Option<String>, body: &str) -> Message {
    let mut message = Message::new_with_type(type_, Some(to));
    message.from = Some(from);
    message.id = id.map(Id);
    message.bodies.insert(Default::default(), body.to_owned());
    message
}

/// A stanza error with an English text.
pub fn error(
    type_: ErrorType,
    condition: DefinedCondition,
    text: impl Into<String>,
) -> StanzaError {
    StanzaError::new(type_, condition, "en", text)
}

/// XEP-0203 delay for a message the remote network timestamped.
pub fn delay(from: Jid, when: SystemTime) -> Option<Delay> {
    let stamp = rfc3339(when).parse().ok()?;
    Some(Delay {
        from: Some(from),
        stamp,
        data: None,
    })
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a system time.
pub fn rfc3339(when: SystemTime) -> String {
    let since = when.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_706_704_496_789)),
            "2024-01-31T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn items_always_carry_affiliation_and_role() {
        let from: Jid = "#c%s@irc.gw/n".parse().unwrap();
        let to: Jid = "a@b/c".parse().unwrap();
        let Stanza::Presence(p) =
            occupant_presence(from, to, Privilege::None, true, vec![], None, None)
        else {
            unreachable!()
        };
        let item = p.payloads[0].get_child("item", ns::MUC_USER).unwrap();
        assert_eq!(
            (item.attr("affiliation"), item.attr("role")),
            (Some("none"), Some("none"))
        );
    }

    #[test]
    fn privileges_map_like_biboumi() {
        assert_eq!(
            affiliation_and_role(Privilege::Op),
            (Affiliation::Admin, Role::Moderator)
        );
        assert_eq!(
            affiliation_and_role(Privilege::HalfOp),
            (Affiliation::Member, Role::Moderator)
        );
        assert_eq!(
            affiliation_and_role(Privilege::Voice),
            (Affiliation::Member, Role::Participant)
        );
        assert_eq!(
            affiliation_and_role(Privilege::None),
            (Affiliation::None, Role::Participant)
        );
    }
}
