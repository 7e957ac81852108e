//! The gateway core: what the gateway answers on each component domain.
//!
//! Network-agnostic: it turns stanzas into replies (and, once networks are wired in,
//! into actions for them). Pure functions of the stanza and the configuration, so they are
//! unit tested without any server.
//!
//! Rules kept everywhere here: an error stanza is never answered (no loops); a result is
//! never answered; every unsupported request gets an error with a human text, never silence.

pub mod access;
pub mod disco;

use causeway_bridge::NetworkKind;
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

/// The gateway as seen on one component domain.
#[derive(Debug, Clone)]
pub struct Gateway {
    network: NetworkKind,
    domain: BareJid,
    access: AccessList,
}

impl Gateway {
    /// The gateway for `network` on `domain`, serving the users `access` allows.
    pub fn new(network: NetworkKind, domain: BareJid, access: AccessList) -> Gateway {
        Gateway {
            network,
            domain,
            access,
        }
    }

    /// The reply to one inbound stanza, if it deserves one.
    pub fn handle(&self, stanza: Stanza) -> Option<Stanza> {
        match stanza {
            Stanza::Iq(iq) => self.handle_iq(iq),
            Stanza::Message(message) => self.handle_message(message),
            Stanza::Presence(presence) => self.handle_presence(presence),
        }
    }

    fn handle_iq(&self, iq: Iq) -> Option<Stanza> {
        let (from, to, id, payload, is_get) = match iq {
            Iq::Get {
                from,
                to,
                id,
                payload,
            } => (from?, to, id, payload, true),
            Iq::Set {
                from,
                to,
                id,
                payload,
            } => (from?, to, id, payload, false),
            // Results and errors are never answered; the only requests the gateway sends
            // are its own keepalive pings, whose replies need no handling.
            Iq::Result { .. } | Iq::Error { .. } => return None,
        };
        let to = to.unwrap_or_else(|| self.domain.clone().into());
        let reply = match self.check_access(&from) {
            Err(error) => Err(error),
            Ok(()) if to.node().is_some() || to.resource().is_some() => {
                Err(unavailable(format!("{to} does not answer requests")))
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
        Some(reply.into())
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
            Ok(Some(disco::gateway_info(self.network).into()))
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

    fn handle_message(&self, message: Message) -> Option<Stanza> {
        if message.type_ == MessageType::Error {
            return None;
        }
        let from = message.from.clone()?;
        let error = match self.check_access(&from) {
            Err(error) => error,
            Ok(()) => not_yet(self.network, message.to.as_ref()),
        };
        let mut reply = Message::error(None);
        reply.id = message.id;
        reply.payloads.push(error.into());
        let mut reply = reply.into();
        address_reply(&mut reply, message.to, from);
        Some(reply)
    }

    fn handle_presence(&self, presence: Presence) -> Option<Stanza> {
        // Only an available presence asks for something (a join); unavailable, probes and
        // subscription handshakes get no error, so that no loop can start.
        if presence.type_ != PresenceType::None {
            debug!(from = ?presence.from, type_ = ?presence.type_, "presence ignored");
            return None;
        }
        let from = presence.from.clone()?;
        let error = match self.check_access(&from) {
            Err(error) => error,
            Ok(()) => not_yet(self.network, presence.to.as_ref()),
        };
        let mut reply = Presence::error();
        reply.id = presence.id;
        reply.payloads.push(error.into());
        let mut reply = reply.into();
        address_reply(&mut reply, presence.to, from);
        Some(reply)
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

/// Set a reply's `from` (what the request was addressed to) and `to` (its sender).
pub fn address_reply(stanza: &mut Stanza, from: Option<Jid>, to: Jid) {
    match stanza {
        Stanza::Iq(iq) => {
            *iq.from_mut() = from;
            *iq.to_mut() = Some(to);
        }
        Stanza::Message(m) => {
            m.from = from;
            m.to = Some(to);
        }
        Stanza::Presence(p) => {
            p.from = from;
            p.to = Some(to);
        }
    }
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
