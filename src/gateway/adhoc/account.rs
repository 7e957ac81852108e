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
    AccountReply, AccountRequest, AccountStatus, BridgeError, Credentials, Network, NetworkKind,
    Secret, UserRef,
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
        (None, None) => {
            return Err(
                "Give your password, or an access token instead (a homeserver that \
                        logs in on its own web page: the command \"Log in to Matrix\" \
                        without a password)."
                    .into(),
            )
        }
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
            if get_text(&given, "stage").as_deref() == Some(BROWSER) {
                return finish_browser_login(&answer, &given, ask).await;
            }
            if let Some((account, server)) = browser_login(&given) {
                let request = AccountRequest::StartBrowserLogin { account, server };
                return match ask(request).await {
                    Ok(AccountReply::OpenInBrowser { url }) => {
                        answer.form(browser_fields(&url), None)
                    }
                    Ok(other) => answer.done(Ok(other), "Login failed", |_| None),
                    Err(e) => answer.form(login_fields(&given), Some(("error", &e.to_string()))),
                };
            }
            let credentials = match credentials(&given) {
                Ok(credentials) => credentials,
                Err(problem) => {
                    return answer.form(login_fields(&given), Some(("error", &problem)))
                }
            };
            let reply = ask(AccountRequest::LogIn(credentials)).await;
            answer.done(reply, "Login failed", logged_in)
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
        AccountCommand::Verify => super::verify::step(&answer, submitted, ask).await,
    }
}

/// The login command's stage after the link to a browser login was given, in its form's
/// hidden `stage` field.
const BROWSER: &str = "browser";

/// A login form that names the account (or its server) but gives no password and no
/// token: a login through the server's web page. (account, server)
fn browser_login(given: &HashMap<String, Vec<String>>) -> Option<(String, Option<String>)> {
    let given_secret = |var: &str| {
        given
            .get(var)
            .and_then(|v| v.first())
            .is_some_and(|v| !v.is_empty())
    };
    if given_secret("password") || given_secret("token") {
        return None;
    }
    let account = get_text(given, "account").unwrap_or_default();
    let server = get_text(given, "homeserver");
    (!account.is_empty() || server.is_some()).then_some((account, server))
}

/// The browser login's second form: the link, and where the browser ended up.
fn browser_fields(url: &str) -> Vec<Element> {
    vec![
        field(
            "instructions",
            "fixed",
            "",
            &[
                "Your homeserver logs in on its own web page. Open the link below in a \
               browser and log in there. The browser then goes to an address starting \
               with http://127.0.0.1/ that does not load: copy that whole address from the \
               address bar into the field below."
                    .into(),
            ],
        ),
        field("url", "text-single", "Link to open", &[url.to_owned()]),
        field(
            "redirect",
            "text-private",
            "The address your browser ended up on",
            &[],
        ),
        field("stage", "hidden", "", &[BROWSER.into()]),
    ]
}

/// The browser login's end: the address the browser ended up on.
async fn finish_browser_login<F>(
    answer: &Answer<'_>,
    given: &HashMap<String, Vec<String>>,
    ask: impl FnOnce(AccountRequest) -> F,
) -> Element
where
    F: std::future::Future<Output = Result<AccountReply, BridgeError>>,
{
    let redirect = given
        .get("redirect")
        .and_then(|v| v.first())
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let Some(redirect) = redirect else {
        let url = get_text(given, "url").unwrap_or_default();
        let problem = "Paste the address your browser ended up on after logging in.";
        return answer.form(browser_fields(&url), Some(("error", problem)));
    };
    let redirect = Secret::Token(redirect.to_owned());
    let reply = ask(AccountRequest::FinishBrowserLogin { redirect }).await;
    answer.done(reply, "Login failed", logged_in)
}

/// What a login's reply shows.
fn logged_in(reply: AccountReply) -> Option<(String, Option<Element>)> {
    match reply {
        AccountReply::LoggedIn(status) => Some((format!("Logged in: {status}."), None)),
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
pub(super) struct Answer<'a> {
    node: &'a str,
    session: &'a str,
    /// The forms' title: the command's name.
    title: String,
}

impl Answer<'_> {
    /// A form to fill, with a note (kind, text): what was wrong with the last one, say.
    pub(super) fn form(&self, fields: Vec<Element>, note: Option<(&str, &str)>) -> Element {
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
    pub(super) fn done(
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
