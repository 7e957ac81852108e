//! Users' own accounts through the core, on `FakeNetwork::with_accounts`: the account
//! commands on the component's JID, from the stanza in to the reply the side task sends,
//! and nothing of them (nor of registration) where the network has no accounts. The
//! `Core` here drives `registration` too.

use std::sync::Arc;

use causeway_bridge::fake::{FakeNetwork, RIGHT_SECRET};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, StanzaError};
use tokio_xmpp::Stanza;

use super::super::adhoc::{self, COMMANDS, DATA};
use super::super::muc::Muc;
use super::super::register;
use super::super::stanzas::nc;
use super::{AccessList, Gateway, NetworkKind};
use crate::address::IrcAddressing;
use crate::store::Store;

pub(super) const GW: &str = "matrix.example.org";
pub(super) const ALICE: &str = "alice@example.org/phone";
pub(super) const ERROR_TEXT: &str = "M_FORBIDDEN: Invalid username or password";

/// The Matrix domain's core, its network and a store, as `serve` joins them.
pub(super) struct Core {
    pub(super) gateway: Gateway,
    network: Arc<FakeNetwork>,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Core {
    pub(super) async fn new(accounts: bool) -> Core {
        let network = Arc::new(if accounts {
            FakeNetwork::with_accounts()
        } else {
            FakeNetwork::default()
        });
        let muc = Muc::new(IrcAddressing::matrix(GW), true, 20);
        let gateway = Gateway::new(
            NetworkKind::Matrix,
            GW.parse().unwrap(),
            AccessList::new(&["example.org".to_string()]),
            Some(muc),
        )
        .with_accounts(causeway_bridge::Network::has_accounts(&*network));
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("core.db").display());
        Core {
            gateway,
            network,
            store: Store::open(&url, 1).await.unwrap(),
            _dir: dir,
        }
    }

    /// The one reply to an iq from `from`, side tasks included.
    pub(super) async fn ask(&mut self, from: &str, is_get: bool, payload: Element) -> Iq {
        let (from, to) = (Some(from.parse().unwrap()), Some(GW.parse().unwrap()));
        let id = "q1".to_owned();
        let iq = if is_get {
            Iq::Get {
                from,
                to,
                id,
                payload,
            }
        } else {
            Iq::Set {
                from,
                to,
                id,
                payload,
            }
        };
        let effects = self.gateway.handle_stanza(iq.into());
        let network: &dyn causeway_bridge::Network = &*self.network;
        let mut replies = effects.stanzas;
        for request in &effects.adhoc {
            replies.extend(adhoc::run(&self.store, Some(network), None, request).await);
        }
        for request in &effects.register {
            replies.push(register::run(Some(network), request).await);
        }
        assert_eq!(replies.len(), 1, "{replies:?}");
        match replies.remove(0) {
            Stanza::Iq(iq) => iq,
            other => panic!("{other:?}"),
        }
    }

    /// One command step from alice: the `<command/>` answered.
    pub(super) async fn command(&mut self, node: &str, fields: &[(&str, &str)]) -> Element {
        let mut command = Element::builder("command", COMMANDS)
            .attr(nc("node"), node)
            .attr(nc("action"), "execute");
        if !fields.is_empty() {
            let form = Element::builder("x", DATA)
                .attr(nc("type"), "submit")
                .append_all(fields.iter().map(|(var, value)| submitted(var, value)));
            command = command.append(form.build());
        }
        match self.ask(ALICE, false, command.build()).await {
            Iq::Result {
                payload: Some(command),
                ..
            } => command,
            other => panic!("{other:?}"),
        }
    }

    pub(super) async fn register(
        &mut self,
        query: Element,
    ) -> Result<Option<Element>, StanzaError> {
        match self.ask(ALICE, false, query).await {
            Iq::Result { payload, .. } => Ok(payload),
            Iq::Error { error, .. } => Err(error),
            other => panic!("{other:?}"),
        }
    }

    pub(super) async fn registration_form(&mut self) -> Element {
        let get = Element::builder("query", ns::REGISTER).build();
        match self.ask(ALICE, true, get).await {
            Iq::Result {
                payload: Some(query),
                ..
            } => query,
            other => panic!("{other:?}"),
        }
    }
}

pub(super) fn submitted(var: &str, value: &str) -> Element {
    Element::builder("field", DATA)
        .attr(nc("var"), var)
        .append(Element::builder("value", DATA).append(value).build())
        .build()
}

/// The note's type and text.
pub(super) fn note(command: &Element) -> (String, String) {
    let note = command.get_child("note", COMMANDS).expect("a note");
    (note.attr("type").unwrap().to_owned(), note.text())
}

/// The form's fields: (var, type, values).
pub(super) fn fields(form: &Element) -> Vec<(String, String, Vec<String>)> {
    form.children()
        .filter(|f| f.is("field", DATA))
        .map(|f| {
            let values = f.children().map(|v| v.text()).collect();
            let attr = |name| f.attr(name).unwrap_or_default().to_owned();
            (attr("var"), attr("type"), values)
        })
        .collect()
}

pub(super) fn condition(error: Result<Option<Element>, StanzaError>) -> (DefinedCondition, String) {
    let error = error.expect_err("an error");
    (error.defined_condition, error.texts["en"].clone())
}

async fn disco(core: &mut Core) -> (Vec<String>, Vec<String>) {
    let info = match core
        .ask(ALICE, true, DiscoInfoQuery { node: None }.into())
        .await
    {
        Iq::Result {
            payload: Some(info),
            ..
        } => DiscoInfoResult::try_from(info).unwrap(),
        other => panic!("{other:?}"),
    };
    let list = Element::builder("query", ns::DISCO_ITEMS)
        .attr(nc("node"), COMMANDS)
        .build();
    let Iq::Result {
        payload: Some(items),
        ..
    } = core.ask(ALICE, true, list).await
    else {
        panic!("no command list")
    };
    let nodes = items
        .children()
        .map(|i| i.attr("node").unwrap().to_owned())
        .collect();
    (info.features.into_iter().collect(), nodes)
}

#[tokio::test]
async fn registration_and_commands_are_offered_only_with_accounts() {
    let mut core = Core::new(true).await;
    let (features, nodes) = disco(&mut core).await;
    assert!(features.iter().any(|f| f == ns::REGISTER), "{features:?}");
    for node in [
        "matrix-login",
        "matrix-logout",
        "matrix-status",
        "matrix-verify",
    ] {
        assert!(nodes.iter().any(|n| n == node), "{node} not in {nodes:?}");
    }

    let mut core = Core::new(false).await;
    let (features, nodes) = disco(&mut core).await;
    assert!(!features.iter().any(|f| f == ns::REGISTER), "{features:?}");
    assert!(!nodes.iter().any(|n| n.starts_with("matrix-")), "{nodes:?}");
    let command = Element::builder("command", COMMANDS)
        .attr(nc("node"), "matrix-login")
        .build();
    let Iq::Error { error, .. } = core.ask(ALICE, false, command).await else {
        panic!("a command that is not offered runs")
    };
    assert_eq!(error.defined_condition, DefinedCondition::ItemNotFound);
    let get = Element::builder("query", ns::REGISTER).build();
    let Iq::Error { error, .. } = core.ask(ALICE, true, get).await else {
        panic!("registration without accounts")
    };
    assert_eq!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
    );
}

#[tokio::test]
async fn logging_in_with_the_command() {
    let mut core = Core::new(true).await;
    let first = core.command("matrix-login", &[]).await;
    assert_eq!(first.attr("status"), Some("executing"));
    let form = first.get_child("x", DATA).unwrap();
    let kinds: Vec<_> = fields(form)
        .into_iter()
        .map(|(var, kind, _)| format!("{var}:{kind}"))
        .collect();
    assert_eq!(
        kinds,
        [
            "account:text-single",
            "password:text-private",
            "homeserver:text-single",
            "token:text-private"
        ]
    );

    let account = ("account", "@alice:example.org");
    let both = [account, ("password", "x"), ("token", "y")];
    let again = core.command("matrix-login", &both).await;
    assert_eq!(again.attr("status"), Some("executing"));
    assert_eq!(
        note(&again),
        (
            "error".into(),
            "Give a password or an access token, not both.".into()
        )
    );
    // What was given comes back, but never a secret.
    let given = fields(again.get_child("x", DATA).unwrap());
    assert_eq!(given[0].2, ["@alice:example.org"]);
    assert!(given[1].2.is_empty() && given[3].2.is_empty(), "{given:?}");
    // Neither: a login through the browser, which this homeserver does not offer.
    let neither = core.command("matrix-login", &[account]).await;
    assert_eq!(neither.attr("status"), Some("executing"));
    let (kind, text) = note(&neither);
    assert_eq!(kind, "error");
    assert!(text.contains("takes passwords"), "{text}");

    let wrong = core
        .command("matrix-login", &[account, ("password", "wrong")])
        .await;
    assert_eq!(wrong.attr("status"), Some("completed"));
    let (kind, text) = note(&wrong);
    assert_eq!(kind, "error");
    assert!(
        text.starts_with("Login failed: ") && text.contains(ERROR_TEXT),
        "{text}"
    );

    let right = core
        .command("matrix-login", &[account, ("password", RIGHT_SECRET)])
        .await;
    assert_eq!(right.attr("status"), Some("completed"));
    assert_eq!(
        note(&right),
        (
            "info".into(),
            "Logged in: @alice:example.org on https://example.org, device FAKEDEVICE (not verified), connected.".into()
        )
    );
}

#[tokio::test]
async fn status_verify_and_logout_commands() {
    let mut core = Core::new(true).await;
    let status = core.command("matrix-status", &[]).await;
    assert_eq!(status.attr("status"), Some("completed"));
    assert_eq!(note(&status).1, "You are not logged in to Matrix.");
    let logout = core.command("matrix-logout", &[]).await;
    assert_eq!(note(&logout).1, "You are not logged in to Matrix.");

    core.command(
        "matrix-login",
        &[
            ("token", RIGHT_SECRET),
            ("homeserver", "https://hs.example"),
        ],
    )
    .await;
    let status = core.command("matrix-status", &[]).await;
    assert!(status.get_child("actions", COMMANDS).is_none());
    let values: Vec<_> = fields(status.get_child("x", DATA).unwrap())
        .into_iter()
        .map(|(var, _, values)| format!("{var}={}", values.join(",")))
        .collect();
    assert_eq!(
        values,
        [
            "account=@owner-of-the-token:example.org",
            "homeserver=https://hs.example",
            "device=FAKEDEVICE",
            "verified=no",
            "connection=connected"
        ]
    );

    let form = core.command("matrix-verify", &[]).await;
    let asked = fields(form.get_child("x", DATA).unwrap());
    assert_eq!(
        (asked[0].0.as_str(), asked[0].1.as_str()),
        ("recovery", "text-private")
    );
    let wrong = core.command("matrix-verify", &[("recovery", "nope")]).await;
    assert_eq!(
        note(&wrong),
        (
            "error".into(),
            "Verification failed: refused by the remote server: the recovery key is wrong.".into()
        )
    );
    let right = core
        .command("matrix-verify", &[("recovery", RIGHT_SECRET)])
        .await;
    let (kind, text) = note(&right);
    assert_eq!(kind, "info");
    assert!(text.starts_with("This session is verified: ") && text.contains("(verified)"));

    let confirm = core.command("matrix-logout", &[]).await;
    assert_eq!(confirm.attr("status"), Some("executing"));
    let asked = fields(confirm.get_child("x", DATA).unwrap());
    assert_eq!(
        (asked[0].0.as_str(), asked[0].1.as_str()),
        ("confirm", "boolean")
    );
    let kept = core.command("matrix-logout", &[("confirm", "0")]).await;
    assert_eq!(note(&kept).1, "Nothing was done: you are still logged in.");
    let out = core.command("matrix-logout", &[("confirm", "1")]).await;
    assert_eq!(note(&out), ("info".into(), "Logged out of Matrix.".into()));
    let status = core.command("matrix-status", &[]).await;
    assert_eq!(note(&status).1, "You are not logged in to Matrix.");
}
