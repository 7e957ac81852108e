//! Message bodies are plain text with XEP-0393 message styling, the way XMPP clients show
//! them: `*strong*`, `_emphasis_`, `~strike~`, `` `code` ``, ```` ``` ```` blocks and `>`
//! quotes. A network with markup of its own (IRC's control codes, Matrix's HTML) turns it
//! into this on the way in ([`render`]) and reads it with [`parse`] on the way out.
//!
//! The rules are XEP-0393's (§6): an opening directive starts a line or follows whitespace
//! or another opening directive, and is followed by no whitespace; the closing one is the
//! next of its kind on the line not preceded by whitespace, with text between; inside a
//! `code` span nothing else is styled; a span holds no span of its own kind.

/// How a run of text looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Style {
    /// `*strong*`.
    pub bold: bool,
    /// `_emphasis_`.
    pub italic: bool,
    /// `~strike~`.
    pub strike: bool,
    /// `` `code` ``: nothing else applies inside.
    pub code: bool,
}

impl Style {
    /// Plain text.
    pub const PLAIN: Style = Style {
        bold: false,
        italic: false,
        strike: false,
        code: false,
    };

    fn with(mut self, directive: char) -> Style {
        match directive {
            '*' => self.bold = true,
            '_' => self.italic = true,
            '~' => self.strike = true,
            _ => self.code = true,
        }
        self
    }

    fn has(self, directive: char) -> bool {
        match directive {
            '*' => self.bold,
            '_' => self.italic,
            '~' => self.strike,
            _ => self.code,
        }
    }

    /// The directives that open this style, outermost first.
    fn directives(self) -> impl Iterator<Item = char> {
        let Style {
            bold,
            italic,
            strike,
            code,
        } = self;
        // Code takes nothing inside it: it alone, when set.
        [
            ('*', bold && !code),
            ('_', italic && !code),
            ('~', strike && !code),
            ('`', code),
        ]
        .into_iter()
        .filter_map(|(c, on)| on.then_some(c))
    }
}

/// A run of text in one style.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The text, without directives.
    pub text: String,
    /// Its style.
    pub style: Style,
}

/// One block of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// One line of text, `quote` levels deep, in runs (directives left out).
    Line {
        /// How many `>` quote it.
        quote: usize,
        /// Its text.
        runs: Vec<Run>,
    },
    /// A preformatted block (between ```` ``` ```` lines), `quote` levels deep, verbatim.
    Pre {
        /// How many `>` quote it.
        quote: usize,
        /// Its lines, joined by `\n`.
        text: String,
    },
}

/// The blocks of a styled body.
pub fn parse(body: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut pre: Option<(usize, Vec<&str>)> = None;
    for line in body.split('\n') {
        let (quote, rest) = unquote(line);
        if let Some((depth, lines)) = &mut pre {
            // Inside a block only the block's own quote marks are markup: `>>> x` in a
            // block quoted once is `>> x`.
            let (quote, rest) = unquote_to(line, *depth);
            // A block ends at a line of ``` alone (at its depth), or where its quote does.
            if quote == *depth && rest.trim_end() == "```" {
                let (quote, lines) = pre.take().expect("in a block");
                blocks.push(Block::Pre {
                    quote,
                    text: lines.join("\n"),
                });
                continue;
            }
            if quote >= *depth {
                lines.push(rest);
                continue;
            }
            let (quote, lines) = pre.take().expect("in a block");
            blocks.push(Block::Pre {
                quote,
                text: lines.join("\n"),
            });
        }
        if rest.starts_with("```") {
            pre = Some((quote, Vec::new()));
            continue;
        }
        blocks.push(Block::Line {
            quote,
            runs: spans(rest),
        });
    }
    if let Some((quote, lines)) = pre {
        blocks.push(Block::Pre {
            quote,
            text: lines.join("\n"),
        });
    }
    blocks
}

/// How deep a line is quoted, and its text without the quote marks (and the one space
/// after each, if any).
fn unquote(line: &str) -> (usize, &str) {
    unquote_to(line, usize::MAX)
}

/// [`unquote`], `most` levels at most.
fn unquote_to(line: &str, most: usize) -> (usize, &str) {
    let mut depth = 0;
    let mut rest = line;
    while depth < most {
        let Some(after) = rest.strip_prefix('>') else {
            break;
        };
        depth += 1;
        rest = after.strip_prefix(' ').unwrap_or(after);
    }
    (depth, rest)
}

fn is_directive(c: char) -> bool {
    matches!(c, '*' | '_' | '~' | '`')
}

/// The runs of one line.
fn spans(line: &str) -> Vec<Run> {
    let chars: Vec<char> = line.chars().collect();
    let mut runs = Vec::new();
    styled(&chars, Style::PLAIN, &mut runs);
    runs
}

/// Parse `chars` in `style` into `runs`, merging neighbours of one style.
fn styled(chars: &[char], style: Style, runs: &mut Vec<Run>) {
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let may_open = is_directive(c)
            && !style.code
            && !style.has(c)
            // (A span's inner text starts at 0: after its opening directive.)
            && (i == 0 || chars[i - 1].is_whitespace())
            && chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
        if may_open {
            // The first closing directive of its kind after at least one character.
            let close =
                (i + 2..chars.len()).find(|&j| chars[j] == c && !chars[j - 1].is_whitespace());
            if let Some(j) = close {
                push(runs, std::mem::take(&mut plain), style);
                let inner = style.with(c);
                if inner.code {
                    push(runs, chars[i + 1..j].iter().collect(), inner);
                } else {
                    styled(&chars[i + 1..j], inner, runs);
                }
                i = j + 1;
                continue;
            }
        }
        plain.push(c);
        i += 1;
    }
    push(runs, plain, style);
}

fn push(runs: &mut Vec<Run>, text: String, style: Style) {
    if text.is_empty() {
        return;
    }
    match runs.last_mut() {
        Some(last) if last.style == style => last.text.push_str(&text),
        _ => runs.push(Run { text, style }),
    }
}

/// One line of styled text from runs: each styled run between its directives, where
/// XEP-0393 lets them stand (its whitespace at either end moved outside them); where they
/// cannot (a run starting inside a word), the text plain. Newlines in a run end the line:
/// the style opens again on the next.
pub fn render(runs: &[Run]) -> String {
    let mut out = String::new();
    for run in runs {
        let mut first = true;
        for piece in run.text.split('\n') {
            if !first {
                out.push('\n');
            }
            first = false;
            render_piece(&mut out, piece, run.style);
        }
    }
    out
}

fn render_piece(out: &mut String, text: &str, style: Style) {
    let core = text.trim();
    if core.is_empty() {
        out.push_str(text);
        return;
    }
    let lead = &text[..text.len() - text.trim_start().len()];
    let trail = &text[text.trim_end().len()..];
    let directives: String = style.directives().collect();
    out.push_str(lead);
    // After whitespace only: after a closing directive (`*a*_b_`) strict clients show the
    // next directive as text.
    let opens_here = out.chars().next_back().is_none_or(char::is_whitespace);
    // A directive inside the text would end the span early: such a run stays plain, as
    // would one a code span cannot hold (a backtick).
    let clashes = directives.chars().any(|d| core.contains(d));
    if directives.is_empty() || !opens_here || clashes {
        out.push_str(core);
    } else {
        out.push_str(&directives);
        out.push_str(core);
        out.extend(directives.chars().rev());
    }
    out.push_str(trail);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, style: Style) -> Run {
        Run {
            text: text.into(),
            style,
        }
    }

    const BOLD: Style = Style {
        bold: true,
        ..Style::PLAIN
    };
    const ITALIC: Style = Style {
        italic: true,
        ..Style::PLAIN
    };
    const CODE: Style = Style {
        code: true,
        ..Style::PLAIN
    };

    fn line(runs: Vec<Run>) -> Block {
        Block::Line { quote: 0, runs }
    }

    #[test]
    fn spans_follow_xep_0393() {
        assert_eq!(
            parse("a *bold* and _it_ ~gone~ `*x*`"),
            [line(vec![
                run("a ", Style::PLAIN),
                run("bold", BOLD),
                run(" and ", Style::PLAIN),
                run("it", ITALIC),
                run(" ", Style::PLAIN),
                run(
                    "gone",
                    Style {
                        strike: true,
                        ..Style::PLAIN
                    }
                ),
                run(" ", Style::PLAIN),
                run("*x*", CODE),
            ])]
        );
        // Nested; not opened mid-word, before whitespace, or without a closer.
        assert_eq!(
            parse("*_both_* 2*3*4 * no* *open"),
            [line(vec![
                run(
                    "both",
                    Style {
                        bold: true,
                        italic: true,
                        ..Style::PLAIN
                    }
                ),
                run(" 2*3*4 * no* *open", Style::PLAIN),
            ])]
        );
        // Empty spans are text; so is a span right after a closing directive.
        assert_eq!(parse("**"), [line(vec![run("**", Style::PLAIN)])]);
        assert_eq!(
            parse("*a*_b_"),
            [line(vec![run("a", BOLD), run("_b_", Style::PLAIN)])]
        );
    }

    #[test]
    fn blocks_quotes_and_pre() {
        assert_eq!(
            parse("> quoted *b*\n```\n*raw*\n```\nafter"),
            [
                Block::Line {
                    quote: 1,
                    runs: vec![run("quoted ", Style::PLAIN), run("b", BOLD)]
                },
                Block::Pre {
                    quote: 0,
                    text: "*raw*".into()
                },
                line(vec![run("after", Style::PLAIN)]),
            ]
        );
        // Inside a block, quote marks beyond the block's own are its text.
        assert_eq!(
            parse("```\n>>> print(1)\n```"),
            [Block::Pre {
                quote: 0,
                text: ">>> print(1)".into()
            }]
        );
        assert_eq!(
            parse("> ```\n> > x\n> ```"),
            [Block::Pre {
                quote: 1,
                text: "> x".into()
            }]
        );
        // An unclosed block runs to the end.
        assert_eq!(
            parse("```\nx"),
            [Block::Pre {
                quote: 0,
                text: "x".into()
            }]
        );
    }

    #[test]
    fn render_puts_directives_where_they_hold() {
        assert_eq!(
            render(&[
                run("say ", Style::PLAIN),
                run(" loud ", BOLD),
                run("now", ITALIC)
            ]),
            "say  *loud* _now_"
        );
        // A run opening inside a word, or only whitespace, stays plain.
        assert_eq!(render(&[run("ab", Style::PLAIN), run("cd", BOLD)]), "abcd");
        assert_eq!(render(&[run("a", Style::PLAIN), run("  ", BOLD)]), "a  ");
        // Code takes nothing else; a run holding its own directive stays plain.
        assert_eq!(
            render(&[run(
                "x",
                Style {
                    bold: true,
                    code: true,
                    ..Style::PLAIN
                }
            )]),
            "`x`"
        );
        assert_eq!(render(&[run("2*3", BOLD)]), "2*3");
        // Right after another span's end: plain.
        assert_eq!(render(&[run("a", BOLD), run("b", ITALIC)]), "*a*b");
        // What render writes, parse reads back.
        let runs = vec![
            run("a ", Style::PLAIN),
            run("b", BOLD),
            run(" ", Style::PLAIN),
            run("c", CODE),
        ];
        assert_eq!(parse(&render(&runs)), [line(runs)]);
    }
}
