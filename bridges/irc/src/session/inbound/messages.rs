//! Messages: PRIVMSG and NOTICE from users become messages (CTCP ACTION a `/me`, CTCP
//! VERSION and PING answered, other CTCP dropped), our own coming back with echo-message
//! are matched to what we sent, and server notices become server text.

use std::time::{Duration, SystemTime};

use causeway_bridge::{Event, MessageKind, Peer};

use crate::line::Line;
use crate::outgoing::Out;
use crate::session::Session;
use crate::verb::Verb;

/// The CTCP requests we act on.
enum Ctcp {
    Action,
    Version,
    Ping,
    Other,
}

impl Ctcp {
    fn of(verb: &str) -> Ctcp {
        match verb.to_ascii_uppercase().as_str() {
            "ACTION" => Ctcp::Action,
            "VERSION" => Ctcp::Version,
            "PING" => Ctcp::Ping,
            _ => Ctcp::Other,
        }
    }
}

impl Session {
    pub(super) async fn on_message(&mut self, mut line: Line, from: &str) {
        // The line is ours: its text becomes the message body without a copy.
        let mut body = std::mem::take(line.params.get_mut(1).unwrap_or(&mut String::new()));
        let target = line.param(0).to_owned();
        let notice = line.verb == Verb::Notice;
        let server_source = line
            .source
            .as_deref()
            .is_none_or(|s| !s.contains('!') && !s.contains('@'));
        if server_source
            || (!self.rules.is_channel(&target) && !self.is_me(&target) && !self.is_me(from))
        {
            // Server notices, and notices to `*` or `AUTH` during connection.
            self.emit(Event::ServerText {
                user: self.user(),
                server: self.spec.server.clone(),
                text: body,
            })
            .await;
            return;
        }
        let mut kind = if notice {
            MessageKind::Notice
        } else {
            MessageKind::Normal
        };
        if let Some(ctcp) = body.strip_prefix('\u{1}') {
            let ctcp = ctcp.strip_suffix('\u{1}').unwrap_or(ctcp).to_owned();
            let (verb, rest) = ctcp.split_once(' ').unwrap_or((&ctcp, ""));
            match (Ctcp::of(verb), notice) {
                (Ctcp::Action, _) => {
                    kind = MessageKind::Action;
                    body = rest.to_owned();
                }
                (_, true) => return, // CTCP replies to nothing we asked
                // A flood of requests (to us, or to a channel of many puppets) is answered
                // a few at a time: the answers would queue before the user's own lines.
                (Ctcp::Version | Ctcp::Ping, false) if !self.may_answer_ctcp() => return,
                (Ctcp::Version, false) => {
                    let text = format!("\u{1}VERSION causeway {}\u{1}", env!("CARGO_PKG_VERSION"));
                    self.send(Out::Notice {
                        target: from,
                        text: &text,
                    });
                    return;
                }
                (Ctcp::Ping, false) => {
                    let text = format!("\u{1}PING {rest}\u{1}");
                    self.send(Out::Notice {
                        target: from,
                        text: &text,
                    });
                    return;
                }
                (Ctcp::Other, false) => return,
            }
        }
        let time = line.tags.get("time").and_then(|t| parse_server_time(t));
        if self.is_me(from) {
            // echo-message: our own message coming back.
            let folded = self.rules.fold(&target);
            let peer = self.peer(&target);
            let own = match self.echoes.iter().position(|e| e.target == folded) {
                Some(i) => {
                    let pending = &mut self.echoes[i];
                    pending.lines_left -= 1;
                    if pending.lines_left > 0 {
                        return;
                    }
                    let pending = self.echoes.remove(i).expect("index is valid");
                    Some((pending.id, pending.body, pending.kind))
                }
                None => None,
            };
            let (own_id, body, kind) = match own {
                Some((id, body, kind)) => (Some(id), body, kind),
                None => (None, body, kind),
            };
            if let (Peer::User { .. }, Some(id)) = (&peer, &own_id) {
                // The server took our private message: a receipt, for a client that asked.
                self.emit(Event::Delivered {
                    user: self.user(),
                    peer: peer.clone(),
                    id: id.clone(),
                })
                .await;
            }
            self.emit_own_message(peer, body, kind, time, own_id).await;
            return;
        }
        let peer = if self.rules.is_channel(&target) {
            self.peer(&target)
        } else {
            self.peer(from)
        };
        if let Peer::Room(room) = &peer {
            if !self
                .channels
                .get(&self.rules.fold(&room.name))
                .is_some_and(|c| c.joined)
            {
                return;
            }
        }
        let event = Event::Message {
            user: self.user(),
            peer,
            from: from.to_owned(),
            body,
            kind,
            time,
            own_id: None,
            remote_id: self.line_id(),
            refs: causeway_bridge::Refs::none(),
            media: None,
        };
        self.emit(event).await;
    }
}

impl Session {
    /// A TAGMSG: someone typing (`+typing`, or the draft's `+draft/typing`) in a channel
    /// the puppet is in, or to the puppet.
    pub(super) async fn on_tagmsg(&mut self, line: &Line, from: &str) {
        let Some(state) = line
            .tags
            .get("+typing")
            .or_else(|| line.tags.get("+draft/typing"))
        else {
            return;
        };
        if from.is_empty() || self.is_me(from) {
            return;
        }
        let target = line.param(0);
        let peer = if self.rules.is_channel(target) {
            if !self
                .channels
                .get(&self.rules.fold(target))
                .is_some_and(|c| c.joined)
            {
                return;
            }
            self.peer(target)
        } else {
            self.peer(from)
        };
        self.emit(Event::Typing {
            user: self.user(),
            peer,
            from: from.to_owned(),
            typing: state == "active",
        })
        .await;
    }
}

/// CTCP requests answered: three at once, then one every two seconds.
const CTCP_BURST: u32 = 3;
const CTCP_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

impl Session {
    /// Whether a CTCP request may be answered now (and it is counted).
    fn may_answer_ctcp(&mut self) -> bool {
        let limiter = self.ctcp_replies.get_or_insert_with(|| {
            let quota = governor::Quota::with_period(CTCP_EVERY)
                .expect("a period")
                .allow_burst(std::num::NonZeroU32::new(CTCP_BURST).expect("not zero"));
            Box::new(governor::RateLimiter::direct(quota))
        });
        limiter.check().is_ok()
    }
}

/// Parse an IRCv3 `time` tag (`2024-01-31T12:34:56.789Z`).
pub fn parse_server_time(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (year, month, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>());
    let (h, m, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let millis: u32 = format!("{millis:0<3}").get(..3)?.parse().ok()?;
    // Four-digit years only: past them the arithmetic below would overflow (found by the
    // fuzzer, irc_line), and no server stamps a message in the year 20,000.
    if !(0..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&m)
        || !(0..=60).contains(&s)
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_time_parses() {
        let t = parse_server_time("2024-01-31T12:34:56.789Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(secs.as_secs(), 1_706_704_496);
        assert_eq!(secs.subsec_millis(), 789);
        assert_eq!(
            parse_server_time("1970-01-01T00:00:00Z"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(parse_server_time("garbage"), None);
        assert_eq!(parse_server_time("2024-13-01T00:00:00Z"), None);
        // Found by the fuzzer (irc_line): a year that overflowed the day count.
        assert_eq!(parse_server_time("20277777777777-01-01T00:00:0Z"), None);
        assert_eq!(parse_server_time("2024-01-01T-1:00:00Z"), None);
    }
}
