//! Connecting and registering: CAP LS 302 and the capabilities we use, SASL PLAIN when the
//! user has a password, PASS, NICK and USER, until the server welcomes us or says why not.

use causeway_bridge::JoinFailure;
use tracing::info;

use super::io::{read_lines, Inbound, Writer};
use super::Session;
use crate::line::Line;
use crate::outgoing::Out;
use crate::state::ServerRules;
use crate::transport;
use crate::verb::{numeric::*, Verb};

/// The capabilities we use when offered.
const WANTED_CAPS: &[&str] = &[
    "multi-prefix",
    "server-time",
    "message-tags",
    "echo-message",
    "away-notify",
    "account-notify",
    "chghost",
    "userhost-in-names",
    "batch",
    "sasl",
];

/// Why registration failed, for the joins waiting on it.
pub(super) type Failure = (JoinFailure, String);

/// What a registration has seen so far.
struct Progress {
    /// Capabilities offered (`CAP LS` may come in several lines).
    offered: Vec<String>,
    /// Nick variants tried while our old connection may still hold the nick.
    nick_tries: usize,
    reconnecting: bool,
}

/// The `CAP` replies we act on.
enum CapReply {
    Ls,
    Ack,
    Nak,
    Other,
}

impl CapReply {
    fn of(line: &Line) -> CapReply {
        match line.param(1) {
            "LS" => CapReply::Ls,
            "ACK" => CapReply::Ack,
            "NAK" => CapReply::Nak,
            _ => CapReply::Other,
        }
    }
}

impl Session {
    /// Connect and register; `Err` carries why, for the joins waiting on it.
    pub(super) async fn register(
        &mut self,
        lines_tx: flume::Sender<Inbound>,
        lines: &mut flume::Receiver<Inbound>,
        reconnecting: bool,
    ) -> Result<(), Failure> {
        self.caps.clear();
        self.rules = ServerRules::default();
        self.settled = false;
        self.echoes.clear();
        let settings = &self.spec.settings;
        let server = &self.spec.server;
        let (port, tls, verify) = (settings.port, settings.tls, settings.verify_tls);
        let unreachable = |e: String| (JoinFailure::Unreachable, e);
        let mut kept = None;
        let write = match self.inner.keeper() {
            // Through the keeper: it holds the socket, its lines come numbered. While its
            // link is being made again, the connection waits for it (within the
            // registration's time).
            Some(_) => {
                let keeper = self.inner.attached().await;
                let io = keeper
                    .open(server, port, tls, verify, lines_tx)
                    .await
                    .map_err(unreachable)?;
                kept = Some(io.conn());
                tokio::io::split(Box::new(io) as Box<dyn transport::IrcIo>).1
            }
            None => {
                let io = transport::connect(server, port, tls, verify)
                    .await
                    .map_err(|e| unreachable(format!("cannot connect to {server}:{port}: {e}")))?;
                let (read, write) = tokio::io::split(io);
                tokio::spawn(tracing::Instrument::in_current_span(read_lines(
                    read, lines_tx,
                )));
                write
            }
        };
        self.writer = Some(Writer::start(write, &self.spec.settings));
        // A new connection's lines are numbered from 1 again.
        self.lines = super::kept::LineBook::default();
        self.kept = kept;

        self.send_urgent(Out::CapLs);
        if let Some(password) = &self.spec.settings.password {
            self.send_urgent(Out::Pass(password));
        }
        let identity = &self.spec.identity;
        self.send_urgent(Out::Nick(&identity.nick));
        self.send_urgent(Out::User {
            username: &identity.username,
            realname: &identity.realname,
        });

        let mut progress = Progress {
            offered: Vec::new(),
            nick_tries: 0,
            reconnecting,
        };
        loop {
            let line = match lines.recv_async().await {
                Ok(Inbound::Line(bytes)) => self.read(&bytes),
                Ok(Inbound::Numbered(seq, bytes)) => {
                    self.ack(seq);
                    self.read(&bytes)
                }
                // A connection half registered is not worth claiming again: it is made anew.
                Ok(Inbound::Closed(reason) | Inbound::Unlinked(reason)) => {
                    return Err((JoinFailure::Unreachable, reason))
                }
                Err(_) => return Err((JoinFailure::Unreachable, "connection ended".into())),
            };
            if let Some(line) = line {
                if let Some(outcome) = self.on_registration_line(&line, &mut progress) {
                    return outcome;
                }
            }
        }
    }

    /// One line during registration; `Some` once registration is over.
    fn on_registration_line(
        &mut self,
        line: &Line,
        progress: &mut Progress,
    ) -> Option<Result<(), Failure>> {
        match line.verb {
            Verb::Ping => self.send_urgent(Out::Pong(line.param(0))),
            Verb::Error => return Some(Err((JoinFailure::Unreachable, line.param(0).to_owned()))),
            Verb::Cap => self.on_cap(line, progress),
            Verb::Authenticate if line.param(0) == "+" => self.send_sasl_plain(),
            Verb::Numeric(code) => return self.on_registration_numeric(code, line, progress),
            _ => {}
        }
        None
    }

    fn on_cap(&mut self, line: &Line, progress: &mut Progress) {
        match CapReply::of(line) {
            CapReply::Ls => {
                // `CAP * LS * :caps` continues; `CAP * LS :caps` ends the list.
                let more = line.params.len() > 3 && line.param(2) == "*";
                progress.offered.extend(
                    line.last_param()
                        .split(' ')
                        .filter(|c| !c.is_empty())
                        .map(|c| c.split('=').next().unwrap_or(c).to_owned()),
                );
                if !more {
                    let sasl = self.spec.identity.sasl_password.is_some();
                    let wanted: Vec<&str> = WANTED_CAPS
                        .iter()
                        .copied()
                        .filter(|c| progress.offered.iter().any(|o| o == c))
                        .filter(|c| *c != "sasl" || sasl)
                        .collect();
                    if wanted.is_empty() {
                        self.send_urgent(Out::CapEnd);
                    } else {
                        self.send_urgent(Out::CapReq(&wanted.join(" ")));
                    }
                }
            }
            CapReply::Ack => {
                self.caps.extend(
                    line.last_param()
                        .split(' ')
                        .filter(|c| !c.is_empty())
                        .map(|c| c.trim_start_matches('-').to_owned()),
                );
                if self.caps.contains("sasl") && self.spec.identity.sasl_password.is_some() {
                    self.send_urgent(Out::AuthenticatePlain);
                } else {
                    self.send_urgent(Out::CapEnd);
                }
            }
            CapReply::Nak => self.send_urgent(Out::CapEnd),
            CapReply::Other => {}
        }
    }

    fn send_sasl_plain(&self) {
        use base64::Engine as _;
        let identity = &self.spec.identity;
        let password = identity.sasl_password.as_deref().unwrap_or_default();
        let account = identity.sasl_account.as_deref().unwrap_or(&identity.nick);
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{account}\0{account}\0{password}"));
        self.send_urgent(Out::Authenticate(&token));
    }

    fn on_registration_numeric(
        &mut self,
        code: u16,
        line: &Line,
        progress: &mut Progress,
    ) -> Option<Result<(), Failure>> {
        let server = &self.spec.server;
        let nick = &self.spec.identity.nick;
        let failure = match code {
            RPL_SASLSUCCESS => {
                info!(user = %self.spec.user, %server, "SASL authentication succeeded");
                self.send_urgent(Out::CapEnd);
                return None;
            }
            ERR_SASLFAIL | ERR_SASLTOOLONG | ERR_SASLABORTED | ERR_SASLALREADY => {
                self.send_urgent(Out::CapEnd);
                self.send_urgent(Out::Quit(""));
                let text = line.last_param();
                (
                    JoinFailure::Other,
                    format!("SASL authentication failed on {server}: {text}"),
                )
            }
            RPL_WELCOME => {
                // (A server without CAP support answers 421 to CAP and registers us anyway.)
                self.nick = line.param(0).to_owned();
                return Some(Ok(()));
            }
            ERR_NICKNAMEINUSE | ERR_NICKCOLLISION | ERR_UNAVAILRESOURCE
                if progress.reconnecting && progress.nick_tries < 3 =>
            {
                // Our old connection may still hold the nick: take a variant for now.
                progress.nick_tries += 1;
                let variant = format!("{}{}", self.nick, "_".repeat(progress.nick_tries));
                self.send_urgent(Out::Nick(&variant));
                return None;
            }
            ERR_NICKNAMEINUSE | ERR_NICKCOLLISION | ERR_UNAVAILRESOURCE => (
                JoinFailure::NickInUse,
                format!("{nick} is already in use on {server}"),
            ),
            ERR_ERRONEUSNICKNAME | ERR_NONICKNAMEGIVEN => (
                JoinFailure::BadNick,
                format!(
                    "{nick:?} is not a valid nick on {server}: {}",
                    line.last_param()
                ),
            ),
            ERR_PASSWDMISMATCH | ERR_YOUREBANNEDCREEP => (
                JoinFailure::Banned,
                format!("{server} refused the connection: {}", line.last_param()),
            ),
            _ => return None,
        };
        Some(Err(failure))
    }
}
