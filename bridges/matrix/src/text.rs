//! Matrix message content → the plain text an XMPP client shows, and back.

use ruma::events::room::message::{
    FormattedBody, MessageFormat, MessageType, RoomMessageEventContent,
};

use causeway_bridge::MessageKind;

/// The readable text and kind of a message's content: HTML reduced to text, reply
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
            html_to_text(&f.body).unwrap_or_else(|| strip_reply_fallback(body).to_owned())
        }
        _ => strip_reply_fallback(body).to_owned(),
    }
}

/// The text of a Matrix HTML body: `<mx-reply>` fallbacks dropped, markup reduced to what a
/// plain-text reader needs (line breaks, list bullets, link targets).
pub fn html_to_text(html: &str) -> Option<String> {
    let without_reply = match (html.find("<mx-reply>"), html.find("</mx-reply>")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}", &html[..start], &html[end + "</mx-reply>".len()..])
        }
        _ => html.to_owned(),
    };
    let text = html2text::config::plain_no_decorate()
        .link_footnotes(true)
        .no_link_wrapping()
        .string_from_read(without_reply.as_bytes(), 100_000)
        .ok()?;
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    let text = lines.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
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

/// The content of a message sent from XMPP.
pub fn content(body: &str, kind: MessageKind) -> RoomMessageEventContent {
    match kind {
        MessageKind::Normal => RoomMessageEventContent::text_plain(body),
        MessageKind::Action => RoomMessageEventContent::emote_plain(body),
        MessageKind::Notice => RoomMessageEventContent::notice_plain(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_reduced_to_readable_text() {
        let html =
            "<mx-reply><blockquote>quoted earlier</blockquote></mx-reply><p>Hello <b>bold</b> \
                    <a href=\"https://example.org/\">site</a></p><ul><li>one</li><li>two</li></ul>";
        let text = html_to_text(html).unwrap();
        assert!(!text.contains("quoted earlier"), "{text}");
        assert!(!text.contains('<'), "{text}");
        assert!(text.starts_with("Hello bold [site][1]"), "{text}");
        assert!(text.ends_with("[1]: https://example.org/"), "{text}");
        assert!(text.contains("one") && text.contains("two"), "{text}");
        assert_eq!(html_to_text("line<br>next").unwrap(), "line\nnext");
        assert_eq!(html_to_text("a &amp; b &lt;c&gt;").unwrap(), "a & b <c>");
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
