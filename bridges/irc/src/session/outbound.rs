//! What the user asks of the session, as IRC commands: joins, parts, messages (cut to fit
//! the line limit, awaiting their echo), topics, nicks, kicks, privileges, lists, raw lines.

use causeway_bridge::{Departure, Event, MessageKind, Privilege};

use super::{encoding, Command, PendingEcho, Session};
use crate::outgoing::Out;
use crate::state::Channel;
use crate::text::split_body;
use crate::verb::Verb;

impl Session {
    pub(super) async fn handle_command(&mut self, command: Command) {
        match command {
            Command::Join { channel, key } => self.join(channel, key).await,
            Command::Part { channel, reason } => self.part(&channel, reason.as_deref()),
            Command::Send {
                target,
                body,
                kind,
                id,
            } => self.send_message(target, body, kind, id).await,
            Command::Typing { target, typing } => self.typing(&target, typing),
            Command::Topic { channel, topic } => self.send(Out::Topic {
                channel: &channel,
                topic: &topic,
            }),
            Command::Nick(nick) => self.send(Out::Nick(&nick)),
            Command::Kick {
                channel,
                nick,
                reason,
            } => self.send(Out::Kick {
                channel: &channel,
                nick: &nick,
                reason: reason.as_deref().unwrap_or(""),
            }),
            Command::Privilege {
                channel,
                nick,
                privilege,
            } => self.set_privilege(&channel, &nick, privilege),
            Command::Quit(reason) => self.quit(reason).await,
            Command::List => {
                // A connection opened only for this ends once the list is in.
                self.had_channels = true;
                self.listing = Some(Vec::new());
                self.send(Out::List);
            }
            Command::Raw(line) => {
                // A connection opened only for raw commands lingers, then ends.
                self.had_channels = true;
                let line = crate::text::strip_line_breaks(&line);
                if !line.trim().is_empty() {
                    self.send(Out::Raw(&line));
                }
            }
        }
    }

    async fn join(&mut self, channel: String, key: Option<String>) {
        let folded = self.rules.fold(&channel);
        if self.parting.contains(&folded) {
            // Left and joined again before the PART came back: join anew (the
            // server takes the PART and the JOIN in order).
            self.channels.remove(&folded);
        }
        if let Some(existing) = self.channels.get(&folded) {
            if existing.joined {
                // Already in: the state as it is, for a second resource.
                let event = Event::Joined {
                    user: self.user(),
                    room: self.room(&existing.name),
                    nick: self.nick.clone(),
                    members: existing.member_list(&self.rules),
                    subject: existing.topic.clone(),
                };
                self.emit(event).await;
            }
            return;
        }
        self.set_channel_encoding(&folded, &channel).await;
        self.channels.insert(folded, Channel::joining(&channel));
        self.had_channels = true;
        self.state_changed();
        self.send(Out::Join {
            channel: &channel,
            key: key.as_deref(),
        });
    }

    /// The encoding the user chose for a channel, if any, for its lines both ways.
    pub(super) async fn set_channel_encoding(&mut self, folded: &str, channel: &str) {
        let wanted = self
            .inner
            .identities
            .channel_encoding(&self.spec.user, &self.spec.server, channel)
            .await;
        match wanted.as_deref().and_then(encoding) {
            Some(chosen) => self.encodings.insert(folded.to_owned(), chosen),
            None => self.encodings.remove(folded),
        };
    }

    fn part(&mut self, channel: &str, reason: Option<&str>) {
        let folded = self.rules.fold(channel);
        let Some(state) = self.channels.get(&folded) else {
            return;
        };
        if state.joined {
            self.parting.insert(folded.clone());
        } else {
            // Still joining: forget it; the JOIN reply will be ignored.
            self.channels.remove(&folded);
            self.state_changed();
        }
        self.send(Out::Part { channel, reason });
    }

    async fn quit(&mut self, reason: Option<String>) {
        let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
        for channel in channels.into_iter().filter(|c| c.joined) {
            let room = self.room(&channel.name);
            let reason = Some(reason.clone().unwrap_or_else(|| "disconnected".into()));
            self.emit(Event::Left {
                user: self.user(),
                room,
                departure: Departure::Quit,
                reason,
            })
            .await;
        }
        self.quit_reason = Some(reason.unwrap_or_default());
    }

    /// The `+typing` client tag, where the server passes client tags on (message-tags)
    /// and, for a channel, the puppet is in it; nothing otherwise.
    fn typing(&self, target: &str, typing: bool) {
        if !self.caps.contains("message-tags") {
            return;
        }
        let folded = self.rules.fold(target);
        if self.rules.is_channel(target) && !self.channels.get(&folded).is_some_and(|c| c.joined) {
            return;
        }
        let state = if typing { "active" } else { "done" };
        self.send(Out::Typing { target, state });
    }

    pub(super) async fn send_message(
        &mut self,
        target: String,
        body: String,
        kind: MessageKind,
        id: String,
    ) {
        let is_channel = self.rules.is_channel(&target);
        let folded = self.rules.fold(&target);
        let peer = self.peer_folded(&target, &folded);
        if is_channel && !self.channels.get(&folded).is_some_and(|c| c.joined) {
            let text = format!("you are not in {target}");
            self.emit(Event::SendFailed {
                user: self.user(),
                peer,
                id: Some(id),
                text,
            })
            .await;
            return;
        }
        let (command, wrap) = match kind {
            MessageKind::Notice => (Verb::Notice, 0),
            MessageKind::Action => (Verb::Privmsg, 9),
            MessageKind::Normal => (Verb::Privmsg, 0),
        };
        let command = command.token().expect("a named verb");
        // The body as typed comes back as our own message; IRC may get codes for its styling.
        let parts = if self.spec.settings.irc_formatting {
            let coded = crate::formatting::from_styled(&body);
            split_body(&coded, self.source_len, command, &target, wrap)
        } else {
            split_body(&body, self.source_len, command, &target, wrap)
        };
        if parts.is_empty() {
            return;
        }
        let count = parts.len();
        for text in &parts {
            let (target, text) = (target.as_str(), text.as_str());
            self.send(match kind {
                MessageKind::Notice => Out::Notice { target, text },
                MessageKind::Action => Out::Action { target, text },
                MessageKind::Normal => Out::Privmsg { target, text },
            });
        }
        if self.caps.contains("echo-message") {
            self.echoes.push_back(PendingEcho {
                target: folded,
                id,
                body,
                kind,
                lines_left: count,
            });
        } else {
            self.emit_own_message(peer, body, kind, None, Some(id))
                .await;
        }
    }

    fn set_privilege(&self, channel: &str, nick: &str, privilege: Privilege) {
        let current = self
            .channels
            .get(&self.rules.fold(channel))
            .and_then(|c| c.members.get(&self.rules.fold(nick)))
            .map(|m| m.modes.clone())
            .unwrap_or_default();
        let target = self.rules.mode_of_privilege(privilege);
        let mut changes = String::new();
        let mut args = Vec::new();
        for mode in current.iter().filter(|m| Some(**m) != target) {
            changes.push_str(&format!("-{mode}"));
            args.push(nick);
        }
        if let Some(mode) = target.filter(|m| !current.contains(m)) {
            changes.push_str(&format!("+{mode}"));
            args.push(nick);
        }
        if !changes.is_empty() {
            self.send(Out::Mode {
                channel,
                changes: &changes,
                nicks: &args,
            });
        }
    }
}
