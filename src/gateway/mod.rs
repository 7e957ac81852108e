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
mod iq;
pub mod limits;
pub mod mam;
pub mod muc;
pub mod occupant_id;
pub mod oob;
pub(crate) mod persistent;
pub mod privilege;
pub mod register;
pub mod rich;
pub(crate) mod serve;
pub mod stanzas;

use causeway_bridge::{BridgeError, Event, NetworkKind};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::{Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
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
    /// Users log in to their own accounts on the network (`Network::has_accounts`): the
    /// domain offers registration and the account commands.
    accounts: bool,
    /// Messages a minute per user, shared with the other domains.
    send_rate: Option<limits::SendRate>,
    /// What the users' servers let the gateway put into their accounts (XEP-0356).
    privileges: privilege::Privileges,
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
            accounts: false,
            send_rate: None,
            privileges: privilege::Privileges::default(),
        }
    }

    /// With a limit on the messages a user sends (shared with the other domains).
    pub fn with_send_rate(mut self, rate: limits::SendRate) -> Gateway {
        self.send_rate = Some(rate);
        self
    }

    /// Whether users log in to their own accounts on the network (`Network::has_accounts`).
    pub fn with_accounts(mut self, accounts: bool) -> Gateway {
        self.accounts = accounts;
        self
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

    /// The network this domain serves.
    pub fn network(&self) -> NetworkKind {
        self.network
    }

    /// A new message rate (a configuration reload), for every domain sharing it.
    pub fn set_send_rate(&self, per_minute: u32, burst: u32) {
        if let Some(rate) = &self.send_rate {
            rate.set(per_minute, burst);
        }
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

    /// The stanzas that make `pushes` in users' accounts, as far as their servers allow,
    /// each with what the store keeps of it.
    pub fn pushes(
        &mut self,
        pushes: Vec<privilege::Push>,
    ) -> Vec<((String, &'static str, String), Stanza)> {
        let domain = self.domain.clone();
        pushes
            .into_iter()
            .filter_map(|push| {
                let key = push.key();
                Some((key, self.privileges.stanza(&domain, push)?))
            })
            .collect()
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
            .map(|(occupant, to, id)| {
                let statuses = vec![Status::SelfPresence, Status::ServiceShutdown];
                let reason = Some("the gateway is shutting down".to_owned());
                let presence = stanzas::occupant_presence(
                    occupant,
                    to,
                    causeway_bridge::Privilege::None,
                    true,
                    statuses,
                    None,
                    reason,
                );
                occupant_id::stamp(presence, &id)
            })
            .collect()
    }

    fn handle_message(&mut self, mut message: Message) -> Effects {
        if message.type_ == MessageType::Error {
            return Effects::default();
        }
        let Some(from) = message.from.take() else {
            return Effects::default();
        };
        if self.privileges.advertised(&from, &message) {
            return Effects::default();
        }
        let to = message
            .to
            .take()
            .unwrap_or_else(|| self.domain.clone().into());
        let error = match self.check_access(&from) {
            Err(error) => error,
            Ok(()) => match (&mut self.muc, from.try_as_full()) {
                (Some(muc), Ok(full)) => match muc.addressing().parse(&to) {
                    Ok(_)
                        if !message.bodies.is_empty()
                            && self
                                .send_rate
                                .as_ref()
                                .is_some_and(|rate| !rate.allows(&full.to_bare())) =>
                    {
                        too_fast()
                    }
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

/// A user past their message rate ([`limits::SendRate`]).
fn too_fast() -> StanzaError {
    StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::ResourceConstraint,
        "en",
        "you are sending faster than this gateway allows one user: this message was not sent; wait a moment and send it again",
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
