//! Values from outside, made safe to write into a log line or a terminal.
//!
//! Paths, queries, decoded project names, GraphQL strings, headers, metadata tags, pool
//! descriptions and user agents all come from someone else. Written raw, a CR or LF in one
//! of them starts a new line that looks like any other (a forged `INFO access:` line), an ESC
//! or a C1 control (`U+009B` is a terminal's CSI) drives the terminal of whoever reads the
//! log, and a bidirectional override (`U+202E`) makes the text read backwards. So every
//! character that is a control (C0, DEL, C1) or a bidirectional control is written as an
//! escape: `\n`, `\r`, `\t`, `\x1b`, `\u{9b}`, `\u{202e}`. JSON lines get the same characters
//! as `\u` escapes, which keeps them valid JSON.
//!
//! [`line`] does it to every line both programs log, whatever its source, so no caller of
//! the logger can forget it; it also cuts a text line at [`MAX_LINE`] bytes. Single values
//! that may be long (a path, a reason) are cut sooner with [`bounded`], so the fields after
//! them stay on the line. CLI listings use [`text`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most bytes of one value from outside a log line shows ([`bounded`]).
pub(crate) const MAX_VALUE: usize = 1024;
/// The most bytes of one text log line (the message, before its newline).
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// Whether `c` is written as an escape: a control character (C0, DEL, C1) or one that
/// changes the direction text is shown in.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// How an escaped character is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `\n`, `\x1b`, `\u{9b}`: for text lines and terminals.
    Text,
    /// `\u000a`: inside a JSON string.
    Json,
}

/// Whether any byte of `s` may start an unsafe character: the test is on bytes, so the
/// common case (nothing to escape) costs one pass and no allocation.
fn may_need_escaping(s: &str) -> bool {
    s.bytes()
        .any(|b| b < 0x20 || b == 0x7f || matches!(b, 0xc2 | 0xd8 | 0xe2))
}

fn push_escaped(out: &mut String, c: char, style: Style) {
    // Writing to a String cannot fail.
    let _ = match (style, c) {
        (Style::Text, '\n') => out.write_str("\\n"),
        (Style::Text, '\r') => out.write_str("\\r"),
        (Style::Text, '\t') => out.write_str("\\t"),
        (Style::Text, c) if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
        (Style::Text, c) => write!(out, "\\u{{{:x}}}", c as u32),
        (Style::Json, c) => write!(out, "\\u{:04x}", c as u32),
    };
}

/// `s` with every unsafe character escaped in `style`.
pub(crate) fn escaped(s: &str, style: Style) -> Cow<'_, str> {
    if !may_need_escaping(s) || !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c, style);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` escaped for a terminal: what CLI listings print.
pub fn text(s: &str) -> Cow<'_, str> {
    escaped(s, Style::Text)
}

/// `s` cut to at most `max` bytes (at a character boundary), with a visible marker saying
/// how much was left out.
pub(crate) fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[{} more bytes]", &s[..end], s.len() - end))
}

/// A value from outside for a log line: cut to [`MAX_VALUE`] bytes. (The line it goes into
/// is escaped by [`line`].)
pub(crate) fn value(s: &str) -> Cow<'_, str> {
    bounded(s, MAX_VALUE)
}

/// Makes one formatted log line safe in place: `line` holds the line without its newline.
/// Text lines are escaped and cut at [`MAX_LINE`]; JSON lines (whose C0 controls serde_json
/// already escaped) get DEL, C1 and direction controls escaped inside their strings and are
/// never cut, which would break them.
pub(crate) fn line(line: &mut String, style: Style) {
    if let Cow::Owned(safe) = escaped(line, style) {
        *line = safe;
    }
    if style == Style::Text {
        if let Cow::Owned(cut) = bounded(line, MAX_LINE) {
            *line = cut;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_direction_overrides_are_escaped() {
        let forged = "x\r\n2026-01-01T00:00:00Z INFO  access: id=1 \u{1b}[31m\u{9b}\u{202e}\u{7f}";
        assert_eq!(
            text(forged),
            "x\\r\\n2026-01-01T00:00:00Z INFO  access: id=1 \\x1b[31m\\u{9b}\\u{202e}\\x7f"
        );
        assert_eq!(escaped("a\u{9b}\u{2066}", Style::Json), "a\\u009b\\u2066");
        assert!(matches!(text("plain ünïcode €"), Cow::Borrowed(_)));
    }

    #[test]
    fn escaped_json_stays_json() {
        let value = serde_json::Value::from("a\u{9b}b\u{202e}c\n");
        let mut line = value.to_string();
        super::line(&mut line, Style::Json);
        assert!(!line.chars().any(is_unsafe), "{line}");
        let back: String = serde_json::from_str(&line).unwrap();
        assert_eq!(back, "a\u{9b}b\u{202e}c\n");
    }

    #[test]
    fn long_values_and_lines_are_cut_with_a_marker() {
        let long = "é".repeat(1000); // 2000 bytes
        let cut = bounded(&long, 1001);
        assert!(cut.starts_with(&"é".repeat(500)));
        assert!(cut.ends_with("…[1000 more bytes]"), "{cut}");
        let mut line = "a".repeat(MAX_LINE + 10);
        super::line(&mut line, Style::Text);
        assert!(line.ends_with("…[10 more bytes]"));
        assert!(line.len() < MAX_LINE + 40);
    }
}
