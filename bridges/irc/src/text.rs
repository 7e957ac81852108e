//! IRC text on the wire: decoding what servers send (UTF-8, else latin-1, never dropped),
//! and cutting what users send into lines that fit the 512-byte limit without ever letting
//! CR, LF or NUL reach the wire.

use std::borrow::Cow;

/// The most an IRC line may take, CR LF included (RFC 1459 §2.3).
pub const MAX_LINE: usize = 512;

/// Decode one received line (without its line ending): UTF-8 when it is valid, otherwise
/// latin-1, which maps every byte to a character, so nothing is lost and nothing panics.
pub fn decode_line(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// Drop the characters that could end or corrupt an IRC line.
pub fn strip_line_breaks(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
        return Cow::Borrowed(text);
    }
    text.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .collect()
}

/// Cut a message body into IRC message texts: one per line of the body (empty lines are
/// skipped: IRC cannot carry them), each line further split so that
/// `:{source} {command} {target} :{text}\r\n` stays within 512 bytes once the server adds
/// our `source` (`nick!user@host`). `wrap` bytes are reserved per text for CTCP framing.
/// Splits fall on character boundaries; where a space is near the end of a piece the split
/// takes its place (servers trim trailing spaces, so a space kept there would be lost).
pub fn split_body(
    body: &str,
    source_len: usize,
    command: &str,
    target: &str,
    wrap: usize,
) -> Vec<String> {
    split_pieces(body, source_len, command, target, wrap)
        .into_iter()
        .map(|(piece, _)| piece)
        .collect()
}

/// [`split_body`], telling for each piece whether a space was dropped after it.
fn split_pieces(
    body: &str,
    source_len: usize,
    command: &str,
    target: &str,
    wrap: usize,
) -> Vec<(String, bool)> {
    // ":" source " " command " " target " :" text "\r\n"
    let overhead = 1 + source_len + 1 + command.len() + 1 + target.len() + 2 + 2 + wrap;
    let room = MAX_LINE.saturating_sub(overhead).max(16);
    let mut out = Vec::new();
    for line in body.split('\n') {
        let mut rest = strip_line_breaks(line).into_owned();
        if rest.trim().is_empty() {
            continue;
        }
        while rest.len() > room {
            let (cut, space) = cut_point(&rest, room);
            let tail = rest.split_off(cut + usize::from(space));
            rest.truncate(cut);
            out.push((std::mem::replace(&mut rest, tail), space));
        }
        // A cut at the line's last space leaves nothing after it: no empty message (found
        // by the fuzzer, irc_line).
        if !rest.is_empty() {
            out.push((rest, false));
        }
    }
    out
}

/// Where to cut `text` so that the first part has at most `max` bytes, and whether the cut
/// replaces a space.
fn cut_point(text: &str, max: usize) -> (usize, bool) {
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    if text.as_bytes().get(cut) == Some(&b' ') {
        return (cut, true);
    }
    // Prefer a word boundary in the last quarter of the piece.
    match text[..cut].rfind(' ') {
        Some(space) if space > cut * 3 / 4 => (space, true),
        _ => (cut, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn invalid_utf8_reads_as_latin1() {
        assert_eq!(decode_line(b"caf\xe9 cr\xe8me"), "café crème");
        assert_eq!(decode_line("café".as_bytes()), "café");
        assert_eq!(decode_line(b"\xff\xfe\x00"), "ÿþ\0");
    }

    #[test]
    fn newlines_become_separate_messages_and_cannot_inject() {
        let parts = split_body(
            "hello\r\nQUIT :bye\n\nPRIVMSG x :y\0z",
            30,
            "PRIVMSG",
            "#chan",
            0,
        );
        assert_eq!(parts, ["hello", "QUIT :bye", "PRIVMSG x :yz"]);
    }

    #[test]
    fn long_lines_split_on_words_within_the_limit() {
        let body = "word ".repeat(200).trim_end().to_owned();
        let source = "nick!user@some.host.example";
        let parts = split_body(&body, source.len(), "PRIVMSG", "#chan", 0);
        assert!(parts.len() > 1);
        for part in &parts {
            let wire = format!(":{source} PRIVMSG #chan :{part}\r\n");
            assert!(wire.len() <= MAX_LINE, "{} bytes", wire.len());
            assert!(!part.starts_with(' ') && !part.ends_with(' '), "{part:?}");
        }
        assert_eq!(parts.join(" "), body);
    }

    #[test]
    fn a_cut_at_the_last_space_makes_no_empty_piece() {
        let room = MAX_LINE - (1 + 10 + 1 + "PRIVMSG".len() + 1 + "#c".len() + 2 + 2);
        let body = format!("{} ", "x".repeat(room));
        let pieces = split_body(&body, 10, "PRIVMSG", "#c", 0);
        assert_eq!(pieces, ["x".repeat(room)]);
    }

    proptest! {
        #[test]
        fn every_line_fits_and_nothing_is_lost(body in "(\\PC|[\\r\\n\\t ]){0,1500}", source_len in 10usize..120, wrap in prop_oneof![Just(0usize), Just(9usize)]) {
            let target = "#some-channel";
            let pieces = split_pieces(&body, source_len, "PRIVMSG", target, wrap);
            let mut rebuilt = String::new();
            for (piece, dropped_space) in &pieces {
                let wire_len = 1 + source_len + " PRIVMSG ".len() + target.len() + 2 + piece.len() + wrap + 2;
                prop_assert!(wire_len <= MAX_LINE, "{} bytes", wire_len);
                prop_assert!(!piece.contains(['\r', '\n', '\0']));
                rebuilt.push_str(piece);
                if *dropped_space {
                    rebuilt.push(' ');
                }
            }
            let expected: Vec<String> = body.split('\n').map(|l| strip_line_breaks(l).into_owned()).filter(|l| !l.trim().is_empty()).collect();
            prop_assert_eq!(rebuilt, expected.concat());
        }
    }
}
