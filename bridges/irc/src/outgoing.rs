//! What a puppet sends, as types: each line is built from one of these, in one place, with
//! the trailing parameter quoted when it must be and no CR, LF or NUL let through.

use crate::line::{format, Line};
use crate::verb::Verb;

/// One line to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out<'a> {
    /// `CAP LS 302`: registration starts.
    CapLs,
    /// `CAP REQ :caps`.
    CapReq(&'a str),
    /// `CAP END`.
    CapEnd,
    /// `AUTHENTICATE PLAIN`.
    AuthenticatePlain,
    /// `AUTHENTICATE <base64>`: the SASL PLAIN credentials.
    Authenticate(&'a str),
    /// `PASS <password>`.
    Pass(&'a str),
    /// `NICK <nick>`.
    Nick(&'a str),
    /// `USER <username> 0 * :<realname>`.
    User {
        username: &'a str,
        realname: &'a str,
    },
    /// `PING <token>`.
    Ping(&'a str),
    /// `PONG <token>`.
    Pong(&'a str),
    /// `QUIT`, with a reason unless it is empty.
    Quit(&'a str),
    /// `JOIN <channel> [<key>]`.
    Join {
        channel: &'a str,
        key: Option<&'a str>,
    },
    /// `PART <channel> [:<reason>]`; an empty reason is left out.
    Part {
        channel: &'a str,
        reason: Option<&'a str>,
    },
    /// `PRIVMSG <target> :<text>`.
    Privmsg { target: &'a str, text: &'a str },
    /// `PRIVMSG <target> :\x01ACTION <text>\x01`.
    Action { target: &'a str, text: &'a str },
    /// `NOTICE <target> :<text>`.
    Notice { target: &'a str, text: &'a str },
    /// `TOPIC <channel> :<topic>`.
    Topic { channel: &'a str, topic: &'a str },
    /// `KICK <channel> <nick> :<reason>`.
    Kick {
        channel: &'a str,
        nick: &'a str,
        reason: &'a str,
    },
    /// `MODE <channel> <changes> <nick>…`.
    Mode {
        channel: &'a str,
        changes: &'a str,
        nicks: &'a [&'a str],
    },
    /// `@+typing=<state> TAGMSG <target>`: typing `active`, `paused` or `done` (IRCv3
    /// client tag; only where the server has message-tags).
    Typing { target: &'a str, state: &'a str },
    /// `LIST`.
    List,
    /// A line the user wrote, sent as it is.
    Raw(&'a str),
}

impl Out<'_> {
    /// The line, without CR LF.
    pub fn write(&self) -> String {
        let verb = |v: Verb| v.token().expect("the bridge sends named verbs only");
        match *self {
            Out::CapLs => format(verb(Verb::Cap), &["LS", "302"]),
            Out::CapReq(caps) => format(verb(Verb::Cap), &["REQ", caps]),
            Out::CapEnd => format(verb(Verb::Cap), &["END"]),
            Out::AuthenticatePlain => format(verb(Verb::Authenticate), &["PLAIN"]),
            Out::Authenticate(token) => format(verb(Verb::Authenticate), &[token]),
            Out::Pass(password) => format(verb(Verb::Pass), &[password]),
            Out::Nick(nick) => format(verb(Verb::Nick), &[nick]),
            Out::User { username, realname } => {
                format(verb(Verb::User), &[username, "0", "*", realname])
            }
            Out::Ping(token) => format(verb(Verb::Ping), &[token]),
            Out::Pong(token) => format(verb(Verb::Pong), &[token]),
            Out::Quit("") => verb(Verb::Quit).to_owned(),
            Out::Quit(reason) => format(verb(Verb::Quit), &[reason]),
            Out::Join { channel, key } => match key {
                Some(key) => format(verb(Verb::Join), &[channel, key]),
                None => format(verb(Verb::Join), &[channel]),
            },
            Out::Part { channel, reason } => match reason {
                Some(reason) if !reason.is_empty() => format(verb(Verb::Part), &[channel, reason]),
                _ => format(verb(Verb::Part), &[channel]),
            },
            Out::Privmsg { target, text } => format(verb(Verb::Privmsg), &[target, text]),
            Out::Action { target, text } => format(
                verb(Verb::Privmsg),
                &[target, &format!("\u{1}ACTION {text}\u{1}")],
            ),
            Out::Notice { target, text } => format(verb(Verb::Notice), &[target, text]),
            Out::Topic { channel, topic } => format(verb(Verb::Topic), &[channel, topic]),
            Out::Kick {
                channel,
                nick,
                reason,
            } => format(verb(Verb::Kick), &[channel, nick, reason]),
            Out::Mode {
                channel,
                changes,
                nicks,
            } => {
                let mut params = Vec::with_capacity(2 + nicks.len());
                params.extend([channel, changes]);
                params.extend_from_slice(nicks);
                format(verb(Verb::Mode), &params)
            }
            Out::Typing { target, state } => {
                format!("@+typing={state} {}", format(verb(Verb::Tagmsg), &[target]))
            }
            Out::List => verb(Verb::List).to_owned(),
            Out::Raw(line) => crate::text::strip_line_breaks(line).into_owned(),
        }
    }

    /// The first parameter, which picks a channel's encoding (a raw line is parsed for it).
    pub fn first_param(&self) -> Option<std::borrow::Cow<'_, str>> {
        let param = match *self {
            Out::Join { channel, .. }
            | Out::Part { channel, .. }
            | Out::Topic { channel, .. }
            | Out::Kick { channel, .. }
            | Out::Mode { channel, .. } => channel,
            Out::Privmsg { target, .. }
            | Out::Action { target, .. }
            | Out::Notice { target, .. }
            | Out::Typing { target, .. } => target,
            Out::Nick(nick) => nick,
            Out::Raw(line) => {
                let first = Line::parse(line)?.params.into_iter().next()?;
                return Some(first.into());
            }
            _ => return None,
        };
        Some(param.into())
    }

    /// Whether the line carries credentials, which are never logged.
    pub fn is_secret(&self) -> bool {
        match *self {
            Out::Authenticate(_) | Out::Pass(_) => true,
            Out::Raw(line) => {
                let token = line.split(' ').next().unwrap_or_default();
                matches!(
                    Verb::parse(&token.to_ascii_uppercase()),
                    Verb::Pass | Verb::Authenticate
                ) && !line.eq_ignore_ascii_case("AUTHENTICATE PLAIN")
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_as_before() {
        let cases = [
            (Out::CapLs, "CAP LS 302"),
            (Out::CapReq("sasl server-time"), "CAP REQ :sasl server-time"),
            (Out::CapEnd, "CAP END"),
            (
                Out::Typing {
                    target: "#c",
                    state: "active",
                },
                "@+typing=active TAGMSG #c",
            ),
            (Out::AuthenticatePlain, "AUTHENTICATE PLAIN"),
            (Out::Quit(""), "QUIT"),
            (Out::Quit("bye now"), "QUIT :bye now"),
            (
                Out::User {
                    username: "alice",
                    realname: "Alice A",
                },
                "USER alice 0 * :Alice A",
            ),
            (
                Out::Part {
                    channel: "#c",
                    reason: Some(""),
                },
                "PART #c",
            ),
            (
                Out::Kick {
                    channel: "#c",
                    nick: "bob",
                    reason: "",
                },
                "KICK #c bob :",
            ),
            (
                Out::Action {
                    target: "#c",
                    text: "waves",
                },
                "PRIVMSG #c :\u{1}ACTION waves\u{1}",
            ),
            (
                Out::Mode {
                    channel: "#c",
                    changes: "-v+o",
                    nicks: &["bob", "bob"],
                },
                "MODE #c -v+o bob bob",
            ),
            (Out::List, "LIST"),
            (Out::Raw("PRIVMSG x :a\r\nQUIT"), "PRIVMSG x :aQUIT"),
        ];
        for (out, line) in cases {
            assert_eq!(out.write(), line);
        }
    }

    #[test]
    fn the_first_parameter_picks_the_encoding_and_credentials_stay_out_of_logs() {
        let join = Out::Join {
            channel: "#c",
            key: Some("k"),
        };
        assert_eq!(join.first_param().as_deref(), Some("#c"));
        assert_eq!(Out::Raw("MODE #x +i").first_param().as_deref(), Some("#x"));
        assert_eq!(Out::List.first_param(), None);
        assert!(Out::Pass("x").is_secret());
        assert!(Out::Raw("PASS x").is_secret());
        assert!(!Out::AuthenticatePlain.is_secret());
        assert!(!Out::Raw("AUTHENTICATE PLAIN").is_secret());
        assert!(!Out::Privmsg {
            target: "#c",
            text: "PASS"
        }
        .is_secret());
    }
}
