//! The line mode on a terminal: output scrolls up the terminal as plain lines
//! (the terminal's own scrollback keeps them), and the bottom row is the prompt
//! with the line being typed.
//!
//! The prompt row never wraps: a line wider than the terminal scrolls
//! sideways to keep the cursor in view. So sending or clearing a long line
//! leaves no stale rows, a 4000-byte line costs one row to draw, and a redraw
//! (each key, Ctrl+L) rewrites only that row, which leaves nothing behind in
//! tmux's scrollback.

use std::io::{self, Write};

use unicode_width::UnicodeWidthChar;

/// What the prompt row shows: `prompt` then the visible part of `line`, the
/// cursor at display column `cursor_col`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PromptRow {
    pub(crate) text: String,
    pub(crate) cursor_col: usize,
}

/// Display width of a character in the input: TAB is drawn as one space.
fn char_width(c: char) -> usize {
    if c == '\t' {
        1
    } else {
        c.width().unwrap_or(0)
    }
}

/// Lays out the prompt row for a terminal `width` columns wide. Pure.
pub(crate) fn prompt_row(prompt: &str, line: &str, cursor: usize, width: usize) -> PromptRow {
    // The last column stays free for the cursor at the end of the line.
    let prompt_w: usize = prompt.chars().map(char_width).sum();
    let (prompt, prompt_w) = if prompt_w + 2 > width {
        // A tiny terminal: the prompt gives way to the line.
        ("", 0)
    } else {
        (prompt, prompt_w)
    };
    let room = width.saturating_sub(prompt_w + 1).max(1);
    let before: Vec<char> = line[..cursor].chars().collect();
    // Show as much as fits before the cursor, then what fits after it.
    let mut start = before.len();
    let mut used = 0;
    while start > 0 && used + char_width(before[start - 1]) <= room {
        start -= 1;
        used += char_width(before[start]);
    }
    let cursor_col = prompt_w + used;
    let mut text = String::from(prompt);
    text.extend(
        before[start..]
            .iter()
            .map(|&c| if c == '\t' { ' ' } else { c }),
    );
    for c in line[cursor..].chars() {
        if used + char_width(c) > room {
            break;
        }
        used += char_width(c);
        text.push(if c == '\t' { ' ' } else { c });
    }
    PromptRow { text, cursor_col }
}

/// Writes to the terminal in raw mode: output above, the prompt row at the bottom.
#[derive(Debug, Default)]
pub(crate) struct LineScreen {
    /// The prompt row as last drawn, so an unchanged row is not redrawn.
    drawn: Option<PromptRow>,
}

impl LineScreen {
    /// Prints `text` (lines ending in LF, already painted) above the prompt,
    /// which is drawn again by the next [`draw`](Self::draw).
    pub(crate) fn print(&mut self, text: &str) {
        let mut out = io::stdout().lock();
        // Raw mode does not turn LF into CR LF.
        let _ = out.write_all(b"\r\x1b[K");
        let _ = out.write_all(text.replace('\n', "\r\n").as_bytes());
        let _ = out.flush();
        self.drawn = None;
    }

    /// Draws the prompt row, unless it is what the screen already shows.
    pub(crate) fn draw(&mut self, row: PromptRow) {
        if self.drawn.as_ref() == Some(&row) {
            return;
        }
        let mut out = io::stdout().lock();
        let _ = write!(out, "\r\x1b[K{}\r", row.text);
        if row.cursor_col > 0 {
            let _ = write!(out, "\x1b[{}C", row.cursor_col);
        }
        let _ = out.flush();
        self.drawn = Some(row);
    }

    /// Ctrl+L: clears the screen; the prompt is drawn again at the top.
    pub(crate) fn clear(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\x1b[H\x1b[2J");
        let _ = out.flush();
        self.drawn = None;
    }

    /// Leaves the prompt row empty, the cursor at its start, for the shell.
    pub(crate) fn finish(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\r\x1b[K");
        let _ = out.flush();
    }

    /// Forgets what is drawn (after a resize).
    pub(crate) fn invalidate(&mut self) {
        self.drawn = None;
    }

    /// Rings the bell.
    pub(crate) fn bell(&mut self) {
        let mut out = io::stdout().lock();
        let _ = out.write_all(b"\x07");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_lines_show_whole() {
        let r = prompt_row("[Global]> ", "hello", 5, 40);
        assert_eq!(r.text, "[Global]> hello");
        assert_eq!(r.cursor_col, 15);
        let r = prompt_row("[Global]> ", "hello", 0, 40);
        assert_eq!(r.cursor_col, 10);
    }

    #[test]
    fn long_lines_scroll_sideways_and_never_wrap() {
        let line = "x".repeat(5000);
        let r = prompt_row("[Global]> ", &line, line.len(), 40);
        assert!(r.text.chars().count() < 40, "{}", r.text.len());
        assert_eq!(r.cursor_col, 39);
        let r = prompt_row("[Global]> ", &line, 0, 40);
        assert_eq!(r.cursor_col, 10);
        assert_eq!(r.text.chars().count(), 39);
    }

    #[test]
    fn wide_characters_and_tabs_count_their_columns() {
        let r = prompt_row("> ", "日本\tx", "日本\tx".len(), 80);
        assert_eq!(r.text, "> 日本 x");
        assert_eq!(r.cursor_col, 2 + 4 + 1 + 1);
    }

    #[test]
    fn a_tiny_terminal_drops_the_prompt() {
        let r = prompt_row("[a-long-group-name]> ", "hi", 2, 10);
        assert_eq!(r.text, "hi");
        assert_eq!(r.cursor_col, 2);
    }
}
