//! Cutting the server's byte stream into top-level elements, knowing only as much XML as
//! that takes.

use super::{StreamBroken, MAX_STANZA};

/// One top-level item of the server's stream, as bytes still in the reader's buffer.
#[derive(Debug, PartialEq)]
pub(in crate::component) enum Frame<'a> {
    /// The server's `<stream:stream …>` header (the start tag only).
    Header(&'a [u8]),
    /// A complete child of the stream root: a stanza, the handshake reply, a stream error.
    Element(&'a [u8]),
    /// `</stream:stream>`.
    End,
}

/// Cuts the bytes of the stream into [`Frame`]s. Knows only as much XML as it takes to find
/// where a top-level element ends: tags (with `>` inside quoted attribute values) and CDATA
/// sections; comments, processing instructions and DTDs, which RFC 6120 forbids in a stream,
/// end it. Everything else is left to the parser.
#[derive(Debug, Default)]
pub(in crate::component) struct Framer {
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
    pub(in crate::component) fn buffer(&mut self, want: usize) -> &mut Vec<u8> {
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
    pub(in crate::component) fn next_frame(&mut self) -> Result<Option<Frame<'_>>, StreamBroken> {
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
