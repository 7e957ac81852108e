//! XEP-0114 component links: one per network domain, kept up for the life of the process.
//!
//! *Architecture Invariant*: only this module speaks XEP-0114 and touches the XML stream;
//! the rest of the gateway sees typed stanzas coming in on a channel and puts replies into
//! the link's [`Outbox`].
//!
//! tokio-xmpp's `Component` hides why a stream ended (its `Stream` yields `None` for a soft
//! read timeout, a malformed stanza and a dead socket alike), so the link drives tokio-xmpp's
//! lower-level `XmppStream` itself: a malformed stanza is answered and skipped, an idle
//! stream is probed with a ping, and only a real loss triggers a reconnect.

mod outbox;

use std::borrow::Cow;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{SinkExt, StreamExt};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::component::Handshake;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::xmlstream::{
    initiate_stream, FallibleStreamElement, ReadError, StreamElementError, StreamHeader, Timeouts,
    XmppStream, XmppStreamElement,
};
use tokio_xmpp::Stanza;
use tracing::{debug, info, warn};

pub use outbox::Outbox;

use crate::config::Secret;

type Stream = XmppStream<BufStream<TcpStream>>;

/// How long connecting plus the handshake may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the server to close its side of the stream.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write may wait for the server to read before the link counts as lost.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

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
    let tcp = TcpStream::connect(&settings.addr)
        .await
        .map_err(unreachable)?;
    tcp.set_nodelay(true).map_err(unreachable)?;
    let header = StreamHeader {
        to: Some(Cow::Borrowed(settings.domain.as_str())),
        from: None,
        id: None,
    };
    let mut pending = initiate_stream(BufStream::new(tcp), ns::COMPONENT, header, timeouts())
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => protocol(format!("bad stream header: {e}")),
            _ => unreachable(e),
        })?;
    let Some(stream_id) = pending.take_header().id else {
        return Err(protocol("the server sent no stream id".into()));
    };
    let mut stream: Stream = pending.skip_features();
    let handshake =
        Handshake::from_stream_id_and_password(stream_id.into_owned(), settings.secret.expose());
    stream
        .send(&XmppStreamElement::ComponentHandshake(handshake))
        .await
        .map_err(unreachable)?;
    loop {
        let refused = |reason: String| LinkError::Refused {
            domain: settings.domain.clone(),
            addr: settings.addr.clone(),
            reason,
        };
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok(stream)
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(refused(e.0.to_string()))
            }
            Some(Ok(other)) => {
                return Err(protocol(format!(
                    "unexpected element before the handshake: {other:?}"
                )))
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::ParseError(e))) => return Err(protocol(e.to_string())),
            Some(Err(ReadError::HardError(e))) => return Err(unreachable(e)),
            Some(Err(ReadError::StreamFooterReceived)) | None => {
                return Err(refused("the server closed the stream".into()))
            }
        }
    }
}

fn timeouts() -> Timeouts {
    // After 60 s of silence the link pings itself through the server; no answer within
    // another 20 s means the link is dead.
    Timeouts {
        read_timeout: Duration::from_secs(60),
        response_timeout: Duration::from_secs(20),
    }
}

/// A running link: its outbox, and the task that keeps it connected.
#[derive(Debug, Clone)]
pub struct Link {
    /// The domain this link serves.
    pub domain: String,
    /// Where the gateway puts stanzas to send.
    pub outbox: Arc<Outbox>,
}

/// Keep a link up until `shutdown`: deliver inbound stanzas on `inbound`, send what is put in
/// `outbox`, reconnect with capped, jittered exponential backoff whenever the link is lost.
/// On shutdown the outbox is flushed and the stream closed properly.
pub async fn run_link(
    settings: LinkSettings,
    mut stream: Stream,
    outbox: Arc<Outbox>,
    inbound: mpsc::Sender<Stanza>,
    shutdown: CancellationToken,
) {
    let domain = settings.domain.as_str();
    info!(%domain, addr = %settings.addr, "component link up");
    loop {
        outbox.set_up(true);
        let served = serve(domain, &mut stream, &outbox, &inbound, &shutdown).await;
        outbox.set_up(false);
        let cause = match served {
            Served::Shutdown => {
                close(domain, stream, &outbox).await;
                return;
            }
            Served::Lost(cause) => cause,
        };
        let lost_at = Instant::now();
        warn!(%domain, %cause, queued = outbox.len(), "component link lost, reconnecting");
        match reconnect(&settings, &shutdown).await {
            Some((new_stream, attempts)) => {
                stream = new_stream;
                info!(
                    %domain,
                    attempts,
                    down_ms = lost_at.elapsed().as_millis() as u64,
                    queued = outbox.len(),
                    dropped = outbox.take_dropped(),
                    "component link reconnected"
                );
            }
            None => {
                let left = outbox.len();
                if left > 0 {
                    warn!(%domain, undelivered = left, "shut down while the component link was down");
                }
                return;
            }
        }
    }
}

enum Served {
    Shutdown,
    Lost(String),
}

async fn serve(
    domain: &str,
    stream: &mut Stream,
    outbox: &Outbox,
    inbound: &mpsc::Sender<Stanza>,
    shutdown: &CancellationToken,
) -> Served {
    // Whatever queued while the link was down goes first.
    if let Err(cause) = flush(stream, outbox).await {
        return Served::Lost(cause);
    }
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Served::Shutdown,
            item = stream.next() => match item {
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)))) => {
                    // While the core is busy, keep writing: it may be waiting for this very
                    // outbox to drain (see `Outbox::room`).
                    let permit = loop {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return Served::Shutdown,
                            permit = inbound.reserve() => match permit {
                                Ok(permit) => break permit,
                                Err(_) => return Served::Shutdown,
                            },
                            _ = outbox.wait() => {
                                if let Err(cause) = flush(stream, outbox).await {
                                    return Served::Lost(cause);
                                }
                            }
                        }
                    };
                    permit.send(stanza);
                }
                Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                    return Served::Lost(format!("stream error from the server: {}", e.0));
                }
                Some(Ok(FallibleStreamElement::Ok(other))) => {
                    debug!(%domain, element = ?other, "ignoring non-stanza element");
                }
                Some(Ok(FallibleStreamElement::Err(e))) => {
                    if let Some(reply) = reject_malformed(domain, &e) {
                        outbox.push(reply);
                    }
                }
                Some(Err(ReadError::SoftTimeout)) => outbox.push(keepalive(domain)),
                Some(Err(ReadError::ParseError(e))) => warn!(%domain, error = %e, "unparseable element skipped"),
                Some(Err(ReadError::HardError(e))) => return Served::Lost(e.to_string()),
                Some(Err(ReadError::StreamFooterReceived)) | None => {
                    return Served::Lost("the server closed the stream".into());
                }
            },
            _ = outbox.wait() => {
                if let Err(cause) = flush(stream, outbox).await {
                    return Served::Lost(cause);
                }
            }
        }
    }
}

/// Write everything queued. On a write error, or when the server reads nothing for
/// [`WRITE_TIMEOUT`], the whole batch goes back to the front of the queue and the link counts
/// as lost: XEP-0114 has no acknowledgements, so a stanza may be sent twice but never lost.
/// (A server that stops reading would otherwise hold up the gateway core, which waits for
/// room in the outbox, and with it every bridge.)
async fn flush(stream: &mut Stream, outbox: &Outbox) -> Result<(), String> {
    let batch = outbox.take_all();
    if batch.is_empty() {
        return Ok(());
    }
    let write = async {
        for stanza in &batch {
            stream.feed(stanza).await?;
        }
        SinkExt::<&Stanza>::flush(stream).await
    };
    let failure = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => format!("write failed: {e}"),
        Err(_) => format!("the server read nothing for {} s", WRITE_TIMEOUT.as_secs()),
    };
    outbox.requeue_front(batch);
    Err(failure)
}

async fn close(domain: &str, mut stream: Stream, outbox: &Outbox) {
    if let Err(cause) = flush(&mut stream, outbox).await {
        warn!(%domain, %cause, undelivered = outbox.len(), "could not flush before closing");
    }
    let closing = async {
        SinkExt::<&Stanza>::close(&mut stream).await?;
        // Wait for the server's footer, so that what was flushed is known to be read.
        while let Some(item) = stream.next().await {
            if matches!(
                item,
                Err(ReadError::StreamFooterReceived | ReadError::HardError(_))
            ) {
                break;
            }
        }
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(CLOSE_TIMEOUT, closing).await {
        Ok(Ok(())) => info!(%domain, "component link closed"),
        Ok(Err(e)) => warn!(%domain, error = %e, "component link closed uncleanly"),
        Err(_) => warn!(%domain, "component link closed without the server's reply"),
    }
}

async fn reconnect(settings: &LinkSettings, shutdown: &CancellationToken) -> Option<(Stream, u32)> {
    // Jitter adds up to the current delay again, so half the cap keeps every wait under it.
    let cap = settings.backoff_max / 2;
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(settings.backoff_initial.min(cap))
        .with_max_delay(cap)
        .with_jitter()
        .without_max_times()
        .build();
    let mut attempts = 0;
    loop {
        let delay = delays.next().unwrap_or(settings.backoff_max);
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        attempts += 1;
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return None,
            attempt = connect(settings) => attempt,
        };
        match attempt {
            Ok(stream) => return Some((stream, attempts)),
            Err(e) => {
                warn!(domain = %settings.domain, attempts, error = %e, "component reconnect failed")
            }
        }
    }
}

/// A ping from the component to itself, routed through the server: any reply (even an
/// error) proves the link alive; the gateway answers it like any ping and drops the result.
fn keepalive(domain: &str) -> Stanza {
    let me: Jid = domain
        .parse()
        .expect("the component domain was checked at startup");
    static NEXT: AtomicU64 = AtomicU64::new(0);
    Iq::from_get(
        format!("keepalive-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        Ping,
    )
    .with_from(me.clone())
    .with_to(me)
    .into()
}

/// Answer a stanza that failed to parse, where the rules allow an answer: never an error
/// stanza, never a result. The stanza itself is skipped; the link stays up.
fn reject_malformed(domain: &str, error: &StreamElementError) -> Option<Stanza> {
    let StreamElementError::InvalidStanza {
        name,
        header,
        error,
        ..
    } = error
    else {
        warn!(%domain, %error, "malformed element skipped");
        return None;
    };
    warn!(%domain, stanza = %name, from = ?header.from, %error, "malformed stanza skipped");
    let from: Jid = header.from.as_deref()?.parse().ok()?;
    let to: Option<Jid> = header.to.as_deref().and_then(|t| t.parse().ok());
    let type_ = header.type_.as_deref().unwrap_or("");
    if matches!(type_, "error" | "result") {
        return None;
    }
    let text = format!("malformed stanza: {error}");
    let err = StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest, "en", text);
    let mut reply: Stanza = match name.to_string().as_str() {
        "iq" => Iq::Error {
            from: None,
            to: None,
            id: header.id.clone().unwrap_or_default(),
            error: err,
            payload: None,
        }
        .into(),
        "message" => {
            let mut m = tokio_xmpp::parsers::message::Message::error(None);
            m.id = header.id.clone().map(tokio_xmpp::parsers::message::Id);
            m.payloads.push(err.into());
            m.into()
        }
        _ => {
            let mut p = tokio_xmpp::parsers::presence::Presence::error();
            p.id = header.id.clone();
            p.payloads.push(err.into());
            p.into()
        }
    };
    crate::gateway::address_reply(&mut reply, to, from);
    Some(reply)
}
