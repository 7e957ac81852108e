//! Matrix's HTML bodies (`org.matrix.custom.html`) ↔ the XEP-0393 styled text of the
//! bridge API (`causeway_bridge::styling`).
//!
//! In: html2text lays the HTML out as annotated lines (its rich mode); strong, emphasis,
//! strikeout and code become styling, `<pre>` a ```` ``` ```` block, block quotes `>` lines,
//! a mention (a link to a user on matrix.to, a "pill") the name it shows, any other link its
//! text with the address after it. Out: styling becomes the HTML Matrix clients render, and
//! a body with no styling gets no HTML at all.

use causeway_bridge::styling::{self, Block, Run, Style};
use html2text::render::RichAnnotation;

/// Wide enough that html2text never wraps a line of a message.
const NO_WRAP: usize = 100_000;

/// The styled text of a Matrix HTML body, `<mx-reply>` fallbacks dropped; `None` when the
/// HTML holds no text.
pub fn to_styled(html: &str) -> Option<String> {
    let without_reply = match (html.find("<mx-reply>"), html.find("</mx-reply>")) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{}", &html[..start], &html[end + "</mx-reply>".len()..])
        }
        _ => html.to_owned(),
    };
    let lines = html2text::config::rich()
        .no_link_wrapping()
        .lines_from_read(without_reply.as_bytes(), NO_WRAP)
        .ok()?;
    let mut out: Vec<String> = Vec::new();
    let mut in_pre = false;
    // Empty lines carry no annotation: in a block they wait to see whether the block goes
    // on after them (they are its own) or ends before them.
    let mut empties = 0;
    for line in &lines {
        if in_pre && line.tagged_strings().all(|s| s.s.is_empty()) {
            empties += 1;
            continue;
        }
        let pre = line.tagged_strings().any(|s| {
            s.tag
                .iter()
                .any(|a| matches!(a, RichAnnotation::Preformat(_)))
        });
        if pre != in_pre {
            out.push("```".into());
            in_pre = pre;
        }
        out.extend(std::iter::repeat_n(String::new(), empties));
        empties = 0;
        let mut runs: Vec<Run> = Vec::new();
        let mut link: Option<(String, String)> = None;
        for piece in line.tagged_strings() {
            let url = piece.tag.iter().find_map(|a| match a {
                RichAnnotation::Link(url) => Some(url.clone()),
                _ => None,
            });
            // A link ends where its pieces do: its address goes after its text.
            if link.as_ref().map(|(u, _)| u) != url.as_ref() {
                if let Some((url, text)) = link.take() {
                    after_link(&mut runs, &url, &text);
                }
            }
            if let Some(url) = url {
                link.get_or_insert_with(|| (url, String::new()))
                    .1
                    .push_str(&piece.s);
            }
            let style = if pre {
                Style::PLAIN
            } else {
                style_of(&piece.tag)
            };
            // html2text strikes text through with U+0336 after each character: styling
            // says it once.
            let text = if style.strike {
                piece.s.replace('\u{336}', "")
            } else {
                piece.s.clone()
            };
            runs.push(Run { text, style });
        }
        if let Some((url, text)) = link.take() {
            after_link(&mut runs, &url, &text);
        }
        let text = if pre {
            runs.iter().map(|r| r.text.as_str()).collect()
        } else {
            styling::render(&runs)
        };
        out.push(text.trim_end().to_owned());
    }
    if in_pre {
        out.push("```".into());
    }
    let text = out.join("\n").trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// What follows a link's text: nothing for a mention or a link that shows its address,
/// else the address.
fn after_link(runs: &mut Vec<Run>, url: &str, text: &str) {
    let mention = url
        .strip_prefix("https://matrix.to/#/")
        .is_some_and(|to| to.starts_with(['@', '#', '!']));
    if mention || text.trim() == url || url.strip_prefix("mailto:") == Some(text.trim()) {
        return;
    }
    runs.push(Run {
        text: format!(" <{url}>"),
        style: Style::PLAIN,
    });
}

fn style_of(tags: &[RichAnnotation]) -> Style {
    let mut style = Style::PLAIN;
    for tag in tags {
        match tag {
            RichAnnotation::Strong => style.bold = true,
            RichAnnotation::Emphasis => style.italic = true,
            RichAnnotation::Strikeout => style.strike = true,
            RichAnnotation::Code => style.code = true,
            _ => {}
        }
    }
    style
}

/// The HTML for a styled body, when it has any styling (spans, quotes, blocks).
pub fn from_styled(body: &str) -> Option<String> {
    let blocks = styling::parse(body);
    let styled = blocks.iter().any(|b| match b {
        Block::Line { quote, runs } => *quote > 0 || runs.iter().any(|r| r.style != Style::PLAIN),
        Block::Pre { .. } => true,
    });
    if !styled {
        return None;
    }
    let mut html = String::new();
    let mut depth = 0;
    let mut first = true;
    for block in &blocks {
        let quote = match block {
            Block::Line { quote, .. } | Block::Pre { quote, .. } => *quote,
        };
        let opening = quote > depth;
        if quote != depth {
            while depth < quote {
                html.push_str("<blockquote>");
                depth += 1;
            }
            while depth > quote {
                html.push_str("</blockquote>");
                depth -= 1;
            }
            first = true;
        }
        match block {
            Block::Line { runs, .. } => {
                if !first && !opening {
                    html.push_str("<br>");
                }
                for run in runs {
                    let tags = tags(run.style);
                    for tag in &tags {
                        html.push_str(&format!("<{tag}>"));
                    }
                    escape(&mut html, &run.text);
                    for tag in tags.iter().rev() {
                        html.push_str(&format!("</{tag}>"));
                    }
                }
            }
            Block::Pre { text, .. } => {
                html.push_str("<pre><code>");
                escape(&mut html, text);
                html.push_str("</code></pre>");
            }
        }
        first = matches!(block, Block::Pre { .. });
    }
    while depth > 0 {
        html.push_str("</blockquote>");
        depth -= 1;
    }
    Some(html)
}

/// The HTML of a body that starts by addressing someone (`nick: …`, the XMPP way): their
/// name as a mention (a pill, to `user_id`), then the rest.
pub fn addressing(body: &str, nick: &str, user_id: &str) -> String {
    let mut html = String::from("<a href=\"https://matrix.to/#/");
    escape(&mut html, user_id);
    html.push_str("\">");
    escape(&mut html, nick);
    html.push_str("</a>");
    let rest = &body[nick.len()..];
    match from_styled(rest) {
        Some(styled) => html.push_str(&styled),
        None => {
            for (i, line) in rest.split('\n').enumerate() {
                if i > 0 {
                    html.push_str("<br>");
                }
                escape(&mut html, line);
            }
        }
    }
    html
}

/// The words of a body that may be nicks: split at whitespace, without the punctuation
/// around them (`bob,` `@bob` `(bob)` are bob). At most 100, for a long message's sake.
pub fn words(body: &str) -> impl Iterator<Item = &str> {
    body.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '-'))
        .filter(|w| !w.is_empty())
        .take(100)
}

/// The nick a body addresses, as XMPP clients write it (`nick: ` or `nick, ` first).
pub fn addressed(body: &str) -> Option<&str> {
    let end = body.find([':', ','])?;
    let nick = &body[..end];
    let after = &body[end + 1..];
    (!nick.is_empty() && !nick.contains('\n') && (after.is_empty() || after.starts_with(' ')))
        .then_some(nick)
}

fn tags(style: Style) -> Vec<&'static str> {
    if style.code {
        return vec!["code"];
    }
    [
        ("strong", style.bold),
        ("em", style.italic),
        ("del", style.strike),
    ]
    .into_iter()
    .filter_map(|(t, on)| on.then_some(t))
    .collect()
}

fn escape(html: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\n' => html.push('\n'),
            c => html.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn styled(html: &str) -> String {
        to_styled(html).unwrap()
    }

    #[test]
    fn html_becomes_styling() {
        assert_eq!(
            styled("Hello <b>bold</b>, <em>it</em> <del>gone</del> <code>x</code>"),
            "Hello *bold*, _it_ ~gone~ `x`"
        );
        assert_eq!(styled("<strong><i>both</i></strong>"), "*_both_*");
        assert_eq!(
            styled("<pre><code>let *x* = 1;\nok</code></pre><p>after</p>"),
            "```\nlet *x* = 1;\nok\n```\n\nafter"
        );
        assert_eq!(
            styled("<pre><code>one\n\ntwo</code></pre>"),
            "```\none\n\ntwo\n```"
        );
        assert_eq!(
            styled("<blockquote>quoted <b>b</b></blockquote>answer"),
            "> quoted *b*\n\nanswer"
        );
        assert_eq!(styled("a &amp; b &lt;c&gt;"), "a & b <c>");
        assert_eq!(styled("line<br>next"), "line\nnext");
    }

    #[test]
    fn links_keep_their_address_and_mentions_their_name() {
        assert_eq!(
            styled(r#"see <a href="https://example.org/">the site</a> now"#),
            "see the site <https://example.org/> now"
        );
        assert_eq!(
            styled(r#"<a href="https://example.org/">https://example.org/</a>"#),
            "https://example.org/"
        );
        assert_eq!(
            styled(r#"<a href="https://matrix.to/#/@bob:hs">Bob</a>: hi"#),
            "Bob: hi"
        );
    }

    #[test]
    fn reply_fallbacks_and_empty_html_go() {
        assert_eq!(
            styled("<mx-reply><blockquote>earlier</blockquote></mx-reply>now"),
            "now"
        );
        assert_eq!(to_styled("<p></p>"), None);
    }

    #[test]
    fn words_are_what_may_be_nicks() {
        let words: Vec<&str> = words("hey @bob, (carol) and *dave*: x-y_z!").collect();
        assert_eq!(words, ["hey", "bob", "carol", "and", "dave", "x-y_z"]);
    }

    #[test]
    fn addressing_someone_mentions_them() {
        assert_eq!(addressed("Bob: hi"), Some("Bob"));
        assert_eq!(addressed("Bob Smith, hi"), Some("Bob Smith"));
        assert_eq!(addressed("see http://x"), None);
        assert_eq!(addressed("no address"), None);
        assert_eq!(
            addressing("B<b>: *hi*\nthere", "B<b>", "@b:hs"),
            "<a href=\"https://matrix.to/#/@b:hs\">B&lt;b&gt;</a>: <strong>hi</strong><br>there"
        );
        assert_eq!(
            addressing("Bob: a < b", "Bob", "@b:hs"),
            "<a href=\"https://matrix.to/#/@b:hs\">Bob</a>: a &lt; b"
        );
        // And back: the pill is the name.
        assert_eq!(
            to_styled(&addressing("Bob: *hi*", "Bob", "@b:hs")).unwrap(),
            "Bob: *hi*"
        );
    }

    #[test]
    fn styling_becomes_html() {
        assert_eq!(from_styled("plain text, 2*3*4"), None);
        assert_eq!(
            from_styled("a *b* _c_ ~d~ `<e>`").unwrap(),
            "a <strong>b</strong> <em>c</em> <del>d</del> <code>&lt;e&gt;</code>"
        );
        assert_eq!(
            from_styled("> quoted\n> more\nanswer\n```\n*raw* <x>\n```").unwrap(),
            "<blockquote>quoted<br>more</blockquote>answer<pre><code>*raw* &lt;x&gt;</code></pre>"
        );
        // There and back (a quote set apart by an empty line, as HTML lays blocks out).
        let body = "say *this* _loud_\n> and `that`";
        assert_eq!(
            to_styled(&from_styled(body).unwrap()).unwrap(),
            "say *this* _loud_\n\n> and `that`"
        );
    }
}
