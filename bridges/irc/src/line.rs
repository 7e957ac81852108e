//! IRC message lines: parsing what servers send (IRCv3 tags, source, command, parameters)
//! and writing what we send, with the trailing parameter quoted when it must be.

use std::collections::HashMap;

use crate::verb::Verb;

/// One parsed IRC message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line {
    /// IRCv3 message tags, unescaped.
    pub tags: HashMap<String, String>,
    /// The source (`nick!user@host` or a server name), without the leading `:`.
    pub source: Option<String>,
    /// The command, upper-cased, or a three-digit numeric, as it came (for logs).
    pub command: String,
    /// The command, typed: what the session dispatches on.
    pub verb: Verb,
    /// The parameters, the trailing one included.
    pub params: Vec<String>,
}

/// `user@host` of `nick!user@host`; `None` for a bare nick or a server name. Two people
/// may share one (a gateway's puppets share its host, often an ident): the core gives the
/// second an id of its own.
pub fn identity_of(source: &str) -> Option<Box<str>> {
    let (_, rest) = source.split_once('!')?;
    rest.contains('@').then(|| rest.into())
}

impl Line {
    /// Parse a line (without line ending). `None` for a line with no command.
    pub fn parse(text: &str) -> Option<Line> {
        let mut rest = text.trim_start_matches(' ');
        let mut line = Line::default();
        if let Some(tagged) = rest.strip_prefix('@') {
            let (tags, after) = tagged.split_once(' ')?;
            for tag in tags.split(';').filter(|t| !t.is_empty()) {
                let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
                line.tags.insert(key.to_owned(), unescape_tag(value));
            }
            rest = after.trim_start_matches(' ');
        }
        if let Some(sourced) = rest.strip_prefix(':') {
            let (source, after) = sourced.split_once(' ')?;
            line.source = Some(source.to_owned());
            rest = after.trim_start_matches(' ');
        }
        let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        line.command = command.to_ascii_uppercase();
        line.verb = Verb::parse(&line.command);
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                line.params.push(trailing.to_owned());
                break;
            }
            let (param, after) = rest.split_once(' ').unwrap_or((rest, ""));
            line.params.push(param.to_owned());
            rest = after;
        }
        Some(line)
    }

    /// The nick of the source, if it is a user.
    pub fn source_nick(&self) -> Option<&str> {
        let source = self.source.as_deref()?;
        Some(source.split(['!', '@']).next().unwrap_or(source))
    }

    /// Who the source is apart from its nick, when it is a user: `user@host` as the
    /// server shows it (what bans match), for the occupant-id that outlives nick changes.
    pub fn source_identity(&self) -> Option<Box<str>> {
        let source = self.source.as_deref()?;
        identity_of(source)
    }

    /// Parameter `i`, or the empty string.
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }

    /// The numeric reply code, for numeric commands.
    pub fn numeric(&self) -> Option<u16> {
        match self.verb {
            Verb::Numeric(code) => Some(code),
            _ => None,
        }
    }

    /// The last parameter (the text of most replies), or the empty string.
    pub fn last_param(&self) -> &str {
        self.params.last().map(String::as_str).unwrap_or("")
    }
}

/// Write a command with parameters; the last one is sent as trailing (`:`) when it is empty,
/// holds a space or starts with `:`. CR, LF and NUL are removed from every parameter. A
/// middle parameter can hold no space and cannot start with `:` (either would shift the
/// parameters after it): they are removed, and one left empty is written `*`, so that the
/// next parameter never takes its place.
pub fn format(command: &str, params: &[&str]) -> String {
    let mut out =
        String::with_capacity(command.len() + params.iter().map(|p| p.len() + 2).sum::<usize>());
    out.push_str(command);
    for (i, param) in params.iter().enumerate() {
        let clean = crate::text::strip_line_breaks(param);
        out.push(' ');
        let last = i + 1 == params.len();
        if last && (clean.is_empty() || clean.contains(' ') || clean.starts_with(':')) {
            out.push(':');
        }
        if last {
            out.push_str(&clean);
        } else {
            let middle: String = clean.chars().filter(|&c| c != ' ').collect();
            match middle.trim_start_matches(':') {
                "" => out.push('*'),
                middle => out.push_str(middle),
            }
        }
    }
    out
}

fn unescape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('\\') => out.push('\\'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_source_command_and_params() {
        let l = Line::parse(
            "@time=2024-01-01T00:00:00.000Z;msgid=a\\sb :nick!u@h PRIVMSG #chan :hello  world",
        )
        .unwrap();
        assert_eq!(l.tags["time"], "2024-01-01T00:00:00.000Z");
        assert_eq!(l.tags["msgid"], "a b");
        assert_eq!(l.source_nick(), Some("nick"));
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#chan", "hello  world"]);
    }

    #[test]
    fn parses_numerics_and_odd_spacing() {
        let l = Line::parse(":irc.example.net 353 me = #chan :@op +voice plain").unwrap();
        assert_eq!(l.numeric(), Some(353));
        assert_eq!(l.params, ["me", "=", "#chan", "@op +voice plain"]);
        let l = Line::parse("PING  token").unwrap();
        assert_eq!((l.command.as_str(), l.param(0)), ("PING", "token"));
        let l = Line::parse(":server CAP * LS :").unwrap();
        assert_eq!(l.params, ["*", "LS", ""]);
        assert_eq!(Line::parse(""), None);
        assert_eq!(Line::parse(":only-a-source"), None);
    }

    #[test]
    fn formats_trailing_only_when_needed_and_never_breaks_lines() {
        assert_eq!(format("JOIN", &["#chan"]), "JOIN #chan");
        assert_eq!(
            format("PRIVMSG", &["#chan", "hi there"]),
            "PRIVMSG #chan :hi there"
        );
        assert_eq!(format("PRIVMSG", &["#chan", ":)"]), "PRIVMSG #chan ::)");
        assert_eq!(format("TOPIC", &["#chan", ""]), "TOPIC #chan :");
        assert_eq!(
            format("PRIVMSG", &["#chan", "a\r\nQUIT"]),
            "PRIVMSG #chan aQUIT"
        );
    }

    /// Found by the fuzzer (irc_line): a middle parameter starting with `:` turned the rest
    /// of the line into one trailing parameter, and an empty one let the next parameter
    /// take its place (`KICK #chan  :bob` kicks bob).
    #[test]
    fn middle_parameters_never_shift_the_others() {
        assert_eq!(
            format("KICK", &["#chan", ":nick", "a reason"]),
            "KICK #chan nick :a reason"
        );
        assert_eq!(format("KICK", &["#chan", " ", "bob"]), "KICK #chan * bob");
        let read = Line::parse(&format("KICK", &["#chan", "", "bob"])).unwrap();
        assert_eq!(read.params, ["#chan", "*", "bob"]);
    }
}
