//! What one puppet connection knows about its server: the server's ISUPPORT rules, and the
//! channels the puppet is in with their members and topics.

use std::collections::{BTreeMap, BTreeSet};

use causeway_bridge::{Member, Privilege};

/// Server rules from RPL_ISUPPORT (005), with RFC 1459 defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRules {
    /// Prefix modes and their symbols, highest first: `(qaohv)~&@%+`.
    pub prefixes: Vec<(char, char)>,
    /// Channel modes by CHANMODES type: A (list), B (always a parameter), C (parameter when
    /// set), D (never).
    pub chanmodes: [String; 4],
    /// Channel name prefixes.
    pub chantypes: String,
    /// `rfc1459` folds `[]\~` to `{}|^`; `ascii` does not.
    pub rfc1459_casemapping: bool,
}

impl Default for ServerRules {
    fn default() -> Self {
        ServerRules {
            prefixes: vec![('o', '@'), ('v', '+')],
            chanmodes: ["beI".into(), "k".into(), "l".into(), "imnpst".into()],
            chantypes: "#&".into(),
            rfc1459_casemapping: true,
        }
    }
}

impl ServerRules {
    /// Apply one RPL_ISUPPORT token (`PREFIX=(ov)@+`, `CHANTYPES=#`, …).
    pub fn apply(&mut self, token: &str) {
        let (key, value) = token.split_once('=').unwrap_or((token, ""));
        match key {
            "PREFIX" => {
                if let Some((modes, symbols)) =
                    value.strip_prefix('(').and_then(|v| v.split_once(')'))
                {
                    if modes.chars().count() == symbols.chars().count() {
                        self.prefixes = modes.chars().zip(symbols.chars()).collect();
                    }
                }
            }
            "CHANMODES" => {
                let mut parts = value.split(',');
                for slot in self.chanmodes.iter_mut() {
                    *slot = parts.next().unwrap_or_default().to_owned();
                }
            }
            "CHANTYPES" if !value.is_empty() => self.chantypes = value.to_owned(),
            "CASEMAPPING" => self.rfc1459_casemapping = value != "ascii",
            _ => {}
        }
    }

    /// The case-folded form used to compare nicks and channel names.
    pub fn fold(&self, name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        if !self.rfc1459_casemapping || !lower.contains(['[', ']', '\\', '~']) {
            return lower;
        }
        lower
            .chars()
            .map(|c| match c {
                '[' => '{',
                ']' => '}',
                '\\' => '|',
                '~' => '^',
                c => c,
            })
            .collect()
    }

    /// Whether `name` is a channel on this server.
    pub fn is_channel(&self, name: &str) -> bool {
        name.chars()
            .next()
            .is_some_and(|c| self.chantypes.contains(c))
    }

    /// The privilege a prefix mode letter stands for.
    pub fn privilege_of_mode(&self, mode: char) -> Privilege {
        match mode {
            'q' => Privilege::Owner,
            'a' => Privilege::Admin,
            'o' => Privilege::Op,
            'h' => Privilege::HalfOp,
            'v' => Privilege::Voice,
            // A prefix mode we do not know: rank it by its position among the server's.
            _ => Privilege::None,
        }
    }

    /// The mode letter that grants `privilege` here, if the server has one.
    pub fn mode_of_privilege(&self, privilege: Privilege) -> Option<char> {
        self.prefixes
            .iter()
            .map(|(m, _)| *m)
            .find(|m| self.privilege_of_mode(*m) == privilege)
    }

    /// Split a NAMES entry (`@+nick` or `@nick!user@host`) into its prefix modes and nick.
    pub fn parse_names_entry(&self, entry: &str) -> (BTreeSet<char>, String, Option<Box<str>>) {
        let mut modes = BTreeSet::new();
        let mut rest = entry;
        while let Some(c) = rest.chars().next() {
            match self.prefixes.iter().find(|(_, symbol)| *symbol == c) {
                Some((mode, _)) => {
                    modes.insert(*mode);
                    rest = &rest[c.len_utf8()..];
                }
                None => break,
            }
        }
        let nick = rest.split('!').next().unwrap_or(rest).to_owned();
        (modes, nick, crate::line::identity_of(rest))
    }

    /// Whether a channel mode letter takes a parameter when set (`adding`) or unset.
    pub fn mode_takes_param(&self, mode: char, adding: bool) -> bool {
        if self.prefixes.iter().any(|(m, _)| *m == mode) {
            return true;
        }
        let [a, b, c, _] = &self.chanmodes;
        a.contains(mode) || b.contains(mode) || (adding && c.contains(mode))
    }
}

/// A member as the puppet sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// The nick with its case.
    pub nick: String,
    /// Prefix modes held.
    pub modes: BTreeSet<char>,
    /// Who they are apart from the nick, `user@host`, when the server shows it for every
    /// member (userhost-in-names): a JOIN's source, a NAMES entry.
    pub id: Option<Box<str>>,
}

/// A channel the puppet is joining or in.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The name as the user asked for it.
    pub name: String,
    /// Whether the join sequence (NAMES) is complete.
    pub joined: bool,
    /// Members by folded nick.
    pub members: BTreeMap<String, MemberState>,
    /// The topic, empty when none.
    pub topic: String,
}

impl Channel {
    /// A channel being joined.
    pub fn joining(name: &str) -> Channel {
        Channel {
            name: name.to_owned(),
            joined: false,
            members: BTreeMap::new(),
            topic: String::new(),
        }
    }

    /// Members as the bridge API wants them.
    pub fn member_list(&self, rules: &ServerRules) -> Vec<Member> {
        self.members
            .values()
            .map(|m| Member {
                nick: m.nick.clone(),
                privilege: highest(rules, &m.modes),
                id: m.id.as_deref().map(str::to_owned),
                picture: None,
            })
            .collect()
    }
}

/// The highest privilege among prefix modes.
pub fn highest(rules: &ServerRules, modes: &BTreeSet<char>) -> Privilege {
    modes
        .iter()
        .map(|m| rules.privilege_of_mode(*m))
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isupport_prefix_and_names() {
        let mut rules = ServerRules::default();
        rules.apply("PREFIX=(qaohv)~&@%+");
        let (modes, nick, id) = rules.parse_names_entry("~@alice!a@host");
        assert_eq!((nick.as_str(), id.as_deref()), ("alice", Some("a@host")));
        assert_eq!(highest(&rules, &modes), Privilege::Owner);
        let (modes, nick, _) = rules.parse_names_entry("+bob");
        assert_eq!(
            (highest(&rules, &modes), nick.as_str()),
            (Privilege::Voice, "bob")
        );
        let (modes, nick, _) = rules.parse_names_entry("carol");
        assert!(modes.is_empty());
        assert_eq!(nick, "carol");
        assert_eq!(rules.mode_of_privilege(Privilege::HalfOp), Some('h'));
    }

    #[test]
    fn rfc1459_folding() {
        let rules = ServerRules::default();
        assert_eq!(rules.fold("Nick[away]\\~"), "nick{away}|^");
        let mut ascii = ServerRules::default();
        ascii.apply("CASEMAPPING=ascii");
        assert_eq!(ascii.fold("Nick[a]"), "nick[a]");
    }

    #[test]
    fn mode_parameters() {
        let mut rules = ServerRules::default();
        rules.apply("CHANMODES=beI,k,l,imnpst");
        assert!(rules.mode_takes_param('o', false));
        assert!(rules.mode_takes_param('b', false));
        assert!(rules.mode_takes_param('k', false));
        assert!(rules.mode_takes_param('l', true));
        assert!(!rules.mode_takes_param('l', false));
        assert!(!rules.mode_takes_param('m', true));
    }
}
