//! The gateway core: what the gateway answers on each component domain.
//!
//! Network-agnostic: it turns stanzas into replies and into actions for the network, and
//! network events into stanzas. Pure functions of the stanza, the configuration and the MUC
//! state, so they are unit tested without any server.
//!
//! Rules kept everywhere here: an error stanza is never answered (no loops); a result is
//! never answered; every unsupported request gets an error with a human text, never silence.

pub mod access;
pub mod adhoc;
pub mod disco;
pub mod mam;
pub mod muc;
pub(crate) mod persistent;
pub mod rich;
pub(crate) mod serve;
pub mod stanzas;

use causeway_bridge::{BridgeError, Event, NetworkKind};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoItemsQuery};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::parsers::version::VersionQuery;
use tokio_xmpp::Stanza;
use tracing::debug;

use self::access::AccessList;
use self::muc::{Effects, Muc, OnError};

/// The gateway as seen on one component domain.
#[derive(Debug)]
pub struct Gateway {
    network: NetworkKind,
    domain: BareJid,
    access: AccessList,
    /// `[access] admins`.
    admins: Vec<BareJid>,
    /// Rooms and users of the network, when a network is attached to this domain.
    muc: Option<Muc>,
}

impl Gateway {
    /// The gateway for `network` on `domain`, serving the users `access` allows; `muc` when
    /// the network's rooms and users are reachable.
    pub fn new(
        network: NetworkKind,
        domain: BareJid,
        access: AccessList,
        muc: Option<Muc>,
    ) -> Gateway {
        Gateway {
            network,
            domain,
            access,
            admins: Vec::new(),
            muc,
        }
    }

    /// The administrators, who get the admin ad-hoc commands.
    pub fn with_admins(mut self, admins: Vec<BareJid>) -> Gateway {
        self.admins = admins;
        self
    }

    /// New access rules (a configuration reload).
    pub fn set_access(&mut self, access: AccessList) {
        self.access = access;
    }

    /// New administrators (a configuration reload).
    pub fn set_admins(&mut self, admins: Vec<BareJid>) {
        self.admins = admins;
    }

    /// Whether `jid` is one of the gateway's administrators.
    pub fn is_admin(&self, jid: &Jid) -> bool {
        self.admins.contains(&jid.to_bare())
    }

    /// The reply to one inbound stanza, if it deserves one (tests of the stateless part).
    pub fn handle(&mut self, stanza: Stanza) -> Option<Stanza> {
        self.handle_stanza(stanza).stanzas.into_iter().next()
    }

    /// Everything one inbound stanza causes.
    pub fn handle_stanza(&mut self, stanza: Stanza) -> Effects {
        match stanza {
            Stanza::Iq(iq) => self.handle_iq(iq),
            Stanza::Message(message) => self.handle_message(message),
            Stanza::Presence(presence) => self.handle_presence(presence),
        }
    }

    /// Whether `jid` may use the gateway.
    pub fn allows(&self, jid: &Jid) -> bool {
        self.check_access(jid).is_ok()
    }

    /// The MUC state, when a network is attached.
    pub fn muc_mut(&mut self) -> Option<&mut Muc> {
        self.muc.as_mut()
    }

    /// Everything a network event causes.
    pub fn handle_event(&mut self, event: Event) -> Effects {
        match &mut self.muc {
            Some(muc) => muc.handle_event(event),
            None => Effects::default(),
        }
    }

    /// What to tell the user when the network refused an action.
    pub fn request_failed(&mut self, on_error: OnError, err: &BridgeError) -> Vec<Stanza> {
        match &mut self.muc {
            Some(muc) => muc.request_failed(on_error, err),
            None => vec![],
        }
    }

    /// Presences telling every joined resource that the gateway is going away (332).
    pub fn shutdown_presences(&self) -> Vec<Stanza> {
        use tokio_xmpp::parsers::muc::user::Status;
        let Some(muc) = &self.muc else { return vec![] };
        muc.joined_everywhere()
            .into_iter()
            .map(|(occupant, to)| {
                let statuses = vec![Status::SelfPresence, Status::ServiceShutdown];
                let reason = Some("the gateway is shutting down".to_owned());
                stanzas::occupant_presence(
                    occupant,
                    to,
                    causeway_bridge::Privilege::None,
                    true,
                    statuses,
                    None,
                    reason,
                )
            })
            .collect()
    }

    fn handle_iq(&mut self, iq: Iq) -> Effects {
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
            // Results and errors are never answered; the only requests the gateway sends
            // are its own keepalive pings, whose replies need no handling.
            _ => return Effects::default(),
        };
        let to = to.unwrap_or_else(|| self.domain.clone().into());
        if let Some(effects) = self.adhoc(&from, &to, &id, &payload, is_get) {
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
            let items = adhoc::command_items(to, &target, self.is_admin(from));
            let iq = Iq::Result {
                from: Some(to.clone()),
                to: Some(from.clone()),
                id: id.to_owned(),
                payload: Some(items),
            };
            return Some(Effects {
                stanzas: vec![iq.into()],
                ..Default::default()
            });
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

    /// disco#items on an IRC server JID from an allowed user: the channel list.
    fn room_list(
        &mut self,
        from: &Jid,
        to: &Jid,
        id: &str,
        payload: &Element,
        is_get: bool,
    ) -> Option<Effects> {
        if !is_get || !payload.is("query", ns::DISCO_ITEMS) || self.check_access(from).is_err() {
            return None;
        }
        let muc = self.muc.as_mut()?;
        let requester = from.clone().try_into_full().ok()?;
        let Ok(crate::address::IrcAddress::Server { server }) = muc.addressing().parse(to) else {
            return None;
        };
        Some(muc.list_rooms(requester, server, id.to_owned(), payload))
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
        let reply_error = |error: StanzaError| {
            let iq = Iq::Error {
                from: Some(to.clone()),
                to: Some(from.clone()),
                id: id.to_owned(),
                error,
                payload: None,
            };
            Some(Effects {
                stanzas: vec![iq.into()],
                ..Default::default()
            })
        };
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
                return Err(StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "en",
                    format!("no disco node {node:?} here"),
                ));
            }
            Ok(Some(
                disco::gateway_info(self.network, self.muc.is_some()).into(),
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

    fn handle_message(&mut self, mut message: Message) -> Effects {
        if message.type_ == MessageType::Error {
            return Effects::default();
        }
        let Some(from) = message.from.take() else {
            return Effects::default();
        };
        let to = message
            .to
            .take()
            .unwrap_or_else(|| self.domain.clone().into());
        let error = match self.check_access(&from) {
            Err(error) => error,
            Ok(()) => match (&mut self.muc, from.try_as_full()) {
                (Some(muc), Ok(full)) => match muc.addressing().parse(&to) {
                    Ok(address) => return muc.handle_message(message, full.clone(), to, address),
                    Err(e) => no_such_address(e),
                },
                _ => not_yet(self.network, Some(&to)),
            },
        };
        let mut reply = Message::error(None);
        reply.id = message.id;
        reply.payloads.push(error.into());
        let mut reply = reply.into();
        crate::address::address_reply(&mut reply, Some(to), from);
        only(Some(reply))
    }

    fn handle_presence(&mut self, presence: Presence) -> Effects {
        let Some(from) = presence.from.clone() else {
            return Effects::default();
        };
        let to = presence
            .to
            .clone()
            .unwrap_or_else(|| self.domain.clone().into());
        // Only an available presence asks for something (a join); errors, probes and
        // subscription handshakes get no error, so that no loop can start.
        let asks = presence.type_ == PresenceType::None;
        let error = match self.check_access(&from) {
            Err(error) => error,
            Ok(()) => match (&mut self.muc, from.clone().try_into_full()) {
                (Some(muc), Ok(full))
                    if matches!(
                        presence.type_,
                        PresenceType::None | PresenceType::Unavailable
                    ) =>
                {
                    match muc.addressing().parse(&to) {
                        Ok(address) => return muc.handle_presence(presence, full, to, address),
                        Err(e) => no_such_address(e),
                    }
                }
                _ => not_yet(self.network, Some(&to)),
            },
        };
        if !asks {
            debug!(from = ?presence.from, type_ = ?presence.type_, "presence ignored");
            return Effects::default();
        }
        let mut reply = Presence::error();
        reply.id = presence.id;
        reply.payloads.push(error.into());
        let mut reply = reply.into();
        crate::address::address_reply(&mut reply, Some(to), from);
        only(Some(reply))
    }

    fn check_access(&self, from: &Jid) -> Result<(), StanzaError> {
        // The component's own keepalive pings come from its domain.
        if from.node().is_none() && from.domain() == self.domain.domain() {
            return Ok(());
        }
        if self.access.allows(from) {
            Ok(())
        } else {
            Err(StanzaError::new(
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "en",
                format!("{} is not allowed to use this gateway: ask the administrator of {} to add it to [access] allow", from.to_bare(), self.domain),
            ))
        }
    }
}

fn only(stanza: Option<Stanza>) -> Effects {
    Effects {
        stanzas: stanza.into_iter().collect(),
        ..Default::default()
    }
}

fn no_such_address(e: crate::address::AddressError) -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ItemNotFound,
        "en",
        e.to_string(),
    )
}

fn unavailable(text: String) -> StanzaError {
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "en",
        text,
    )
}

fn bad_request(error: impl std::fmt::Display) -> StanzaError {
    StanzaError::new(
        ErrorType::Modify,
        DefinedCondition::BadRequest,
        "en",
        format!("malformed request: {error}"),
    )
}

/// Rooms and remote users arrive with the network bridges; until then, say so.
fn not_yet(network: NetworkKind, to: Option<&Jid>) -> StanzaError {
    let what = to.map_or_else(|| "this address".to_string(), |t| t.to_bare().to_string());
    StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::FeatureNotImplemented,
        "en",
        format!("{what}: this gateway does not relay to {network} yet"),
    )
}

#[cfg(test)]
mod tests;
