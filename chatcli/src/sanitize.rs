//! Making text from the network safe to print: nothing it holds can drive the terminal.
//!
//! chatproto already refuses control characters in parsed text, but this module
//! does not rely on it: raw lines that failed to parse are shown too, and a
//! hostile server is not bound by the protocol.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Bidirectional formatting characters. They are not controls, but they reorder
/// what follows them on screen, so a message could show text other than what it
/// holds ("Trojan Source"). The line and paragraph separators end a line in
/// some terminals.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'                // ARABIC LETTER MARK
        | '\u{200e}' | '\u{200f}' // LRM, RLM
        | '\u{202a}'..='\u{202e}' // LRE, RLE, PDF, LRO, RLO
        | '\u{2066}'..='\u{2069}' // LRI, RLI, FSI, PDI
        | '\u{2028}' | '\u{2029}' // line and paragraph separators
    )
}

/// True if `c` must be shown escaped: C0 controls except TAB, DEL, C1 controls
/// and the bidirectional and separator characters above. TAB is valid protocol
/// text and moves the cursor only forward within the line, so it stays.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || is_invisible_format(c)
}

/// `s` with every character that could steer the terminal written out as an
/// escape: `\x1b` for C0 and DEL, `\u{9b}` for C1 and format characters.
/// Borrowed when nothing needed escaping (the common case).
pub(crate) fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// [`sanitize`]d, then cut to at most `max_chars` characters (with `…`), for
/// raw lines that may be megabytes long.
pub(crate) fn sanitize_clipped(s: &str, max_chars: usize) -> String {
    let clipped = match s.char_indices().nth(max_chars) {
        Some((at, _)) => &s[..at],
        None => s,
    };
    let mut out = sanitize(clipped).into_owned();
    if clipped.len() < s.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No byte of the result can start or continue a terminal escape.
    fn assert_inert(s: &str) {
        for c in s.chars() {
            assert!(!needs_escape(c), "{c:?} left in {s:?}");
        }
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in [
            "hello",
            "héllo wörld ✓ 日本",
            "tab\there",
            "back\\slash",
            "",
        ] {
            assert!(matches!(sanitize(s), Cow::Borrowed(b) if b == s), "{s:?}");
        }
    }

    #[test]
    fn hostile_sequences_are_shown_escaped() {
        let cases = [
            // OSC 52: write the victim's clipboard.
            (
                "\x1b]52;c;ZWNobyBwd25lZA==\x07",
                "\\x1b]52;c;ZWNobyBwd25lZA==\\x07",
            ),
            // CSI: clear the screen, move the cursor, recolour.
            ("\x1b[2J", "\\x1b[2J"),
            ("a\x1b[1;1Hb", "a\\x1b[1;1Hb"),
            ("\x1b[31mred", "\\x1b[31mred"),
            // C1 CSI, which some terminals take without ESC.
            ("\u{9b}31m", "\\u{9b}31m"),
            ("\u{9d}0;title\u{9c}", "\\u{9d}0;title\\u{9c}"),
            // OSC 8 hyperlink with ST terminator.
            ("\x1b]8;;http://x\x1b\\link", "\\x1b]8;;http://x\\x1b\\link"),
            // Line overwriting and bells.
            ("fake\rreal", "fake\\x0dreal"),
            ("two\nlines", "two\\x0alines"),
            ("\x08\x08\x7f\x00", "\\x08\\x08\\x7f\\x00"),
            ("ring\x07", "ring\\x07"),
            // Trojan Source: right-to-left override and isolates.
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("\u{2066}x\u{2069}", "\\u{2066}x\\u{2069}"),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            ("\u{2067}\u{2068}", "\\u{2067}\\u{2068}"),
            ("para\u{2029}sep\u{2028}", "para\\u{2029}sep\\u{2028}"),
        ];
        for (input, want) in cases {
            let got = sanitize(input);
            assert_eq!(got, want, "{input:?}");
            assert_inert(&got);
        }
    }

    #[test]
    fn every_control_char_is_escaped() {
        for cp in (0u32..0x20).chain(0x7f..0xa0) {
            let c = char::from_u32(cp).expect("below the surrogates");
            let got = sanitize(&c.to_string()).into_owned();
            if c == '\t' {
                assert_eq!(got, "\t");
            } else {
                assert!(got.starts_with('\\'), "{cp:#x} gave {got:?}");
                assert_inert(&got);
            }
        }
    }

    #[test]
    fn clipping_counts_characters_and_escapes_after_cutting() {
        assert_eq!(sanitize_clipped("short", 10), "short");
        assert_eq!(sanitize_clipped("ééééé", 3), "ééé…");
        assert_eq!(sanitize_clipped("ab\x1b[2J", 3), "ab\\x1b…");
        let huge = "\x1b".repeat(1 << 20);
        let got = sanitize_clipped(&huge, 100);
        assert_eq!(got.chars().count(), 100 * 4 + 1);
        assert_inert(&got);
    }
}
