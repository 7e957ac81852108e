//! The stream as the `causeway::xml` trace shows it, with secrets left out: the text of
//! `<password/>` elements (XEP-0077 registration, MUC room passwords) and the values of form
//! fields that are private (`text-private`) or named like a secret (`password`, `token`,
//! `recovery`, `secret`, as in the account and server forms; `redirect`, the address a
//! browser login ended on, which carries its authorization code). A client submitting a form
//! need not repeat the field's type, so the names count too.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::reader::Reader;
use quick_xml::writer::Writer;

/// What stands in for a secret.
const HIDDEN: &str = "***";

/// Parts of names that make a form field secret.
const SECRET_NAMES: &[&str] = &["password", "token", "recovery", "secret", "redirect"];

/// `xml` for the trace, secrets replaced by `***`. What cannot be parsed is not shown, as it
/// may hold a secret.
pub(in crate::component) fn redacted(xml: &[u8]) -> Cow<'_, str> {
    let lower = xml.to_ascii_lowercase();
    let suspect = ["text-private"]
        .iter()
        .chain(SECRET_NAMES)
        .any(|word| memchr::memmem::find(&lower, word.as_bytes()).is_some());
    if !suspect {
        return String::from_utf8_lossy(xml);
    }
    match rewrite(xml) {
        Some(text) => Cow::Owned(text),
        None => Cow::Owned(format!(
            "({} bytes not shown: they may hold a secret)",
            xml.len()
        )),
    }
}

fn rewrite(xml: &[u8]) -> Option<String> {
    let mut reader = Reader::from_reader(xml);
    let mut writer = Writer::new(Vec::with_capacity(xml.len()));
    // Per open element: whether its text is secret.
    let mut secret: Vec<bool> = Vec::new();
    loop {
        let event = reader.read_event().ok()?;
        let inside = secret.last().copied().unwrap_or(false);
        match event {
            Event::Eof => break,
            Event::Start(ref start) => {
                secret.push(inside || is_secret(start));
                writer.write_event(event).ok()?;
            }
            Event::End(_) => {
                secret.pop();
                writer.write_event(event).ok()?;
            }
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) if inside => {
                // One mark per secret, however its text is cut into events.
                if !matches!(writer.get_ref().last(), Some(b'*')) {
                    writer
                        .write_event(Event::Text(BytesText::new(HIDDEN)))
                        .ok()?;
                }
            }
            other => writer.write_event(other).ok()?,
        }
    }
    String::from_utf8(writer.into_inner()).ok()
}

/// A `<password>` element, or a form field whose values are secret.
fn is_secret(start: &BytesStart<'_>) -> bool {
    match start.local_name().as_ref() {
        b"password" => true,
        b"field" => {
            let attribute = |name: &str| {
                start
                    .try_get_attribute(name)
                    .ok()
                    .flatten()
                    .map(|a| String::from_utf8_lossy(&a.value).to_ascii_lowercase())
                    .unwrap_or_default()
            };
            attribute("type") == "text-private"
                || SECRET_NAMES
                    .iter()
                    .any(|word| attribute("var").contains(word))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn secrets_are_hidden_and_the_rest_is_kept() {
        let xml = br#"<iq type='set' id='1'><command xmlns='http://jabber.org/protocol/commands' node='matrix-login'><x xmlns='jabber:x:data' type='submit'><field var='account'><value>@alice:hs</value></field><field var='password'><value>hunter2</value></field><field var='x' type='text-private'><value>s3&amp;cret</value></field><field var='sasl_password'><value><![CDATA[pw]]></value></field></x></command></iq>"#;
        let shown = redacted(xml);
        for secret in ["hunter2", "s3", "cret", "pw]"] {
            assert!(!shown.contains(secret), "{secret} shown in {shown}");
        }
        assert!(shown.contains("<value>@alice:hs</value>"), "{shown}");
        assert!(
            shown.contains("<field var='password'><value>***</value></field>"),
            "{shown}"
        );
        let browser = br#"<x xmlns='jabber:x:data' type='submit'><field var='redirect'><value>http://127.0.0.1/causeway-login?code=abc123&amp;state=x</value></field></x>"#;
        let shown = redacted(browser);
        assert!(!shown.contains("abc123"), "{shown}");
        let legacy = br#"<iq type='set'><query xmlns='jabber:iq:register'><username>@a:hs</username><password>hunter2</password></query></iq>"#;
        let shown = redacted(legacy);
        assert!(
            shown.contains("<username>@a:hs</username><password>***</password>"),
            "{shown}"
        );
    }

    #[test]
    fn ordinary_stanzas_pass_unchanged_and_broken_ones_are_not_shown() {
        let xml = br#"<message to='a@b'><body>hi &amp; bye</body></message>"#;
        assert_eq!(redacted(xml), String::from_utf8_lossy(xml));
        let broken = br#"<iq><password>hunter2</iq>"#;
        let shown = redacted(broken);
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
