//! What the server says, once registered: one function per kind of line. `messages` turns
//! PRIVMSG and NOTICE into messages, `membership` follows who is where (JOIN, PART, KICK,
//! QUIT, NICK, MODE, TOPIC, AWAY, CHGHOST), `numerics` handles the numeric replies.

mod membership;
mod messages;
mod numerics;

use causeway_bridge::Departure;

use super::Session;
use crate::line::Line;
use crate::outgoing::Out;
use crate::verb::Verb;

pub use messages::parse_server_time;

impl Session {
    /// Handle one line from the server; `Some(reason)` when the server ends the connection.
    pub(super) async fn handle_line(&mut self, line: Line) -> Option<String> {
        let from = line.source_nick().unwrap_or_default().to_owned();
        match line.verb {
            Verb::Ping => self.send_urgent(Out::Pong(line.param(0))),
            Verb::Error => {
                return Some(format!(
                    "the server closed the connection: {}",
                    line.param(0)
                ))
            }
            Verb::Join => self.on_join(&line, &from).await,
            Verb::Part => {
                let reason = line.params.get(1).cloned().filter(|r| !r.is_empty());
                self.on_leave(line.param(0), &from, Departure::Part, reason)
                    .await;
            }
            Verb::Kick => {
                let reason = line.params.get(2).cloned().filter(|r| !r.is_empty());
                let victim = line.param(1).to_owned();
                self.on_leave(line.param(0), &victim, Departure::Kick { by: from }, reason)
                    .await;
            }
            Verb::Quit => self.on_quit(&line, &from).await,
            Verb::Nick => self.on_nick(&from, line.param(0)).await,
            Verb::Topic => self.on_topic(&line, from).await,
            Verb::Mode => self.on_mode(&line).await,
            Verb::Privmsg | Verb::Notice => self.on_message(line, &from).await,
            Verb::Chghost => self.on_chghost(&line, &from),
            Verb::Away => self.on_away(&line, from).await,
            Verb::Numeric(code) => self.on_numeric(code, &line).await,
            Verb::Tagmsg => self.on_tagmsg(&line, &from).await,
            Verb::Pong | Verb::Cap | Verb::Account | Verb::Batch => {}
            Verb::Authenticate | Verb::Pass | Verb::User | Verb::List | Verb::Other => {
                tracing::debug!(command = %line.command, "unhandled IRC command");
            }
        }
        None
    }
}
