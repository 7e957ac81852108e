//! XEP-0050 ad-hoc commands with XEP-0004 forms: configuration from any XMPP client.
//!
//! | JID            | commands                                   |
//! |----------------|--------------------------------------------|
//! | the gateway    | `configure` (record history, persistent, default nick), `disconnect` (from every IRC server) |
//! | an IRC server  | `configure` (nick, username, realname, SASL and server passwords, after-connect commands, record history, persistent, port, TLS and its verification, flood control) |
//! | a channel      | `configure` (persistent, record history)   |
//!
//! Forms carry every value, so no session state is kept between steps. Settings are saved
//! in the database and apply on the next connection or join.

use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

use causeway_bridge::Network;

use super::stanzas::nc;
use crate::store::{ChannelSettings, IrcServerSettings, Store, StoreError, UserSettings};

/// XEP-0050's namespace.
pub const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";

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
#[derive(Debug, Clone)]
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

/// The commands a target offers, as disco#items; `admin` adds the administrators' ones.
pub fn command_items(to: &Jid, target: &Target, admin: bool) -> Element {
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
        if admin {
            query = query.append(item("sessions", "List the users' sessions (admin)"));
            query = query.append(item("disconnect-user", "Disconnect a user (admin)"));
            query = query.append(item("reload", "Reload the configuration file (admin)"));
        }
    }
    query.build()
}

/// Run one step of a command and answer it.
pub async fn run(
    store: &Store,
    network: Option<&dyn Network>,
    reloader: Option<&super::serve::Reload>,
    request: &AdhocRequest,
) -> Stanza {
    let reply = match step(store, network, reloader, request).await {
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
    reply.into()
}

async fn step(
    store: &Store,
    network: Option<&dyn Network>,
    reloader: Option<&super::serve::Reload>,
    request: &AdhocRequest,
) -> Result<Element, StanzaError> {
    if let Some(get) = request.owner {
        return owner(store, request, get).await;
    }
    let command = &request.command;
    let node = command.attr("node").unwrap_or_default();
    if node == "disconnect" && request.target == Target::Gateway {
        return disconnect(network, request).await;
    }
    if let (Target::Server(server), "info") = (&request.target, node) {
        return info(store, request, server).await;
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
    let db = |e: StoreError| {
        StanzaError::new(
            ErrorType::Wait,
            DefinedCondition::InternalServerError,
            "en",
            format!("the settings cannot be read or saved: {e}"),
        )
    };
    match (action, submitted) {
        ("cancel", _) => Ok(response(node, &session, "canceled", None, None)),
        (_, Some(form)) => {
            apply(store, &user, &request.target, form)
                .await
                .map_err(|e| match e {
                    Applied::Db(e) => db(e),
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
                .map_err(db)?;
            Ok(response(node, &session, "executing", Some(form), None))
        }
    }
}

/// XEP-0045's owner form on a channel: persistent and logging, backed by the channel's
/// settings, for clients that configure rooms that way.
async fn owner(store: &Store, request: &AdhocRequest, get: bool) -> Result<Element, StanzaError> {
    const OWNER: &str = "http://jabber.org/protocol/muc#owner";
    let Target::Channel(server, channel) = &request.target else {
        return Err(StanzaError::new(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "en",
            "only rooms have an owner form",
        ));
    };
    let user = request.requester.to_bare().to_string();
    let db = |e: StoreError| {
        StanzaError::new(
            ErrorType::Wait,
            DefinedCondition::InternalServerError,
            "en",
            format!("the settings cannot be read or saved: {e}"),
        )
    };
    if get {
        let current = store
            .channel_settings(&user, server, channel)
            .await
            .map_err(db)?;
        let form = Element::builder("x", DATA)
            .attr(nc("type"), "form")
            .append(field(
                "FORM_TYPE",
                "hidden",
                "",
                &["http://jabber.org/protocol/muc#roomconfig".into()],
            ))
            .append(field(
                "muc#roomconfig_persistentroom",
                "boolean",
                "Persistent (your puppet stays while you are offline)",
                &boolean(current.persistent),
            ))
            .append(field(
                "muc#roomconfig_enablelogging",
                "boolean",
                "Record history",
                &boolean(current.record),
            ))
            .build();
        return Ok(Element::builder("query", OWNER).append(form).build());
    }
    if let Some(form) = request
        .command
        .get_child("x", DATA)
        .filter(|x| x.attr("type") == Some("submit"))
    {
        let values = values(form);
        let invalid = |e: Applied| match e {
            Applied::Invalid(text) => StanzaError::new(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                "en",
                text,
            ),
            Applied::Db(e) => db(e),
        };
        let mut settings = store
            .channel_settings(&user, server, channel)
            .await
            .map_err(db)?;
        if values.contains_key("muc#roomconfig_persistentroom") {
            settings.persistent =
                get_bool(&values, "muc#roomconfig_persistentroom").map_err(invalid)?;
        }
        if values.contains_key("muc#roomconfig_enablelogging") {
            settings.record = get_bool(&values, "muc#roomconfig_enablelogging").map_err(invalid)?;
        }
        store
            .set_channel_settings(&user, server, channel, settings)
            .await
            .map_err(db)?;
    }
    // A cancelled form, or no form at all, changes nothing.
    Ok(Element::builder("query", OWNER).build())
}

/// `info` on a server JID: how the user is connected there, as the gateway sees it.
async fn info(store: &Store, request: &AdhocRequest, server: &str) -> Result<Element, StanzaError> {
    let user = request.requester.to_bare().to_string();
    let settings = store
        .irc_server_settings(&user, server)
        .await
        .map_err(|e| {
            StanzaError::new(
                ErrorType::Wait,
                DefinedCondition::InternalServerError,
                "en",
                format!("the settings cannot be read: {e}"),
            )
        })?
        .unwrap_or_default();
    let mut lines = Vec::new();
    match request.rooms.first() {
        Some((_, nick)) => lines.push(format!("Connected to {server} as {nick}.")),
        None => lines.push(format!("Not connected to {server}.")),
    }
    for (room, _) in &request.rooms {
        lines.push(format!("In {room}"));
    }
    let or_default = |value: Option<String>| value.unwrap_or_else(|| "as configured".into());
    lines.push(format!(
        "Port: {}",
        or_default(settings.port.map(|p| p.to_string()))
    ));
    lines.push(format!(
        "TLS: {}",
        or_default(
            settings
                .tls
                .map(|t| if t { "on".into() } else { "off".into() })
        )
    ));
    lines.push(format!(
        "SASL: {}",
        if settings.sasl_password.is_some() {
            "password set"
        } else {
            "not used"
        }
    ));
    let session = session_id(&request.command);
    Ok(response(
        "info",
        &session,
        "completed",
        None,
        Some(&lines.join("\n")),
    ))
}

/// The administrators' commands: `sessions` lists who is in which rooms; `disconnect-user`
/// closes another user's connections with a quit message.
async fn admin(
    network: Option<&dyn Network>,
    reloader: Option<&super::serve::Reload>,
    request: &AdhocRequest,
    node: &str,
) -> Result<Element, StanzaError> {
    let Some(sessions) = &request.sessions else {
        return Err(StanzaError::new(
            ErrorType::Auth,
            DefinedCondition::Forbidden,
            "en",
            "only the gateway's administrators may do this",
        ));
    };
    let command = &request.command;
    let session = session_id(command);
    if command.attr("action") == Some("cancel") {
        return Ok(response(node, &session, "canceled", None, None));
    }
    if node == "reload" {
        let reloader = reloader.ok_or_else(|| {
            StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "nothing to reload",
            )
        })?;
        return match reloader() {
            Ok(notes) => Ok(response(node, &session, "completed", None, Some(&notes))),
            Err(problem) => Err(StanzaError::new(
                ErrorType::Modify,
                DefinedCondition::NotAcceptable,
                "en",
                problem,
            )),
        };
    }
    if node == "sessions" {
        let mut form = Element::builder("x", DATA)
            .attr(nc("type"), "result")
            .append(
                Element::builder("title", DATA)
                    .append(format!("{} user(s) with rooms", sessions.len()))
                    .build(),
            );
        for (user, rooms) in sessions {
            form = form.append(field(user, "text-multi", user, rooms));
        }
        return Ok(response(
            node,
            &session,
            "completed",
            Some(form.build()),
            None,
        ));
    }
    match command
        .get_child("x", DATA)
        .filter(|x| x.attr("type") == Some("submit"))
    {
        Some(form) => {
            let values = values(form);
            let Some(target) =
                get_text(&values, "user").and_then(|u| u.parse::<tokio_xmpp::jid::BareJid>().ok())
            else {
                return Err(StanzaError::new(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    "en",
                    "user: give a bare JID",
                ));
            };
            let reason = get_text(&values, "quit_message");
            disconnect_everywhere(network, &target.to_string(), reason).await?;
            Ok(response(
                node,
                &session,
                "completed",
                None,
                Some(&format!("{target} is disconnected from every IRC server.")),
            ))
        }
        None => {
            let form = Element::builder("x", DATA)
                .attr(nc("type"), "form")
                .append(
                    Element::builder("title", DATA)
                        .append("Disconnect a user")
                        .build(),
                )
                .append(field("user", "jid-single", "User (bare JID)", &[]))
                .append(field("quit_message", "text-single", "Quit message", &[]))
                .build();
            Ok(response(node, &session, "executing", Some(form), None))
        }
    }
}

/// The command's session id, or a new one for a first step.
fn session_id(command: &Element) -> String {
    command
        .attr("sessionid")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

/// Close every IRC connection of `user`, with a quit message.
async fn disconnect_everywhere(
    network: Option<&dyn Network>,
    user: &str,
    reason: Option<String>,
) -> Result<(), StanzaError> {
    let Some(network) = network else {
        return Ok(());
    };
    let user = causeway_bridge::UserRef(user.to_owned());
    network
        .act(
            &user,
            causeway_bridge::Action::Disconnect {
                server: None,
                reason,
            },
        )
        .await
        .map_err(|e| {
            StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                e.to_string(),
            )
        })
}

/// `disconnect`: a form for the quit message, then every connection closed.
async fn disconnect(
    network: Option<&dyn Network>,
    request: &AdhocRequest,
) -> Result<Element, StanzaError> {
    let command = &request.command;
    let session = session_id(command);
    match (
        command.attr("action").unwrap_or("execute"),
        command
            .get_child("x", DATA)
            .filter(|x| x.attr("type") == Some("submit")),
    ) {
        ("cancel", _) => Ok(response("disconnect", &session, "canceled", None, None)),
        (_, Some(form)) => {
            let reason = get_text(&values(form), "quit_message");
            disconnect_everywhere(network, &request.requester.to_bare().to_string(), reason)
                .await?;
            Ok(response(
                "disconnect",
                &session,
                "completed",
                None,
                Some("Disconnected from every IRC server."),
            ))
        }
        _ => {
            let form = Element::builder("x", DATA)
                .attr(nc("type"), "form")
                .append(
                    Element::builder("title", DATA)
                        .append("Disconnect from every IRC server")
                        .build(),
                )
                .append(field("quit_message", "text-single", "Quit message", &[]))
                .build();
            Ok(response(
                "disconnect",
                &session,
                "executing",
                Some(form),
                None,
            ))
        }
    }
}

fn response(
    node: &str,
    session: &str,
    status: &str,
    form: Option<Element>,
    note: Option<&str>,
) -> Element {
    let mut command = Element::builder("command", COMMANDS)
        .attr(nc("node"), node)
        .attr(nc("sessionid"), session)
        .attr(nc("status"), status);
    if let Some(form) = form {
        command = command
            .append(
                Element::builder("actions", COMMANDS)
                    .attr(nc("execute"), "complete")
                    .append(Element::builder("complete", COMMANDS).build())
                    .build(),
            )
            .append(form);
    }
    if let Some(note) = note {
        command = command.append(
            Element::builder("note", COMMANDS)
                .attr(nc("type"), "info")
                .append(note)
                .build(),
        );
    }
    command.build()
}

/// A form field: var, type, label, values.
fn field(var: &str, kind: &str, label: &str, values: &[String]) -> Element {
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

fn boolean(value: Option<bool>) -> Vec<String> {
    value
        .map(|v| vec![if v { "1".into() } else { "0".into() }])
        .unwrap_or_default()
}

fn text(value: &Option<String>) -> Vec<String> {
    value.iter().cloned().collect()
}

async fn current_form(store: &Store, user: &str, target: &Target) -> Result<Element, StoreError> {
    let mut form = Element::builder("x", DATA)
        .attr(nc("type"), "form")
        .append(
            Element::builder("title", DATA)
                .append("Configuration")
                .build(),
        )
        .append(
            Element::builder("instructions", DATA)
                .append("Leave a field empty to use the default.")
                .build(),
        );
    let fields = match target {
        Target::Gateway => {
            let s = store.user_settings(user).await?.unwrap_or_default();
            vec![
                field(
                    "record_history",
                    "boolean",
                    "Record history",
                    &boolean(s.record_history),
                ),
                field(
                    "persistent",
                    "boolean",
                    "Channels are persistent",
                    &boolean(s.persistent),
                ),
                field(
                    "default_nick",
                    "text-single",
                    "Default nickname",
                    &text(&s.default_nick),
                ),
            ]
        }
        Target::Server(server) => {
            let s = store
                .irc_server_settings(user, server)
                .await?
                .unwrap_or_default();
            vec![
                field("nick", "text-single", "Nickname", &text(&s.nick)),
                field("username", "text-single", "Username", &text(&s.username)),
                field("realname", "text-single", "Realname", &text(&s.realname)),
                // The password itself never leaves the database.
                field(
                    "sasl_password",
                    "text-private",
                    "SASL password (empty keeps the current one; - removes it)",
                    &[],
                ),
                field(
                    "after_connect",
                    "text-multi",
                    "Commands sent after connecting",
                    &s.after_connect,
                ),
                field(
                    "record_history",
                    "boolean",
                    "Record history",
                    &boolean(s.record_history),
                ),
                field(
                    "persistent",
                    "boolean",
                    "Channels are persistent",
                    &boolean(s.persistent),
                ),
                field(
                    "port",
                    "text-single",
                    "Port (empty: the configured one)",
                    &s.port.map(|p| vec![p.to_string()]).unwrap_or_default(),
                ),
                field("tls", "boolean", "TLS", &boolean(s.tls)),
                field(
                    "verify_tls",
                    "boolean",
                    "Verify the server's certificate",
                    &boolean(s.verify_tls),
                ),
                field("throttle", "boolean", "Flood control", &boolean(s.throttle)),
                field(
                    "encoding_in",
                    "text-single",
                    "Encoding of what is not UTF-8 (empty: latin-1)",
                    &text(&s.encoding_in),
                ),
                field(
                    "encoding_out",
                    "text-single",
                    "Encoding of what you send (empty: UTF-8)",
                    &text(&s.encoding_out),
                ),
                field(
                    "server_password",
                    "text-private",
                    "Server password (empty keeps the current one; - removes it)",
                    &[],
                ),
            ]
        }
        Target::Channel(server, channel) => {
            let s = store.channel_settings(user, server, channel).await?;
            vec![
                field(
                    "persistent",
                    "boolean",
                    "Persistent",
                    &boolean(s.persistent),
                ),
                field(
                    "record_history",
                    "boolean",
                    "Record history",
                    &boolean(s.record),
                ),
                field(
                    "encoding",
                    "text-single",
                    "Encoding (koi8-r, windows-1252…; empty: the server's)",
                    &text(&s.encoding),
                ),
            ]
        }
    };
    for f in fields {
        form = form.append(f);
    }
    Ok(form.build())
}

enum Applied {
    Db(StoreError),
    Invalid(String),
}

/// The submitted values by var (multi-valued fields keep every value).
fn values(form: &Element) -> std::collections::HashMap<String, Vec<String>> {
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

fn get_bool(
    values: &std::collections::HashMap<String, Vec<String>>,
    var: &str,
) -> Result<Option<bool>, Applied> {
    match values.get(var).and_then(|v| v.first()).map(String::as_str) {
        None | Some("") => Ok(None),
        Some("1" | "true") => Ok(Some(true)),
        Some("0" | "false") => Ok(Some(false)),
        Some(other) => Err(Applied::Invalid(format!(
            "{var}: {other:?} is not a boolean"
        ))),
    }
}

/// An encoding label the IRC bridge knows, or nothing.
fn get_encoding(
    values: &std::collections::HashMap<String, Vec<String>>,
    var: &str,
) -> Result<Option<String>, Applied> {
    let Some(label) = get_text(values, var) else {
        return Ok(None);
    };
    #[cfg(feature = "irc")]
    if causeway_irc::encoding(&label).is_none() {
        return Err(Applied::Invalid(format!(
            "{var}: {label:?} is not an encoding (try utf-8, latin1, koi8-r, windows-1252…)"
        )));
    }
    Ok(Some(label))
}

fn get_text(values: &std::collections::HashMap<String, Vec<String>>, var: &str) -> Option<String> {
    values
        .get(var)
        .and_then(|v| v.first())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn apply(store: &Store, user: &str, target: &Target, form: &Element) -> Result<(), Applied> {
    let values = values(form);
    match target {
        Target::Gateway => {
            let settings = UserSettings {
                record_history: get_bool(&values, "record_history")?,
                persistent: get_bool(&values, "persistent")?,
                default_nick: get_text(&values, "default_nick"),
            };
            store
                .set_user_settings(user, &settings)
                .await
                .map_err(Applied::Db)
        }
        Target::Server(server) => {
            let current = store
                .irc_server_settings(user, server)
                .await
                .map_err(Applied::Db)?
                .unwrap_or_default();
            let secret =
                |var: &str, current: Option<String>| match get_text(&values, var).as_deref() {
                    None => current,
                    Some("-") => None,
                    Some(password) => Some(password.to_owned()),
                };
            let sasl_password = secret("sasl_password", current.sasl_password);
            let server_password = secret("server_password", current.server_password);
            let port = match get_text(&values, "port") {
                None => None,
                Some(text) => {
                    Some(text.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        Applied::Invalid(format!("port: {text:?} is not a port number"))
                    })?)
                }
            };
            let no_breaks = |v: Option<String>, var: &str| match v {
                Some(v) if v.contains(char::is_whitespace) && var == "nick" => {
                    Err(Applied::Invalid("nick: no spaces in an IRC nick".into()))
                }
                other => Ok(other),
            };
            let settings = IrcServerSettings {
                nick: no_breaks(get_text(&values, "nick"), "nick")?,
                username: get_text(&values, "username"),
                realname: get_text(&values, "realname"),
                record_history: get_bool(&values, "record_history")?,
                persistent: get_bool(&values, "persistent")?,
                after_connect: values
                    .get("after_connect")
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|l| !l.trim().is_empty())
                    .collect(),
                port,
                tls: get_bool(&values, "tls")?,
                verify_tls: get_bool(&values, "verify_tls")?,
                throttle: get_bool(&values, "throttle")?,
                encoding_in: get_encoding(&values, "encoding_in")?,
                encoding_out: get_encoding(&values, "encoding_out")?,
                server_password,
                sasl_password,
            };
            store
                .set_irc_server_settings(user, server, &settings)
                .await
                .map_err(Applied::Db)
        }
        Target::Channel(server, channel) => {
            let settings = ChannelSettings {
                persistent: get_bool(&values, "persistent")?,
                record: get_bool(&values, "record_history")?,
                encoding: get_encoding(&values, "encoding")?,
            };
            store
                .set_channel_settings(user, server, channel, settings)
                .await
                .map_err(Applied::Db)
        }
    }
}
