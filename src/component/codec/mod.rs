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
//!
//! `framing` finds where each top-level element ends, `reading` parses one into a stanza
//! (`stanza_fields` takes messages and presences apart), `writing` writes stanzas out,
//! `redact` shows the stream to the trace log without its secrets.

mod framing;
mod reading;
mod redact;
mod stanza_fields;
mod writing;

pub(super) use framing::{Frame, Framer};
#[cfg(test)]
use reading::MAX_NESTING;
pub(super) use reading::{header_id, parse, Incoming, Malformed, ParseCache};
pub(super) use redact::redacted;
pub(super) use writing::{write_attr, write_stanza};

/// The stream's namespaces.
pub(super) const STREAM_NS: &str = "http://etherx.jabber.org/streams";
pub(super) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// The largest stanza the link accepts; past it the server is misbehaving and the stream is
/// dropped rather than buffered without end.
pub(super) const MAX_STANZA: usize = 16 << 20;

/// Why the stream cannot be read any further.
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamBroken {
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    #[error("a stanza of more than {} MiB", MAX_STANZA >> 20)]
    TooLarge,
}

#[cfg(test)]
mod tests;
