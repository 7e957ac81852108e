//! Matrix message content → the plain text an XMPP client shows, and back.

use ruma::events::room::message::{
    FormattedBody, MessageFormat, MessageType, RoomMessageEventContent,
};

use causeway_bridge::MessageKind;

/// The readable text and kind of a message's content: HTML as XEP-0393 styled text, reply
/// fallbacks removed, media shown by name and `mxc://` address.
pub fn readable(content: &MessageType) -> (String, MessageKind) {
    match content {
        MessageType::Text(c) => (
            body_text(&c.body, c.formatted.as_ref()),
            MessageKind::Normal,
        ),
        MessageType::Emote(c) => (
            body_text(&c.body, c.formatted.as_ref()),
            MessageKind::Action,
        ),
        MessageType::Notice(c) => (
            body_text(&c.body, c.formatted.as_ref()),
            MessageKind::Notice,
        ),
        MessageType::Image(c) => (media("image", &c.body, &c.source), MessageKind::Normal),
        MessageType::File(c) => (media("file", &c.body, &c.source), MessageKind::Normal),
        MessageType::Audio(c) => (media("audio", &c.body, &c.source), MessageKind::Normal),
        MessageType::Video(c) => (media("video", &c.body, &c.source), MessageKind::Normal),
        other => (
            strip_reply_fallback(other.body()).to_owned(),
            MessageKind::Normal,
        ),
    }
}

fn media(what: &str, name: &str, source: &ruma::events::room::MediaSource) -> String {
    match source {
        ruma::events::room::MediaSource::Plain(uri) => format!("[{what}: {name}] {uri}"),
        ruma::events::room::MediaSource::Encrypted(_) => format!("[encrypted {what}: {name}]"),
    }
}

fn body_text(body: &str, formatted: Option<&FormattedBody>) -> String {
    match formatted {
        Some(f) if f.format == MessageFormat::Html => {
            crate::html::to_styled(&f.body).unwrap_or_else(|| strip_reply_fallback(body).to_owned())
        }
        _ => strip_reply_fallback(body).to_owned(),
    }
}

/// A plain body without the `> <@alice:example.org> quoted` lines a reply starts with.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while rest.starts_with("> ") || rest.starts_with(">\n") {
        match rest.find('\n') {
            Some(i) => rest = &rest[i + 1..],
            None => return body,
        }
    }
    rest.strip_prefix('\n').unwrap_or(rest)
}

/// The content of a message sent from XMPP: its body as typed, and HTML for its styling
/// when it has any.
pub fn content(body: &str, kind: MessageKind) -> RoomMessageEventContent {
    match (kind, crate::html::from_styled(body)) {
        (MessageKind::Normal, None) => RoomMessageEventContent::text_plain(body),
        (MessageKind::Action, None) => RoomMessageEventContent::emote_plain(body),
        (MessageKind::Notice, None) => RoomMessageEventContent::notice_plain(body),
        (MessageKind::Normal, Some(html)) => RoomMessageEventContent::text_html(body, html),
        (MessageKind::Action, Some(html)) => RoomMessageEventContent::emote_html(body, html),
        (MessageKind::Notice, Some(html)) => RoomMessageEventContent::notice_html(body, html),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_bodies_are_read_as_styled_text_and_styling_is_sent_as_html() {
        let html_message = |html: &str| {
            MessageType::Text(ruma::events::room::message::TextMessageEventContent::html(
                "plain", html,
            ))
        };
        let html = "<mx-reply><blockquote>quoted earlier</blockquote></mx-reply><p>Hello \
                    <b>bold</b></p><ul><li>one</li><li>two</li></ul>";
        let (text, kind) = readable(&html_message(html));
        assert_eq!(kind, MessageKind::Normal);
        assert!(text.starts_with("Hello *bold*"), "{text}");
        assert!(text.contains("one") && text.contains("two"), "{text}");
        assert!(
            !text.contains("quoted earlier") && !text.contains('<'),
            "{text}"
        );
        // HTML without text: the plain body.
        assert_eq!(readable(&html_message("<p></p>")).0, "plain");

        let sent = serde_json::to_value(super::content("*hi* there", MessageKind::Action)).unwrap();
        assert_eq!(sent["msgtype"], "m.emote");
        assert_eq!(sent["body"], "*hi* there");
        assert_eq!(sent["format"], "org.matrix.custom.html");
        assert_eq!(sent["formatted_body"], "<strong>hi</strong> there");
        let plain = serde_json::to_value(super::content("2*3*4", MessageKind::Normal)).unwrap();
        assert!(plain.get("formatted_body").is_none(), "{plain}");
    }

    #[test]
    fn reply_fallbacks_are_stripped_from_plain_bodies() {
        assert_eq!(
            strip_reply_fallback("> <@a:b> quoted\n> more\n\nanswer"),
            "answer"
        );
        assert_eq!(strip_reply_fallback("plain > text"), "plain > text");
        assert_eq!(strip_reply_fallback("> only a quote"), "> only a quote");
    }
}
