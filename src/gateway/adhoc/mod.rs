//! XEP-0050 ad-hoc commands with XEP-0004 forms: configuration from any XMPP client.
//!
//! | JID            | commands                                   |
//! |----------------|--------------------------------------------|
//! | the gateway    | `configure` (record history, persistent, default nick), `disconnect` (from every IRC server), `forget-pushes` (the bookmarks and contacts it added to the account) |
//! | an IRC server  | `configure` (nick, username, realname, SASL and server passwords, after-connect commands, record history, persistent, port, TLS and its verification, flood control) |
//! | a channel      | `configure` (persistent, record history)   |
//! | a network's component, where users have accounts | `matrix-login`, `matrix-logout`, `matrix-status`, `matrix-verify` |
//!
//! Forms carry every value, so no session state is kept between steps. Settings are saved
//! in the database and apply on the next connection or join.
//!
//! This file answers a step and routes it; `settings` shows and saves the `configure`
//! forms (and the muc#owner form on the same channel settings), `admin` holds the
//! connection commands (info, disconnect) and the administrators' (sessions,
//! disconnect-user, reload), `account` the commands on the user's own account, `pushes`
//! the removal of what the gateway put into the account (XEP-0356).

pub(crate) mod account;
mod admin;
mod settings;
mod verify;

use self::admin::{admin, disconnect, info};

mod pushes;
use self::settings::{apply, current_form, owner, Applied};

use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

use causeway_bridge::{Network, NetworkKind};

use super::stanzas::nc;
use crate::store::{Store, StoreError};

/// XEP-0050's namespace.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
pub(crate) const DATA: &str = "jabber:x:data";

/// What a command applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The gateway: the user's own settings.
    Gateway,
    /// The user's settings for one IRC server.
    Server(String),
    /// The user's settings for one channel.
    Channel(String, String),
}

/// A command to run against the database.
#[derive(Clone)]
pub struct AdhocRequest {
    /// The iq id.
    pub iq_id: String,
    /// Who runs it.
    pub requester: FullJid,
    /// The JID it was sent to.
    pub to: Jid,
    /// What it configures.
    pub target: Target,
    /// The `<command/>` element.
    pub command: Element,
    /// For administrators: the users with rooms and their rooms, when the step was asked.
    pub sessions: Option<Vec<(String, Vec<String>)>>,
    /// The requester's rooms on the target server and the nick in each (connection info).
    pub rooms: Vec<(String, String)>,
    /// A MUC owner configuration request (XEP-0045 §10.2) instead of a command: get the form
    /// (`Some(true)`) or set it (`Some(false)`); the channel settings behind both are the same.
    pub owner: Option<bool>,
}

/// Leaves the command's form out: it may hold a password.
impl std::fmt::Debug for AdhocRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdhocRequest")
            .field("iq_id", &self.iq_id)
            .field("requester", &self.requester)
            .field("target", &self.target)
            .field("node", &self.command.attr("node"))
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// The commands a target offers, as disco#items; `admin` adds the administrators' ones,
/// `accounts` the account commands of a network whose users log in to their own accounts.
pub fn command_items(
    to: &Jid,
    target: &Target,
    admin: bool,
    accounts: Option<NetworkKind>,
) -> Element {
    let label = match target {
        Target::Gateway => "Configure the gateway",
        Target::Server(_) => "Configure this IRC server",
        Target::Channel(..) => "Configure this channel",
    };
    let item = |node: &str, name: &str| {
        Element::builder("item", "http://jabber.org/protocol/disco#items")
            .attr(nc("jid"), to.to_string())
            .attr(nc("node"), node)
            .attr(nc("name"), name)
            .build()
    };
    let mut query = Element::builder("query", "http://jabber.org/protocol/disco#items")
        .attr(nc("node"), COMMANDS)
        .append(item("configure", label));
    if let Target::Server(_) = target {
        query = query.append(item("info", "Connection information"));
    }
    if *target == Target::Gateway {
        query = query.append(item("disconnect", "Disconnect from every IRC server"));
        query = query.append(item(
            pushes::NODE,
            "Take the gateway's bookmarks and contacts out of my account",
        ));
        if admin {
            query = query.append(item("sessions", "List the users' sessions (admin)"));
            query = query.append(item("disconnect-user", "Disconnect a user (admin)"));
            query = query.append(item("reload", "Reload the configuration file (admin)"));
        }
        for (node, name) in accounts.map(account::items).unwrap_or_default() {
            query = query.append(item(&node, &name));
        }
    }
    query.build()
}

/// Run one step of a command: its answer, then what else it sends (the removals of
/// `forget-pushes`).
pub async fn run(
    store: &Store,
    network: Option<&dyn Network>,
    reloader: Option<&super::serve::Reload>,
    request: &AdhocRequest,
) -> Vec<Stanza> {
    let mut more = Vec::new();
    let reply = match step(store, network, reloader, request, &mut more).await {
        Ok(payload) => Iq::Result {
            from: Some(request.to.clone()),
            to: Some(request.requester.clone().into()),
            id: request.iq_id.clone(),
            payload: Some(payload),
        },
        Err(error) => Iq::Error {
            from: Some(request.to.clone()),
            to: Some(request.requester.clone().into()),
            id: request.iq_id.clone(),
            error,
            payload: None,
        },
    };
    std::iter::once(reply.into()).chain(more).collect()
}

async fn step(
    store: &Store,
    network: Option<&dyn Network>,
    reloader: Option<&super::serve::Reload>,
    request: &AdhocRequest,
    more: &mut Vec<Stanza>,
) -> Result<Element, StanzaError> {
    if let Some(get) = request.owner {
        return owner(store, request, get).await;
    }
    let command = &request.command;
    let node = command.attr("node").unwrap_or_default();
    if node == pushes::NODE && request.target == Target::Gateway {
        return pushes::forget(store, request, more).await;
    }
    if node == "disconnect" && request.target == Target::Gateway {
        return disconnect(network, request).await;
    }
    if let (Target::Server(server), "info") = (&request.target, node) {
        return info(store, request, server).await;
    }
    if let (Some(network), Target::Gateway) = (network, &request.target) {
        let command = account::AccountCommand::parse(network.kind(), node);
        if let Some(command) = command.filter(|_| network.has_accounts()) {
            return Ok(account::step(network, request, command).await);
        }
    }
    if matches!(node, "sessions" | "disconnect-user" | "reload")
        && request.target == Target::Gateway
    {
        return admin(network, reloader, request, node).await;
    }
    if node != "configure" {
        return Err(StanzaError::new(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "en",
            format!("no command {node:?} here"),
        ));
    }
    let session = session_id(command);
    let user = request.requester.to_bare().to_string();
    let action = command.attr("action").unwrap_or("execute");
    let submitted = command
        .get_child("x", DATA)
        .filter(|x| x.attr("type") == Some("submit"));
    match (action, submitted) {
        ("cancel", _) => Ok(response(node, &session, "canceled", None, None)),
        (_, Some(form)) => {
            apply(store, network, &user, &request.target, form)
                .await
                .map_err(|e| match e {
                    Applied::Db(e) => db_error(e),
                    Applied::Invalid(text) => StanzaError::new(
                        ErrorType::Modify,
                        DefinedCondition::BadRequest,
                        "en",
                        text,
                    ),
                })?;
            Ok(response(
                node,
                &session,
                "completed",
                None,
                Some("The settings are saved; they apply on the next connection or join."),
            ))
        }
        _ => {
            let form = current_form(store, &user, &request.target)
                .await
                .map_err(db_error)?;
            Ok(response(node, &session, "executing", Some(form), None))
        }
    }
}

/// The command's session id, or a new one for a first step.
pub(super) fn session_id(command: &Element) -> String {
    command
        .attr("sessionid")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

pub(super) fn response(
    node: &str,
    session: &str,
    status: &str,
    form: Option<Element>,
    note: Option<&str>,
) -> Element {
    respond(node, session, status, form, note.map(|text| ("info", text)))
}

/// A command step's answer; a form offers to complete the command only while it executes,
/// and the note is (type, text), the type `info`, `warn` or `error`.
pub(super) fn respond(
    node: &str,
    session: &str,
    status: &str,
    form: Option<Element>,
    note: Option<(&str, &str)>,
) -> Element {
    let mut command = Element::builder("command", COMMANDS)
        .attr(nc("node"), node)
        .attr(nc("sessionid"), session)
        .attr(nc("status"), status);
    if let Some(form) = form {
        if status == "executing" {
            command = command.append(
                Element::builder("actions", COMMANDS)
                    .attr(nc("execute"), "complete")
                    .append(Element::builder("complete", COMMANDS).build())
                    .build(),
            );
        }
        command = command.append(form);
    }
    if let Some((kind, text)) = note {
        command = command.append(
            Element::builder("note", COMMANDS)
                .attr(nc("type"), kind)
                .append(text)
                .build(),
        );
    }
    command.build()
}

/// A form field: var, type, label, values.
pub(crate) fn field(var: &str, kind: &str, label: &str, values: &[String]) -> Element {
    let mut field = Element::builder("field", DATA)
        .attr(nc("var"), var)
        .attr(nc("type"), kind)
        .attr(nc("label"), label);
    for value in values {
        field = field.append(
            Element::builder("value", DATA)
                .append(value.as_str())
                .build(),
        );
    }
    field.build()
}

pub(super) fn boolean(value: Option<bool>) -> Vec<String> {
    value
        .map(|v| vec![if v { "1".into() } else { "0".into() }])
        .unwrap_or_default()
}

pub(super) fn text(value: &Option<String>) -> Vec<String> {
    value.iter().cloned().collect()
}

/// The submitted values by var (multi-valued fields keep every value).
pub(crate) fn values(form: &Element) -> std::collections::HashMap<String, Vec<String>> {
    form.children()
        .filter(|c| c.is("field", DATA))
        .filter_map(|f| {
            Some((
                f.attr("var")?.to_owned(),
                f.children()
                    .filter(|v| v.is("value", DATA))
                    .map(|v| v.text())
                    .collect(),
            ))
        })
        .collect()
}

pub(crate) fn get_text(
    values: &std::collections::HashMap<String, Vec<String>>,
    var: &str,
) -> Option<String> {
    values
        .get(var)
        .and_then(|v| v.first())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The settings could not be read or saved.
pub(super) fn db_error(e: StoreError) -> StanzaError {
    StanzaError::new(
        ErrorType::Wait,
        DefinedCondition::InternalServerError,
        "en",
        format!("the settings cannot be read or saved: {e}"),
    )
}
