//! XEP-0077 registration on the component's JID through the core, on
//! `FakeNetwork::with_accounts`: registering is logging in, removing is logging out, and
//! the network's refusals become stanza errors with its text.

use causeway_bridge::fake::{RIGHT_SECRET, UNREACHABLE_SERVER};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza_error::DefinedCondition;

use super::super::adhoc::{COMMANDS, DATA};
use super::super::stanzas::nc;
use super::accounts::{condition, fields, submitted, Core, ALICE, ERROR_TEXT, GW};

#[tokio::test]
async fn registering_is_logging_in() {
    let mut core = Core::new(true).await;
    let query = core.registration_form().await;
    assert!(query.get_child("registered", ns::REGISTER).is_none());
    assert!(query.get_child("instructions", ns::REGISTER).is_some());
    assert_eq!(
        query.get_child("username", ns::REGISTER).unwrap().text(),
        ""
    );
    assert!(query.get_child("password", ns::REGISTER).is_some());
    let form = query.get_child("x", DATA).expect("a data form");
    let vars = fields(form);
    assert_eq!(
        vars[0],
        (
            "FORM_TYPE".into(),
            "hidden".into(),
            vec![ns::REGISTER.to_owned()]
        )
    );
    let vars: Vec<_> = vars[1..].iter().map(|(var, _, _)| var.as_str()).collect();
    assert_eq!(vars, ["account", "password", "homeserver", "token"]);

    let form = |fields: &[(&str, &str)]| {
        let x = Element::builder("x", DATA)
            .attr(nc("type"), "submit")
            .append(submitted("FORM_TYPE", ns::REGISTER))
            .append_all(fields.iter().map(|(var, value)| submitted(var, value)));
        Element::builder("query", ns::REGISTER)
            .append(x.build())
            .build()
    };
    let legacy = |username: &str, password: &str| {
        Element::builder("query", ns::REGISTER)
            .append(
                Element::builder("username", ns::REGISTER)
                    .append(username)
                    .build(),
            )
            .append(
                Element::builder("password", ns::REGISTER)
                    .append(password)
                    .build(),
            )
            .build()
    };
    let (refused, text) = condition(core.register(legacy("@alice:example.org", "wrong")).await);
    assert_eq!(refused, DefinedCondition::NotAuthorized);
    assert!(text.contains(ERROR_TEXT), "{text}");
    let far = form(&[
        ("account", "@alice:example.org"),
        ("password", RIGHT_SECRET),
        ("homeserver", UNREACHABLE_SERVER),
    ]);
    let (timeout, text) = condition(core.register(far).await);
    assert_eq!(timeout, DefinedCondition::RemoteServerTimeout);
    assert!(text.contains(UNREACHABLE_SERVER), "{text}");
    let (invalid, text) = condition(core.register(legacy("alice", RIGHT_SECRET)).await);
    assert_eq!(invalid, DefinedCondition::NotAcceptable);
    assert!(text.contains("not a Matrix ID"), "{text}");
    let (missing, text) = condition(
        core.register(form(&[("account", "@alice:example.org")]))
            .await,
    );
    assert_eq!(missing, DefinedCondition::NotAcceptable);
    // Registration cannot wait for a browser: the command can.
    assert!(
        text.starts_with("Give your password, or an access token instead")
            && text.contains("\"Log in to Matrix\" without a password"),
        "{text}"
    );

    let right = form(&[
        ("account", "@alice:example.org"),
        ("password", RIGHT_SECRET),
    ]);
    assert_eq!(core.register(right).await, Ok(None));
    let query = core.registration_form().await;
    assert!(query.get_child("registered", ns::REGISTER).is_some());
    assert_eq!(
        query.get_child("username", ns::REGISTER).unwrap().text(),
        "@alice:example.org"
    );
    assert_eq!(
        core.register(legacy("@alice:example.org", RIGHT_SECRET))
            .await,
        Ok(None)
    );

    let remove = Element::builder("query", ns::REGISTER)
        .append(Element::builder("remove", ns::REGISTER).build())
        .build();
    assert_eq!(core.register(remove).await, Ok(None));
    let query = core.registration_form().await;
    assert!(query.get_child("registered", ns::REGISTER).is_none());
}

#[tokio::test]
async fn strangers_cannot_register_and_requests_keep_secrets_out_of_logs() {
    let mut core = Core::new(true).await;
    let get = Element::builder("query", ns::REGISTER).build();
    let Iq::Error { error, .. } = core.ask("mallory@evil.example/x", true, get).await else {
        panic!("a stranger registers")
    };
    assert_eq!(error.defined_condition, DefinedCondition::Forbidden);

    let password = Element::builder("password", ns::REGISTER)
        .append("hunter2")
        .build();
    let set = Iq::Set {
        from: Some(ALICE.parse().unwrap()),
        to: Some(GW.parse().unwrap()),
        id: "q1".into(),
        payload: Element::builder("query", ns::REGISTER)
            .append(password)
            .build(),
    };
    let effects = core.gateway.handle_stanza(set.into());
    let debug = format!("{effects:?}");
    assert_eq!(effects.register.len(), 1);
    assert!(!debug.contains("hunter2"), "{debug}");
    let command = Element::builder("command", COMMANDS)
        .attr(nc("node"), "matrix-login")
        .append(
            Element::builder("x", DATA)
                .attr(nc("type"), "submit")
                .append(submitted("password", "hunter2"))
                .build(),
        )
        .build();
    let set = Iq::Set {
        from: Some(ALICE.parse().unwrap()),
        to: Some(GW.parse().unwrap()),
        id: "q2".into(),
        payload: command,
    };
    let effects = core.gateway.handle_stanza(set.into());
    let debug = format!("{effects:?}");
    assert_eq!(effects.adhoc.len(), 1);
    assert!(!debug.contains("hunter2"), "{debug}");
}
