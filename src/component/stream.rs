//! One authenticated component stream: connecting with the XEP-0114 handshake, reading
//! top-level items through the codec, writing bytes, and the link's timings.

use crate::config::Secret;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::stream_error::StreamError;
use tokio_xmpp::Stanza;
use tracing::trace;

use super::codec::{self, Frame, Framer, Incoming, ParseCache};

/// How long connecting plus the handshake may take before the attempt counts as failed.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the server to close its side of the stream.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write may wait for the server to read before the link counts as lost.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// After this long without a byte from the server the link pings itself through it…
pub(super) const READ_IDLE: Duration = Duration::from_secs(60);
/// …and counts as lost when nothing at all arrives within this long after the ping.
pub(super) const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How much room each read of the socket gets.
pub(super) const READ_CHUNK: usize = 16 << 10;

/// Everything one link needs to know.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The component's domain (`irc.example.org`).
    pub domain: String,
    /// The XEP-0114 shared secret.
    pub secret: Secret,
    /// `host:port` of the server's component listener.
    pub addr: String,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay, jitter included.
    pub backoff_max: Duration,
}

/// Why a link could not be established.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The TCP connection failed or timed out.
    #[error("component {domain}: cannot reach the XMPP server at {addr}: {source}")]
    Unreachable {
        /// The component's domain.
        domain: String,
        /// Where it tried to connect.
        addr: String,
        /// What went wrong.
        source: io::Error,
    },
    /// The server refused the handshake (wrong secret, unknown domain…).
    #[error("component {domain}: the XMPP server at {addr} refused the handshake: {reason} (check the component secret and that the server serves {domain} as a component)")]
    Refused {
        /// The component's domain.
        domain: String,
        /// Where it connected.
        addr: String,
        /// The server's stream error, or what else it said.
        reason: String,
    },
    /// The server spoke something other than XEP-0114.
    #[error("component {domain}: protocol error with {addr}: {reason}")]
    Protocol {
        /// The component's domain.
        domain: String,
        /// Where it connected.
        addr: String,
        /// What was wrong.
        reason: String,
    },
}

impl LinkError {
    /// Whether retrying cannot help without a configuration change.
    pub fn is_refusal(&self) -> bool {
        matches!(self, LinkError::Refused { .. })
    }
}

/// Open a stream to the server and authenticate as the component.
pub async fn connect(settings: &LinkSettings) -> Result<Stream, LinkError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(settings)).await {
        Ok(result) => result,
        Err(_) => Err(LinkError::Unreachable {
            domain: settings.domain.clone(),
            addr: settings.addr.clone(),
            source: io::Error::new(io::ErrorKind::TimedOut, "no handshake within 10 s"),
        }),
    }
}

async fn connect_inner(settings: &LinkSettings) -> Result<Stream, LinkError> {
    let unreachable = |source| LinkError::Unreachable {
        domain: settings.domain.clone(),
        addr: settings.addr.clone(),
        source,
    };
    let protocol = |reason: String| LinkError::Protocol {
        domain: settings.domain.clone(),
        addr: settings.addr.clone(),
        reason,
    };
    let refused = |reason: String| LinkError::Refused {
        domain: settings.domain.clone(),
        addr: settings.addr.clone(),
        reason,
    };
    let tcp = TcpStream::connect(&settings.addr)
        .await
        .map_err(unreachable)?;
    tcp.set_nodelay(true).map_err(unreachable)?;
    let mut stream = Stream {
        tcp,
        framer: Framer::default(),
        out: Vec::new(),
        batch: VecDeque::new(),
        parsing: ParseCache::default(),
        last_read: Instant::now(),
    };
    let mut header = Vec::new();
    header.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns='");
    header.extend_from_slice(ns::COMPONENT.as_bytes());
    header.extend_from_slice(b"' xmlns:stream='");
    header.extend_from_slice(codec::STREAM_NS.as_bytes());
    header.push(b'\'');
    codec::write_attr(&mut header, "to", &settings.domain);
    header.push(b'>');
    stream.write(&header).await.map_err(unreachable)?;
    let stream_id = match stream.read().await {
        Ok(Read::Header(Some(id))) => id,
        Ok(Read::Header(None)) => return Err(protocol("the server sent no stream id".into())),
        Ok(Read::End) => return Err(refused("the server closed the stream".into())),
        Ok(Read::Incoming(other)) => {
            return Err(protocol(format!(
                "an element before the stream header: {other:?}"
            )))
        }
        Err(ReadFailure::Io(e)) => return Err(unreachable(e)),
        Err(ReadFailure::Broken(reason)) => {
            return Err(protocol(format!("bad stream header: {reason}")))
        }
    };
    let handshake = Handshake::from_stream_id_and_password(stream_id, settings.secret.expose());
    let mut reply = b"<handshake>".to_vec();
    for byte in handshake.data.unwrap_or_default() {
        reply.extend_from_slice(format!("{byte:02x}").as_bytes());
    }
    reply.extend_from_slice(b"</handshake>");
    stream.write(&reply).await.map_err(unreachable)?;
    match stream.read().await {
        Ok(Read::Incoming(Incoming::Other(e))) if e.is("handshake", ns::COMPONENT) => Ok(stream),
        Ok(Read::Incoming(Incoming::Other(e))) if e.is("error", codec::STREAM_NS) => {
            Err(refused(describe_stream_error(e)))
        }
        Ok(Read::Incoming(other)) => Err(protocol(format!(
            "unexpected element before the handshake: {other:?}"
        ))),
        Ok(Read::Header(_)) => Err(protocol("a second stream header".into())),
        Ok(Read::End) => Err(refused("the server closed the stream".into())),
        Err(ReadFailure::Io(e)) => Err(unreachable(e)),
        Err(ReadFailure::Broken(reason)) => Err(protocol(reason)),
    }
}

/// An authenticated component stream: the socket, what was read of it and not yet handed
/// on, and the buffer stanzas are written into.
#[derive(Debug)]
pub struct Stream {
    pub(super) tcp: TcpStream,
    pub(super) framer: Framer,
    pub(super) out: Vec<u8>,
    /// The stanzas being written, its buffer swapped with the outbox's.
    pub(super) batch: VecDeque<Stanza>,
    pub(super) parsing: ParseCache,
    /// When the server last sent anything.
    pub(super) last_read: Instant,
}

/// One top-level item of the server's stream.
#[allow(clippy::large_enum_variant)] // as `Incoming`
pub(super) enum Read {
    Header(Option<String>),
    Incoming(Incoming),
    /// `</stream:stream>`, or the connection closed.
    End,
}

pub(super) enum ReadFailure {
    Io(io::Error),
    /// Not well-formed, or a stanza past the size limit: the stream cannot go on.
    Broken(String),
}

impl Stream {
    /// The next item from the server. Cancel-safe: what was read stays in the framer.
    pub(super) async fn read(&mut self) -> Result<Read, ReadFailure> {
        loop {
            if let Some(read) = self.read_buffered() {
                return read;
            }
            let read = self
                .tcp
                .read_buf(self.framer.buffer(READ_CHUNK))
                .await
                .map_err(ReadFailure::Io)?;
            if read == 0 {
                return Ok(Read::End);
            }
            self.last_read = Instant::now();
        }
    }

    /// The next item if the read buffer holds all of it already; `None` when more must be
    /// read from the socket first.
    pub(super) fn read_buffered(&mut self) -> Option<Result<Read, ReadFailure>> {
        Some(match self.framer.next_frame() {
            Err(e) => Err(ReadFailure::Broken(e.to_string())),
            Ok(Some(Frame::Header(xml))) => codec::header_id(xml)
                .map(Read::Header)
                .map_err(ReadFailure::Broken),
            Ok(Some(Frame::Element(xml))) => {
                trace!(target: "causeway::xml", "in: {}", codec::redacted(xml));
                codec::parse(xml, &mut self.parsing)
                    .map(Read::Incoming)
                    .map_err(|e| ReadFailure::Broken(e.to_string()))
            }
            Ok(Some(Frame::End)) => Ok(Read::End),
            Ok(None) => return None,
        })
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        trace!(target: "causeway::xml", "out: {}", codec::redacted(bytes));
        self.tcp.write_all(bytes).await
    }
}

/// "not-authorized (…text…)" from a `<stream:error/>`.
pub(super) fn describe_stream_error(element: Element) -> String {
    match xso::transform::<StreamError, _>(&element) {
        Ok(e) => e.to_string(),
        Err(_) => match element.children().next() {
            Some(condition) => condition.name().to_owned(),
            None => "an empty stream error".into(),
        },
    }
}
