//! Writing stanzas straight from their fields into the output buffer, escaping as XML
//! requires and replacing what XML cannot carry.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::{Element, Node};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Show};
use tokio_xmpp::Stanza;
use xso::exports::rxml::Namespace;
use xso::{AsOptionalXmlText, AsXmlText};

/// Append `stanza` to `out` as it goes on the stream (in the stream's default namespace).
pub(in crate::component) fn write_stanza(out: &mut Vec<u8>, stanza: &Stanza) {
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

pub(in crate::component) fn write_attr(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"='");
    escape(out, value, true);
    out.push(b'\'');
}

/// Write `element` (and its subtree) whose parent is in namespace `parent_ns`.
pub(in crate::component) fn write_element(out: &mut Vec<u8>, element: &Element, parent_ns: &str) {
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
