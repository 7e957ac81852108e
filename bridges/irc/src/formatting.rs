//! IRC's formatting codes (bold `^B`, italic `^]`, strikethrough `^^`, monospace `^Q`,
//! underline `^_`, reverse `^V`, colours `^C` and `^D`, reset `^O`) and the XEP-0393
//! styling of message bodies (`causeway_bridge::styling`).
//!
//! On the way in, what styling has becomes it (bold, italic, strikethrough, monospace) and
//! the rest is removed: no control character reaches XMPP, where XML cannot carry it. On
//! the way out, styling becomes codes only where the server's settings ask for it.

use causeway_bridge::styling::{self, Block, Run, Style};
use causeway_bridge::Event;

const BOLD: char = '\u{02}';
const COLOUR: char = '\u{03}';
const HEX_COLOUR: char = '\u{04}';
const RESET: char = '\u{0f}';
const MONOSPACE: char = '\u{11}';
const REVERSE: char = '\u{16}';
const ITALIC: char = '\u{1d}';
const STRIKE: char = '\u{1e}';
const UNDERLINE: char = '\u{1f}';

fn is_code(c: char) -> bool {
    matches!(
        c,
        BOLD | COLOUR | HEX_COLOUR | RESET | MONOSPACE | REVERSE | ITALIC | STRIKE | UNDERLINE
    )
}

/// `text` from IRC as a styled body: codes become styling where it has them, and are
/// removed where it does not. Text without codes is returned as it came.
pub fn to_styled(text: String) -> String {
    if !text.chars().any(is_code) {
        return text;
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut style = Style::PLAIN;
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = match c {
            BOLD => Style {
                bold: !style.bold,
                ..style
            },
            ITALIC => Style {
                italic: !style.italic,
                ..style
            },
            STRIKE => Style {
                strike: !style.strike,
                ..style
            },
            MONOSPACE => Style {
                code: !style.code,
                ..style
            },
            RESET => Style::PLAIN,
            COLOUR => {
                // ^C, ^Cf, ^Cff, ^Cf,b, ^Cff,bb: the digits go with it.
                skip_colour(&mut chars, |c| c.is_ascii_digit(), 2);
                continue;
            }
            HEX_COLOUR => {
                skip_colour(&mut chars, |c| c.is_ascii_hexdigit(), 6);
                continue;
            }
            UNDERLINE | REVERSE => continue,
            other => {
                current.push(other);
                continue;
            }
        };
        if next != style {
            flush(&mut runs, &mut current, style);
            style = next;
        }
    }
    flush(&mut runs, &mut current, style);
    styling::render(&runs)
}

fn flush(runs: &mut Vec<Run>, current: &mut String, style: Style) {
    if !current.is_empty() {
        runs.push(Run {
            text: std::mem::take(current),
            style,
        });
    }
}

/// `event` with every text the server wrote in it styled ([`to_styled`]): what is said,
/// topics, reasons, away messages, the server's own text.
pub fn styled_event(mut event: Event) -> Event {
    let text: Option<&mut String> = match &mut event {
        Event::Message { body, .. } => Some(body),
        Event::ServerText { text, .. } => Some(text),
        Event::Subject { subject, .. } | Event::Joined { subject, .. } => Some(subject),
        Event::MemberLeft { reason, .. } | Event::Left { reason, .. } => reason.as_mut(),
        Event::MemberAway { message, .. } => message.as_mut(),
        Event::Invited { reason, .. } => reason.as_mut(),
        _ => None,
    };
    if let Some(text) = text {
        *text = to_styled(std::mem::take(text));
    }
    event
}

/// The foreground and optional background after a colour code: up to `most` digits each.
fn skip_colour(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    digit: impl Fn(char) -> bool,
    most: usize,
) {
    let mut taken = 0;
    while taken < most && chars.peek().is_some_and(|c| digit(*c)) {
        chars.next();
        taken += 1;
    }
    if taken == 0 {
        return;
    }
    // A comma is the background's only when digits follow it.
    let mut ahead = chars.clone();
    if ahead.next() == Some(',') && ahead.peek().is_some_and(|c| digit(*c)) {
        chars.next();
        let mut taken = 0;
        while taken < most && chars.peek().is_some_and(|c| digit(*c)) {
            chars.next();
            taken += 1;
        }
    }
}

/// A styled body as IRC text: spans as codes, directives left out; quotes and
/// preformatted blocks as they were written.
pub fn from_styled(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for (i, block) in styling::parse(body).into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match block {
            Block::Line { quote, runs } => {
                out.push_str(&"> ".repeat(quote));
                for run in runs {
                    let codes = codes(run.style);
                    out.push_str(&codes);
                    out.push_str(&run.text);
                    out.extend(codes.chars().rev());
                }
            }
            Block::Pre { quote, text } => {
                let prefix = "> ".repeat(quote);
                for (j, line) in text.split('\n').enumerate() {
                    if j > 0 {
                        out.push('\n');
                    }
                    out.push_str(&prefix);
                    out.push_str(line);
                }
            }
        }
    }
    out
}

fn codes(style: Style) -> String {
    [
        (BOLD, style.bold),
        (ITALIC, style.italic),
        (STRIKE, style.strike),
        (MONOSPACE, style.code),
    ]
    .into_iter()
    .filter_map(|(c, on)| on.then_some(c))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styled(text: &str) -> String {
        to_styled(text.to_owned())
    }

    #[test]
    fn codes_become_styling_or_go() {
        assert_eq!(styled("plain *as* it was"), "plain *as* it was");
        assert_eq!(styled("a \x02bold\x02 word"), "a *bold* word");
        assert_eq!(
            styled("\x1ditalic\x0f and \x1estruck\x1e"),
            "_italic_ and ~struck~"
        );
        assert_eq!(styled("\x02\x1dboth\x0f!"), "*_both_*!");
        assert_eq!(styled("\x11code\x11"), "`code`");
        // Underline, reverse and colours have no styling: removed, digits and all.
        assert_eq!(styled("\x1funder\x1f \x16rev\x16"), "under rev");
        assert_eq!(
            styled("\x034red\x03 \x0304,12blue\x03 \x03,5x"),
            "red blue ,5x"
        );
        assert_eq!(styled("\x0312,3456"), "56");
        assert_eq!(styled("\x04ff0000red\x04 \x04FF0000,00FF00x"), "red x");
        // Bold spaces, bold inside a word, an unended code: nothing broken.
        assert_eq!(styled("a\x02 b \x02c"), "a *b* c");
        assert_eq!(styled("in\x02side\x02"), "inside");
        assert_eq!(styled("\x02open"), "*open*");
        assert!(!styled("\x02\x03\x04\x0f\x11\x16\x1d\x1e\x1f")
            .chars()
            .any(|c| c.is_control()));
    }

    #[test]
    fn styling_becomes_codes() {
        assert_eq!(
            from_styled("a *bold* and _it_ ~x~ `c`"),
            "a \x02bold\x02 and \x1dit\x1d \x1ex\x1e \x11c\x11"
        );
        assert_eq!(from_styled("*_both_*"), "\x02\x1dboth\x1d\x02");
        // Not styling: as written.
        assert_eq!(from_styled("2*3*4 and * x*"), "2*3*4 and * x*");
        assert_eq!(from_styled("> quoted\n```\n*raw*\n```"), "> quoted\n*raw*");
        // There and back.
        let body = "say *this* _loud_";
        assert_eq!(to_styled(from_styled(body)), body);
    }
}
