//! Commands about connections: a server's connection information, disconnecting from every
//! server; and the administrators' session list, disconnect-user and reload.

use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use causeway_bridge::Network;

use super::{field, get_text, response, session_id, values, AdhocRequest, DATA};
use crate::gateway::stanzas::nc;
use crate::store::Store;

/// `info` on a server JID: how the user is connected there, as the gateway sees it.
pub(super) async fn info(
    store: &Store,
    request: &AdhocRequest,
    server: &str,
) -> Result<Element, StanzaError> {
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
pub(super) async fn admin(
    network: Option<&dyn Network>,
    reloader: Option<&crate::gateway::serve::Reload>,
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
pub(super) async fn disconnect(
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
