//! Files carried by messages (XEP-0066 out-of-band data): the link a client attaches to a
//! message it sends (an XEP-0363 upload's address, as Conversations, Gajim, Dino and Monal
//! send them), and the one the gateway attaches to a network's media message, so that
//! clients show the file inline.

use causeway_bridge::Media;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::parsers::ns;

/// The longest address taken from a client: far above any upload service's, short enough
/// that no one passes a document off as a link.
const MAX_URL: usize = 2048;

/// The file a client's message carries: its first out-of-band address over HTTP(S), with
/// its description as the caption. Clients put the address in the body too; the body is
/// sent as it is where the network takes no files. The file's name comes from the address.
pub fn media(msg: &Message) -> Option<Media> {
    msg.payloads
        .iter()
        .filter(|p| p.is("x", ns::OOB))
        .find_map(out_of_band)
}

fn out_of_band(x: &Element) -> Option<Media> {
    let url = x.get_child("url", ns::OOB)?.text();
    let url = url.trim();
    let web = url.starts_with("https://") || url.starts_with("http://");
    if !web || url.len() > MAX_URL || url.chars().any(char::is_whitespace) {
        return None;
    }
    let desc = x
        .get_child("desc", ns::OOB)
        .map(|d| d.text().trim().to_owned())
        .filter(|d| !d.is_empty());
    Some(Media {
        url: url.to_owned(),
        caption: desc,
        ..Media::default()
    })
}

/// The out-of-band element for `media`: its address, and its caption as the description.
pub fn element(media: &Media) -> Element {
    let mut x = Element::builder("x", ns::OOB)
        .append(Element::builder("url", ns::OOB).append(media.url.as_str()))
        .build();
    if let Some(caption) = &media.caption {
        x.append_child(
            Element::builder("desc", ns::OOB)
                .append(caption.as_str())
                .build(),
        );
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_xmpp::parsers::message::MessageType;

    fn with(payload: &str) -> Message {
        let mut msg = Message::new(None);
        msg.type_ = MessageType::Groupchat;
        msg.payloads.push(payload.parse().expect("payload XML"));
        msg
    }

    #[test]
    fn an_upload_link_is_a_file() {
        let msg = with(
            "<x xmlns='jabber:x:oob'><url> https://up.example.org/a/cat.png </url>\
             <desc>cat.png</desc></x>",
        );
        let media = media(&msg).expect("a file");
        assert_eq!(media.url, "https://up.example.org/a/cat.png");
        assert_eq!(media.caption.as_deref(), Some("cat.png"));
    }

    #[test]
    fn other_schemes_and_odd_addresses_are_no_file() {
        for url in [
            "file:///etc/passwd",
            "ftp://example.org/a",
            "javascript:alert(1)",
            "https://example.org/a b",
            "",
        ] {
            let msg = with(&format!("<x xmlns='jabber:x:oob'><url>{url}</url></x>"));
            assert_eq!(media(&msg), None, "{url}");
        }
        let long = format!("https://example.org/{}", "a".repeat(MAX_URL));
        let msg = with(&format!("<x xmlns='jabber:x:oob'><url>{long}</url></x>"));
        assert_eq!(media(&msg), None);
        assert_eq!(media(&with("<x xmlns='jabber:x:oob'/>")), None);
        // The first element with an address counts.
        let mut msg = with("<x xmlns='jabber:x:oob'/>");
        let second = "<x xmlns='jabber:x:oob'><url>https://a.example/b</url></x>";
        msg.payloads.push(second.parse().unwrap());
        assert_eq!(
            media(&msg).map(|m| m.url).as_deref(),
            Some("https://a.example/b")
        );
    }

    #[test]
    fn the_element_reads_back() {
        let file = Media {
            url: "https://gw.example.org/media/abc/cat.png".into(),
            name: Some("cat.png".into()),
            caption: Some("my cat <1>".into()),
            mimetype: Some("image/png".into()),
            size: Some(3),
        };
        let mut msg = Message::new(None);
        msg.payloads.push(element(&file));
        let back = media(&msg).expect("a file");
        assert_eq!((back.url, back.caption), (file.url, file.caption));
    }
}
