//! The keeper protocol (version 2): the frames between the gateway and the connection
//! keeper over a Unix socket, and their encoding. Each frame is a 4-byte big-endian length
//! (of what follows), a kind byte, then its fields: integers big-endian, strings and byte
//! strings as a 4-byte length and the bytes. A newer side reads an older one's frames; a
//! frame of a kind it does not know is an error that ends the link (both sides agree on the
//! version in `Hello`/`Welcome` first, so that does not happen between matched sides).

use std::fmt;

/// The newest protocol version this build speaks. Version 2 added `Ping`/`Pong`: the keeper
/// asks a gateway that speaks it to prove it still reads, and detaches one that does not.
pub const VERSION: u16 = 2;

/// The largest frame either side accepts: a line is at most a few KiB, a state blob a few
/// tens, but a `Welcome` carries the state of every connection held — tens of thousands of
/// them; past this the peer is broken.
pub const MAX_FRAME: usize = 64 << 20;

/// A keeper connection's number, chosen by the gateway, unique for the keeper's life.
pub type ConnId = u64;

/// One connection the keeper holds, as it reports it on attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The connection.
    pub conn: ConnId,
    /// The sequence number of the first line not acknowledged (the next to come).
    pub next_seq: u64,
    /// Lines dropped while no gateway was attached (past the keeper's bound).
    pub dropped: u64,
    /// The gateway's last state blob for it.
    pub state: Vec<u8>,
}

/// Gateway → keeper.
#[derive(Clone, PartialEq, Eq)]
pub enum ToKeeper {
    /// The newest version the gateway speaks.
    Hello { version: u16 },
    /// Open a connection.
    Open {
        conn: ConnId,
        host: String,
        port: u16,
        tls: bool,
        verify_tls: bool,
    },
    /// Write these bytes to the server.
    Send { conn: ConnId, bytes: Vec<u8> },
    /// Every line up to `seq` is handled for good.
    Ack { conn: ConnId, seq: u64 },
    /// Keep this state blob for the connection.
    State { conn: ConnId, state: Vec<u8> },
    /// Close the connection.
    Close { conn: ConnId },
    /// The answer to a `Ping` (version 2).
    Pong { token: u64 },
}

/// Keeper → gateway.
#[derive(Clone, PartialEq, Eq)]
pub enum FromKeeper {
    /// The version both use, and the connections the keeper holds.
    Welcome { version: u16, held: Vec<Held> },
    /// A connection is up.
    Opened { conn: ConnId },
    /// A connection is gone (or could not be made), and why.
    Closed { conn: ConnId, reason: String },
    /// A line from the server (without its line ending).
    Line {
        conn: ConnId,
        seq: u64,
        bytes: Vec<u8>,
    },
    /// Are you still reading? (version 2; answered with `Pong`).
    Ping { token: u64 },
}

/// A frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)]
pub enum FrameError {
    #[error("a frame of {0} bytes, more than the {MAX_FRAME} allowed")]
    TooLarge(usize),
    #[error("a frame of unknown kind {0}")]
    UnknownKind(u8),
    #[error("a frame cut short")]
    Truncated,
    #[error("a frame with {0} bytes left over")]
    Trailing(usize),
    #[error("a string that is not UTF-8")]
    NotUtf8,
}

impl ToKeeper {
    /// The frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            ToKeeper::Hello { version } => {
                w.u8(1);
                w.u16(*version);
            }
            ToKeeper::Open {
                conn,
                host,
                port,
                tls,
                verify_tls,
            } => {
                w.u8(2);
                w.u64(*conn);
                w.bytes(host.as_bytes());
                w.u16(*port);
                w.u8(u8::from(*tls));
                w.u8(u8::from(*verify_tls));
            }
            ToKeeper::Send { conn, bytes } => {
                w.u8(3);
                w.u64(*conn);
                w.bytes(bytes);
            }
            ToKeeper::Ack { conn, seq } => {
                w.u8(4);
                w.u64(*conn);
                w.u64(*seq);
            }
            ToKeeper::State { conn, state } => {
                w.u8(5);
                w.u64(*conn);
                w.bytes(state);
            }
            ToKeeper::Close { conn } => {
                w.u8(6);
                w.u64(*conn);
            }
            ToKeeper::Pong { token } => {
                w.u8(7);
                w.u64(*token);
            }
        }
        w.finish()
    }

    /// Read a frame's body (what follows the length prefix).
    pub fn decode(body: &[u8]) -> Result<ToKeeper, FrameError> {
        let mut r = Reader(body);
        let frame = match r.u8()? {
            1 => ToKeeper::Hello { version: r.u16()? },
            2 => ToKeeper::Open {
                conn: r.u64()?,
                host: r.string()?,
                port: r.u16()?,
                tls: r.u8()? != 0,
                verify_tls: r.u8()? != 0,
            },
            3 => ToKeeper::Send {
                conn: r.u64()?,
                bytes: r.bytes()?,
            },
            4 => ToKeeper::Ack {
                conn: r.u64()?,
                seq: r.u64()?,
            },
            5 => ToKeeper::State {
                conn: r.u64()?,
                state: r.bytes()?,
            },
            6 => ToKeeper::Close { conn: r.u64()? },
            7 => ToKeeper::Pong { token: r.u64()? },
            kind => return Err(FrameError::UnknownKind(kind)),
        };
        r.end()?;
        Ok(frame)
    }
}

impl FromKeeper {
    /// The frame, length prefix included.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            FromKeeper::Welcome { version, held } => {
                w.u8(1);
                w.u16(*version);
                w.u32(held.len() as u32);
                for h in held {
                    w.u64(h.conn);
                    w.u64(h.next_seq);
                    w.u64(h.dropped);
                    w.bytes(&h.state);
                }
            }
            FromKeeper::Opened { conn } => {
                w.u8(2);
                w.u64(*conn);
            }
            FromKeeper::Closed { conn, reason } => {
                w.u8(3);
                w.u64(*conn);
                w.bytes(reason.as_bytes());
            }
            FromKeeper::Line { conn, seq, bytes } => {
                w.u8(4);
                w.u64(*conn);
                w.u64(*seq);
                w.bytes(bytes);
            }
            FromKeeper::Ping { token } => {
                w.u8(5);
                w.u64(*token);
            }
        }
        w.finish()
    }

    /// Read a frame's body (what follows the length prefix).
    pub fn decode(body: &[u8]) -> Result<FromKeeper, FrameError> {
        let mut r = Reader(body);
        let frame = match r.u8()? {
            1 => {
                let version = r.u16()?;
                let count = r.u32()? as usize;
                // Each held connection takes at least 28 bytes: no allocation past the frame.
                if count > r.0.len() / 28 {
                    return Err(FrameError::Truncated);
                }
                let mut held = Vec::with_capacity(count);
                for _ in 0..count {
                    held.push(Held {
                        conn: r.u64()?,
                        next_seq: r.u64()?,
                        dropped: r.u64()?,
                        state: r.bytes()?,
                    });
                }
                FromKeeper::Welcome { version, held }
            }
            2 => FromKeeper::Opened { conn: r.u64()? },
            3 => FromKeeper::Closed {
                conn: r.u64()?,
                reason: r.string()?,
            },
            4 => FromKeeper::Line {
                conn: r.u64()?,
                seq: r.u64()?,
                bytes: r.bytes()?,
            },
            5 => FromKeeper::Ping { token: r.u64()? },
            kind => return Err(FrameError::UnknownKind(kind)),
        };
        r.end()?;
        Ok(frame)
    }
}

/// The length of the frame at the start of `buf` once it is all there: `Ok(None)` while
/// more bytes are needed, `Ok(Some(n))` for a frame whose body is `buf[4..4 + n]`.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

pub(super) struct Writer(Vec<u8>);

impl Writer {
    pub(super) fn new() -> Writer {
        Writer(vec![0; 4])
    }
    pub(super) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    pub(super) fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    /// What was written, without the frame's length prefix.
    pub(super) fn into_body(self) -> Vec<u8> {
        self.0[4..].to_vec()
    }
    pub(super) fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        self.0
    }
}

pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl Reader<'_> {
    pub(super) fn take(&mut self, n: usize) -> Result<&[u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    pub(super) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub(super) fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub(super) fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, FrameError> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }
    pub(super) fn string(&mut self) -> Result<String, FrameError> {
        String::from_utf8(self.bytes()?).map_err(|_| FrameError::NotUtf8)
    }
    pub(super) fn end(&self) -> Result<(), FrameError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(FrameError::Trailing(n)),
        }
    }
}

impl fmt::Debug for ToKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToKeeper::Hello { version } => write!(f, "Hello(v{version})"),
            ToKeeper::Open {
                conn, host, port, ..
            } => write!(f, "Open({conn}, {host}:{port})"),
            // Lines sent may carry passwords (PASS, SASL): their length only.
            ToKeeper::Send { conn, bytes } => write!(f, "Send({conn}, {} bytes)", bytes.len()),
            ToKeeper::Ack { conn, seq } => write!(f, "Ack({conn}, {seq})"),
            ToKeeper::State { conn, state } => write!(f, "State({conn}, {} bytes)", state.len()),
            ToKeeper::Close { conn } => write!(f, "Close({conn})"),
            ToKeeper::Pong { token } => write!(f, "Pong({token})"),
        }
    }
}

impl fmt::Debug for FromKeeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FromKeeper::Welcome { version, held } => {
                write!(f, "Welcome(v{version}, {} held)", held.len())
            }
            FromKeeper::Opened { conn } => write!(f, "Opened({conn})"),
            FromKeeper::Closed { conn, reason } => write!(f, "Closed({conn}, {reason:?})"),
            FromKeeper::Line { conn, seq, bytes } => {
                write!(f, "Line({conn}, #{seq}, {} bytes)", bytes.len())
            }
            FromKeeper::Ping { token } => write!(f, "Ping({token})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        let len = frame_len(frame).unwrap().expect("a whole frame");
        assert_eq!(frame.len(), 4 + len);
        &frame[4..]
    }

    #[test]
    fn every_frame_reads_back_as_written() {
        let to = [
            ToKeeper::Hello { version: VERSION },
            ToKeeper::Open {
                conn: 7,
                host: "irc.example.net".into(),
                port: 6697,
                tls: true,
                verify_tls: false,
            },
            ToKeeper::Send {
                conn: u64::MAX,
                bytes: b"PRIVMSG #a :caf\xe9\r\n".to_vec(),
            },
            ToKeeper::Ack { conn: 7, seq: 42 },
            ToKeeper::State {
                conn: 7,
                state: vec![0, 1, 2],
            },
            ToKeeper::Close { conn: 7 },
            ToKeeper::Pong { token: 9 },
        ];
        for frame in to {
            assert_eq!(ToKeeper::decode(body(&frame.encode())), Ok(frame));
        }
        let from = [
            FromKeeper::Welcome {
                version: 1,
                held: vec![Held {
                    conn: 7,
                    next_seq: 3,
                    dropped: 1,
                    state: b"state".to_vec(),
                }],
            },
            FromKeeper::Opened { conn: 7 },
            FromKeeper::Closed {
                conn: 7,
                reason: "gone".into(),
            },
            FromKeeper::Line {
                conn: 7,
                seq: 1,
                bytes: b"PING :x".to_vec(),
            },
            FromKeeper::Ping { token: 9 },
        ];
        for frame in from {
            assert_eq!(FromKeeper::decode(body(&frame.encode())), Ok(frame));
        }
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        let frame = ToKeeper::Ack { conn: 1, seq: 2 }.encode();
        assert_eq!(frame_len(&frame[..3]), Ok(None));
        assert_eq!(
            frame_len(&frame[..10]),
            Ok(None),
            "a frame not all there yet"
        );
        assert_eq!(ToKeeper::decode(&frame[4..10]), Err(FrameError::Truncated));
        let mut longer = frame[4..].to_vec();
        longer.push(0);
        assert_eq!(ToKeeper::decode(&longer), Err(FrameError::Trailing(1)));
        assert_eq!(ToKeeper::decode(&[99]), Err(FrameError::UnknownKind(99)));
        assert_eq!(
            frame_len(&u32::MAX.to_be_bytes()),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
        // A Welcome that claims more connections than its bytes can hold.
        let mut welcome = vec![1, 0, 1];
        welcome.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(FromKeeper::decode(&welcome), Err(FrameError::Truncated));
    }
}
