//! XEP-0114 component links: one per network domain, kept up for the life of the process.
//!
//! *Architecture Invariant*: only this module speaks XEP-0114 and touches the XML stream;
//! the rest of the gateway sees typed stanzas coming in on a channel and puts replies into
//! the link's [`Outbox`].
//!
//! The link speaks the stream itself (`codec`: handshake, framing, parsing, writing) rather
//! than through tokio-xmpp's `Component`, which hides why a stream ended and costs half the
//! gateway's CPU per relayed message: a malformed stanza is answered and skipped, an idle
//! stream is probed with a ping, and only a real loss triggers a reconnect.
//!
//! `stream` connects and authenticates one stream and reads and writes it; this file keeps
//! a link up with it: serving, keepalive, reconnection, and closing at shutdown.

mod codec;
#[doc(hidden)]
pub mod fuzzing;
mod outbox;
mod stream;

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_xmpp::jid::Jid;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::Stanza;
use tracing::{debug, info, warn};

pub use outbox::Outbox;

pub use self::stream::{connect, LinkError, LinkSettings, Stream};

use self::codec::{Incoming, Malformed};
use self::stream::{
    describe_stream_error, Read, ReadFailure, CLOSE_TIMEOUT, PING_TIMEOUT, READ_IDLE, WRITE_TIMEOUT,
};

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
    // The silence timer is reset only when it fires, not on every read.
    let mut silence = pin!(tokio::time::sleep(READ_IDLE));
    let mut pinged_at: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Served::Shutdown,
            read = stream.read() => {
                // Stanzas already in the read buffer are taken without a select each.
                let (mut next, mut taken) = (Some(read), 0);
                while let Some(read) = next.take() {
                    if let Some(end) = take(read, domain, stream, outbox, inbound, shutdown).await {
                        return end;
                    }
                    taken += 1;
                    // Only what will be handled is parsed out of the buffer.
                    if taken < BURST {
                        next = stream.read_buffered();
                    }
                }
            }
            _ = outbox.wait() => {
                if let Err(cause) = flush(stream, outbox).await {
                    return Served::Lost(cause);
                }
            }
            () = &mut silence => {
                let now = Instant::now();
                match pinged_at {
                    Some(at) if stream.last_read < at => {
                        return Served::Lost(format!(
                            "no answer to a ping within {} s",
                            PING_TIMEOUT.as_secs()
                        ));
                    }
                    _ if now - stream.last_read < READ_IDLE => {
                        pinged_at = None;
                        silence.as_mut().reset(stream.last_read + READ_IDLE);
                    }
                    _ => {
                        outbox.push(keepalive(domain));
                        pinged_at = Some(now);
                        silence.as_mut().reset(now + PING_TIMEOUT);
                    }
                }
            }
        }
    }
}

/// How many stanzas already read are taken between two looks at the shutdown token.
const BURST: usize = 64;

/// Hand what was read to the core (or answer it); `Some` when the link ends.
async fn take(
    read: Result<Read, ReadFailure>,
    domain: &str,
    stream: &mut Stream,
    outbox: &Outbox,
    inbound: &mpsc::Sender<Stanza>,
    shutdown: &CancellationToken,
) -> Option<Served> {
    match read {
        Ok(Read::Incoming(Incoming::Stanza(stanza))) => {
            let permit = match inbound.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Closed(())) => return Some(Served::Shutdown),
                // While the core is busy, keep writing: it may be waiting for this
                // very outbox to drain (see `Outbox::room`).
                Err(mpsc::error::TrySendError::Full(())) => loop {
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Some(Served::Shutdown),
                        permit = inbound.reserve() => match permit {
                            Ok(permit) => break permit,
                            Err(_) => return Some(Served::Shutdown),
                        },
                        _ = outbox.wait() => {
                            if let Err(cause) = flush(stream, outbox).await {
                                return Some(Served::Lost(cause));
                            }
                        }
                    }
                },
            };
            permit.send(stanza);
            None
        }
        Ok(Read::Incoming(Incoming::Other(e))) if e.is("error", codec::STREAM_NS) => {
            Some(Served::Lost(format!(
                "stream error from the server: {}",
                describe_stream_error(e)
            )))
        }
        Ok(Read::Incoming(Incoming::Other(e))) => {
            debug!(%domain, element = e.name(), "ignoring non-stanza element");
            None
        }
        Ok(Read::Incoming(Incoming::Malformed(m))) => {
            if let Some(reply) = reject_malformed(domain, m) {
                outbox.push(reply);
            }
            None
        }
        Ok(Read::Header(_)) => Some(Served::Lost("a second stream header".into())),
        Ok(Read::End) => Some(Served::Lost("the server closed the stream".into())),
        Err(ReadFailure::Io(e)) => Some(Served::Lost(e.to_string())),
        Err(ReadFailure::Broken(e)) => Some(Served::Lost(e)),
    }
}

/// Write everything queued. On a write error, or when the server reads nothing for
/// [`WRITE_TIMEOUT`], the whole batch goes back to the front of the queue and the link counts
/// as lost: XEP-0114 has no acknowledgements, so a stanza may be sent twice but never lost.
/// (A server that stops reading would otherwise hold up the gateway core, which waits for
/// room in the outbox, and with it every bridge.)
async fn flush(stream: &mut Stream, outbox: &Outbox) -> Result<(), String> {
    let mut batch = std::mem::take(&mut stream.batch);
    outbox.take_all_into(&mut batch);
    if batch.is_empty() {
        stream.batch = batch;
        return Ok(());
    }
    let mut out = std::mem::take(&mut stream.out);
    out.clear();
    for stanza in &batch {
        codec::write_stanza(&mut out, stanza);
    }
    let written = tokio::time::timeout(WRITE_TIMEOUT, stream.write(&out)).await;
    // Keep modest buffers for the next batch; a burst's give their memory back.
    if out.capacity() <= 64 << 10 {
        stream.out = out;
    }
    let failure = match written {
        Ok(Ok(())) => {
            outbox.written(batch.len());
            batch.clear();
            if batch.capacity() <= 1024 {
                stream.batch = batch;
            }
            return Ok(());
        }
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
        stream.write(b"</stream:stream>").await?;
        // Wait for the server's footer, so that what was flushed is known to be read.
        loop {
            match stream.read().await {
                Ok(Read::End) | Err(_) => break,
                Ok(_) => {}
            }
        }
        stream.tcp.shutdown().await
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
fn reject_malformed(domain: &str, malformed: Malformed) -> Option<Stanza> {
    let Malformed {
        name,
        from,
        to,
        id,
        type_,
        error,
    } = malformed;
    warn!(%domain, stanza = %name, ?from, %error, "malformed stanza skipped");
    let from: Jid = from?.parse().ok()?;
    let to: Option<Jid> = to.and_then(|t| t.parse().ok());
    if matches!(type_.as_deref(), Some("error" | "result")) {
        return None;
    }
    let text = format!("malformed stanza: {error}");
    let err = StanzaError::new(ErrorType::Modify, DefinedCondition::BadRequest, "en", text);
    let mut reply: Stanza = match name.as_str() {
        "iq" => Iq::Error {
            from: None,
            to: None,
            id: id.unwrap_or_default(),
            error: err,
            payload: None,
        }
        .into(),
        "message" => {
            let mut m = tokio_xmpp::parsers::message::Message::error(None);
            m.id = id.map(tokio_xmpp::parsers::message::Id);
            m.payloads.push(err.into());
            m.into()
        }
        _ => {
            let mut p = tokio_xmpp::parsers::presence::Presence::error();
            p.id = id;
            p.payloads.push(err.into());
            p.into()
        }
    };
    crate::address::address_reply(&mut reply, to, from);
    Some(reply)
}
