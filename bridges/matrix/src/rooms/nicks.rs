//! How a Matrix member's display name becomes a MUC nick: cleaned of control characters,
//! as the gateway's rule (handed in by the root) accepts it, else the user id's localpart;
//! a nick someone else has is told apart by the user id.

use crate::NickRule;

/// Nicks as the members' rooms compare them.
pub(super) fn fold(nick: &str) -> String {
    nick.to_lowercase()
}

/// The gateway's rule for nicks, and the nicks it makes of display names.
pub(super) struct Nicks(NickRule);

impl std::fmt::Debug for Nicks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nicks(..)")
    }
}

impl Nicks {
    /// Nicks as `rule` accepts them.
    pub(super) fn new(rule: NickRule) -> Nicks {
        Nicks(rule)
    }

    /// A display name fit to be a MUC nick: no control characters, trimmed, and accepted
    /// by the gateway's rule (a valid JID resource as the XMPP server will normalise it:
    /// emoji outside Unicode 3.2, mixed directions and over-long names are not), else
    /// `None`.
    fn clean(&self, name: &str) -> Option<String> {
        let trimmed = name
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_owned();
        if trimmed.is_empty() {
            return None;
        }
        (self.0)(&trimmed)
    }

    /// The nick `user_id` would show as: its display name when that is fit, else its
    /// localpart.
    pub(super) fn wanted(&self, user_id: &str, display: Option<&str>) -> String {
        display
            .and_then(|name| self.clean(name))
            .unwrap_or_else(|| {
                let local = user_id.trim_start_matches('@');
                local.split(':').next().unwrap_or(local).to_owned()
            })
    }

    /// The nick `user_id` gets: the first of these that is `free`. A display name shared
    /// by two members tells them apart by user id, which is unique, with a counter for the
    /// pathological case of someone calling themselves by another's disambiguated name.
    pub(super) fn pick(&self, base: String, user_id: &str, free: impl Fn(&str) -> bool) -> String {
        // (User ids are short ASCII, always valid resources: the search ends.)
        let with_id = format!("{base} ({user_id})");
        [base, with_id]
            .into_iter()
            .chain((0..).map(|n| match n {
                0 => user_id.to_owned(),
                n => format!("{user_id} {n}"),
            }))
            .find(|nick| free(nick) && self.clean(nick).as_deref() == Some(nick.as_str()))
            .expect("an unused nick exists")
    }
}
