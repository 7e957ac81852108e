//! Iqs to the gateway's addresses: the domain's own queries (disco, version, ping), the
//! ad-hoc commands and muc#owner forms, channel lists on a server JID, MAM on a room, and
//! the rest handed to the MUC core.

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoItemsQuery};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::version::VersionQuery;

use super::muc::Effects;
use super::{adhoc, bad_request, disco, mam, no_such_address, register, unavailable, Gateway};

impl Gateway {
    pub(super) fn handle_iq(&mut self, iq: Iq) -> Effects {
        let (from, to, id, payload, is_get) = match iq {
            Iq::Get {
                from: Some(from),
                to,
                id,
                payload,
            } => (from, to, id, payload, true),
            Iq::Set {
                from: Some(from),
                to,
                id,
                payload,
            } => (from, to, id, payload, false),
            // Results and errors are never answered. The gateway's requests are its own
            // keepalive pings, whose replies need no handling, and its pushes into users'
            // accounts, whose refusals are worth a line in the log.
            // The user's vCard, asked for their picture.
            Iq::Result {
                id, payload, from, ..
            }
            | Iq::Error {
                id, payload, from, ..
            } if id.starts_with(super::muc::PHOTO_ID) => {
                let vcard = payload
                    .as_ref()
                    .filter(|p| p.is("vCard", super::muc::VCARD));
                let from = from.map(|f| f.to_bare());
                let muc = self.muc.as_mut();
                let request = muc.and_then(|m| m.user_vcard(&id, from.as_ref(), vcard));
                return Effects {
                    requests: request.into_iter().collect(),
                    ..Effects::default()
                };
            }
            Iq::Error {
                id, error, from, ..
            } if id.starts_with(super::privilege::PUSH_ID) => {
                let text = error.texts.values().next().cloned().unwrap_or_default();
                tracing::warn!(user = ?from, condition = ?error.defined_condition, %text, "the XMPP server refused a bookmark or contact the gateway pushed");
                return Effects::default();
            }
            _ => return Effects::default(),
        };
        let to = to.unwrap_or_else(|| self.domain.clone().into());
        if let Some(effects) = self.adhoc(&from, &to, &id, &payload, is_get) {
            return effects;
        }
        if let Some(effects) = self.registration(&from, &to, &id, &payload, is_get) {
            return effects;
        }
        if let Some(effects) = self.owner_form(&from, &to, &id, &payload, is_get) {
            return effects;
        }
        if let Some(effects) = self.mam_query(&from, &to, &id, &payload, is_get) {
            return effects;
        }
        if let Some(effects) = self.room_list(&from, &to, &id, &payload, is_get) {
            return effects;
        }
        let mut requests = Vec::new();
        let reply = match self.check_access(&from) {
            Err(error) => Err(error),
            Ok(()) if to.node().is_some() || to.resource().is_some() => {
                match (&mut self.muc, from.clone().try_into_full()) {
                    (Some(muc), Ok(full)) => match muc.addressing().parse(&to) {
                        Ok(address) => {
                            muc.handle_iq(full, address, payload, is_get)
                                .map(|(result, more)| {
                                    requests = more;
                                    result
                                })
                        }
                        Err(e) => Err(no_such_address(e)),
                    },
                    _ => Err(unavailable(format!("{to} does not answer requests"))),
                }
            }
            Ok(()) if is_get => self.domain_query(payload),
            Ok(()) => Err(unavailable(format!(
                "{} does not support this request",
                self.domain
            ))),
        };
        let reply = match reply {
            Ok(payload) => Iq::Result {
                from: Some(to),
                to: Some(from),
                id,
                payload,
            },
            Err(error) => Iq::Error {
                from: Some(to),
                to: Some(from),
                id,
                error,
                payload: None,
            },
        };
        Effects {
            stanzas: vec![reply.into()],
            requests,
            ..Default::default()
        }
    }

    /// XEP-0050 on the gateway, a server or a channel: the command list, or a command step
    /// (run against the database on the side).
    fn adhoc(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
        is_get: bool,
    ) -> Option<Effects> {
        use crate::address::IrcAddress;
        let muc = self.muc.as_ref()?;
        let listing = is_get
            && payload.is("query", ns::DISCO_ITEMS)
            && payload.attr("node") == Some(adhoc::COMMANDS);
        let running = !is_get && payload.is("command", adhoc::COMMANDS);
        if !(listing || running) || self.check_access(from).is_err() {
            return None;
        }
        let target = match muc.addressing().parse(to).ok()? {
            IrcAddress::Gateway => adhoc::Target::Gateway,
            IrcAddress::Server { server } => adhoc::Target::Server(server),
            IrcAddress::Channel {
                server,
                channel,
                nick: None,
            } => adhoc::Target::Channel(server, channel),
            _ => return None,
        };
        if listing {
            let accounts = self.accounts.then_some(self.network);
            let items = adhoc::command_items(to, &target, self.is_admin(from), accounts);
            return Some(iq_reply(from, to, id, Ok(items)));
        }
        let requester = from.clone().try_into_full().ok()?;
        let sessions = self.is_admin(from).then(|| muc.sessions());
        let rooms = match &target {
            adhoc::Target::Server(server) => muc.user_rooms(&from.to_bare(), server),
            _ => Vec::new(),
        };
        let request = adhoc::AdhocRequest {
            iq_id: id.to_owned(),
            requester,
            to: to.clone(),
            target,
            command: payload.clone(),
            sessions,
            rooms,
            owner: None,
        };
        Some(Effects {
            adhoc: vec![request],
            ..Default::default()
        })
    }

    /// XEP-0077 on the component's own JID, where users have accounts on the network: the
    /// form, logging in or out (asked of the network on the side). Elsewhere, and for
    /// strangers, the request goes the common way (unsupported, or forbidden).
    fn registration(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
        is_get: bool,
    ) -> Option<Effects> {
        let ours = to.node().is_none() && to.resource().is_none();
        if !self.accounts || !ours || !payload.is("query", ns::REGISTER) {
            return None;
        }
        self.check_access(from).ok()?;
        let request = register::RegisterRequest {
            iq_id: id.to_owned(),
            requester: from.clone(),
            to: to.clone(),
            query: payload.clone(),
            get: is_get,
        };
        Some(Effects {
            register: vec![request],
            ..Default::default()
        })
    }

    /// The MUC owner form of a channel (muc#owner get/set), backed by the channel settings.
    fn owner_form(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
        is_get: bool,
    ) -> Option<Effects> {
        use crate::address::IrcAddress;
        if !payload.is("query", "http://jabber.org/protocol/muc#owner")
            || self.check_access(from).is_err()
        {
            return None;
        }
        let muc = self.muc.as_ref()?;
        let Ok(IrcAddress::Channel {
            server,
            channel,
            nick: None,
        }) = muc.addressing().parse(to)
        else {
            return None;
        };
        let requester = from.clone().try_into_full().ok()?;
        let request = adhoc::AdhocRequest {
            iq_id: id.to_owned(),
            requester,
            to: to.clone(),
            target: adhoc::Target::Channel(server, channel),
            command: payload.clone(),
            sessions: None,
            rooms: Vec::new(),
            owner: Some(is_get),
        };
        Some(Effects {
            adhoc: vec![request],
            ..Default::default()
        })
    }

    /// Service discovery on the JIDs that list rooms, from an allowed user. disco#items on
    /// an IRC server JID: the channel list; on the Matrix service's own JID: the user's
    /// rooms; at the node of a room holding rooms there (a Matrix space): that room's rooms
    /// (any other node is `item-not-found`). disco#info at such a node, once its list has
    /// shown it to the user, names it as a directory of chatrooms.
    fn room_list(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
        is_get: bool,
    ) -> Option<Effects> {
        let node = payload.attr("node");
        let info = payload.is("query", ns::DISCO_INFO) && node.is_some();
        let items = payload.is("query", ns::DISCO_ITEMS);
        if !is_get || !(info || items) || self.check_access(from).is_err() {
            return None;
        }
        let muc = self.muc.as_mut()?;
        let server = list_server(muc, to)?;
        if info {
            let node = node?;
            let label = muc.listed_space(&from.to_bare(), &server, node)?;
            let info = disco::space_info(node, label).into();
            return Some(iq_reply(from, to, id, Ok(info)));
        }
        let requester = from.clone().try_into_full().ok()?;
        let within = match node {
            None => None,
            Some(node) => match muc.space_of(&server, node) {
                Some(room) => Some((room, node.to_owned())),
                None => return Some(iq_reply(from, to, id, Err(no_such_node(node)))),
            },
        };
        Some(muc.list_rooms(requester, server, within, id.to_owned(), payload))
    }

    /// A MAM query on a room from an allowed user: answered once the archive is read, so
    /// here it only becomes a request (or an error).
    fn mam_query(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
        is_get: bool,
    ) -> Option<Effects> {
        if is_get || !payload.is("query", mam::MAM) {
            return None;
        }
        let muc = self.muc.as_ref()?;
        let reply_error = |error: StanzaError| Some(iq_reply(from, to, id, Err(error)));
        if let Err(error) = self.check_access(from) {
            return reply_error(error);
        }
        let Ok(requester) = from.clone().try_into_full() else {
            return None;
        };
        let Ok(crate::address::IrcAddress::Channel { nick: None, .. }) = muc.addressing().parse(to)
        else {
            return reply_error(unavailable(format!("{to} has no archive: query a room")));
        };
        let room = to.to_bare();
        match mam::parse_query(payload, &requester.to_bare(), &room) {
            Ok((queryid, query)) => {
                let request = mam::MamRequest {
                    iq_id: id.to_owned(),
                    requester,
                    room,
                    queryid,
                    query,
                };
                Some(Effects {
                    mam: vec![request],
                    ..Default::default()
                })
            }
            Err(error) => reply_error(error),
        }
    }

    /// A get addressed to the bare gateway domain.
    fn domain_query(&self, payload: Element) -> Result<Option<Element>, StanzaError> {
        if payload.is("query", ns::DISCO_INFO) {
            let query = DiscoInfoQuery::try_from(payload).map_err(bad_request)?;
            if let Some(node) = query.node {
                return Err(no_such_node(&node));
            }
            Ok(Some(
                disco::gateway_info(self.network, self.muc.is_some(), self.accounts).into(),
            ))
        } else if payload.is("query", ns::DISCO_ITEMS) {
            DiscoItemsQuery::try_from(payload).map_err(bad_request)?;
            Ok(Some(disco::gateway_items().into()))
        } else if payload.is("ping", ns::PING) {
            Ping::try_from(payload).map_err(bad_request)?;
            Ok(None)
        } else if payload.is("query", ns::VERSION) {
            VersionQuery::try_from(payload).map_err(bad_request)?;
            Ok(Some(disco::version().into()))
        } else {
            Err(unavailable(format!(
                "{} does not support <{} xmlns='{}'/>",
                self.domain,
                payload.name(),
                payload.ns()
            )))
        }
    }
}

/// Whose list a disco#items or disco#info on `to` is about: a server JID's server, or the
/// Matrix service's own list (no server); `None` for any other address.
fn list_server(muc: &super::muc::Muc, to: &Jid) -> Option<String> {
    if to.node().is_none() && to.resource().is_none() {
        return muc.addressing().is_matrix().then(String::new);
    }
    match muc.addressing().parse(to) {
        Ok(crate::address::IrcAddress::Server { server }) => Some(server),
        _ => None,
    }
}

/// The answer to a disco query at a node the address does not have.
fn no_such_node(node: &str) -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ItemNotFound,
        "en",
        format!("no disco node {node:?} here"),
    )
}

/// An iq result (with its payload) or error from `to` back to `from`, as the only effect.
fn iq_reply(from: &Jid, to: &Jid, id: &str, reply: Result<Element, StanzaError>) -> Effects {
    let (from, to, id) = (Some(to.clone()), Some(from.clone()), id.to_owned());
    let iq = match reply {
        Ok(payload) => Iq::Result {
            from,
            to,
            id,
            payload: Some(payload),
        },
        Err(error) => Iq::Error {
            from,
            to,
            id,
            error,
            payload: None,
        },
    };
    Effects {
        stanzas: vec![iq.into()],
        ..Default::default()
    }
}
