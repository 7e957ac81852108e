//! Parsing one top-level element with quick-xml: messages and presences straight into
//! their fields (see `stanza_fields`), iqs through xmpp-parsers, anything else as an
//! element; XML that is not well-formed breaks the stream, a stanza that is no valid
//! stanza is reported with what could be read of it.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{
    Namespace as ResolvedNs, NamespaceResolver, PrefixDeclaration, ResolveResult,
};
use quick_xml::reader::Reader;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::{Element, Node};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::Stanza;
use xso::exports::rxml::{Namespace, NcName};

use crate::address::JidCache;

use super::stanza_fields::{message, presence};
use super::{StreamBroken, STREAM_NS, XML_NS};

/// What went wrong with one stanza; the stream itself is fine.
#[derive(Debug)]
pub(in crate::component) struct Malformed {
    /// The element's name (`message`, `presence`, `iq`, or what else came).
    pub name: String,
    /// Its `from`, `to`, `id` and `type` attributes, as written.
    pub from: Option<String>,
    pub to: Option<String>,
    pub id: Option<String>,
    pub type_: Option<String>,
    /// What is wrong.
    pub error: String,
}

/// A top-level element, parsed.
// Stanzas are nearly all that comes: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(in crate::component) enum Incoming {
    Stanza(Stanza),
    /// Some other top-level element in the stream's namespace (`handshake`…) or a stream
    /// error (`stream:error`, namespace [`STREAM_NS`]).
    Other(Element),
    Malformed(Malformed),
}

/// Parse a top-level element of the stream; `cache` keeps what the next one can use.
/// Elements without a namespace declaration are in the stream's default namespace,
/// `jabber:component:accept`.
pub(in crate::component) fn parse(
    xml: &[u8],
    cache: &mut ParseCache,
) -> Result<Incoming, StreamBroken> {
    match parse_inner(xml, cache) {
        Ok(Ok(incoming)) => Ok(incoming),
        Ok(Err(malformed)) => Ok(Incoming::Malformed(malformed)),
        Err(e) => Err(StreamBroken::Syntax(e)),
    }
}

/// Not well-formed: `Err`; well-formed but no valid stanza: `Ok(Err)`.
fn parse_inner(xml: &[u8], cache: &mut ParseCache) -> Result<Result<Incoming, Malformed>, String> {
    let ParseCache { jids, namespaces } = cache;
    let mut reader = StanzaReader::new(xml, namespaces);
    let (root, empty) = match reader.read_event().map_err(|e| e.to_string())? {
        Event::Start(start) => (start, false),
        Event::Empty(start) => (start, true),
        other => return Err(format!("expected an element, got {other:?}")),
    };
    let in_stream_ns = matches!(
        reader.resolver().resolve_element(root.name()).0,
        ResolveResult::Bound(ns) if ns.into_inner() == ns::COMPONENT.as_bytes()
    );
    let name = root.local_name();
    if in_stream_ns && matches!(name.as_ref(), b"message" | b"presence") {
        // The hot path: the stanza's own attributes straight into its fields.
        let is_message = name.as_ref() == b"message";
        let attrs = RootAttrs::read(&reader, &root)?;
        let children = match empty {
            true => Vec::new(),
            false => match read_children(&mut reader) {
                Ok(children) => children,
                Err(Unreadable::Syntax(e)) => return Err(e),
                Err(Unreadable::TooDeep) => {
                    return Ok(Err(Malformed {
                        name: if is_message { "message" } else { "presence" }.into(),
                        from: attrs.from.map(Cow::into_owned),
                        to: attrs.to.map(Cow::into_owned),
                        id: attrs.id.map(Cow::into_owned),
                        type_: attrs.type_.map(Cow::into_owned),
                        error: format!("elements nested deeper than {MAX_NESTING} levels"),
                    }))
                }
            },
        };
        let stanza = match is_message {
            true => message(&attrs, children, jids).map(Stanza::Message),
            false => presence(&attrs, children, jids).map(Stanza::Presence),
        };
        return Ok(stanza.map(Incoming::Stanza).map_err(|error| Malformed {
            name: if is_message { "message" } else { "presence" }.into(),
            from: attrs.from.map(Cow::into_owned),
            to: attrs.to.map(Cow::into_owned),
            id: attrs.id.map(Cow::into_owned),
            type_: attrs.type_.map(Cow::into_owned),
            error,
        }));
    }
    let mut element = new_element(&reader, &root)?;
    if !empty {
        match read_children(&mut reader) {
            Ok(children) => {
                for node in children {
                    element.append_node(node);
                }
            }
            Err(Unreadable::Syntax(e)) => return Err(e),
            Err(Unreadable::TooDeep) => {
                return Ok(Err(Malformed {
                    name: element.name().to_owned(),
                    from: element.attr("from").map(str::to_owned),
                    to: element.attr("to").map(str::to_owned),
                    id: element.attr("id").map(str::to_owned),
                    type_: element.attr("type").map(str::to_owned),
                    error: format!("elements nested deeper than {MAX_NESTING} levels"),
                }))
            }
        }
    }
    if !(in_stream_ns && element.name() == "iq") {
        return Ok(Ok(Incoming::Other(element)));
    }
    Ok(match xso::transform::<Stanza, _>(&element) {
        Ok(stanza) => Ok(Incoming::Stanza(stanza)),
        Err(error) => Err(Malformed {
            name: "iq".into(),
            from: element.attr("from").map(str::to_owned),
            to: element.attr("to").map(str::to_owned),
            id: element.attr("id").map(str::to_owned),
            type_: element.attr("type").map(str::to_owned),
            error: error.to_string(),
        }),
    })
}

/// The attributes of a message or presence that xmpp-parsers reads (it drops the others).
/// Borrowed from the stream's buffer where they need no unescaping.
#[derive(Default)]
pub(super) struct RootAttrs<'a> {
    pub(super) from: Option<Cow<'a, str>>,
    pub(super) to: Option<Cow<'a, str>>,
    pub(super) id: Option<Cow<'a, str>>,
    pub(super) type_: Option<Cow<'a, str>>,
    pub(super) lang: Option<Cow<'a, str>>,
}

impl<'a> RootAttrs<'a> {
    fn read(reader: &StanzaReader, start: &'a BytesStart<'a>) -> Result<RootAttrs<'a>, String> {
        let mut attrs = RootAttrs::default();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| e.to_string())?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let slot = match reader.resolver().resolve_attribute(attr.key) {
                (ResolveResult::Unbound, local) => match local.as_ref() {
                    b"from" => &mut attrs.from,
                    b"to" => &mut attrs.to,
                    b"id" => &mut attrs.id,
                    b"type" => &mut attrs.type_,
                    _ => continue,
                },
                (ResolveResult::Bound(ns), local)
                    if ns.into_inner() == XML_NS.as_bytes() && local.as_ref() == b"lang" =>
                {
                    &mut attrs.lang
                }
                (ResolveResult::Bound(_), _) => continue,
                (ResolveResult::Unknown(prefix), _) => return Err(undeclared(&prefix)),
            };
            *slot = Some(attribute_value(&attr)?);
        }
        Ok(attrs)
    }
}

fn attribute_value<'a>(
    attr: &quick_xml::events::attributes::Attribute<'a>,
) -> Result<Cow<'a, str>, String> {
    // Without references or white space to normalise, the value is its raw text.
    let value = match (
        memchr::memchr3(b'&', b'\t', b'\n', &attr.value),
        &attr.value,
    ) {
        (None, Cow::Borrowed(raw)) if memchr::memchr(b'\r', raw).is_none() => {
            Cow::Borrowed(utf8(raw)?)
        }
        _ => attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?,
    };
    check_chars(&value, " in an attribute")?;
    Ok(value)
}

/// The content of the element whose start tag was just read, up to its end tag: a minidom
/// node per child element and per run of text.
/// How deep elements may nest inside a stanza. Real stanzas nest a few levels (XHTML-IM a
/// few more); a stanza nested thousands deep made a tree whose recursive drop overflowed the
/// stack and aborted the whole gateway (any XMPP user could send one). Past this it is a
/// malformed stanza, answered `bad-request`.
pub(in crate::component) const MAX_NESTING: usize = 64;

/// Why a stanza's children were not read.
enum Unreadable {
    /// Not well-formed: the stream cannot go on.
    Syntax(String),
    /// Nested deeper than [`MAX_NESTING`]: this stanza is refused, the stream goes on.
    TooDeep,
}

impl From<String> for Unreadable {
    fn from(e: String) -> Unreadable {
        Unreadable::Syntax(e)
    }
}

fn read_children(reader: &mut StanzaReader) -> Result<Vec<Node>, Unreadable> {
    let mut nodes = Vec::new();
    let mut open: Vec<Element> = Vec::new();
    let mut text = String::new();
    let flush = |open: &mut Vec<Element>, nodes: &mut Vec<Node>, text: &mut String| {
        if !text.is_empty() {
            let node = std::mem::take(text);
            match open.last_mut() {
                Some(parent) => parent.append_text_node(node),
                None => nodes.push(Node::Text(node)),
            }
        }
    };
    let place =
        |open: &mut Vec<Element>, nodes: &mut Vec<Node>, element: Element| match open.last_mut() {
            Some(parent) => {
                parent.append_child(element);
            }
            None => nodes.push(Node::Element(element)),
        };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(start) => {
                if open.len() + 1 >= MAX_NESTING {
                    return Err(Unreadable::TooDeep);
                }
                flush(&mut open, &mut nodes, &mut text);
                let element = new_element(reader, &start)?;
                open.push(element);
            }
            Event::Empty(start) => {
                flush(&mut open, &mut nodes, &mut text);
                let element = new_element(reader, &start)?;
                place(&mut open, &mut nodes, element);
            }
            Event::End(_) => {
                flush(&mut open, &mut nodes, &mut text);
                match open.pop() {
                    Some(element) => place(&mut open, &mut nodes, element),
                    None => return Ok(nodes),
                }
            }
            Event::Text(t) => {
                let t = t.xml10_content().map_err(|e| e.to_string())?;
                push_text(&mut text, &t)?;
            }
            Event::CData(t) => {
                let t = t.xml10_content().map_err(|e| e.to_string())?;
                push_text(&mut text, &t)?;
            }
            Event::GeneralRef(r) => match r.resolve_char_ref().map_err(|e| e.to_string())? {
                Some(c) if is_xml_char(c) => text.push(c),
                Some(c) => {
                    return Err(format!(
                        "a reference to U+{:04X}, which XML does not allow",
                        c as u32
                    )
                    .into())
                }
                None => text.push(match &*r {
                    b"amp" => '&',
                    b"lt" => '<',
                    b"gt" => '>',
                    b"apos" => '\'',
                    b"quot" => '"',
                    other => {
                        return Err(format!(
                            "an undefined entity &{};",
                            String::from_utf8_lossy(other)
                        )
                        .into())
                    }
                }),
            },
            // The framer lets none of these through.
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {
                return Err(String::from("a comment, processing instruction or declaration").into())
            }
            Event::Eof => return Err(String::from("the element ends early").into()),
        }
    }
}

/// What reading a stanza keeps for the next: the JIDs parsed lately, and a namespace
/// resolver holding the stream header's bindings (a new one allocates, for every stanza).
#[derive(Debug)]
pub(in crate::component) struct ParseCache {
    jids: JidCache<Jid>,
    namespaces: NamespaceResolver,
}

impl Default for ParseCache {
    fn default() -> ParseCache {
        // The bindings of the stream header, which every element inherits.
        let mut namespaces = NamespaceResolver::default();
        let bound = namespaces
            .add(
                PrefixDeclaration::Default,
                ResolvedNs(ns::COMPONENT.as_bytes()),
            )
            .and_then(|()| {
                namespaces.add(
                    PrefixDeclaration::Named(b"stream"),
                    ResolvedNs(STREAM_NS.as_bytes()),
                )
            });
        debug_assert!(bound.is_ok());
        ParseCache {
            jids: JidCache::default(),
            namespaces,
        }
    }
}

/// quick-xml's `NsReader` over one stanza, with a resolver that outlives it: the scopes the
/// stanza opens are pushed and popped as `NsReader` does, and whatever it left open is
/// dropped when the next stanza starts.
struct StanzaReader<'a, 'r> {
    reader: Reader<&'a [u8]>,
    namespaces: &'r mut NamespaceResolver,
    /// The scope of the last end tag or empty element, popped before the next event.
    pending_pop: bool,
}

impl<'a, 'r> StanzaReader<'a, 'r> {
    fn new(xml: &'a [u8], namespaces: &'r mut NamespaceResolver) -> StanzaReader<'a, 'r> {
        // The stream header's bindings only: a stanza that broke off left scopes open.
        namespaces.set_level(0);
        StanzaReader {
            reader: Reader::from_reader(xml),
            namespaces,
            pending_pop: false,
        }
    }

    fn read_event(&mut self) -> quick_xml::Result<Event<'a>> {
        if std::mem::take(&mut self.pending_pop) {
            self.namespaces.pop();
        }
        let event = self.reader.read_event()?;
        match &event {
            Event::Start(start) => self.namespaces.push(start)?,
            Event::Empty(start) => {
                self.namespaces.push(start)?;
                self.pending_pop = true;
            }
            Event::End(_) => self.pending_pop = true,
            _ => {}
        }
        Ok(event)
    }

    fn resolver(&self) -> &NamespaceResolver {
        self.namespaces
    }
}

fn push_text(text: &mut String, more: &str) -> Result<(), String> {
    check_chars(more, "")?;
    text.push_str(more);
    Ok(())
}

/// `s` holds only characters XML allows; `place` says where it was, for the error.
fn check_chars(s: &str, place: &str) -> Result<(), String> {
    match forbidden_char(s) {
        Some(c) => Err(format!(
            "U+{:04X}{place}, which XML does not allow",
            c as u32
        )),
        None => Ok(()),
    }
}

fn undeclared(prefix: &[u8]) -> String {
    format!("the undeclared prefix {}", String::from_utf8_lossy(prefix))
}

/// The first character of `s` that XML does not allow. Only control characters and the
/// lead byte of U+FFFE/U+FFFF need a closer look (Rust strings hold no surrogates).
fn forbidden_char(s: &str) -> Option<char> {
    let suspect = s
        .bytes()
        .position(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF)?;
    // Both kinds of byte start a character.
    s[suspect..].chars().find(|&c| !is_xml_char(c))
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn new_element(reader: &StanzaReader, start: &BytesStart<'_>) -> Result<Element, String> {
    let ns = match reader.resolver().resolve_element(start.name()).0 {
        ResolveResult::Bound(ns) => utf8(ns.into_inner())?,
        ResolveResult::Unbound => "",
        ResolveResult::Unknown(prefix) => return Err(undeclared(&prefix)),
    };
    // A name that is no XML name (quick-xml takes what stands between `<` and the first
    // whitespace) would be written back as XML that does not parse: found by the fuzzer
    // (component_stream), `<:a"b=…`.
    let qname = utf8(start.name().into_inner())?;
    let well_formed = match qname.split_once(':') {
        Some((prefix, local)) => {
            NcName::try_from(prefix).is_ok() && NcName::try_from(local).is_ok()
        }
        None => NcName::try_from(qname).is_ok(),
    };
    if !well_formed {
        return Err(format!("an element named {qname:?}, which is no XML name"));
    }
    let name = utf8(start.local_name().into_inner())?;
    let mut element = Element::bare(name, ns);
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = attr.key;
        if key.as_namespace_binding().is_some() {
            continue;
        }
        let ns = match reader.resolver().resolve_attribute(key).0 {
            ResolveResult::Unbound => Namespace::NONE,
            ResolveResult::Bound(ns) => match utf8(ns.into_inner())? {
                XML_NS => Namespace::XML,
                other => Namespace::from(other.to_owned()),
            },
            ResolveResult::Unknown(prefix) => return Err(undeclared(&prefix)),
        };
        let local =
            NcName::try_from(utf8(key.local_name().into_inner())?).map_err(|e| e.to_string())?;
        let value = attribute_value(&attr)?;
        if element
            .attrs_mut()
            .insert(ns, local, value.into_owned())
            .is_some()
        {
            return Err("an attribute given twice".into());
        }
    }
    Ok(element)
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("invalid UTF-8: {e}"))
}

/// The `id` attribute of the server's stream header.
pub(in crate::component) fn header_id(header: &[u8]) -> Result<Option<String>, String> {
    let mut reader = quick_xml::Reader::from_reader(header);
    match reader.read_event().map_err(|e| e.to_string())? {
        Event::Start(start) if start.name().as_ref() == b"stream:stream" => {
            let id = start
                .try_get_attribute("id")
                .map_err(|e| e.to_string())?
                .map(|a| {
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map(Cow::into_owned)
                })
                .transpose()
                .map_err(|e| e.to_string())?;
            Ok(id)
        }
        other => Err(format!("expected <stream:stream>, got {other:?}")),
    }
}
