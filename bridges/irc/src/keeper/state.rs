//! What the gateway leaves with the keeper for each connection it holds (the `State`
//! blob), so that a successor can take the connection over without registering again:
//! whose puppet it is, its nick, the capabilities in use, the server's rules, and the
//! channels it is in or joining. Members and topics are not in it — they change too often
//! to be sent on each change; the successor asks the server for them (NAMES, TOPIC).
//!
//! The blob is opaque to the keeper. Its first byte is its own version: a gateway reads
//! every version up to its own and takes over nothing it cannot read (it quits it).

use std::collections::HashSet;

use causeway_bridge::UserRef;

use super::protocol::{FrameError, Reader, Writer};
use crate::state::ServerRules;

/// The newest blob version this build writes and reads.
const STATE_VERSION: u8 = 1;

/// A connection as its gateway left it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Adoptable {
    pub user: UserRef,
    /// The server's name as the user gave it (lower case).
    pub server: String,
    pub nick: String,
    /// The length of `nick!user@host` as others see it.
    pub source_len: usize,
    pub caps: HashSet<String>,
    pub rules: ServerRules,
    /// The channels, as the user named them, and whether each was joined (else joining).
    pub channels: Vec<(String, bool)>,
}

impl Adoptable {
    /// The blob.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(STATE_VERSION);
        w.bytes(self.user.0.as_bytes());
        w.bytes(self.server.as_bytes());
        w.bytes(self.nick.as_bytes());
        w.u32(u32::try_from(self.source_len).unwrap_or(u32::MAX));
        let mut caps: Vec<&String> = self.caps.iter().collect();
        caps.sort();
        w.u32(caps.len() as u32);
        for cap in caps {
            w.bytes(cap.as_bytes());
        }
        let modes: String = self.rules.prefixes.iter().map(|(m, _)| *m).collect();
        let symbols: String = self.rules.prefixes.iter().map(|(_, s)| *s).collect();
        w.bytes(modes.as_bytes());
        w.bytes(symbols.as_bytes());
        for types in &self.rules.chanmodes {
            w.bytes(types.as_bytes());
        }
        w.bytes(self.rules.chantypes.as_bytes());
        w.u8(u8::from(self.rules.rfc1459_casemapping));
        w.u32(self.channels.len() as u32);
        for (name, joined) in &self.channels {
            w.bytes(name.as_bytes());
            w.u8(u8::from(*joined));
        }
        w.into_body()
    }

    /// A blob read back; an error for one this build cannot read (empty: the connection
    /// never registered).
    pub(crate) fn decode(blob: &[u8]) -> Result<Adoptable, FrameError> {
        let mut r = Reader(blob);
        let version = r.u8()?;
        if version == 0 || version > STATE_VERSION {
            return Err(FrameError::UnknownKind(version));
        }
        let user = UserRef(r.string()?);
        let server = r.string()?;
        let nick = r.string()?;
        let source_len = r.u32()? as usize;
        let count = r.u32()?;
        let mut caps = HashSet::new();
        for _ in 0..count {
            caps.insert(r.string()?);
        }
        let modes = r.string()?;
        let symbols = r.string()?;
        let mut rules = ServerRules {
            prefixes: modes.chars().zip(symbols.chars()).collect(),
            ..ServerRules::default()
        };
        for types in rules.chanmodes.iter_mut() {
            *types = r.string()?;
        }
        rules.chantypes = r.string()?;
        rules.rfc1459_casemapping = r.u8()? != 0;
        let count = r.u32()?;
        let mut channels = Vec::new();
        for _ in 0..count {
            let name = r.string()?;
            channels.push((name, r.u8()? != 0));
        }
        r.end()?;
        if nick.is_empty() || server.is_empty() {
            return Err(FrameError::Truncated);
        }
        Ok(Adoptable {
            user,
            server,
            nick,
            source_len,
            caps,
            rules,
            channels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Adoptable {
        let mut rules = ServerRules::default();
        rules.apply("PREFIX=(qaohv)~&@%+");
        rules.apply("CASEMAPPING=ascii");
        rules.apply("CHANTYPES=#");
        Adoptable {
            user: UserRef("alice@localhost".into()),
            server: "irc.example.net".into(),
            nick: "alice_".into(),
            source_len: 42,
            caps: ["multi-prefix", "server-time"]
                .into_iter()
                .map(String::from)
                .collect(),
            rules,
            channels: vec![("#Kept".into(), true), ("#über".into(), false)],
        }
    }

    #[test]
    fn a_blob_reads_back_as_written() {
        let state = sample();
        assert_eq!(Adoptable::decode(&state.encode()).unwrap(), state);
    }

    #[test]
    fn blobs_it_cannot_read_are_errors() {
        assert!(Adoptable::decode(b"").is_err());
        let blob = sample().encode();
        assert!(Adoptable::decode(&blob[..blob.len() - 1]).is_err());
        let mut newer = blob.clone();
        newer[0] = STATE_VERSION + 1;
        assert!(Adoptable::decode(&newer).is_err());
        let mut longer = blob;
        longer.push(0);
        assert!(Adoptable::decode(&longer).is_err());
    }
}
