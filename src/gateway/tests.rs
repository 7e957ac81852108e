mod account_steps;
mod accounts;
mod listing;
mod registration;

use super::*;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::version::{VersionQuery, VersionResult};

fn gateway(network: NetworkKind) -> Gateway {
    let domain = match network {
        NetworkKind::Irc => "irc.example.org",
        NetworkKind::Matrix => "matrix.example.org",
    };
    Gateway::new(
        network,
        domain.parse().unwrap(),
        AccessList::new(&["example.org".to_string()]),
        None,
    )
}

fn get(to: &str, from: &str, payload: impl Into<Element>) -> Stanza {
    Iq::Get {
        from: Some(from.parse().unwrap()),
        to: Some(to.parse().unwrap()),
        id: "q1".into(),
        payload: payload.into(),
    }
    .into()
}

fn result_payload(reply: Option<Stanza>) -> Option<Element> {
    match reply {
        Some(Stanza::Iq(Iq::Result {
            id,
            to,
            from,
            payload,
        })) => {
            assert_eq!(id, "q1");
            assert_eq!(to.unwrap().to_string(), "alice@example.org/phone");
            assert!(from.is_some());
            payload
        }
        other => panic!("expected a result, got {other:?}"),
    }
}

fn error_of(reply: Option<Stanza>) -> StanzaError {
    match reply {
        Some(Stanza::Iq(Iq::Error { error, id, .. })) => {
            assert_eq!(id, "q1");
            error
        }
        Some(Stanza::Message(m)) => {
            assert_eq!(m.type_, MessageType::Error);
            StanzaError::try_from(m.payloads[0].clone()).unwrap()
        }
        Some(Stanza::Presence(p)) => {
            assert_eq!(p.type_, PresenceType::Error);
            StanzaError::try_from(p.payloads[0].clone()).unwrap()
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

const ALICE: &str = "alice@example.org/phone";

#[test]
fn disco_info_names_the_gateway_and_its_features() {
    let info = result_payload(gateway(NetworkKind::Irc).handle(get(
        "irc.example.org",
        ALICE,
        DiscoInfoQuery { node: None },
    )));
    let info = DiscoInfoResult::try_from(info.unwrap()).unwrap();
    let ids: Vec<_> = info
        .identities
        .iter()
        .map(|i| (i.category.as_str(), i.type_.as_str()))
        .collect();
    assert_eq!(ids, [("gateway", "irc"), ("conference", "irc")]);
    for feature in [ns::DISCO_INFO, ns::DISCO_ITEMS, ns::PING, ns::VERSION] {
        assert!(info.features.contains(feature), "{feature} missing");
    }

    let info = result_payload(gateway(NetworkKind::Matrix).handle(get(
        "matrix.example.org",
        ALICE,
        DiscoInfoQuery { node: None },
    )));
    let info = DiscoInfoResult::try_from(info.unwrap()).unwrap();
    let ids: Vec<_> = info
        .identities
        .iter()
        .map(|i| (i.category.as_str(), i.type_.as_str()))
        .collect();
    assert_eq!(ids, [("gateway", "matrix")]);
}

#[test]
fn disco_info_of_an_unknown_node_is_item_not_found() {
    let reply = gateway(NetworkKind::Irc).handle(get(
        "irc.example.org",
        ALICE,
        DiscoInfoQuery {
            node: Some("x".into()),
        },
    ));
    assert_eq!(
        error_of(reply).defined_condition,
        DefinedCondition::ItemNotFound
    );
}

#[test]
fn ping_and_version_are_answered() {
    let mut gw = gateway(NetworkKind::Irc);
    assert_eq!(
        result_payload(gw.handle(get("irc.example.org", ALICE, Ping))),
        None
    );
    let version = VersionResult::try_from(
        result_payload(gw.handle(get("irc.example.org", ALICE, VersionQuery))).unwrap(),
    )
    .unwrap();
    assert_eq!(version.name, "causeway");
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.os, None);
}

#[test]
fn unsupported_requests_get_service_unavailable_with_text() {
    let mut gw = gateway(NetworkKind::Irc);
    let vcard = Element::builder("vCard", "vcard-temp").build();
    let error = error_of(gw.handle(get("irc.example.org", ALICE, vcard.clone())));
    assert_eq!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
    );
    assert!(
        error.texts["en"].contains("vcard-temp"),
        "{:?}",
        error.texts
    );

    let set = Iq::Set {
        from: Some(ALICE.parse().unwrap()),
        to: Some("irc.example.org".parse().unwrap()),
        id: "q1".into(),
        payload: Ping.into(),
    };
    assert_eq!(
        error_of(gw.handle(set.into())).defined_condition,
        DefinedCondition::ServiceUnavailable
    );

    let error = error_of(gw.handle(get("#chan%irc.example.net@irc.example.org", ALICE, Ping)));
    assert_eq!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
    );
}

#[test]
fn errors_and_results_are_never_answered() {
    let mut gw = gateway(NetworkKind::Irc);
    let from: Jid = ALICE.parse().unwrap();
    let to: Jid = "irc.example.org".parse().unwrap();
    let error = StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "en",
        "x",
    );
    let iq_error = Iq::Error {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: "e".into(),
        error: error.clone(),
        payload: None,
    };
    assert_eq!(gw.handle(iq_error.into()), None);
    let result = Iq::Result {
        from: Some(from.clone()),
        to: Some(to.clone()),
        id: "r".into(),
        payload: None,
    };
    assert_eq!(gw.handle(result.into()), None);
    let mut message = Message::error(Some(to.clone()));
    message.from = Some(from.clone());
    assert_eq!(gw.handle(message.into()), None);
    let presence = Presence::error()
        .with_from(from.clone())
        .with_to(to.clone());
    assert_eq!(gw.handle(presence.into()), None);
    // Even from a stranger: no error answers an error.
    let stranger = Presence::error()
        .with_from("m@evil.example".parse::<Jid>().unwrap())
        .with_to(to);
    assert_eq!(gw.handle(stranger.into()), None);
}

#[test]
fn strangers_are_refused_with_forbidden_and_a_text() {
    let mut gw = gateway(NetworkKind::Irc);
    let mallory = "mallory@other.example/x";
    let error = error_of(gw.handle(get(
        "irc.example.org",
        mallory,
        DiscoInfoQuery { node: None },
    )));
    assert_eq!(error.defined_condition, DefinedCondition::Forbidden);
    assert_eq!(error.type_, ErrorType::Auth);
    assert!(
        error.texts["en"].contains("mallory@other.example"),
        "{:?}",
        error.texts
    );

    let mut join = Presence::available().with_from(mallory.parse::<Jid>().unwrap());
    join.to = Some("#chan%irc.example.net@irc.example.org/m".parse().unwrap());
    assert_eq!(
        error_of(gw.handle(join.into())).defined_condition,
        DefinedCondition::Forbidden
    );

    let mut message = Message::chat(Some(
        "nick%irc.example.net@irc.example.org".parse().unwrap(),
    ));
    message.from = Some(mallory.parse().unwrap());
    message.id = Some(tokio_xmpp::parsers::message::Id("m1".into()));
    let reply = gw.handle(message.into());
    let Some(Stanza::Message(m)) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(m.id.as_ref().unwrap().0, "m1");
    assert_eq!(m.to.as_ref().unwrap().to_string(), mallory);
    assert_eq!(
        error_of(reply).defined_condition,
        DefinedCondition::Forbidden
    );
}

#[test]
fn allowed_users_are_told_what_is_not_relayed_yet() {
    let mut gw = gateway(NetworkKind::Irc);
    let mut join = Presence::available().with_from(ALICE.parse::<Jid>().unwrap());
    join.to = Some(
        "#chan%irc.example.net@irc.example.org/alice"
            .parse()
            .unwrap(),
    );
    let error = error_of(gw.handle(join.into()));
    assert_eq!(
        error.defined_condition,
        DefinedCondition::FeatureNotImplemented
    );
    assert!(error.texts["en"].contains("#chan%irc.example.net@irc.example.org"));
    // Leaving needs no answer.
    let leave = Presence::unavailable().with_from(ALICE.parse::<Jid>().unwrap());
    assert_eq!(gw.handle(leave.into()), None);
}

#[test]
fn the_components_own_keepalive_ping_is_answered() {
    let mut gw = gateway(NetworkKind::Irc);
    let ping = get("irc.example.org", "irc.example.org", Ping);
    match gw.handle(ping) {
        Some(Stanza::Iq(Iq::Result { to, .. })) => {
            assert_eq!(to.unwrap().to_string(), "irc.example.org")
        }
        other => panic!("{other:?}"),
    }
}
