//! The `configure` forms of the gateway, an IRC server and a channel: the current settings
//! as a form, and a submitted form checked and saved; the muc#owner form on the same
//! channel settings.

use causeway_bridge::Network;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::{boolean, db_error, field, get_text, text, values, AdhocRequest, Target, DATA};
use crate::gateway::stanzas::nc;
use crate::store::{ChannelSettings, IrcServerSettings, Store, StoreError, UserSettings};

/// XEP-0045's owner form on a channel: persistent and logging, backed by the channel's
/// settings, for clients that configure rooms that way.
pub(super) async fn owner(
    store: &Store,
    request: &AdhocRequest,
    get: bool,
) -> Result<Element, StanzaError> {
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
    if get {
        let current = store
            .channel_settings(&user, server, channel)
            .await
            .map_err(db_error)?;
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
            Applied::Db(e) => db_error(e),
        };
        let mut settings = store
            .channel_settings(&user, server, channel)
            .await
            .map_err(db_error)?;
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
            .map_err(db_error)?;
    }
    // A cancelled form, or no form at all, changes nothing.
    Ok(Element::builder("query", OWNER).build())
}

pub(super) async fn current_form(
    store: &Store,
    user: &str,
    target: &Target,
) -> Result<Element, StoreError> {
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
                record_history(s.record_history),
                persistent(s.persistent),
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
                record_history(s.record_history),
                persistent(s.persistent),
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
                record_history(s.record),
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

pub(super) enum Applied {
    Db(StoreError),
    Invalid(String),
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

/// An encoding label the network knows, or nothing.
fn get_encoding(
    network: Option<&dyn Network>,
    values: &std::collections::HashMap<String, Vec<String>>,
    var: &str,
) -> Result<Option<String>, Applied> {
    let Some(label) = get_text(values, var) else {
        return Ok(None);
    };
    if !network.is_some_and(|n| n.supports_encoding(&label)) {
        return Err(Applied::Invalid(format!(
            "{var}: {label:?} is not an encoding (try utf-8, latin1, koi8-r, windows-1252…)"
        )));
    }
    Ok(Some(label))
}

pub(super) async fn apply(
    store: &Store,
    network: Option<&dyn Network>,
    user: &str,
    target: &Target,
    form: &Element,
) -> Result<(), Applied> {
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
                encoding_in: get_encoding(network, &values, "encoding_in")?,
                encoding_out: get_encoding(network, &values, "encoding_out")?,
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
                encoding: get_encoding(network, &values, "encoding")?,
            };
            store
                .set_channel_settings(user, server, channel, settings)
                .await
                .map_err(Applied::Db)
        }
    }
}

/// The form field saying whether history is recorded.
fn record_history(value: Option<bool>) -> Element {
    field(
        "record_history",
        "boolean",
        "Record history",
        &boolean(value),
    )
}

/// The form field saying whether channels stay joined while nobody is online.
fn persistent(value: Option<bool>) -> Element {
    field(
        "persistent",
        "boolean",
        "Channels are persistent",
        &boolean(value),
    )
}
