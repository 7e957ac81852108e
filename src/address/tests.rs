use super::*;
use proptest::prelude::*;

fn gw() -> IrcAddressing {
    IrcAddressing::new("irc.gw", None)
}

fn jid(s: &str) -> Jid {
    s.parse().unwrap()
}

#[test]
fn parses_every_kind_of_address() {
    let a = gw();
    assert_eq!(a.parse(&jid("irc.gw")), Ok(IrcAddress::Gateway));
    assert_eq!(
        a.parse(&jid("irc.example.net@irc.gw")),
        Ok(IrcAddress::Server {
            server: "irc.example.net".into()
        })
    );
    assert_eq!(
        a.parse(&jid("#rust%irc.example.net@irc.gw/alice")),
        Ok(IrcAddress::Channel {
            server: "irc.example.net".into(),
            channel: "#rust".into(),
            nick: Some("alice".into())
        })
    );
    assert_eq!(
        a.parse(&jid("#rust%irc.example.net@irc.gw")),
        Ok(IrcAddress::Channel {
            server: "irc.example.net".into(),
            channel: "#rust".into(),
            nick: None
        })
    );
    assert_eq!(
        a.parse(&jid("bob%irc.example.net@irc.gw")),
        Ok(IrcAddress::User {
            server: "irc.example.net".into(),
            nick: "bob".into()
        })
    );
    assert_eq!(
        a.parse(&jid("\\26local%127.0.0.1@irc.gw")),
        Ok(IrcAddress::Channel {
            server: "127.0.0.1".into(),
            channel: "&local".into(),
            nick: None
        })
    );
}

#[test]
fn a_percent_in_a_channel_name_is_kept() {
    assert_eq!(
        gw().parse(&jid("#50%off%irc.example.net@irc.gw")),
        Ok(IrcAddress::Channel {
            server: "irc.example.net".into(),
            channel: "#50%off".into(),
            nick: None
        })
    );
}

#[test]
fn rejects_what_is_not_an_address() {
    let a = gw();
    assert!(matches!(
        a.parse(&jid("#rust%irc.example.net@other.gw")),
        Err(AddressError::ForeignDomain(_))
    ));
    assert!(matches!(
        a.parse(&jid("#rust%@irc.gw")),
        Err(AddressError::Malformed(..))
    ));
    assert!(matches!(
        a.parse(&jid("%irc.example.net@irc.gw")),
        Err(AddressError::Malformed(..))
    ));
    assert!(matches!(
        a.parse(&jid("#%irc.example.net@irc.gw")),
        Err(AddressError::Malformed(..))
    ));
    assert!(matches!(
        a.parse(&jid("not_a_server@irc.gw")),
        Err(AddressError::Malformed(..))
    ));
}

#[test]
fn fixed_server_mode_drops_the_server() {
    let a = IrcAddressing::new("irc.gw", Some("irc.libera.chat".into()));
    assert_eq!(
        a.parse(&jid("#rust@irc.gw/me")),
        Ok(IrcAddress::Channel {
            server: "irc.libera.chat".into(),
            channel: "#rust".into(),
            nick: Some("me".into())
        })
    );
    assert_eq!(
        a.parse(&jid("bob@irc.gw")),
        Ok(IrcAddress::User {
            server: "irc.libera.chat".into(),
            nick: "bob".into()
        })
    );
    assert_eq!(
        a.channel_jid("irc.libera.chat", "#rust")
            .unwrap()
            .to_string(),
        "#rust@irc.gw"
    );
    assert_eq!(
        a.server_jid("irc.libera.chat").unwrap().to_string(),
        "irc.gw"
    );
}

#[test]
fn formats_with_xep_0106_escaping() {
    let a = gw();
    assert_eq!(
        a.channel_jid("irc.example.net", "#a@b:c")
            .unwrap()
            .to_string(),
        "#a\\40b\\3ac%irc.example.net@irc.gw"
    );
    assert_eq!(
        a.occupant_jid("irc.example.net", "#rust", "Al/ice")
            .unwrap()
            .to_string(),
        "#rust%irc.example.net@irc.gw/Al/ice"
    );
    assert_eq!(
        a.user_jid("irc.example.net", "[away]\\me")
            .unwrap()
            .to_string(),
        "[away]\\me%irc.example.net@irc.gw"
    );
    assert_eq!(
        a.server_jid("irc.example.net").unwrap().to_string(),
        "irc.example.net@irc.gw"
    );
}

#[test]
fn escaping_follows_xep_0106_examples() {
    assert_eq!(escape("space cadet"), "space\\20cadet");
    assert_eq!(
        escape("call me \"ishmael\""),
        "call\\20me\\20\\22ishmael\\22"
    );
    assert_eq!(escape("at&t guy"), "at\\26t\\20guy");
    assert_eq!(escape("d'artagnan"), "d\\27artagnan");
    assert_eq!(escape("/.fanboy"), "\\2f.fanboy");
    assert_eq!(escape("::foo::"), "\\3a\\3afoo\\3a\\3a");
    assert_eq!(escape("<foo>"), "\\3cfoo\\3e");
    assert_eq!(escape("user@host"), "user\\40host");
    assert_eq!(escape("c:\\net"), "c\\3a\\net");
    assert_eq!(escape("c:\\\\net"), "c\\3a\\\\net");
    assert_eq!(escape("c:\\cool stuff"), "c\\3a\\cool\\20stuff");
    assert_eq!(escape("c:\\5commas"), "c\\3a\\5c5commas");
    assert_eq!(unescape("c\\3a\\5c5commas"), "c:\\5commas");
}

/// Channel names as IRC allows them: a prefix, then anything but space, comma, BELL, CR, LF,
/// NUL; here lowercase, since XMPP servers fold localparts (and IRC ignores case anyway).
fn channel_name() -> impl Strategy<Value = String> {
    (
        "[#&]",
        "[a-z0-9_.@:/'\"<>&\\\\%\\-\\[\\]{}|^`~!?=+*()]{1,30}",
    )
        .prop_map(|(p, n)| format!("{p}{n}"))
}

fn server_name() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,3}".prop_filter("no leading or trailing dash", |s| {
        s.split('.')
            .all(|l| !l.starts_with('-') && !l.ends_with('-'))
    })
}

proptest! {
    #[test]
    fn escape_round_trips(raw in "\\PC{0,40}") {
        prop_assert_eq!(unescape(&escape(&raw)), raw);
    }

    #[test]
    fn channel_addresses_round_trip(
        channel in channel_name(),
        server in server_name(),
        nick in "[A-Za-z\\[\\]\\\\`_^{|}][A-Za-z0-9\\[\\]\\\\`_^{|}-]{0,15}",
    ) {
        let a = gw();
        let occupant = a.occupant_jid(&server, &channel, &nick).unwrap();
        // What the XMPP server hands back after its own preparation of the JID.
        let seen: Jid = occupant.to_string().parse().unwrap();
        prop_assert_eq!(
            a.parse(&seen).unwrap(),
            IrcAddress::Channel { server: server.clone(), channel: channel.clone(), nick: Some(nick.clone()) }
        );
    }

    #[test]
    fn user_addresses_round_trip(nick in "[a-z\\[\\]\\\\`_^{|}][a-z0-9\\[\\]\\\\`_^{|}-]{0,15}", server in server_name()) {
        let a = gw();
        let jid: Jid = a.user_jid(&server, &nick).unwrap().into();
        prop_assert_eq!(a.parse(&jid).unwrap(), IrcAddress::User { server, nick });
    }
}

#[test]
fn matrix_addresses_follow_the_design() {
    let a = IrcAddressing::matrix("matrix.gw");
    let parse = |s: &str| a.parse(&Jid::new(s).unwrap());
    assert_eq!(
        parse("#room%example.org@matrix.gw/nick").unwrap(),
        IrcAddress::Channel {
            server: "example.org".into(),
            channel: "#room".into(),
            nick: Some("nick".into()),
        }
    );
    assert_eq!(
        parse("!ft7epjdy8j90@matrix.gw").unwrap(),
        IrcAddress::Channel {
            server: String::new(),
            channel: "!ft7epjdy8j90".into(),
            nick: None,
        }
    );
    assert_eq!(
        parse("!abc%example.org\\3a8448@matrix.gw").unwrap(),
        IrcAddress::Channel {
            server: "example.org:8448".into(),
            channel: "!abc".into(),
            nick: None,
        }
    );
    assert_eq!(
        parse("alice%example.org@matrix.gw").unwrap(),
        IrcAddress::User {
            server: "example.org".into(),
            nick: "alice".into(),
        }
    );
    for bad in [
        "alice@matrix.gw",
        "#room@matrix.gw",
        "%example.org@matrix.gw",
        "!@matrix.gw",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    // Formatting: v12 room ids stand alone (case-folded like every localpart, which is why
    // the bridge maps them back through the database), everything else carries its server.
    assert_eq!(
        a.channel_jid("", "!AbC").unwrap().to_string(),
        "!abc@matrix.gw"
    );
    assert_eq!(
        a.channel_jid("example.org", "#room").unwrap().to_string(),
        "#room%example.org@matrix.gw"
    );
    assert_eq!(
        a.user_jid("example.org", "alice").unwrap().to_string(),
        "alice%example.org@matrix.gw"
    );
}

/// Found by the fuzzer's seeds (addresses): a server name that holds `%` or `@` made a JID
/// that read back as something else. No JID is made for it now.
#[test]
fn a_server_name_that_would_not_read_back_makes_no_address() {
    let irc = IrcAddressing::new("irc.gw", None);
    for server in ["a%b", "irc.example.net@irc.gw", "", "bad host"] {
        assert!(irc.channel_jid(server, "#rust").is_err(), "{server:?}");
        assert!(irc.user_jid(server, "alice").is_err(), "{server:?}");
    }
    let matrix = IrcAddressing::matrix("matrix.gw");
    assert!(matrix.channel_jid("hs.example:8448", "#room").is_ok());
    assert!(matrix.channel_jid("hs%example", "#room").is_err());
    // Nor for a channel name without a prefix, whose JID would read as a user's.
    let fixed = IrcAddressing::new("irc.gw", Some("irc.example.net".into()));
    for name in ["@bob:matrix.org", "bob", "#", ""] {
        assert!(
            fixed.channel_jid("irc.example.net", name).is_err(),
            "{name:?}"
        );
        assert!(matrix.channel_jid("hs.example", name).is_err(), "{name:?}");
    }
    // Nor for an empty nick, nor a Matrix user or alias without a server (found by the
    // fuzzer).
    assert!(irc.user_jid("irc.example.net", "").is_err());
    assert!(matrix.user_jid("", "@bob:hs.example").is_err());
    assert!(matrix.channel_jid("", "#alias").is_err());
    assert!(matrix.channel_jid("", "#alias%hs.example").is_ok());
    assert!(matrix.channel_jid("", "!room").is_ok());
    assert!(irc
        .user_jid("irc.example.net", "#looks-like-a-channel")
        .is_err());
}
