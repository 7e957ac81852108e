use super::*;

fn room_id() -> OwnedRoomId {
    OwnedRoomId::try_from("!AbCdEf").unwrap()
}

fn alice() -> UserRef {
    UserRef("alice@example.org".into())
}

fn reference() -> RoomRef {
    RoomRef {
        server: String::new(),
        name: "!abcdef".into(),
    }
}

/// The gateway's own rule (the root hands in the same): a nick is a valid JID resource,
/// as the XMPP server normalises it.
fn jid_resources() -> NickRule {
    std::sync::Arc::new(|name: &str| {
        jid::ResourcePart::new(name)
            .ok()
            .map(|nick| nick.to_string())
    })
}

fn seated(limit: usize, members: &[(&str, Option<&str>)]) -> (Rooms, Vec<Member>) {
    let mut rooms = Rooms::new(limit, jid_resources());
    let members = members
        .iter()
        .map(|(id, d)| (id.to_string(), d.map(str::to_owned)))
        .collect();
    let power = serde_json::json!({"users": {"@op:hs": 100}});
    rooms.load(
        &room_id(),
        members,
        "@p:hs",
        "the topic".into(),
        Some(&power),
    );
    let entered = rooms.enter(&room_id(), &alice(), reference(), "@p:hs".into(), "Al");
    assert_eq!(entered.subject, "the topic");
    assert!(entered.news.is_empty(), "nobody else to tell");
    (rooms, entered.members)
}

/// `user_id` joining, or renaming itself, as `display`.
fn joins<'a>(user_id: &'a str, display: &str) -> Change<'a> {
    Change {
        target: user_id,
        sender: user_id,
        membership: Membership::Join {
            display: Some(display.into()),
        },
        reason: None,
    }
}

fn nicks(members: &[Member]) -> Vec<String> {
    let mut nicks: Vec<String> = members.iter().map(|m| m.nick.clone()).collect();
    nicks.sort();
    nicks
}

#[test]
fn clashing_display_names_are_disambiguated_and_nicks_conflict() {
    let (rooms, shown) = seated(
        100,
        &[
            ("@a:hs", Some("Bob")),
            ("@b:hs", Some("bob")),
            ("@op:hs", None),
        ],
    );
    assert_eq!(nicks(&shown), ["Al", "Bob", "bob (@b:hs)", "op"]);
    assert!(shown
        .iter()
        .any(|m| m.nick == "op" && m.privilege == Privilege::Owner));
    assert!(rooms.nick_taken(&room_id(), "BOB", "@p:hs"));
    assert!(!rooms.nick_taken(&room_id(), "Al", "@p:hs"));
    assert_eq!(
        rooms.member_id(&room_id(), "bob (@b:hs)").as_deref(),
        Some("@b:hs")
    );
}

#[test]
fn big_rooms_show_the_limit_and_speakers_appear_when_they_speak() {
    let many: Vec<(String, Option<&str>)> =
        (0..600).map(|i| (format!("@u{i:03}:hs"), None)).collect();
    let borrowed: Vec<(&str, Option<&str>)> = many.iter().map(|(i, d)| (i.as_str(), *d)).collect();
    let (mut rooms, shown) = seated(50, &borrowed);
    assert_eq!(shown.len(), 51, "the limit plus the user's own puppet");
    let events = rooms.spoke(&room_id(), "@u599:hs", &|user, room, nick| Event::Subject {
        user: user.clone(),
        room: room.clone(),
        subject: String::new(),
        by: Some(nick.to_owned()),
    });
    assert!(matches!(&events[0], Event::MemberJoined { member, .. } if member.nick == "u599"));
    assert_eq!(events.len(), 2);
    let again = rooms.spoke(&room_id(), "@u599:hs", &|user, room, _| Event::Subject {
        user: user.clone(),
        room: room.clone(),
        subject: String::new(),
        by: None,
    });
    assert_eq!(again.len(), 1, "shown once");
}

#[test]
fn kicks_bans_renames_and_own_messages() {
    let (mut rooms, _) = seated(100, &[("@a:hs", Some("Ann")), ("@op:hs", None)]);
    let change = |target, sender, membership, reason: Option<&str>| Change {
        target,
        sender,
        membership,
        reason: reason.map(str::to_owned),
    };
    let anna = Membership::Join {
        display: Some("Anna".into()),
    };
    let renamed = rooms.membership(&room_id(), change("@a:hs", "@a:hs", anna, None));
    assert!(
        matches!(&renamed[..], [Event::NickChanged { old, new, .. }] if old == "Ann" && new == "Anna")
    );
    let kicked = rooms.membership(
        &room_id(),
        change("@a:hs", "@op:hs", Membership::Leave, Some("bye")),
    );
    assert!(
        matches!(&kicked[..], [Event::MemberLeft { departure: Departure::Kick { by }, .. }] if by == "op")
    );
    let own = rooms.spoke(&room_id(), "@p:hs", &|_, _, _| {
        unreachable!("no echo of our own")
    });
    assert!(own.is_empty());
    let banned = rooms.membership(&room_id(), change("@p:hs", "@op:hs", Membership::Ban, None));
    assert!(matches!(
        &banned[..],
        [Event::Left {
            departure: Departure::Ban { .. },
            ..
        }]
    ));
    assert!(!rooms.is_tracked(&room_id()), "the last XMPP user is gone");
}

#[test]
fn display_names_that_are_no_jid_resource_fall_back_to_the_user_id() {
    let long = "x".repeat(2000);
    let (rooms, shown) = seated(
        100,
        &[
            ("@emoji:hs", Some("🦀 crab")),
            ("@mixed:hs", Some("abc \u{5d0}\u{5d1}\u{5d2} def")),
            ("@long:hs", Some(long.as_str())),
            ("@fine:hs", Some("Ünïcode")),
        ],
    );
    let names = nicks(&shown);
    for nick in &names {
        assert!(
            jid::ResourcePart::new(nick).is_ok(),
            "{nick:?} is a resource"
        );
    }
    assert!(names.contains(&"Ünïcode".to_owned()), "{names:?}");
    assert!(names.contains(&"long".to_owned()), "{names:?}");
    assert!(names.contains(&"mixed".to_owned()), "{names:?}");
    // A name taken twice over still finds a free nick: the user id.
    let _ = rooms;
    let (mut rooms, _) = seated(
        100,
        &[("@a:hs", Some("Bob")), ("@b:hs", Some("Bob (@c:hs)"))],
    );
    let events = rooms.membership(&room_id(), joins("@c:hs", "Bob"));
    assert!(
        matches!(&events[..], [Event::MemberJoined { member, .. }] if member.nick == "@c:hs"),
        "{events:?}"
    );
}

#[test]
fn another_xmpp_users_puppet_is_seen_joining_and_renaming() {
    let (mut rooms, _) = seated(100, &[("@a:hs", Some("Ann"))]);
    let dave = UserRef("dave@example.org".into());
    let entered = rooms.enter(&room_id(), &dave, reference(), "@d:hs".into(), "Dave");
    assert_eq!(nicks(&entered.members), ["Al", "Ann", "Dave"]);
    assert!(
        matches!(&entered.news[..], [Event::MemberJoined { user, member, .. }]
            if *user == alice() && member.nick == "Dave"),
        "{:?}",
        entered.news
    );
    // The homeserver's join event names the puppet as it is named already: no news.
    assert!(rooms
        .membership(&room_id(), joins("@d:hs", "Dave"))
        .is_empty());
    let renamed = rooms.renamed_self(&room_id(), &dave, "@d:hs", "David");
    assert!(
        matches!(&renamed[..], [Event::NickChanged { user, old, new, .. }]
            if *user == alice() && old == "Dave" && new == "David"),
        "{renamed:?}"
    );
}

#[test]
fn signals_come_only_from_members_already_shown() {
    let many: Vec<(String, Option<&str>)> =
        (0..60).map(|i| (format!("@u{i:03}:hs"), None)).collect();
    let borrowed: Vec<(&str, Option<&str>)> = many.iter().map(|(i, d)| (i.as_str(), *d)).collect();
    let (mut rooms, shown) = seated(10, &borrowed);
    let typing = |user: &UserRef, room: &RoomRef, nick: &str| Event::Typing {
        user: user.clone(),
        peer: causeway_bridge::Peer::Room(room.clone()),
        from: nick.to_owned(),
        typing: true,
    };
    // u059 is beyond the limit: typing shows nobody new.
    assert!(!nicks(&shown).contains(&"u059".to_owned()));
    assert!(rooms.signalled(&room_id(), "@u059:hs", &typing).is_empty());
    // Once they have spoken, they are shown, and their typing is told.
    rooms.spoke(&room_id(), "@u059:hs", &typing);
    let told = rooms.signalled(&room_id(), "@u059:hs", &typing);
    assert!(matches!(&told[..], [Event::Typing { from, .. }] if from == "u059"));
    // The user's own puppet typing is not told to them.
    assert!(rooms.signalled(&room_id(), "@p:hs", &typing).is_empty());
}
