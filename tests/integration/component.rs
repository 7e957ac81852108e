//! The foundation end to end, on Prosody and on ejabberd: the XEP-0114 handshake, what a
//! logged-in user sees of the gateway domain, access control, a wrong secret, a server
//! restart, and shutdown by signal.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use xmpp_client::parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use xmpp_client::parsers::message::{Message, MessageType};
use xmpp_client::parsers::ns;
use xmpp_client::parsers::ping::Ping;
use xmpp_client::parsers::stanza_error::DefinedCondition;
use xmpp_client::parsers::version::{VersionQuery, VersionResult};
use xmpp_client::{IqResponse, Stanza};

use crate::harness::{
    config_toml, gateway_config, Flavor, Gateway, TestClient, XmppServer, ANSWER,
};

/// Run one scenario against Prosody and against ejabberd.
macro_rules! on_both_servers {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn prosody() {
                super::$scenario(Flavor::Prosody).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ejabberd() {
                super::$scenario(Flavor::Ejabberd).await
            }
        }
    )*};
}

on_both_servers!(
    gateway_answers_disco_ping_and_version,
    strangers_are_refused,
    wrong_secret_fails_clearly,
    reconnects_after_server_restart,
    sigterm_closes_streams
);

async fn gateway_answers_disco_ping_and_version(flavor: Flavor) {
    let server = XmppServer::start(flavor);
    let gateway = Gateway::start(&server).await;
    let mut alice = TestClient::login(&server, "alice", "localhost").await;

    let IqResponse::Result(Some(info)) = alice
        .get("irc.localhost", DiscoInfoQuery { node: None })
        .await
    else {
        panic!("disco#info not answered with a result")
    };
    let info = DiscoInfoResult::try_from(info).unwrap();
    let identities: Vec<_> = info
        .identities
        .iter()
        .map(|i| (i.category.as_str(), i.type_.as_str()))
        .collect();
    assert!(identities.contains(&("gateway", "irc")), "{identities:?}");
    assert!(
        identities.contains(&("conference", "irc")),
        "{identities:?}"
    );
    for feature in [ns::DISCO_INFO, ns::PING, ns::VERSION, ns::MUC] {
        assert!(
            info.features.iter().any(|f| f.var == feature),
            "{feature} not advertised: {:?}",
            info.features
        );
    }

    assert!(matches!(
        alice.get("irc.localhost", Ping).await,
        IqResponse::Result(None)
    ));

    let IqResponse::Result(Some(version)) = alice.get("irc.localhost", VersionQuery).await else {
        panic!("version not answered with a result")
    };
    let version = VersionResult::try_from(version).unwrap();
    assert_eq!(
        (version.name.as_str(), version.version.as_str()),
        ("causeway", env!("CARGO_PKG_VERSION"))
    );

    // Something the gateway does not do: an error with a text, never silence.
    let vcard = xmpp_client::minidom::Element::builder("vCard", "vcard-temp").build();
    let IqResponse::Error(error) = alice.get("irc.localhost", vcard).await else {
        panic!("vCard request not refused")
    };
    assert_eq!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
    );
    assert!(!error.texts.is_empty());

    alice.logout().await;
    gateway.stop().await;
}

async fn strangers_are_refused(flavor: Flavor) {
    let server = XmppServer::start(flavor);
    let gateway = Gateway::start(&server).await;
    // other.localhost is a host of the same server, but not in [access] allow.
    let mut mallory = TestClient::login(&server, "mallory", "other.localhost").await;
    let IqResponse::Error(error) = mallory
        .get("irc.localhost", DiscoInfoQuery { node: None })
        .await
    else {
        panic!("a stranger got an answer")
    };
    assert_eq!(error.defined_condition, DefinedCondition::Forbidden);
    assert!(
        error
            .texts
            .values()
            .any(|t| t.contains("mallory@other.localhost")),
        "{:?}",
        error.texts
    );

    let mut message = Message::chat(Some("#chan%irc.example.net@irc.localhost".parse().unwrap()));
    message.bodies.insert(Default::default(), "hello".into());
    mallory.send(message).await;
    let refused = mallory
        .expect("message error", |s| match s {
            Stanza::Message(m) if m.type_ == MessageType::Error => Some(m.clone()),
            _ => None,
        })
        .await;
    let error =
        xmpp_client::parsers::stanza_error::StanzaError::try_from(refused.payloads[0].clone())
            .unwrap();
    assert_eq!(error.defined_condition, DefinedCondition::Forbidden);

    // The allowed user of the same server is served.
    let mut alice = TestClient::login(&server, "alice", "localhost").await;
    assert!(matches!(
        alice.get("irc.localhost", Ping).await,
        IqResponse::Result(None)
    ));
    mallory.logout().await;
    alice.logout().await;
    gateway.stop().await;
}

async fn wrong_secret_fails_clearly(flavor: Flavor) {
    let server = XmppServer::start(flavor);
    let db = tempfile::tempdir().unwrap();

    // In process: start fails, naming the domain.
    let config = gateway_config(&server, "not-the-secret", db.path());
    let err = causeway::start(config, Default::default())
        .await
        .expect_err("a wrong secret must fail the start");
    let text = err.to_string();
    assert!(text.contains("irc.localhost"), "{text}");
    assert!(text.contains("refused the handshake"), "{text}");

    // The binary: a non-zero exit with the same message on stderr.
    let config_path = db.path().join("causeway.toml");
    std::fs::write(
        &config_path,
        config_toml(&server, "not-the-secret", db.path()),
    )
    .unwrap();
    let output = tokio::time::timeout(
        ANSWER,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("--config")
            .arg(&config_path)
            .output(),
    )
    .await
    .expect("causeway exits promptly on a wrong secret")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "exit status {:?}\n{stderr}",
        output.status
    );
    assert!(
        stderr.contains("component irc.localhost") && stderr.contains("refused the handshake"),
        "{stderr}"
    );
}

async fn reconnects_after_server_restart(flavor: Flavor) {
    let mut server = XmppServer::start(flavor);
    server.register("alice", "localhost", "password");
    let gateway = Gateway::start(&server).await;
    let mut alice = TestClient::connect(&server, "alice", "localhost").await;
    assert!(matches!(
        alice.get("irc.localhost", Ping).await,
        IqResponse::Result(None)
    ));
    alice.logout().await;

    server.stop();
    // Produced while the link is down: must wait in the queue and arrive after reconnect.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Built with the gateway's own parsers (the test client's are another version).
    let mut queued =
        tokio_xmpp::parsers::message::Message::chat(Some("alice@localhost".parse().unwrap()));
    queued.from = Some("irc.localhost".parse().unwrap());
    queued
        .bodies
        .insert(Default::default(), "sent while the server was down".into());
    gateway.links[0].outbox.push(queued.into());
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.resume();
    let back = Instant::now();
    // The queued stanza leaves the outbox once the link is back. Alice logs in only then:
    // logging in while it arrives races the server's own offline storage (ejabberd stores
    // and replays offline messages asynchronously), which is not what this test is about.
    while !gateway.links[0].outbox.is_empty() {
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "the queue was not flushed after the restart\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flushed = back.elapsed();
    assert!(
        flushed <= Duration::from_secs(5),
        "the link came back only {flushed:?} after the server"
    );
    let mut alice = TestClient::connect(&server, "alice", "localhost").await;
    let answered = loop {
        if let Some(IqResponse::Result(_)) = alice
            .try_get("irc.localhost", Ping, Duration::from_millis(500))
            .await
        {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "gateway did not answer after restart\n{}",
            server.logs()
        );
    };
    assert!(
        answered <= Duration::from_secs(5),
        "gateway answered only {answered:?} after the server was back"
    );

    let delivered = alice
        .expect("the queued message", |s| match s {
            Stanza::Message(m)
                if m.bodies
                    .values()
                    .any(|b| b == "sent while the server was down") =>
            {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(delivered.from.unwrap().to_string(), "irc.localhost");
    alice.logout().await;
    gateway.stop().await;
}

async fn sigterm_closes_streams(flavor: Flavor) {
    let server = XmppServer::start(flavor);
    let db = tempfile::tempdir().unwrap();
    let config_path = db.path().join("causeway.toml");
    std::fs::write(
        &config_path,
        config_toml(&server, &server.secret, db.path()),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the gateway answers, so the link is up.
    let mut alice = TestClient::login(&server, "alice", "localhost").await;
    let up = Instant::now();
    while !matches!(
        alice
            .try_get("irc.localhost", Ping, Duration::from_millis(500))
            .await,
        Some(IqResponse::Result(_))
    ) {
        assert!(
            up.elapsed() < ANSWER,
            "gateway never answered\n{}",
            server.logs()
        );
    }

    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("component link closed"),
        "stream not closed properly:\n{stderr}"
    );
    assert!(stderr.contains("causeway stopped"), "{stderr}");

    // The server saw the component go: the domain now bounces.
    let IqResponse::Error(_) = alice.get("irc.localhost", Ping).await else {
        panic!("gateway still answering after exit")
    };
    alice.logout().await;
}
