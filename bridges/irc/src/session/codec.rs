//! Between bytes and lines, once each way. A received line is parsed once: as it is when it
//! is UTF-8; otherwise read as latin-1 (every byte a character) to find its target, then its
//! fields are decoded in the target channel's encoding, else the server's, if the user set
//! one. A line to send is written once from its typed command and encoded in the encoding of
//! the channel it names, else the server's outgoing one, else UTF-8.

use encoding_rs::Encoding;
use tracing::debug;

use super::Session;
use crate::line::Line;
use crate::outgoing::Out;
use crate::text::decode_line;

/// The encoding a label names (`koi8-r`, `windows-1252`…), if encoding_rs knows it.
pub fn encoding(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim().as_bytes())
}

impl Session {
    /// A received line, parsed (`None` when it has no command).
    pub(super) fn read(&self, bytes: &[u8]) -> Option<Line> {
        if let Ok(text) = std::str::from_utf8(bytes) {
            let line = Line::parse(text)?;
            debug!(line = %text, "irc <");
            return Some(line);
        }
        let latin = decode_line(bytes);
        let line = Line::parse(&latin)?;
        let target = if line.numeric().is_some() {
            line.param(1)
        } else {
            line.param(0)
        };
        let channel = self.encodings.get(&self.rules.fold(target)).copied();
        match channel.or(self.encoding_in) {
            Some(encoding) => {
                debug!(line = %encoding.decode_without_bom_handling(bytes).0, "irc <");
                Some(in_encoding(line, encoding))
            }
            None => {
                debug!(line = %latin, "irc <");
                Some(line)
            }
        }
    }

    /// Queue a line behind flood control, in its channel's encoding.
    pub(super) fn send(&self, out: Out<'_>) {
        if let Some(writer) = &self.writer {
            let line = out.write();
            debug!(line = %shown(&out, &line), "irc >");
            writer.send(self.encode(&out, line));
        }
    }

    /// Queue a protocol line (always UTF-8) ahead of flood control.
    pub(super) fn send_urgent(&self, out: Out<'_>) {
        if let Some(writer) = &self.writer {
            writer.send_urgent(logged(&out));
        }
    }

    /// Close the connection after a last line, if any.
    pub(super) async fn close(&mut self, last: Option<Out<'_>>) {
        if let Some(writer) = self.writer.take() {
            writer.finish(last.as_ref().map(logged)).await;
        }
    }

    fn encode(&self, out: &Out<'_>, line: String) -> Vec<u8> {
        let channel = if self.encodings.is_empty() {
            None
        } else {
            out.first_param()
                .and_then(|target| self.encodings.get(&self.rules.fold(&target)).copied())
        };
        match channel.or(self.encoding_out) {
            Some(encoding) => encoding.encode(&line).0.into_owned(),
            None => line.into_bytes(),
        }
    }
}

/// An urgent line as it goes out, logged.
fn logged(out: &Out<'_>) -> Vec<u8> {
    let line = out.write();
    debug!(line = %shown(out, &line), "irc >");
    line.into_bytes()
}

/// A line as the log shows it: credentials never.
fn shown<'a>(out: &Out<'_>, line: &'a str) -> &'a str {
    if out.is_secret() {
        "<credentials>"
    } else {
        line
    }
}

/// A line parsed from its latin-1 reading, with every field decoded in `encoding` instead.
fn in_encoding(line: Line, encoding: &'static Encoding) -> Line {
    let decode = |text: String| -> String {
        if text.is_ascii() {
            return text;
        }
        // Latin-1 gave every byte its own character: take the bytes back.
        let bytes: Vec<u8> = text
            .chars()
            .map(|c| u8::try_from(c).unwrap_or(b'?'))
            .collect();
        encoding.decode_without_bom_handling(&bytes).0.into_owned()
    };
    Line {
        tags: line
            .tags
            .into_iter()
            .map(|(key, value)| (decode(key), decode(value)))
            .collect(),
        source: line.source.map(decode),
        command: line.command,
        verb: line.verb,
        params: line.params.into_iter().map(decode).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_decode_as_the_whole_line_would() {
        let koi8 = encoding("koi8-r").unwrap();
        let (bytes, _, _) = koi8.encode(":ваня!u@h PRIVMSG #чат :привет всем");
        let line = Line::parse(&decode_line(&bytes)).unwrap();
        let line = in_encoding(line, koi8);
        let whole = Line::parse(&koi8.decode_without_bom_handling(&bytes).0).unwrap();
        assert_eq!(line, whole);
        assert_eq!(line.params, ["#чат", "привет всем"]);
        assert_eq!(line.source_nick(), Some("ваня"));
    }
}
