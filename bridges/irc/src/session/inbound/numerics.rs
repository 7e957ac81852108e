//! Numeric replies once registered: ISUPPORT, topics and names (a join completes at the
//! end of the names), channel lists, refused joins and messages, refused nicks, and the
//! server's other replies as server text once the connect-time burst is over.

use std::collections::BTreeSet;

use causeway_bridge::{Event, JoinFailure, ListedRoom, RoomRef};

use crate::line::Line;
use crate::session::Session;
use crate::state::MemberState;
use crate::verb::numeric::*;

impl Session {
    pub(super) async fn on_numeric(&mut self, code: u16, line: &Line) {
        let text = line.params.last().cloned().unwrap_or_default();
        match code {
            RPL_ISUPPORT => {
                // `005 nick TOKEN… :are supported`: a line too short to hold a token has none.
                let tokens = line.params.len().saturating_sub(1);
                for token in line.params.get(1..tokens).unwrap_or_default() {
                    self.rules.apply(token);
                }
                self.state_changed();
            }
            RPL_TOPIC => {
                if let Some(channel) = self.channels.get_mut(&self.rules.fold(line.param(1))) {
                    channel.topic = text;
                }
            }
            RPL_NOTOPIC | RPL_TOPICWHOTIME => {}
            RPL_NAMREPLY => {
                let folded = self.rules.fold(line.param(2));
                let entries: Vec<(BTreeSet<char>, String, Option<Box<str>>)> = text
                    .split(' ')
                    .filter(|e| !e.is_empty())
                    .map(|e| self.rules.parse_names_entry(e))
                    .collect();
                if let Some(channel) = self.channels.get_mut(&folded) {
                    for (modes, nick, id) in entries {
                        let key = self.rules.fold(&nick);
                        channel.members.insert(key, MemberState { nick, modes, id });
                    }
                }
            }
            RPL_LIST if self.listing.is_some() => {
                // me channel count :topic
                let count = line.param(2).parse().unwrap_or(0);
                let entry = ListedRoom {
                    name: line.param(1).to_owned(),
                    members: count,
                    about: text,
                    holds_rooms: false,
                };
                if let Some(listing) = &mut self.listing {
                    listing.push(entry);
                }
            }
            RPL_LISTSTART => {}
            RPL_LISTEND => {
                if let Some(rooms) = self.listing.take() {
                    self.emit(Event::RoomList {
                        user: self.user(),
                        server: self.spec.server.clone(),
                        within: None,
                        rooms: Ok(rooms),
                    })
                    .await;
                }
            }
            RPL_ENDOFNAMES => {
                let folded = self.rules.fold(line.param(1));
                let Some(channel) = self.channels.get_mut(&folded) else {
                    return;
                };
                if channel.joined && !self.refreshing.remove(&folded) {
                    return;
                }
                // Joined, or (taken over from an earlier gateway) its members known again.
                channel.joined = true;
                self.state_changed();
                let channel = self.channels.get(&folded).expect("present above");
                let event = Event::Joined {
                    user: self.spec.user.clone(),
                    room: RoomRef {
                        server: self.spec.server.clone(),
                        name: channel.name.clone(),
                    },
                    nick: self.nick.clone(),
                    members: channel.member_list(&self.rules),
                    subject: channel.topic.clone(),
                };
                self.emit(event).await;
            }
            ERR_NOSUCHCHANNEL | ERR_TOOMANYCHANNELS | ERR_CHANNELISFULL | ERR_INVITEONLYCHAN
            | ERR_BANNEDFROMCHAN | ERR_BADCHANNELKEY | ERR_BADCHANMASK | ERR_NEEDREGGEDNICK
                if self
                    .channels
                    .get(&self.rules.fold(line.param(1)))
                    .is_some_and(|c| !c.joined) =>
            {
                let failure = match code {
                    ERR_CHANNELISFULL => JoinFailure::Full,
                    ERR_INVITEONLYCHAN => JoinFailure::InviteOnly,
                    ERR_BANNEDFROMCHAN => JoinFailure::Banned,
                    ERR_BADCHANNELKEY => JoinFailure::BadKey,
                    ERR_NOSUCHCHANNEL | ERR_BADCHANMASK => JoinFailure::NoSuchRoom,
                    _ => JoinFailure::Other,
                };
                let state = self
                    .channels
                    .remove(&self.rules.fold(line.param(1)))
                    .expect("checked above");
                self.state_changed();
                let room = self.room(&state.name);
                self.emit(Event::JoinFailed {
                    user: self.user(),
                    room,
                    failure,
                    text,
                })
                .await;
            }
            ERR_CANNOTSENDTOCHAN | ERR_NOSUCHNICK => {
                let target = line.param(1).to_owned();
                let folded = self.rules.fold(&target);
                let id = self
                    .echoes
                    .iter()
                    .position(|e| e.target == folded)
                    .and_then(|i| self.echoes.remove(i))
                    .map(|e| e.id);
                let peer = self.peer(&target);
                self.emit(Event::SendFailed {
                    user: self.user(),
                    peer,
                    id,
                    text,
                })
                .await;
            }
            ERR_NICKNAMEINUSE | ERR_NICKCOLLISION | ERR_UNAVAILRESOURCE | ERR_ERRONEUSNICKNAME => {
                let nick = line.param(1).to_owned();
                let in_use = code != ERR_ERRONEUSNICKNAME;
                self.emit(Event::NickRefused {
                    user: self.user(),
                    server: self.spec.server.clone(),
                    nick,
                    in_use,
                    text,
                })
                .await;
            }
            RPL_ENDOFMOTD | ERR_NOMOTD => self.settled = true,
            // The connect-time burst.
            _ if !self.settled
                || code < 100
                || (RPL_STATSCONN..=RPL_GLOBALUSERS).contains(&code) => {}
            _ => {
                let text = line.params[1..].join(" ");
                self.emit(Event::ServerText {
                    user: self.user(),
                    server: self.spec.server.clone(),
                    text,
                })
                .await;
            }
        }
    }
}
