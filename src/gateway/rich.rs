//! Message references between XMPP and networks that have them (Matrix): corrections
//! (XEP-0308), replies with their fallbacks (XEP-0461, XEP-0428), retractions and
//! moderation (XEP-0424, XEP-0425) and reactions (XEP-0444).

use causeway_bridge::{Refs, ReplyTo};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;

use super::stanzas::nc;

const CORRECT: &str = "urn:xmpp:message-correct:0";
const REPLY: &str = "urn:xmpp:reply:0";
const FALLBACK: &str = "urn:xmpp:fallback:0";
const RETRACT: &str = "urn:xmpp:message-retract:1";
const RETRACT_0: &str = "urn:xmpp:message-retract:0";
const FASTEN: &str = "urn:xmpp:fasten:0";
const MODERATE: &str = "urn:xmpp:message-moderate:1";
const MODERATE_0: &str = "urn:xmpp:message-moderate:0";
const REACTIONS: &str = "urn:xmpp:reactions:0";
const HINTS: &str = "urn:xmpp:hints";

/// The features a room with references advertises (moderation requests of the first
/// version are taken too, but removals are told in the current one only).
pub const FEATURES: [&str; 5] = [CORRECT, REPLY, RETRACT, REACTIONS, MODERATE];

/// What a message from a client corrects and answers.
pub fn refs(msg: &Message) -> Refs {
    let replaces = msg
        .payloads
        .iter()
        .find(|p| p.is("replace", CORRECT))
        .and_then(|p| p.attr("id"))
        .map(str::to_owned);
    let reply_to = msg
        .payloads
        .iter()
        .find(|p| p.is("reply", REPLY))
        .and_then(|p| p.attr("id"))
        .map(|id| ReplyTo {
            id: id.to_owned(),
            ..ReplyTo::default()
        });
    Refs { replaces, reply_to }
}

/// The body without the quote a reply carries for clients that do not know XEP-0461
/// (the `<fallback for='urn:xmpp:reply:0'>` range, in code points).
pub fn strip_reply_fallback(msg: &Message, body: &str) -> String {
    let Some(range) = msg
        .payloads
        .iter()
        .find(|p| p.is("fallback", FALLBACK) && p.attr("for") == Some(REPLY))
        .and_then(|f| f.get_child("body", FALLBACK))
    else {
        return body.to_owned();
    };
    let number = |name| range.attr(name).and_then(|v| v.parse::<usize>().ok());
    let chars: Vec<char> = body.chars().collect();
    let (start, end) = (
        number("start").unwrap_or(0),
        number("end").unwrap_or(chars.len()),
    );
    if start > end || end > chars.len() {
        return body.to_owned();
    }
    chars[..start]
        .iter()
        .chain(&chars[end..])
        .collect::<String>()
}

/// The id a retraction names: XEP-0424 `<retract id/>`, or the older fastening form.
pub fn retraction(msg: &Message) -> Option<String> {
    msg.payloads.iter().find_map(|p| {
        if p.is("retract", RETRACT) {
            return p.attr("id").map(str::to_owned);
        }
        if p.is("apply-to", FASTEN) && p.get_child("retract", RETRACT_0).is_some() {
            return p.attr("id").map(str::to_owned);
        }
        None
    })
}

/// The message reacted to and the whole set of reactions.
pub fn reactions(msg: &Message) -> Option<(String, Vec<String>)> {
    let reactions = msg.payloads.iter().find(|p| p.is("reactions", REACTIONS))?;
    let id = reactions.attr("id")?.to_owned();
    let set = reactions
        .children()
        .filter(|c| c.is("reaction", REACTIONS))
        .map(|c| c.text())
        .filter(|t| !t.is_empty())
        .collect();
    Some((id, set))
}

/// `<replace id/>` for a correction.
fn replace(id: &str) -> Element {
    Element::builder("replace", CORRECT)
        .attr(nc("id"), id)
        .build()
}

/// `<reply id to/>` for an answer; `to` is the answered message's sender in the room.
fn reply(id: &str, to: Option<&Jid>) -> Element {
    let mut reply = Element::builder("reply", REPLY).attr(nc("id"), id);
    if let Some(to) = to {
        reply = reply.attr(nc("to"), to.to_string());
    }
    reply.build()
}

/// Mark a message from the network (whose text is `text`) with what it corrects and what
/// it answers, the answered message's quote in front of its body; `answered` is that
/// message's sender as the reader addresses it, when known.
pub fn mark_refs(msg: &mut Message, text: &str, refs: &Refs, answered: Option<&Jid>) {
    if let Some(corrected) = &refs.replaces {
        msg.payloads.push(replace(corrected));
    }
    if let Some(reply_to) = &refs.reply_to {
        msg.payloads.push(reply(&reply_to.id, answered));
        if let Some(quote) = &reply_to.quote {
            let (quoted, fallback) = with_quote(text, reply_to.nick.as_deref(), quote);
            msg.bodies.insert(Default::default(), quoted);
            msg.payloads.push(fallback);
        }
    }
}

/// A reply's body with the quote of the answered message in front, for clients that know no
/// XEP-0461, and the `<fallback/>` that marks the quote (XEP-0428, code points).
fn with_quote(body: &str, nick: Option<&str>, quote: &str) -> (String, Element) {
    let first = quote.lines().next().unwrap_or_default();
    let quoted = match nick {
        Some(nick) => format!("> {nick}: {first}\n"),
        None => format!("> {first}\n"),
    };
    let end = quoted.chars().count();
    let fallback = Element::builder("fallback", FALLBACK)
        .attr(nc("for"), REPLY)
        .append(
            Element::builder("body", FALLBACK)
                .attr(nc("start"), "0")
                .attr(nc("end"), end.to_string())
                .build(),
        )
        .build();
    (format!("{quoted}{body}"), fallback)
}

/// The payloads of a retraction: by the sender, or (with `moderator`) by a moderator.
pub fn retracted(id: &str, moderator: Option<&Jid>, reason: Option<&str>) -> Vec<Element> {
    let mut retract = Element::builder("retract", RETRACT).attr(nc("id"), id);
    if let Some(moderator) = moderator {
        retract = retract.append(
            Element::builder("moderated", MODERATE)
                .attr(nc("by"), moderator.to_string())
                .build(),
        );
        if let Some(reason) = reason.filter(|r| !r.is_empty()) {
            retract = retract.append(Element::builder("reason", RETRACT).append(reason).build());
        }
    }
    vec![
        retract.build(),
        Element::builder("fallback", FALLBACK)
            .attr(nc("for"), RETRACT)
            .build(),
        Element::builder("store", HINTS).build(),
    ]
}

/// A XEP-0425 moderation request (an iq set's payload): the id of the message to remove,
/// and why. Both the current form (`<moderate id xmlns='…:1'><retract/>`) and the first
/// (`<apply-to id><moderate xmlns='…:0'><retract/>` in XEP-0422's fastening).
pub fn moderation_request(payload: &Element) -> Option<(String, Option<String>)> {
    let (id, moderate, retract) = if payload.is("moderate", MODERATE) {
        (payload.attr("id")?, payload, RETRACT)
    } else if payload.is("apply-to", FASTEN) {
        let moderate = payload.get_child("moderate", MODERATE_0)?;
        (payload.attr("id")?, moderate, RETRACT_0)
    } else {
        return None;
    };
    moderate.get_child("retract", retract)?;
    let reason = moderate
        .children()
        .find(|c| c.name() == "reason")
        .map(|r| r.text())
        .filter(|r| !r.trim().is_empty());
    Some((id.to_owned(), reason))
}

/// The text clients without XEP-0424 show for a retraction.
pub fn retracted_fallback(moderated: bool) -> &'static str {
    if moderated {
        "A message was removed by a moderator."
    } else {
        "This person attempted to retract a previous message, but it's unsupported by your client."
    }
}

/// The payloads of a reactions update.
pub fn reactions_payloads(id: &str, reactions: &[String]) -> Vec<Element> {
    let mut set = Element::builder("reactions", REACTIONS).attr(nc("id"), id);
    for reaction in reactions {
        set = set.append(
            Element::builder("reaction", REACTIONS)
                .append(reaction.as_str())
                .build(),
        );
    }
    vec![set.build(), Element::builder("store", HINTS).build()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moderation_requests_of_both_versions_are_read() {
        let parse = |xml: &str| moderation_request(&xml.parse::<Element>().unwrap());
        assert_eq!(
            parse(
                "<moderate xmlns='urn:xmpp:message-moderate:1' id='$ev'>\
                 <retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate>"
            ),
            Some(("$ev".into(), Some("spam".into())))
        );
        assert_eq!(
            parse(
                "<apply-to xmlns='urn:xmpp:fasten:0' id='s1'>\
                 <moderate xmlns='urn:xmpp:message-moderate:0'>\
                 <retract xmlns='urn:xmpp:message-retract:0'/></moderate></apply-to>"
            ),
            Some(("s1".into(), None))
        );
        // No id, or nothing to do: no request.
        assert_eq!(
            parse(
                "<moderate xmlns='urn:xmpp:message-moderate:1'>\
                 <retract xmlns='urn:xmpp:message-retract:1'/></moderate>"
            ),
            None
        );
        assert_eq!(
            parse("<moderate xmlns='urn:xmpp:message-moderate:1' id='x'/>"),
            None
        );
    }

    fn message(payloads: &str, body: &str) -> Message {
        let xml = format!(
            "<message xmlns='jabber:component:accept' type='groupchat'><body>{body}</body>{payloads}</message>"
        );
        Message::try_from(xml.parse::<Element>().unwrap()).unwrap()
    }

    #[test]
    fn corrections_replies_retractions_and_reactions_are_read() {
        let m = message(
            "<replace xmlns='urn:xmpp:message-correct:0' id='m1'/>",
            "fixed",
        );
        assert_eq!(refs(&m).replaces.as_deref(), Some("m1"));
        let m = message(
            "<reply xmlns='urn:xmpp:reply:0' to='r@x/bob' id='$ev'/>\
             <fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='7'/></fallback>",
            "&gt; hi ✓\nanswer",
        );
        assert_eq!(refs(&m).reply_to.map(|r| r.id).as_deref(), Some("$ev"));
        assert_eq!(strip_reply_fallback(&m, "> hi ✓\nanswer"), "answer");
        let m = message(
            "<retract xmlns='urn:xmpp:message-retract:1' id='$ev'/>",
            "x",
        );
        assert_eq!(retraction(&m).as_deref(), Some("$ev"));
        let m = message(
            "<apply-to xmlns='urn:xmpp:fasten:0' id='o1'><retract xmlns='urn:xmpp:message-retract:0'/></apply-to>",
            "x",
        );
        assert_eq!(retraction(&m).as_deref(), Some("o1"));
        let m = message(
            "<reactions xmlns='urn:xmpp:reactions:0' id='$ev'><reaction>👍</reaction><reaction>🎉</reaction></reactions>",
            "",
        );
        assert_eq!(
            reactions(&m),
            Some(("$ev".into(), vec!["👍".into(), "🎉".into()]))
        );
        // A fallback range beyond the body is ignored rather than trusted.
        let m = message(
            "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='99'/></fallback>",
            "short",
        );
        assert_eq!(strip_reply_fallback(&m, "short"), "short");
    }
}
