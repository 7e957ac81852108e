//! The XEP-0114 stream on the wire: cutting the byte stream into stanzas, parsing them, and
//! writing stanzas back.
//!
//! tokio-xmpp's stream parses with rxml (which checks every character against the XML
//! grammar) and drives typed stanzas through xso's generic event machines; on the gateway's
//! hot path (a groupchat message in, its reflection out) that was half of the gateway's CPU.
//! Here the stream is cut into top-level elements by a small scanner, each element is parsed
//! with quick-xml into a minidom tree, messages and presences are taken apart by hand (the
//! rare iqs go through xmpp-parsers), and stanzas are written straight into the output
//! buffer. The server is the only peer of this stream and has already checked what its
//! clients sent, but nothing here trusts that: malformed XML ends the stream, a malformed
//! stanza is reported with what could be read of it, and text that XML cannot carry is
//! replaced, never sent.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{
    Namespace as ResolvedNs, NamespaceResolver, PrefixDeclaration, ResolveResult,
};
use quick_xml::reader::Reader;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::{Element, Node};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType, Thread};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Priority, Show, Type as PresenceType};
use tokio_xmpp::Stanza;
use xso::exports::rxml::{Namespace, NcName};
use xso::{AsOptionalXmlText, AsXmlText, FromXmlText};

use crate::address::JidCache;

/// The stream's namespaces.
pub(super) const STREAM_NS: &str = "http://etherx.jabber.org/streams";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The largest stanza the link accepts; past it the server is misbehaving and the stream is
/// dropped rather than buffered without end.
pub(super) const MAX_STANZA: usize = 16 << 20;

/// One top-level item of the server's stream, as bytes still in the reader's buffer.
#[derive(Debug, PartialEq)]
pub(super) enum Frame<'a> {
    /// The server's `<stream:stream …>` header (the start tag only).
    Header(&'a [u8]),
    /// A complete child of the stream root: a stanza, the handshake reply, a stream error.
    Element(&'a [u8]),
    /// `</stream:stream>`.
    End,
}

/// Why the stream cannot be read any further.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamBroken {
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    #[error("a stanza of more than {} MiB", MAX_STANZA >> 20)]
    TooLarge,
}

/// Cuts the bytes of the stream into [`Frame`]s. Knows only as much XML as it takes to find
/// where a top-level element ends: tags (with `>` inside quoted attribute values) and CDATA
/// sections; comments, processing instructions and DTDs, which RFC 6120 forbids in a stream,
/// end it. Everything else is left to the parser.
#[derive(Debug, Default)]
pub(super) struct Framer {
    buf: Vec<u8>,
    /// Bytes before this were handed out (or skipped) already.
    done: usize,
    /// Bytes before this were scanned.
    scanned: usize,
    /// Where the top-level element being scanned started.
    start: usize,
    /// How many elements are open: 1 inside the stream root, 2 and more inside a stanza.
    depth: usize,
}

impl Framer {
    /// Room for the next read: at least `want` bytes of spare capacity, after moving out
    /// what was handed out already.
    pub(super) fn buffer(&mut self, want: usize) -> &mut Vec<u8> {
        let keep = self.pending_from();
        if keep > 0 && (keep == self.buf.len() || keep >= self.buf.capacity() / 2) {
            self.buf.drain(..keep);
            self.done = self.done.saturating_sub(keep);
            self.scanned -= keep;
            self.start = self.start.saturating_sub(keep);
        }
        if self.buf.capacity() - self.buf.len() < want {
            self.buf.reserve(want);
        }
        if self.buf.is_empty() && self.buf.capacity() > 4 * want {
            // A burst is over: give its memory back.
            self.buf = Vec::with_capacity(want);
        }
        &mut self.buf
    }

    /// Where the bytes not yet handed out start: the stanza being read, else what follows
    /// the last frame.
    fn pending_from(&self) -> usize {
        if self.depth >= 2 {
            self.start
        } else {
            self.done
        }
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub(super) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, StreamBroken> {
        loop {
            let len = self.buf.len();
            // At any depth: a start tag that never ends grows as much as a stanza.
            if len - self.pending_from() > MAX_STANZA {
                return Err(StreamBroken::TooLarge);
            }
            let Some(lt) =
                memchr::memchr(b'<', &self.buf[self.scanned..]).map(|i| self.scanned + i)
            else {
                self.scanned = len;
                if self.depth < 2 {
                    self.done = len;
                }
                return Ok(None);
            };
            let rest = &self.buf[lt..];
            let Some(&second) = rest.get(1) else {
                self.scanned = lt;
                return Ok(None);
            };
            let found = match second {
                b'/' => find(rest, 2, b">").map(|end| (Markup::End, end)),
                // The XML declaration before the stream header.
                b'?' if self.depth == 0 => find(rest, 2, b"?>").map(|end| (Markup::Skip, end)),
                b'!' if rest.starts_with(b"<![CDATA[") => {
                    find(rest, 9, b"]]>").map(|end| (Markup::Skip, end))
                }
                b'!' if rest.len() < 9 && b"<![CDATA[".starts_with(rest) => None,
                b'!' | b'?' => {
                    return Err(StreamBroken::Syntax(
                        "a comment, processing instruction or DTD (RFC 6120 allows none)".into(),
                    ))
                }
                _ => tag_end(rest).map(|end| {
                    (
                        if rest[end - 1] == b'/' {
                            Markup::Empty
                        } else {
                            Markup::Start
                        },
                        end,
                    )
                }),
            };
            let Some((markup, end)) = found else {
                // The construct is not complete yet: scan it again from its start.
                self.scanned = lt;
                return Ok(None);
            };
            let end = lt + end + 1;
            self.scanned = end;
            match markup {
                Markup::Skip => {}
                Markup::Start if self.depth == 0 => {
                    self.depth = 1;
                    self.done = end;
                    return Ok(Some(Frame::Header(&self.buf[lt..end])));
                }
                Markup::Empty if self.depth == 0 => {
                    return Err(StreamBroken::Syntax(
                        "the stream root closed as soon as opened".into(),
                    ));
                }
                Markup::Start => {
                    if self.depth == 1 {
                        self.start = lt;
                    }
                    self.depth += 1;
                }
                Markup::Empty if self.depth == 1 => {
                    self.done = end;
                    return Ok(Some(Frame::Element(&self.buf[lt..end])));
                }
                Markup::Empty => {}
                Markup::End if self.depth == 0 => {
                    return Err(StreamBroken::Syntax("an end tag outside the stream".into()));
                }
                Markup::End => {
                    self.depth -= 1;
                    match self.depth {
                        0 => {
                            self.done = end;
                            return Ok(Some(Frame::End));
                        }
                        1 => {
                            self.done = end;
                            return Ok(Some(Frame::Element(&self.buf[self.start..end])));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

enum Markup {
    Start,
    Empty,
    End,
    /// The XML declaration, CDATA sections: no effect on the nesting.
    Skip,
}

/// The offset of the last byte of the first `needle` in `hay` at or after `from`.
fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(&hay[from..], needle).map(|i| from + i + needle.len() - 1)
}

/// The offset of the `>` closing the start tag at the beginning of `tag`, skipping quoted
/// attribute values.
fn tag_end(tag: &[u8]) -> Option<usize> {
    let mut at = 1;
    loop {
        let i = at + memchr::memchr3(b'>', b'"', b'\'', &tag[at..])?;
        match tag[i] {
            b'>' => return Some(i),
            quote => at = i + 1 + memchr::memchr(quote, &tag[i + 1..])? + 1,
        }
    }
}

/// What went wrong with one stanza; the stream itself is fine.
#[derive(Debug)]
pub(super) struct Malformed {
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
pub(super) enum Incoming {
    Stanza(Stanza),
    /// Some other top-level element in the stream's namespace (`handshake`…) or a stream
    /// error (`stream:error`, namespace [`STREAM_NS`]).
    Other(Element),
    Malformed(Malformed),
}

/// Parse a top-level element of the stream; `cache` keeps what the next one can use.
/// Elements without a namespace declaration are in the stream's default namespace,
/// `jabber:component:accept`.
pub(super) fn parse(xml: &[u8], cache: &mut ParseCache) -> Result<Incoming, StreamBroken> {
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
            false => read_children(&mut reader)?,
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
        for node in read_children(&mut reader)? {
            element.append_node(node);
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
struct RootAttrs<'a> {
    from: Option<Cow<'a, str>>,
    to: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    type_: Option<Cow<'a, str>>,
    lang: Option<Cow<'a, str>>,
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
fn read_children(reader: &mut StanzaReader) -> Result<Vec<Node>, String> {
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
                    ))
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
                        ))
                    }
                }),
            },
            // The framer lets none of these through.
            Event::Comment(_) | Event::PI(_) | Event::Decl(_) | Event::DocType(_) => {
                return Err("a comment, processing instruction or declaration".into())
            }
            Event::Eof => return Err("the element ends early".into()),
        }
    }
}

/// What reading a stanza keeps for the next: the JIDs parsed lately, and a namespace
/// resolver holding the stream header's bindings (a new one allocates, for every stanza).
#[derive(Debug)]
pub(super) struct ParseCache {
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
pub(super) fn header_id(header: &[u8]) -> Result<Option<String>, String> {
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

fn jid_attr(
    jids: &mut JidCache<Jid>,
    value: &Option<Cow<'_, str>>,
    name: &str,
) -> Result<Option<Jid>, String> {
    value
        .as_deref()
        .map(|s| {
            jids.get(s)
                .map_err(|e| format!("invalid '{name}' attribute: {e}"))
        })
        .transpose()
}

/// The element's own `xml:lang`, or the one it inherits.
fn lang(element: &Element, inherited: &str) -> Lang {
    Lang(
        element
            .attr_ns(XML_NS, "lang")
            .unwrap_or(inherited)
            .to_owned(),
    )
}

/// The text of an element that may hold text only, moved out of it.
fn text_only(mut element: Element) -> Result<String, String> {
    let mut text = String::new();
    for node in element.take_nodes() {
        match node {
            Node::Text(t) if text.is_empty() => text = t,
            Node::Text(t) => text.push_str(&t),
            Node::Element(_) => return Err(format!("child elements in <{}>", element.name())),
        }
    }
    Ok(text)
}

/// Bodies, subjects and statuses by language; of two in one language the last counts, as
/// with xmpp-parsers.
fn insert_localised(
    map: &mut BTreeMap<Lang, String>,
    element: Element,
    inherited: &str,
) -> Result<(), String> {
    map.insert(lang(&element, inherited), text_only(element)?);
    Ok(())
}

/// The child elements of a stanza; text between them must be white space.
fn elements(nodes: Vec<Node>, stanza: &str) -> Result<Vec<Element>, String> {
    let mut children = Vec::with_capacity(nodes.len());
    for node in nodes {
        match node {
            Node::Element(child) => children.push(child),
            Node::Text(t) if xso::is_xml_whitespace(t.as_bytes()) => {}
            Node::Text(_) => return Err(format!("text directly in <{stanza}>")),
        }
    }
    Ok(children)
}

fn message(
    attrs: &RootAttrs,
    nodes: Vec<Node>,
    jids: &mut JidCache<Jid>,
) -> Result<Message, String> {
    let type_ = match attrs.type_.as_deref() {
        None => MessageType::Normal,
        Some(t) => t
            .parse()
            .map_err(|_| format!("unknown message type '{t}'"))?,
    };
    let inherited = attrs.lang.as_deref().unwrap_or("");
    let mut message = Message {
        from: jid_attr(jids, &attrs.from, "from")?,
        to: jid_attr(jids, &attrs.to, "to")?,
        id: attrs
            .id
            .as_deref()
            .map(|id| tokio_xmpp::parsers::message::Id(id.to_owned())),
        type_,
        bodies: BTreeMap::new(),
        subjects: BTreeMap::new(),
        thread: None,
        payloads: Vec::new(),
    };
    for child in elements(nodes, "message")? {
        if child.has_ns(ns::COMPONENT) {
            match child.name() {
                "body" => {
                    insert_localised(&mut message.bodies, child, inherited)?;
                    continue;
                }
                "subject" => {
                    insert_localised(&mut message.subjects, child, inherited)?;
                    continue;
                }
                "thread" if message.thread.is_none() => {
                    message.thread = Some(Thread {
                        parent: child.attr("parent").map(str::to_owned),
                        id: text_only(child)?,
                    });
                    continue;
                }
                "thread" => return Err("two <thread/>".into()),
                _ => {}
            }
        }
        message.payloads.push(child);
    }
    Ok(message)
}

fn presence(
    attrs: &RootAttrs,
    nodes: Vec<Node>,
    jids: &mut JidCache<Jid>,
) -> Result<Presence, String> {
    let type_ = match attrs.type_.as_deref() {
        None => PresenceType::None,
        Some(t) => PresenceType::from_xml_text(t.to_owned())
            .map_err(|_| format!("unknown presence type '{t}'"))?,
    };
    let inherited = attrs.lang.as_deref().unwrap_or("");
    let mut presence = Presence {
        from: jid_attr(jids, &attrs.from, "from")?,
        to: jid_attr(jids, &attrs.to, "to")?,
        id: attrs.id.as_deref().map(str::to_owned),
        type_,
        show: None,
        statuses: BTreeMap::new(),
        priority: Priority(0),
        payloads: Vec::new(),
    };
    let mut priority_seen = false;
    for child in elements(nodes, "presence")? {
        if child.has_ns(ns::COMPONENT) {
            match child.name() {
                "show" if presence.show.is_none() => {
                    let text = text_only(child)?;
                    presence.show = Some(
                        Show::from_xml_text(text.clone())
                            .map_err(|_| format!("unknown show value '{text}'"))?,
                    );
                    continue;
                }
                "status" => {
                    insert_localised(&mut presence.statuses, child, inherited)?;
                    continue;
                }
                "priority" if !priority_seen => {
                    priority_seen = true;
                    let text = text_only(child)?;
                    presence.priority = Priority(
                        text.trim()
                            .parse()
                            .map_err(|_| format!("invalid priority '{text}'"))?,
                    );
                    continue;
                }
                "show" | "priority" => return Err(format!("two <{}/>", child.name())),
                _ => {}
            }
        }
        presence.payloads.push(child);
    }
    Ok(presence)
}

/// Append `stanza` to `out` as it goes on the stream (in the stream's default namespace).
pub(super) fn write_stanza(out: &mut Vec<u8>, stanza: &Stanza) {
    match stanza {
        Stanza::Message(m) => write_message(out, m),
        Stanza::Presence(p) => write_presence(out, p),
        Stanza::Iq(iq) => match xso::transform::<Element, _>(iq) {
            Ok(element) => write_element(out, &element, ns::COMPONENT),
            // Only a payload that cannot be expressed fails here; leave it out rather than
            // stall the link.
            Err(e) => tracing::error!(error = %e, ?iq, "iq cannot be serialised, not sent"),
        },
    }
}

fn write_message(out: &mut Vec<u8>, m: &Message) {
    out.extend_from_slice(b"<message");
    write_addressing(
        out,
        m.from.as_ref(),
        m.to.as_ref(),
        m.id.as_ref().map(|id| id.0.as_str()),
    );
    // Normal is the default, left unsaid.
    if m.type_ != MessageType::Normal {
        if let Ok(t) = m.type_.as_xml_text() {
            write_attr(out, "type", &t);
        }
    }
    if m.bodies.is_empty() && m.subjects.is_empty() && m.thread.is_none() && m.payloads.is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    write_localised(out, "subject", &m.subjects);
    write_localised(out, "body", &m.bodies);
    if let Some(thread) = &m.thread {
        out.extend_from_slice(b"<thread");
        if let Some(parent) = &thread.parent {
            write_attr(out, "parent", parent);
        }
        out.push(b'>');
        escape(out, &thread.id, false);
        out.extend_from_slice(b"</thread>");
    }
    for payload in &m.payloads {
        write_element(out, payload, ns::COMPONENT);
    }
    out.extend_from_slice(b"</message>");
}

fn write_presence(out: &mut Vec<u8>, p: &Presence) {
    out.extend_from_slice(b"<presence");
    write_addressing(out, p.from.as_ref(), p.to.as_ref(), p.id.as_deref());
    if let Ok(Some(t)) = p.type_.as_optional_xml_text() {
        write_attr(out, "type", &t);
    }
    if p.show.is_none() && p.statuses.is_empty() && p.priority.0 == 0 && p.payloads.is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    if let Some(Ok(show)) = p.show.as_ref().map(Show::as_xml_text) {
        out.extend_from_slice(b"<show>");
        out.extend_from_slice(show.as_bytes());
        out.extend_from_slice(b"</show>");
    }
    write_localised(out, "status", &p.statuses);
    if p.priority.0 != 0 {
        let _ = write!(Buf(out), "<priority>{}</priority>", p.priority.0);
    }
    for payload in &p.payloads {
        write_element(out, payload, ns::COMPONENT);
    }
    out.extend_from_slice(b"</presence>");
}

/// `fmt::Write` onto the output buffer.
struct Buf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn write_addressing(out: &mut Vec<u8>, from: Option<&Jid>, to: Option<&Jid>, id: Option<&str>) {
    if let Some(from) = from {
        write_attr(out, "from", from.as_str());
    }
    if let Some(to) = to {
        write_attr(out, "to", to.as_str());
    }
    if let Some(id) = id {
        write_attr(out, "id", id);
    }
}

fn write_localised(out: &mut Vec<u8>, name: &str, texts: &BTreeMap<Lang, String>) {
    for (lang, text) in texts {
        out.push(b'<');
        out.extend_from_slice(name.as_bytes());
        if !lang.0.is_empty() {
            write_attr(out, "xml:lang", &lang.0);
        }
        out.push(b'>');
        escape(out, text, false);
        out.extend_from_slice(b"</");
        out.extend_from_slice(name.as_bytes());
        out.push(b'>');
    }
}

pub(super) fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape(out, value, true);
    out.push(b'\'');
}

/// Write `element` (and its subtree) whose parent is in namespace `parent_ns`.
pub(super) fn write_element(out: &mut Vec<u8>, element: &Element, parent_ns: &str) {
    let ns = element.ns();
    out.push(b'<');
    out.extend_from_slice(element.name().as_bytes());
    if ns != parent_ns {
        write_attr(out, "xmlns", &ns);
    }
    let mut prefixes = 0;
    for ((attr_ns, name), value) in element.attrs().iter() {
        if attr_ns.is_none() {
            write_attr(out, name, value);
        } else if *attr_ns == Namespace::XML {
            write_attr(out, &format!("xml:{name}"), value);
        } else {
            // Namespaced attributes are rare: each gets a prefix of its own.
            prefixes += 1;
            write_attr(out, &format!("xmlns:a{prefixes}"), attr_ns.as_str());
            write_attr(out, &format!("a{prefixes}:{name}"), value);
        }
    }
    let mut nodes = element.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in nodes {
        match node {
            Node::Element(child) => write_element(out, child, &ns),
            Node::Text(text) => escape(out, text, false),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(element.name().as_bytes());
    out.push(b'>');
}

/// Escape `text` for character data or a single-quoted attribute value. What XML cannot
/// carry at all (control characters, U+FFFE, U+FFFF) becomes U+FFFD, so that no text can
/// break the stream.
fn escape(out: &mut Vec<u8>, text: &str, attribute: bool) {
    let special = if attribute {
        &ATTRIBUTE_SPECIAL
    } else {
        &TEXT_SPECIAL
    };
    let bytes = text.as_bytes();
    let mut clean = 0;
    while let Some(at) = bytes[clean..].iter().position(|&b| special[usize::from(b)]) {
        let i = clean + at;
        out.extend_from_slice(&bytes[clean..i]);
        let (replacement, len): (&[u8], usize) = match bytes[i] {
            b'&' => (b"&amp;", 1),
            b'<' => (b"&lt;", 1),
            b'>' => (b"&gt;", 1),
            b'\'' => (b"&apos;", 1),
            b'"' => (b"&quot;", 1),
            b'\r' => (b"&#13;", 1),
            b'\n' => (b"&#10;", 1),
            b'\t' => (b"&#9;", 1),
            // U+FFFE and U+FFFF are EF BF BE and EF BF BF; other EF… are fine.
            0xEF if matches!(bytes.get(i + 1..i + 3), Some([0xBF, 0xBE | 0xBF])) => {
                ("\u{FFFD}".as_bytes(), 3)
            }
            0xEF => (b"\xEF", 1),
            _ => ("\u{FFFD}".as_bytes(), 1),
        };
        out.extend_from_slice(replacement);
        clean = i + len;
    }
    out.extend_from_slice(&bytes[clean..]);
}

/// The bytes [`escape`] must look at: markup, control characters, the lead byte of U+FFFE
/// and U+FFFF; in attribute values also quotes and the white space that attribute value
/// normalisation would turn into spaces.
const TEXT_SPECIAL: [bool; 256] = special_bytes(false);
const ATTRIBUTE_SPECIAL: [bool; 256] = special_bytes(true);

const fn special_bytes(attribute: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'\t' as usize] = attribute;
    table[b'\n' as usize] = attribute;
    table[b'\'' as usize] = attribute;
    table[b'"' as usize] = attribute;
    table[b'&' as usize] = true;
    table[b'<' as usize] = true;
    table[b'>' as usize] = true;
    table[0xEF] = true;
    table
}

#[cfg(test)]
mod tests;
