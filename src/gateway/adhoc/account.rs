//! The account commands on a network's component, where users log in to their own accounts
//! (`Network::has_accounts`, Matrix personal logins): log in, log out, the session's status,
//! and verifying the session. Nodes are named after the network: `matrix-login`,
//! `matrix-logout`, `matrix-status`, `matrix-verify`.
//!
//! What the network refuses completes the command with an error note carrying the network's
//! text, so that the user reads why and can run the command again; a form filled wrongly
//! comes back with what was given (never a secret) and a note saying what is missing. The
//! login form and its reading are shared with XEP-0077 registration (`gateway::register`).

use std::collections::HashMap;

use tokio_xmpp::minidom::Element;

use causeway_bridge::{
    AccountReply, AccountRequest, AccountStatus, BridgeError, Credentials, Emoji, Network,
    NetworkKind, Secret, UserRef,
};

use super::{field, get_text, respond, session_id, values, AdhocRequest, DATA};
use crate::gateway::stanzas::nc;

/// One of the account commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountCommand {
    /// Log in with a password or a token.
    LogIn,
    /// Log out, after a confirmation.
    LogOut,
    /// How the session is doing.
    Status,
    /// Have the user's other sessions trust this one.
    Verify,
}

impl AccountCommand {
    const ALL: [AccountCommand; 4] = [
        AccountCommand::LogIn,
        AccountCommand::LogOut,
        AccountCommand::Status,
        AccountCommand::Verify,
    ];

    /// The command's node on `network`'s component (`matrix-login`).
    pub(crate) fn node(self, network: NetworkKind) -> String {
        let verb = match self {
            AccountCommand::LogIn => "login",
            AccountCommand::LogOut => "logout",
            AccountCommand::Status => "status",
            AccountCommand::Verify => "verify",
        };
        format!("{network}-{verb}")
    }

    /// The command's name as clients list it.
    fn name(self, network: NetworkKind) -> String {
        let title = title(network);
        match self {
            AccountCommand::LogIn => format!("Log in to {title}"),
            AccountCommand::LogOut => format!("Log out of {title}"),
            AccountCommand::Status => format!("{title} session status"),
            AccountCommand::Verify => "Verify this session".into(),
        }
    }

    /// The command a node names on `network`'s component.
    pub(crate) fn parse(network: NetworkKind, node: &str) -> Option<AccountCommand> {
        Self::ALL.into_iter().find(|c| c.node(network) == node)
    }
}

/// The account commands as disco#items entries: (node, name).
pub(crate) fn items(network: NetworkKind) -> Vec<(String, String)> {
    AccountCommand::ALL
        .into_iter()
        .map(|c| (c.node(network), c.name(network)))
        .collect()
}

/// The network's name as users know it.
pub(crate) fn title(network: NetworkKind) -> &'static str {
    match network {
        NetworkKind::Irc => "IRC",
        NetworkKind::Matrix => "Matrix",
    }
}

/// The login form's fields: account, password, homeserver, token; `given` fills in what
/// is no secret (a form shown again).
pub(crate) fn login_fields(given: &HashMap<String, Vec<String>>) -> Vec<Element> {
    let kept = |var: &str| get_text(given, var).into_iter().collect::<Vec<_>>();
    vec![
        field(
            "account",
            "text-single",
            "Matrix ID, e.g. @alice:matrix.org",
            &kept("account"),
        ),
        field("password", "text-private", "Password", &[]),
        field(
            "homeserver",
            "text-single",
            "Homeserver URL, only if your server cannot be found from your Matrix ID",
            &kept("homeserver"),
        ),
        field(
            "token",
            "text-private",
            "Access token, instead of a password",
            &[],
        ),
    ]
}

/// The credentials a filled login form gives, or what is wrong with it: exactly one of
/// password and token, and an account with a password. Secrets are taken as typed.
pub(crate) fn credentials(given: &HashMap<String, Vec<String>>) -> Result<Credentials, String> {
    let secret_of = |var: &str| {
        given
            .get(var)
            .and_then(|v| v.first())
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let account = get_text(given, "account").unwrap_or_default();
    let secret = match (secret_of("password"), secret_of("token")) {
        (Some(_), Some(_)) => return Err("Give a password or an access token, not both.".into()),
        (None, None) => return Err("Give your password, or an access token instead.".into()),
        (Some(_), None) if account.is_empty() => {
            return Err("Give your Matrix ID (e.g. @alice:matrix.org) with the password.".into())
        }
        (Some(password), None) => Secret::Password(password),
        (None, Some(token)) => Secret::Token(token.trim().to_owned()),
    };
    Ok(Credentials {
        account,
        server: get_text(given, "homeserver"),
        secret,
    })
}

/// Run one step of an account command for the requester.
pub(super) async fn step(
    network: &dyn Network,
    request: &AdhocRequest,
    command: AccountCommand,
) -> Element {
    let kind = network.kind();
    let node = command.node(kind);
    let session = session_id(&request.command);
    let answer = Answer {
        node: &node,
        session: &session,
        title: command.name(kind),
    };
    if request.command.attr("action") == Some("cancel") {
        return respond(&node, &session, "canceled", None, None);
    }
    let user = UserRef(request.requester.to_bare().to_string());
    let submitted = request
        .command
        .get_child("x", DATA)
        .filter(|x| x.attr("type") == Some("submit"))
        .map(values);
    let ask = |request| network.account(&user, request);
    match command {
        AccountCommand::LogIn => {
            let Some(given) = submitted else {
                return answer.form(login_fields(&HashMap::new()), None);
            };
            let credentials = match credentials(&given) {
                Ok(credentials) => credentials,
                Err(problem) => {
                    return answer.form(login_fields(&given), Some(("error", &problem)))
                }
            };
            let reply = ask(AccountRequest::LogIn(credentials)).await;
            answer.done(reply, "Login failed", |reply| match reply {
                AccountReply::LoggedIn(status) => Some((format!("Logged in: {status}."), None)),
                _ => None,
            })
        }
        AccountCommand::LogOut => match submitted {
            None => match ask(AccountRequest::Status).await {
                Ok(AccountReply::Status(None)) => answer.note("info", &not_logged_in(kind)),
                Ok(AccountReply::Status(Some(status))) => {
                    let label = format!(
                        "Log {} out, forgetting this session and its keys",
                        status.account
                    );
                    answer.form(
                        vec![field("confirm", "boolean", &label, &["0".into()])],
                        None,
                    )
                }
                other => answer.done(other, "The session cannot be read", |_| None),
            },
            Some(given) if get_text(&given, "confirm").is_some_and(|v| v == "1" || v == "true") => {
                let reply = ask(AccountRequest::LogOut).await;
                answer.done(reply, "Logout failed", |reply| match reply {
                    AccountReply::LoggedOut => {
                        Some((format!("Logged out of {}.", title(kind)), None))
                    }
                    _ => None,
                })
            }
            Some(_) => answer.note("info", "Nothing was done: you are still logged in."),
        },
        AccountCommand::Status => {
            let reply = ask(AccountRequest::Status).await;
            answer.done(reply, "The session cannot be read", |reply| match reply {
                AccountReply::Status(None) => Some((not_logged_in(kind), None)),
                AccountReply::Status(Some(status)) => {
                    Some((status.to_string(), Some(status_form(&status))))
                }
                _ => None,
            })
        }
        AccountCommand::Verify => {
            let Some(given) = submitted else {
                return answer.form(verify_fields(), None);
            };
            let is_set = |var: &str| get_text(&given, var).is_some_and(|v| v == "1" || v == "true");
            match get_text(&given, "stage").as_deref() {
                Some(WAITING) => answer.comparison(ask(AccountRequest::Compare).await),
                Some(COMPARING) => {
                    let matching = is_set("match");
                    let reply = ask(AccountRequest::Confirm { matching }).await;
                    answer.done(reply, "Verification failed", verified)
                }
                _ if is_set("emoji") => match ask(AccountRequest::RequestComparison).await {
                    Ok(AccountReply::Requested) => answer.form(waiting_fields(), None),
                    other => answer.done(other, "Verification failed", |_| None),
                },
                _ => {
                    let recovery = given
                        .get("recovery")
                        .and_then(|r| r.first())
                        .filter(|r| !r.trim().is_empty());
                    let Some(recovery) = recovery else {
                        let problem = "Give your recovery key or passphrase, or choose to \
                                       compare emoji with another of your sessions.";
                        return answer.form(verify_fields(), Some(("error", problem)));
                    };
                    let recovery = Secret::Password(recovery.clone());
                    let reply = ask(AccountRequest::Verify { recovery }).await;
                    answer.done(reply, "Verification failed", verified)
                }
            }
        }
    }
}

/// The verify command's stages after the first, in its forms' hidden `stage` field: the
/// request went to the user's other sessions; the emoji are shown.
const WAITING: &str = "waiting";
const COMPARING: &str = "comparing";

/// The verify command's first form: the recovery key, or emoji to compare.
fn verify_fields() -> Vec<Element> {
    vec![
        field(
            "recovery",
            "text-private",
            "Recovery key or passphrase",
            &[],
        ),
        field(
            "emoji",
            "boolean",
            "Or compare emoji with another of my sessions (Element…)",
            &["0".into()],
        ),
    ]
}

/// While the user's other session is to take the request.
fn waiting_fields() -> Vec<Element> {
    vec![
        field(
            "instructions",
            "fixed",
            "",
            &[
                "A verification request went to your other Matrix sessions. Accept it in \
               one of them (Element: the request that pops up), choose to compare emoji \
               there, then go on here."
                    .into(),
            ],
        ),
        field("stage", "hidden", "", &[WAITING.into()]),
    ]
}

/// The emoji to compare, and the user's answer.
fn comparing_fields(emoji: &[Emoji]) -> Vec<Element> {
    let shown: Vec<String> = emoji
        .iter()
        .map(|e| format!("{} {}", e.symbol, e.name))
        .collect();
    vec![
        field(
            "instructions",
            "fixed",
            "",
            &["Does your other session show these emoji, in this order?".into()],
        ),
        field("emoji", "fixed", "Emoji", &[shown.join(", ")]),
        field("match", "boolean", "They match", &["0".into()]),
        field("stage", "hidden", "", &[COMPARING.into()]),
    ]
}

/// What a verified session's reply shows.
fn verified(reply: AccountReply) -> Option<(String, Option<Element>)> {
    match reply {
        AccountReply::Verified(status) => {
            Some((format!("This session is verified: {status}."), None))
        }
        _ => None,
    }
}

/// What the user is told when there is no session.
fn not_logged_in(network: NetworkKind) -> String {
    format!("You are not logged in to {}.", title(network))
}

/// The session as a result form.
fn status_form(status: &AccountStatus) -> Element {
    let verified = match status.verified {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    let fixed =
        |var: &str, label: &str, value: &str| field(var, "text-single", label, &[value.to_owned()]);
    Element::builder("x", DATA)
        .attr(nc("type"), "result")
        .append(Element::builder("title", DATA).append("Session").build())
        .append(fixed("account", "Account", &status.account))
        .append(fixed("homeserver", "Homeserver", &status.server))
        .append(fixed("device", "Device", &status.device))
        .append(fixed("verified", "Verified", verified))
        .append(fixed("connection", "Connection", &status.connection))
        .build()
}

/// How one command session answers.
struct Answer<'a> {
    node: &'a str,
    session: &'a str,
    /// The forms' title: the command's name.
    title: String,
}

impl Answer<'_> {
    /// A form to fill, with a note (kind, text): what was wrong with the last one, say.
    fn form(&self, fields: Vec<Element>, note: Option<(&str, &str)>) -> Element {
        let form = Element::builder("x", DATA)
            .attr(nc("type"), "form")
            .append(
                Element::builder("title", DATA)
                    .append(self.title.as_str())
                    .build(),
            )
            .append_all(fields)
            .build();
        respond(self.node, self.session, "executing", Some(form), note)
    }

    /// The emoji to compare, or the request still waiting for the user's other session.
    fn comparison(&self, reply: Result<AccountReply, BridgeError>) -> Element {
        match reply {
            Ok(AccountReply::Emoji(emoji)) => self.form(comparing_fields(&emoji), None),
            Ok(AccountReply::NotYet) => self.form(
                waiting_fields(),
                Some((
                    "info",
                    "None of your other sessions has accepted the request yet.",
                )),
            ),
            other => self.done(other, "Verification failed", |_| None),
        }
    }

    /// The command completed with a note.
    fn note(&self, kind: &str, text: &str) -> Element {
        respond(
            self.node,
            self.session,
            "completed",
            None,
            Some((kind, text)),
        )
    }

    /// The command completed with the network's reply: `shown` says what an expected reply
    /// shows (a note, and a form); a refusal is an error note after `failed`.
    fn done(
        &self,
        reply: Result<AccountReply, BridgeError>,
        failed: &str,
        shown: impl FnOnce(AccountReply) -> Option<(String, Option<Element>)>,
    ) -> Element {
        let shown = match reply {
            Ok(reply) => shown(reply).ok_or_else(|| "an unexpected answer".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        match shown {
            Ok((text, form)) => respond(
                self.node,
                self.session,
                "completed",
                form,
                Some(("info", &text)),
            ),
            Err(why) => self.note("error", &format!("{failed}: {why}.")),
        }
    }
}
