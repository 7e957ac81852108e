//! Messages and presences taken apart by hand into xmpp-parsers' types: what the hot path
//! reads, without xso's generic machinery.

use std::borrow::Cow;
use std::collections::BTreeMap;

use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::{Element, Node};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType, Thread};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::presence::{Presence, Priority, Show, Type as PresenceType};
use xso::FromXmlText;

use crate::address::JidCache;

use super::reading::RootAttrs;
use super::XML_NS;

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

pub(super) fn message(
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

pub(super) fn presence(
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
