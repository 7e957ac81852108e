//! Iqs from XMPP to a room or occupant: XEP-0410 self-pings, disco#info on the room,
//! muc#admin (kick, roles and affiliations, lists by role or affiliation) and XEP-0425
//! moderation.

use causeway_bridge::{Action, Privilege, RoomRef, UserRef};
use tokio_xmpp::jid::FullJid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{fold, Muc, OnError, Request, RoomState};
use crate::address::IrcAddress;
use crate::gateway::rich;
use crate::gateway::stanzas::{affiliation_and_role_names, error, nc};

/// XEP-0045's admin namespace (xmpp-parsers has no type for it).
const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";

/// What an iq asks for: the result payload and the network actions.
type IqAnswer = Result<(Option<Element>, Vec<Request>), StanzaError>;

impl Muc {
    /// An iq to a room or occupant from an allowed user. `Ok` carries the result payload
    /// and the network actions.
    pub fn handle_iq(
        &mut self,
        from: FullJid,
        address: IrcAddress,
        payload: Element,
        is_get: bool,
    ) -> IqAnswer {
        let unsupported = || {
            error(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                format!(
                    "<{} xmlns='{}'/> is not supported here",
                    payload.name(),
                    payload.ns()
                ),
            )
        };
        let (room, nick) = match address {
            IrcAddress::Channel {
                server,
                channel,
                nick,
            } => (
                RoomRef {
                    server,
                    name: channel,
                },
                nick,
            ),
            _ => return Err(unsupported()),
        };
        if payload.is("vCard", super::VCARD) && is_get {
            return Ok((Some(self.vcard(&from, &room, nick.as_deref())?), vec![]));
        }
        match nick {
            Some(nick) if payload.is("ping", ns::PING) && is_get => {
                self.self_ping(&from, &room, &nick)
            }
            Some(_) => Err(unsupported()),
            None if payload.is("query", ns::DISCO_INFO) && is_get => {
                Ok((Some(self.room_info(&from, &room)), vec![]))
            }
            None if !is_get && rich::moderation_request(&payload).is_some() => {
                self.moderate(&from, room, &payload)
            }
            None if payload.is("query", MUC_ADMIN) => {
                let key = Self::key(&from.to_bare(), &room);
                let Some(state) = self.rooms.get(&key).filter(|s| s.resources.contains(&from))
                else {
                    return Err(error(
                        ErrorType::Cancel,
                        DefinedCondition::NotAcceptable,
                        format!("you are not in {}", room.name),
                    ));
                };
                if is_get {
                    Ok((Some(admin_list(state, &payload)), vec![]))
                } else {
                    let user = UserRef(key.0.to_string());
                    Ok((None, admin_changes(state, &user, &from, &payload)?))
                }
            }
            None => Err(unsupported()),
        }
    }

    /// XEP-0425: a moderator removes a message. Networks that cannot remove messages (IRC)
    /// refuse with their reason, like any action.
    fn moderate(&self, from: &FullJid, room: RoomRef, payload: &Element) -> IqAnswer {
        if !self.addressing.is_matrix() {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "IRC cannot remove a message once sent",
            ));
        }
        let key = Self::key(&from.to_bare(), &room);
        let Some(state) = self.rooms.get(&key).filter(|s| s.resources.contains(from)) else {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                format!("you are not in {}", room.name),
            ));
        };
        let (id, reason) = rich::moderation_request(payload).expect("checked by the caller");
        let request = Request {
            user: UserRef(key.0.to_string()),
            action: Action::Moderate { room, id, reason },
            on_error: OnError::Message {
                to: state.room_jid().unwrap_or_else(|| from.clone().into()),
                sender: from.clone(),
                id: None,
            },
        };
        Ok((None, vec![request]))
    }

    /// XEP-0410 self-ping, answered here: the client learns whether it is still joined
    /// without anything reaching the network.
    fn self_ping(&self, from: &FullJid, room: &RoomRef, nick: &str) -> IqAnswer {
        let joined = self
            .rooms
            .get(&Self::key(&from.to_bare(), room))
            .is_some_and(|s| s.resources.contains(from) && fold(&s.nick) == fold(nick));
        if joined {
            Ok((None, vec![]))
        } else {
            Err(error(
                ErrorType::Cancel,
                DefinedCondition::NotAcceptable,
                format!("you are not joined to {} as {nick}", room.name),
            ))
        }
    }

    /// What the room offers; its occupant count is the puppet's view, when joined.
    fn room_info(&self, from: &FullJid, room: &RoomRef) -> Element {
        let state = self.rooms.get(&Self::key(&from.to_bare(), room));
        let occupants = state.map(|s| (s.members.len(), s.picture_hash()));
        crate::gateway::disco::room_info(&room.name, occupants, self.addressing.is_matrix())
    }
}

/// A list by role or affiliation, from the members the puppet sees.
fn admin_list(state: &RoomState, payload: &Element) -> Element {
    let wanted = payload.children().find(|c| c.is("item", MUC_ADMIN));
    let role = wanted.and_then(|w| w.attr("role"));
    let affiliation = wanted.and_then(|w| w.attr("affiliation"));
    let mut query = Element::builder("query", MUC_ADMIN);
    for member in state.members.values() {
        let (a, r) = affiliation_and_role_names(member.privilege);
        if role.is_some_and(|x| x != r) || affiliation.is_some_and(|x| x != a) {
            continue;
        }
        query = query.append(
            Element::builder("item", MUC_ADMIN)
                .attr(nc("nick"), member.nick.as_str())
                .attr(nc("role"), r)
                .attr(nc("affiliation"), a),
        );
    }
    query.build()
}

/// The network actions for a muc#admin set: a kick, or a privilege for each item.
fn admin_changes(
    state: &RoomState,
    user: &UserRef,
    from: &FullJid,
    payload: &Element,
) -> Result<Vec<Request>, StanzaError> {
    let mut requests = Vec::new();
    for item in payload.children().filter(|c| c.is("item", MUC_ADMIN)) {
        let Some(nick) = item.attr("nick").map(str::to_owned) else {
            return Err(error(
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                "IRC moderation needs the occupant's nick",
            ));
        };
        let reason = item
            .get_child("reason", MUC_ADMIN)
            .map(|r| r.text())
            .filter(|r| !r.is_empty());
        let room = state.room.clone();
        let action = match (item.attr("role"), item.attr("affiliation")) {
            (Some("none"), _) => Action::Kick { room, nick, reason },
            (role, affiliation) => Action::SetPrivilege {
                room,
                nick,
                privilege: privilege_asked(role, affiliation)?,
            },
        };
        requests.push(Request {
            user: user.clone(),
            action,
            on_error: OnError::Message {
                to: state.room_jid().unwrap_or_else(|| from.clone().into()),
                sender: from.clone(),
                id: None,
            },
        });
    }
    if requests.is_empty() {
        return Err(error(
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            "no item to change",
        ));
    }
    Ok(requests)
}

/// biboumi's mapping, read backwards: a role wins over an affiliation.
fn privilege_asked(
    role: Option<&str>,
    affiliation: Option<&str>,
) -> Result<Privilege, StanzaError> {
    Ok(match (role, affiliation) {
        (Some("moderator"), _) | (None, Some("admin")) => Privilege::Op,
        (Some("participant"), _) | (None, Some("member")) => Privilege::Voice,
        (Some("visitor"), _) | (None, Some("none")) => Privilege::None,
        (None, Some("owner")) => Privilege::Owner,
        _ => {
            return Err(error(
                ErrorType::Cancel,
                DefinedCondition::FeatureNotImplemented,
                "this role or affiliation has no IRC equivalent",
            ))
        }
    })
}
