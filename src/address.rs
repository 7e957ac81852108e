//! The address (JID) scheme of DESIGN.md §4 — a contract: biboumi-compatible IRC addresses,
//! so users' bookmarks carry over.
//!
//! | entity            | JID                                   | fixed-server mode |
//! |-------------------|---------------------------------------|-------------------|
//! | channel (MUC)     | `#chan%irc.example.net@irc.gw[/nick]` | `#chan@irc.gw`    |
//! | IRC user (1:1)    | `nick%irc.example.net@irc.gw`         | `nick@irc.gw`     |
//! | IRC server        | `irc.example.net@irc.gw`              | —                 |
//! | the gateway       | `irc.gw`                              | `irc.gw`          |
//!
//! Remote names holding characters illegal in a localpart are XEP-0106 escaped. Servers
//! case-fold localparts; IRC names are case-insensitive, so nothing is lost for IRC (Matrix,
//! where case matters, maps through the database instead).
//!
//! A reply goes back from the address its request went to ([`address_reply`]).

use std::fmt;

use tokio_xmpp::jid::{BareJid, DomainPart, FullJid, Jid, NodePart};
use tokio_xmpp::Stanza;

/// What an IRC-side JID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrcAddress {
    /// The gateway domain itself.
    Gateway,
    /// An IRC server: raw commands, per-server settings, the channel list.
    Server {
        /// Host name of the IRC server.
        server: String,
    },
    /// A channel, or an occupant of it when `nick` is set (the MUC resource).
    Channel {
        /// Host name of the IRC server.
        server: String,
        /// The channel, with its prefix (`#rust`).
        channel: String,
        /// The occupant nick, from the JID resource.
        nick: Option<String>,
    },
    /// An IRC user, for private messages.
    User {
        /// Host name of the IRC server.
        server: String,
        /// The user's nick.
        nick: String,
    },
}

/// Why a JID is not an IRC address of this gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The JID is on another domain.
    #[error("{0} is not an address of this gateway")]
    ForeignDomain(String),
    /// `nick%` with nothing after the `%`, an empty channel name, and the like.
    #[error("{0:?} is not a valid IRC address: {1}")]
    Malformed(String, &'static str),
    /// The remote name cannot be written as a JID.
    #[error("{0:?} cannot be written as a JID")]
    Unrepresentable(String),
}

/// Channel name prefixes recognised when parsing (RFC 2811 channel types).
const CHANNEL_PREFIXES: &[char] = &['#', '&', '+', '!'];

/// Parses and formats IRC addresses for one gateway domain.
#[derive(Debug, Clone)]
pub struct IrcAddressing {
    domain: String,
    /// The domain, stringprepped once: building a JID then preps only its localpart.
    domain_part: Option<DomainPart>,
    fixed_server: Option<String>,
    /// Matrix addresses (`#alias%server`, `!room`, `!room%server`, `user%server`).
    matrix: bool,
}

impl IrcAddressing {
    /// Addresses under `domain`; with `fixed_server`, `#chan@domain` and `nick@domain`.
    pub fn new(domain: impl Into<String>, fixed_server: Option<String>) -> IrcAddressing {
        let domain = domain.into();
        IrcAddressing {
            domain_part: domain.parse().ok(),
            domain,
            fixed_server: fixed_server.map(|s| s.to_ascii_lowercase()),
            matrix: false,
        }
    }

    /// Matrix addresses under `domain` (DESIGN.md §4): `#alias%server` and `!opaque%server`
    /// or `!opaque` (room version 12) for rooms, `user%server` for users. Room ids keep
    /// their case only in the database: what is parsed here is the case-folded form.
    pub fn matrix(domain: impl Into<String>) -> IrcAddressing {
        let domain = domain.into();
        IrcAddressing {
            domain_part: domain.parse().ok(),
            domain,
            fixed_server: None,
            matrix: true,
        }
    }

    fn parse_matrix(&self, jid: &Jid, local: String) -> Result<IrcAddress, AddressError> {
        let nick = jid.resource().map(|r| r.as_str().to_owned());
        let Some((name, server)) = local.rsplit_once('%') else {
            if local.starts_with('!') && local.len() > 1 {
                return Ok(IrcAddress::Channel {
                    server: String::new(),
                    channel: local,
                    nick,
                });
            }
            return Err(AddressError::Malformed(
                local,
                "expected #alias%server, !room, !room%server or user%server",
            ));
        };
        if !is_matrix_server_name(server) {
            return Err(AddressError::Malformed(
                local.clone(),
                "no Matrix server after %",
            ));
        }
        let server = server.to_ascii_lowercase();
        match name.chars().next() {
            Some('#' | '!') if name.len() > 1 => Ok(IrcAddress::Channel {
                server,
                channel: name.to_owned(),
                nick,
            }),
            Some(_) if !name.starts_with(['#', '!', '@']) => Ok(IrcAddress::User {
                server,
                nick: name.to_owned(),
            }),
            _ => Err(AddressError::Malformed(
                local.clone(),
                "empty room or user name",
            )),
        }
    }

    /// What `jid` names.
    pub fn parse(&self, jid: &Jid) -> Result<IrcAddress, AddressError> {
        if !jid.domain().as_str().eq_ignore_ascii_case(&self.domain) {
            return Err(AddressError::ForeignDomain(jid.to_string()));
        }
        let Some(node) = jid.node() else {
            return Ok(IrcAddress::Gateway);
        };
        let local = unescape(node.as_str());
        if self.matrix {
            return self.parse_matrix(jid, local);
        }
        let (name, server) = match (&self.fixed_server, local.rsplit_once('%')) {
            (Some(fixed), _) => (local.as_str(), fixed.clone()),
            (None, Some((name, server))) => {
                if server.is_empty() || !is_server_name(server) {
                    return Err(AddressError::Malformed(
                        local.clone(),
                        "no IRC server after %",
                    ));
                }
                (name, server.to_ascii_lowercase())
            }
            (None, None) => {
                if !is_server_name(&local) {
                    return Err(AddressError::Malformed(
                        local.clone(),
                        "expected #channel%server, nick%server or a server name",
                    ));
                }
                return Ok(IrcAddress::Server {
                    server: local.to_ascii_lowercase(),
                });
            }
        };
        if name.is_empty() {
            return Err(AddressError::Malformed(
                local.clone(),
                "empty channel or nick",
            ));
        }
        if name.starts_with(CHANNEL_PREFIXES) {
            if name.len() < 2 {
                return Err(AddressError::Malformed(
                    local.clone(),
                    "channel name without a name",
                ));
            }
            let nick = jid.resource().map(|r| r.as_str().to_owned());
            Ok(IrcAddress::Channel {
                server,
                channel: name.to_owned(),
                nick,
            })
        } else {
            Ok(IrcAddress::User {
                server,
                nick: name.to_owned(),
            })
        }
    }

    /// The MUC JID of a channel. A name that is no channel's (no prefix) makes none: its
    /// JID would read back as a user's (found by the fuzzer, addresses).
    pub fn channel_jid(&self, server: &str, channel: &str) -> Result<BareJid, AddressError> {
        let prefixes: &[char] = if self.matrix {
            &['#', '!']
        } else {
            CHANNEL_PREFIXES
        };
        if channel.chars().count() < 2 || !channel.starts_with(prefixes) {
            return Err(AddressError::Unrepresentable(channel.to_owned()));
        }
        let jid = self.bare(&self.qualify(channel, server)?)?;
        // Made only if it reads back as a channel (a Matrix name without a server must
        // carry it: `#alias%server`).
        match self.parse(&jid.clone().into()) {
            Ok(IrcAddress::Channel { .. }) => Ok(jid),
            _ => Err(AddressError::Unrepresentable(channel.to_owned())),
        }
    }

    /// The in-room JID of an occupant.
    pub fn occupant_jid(
        &self,
        server: &str,
        channel: &str,
        nick: &str,
    ) -> Result<FullJid, AddressError> {
        let room = self.channel_jid(server, channel)?;
        room.with_resource_str(nick)
            .map_err(|_| AddressError::Unrepresentable(nick.to_owned()))
    }

    /// The JID of an IRC user, for private messages.
    pub fn user_jid(&self, server: &str, nick: &str) -> Result<BareJid, AddressError> {
        let jid = self.bare(&self.qualify(nick, server)?)?;
        // Made only if it reads back as a user (found by the fuzzer: an empty nick, a
        // Matrix user without a server).
        match self.parse(&jid.clone().into()) {
            Ok(IrcAddress::User { .. }) => Ok(jid),
            _ => Err(AddressError::Unrepresentable(nick.to_owned())),
        }
    }

    /// The JID of an IRC server (in fixed-server mode, the gateway domain).
    pub fn server_jid(&self, server: &str) -> Result<BareJid, AddressError> {
        if self.fixed_server.is_some() {
            return self.bare_domain();
        }
        self.bare(server)
    }

    /// `name%server`, as the mode writes it; a server name that would not read back (a
    /// `%` or `@` in it, say) makes no address at all.
    fn qualify(&self, name: &str, server: &str) -> Result<String, AddressError> {
        match self.fixed_server {
            Some(_) => Ok(name.to_owned()),
            None if self.matrix && server.is_empty() => Ok(name.to_owned()),
            None if self.matrix && !is_matrix_server_name(server) => {
                Err(AddressError::Unrepresentable(server.to_owned()))
            }
            None if !self.matrix && !is_server_name(server) => {
                Err(AddressError::Unrepresentable(server.to_owned()))
            }
            None => Ok(format!("{name}%{server}")),
        }
    }

    fn bare(&self, local: &str) -> Result<BareJid, AddressError> {
        // A domain that is no JID domain makes no JID at all.
        let unrepresentable = || AddressError::Unrepresentable(local.to_owned());
        let domain = self.domain_part.as_ref().ok_or_else(unrepresentable)?;
        let escaped = escape(local);
        let node = NodePart::new(&escaped).map_err(|_| unrepresentable())?;
        Ok(BareJid::from_parts(Some(&node), domain))
    }

    /// Whether these are Matrix addresses.
    pub fn is_matrix(&self) -> bool {
        self.matrix
    }

    /// The gateway's own JID (its domain).
    pub fn gateway_jid(&self) -> Result<BareJid, AddressError> {
        self.bare_domain()
    }

    fn bare_domain(&self) -> Result<BareJid, AddressError> {
        BareJid::new(&self.domain).map_err(|_| AddressError::Unrepresentable(self.domain.clone()))
    }
}

impl fmt::Display for IrcAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrcAddress::Gateway => f.write_str("the gateway"),
            IrcAddress::Server { server } => write!(f, "IRC server {server}"),
            IrcAddress::Channel {
                server, channel, ..
            } => write!(f, "{channel} on {server}"),
            IrcAddress::User { server, nick } => write!(f, "{nick} on {server}"),
        }
    }
}

/// A host name as IRC servers have them (letters, digits, `-`, `.`), or an IP address.
fn is_server_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        || s.parse::<std::net::IpAddr>().is_ok()
}

/// A Matrix server name: a host name or IP address, with a port or not.
fn is_matrix_server_name(server: &str) -> bool {
    let host = match server.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => server,
    };
    is_server_name(host)
}

/// The characters XEP-0106 escapes, with their escape codes.
const ESCAPES: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

fn escape_code(s: &str) -> Option<char> {
    let code = s.get(..2)?;
    ESCAPES
        .iter()
        .find(|(_, c)| c.eq_ignore_ascii_case(code))
        .map(|(ch, _)| *ch)
}

/// XEP-0106 escaping of a remote name for use as a JID localpart. A backslash is escaped
/// only where it would otherwise read as the start of an escape.
pub fn escape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.char_indices() {
        match ESCAPES.iter().find(|(ch, _)| *ch == c) {
            Some(('\\', code)) if escape_code(&raw[i + 1..]).is_some() => {
                out.push('\\');
                out.push_str(code);
            }
            Some(('\\', _)) => out.push('\\'),
            Some((_, code)) => {
                out.push('\\');
                out.push_str(code);
            }
            None => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
pub fn unescape(local: &str) -> String {
    let mut out = String::with_capacity(local.len());
    let mut rest = local;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match escape_code(&rest[i + 1..]) {
            Some(c) => {
                out.push(c);
                rest = &rest[i + 3..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// JIDs parsed lately, by their text: the same few senders, rooms and users come again and
/// again, and stringprep is the dearest part of reading a stanza or an event.
#[derive(Debug)]
pub(crate) struct JidCache<J> {
    known: std::collections::HashMap<String, J, foldhash::fast::RandomState>,
}

impl<J> Default for JidCache<J> {
    fn default() -> Self {
        JidCache {
            known: Default::default(),
        }
    }
}

impl<J: std::str::FromStr + Clone> JidCache<J> {
    /// Past this many the cache starts over.
    const CAPACITY: usize = 4096;

    /// `text` as a JID, parsed once while it stays in the cache.
    pub(crate) fn get(&mut self, text: &str) -> Result<J, J::Err> {
        if let Some(jid) = self.known.get(text) {
            return Ok(jid.clone());
        }
        let jid: J = text.parse()?;
        if self.known.len() >= Self::CAPACITY {
            self.known.clear();
        }
        self.known.insert(text.to_owned(), jid.clone());
        Ok(jid)
    }
}

/// Set a reply's `from` (what the request was addressed to) and `to` (its sender).
pub fn address_reply(stanza: &mut Stanza, from: Option<Jid>, to: Jid) {
    match stanza {
        Stanza::Iq(iq) => {
            *iq.from_mut() = from;
            *iq.to_mut() = Some(to);
        }
        Stanza::Message(m) => {
            m.from = from;
            m.to = Some(to);
        }
        Stanza::Presence(p) => {
            p.from = from;
            p.to = Some(to);
        }
    }
}

#[cfg(test)]
mod tests;
