//! Entry points for the fuzz targets (`fuzz/`) and their corpus tests: what an IRC server
//! sends, as bytes, through the decoder and the line parser; and what a user sends, through
//! the line writer and the splitter that keep it one safe line each.

use crate::line::{format, Line};
use crate::text::{decode_line, split_body, MAX_LINE};

/// `data` as a received line, then as parameters to write and as a body to send. Nothing
/// written may carry CR, LF or NUL; a written line reads back with the same command and
/// parameters (but what writing removes); every piece of a body fits the line limit.
pub fn line(data: &[u8]) {
    let text = decode_line(data);
    if let Some(line) = Line::parse(&text) {
        let _ = (line.source_nick(), line.numeric(), line.last_param());
        let _ = crate::parse_server_time(line.tags.get("time").map_or("", String::as_str));
    }

    // The first line a command, the others its parameters.
    let mut parts = text.split('\n');
    let command: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphabetic)
        .collect();
    if !command.is_empty() {
        let params: Vec<&str> = parts.collect();
        let written = format(&command, &params);
        assert!(
            !written.contains(['\r', '\n', '\0']),
            "a written line carries a line break: {written:?}"
        );
        let read = Line::parse(&written).expect("a written line has a command");
        assert_eq!(read.command, command.to_ascii_uppercase());
        // Every parameter in its place: a middle one without spaces or leading colons, `*`
        // when nothing is left of it.
        let expected: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let clean: String = p
                    .chars()
                    .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
                    .collect();
                if i + 1 == params.len() {
                    return clean;
                }
                let middle: String = clean.chars().filter(|&c| c != ' ').collect();
                match middle.trim_start_matches(':') {
                    "" => "*".to_owned(),
                    middle => middle.to_owned(),
                }
            })
            .collect();
        assert_eq!(read.params, expected, "{written:?} reads back otherwise");
    }

    let source = text.len() % 100;
    for wrap in [0, 9] {
        let overhead = 1 + source + 1 + "PRIVMSG".len() + 1 + "#chan".len() + 2 + 2 + wrap;
        let room = MAX_LINE.saturating_sub(overhead).max(16);
        for piece in split_body(&text, source, "PRIVMSG", "#chan", wrap) {
            assert!(!piece.contains(['\r', '\n', '\0']), "{piece:?}");
            assert!(
                piece.len() <= room,
                "a piece of {} bytes for {room}",
                piece.len()
            );
            // Spaces are text like any other (a run of them longer than a line may make a
            // piece of spaces only), but no piece is empty.
            assert!(!piece.is_empty(), "an empty piece");
        }
    }
}
