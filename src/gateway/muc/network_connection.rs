//! What the network reports about the puppet's connection and its refusals: connections
//! lost and won again (told in every room on the server, and what changed meanwhile),
//! joins that failed, actions the network refused.

use std::collections::BTreeMap;

use causeway_bridge::{BridgeError, JoinFailure, Member};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::parsers::message::MessageType;
use tokio_xmpp::parsers::muc::user::Status;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType};
use tokio_xmpp::Stanza;

use super::{fold, Effects, Muc, OnError, RoomKey, RoomState};
use crate::gateway::stanzas::{error, message, message_error, occupant_presence, presence_error};

impl Muc {
    /// What to tell the user when the network refused an action.
    pub fn request_failed(&mut self, on_error: OnError, err: &BridgeError) -> Vec<Stanza> {
        match on_error {
            OnError::Join(key) => {
                let failure = match err {
                    BridgeError::Invalid(_) => JoinFailure::BadNick,
                    BridgeError::Unreachable(_) => JoinFailure::Unreachable,
                    _ => JoinFailure::Other,
                };
                self.join_failed(&key, failure, &err.to_string())
            }
            OnError::List(key) => self.list_failed(key, err),
            OnError::Quiet => vec![],
            OnError::Message { to, sender, id } => {
                let condition = match err {
                    BridgeError::NotFound(_) => DefinedCondition::ItemNotFound,
                    BridgeError::Invalid(_) => DefinedCondition::BadRequest,
                    BridgeError::Unreachable(_) => DefinedCondition::RemoteServerNotFound,
                    _ => DefinedCondition::ServiceUnavailable,
                };
                vec![message_error(
                    to,
                    sender.into(),
                    id,
                    error(ErrorType::Cancel, condition, err.to_string()),
                )]
            }
        }
    }

    /// A join the network refused: every resource waiting on it gets a presence error.
    pub(super) fn join_failed(
        &mut self,
        key: &RoomKey,
        failure: JoinFailure,
        text: &str,
    ) -> Vec<Stanza> {
        let Some(mut state) = self.rooms.remove(key) else {
            return vec![];
        };
        let (type_, condition) = match failure {
            JoinFailure::NickInUse => (ErrorType::Cancel, DefinedCondition::Conflict),
            JoinFailure::BadNick => (ErrorType::Modify, DefinedCondition::JidMalformed),
            JoinFailure::InviteOnly => (ErrorType::Auth, DefinedCondition::RegistrationRequired),
            JoinFailure::Banned => (ErrorType::Auth, DefinedCondition::Forbidden),
            JoinFailure::BadKey => (ErrorType::Auth, DefinedCondition::NotAuthorized),
            JoinFailure::Full => (ErrorType::Wait, DefinedCondition::ServiceUnavailable),
            JoinFailure::NoSuchRoom => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
            JoinFailure::Unreachable => (ErrorType::Cancel, DefinedCondition::RemoteServerNotFound),
            JoinFailure::Other => (ErrorType::Cancel, DefinedCondition::NotAllowed),
        };
        let mut out = Vec::new();
        for pending in std::mem::take(&mut state.pending) {
            if let Some(from) = state.occupant(&pending.nick) {
                out.push(presence_error(
                    from,
                    pending.resource.into(),
                    pending.id,
                    error(type_.clone(), condition.clone(), text),
                ));
            }
        }
        out
    }

    /// The connection to `server` was lost, for now or for good.
    pub(super) fn disconnected(
        &self,
        fx: &mut Effects,
        user: &BareJid,
        server: &str,
        reason: &str,
        retrying: bool,
    ) {
        let text = if retrying {
            format!("Connection to {server} lost ({reason}); reconnecting…")
        } else {
            format!("Connection to {server} lost for good: {reason}")
        };
        self.notice_server_rooms(fx, user, server, &text);
    }

    /// The connection to `server` is back; the channels are being joined again.
    pub(super) fn reconnected(&self, fx: &mut Effects, user: &BareJid, server: &str) {
        self.notice_server_rooms(
            fx,
            user,
            server,
            &format!("Reconnected to {server}; joining the channels again."),
        );
    }

    /// A message from the room itself to every joined resource of `user` in every room on
    /// `server` (connection news).
    fn notice_server_rooms(&self, fx: &mut Effects, user: &BareJid, server: &str, text: &str) {
        for (key, state) in &self.rooms {
            if key.0 != *user || !key.1.eq_ignore_ascii_case(server) {
                continue;
            }
            let Some(room_jid) = state.room_jid() else {
                continue;
            };
            for resource in &state.resources {
                fx.stanzas.push(
                    message(
                        MessageType::Groupchat,
                        room_jid.clone(),
                        resource.clone().into(),
                        None,
                        text,
                    )
                    .into(),
                );
            }
        }
    }

    /// The room as it is after a rejoin, told as differences: who left, who came or changed,
    /// our own nick if the server gave another, and the subject if it changed.
    pub(super) fn rejoined(
        &mut self,
        fx: &mut Effects,
        key: &RoomKey,
        nick: String,
        members: BTreeMap<String, Member>,
        subject: String,
    ) {
        let Some(state) = self.rooms.get_mut(key) else {
            return;
        };
        let old_members = std::mem::replace(&mut state.members, members);
        let old_nick = std::mem::replace(&mut state.nick, nick.clone());
        let subject_changed = state.subject != subject;
        state.subject = subject.clone();
        let Some(state) = self.rooms.get(key) else {
            return;
        };
        let own = fold(&nick);
        let own_old = fold(&old_nick);
        for resource in &state.resources {
            let to: Jid = resource.clone().into();
            if own != own_old {
                let privilege = state
                    .members
                    .get(&own)
                    .map(|m| m.privilege)
                    .unwrap_or_default();
                if let Some(from) = state.occupant(&old_nick) {
                    let statuses = vec![Status::NewNick, Status::SelfPresence];
                    let presence = occupant_presence(
                        from,
                        to.clone(),
                        privilege,
                        true,
                        statuses,
                        Some(nick.clone()),
                        None,
                    );
                    fx.stanzas.push(state.stamped(&nick, presence));
                }
                if let Some(from) = state.occupant(&nick) {
                    let presence = occupant_presence(
                        from,
                        to.clone(),
                        privilege,
                        false,
                        vec![Status::SelfPresence, Status::AssignedNick],
                        None,
                        None,
                    );
                    fx.stanzas.push(state.stamped(&nick, presence));
                }
            }
            for (folded, member) in &old_members {
                if *folded != own_old && !state.members.contains_key(folded) {
                    fx.stanzas
                        .extend(state.member_presence(member, to.clone(), true));
                }
            }
            for (folded, member) in &state.members {
                if *folded != own && old_members.get(folded) != Some(member) {
                    fx.stanzas
                        .extend(state.member_presence(member, to.clone(), false));
                }
            }
            if subject_changed {
                if let Some(room_jid) = state.room_jid() {
                    fx.stanzas
                        .push(RoomState::subject_message(room_jid, to.clone(), &subject));
                }
            }
        }
    }
}
