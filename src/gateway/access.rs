//! Who may use the gateway: `[access] allow`, domains or bare JIDs.

use tokio_xmpp::jid::{BareJid, Jid};

/// The allow list, parsed once.
#[derive(Debug, Clone, Default)]
pub struct AccessList {
    domains: Vec<String>,
    users: Vec<BareJid>,
}

impl AccessList {
    /// Build from the configured entries; entries that are not JIDs were refused by the
    /// config check and are skipped here.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a String>) -> AccessList {
        let mut list = AccessList::default();
        for entry in entries {
            match entry.parse::<BareJid>() {
                Ok(jid) if jid.node().is_none() => list.domains.push(jid.domain().to_string()),
                Ok(jid) => list.users.push(jid),
                Err(_) => {}
            }
        }
        list
    }

    /// Whether the sender of a stanza may use the gateway.
    pub fn allows(&self, from: &Jid) -> bool {
        // Only users of an allowed domain: the domain itself (a server) is no user.
        (from.node().is_some() && self.domains.iter().any(|d| d == from.domain().as_str()))
            || (!self.users.is_empty() && self.users.contains(&from.clone().into_bare()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> AccessList {
        AccessList::new(&["example.org".to_string(), "carol@other.org".to_string()])
    }

    #[test]
    fn domains_and_bare_jids() {
        let l = list();
        assert!(l.allows(&"alice@example.org/phone".parse().unwrap()));
        assert!(l.allows(&"carol@other.org".parse().unwrap()));
        assert!(l.allows(&"carol@other.org/laptop".parse().unwrap()));
        assert!(!l.allows(&"mallory@other.org".parse().unwrap()));
        assert!(!l.allows(&"alice@sub.example.org".parse().unwrap()));
        assert!(!l.allows(&"alice@example.org.evil".parse().unwrap()));
    }

    #[test]
    fn a_server_is_not_a_user() {
        assert!(!list().allows(&"example.org".parse().unwrap()));
    }

    #[test]
    fn jids_compare_normalised() {
        // JID parsing applies the same case folding servers do.
        assert!(list().allows(&"Alice@Example.ORG".parse().unwrap()));
    }
}
