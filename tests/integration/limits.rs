//! What one user may take of the gateway, against a real ngircd: a join past the channels
//! allowed is refused with the reason and never reaches IRC; messages past the user's rate
//! are refused with an error saying to wait, while other users' messages go through.

use std::time::Duration;

use xmpp_client::parsers::message::MessageType;
use xmpp_client::parsers::presence::Type as PresenceType;
use xmpp_client::parsers::stanza_error::{DefinedCondition, StanzaError};
use xmpp_client::Stanza;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;

fn stanza_error(payloads: &[xmpp_client::minidom::Element]) -> Option<StanzaError> {
    payloads
        .iter()
        .find_map(|e| StanzaError::try_from(e.clone()).ok())
}

fn text(error: &StanzaError) -> String {
    error.texts.values().next().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_channels_and_message_rate_are_limited_with_a_clear_error() {
    let s = Scene::irc(IrcKind::Ngircd)
        .irc_keys("max_channels_per_user = 2\n")
        .access_keys("messages_per_minute = 6\nmessage_burst = 3\n")
        .await;
    let (one, two, three) = (
        Scene::room("#one"),
        Scene::room("#two"),
        Scene::room("#three"),
    );
    let mut bob = s.irc_user_in("bob", "#one").await;
    let mut alice = s.xmpp_user("alice").await;
    enter(&mut alice, &one, "alice").await;
    enter(&mut alice, &two, "alice").await;

    alice.send(join(&format!("{three}/alice"))).await;
    let error = alice
        .expect("the third channel refused", |s| match s {
            Stanza::Presence(p)
                if p.type_ == PresenceType::Error && sender(s).starts_with(&three) =>
            {
                stanza_error(&p.payloads)
            }
            _ => None,
        })
        .await;
    assert_eq!(error.defined_condition, DefinedCondition::PolicyViolation);
    assert!(text(&error).contains("in 2 rooms"), "{}", text(&error));
    bob.send("WHOIS alice").await;
    let channels = bob
        .expect("alice's channels", |l| l.split(' ').nth(1) == Some("319"))
        .await;
    assert!(
        channels.contains("#one") && channels.contains("#two") && !channels.contains("#three"),
        "the refused join never reached IRC: {channels}"
    );

    // Five messages at once: the burst of three goes, the other two are refused.
    for i in 0..5 {
        alice.send(groupchat_to(&one, &format!("line {i}"))).await;
    }
    for i in 0..3 {
        bob.expect("a message within the burst", |l| {
            l.ends_with(&format!("PRIVMSG #one :line {i}"))
        })
        .await;
    }
    for _ in 0..2 {
        let error = alice
            .expect("a message past the rate refused", |s| match s {
                Stanza::Message(m) if m.type_ == MessageType::Error => stanza_error(&m.payloads),
                _ => None,
            })
            .await;
        assert_eq!(
            error.defined_condition,
            DefinedCondition::ResourceConstraint
        );
        assert!(text(&error).contains("wait a moment"), "{}", text(&error));
    }
    assert_eq!(
        bob.nothing_within(Duration::from_secs(1), |l| l.contains("PRIVMSG #one :line"))
            .await,
        Ok(())
    );

    // Another user is not held back by alice's rate.
    let mut carol = s.xmpp_user("carol").await;
    enter(&mut carol, &one, "carol").await;
    carol.send(groupchat_to(&one, "carol speaks")).await;
    bob.expect("carol's message", |l| {
        l.ends_with("PRIVMSG #one :carol speaks")
    })
    .await;

    alice.logout().await;
    carol.logout().await;
    s.stop().await;
}
