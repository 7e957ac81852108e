use super::*;

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::{Lang, Message};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Show};
use tokio_xmpp::Stanza;

use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::muc::MucUser;

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
     xmlns:stream='http://etherx.jabber.org/streams' from='irc.localhost' id='a>b\"c'>";

/// Stanzas as a server may write them, each with the feature that could trip the framer or
/// the parser.
const STANZAS: &[&str] = &[
    "<message from='alice@localhost/phone' to='#chan%irc.example@irc.localhost' type='groupchat' id='m1'><body>hi</body></message>",
    // `>` and `/>` inside attribute values, both quote styles, an empty element at the top.
    "<presence from='alice@localhost/x' to='room@irc.localhost/a>b' id=\"q'/>\"/>",
    // Entities, character references, CDATA holding markup, line ends to normalise.
    "<message from='a@localhost/r' to='b@irc.localhost' type='chat'><body>1 &lt; 2 &amp;&#x263A;&#65;<![CDATA[</message><x/>]]>\r\nend</body></message>",
    // Languages: inherited and own; a subject; a thread with a parent.
    "<message from='a@localhost/r' to='b@irc.localhost' xml:lang='de'><body>hallo</body><body xml:lang='en'>hello</body><subject>s</subject><thread parent='p'>t1</thread></message>",
    // Payloads in other namespaces, a prefixed one, a namespaced attribute, nesting.
    "<message from='a@localhost/r' to='b@irc.localhost' type='chat'><body>x</body><active xmlns='http://jabber.org/protocol/chatstates'/><p:reply xmlns:p='urn:xmpp:reply:0' p:to='c@d' id='r1'><p:inner>t</p:inner></p:reply><html xmlns='http://jabber.org/protocol/xhtml-im'><body xmlns='http://www.w3.org/1999/xhtml'><p>x <b>y</b> z</p></body></html></message>",
    "<presence from='a@localhost/r' to='room@irc.localhost/nick' type='unavailable'><show>away</show><status>gone</status><status xml:lang='fr'>parti</status><priority>-5</priority><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
    "<iq from='a@localhost/r' to='irc.localhost' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>",
    "<iq from='a@localhost/r' to='irc.localhost' type='result' id='i2'/>",
    // References and white space in attribute values, normalised.
    "<message from='a@localhost/r' to='b@irc.localhost' id='x&amp;&apos;&#9;y	z\r\nw' type='chat'/>",
    "<message from='a@localhost/r' to='b@irc.localhost' type='error' id='e'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>",
];

fn stream_bytes() -> Vec<u8> {
    let mut bytes = HEADER.as_bytes().to_vec();
    for stanza in STANZAS {
        bytes.extend_from_slice(stanza.as_bytes());
        bytes.extend_from_slice(b"\n  ");
    }
    bytes.extend_from_slice(b"</stream:stream>");
    bytes
}

/// Feed `bytes` to a framer `chunk` bytes at a time, collecting the frames.
fn frames(bytes: &[u8], chunk: usize) -> Vec<Result<String, String>> {
    let mut framer = Framer::default();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        framer.buffer(chunk).extend_from_slice(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Header(h))) => {
                    out.push(Ok(format!("header {}", String::from_utf8_lossy(h))))
                }
                Ok(Some(Frame::Element(e))) => {
                    out.push(Ok(String::from_utf8_lossy(e).into_owned()))
                }
                Ok(Some(Frame::End)) => out.push(Ok("end".into())),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }
    out
}

#[test]
fn the_framer_finds_every_stanza_however_the_bytes_are_split() {
    let bytes = stream_bytes();
    let mut expected = vec![Ok(format!(
        "header {}",
        &HEADER["<?xml version='1.0'?>".len()..]
    ))];
    expected.extend(STANZAS.iter().map(|s| Ok(s.to_string())));
    expected.push(Ok("end".into()));
    for chunk in 1..=bytes.len() {
        assert_eq!(
            frames(&bytes, chunk),
            expected,
            "in chunks of {chunk} bytes"
        );
    }
}

#[test]
fn the_framer_refuses_what_no_stream_may_hold() {
    let with = |tail: &str| frames(format!("{HEADER}{tail}").as_bytes(), 7);
    // RFC 6120 11.1: no DTD, no comments, no processing instructions.
    assert!(matches!(with("<!DOCTYPE x>").last(), Some(Err(_))));
    assert!(matches!(
        with("<message><!-- x --></message>").last(),
        Some(Err(_))
    ));
    assert!(matches!(
        with("<message><?pi x?></message>").last(),
        Some(Err(_))
    ));
    assert!(matches!(with("</stream:stream></x>").last(), Some(Err(_))));
    // A stanza past the limit is refused as it grows, not buffered to the end.
    let mut framer = Framer::default();
    framer.buffer(16).extend_from_slice(HEADER.as_bytes());
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
    framer.buffer(16).extend_from_slice(b"<message><body>");
    assert!(matches!(framer.next_frame(), Ok(None)));
    framer.buffer(MAX_STANZA).resize(MAX_STANZA + 100, b'a');
    assert!(matches!(framer.next_frame(), Err(StreamBroken::TooLarge)));
    // So is a start tag that never ends (inside a quoted value, where '>' does not count).
    let mut framer = Framer::default();
    framer.buffer(16).extend_from_slice(HEADER.as_bytes());
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
    framer.buffer(16).extend_from_slice(b"<message id='");
    assert!(matches!(framer.next_frame(), Ok(None)));
    let grown = framer.buffer(MAX_STANZA).len() + MAX_STANZA;
    framer.buffer(MAX_STANZA).resize(grown, b'>');
    assert!(matches!(framer.next_frame(), Err(StreamBroken::TooLarge)));
}

#[test]
fn the_framer_gives_back_the_memory_of_a_burst() {
    let mut framer = Framer::default();
    framer.buffer(16).extend_from_slice(HEADER.as_bytes());
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Header(_)))));
    let big = format!("<message><body>{}</body></message>", "a".repeat(1 << 20));
    framer.buffer(16).extend_from_slice(big.as_bytes());
    assert!(matches!(framer.next_frame(), Ok(Some(Frame::Element(_)))));
    assert!(matches!(framer.next_frame(), Ok(None)));
    assert!(framer.buffer(1024).capacity() < 8192);
}

fn fresh(xml: &[u8]) -> Result<Incoming, StreamBroken> {
    parse(xml, &mut ParseCache::default())
}

/// The same element parsed by xmpp-parsers (xso and rxml), the reference.
fn reference(xml: &str) -> Stanza {
    let name_end = xml.find([' ', '/', '>']).unwrap();
    let declared = format!(
        "{} xmlns='jabber:component:accept'{}",
        &xml[..name_end],
        &xml[name_end..]
    );
    xso::from_bytes::<Stanza>(declared.as_bytes()).unwrap_or_else(|e| panic!("{e}: {declared}"))
}

fn ours(xml: &str) -> Stanza {
    match fresh(xml.as_bytes()) {
        Ok(Incoming::Stanza(s)) => s,
        other => panic!("{other:?}: {xml}"),
    }
}

/// `stanza` as the codec writes it.
fn written(stanza: &Stanza) -> String {
    let mut out = Vec::new();
    write_stanza(&mut out, stanza);
    String::from_utf8(out).unwrap()
}

/// What the codec writes of `stanza` reads back as `stanza`, with our parser and with
/// xmpp-parsers.
fn assert_round_trip(stanza: &Stanza) {
    let written = written(stanza);
    assert_eq!(&ours(&written), stanza, "{written}");
    assert_eq!(&reference(&written), stanza, "{written}");
}

#[test]
fn stanzas_parse_as_xmpp_parsers_parses_them() {
    for xml in STANZAS {
        let expected = reference(xml);
        // xso lets a body inherit the stanza's xml:lang too; both must agree.
        assert_eq!(ours(xml), expected, "{xml}");
    }
}

#[test]
fn what_is_written_parses_back_the_same_both_ways() {
    for xml in STANZAS {
        assert_round_trip(&ours(xml));
    }
}

#[test]
fn every_type_and_show_value_reads_and_writes_as_xmpp_parsers_does() {
    let head = "from='a@localhost/r' to='b@irc.localhost' id='1'";
    let messages = ["normal", "chat", "groupchat", "headline", "error"]
        .map(|t| format!("<message {head} type='{t}'/>"));
    let presences = [
        "error",
        "probe",
        "subscribe",
        "subscribed",
        "unavailable",
        "unsubscribe",
        "unsubscribed",
    ]
    .map(|t| format!("<presence {head} type='{t}'/>"));
    let shows = ["away", "chat", "dnd", "xa"]
        .map(|s| format!("<presence {head}><show>{s}</show></presence>"));
    for xml in messages.iter().chain(&presences).chain(&shows) {
        let stanza = ours(xml);
        assert_eq!(stanza, reference(xml), "{xml}");
        assert_round_trip(&stanza);
    }
}

#[test]
fn hostile_text_is_escaped_and_what_xml_cannot_carry_is_replaced() {
    let hostile = "a'b\"c<d>e&f\r\ng\th\u{1}i\u{FFFE}j\u{FFFF}k\u{10FFFF}l]]>";
    let cleaned = "a'b\"c<d>e&f\r\ng\th\u{FFFD}i\u{FFFD}j\u{FFFD}k\u{10FFFF}l]]>";
    let mut m = Message::groupchat(Some(Jid::new("alice@localhost/x").unwrap()));
    m.from = Some(Jid::new("#c%irc@irc.localhost/n").unwrap());
    m.id = Some(tokio_xmpp::parsers::message::Id(hostile.into()));
    m.bodies.insert(Lang::new(), hostile.into());
    m.payloads.push(
        Element::builder("x", "urn:example")
            .attr(xso::exports::rxml::xml_ncname!("v").into(), hostile)
            .append(hostile)
            .build(),
    );
    let written = written(&Stanza::Message(m));
    let Stanza::Message(back) = reference(&written) else {
        panic!("{written}")
    };
    assert_eq!(back.id.unwrap().0, cleaned, "attribute: {written}");
    assert_eq!(back.bodies[""], cleaned, "text: {written}");
    assert_eq!(back.payloads[0].attr("v"), Some(cleaned));
    assert_eq!(back.payloads[0].text(), cleaned);
}

#[test]
fn typed_stanzas_round_trip() {
    let user = Jid::new("alice@localhost/phone").unwrap();
    let room = Jid::new("#chan%irc.example@irc.localhost/bob").unwrap();
    let mut p = Presence::available()
        .with_from(room.clone())
        .with_to(user.clone())
        .with_show(Show::Dnd)
        .with_priority(7);
    p.statuses.insert(Lang::new(), "busy".into());
    p.payloads.push(MucUser::new().into());
    let iq = Iq::Get {
        from: Some(user.clone()),
        to: Some(room.clone()),
        id: "q".into(),
        payload: Element::bare("query", "jabber:iq:version"),
    };
    for stanza in [Stanza::Presence(p), Stanza::Iq(iq)] {
        assert_round_trip(&stanza);
    }
}

#[test]
fn a_malformed_stanza_is_reported_with_its_addressing() {
    let cases = [
        ("<message from='a@localhost/r' to='b@irc.localhost' id='1' type='bogus'/>", "type"),
        ("<message from='a@localhost/r' to='@irc.localhost' id='1'/>", "to"),
        ("<message from='a@localhost/r' to='b@irc.localhost' id='1'><thread>a</thread><thread>b</thread></message>", "thread"),
        ("<presence from='a@localhost/r' to='b@irc.localhost' id='1'><priority>x</priority></presence>", "priority"),
        ("<presence from='a@localhost/r' to='b@irc.localhost' id='1'>text</presence>", "text"),
        ("<iq from='a@localhost/r' to='b@irc.localhost' id='1' type='get'/>", ""),
    ];
    for (xml, what) in cases {
        match fresh(xml.as_bytes()) {
            Ok(Incoming::Malformed(m)) => {
                assert_eq!(m.from.as_deref(), Some("a@localhost/r"), "{xml}");
                assert_eq!(m.id.as_deref(), Some("1"), "{xml}");
                assert!(m.error.contains(what), "{xml}: {}", m.error);
            }
            other => panic!("{xml}: {other:?}"),
        }
        // The reference refuses it too.
        let name_end = xml.find(' ').unwrap();
        let declared = format!(
            "{} xmlns='jabber:component:accept'{}",
            &xml[..name_end],
            &xml[name_end..]
        );
        assert!(
            xso::from_bytes::<Stanza>(declared.as_bytes()).is_err(),
            "{xml}"
        );
    }
}

#[test]
fn xml_that_is_not_well_formed_breaks_the_stream() {
    for xml in [
        "<message><body>a</bdy></message>",
        "<message a='1' a='2'/>",
        "<message><body>&bogus;</body></message>",
        "<message><body>&#0;</body></message>",
        "<message><body>\u{1}</body></message>",
        "<message><x:y/></message>",
        "<message><body>\u{FFFF}</body></message>",
    ] {
        assert!(
            matches!(fresh(xml.as_bytes()), Err(StreamBroken::Syntax(_))),
            "{xml}"
        );
    }
    assert!(matches!(
        fresh(b"<message><body>\xff</body></message>"),
        Err(StreamBroken::Syntax(_))
    ));
}

#[test]
fn the_stream_header_gives_its_id_and_other_elements_their_namespace() {
    assert_eq!(
        header_id(&HEADER.as_bytes()["<?xml version='1.0'?>".len()..]),
        Ok(Some("a>b\"c".into()))
    );
    assert!(header_id(b"<stream id='x'>").is_err());
    let Ok(Incoming::Other(e)) = fresh(b"<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>") else {
        panic!()
    };
    assert!(e.is("error", STREAM_NS));
    let Ok(Incoming::Other(e)) = fresh(b"<handshake/>") else {
        panic!()
    };
    assert!(e.is("handshake", ns::COMPONENT));
}

#[test]
fn a_stanzas_namespace_declarations_end_with_it() {
    // One resolver serves stanza after stanza: what one declares, on its root or deeper,
    // and whether it ended or broke off, must not be in scope for the next.
    let mut cache = ParseCache::default();
    for first in [
        "<message xmlns:x='urn:x'><x:y/></message>",
        "<message><a xmlns:x='urn:x'><x:y/></a></message>",
        "<message xmlns:x='urn:x'><a><x:y/></a></bogus>",
        "<message xmlns:x='urn:x'><x:y/>",
    ] {
        let _ = parse(first.as_bytes(), &mut cache);
        assert!(
            matches!(
                parse(b"<message><x:y/></message>", &mut cache),
                Err(StreamBroken::Syntax(_))
            ),
            "after {first}"
        );
        // The stream's own bindings stay.
        assert!(
            matches!(
                parse(b"<message to='a@b'><body>hi</body></message>", &mut cache),
                Ok(Incoming::Stanza(Stanza::Message(_)))
            ),
            "after {first}"
        );
    }
}

/// Found while writing the hostile-input tests: a stanza nested 40,000 deep (a quarter
/// MiB, which an XMPP server forwards) overflowed the stack of a tokio worker when its tree
/// was dropped, aborting the gateway. Past `MAX_NESTING` it is a malformed stanza now, on
/// a stack as small as a worker's.
#[test]
fn a_stanza_nested_thousands_deep_is_refused_not_a_crash() {
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            for root in ["message", "presence", "iq"] {
                let mut xml = format!(
                    "<{root} xmlns='jabber:component:accept' from='a@b/c' to='x@irc.gw' id='deep' type='get'>"
                );
                xml.push_str(&"<a>".repeat(40_000));
                xml.push_str(&"</a>".repeat(40_000));
                xml.push_str(&format!("</{root}>"));
                match fresh(xml.as_bytes()) {
                    Ok(Incoming::Malformed(m)) => {
                        assert_eq!((m.name.as_str(), m.id.as_deref()), (root, Some("deep")));
                        assert!(m.error.contains("nested deeper"), "{}", m.error);
                    }
                    other => panic!("{root}: {other:?}"),
                }
            }
            // Nesting within the limit is read as before.
            let mut xml = String::from(
                "<message xmlns='jabber:component:accept' from='a@b/c' to='x@irc.gw'><body>hi</body>",
            );
            xml.push_str(&"<a xmlns='urn:x'>".repeat(MAX_NESTING - 3));
            xml.push_str(&"</a>".repeat(MAX_NESTING - 3));
            xml.push_str("</message>");
            assert!(matches!(fresh(xml.as_bytes()), Ok(Incoming::Stanza(_))));
        })
        .unwrap();
    handle.join().expect("no stack overflow");
}
