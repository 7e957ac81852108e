//! Connections to one IRC server are paced, all puppets together: after the server drops
//! every puppet at once, they come back one by one, `reconnect_interval_ms` apart, and each
//! XMPP user is told once that the connection was lost and once that it is back.

use std::time::{Duration, Instant};

use xmpp_client::parsers::message::Message;
use xmpp_client::Stanza;

use crate::harness::irc_server::IrcKind;
use crate::harness::muc::*;
use crate::harness::scene::Scene;

const USERS: usize = 6;
const INTERVAL: Duration = Duration::from_millis(1000);
/// What registering on ngircd over loopback may add to one connection and not the next:
/// the gaps between registrations are the paced gaps between openings, give or take this.
const REGISTRATION_SPREAD: Duration = Duration::from_millis(250);

fn is_notice(s: &Stanza, room: &str, starts: &str) -> bool {
    matches!(s, Stanza::Message(m) if sender(s) == room
        && body(m).is_some_and(|b| b.starts_with(starts)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puppets_dropped_at_once_reconnect_at_the_configured_pace() {
    let keys = format!(
        "reconnect_interval_ms = {}\nreconnect_concurrency = 1\n",
        INTERVAL.as_millis()
    );
    let mut s = Scene::irc(IrcKind::Ngircd).server_keys(&keys).await;
    let room = Scene::room("#paced");
    let mut users = Vec::new();
    for i in 0..USERS {
        let mut user = s.xmpp_user(&format!("user{i}")).await;
        enter(&mut user, &room, &format!("user{i}")).await;
        users.push(user);
    }

    s.irc.stop();
    for user in &mut users {
        user.expect("news of the lost connection", |s| {
            is_notice(s, &room, "Connection to 127.0.0.1 lost").then_some(())
        })
        .await;
    }
    // Attempts fail meanwhile (paced as well).
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.irc.resume();

    // When each user hears that the connection is back, and how many more "lost" notices
    // came before that.
    let back = futures::future::join_all(users.iter_mut().map(|user| {
        let room = room.clone();
        async move {
            let mut lost_again = 0;
            let found = user
                .try_expect(Duration::from_secs(90), |s| {
                    if is_notice(s, &room, "Connection to 127.0.0.1 lost") {
                        lost_again += 1;
                    }
                    is_notice(s, &room, "Reconnected to 127.0.0.1").then(Instant::now)
                })
                .await;
            (found.ok(), lost_again)
        }
    }))
    .await;
    let mut times = Vec::new();
    for (i, (at, lost_again)) in back.into_iter().enumerate() {
        let at = at.unwrap_or_else(|| panic!("user{i} is never told the connection is back"));
        assert_eq!(
            lost_again, 0,
            "user{i} was told of the loss once, not per attempt"
        );
        times.push(at);
    }
    times.sort();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for gap in &gaps {
        assert!(
            *gap + REGISTRATION_SPREAD >= INTERVAL,
            "reconnections {INTERVAL:?} apart at least: {gaps:?}"
        );
    }
    for (i, user) in users.iter_mut().enumerate() {
        assert_eq!(
            user.quiet_for(Duration::from_millis(500), |s| {
                is_notice(s, &room, "Reconnected") || is_notice(s, &room, "Connection to")
            })
            .await,
            None,
            "user{i} is told once"
        );
    }

    // Everyone is back in the channel.
    let mut watcher = s.irc_user("watcher").await;
    watcher.send("NAMES #paced").await;
    let names = watcher
        .expect("the channel's names", |l| {
            l.split(' ').nth(1) == Some("353")
        })
        .await;
    for i in 0..USERS {
        assert!(
            names
                .split([' ', ':', '@', '+'])
                .any(|n| n == format!("user{i}")),
            "user{i} in {names}"
        );
    }
    for user in users {
        user.logout().await;
    }
    s.stop().await;
}

/// A user waiting for their turn to connect holds nobody else up: what they send meanwhile
/// waits with their connection (here more than a session's old bound of 256 commands), and
/// the gateway goes on serving the others — bob sees the other user's message before the
/// waiting user even joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_waiting_for_a_turn_holds_nobody_else_up() {
    let keys = "reconnect_interval_ms = 8000\nreconnect_concurrency = 1\n";
    let s = Scene::irc(IrcKind::Ngircd).server_keys(keys).await;
    let room = Scene::room("#turns");
    let mut bob = s.irc_user_in("bob", "#turns").await;
    let mut first = s.xmpp_user("first").await;
    enter(&mut first, &room, "first").await;
    bob.expect("first joining", |l| {
        l.starts_with(":first!") && l.contains(" JOIN ")
    })
    .await;
    // The next connection waits 8–12 s for its turn; its user writes to bob meanwhile, and
    // the messages have time to reach the gateway before the other user speaks.
    let mut second = s.xmpp_user("second").await;
    second.send(join(&format!("{room}/second"))).await;
    for i in 0..300 {
        let mut pm = Message::chat(Some("bob%127.0.0.1@irc.localhost".parse().unwrap()));
        pm.bodies.insert(Default::default(), format!("waiting {i}"));
        second.send(pm).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.send(groupchat_to(&room, "not held up")).await;
    let seen = bob
        .expect("first's message or second joining", |l| {
            l.ends_with("PRIVMSG #turns :not held up")
                || (l.starts_with(":second!") && l.contains(" JOIN "))
        })
        .await;
    assert!(
        seen.ends_with("not held up"),
        "the gateway waited for second's turn before serving first: {seen}"
    );
    // Second's turn comes, and with it the channel and the messages, in order.
    let joined = bob
        .nothing_within(Duration::from_secs(15), |l| {
            l.starts_with(":second!") && l.contains(" JOIN ")
        })
        .await;
    assert!(joined.is_err(), "second never joined");
    bob.expect("second's first message", |l| {
        l.starts_with(":second!") && l.ends_with("PRIVMSG bob :waiting 0")
    })
    .await;
    for user in [first, second] {
        user.logout().await;
    }
    s.stop().await;
}
