//! XEP-0077 in-band registration on a network's component, where users log in to their own
//! accounts (`Network::has_accounts`, Matrix personal logins): registering is logging in,
//! `<remove/>` is logging out. Clients that know registration (Gajim's "Register" in service
//! discovery) get the same form as the `matrix-login` command, with the legacy
//! `<username/>` (the Matrix ID) and `<password/>` beside it for older ones.
//!
//! The network is asked on a side task, as for ad-hoc commands. Its refusals become stanza
//! errors with its text: a wrong password `not-authorized`, an unreachable server
//! `remote-server-timeout`, bad input (or a form without a password or token)
//! `not-acceptable`.

use std::collections::HashMap;
use std::fmt;

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;

use causeway_bridge::{AccountReply, AccountRequest, BridgeError, Network, NetworkKind, UserRef};

use super::adhoc::account::{credentials, login_fields, title};
use super::adhoc::{values, DATA};
use super::stanzas::nc;

/// A registration request to answer once the network is asked.
#[derive(Clone)]
pub struct RegisterRequest {
    /// The iq id.
    pub iq_id: String,
    /// Who asks.
    pub requester: Jid,
    /// The component's JID it went to.
    pub to: Jid,
    /// The `<query xmlns='jabber:iq:register'/>`; a set may hold a password.
    pub query: Element,
    /// A get (the form) rather than a set (register or remove).
    pub get: bool,
}

/// Leaves the query out: it may hold a password.
impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("iq_id", &self.iq_id)
            .field("requester", &self.requester)
            .field("get", &self.get)
            .finish_non_exhaustive()
    }
}

/// Answer a registration request, asking the network.
pub async fn run(network: Option<&dyn Network>, request: &RegisterRequest) -> Stanza {
    let answer = match network.filter(|n| n.has_accounts()) {
        None => Err(error(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            format!("{} takes no registration", request.to),
        )),
        Some(network) if request.get => Ok(Some(fields(network, request).await)),
        Some(network) => register(network, request).await.map(|()| None),
    };
    let reply = match answer {
        Ok(payload) => Iq::Result {
            from: Some(request.to.clone()),
            to: Some(request.requester.clone()),
            id: request.iq_id.clone(),
            payload,
        },
        Err(error) => Iq::Error {
            from: Some(request.to.clone()),
            to: Some(request.requester.clone()),
            id: request.iq_id.clone(),
            error,
            payload: None,
        },
    };
    reply.into()
}

/// The registration form, with `<registered/>` and the account when the user is logged in.
async fn fields(network: &dyn Network, request: &RegisterRequest) -> Element {
    let kind = network.kind();
    let user = UserRef(request.requester.to_bare().to_string());
    // A session that cannot be read is shown as none: the user may log in again.
    let account = match network.account(&user, AccountRequest::Status).await {
        Ok(AccountReply::Status(Some(status))) => Some(status.account),
        _ => None,
    };
    let instructions = instructions(kind);
    let mut given = HashMap::new();
    if let Some(account) = &account {
        given.insert("account".to_owned(), vec![account.clone()]);
    }
    let form = Element::builder("x", DATA)
        .attr(nc("type"), "form")
        .append(
            Element::builder("title", DATA)
                .append(format!("Log in to {}", title(kind)))
                .build(),
        )
        .append(
            Element::builder("instructions", DATA)
                .append(instructions.as_str())
                .build(),
        )
        .append(
            Element::builder("field", DATA)
                .attr(nc("var"), "FORM_TYPE")
                .attr(nc("type"), "hidden")
                .append(Element::builder("value", DATA).append(ns::REGISTER).build())
                .build(),
        )
        .append_all(login_fields(&given))
        .build();
    let legacy = |name: &str, text: Option<&str>| {
        let mut element = Element::builder(name, ns::REGISTER);
        if let Some(text) = text {
            element = element.append(text);
        }
        element.build()
    };
    let mut query = Element::builder("query", ns::REGISTER);
    if account.is_some() {
        query = query.append(legacy("registered", None));
    }
    query
        .append(legacy("instructions", Some(&instructions)))
        .append(legacy("username", account.as_deref()))
        .append(legacy("password", None))
        .append(form)
        .build()
}

fn instructions(network: NetworkKind) -> String {
    format!(
        "Log in to your own {} account: your Matrix ID (like @alice:matrix.org) as the \
         username and your password, or an access token instead of the password. Give the \
         homeserver URL only if your server cannot be found from your Matrix ID. Removing \
         the registration logs you out.",
        title(network)
    )
}

/// A set: log in with the form (or the legacy username and password), or log out.
async fn register(network: &dyn Network, request: &RegisterRequest) -> Result<(), StanzaError> {
    let user = UserRef(request.requester.to_bare().to_string());
    let query = &request.query;
    if query.get_child("remove", ns::REGISTER).is_some() {
        return match network.account(&user, AccountRequest::LogOut).await {
            Ok(_) => Ok(()),
            Err(e) => Err(refused(e)),
        };
    }
    let given = match query
        .get_child("x", DATA)
        .filter(|x| x.attr("type") == Some("submit"))
    {
        Some(form) => values(form),
        None => {
            let legacy = |name: &str| {
                query
                    .get_child(name, ns::REGISTER)
                    .map(|e| vec![e.text()])
                    .unwrap_or_default()
            };
            HashMap::from([
                ("account".to_owned(), legacy("username")),
                ("password".to_owned(), legacy("password")),
            ])
        }
    };
    let credentials = credentials(&given)
        .map_err(|problem| error(ErrorType::Modify, DefinedCondition::NotAcceptable, problem))?;
    match network
        .account(&user, AccountRequest::LogIn(credentials))
        .await
    {
        Ok(AccountReply::LoggedIn(_)) => Ok(()),
        Ok(other) => Err(error(
            ErrorType::Wait,
            DefinedCondition::InternalServerError,
            format!("an unexpected answer to the login: {other:?}"),
        )),
        Err(e) => Err(refused(e)),
    }
}

/// The network's refusal as a stanza error with its text.
fn refused(e: BridgeError) -> StanzaError {
    let (type_, condition) = match &e {
        BridgeError::Refused(_) => (ErrorType::Auth, DefinedCondition::NotAuthorized),
        BridgeError::Unreachable(_) => (ErrorType::Wait, DefinedCondition::RemoteServerTimeout),
        BridgeError::Invalid(_) => (ErrorType::Modify, DefinedCondition::NotAcceptable),
        BridgeError::NotFound(_) => (ErrorType::Cancel, DefinedCondition::ItemNotFound),
        BridgeError::ShutDown => (ErrorType::Wait, DefinedCondition::ServiceUnavailable),
    };
    error(type_, condition, e.to_string())
}

fn error(type_: ErrorType, condition: DefinedCondition, text: impl Into<String>) -> StanzaError {
    StanzaError::new(type_, condition, "en", text)
}
