//! The input line: readline-style editing as a pure model, shared by the line
//! mode and the full-screen mode. Keys come in as [`Key`]s (decoded from the
//! terminal's bytes by `keys.rs`), so tests need no terminal.
//!
//! The line never holds more than `max` bytes: what would make it longer is
//! refused before anything is drawn (a 5000-character paste is one error, not
//! seconds of redrawing), and it never holds a control character other than TAB.

use crate::secret;

/// History kept for Up/Down, in lines.
const HISTORY_MAX: usize = 500;

/// What a key asks for, before any mode decides what it means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Char(char),
    Enter,
    Backspace,
    /// Delete, or Ctrl+D on a non-empty line.
    Delete,
    Left,
    Right,
    /// Ctrl+Left, Alt+B.
    WordLeft,
    /// Ctrl+Right, Alt+F.
    WordRight,
    /// Home, Ctrl+A.
    Home,
    /// End, Ctrl+E.
    End,
    /// Ctrl+W: the word before the cursor, into the kill buffer.
    KillWordBack,
    /// Ctrl+U: up to the cursor.
    KillToStart,
    /// Ctrl+K: from the cursor on.
    KillToEnd,
    /// Ctrl+Y: the last kill, at the cursor.
    Yank,
    Up,
    Down,
    Tab,
    /// Ctrl+C.
    Interrupt,
    /// Ctrl+D (quits on an empty line, deletes otherwise).
    CtrlD,
    /// Ctrl+L.
    Redraw,
    Esc,
    PageUp,
    PageDown,
    /// Ctrl+N, Alt+Right.
    NextView,
    /// Ctrl+P, Alt+Left.
    PrevView,
    /// Alt+1 … Alt+9, Alt+0 (the tenth).
    View(usize),
    /// Ctrl+R or Ctrl+F: search the scrollback (full-screen).
    Search,
    /// Alt+T: timestamps with seconds (full-screen).
    ToggleSeconds,
    /// A key this client does not use.
    Other,
}

/// What an edit did, for the caller to redraw or to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    /// The line or the cursor changed.
    Changed,
    /// Nothing to do (a motion at the end, an empty kill buffer).
    Same,
    /// The text would not fit the line's byte limit: nothing was inserted.
    TooLong { bytes: usize },
}

/// The line being typed, its cursor, the kill buffer and the history.
#[derive(Debug)]
pub(crate) struct Editor {
    line: String,
    /// A byte index at a character boundary.
    cursor: usize,
    kill: String,
    history: Vec<String>,
    /// Index into `history` while Up/Down browse it; `draft` holds the line
    /// that was being typed.
    browsing: Option<usize>,
    draft: String,
    max: usize,
}

impl Editor {
    /// An empty line that holds at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            line: String::new(),
            cursor: 0,
            kill: String::new(),
            history: Vec::new(),
            browsing: None,
            draft: String::new(),
            max,
        }
    }

    pub(crate) fn line(&self) -> &str {
        &self.line
    }

    /// The cursor, as a byte index into [`line`](Self::line).
    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.line.is_empty()
    }

    /// Replaces the line (completion), cursor at `cursor`, clamped to the limit.
    pub(crate) fn set(&mut self, line: String, cursor: usize) -> Edit {
        if line.len() > self.max {
            return Edit::TooLong { bytes: line.len() };
        }
        self.cursor = cursor.min(line.len());
        while !line.is_char_boundary(self.cursor) {
            self.cursor -= 1;
        }
        self.line = line;
        Edit::Changed
    }

    /// Inserts `text` at the cursor; control characters other than TAB are
    /// dropped (they would steer the terminal when drawn), and nothing is
    /// inserted when the line would exceed its limit.
    pub(crate) fn insert(&mut self, text: &str) -> Edit {
        let clean: String = text
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        if clean.is_empty() {
            return Edit::Same;
        }
        let bytes = self.line.len() + clean.len();
        if bytes > self.max {
            return Edit::TooLong { bytes };
        }
        self.line.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
        Edit::Changed
    }

    /// The line as it may be drawn (passwords masked, `secret.rs`) and the
    /// cursor's byte offset in it.
    pub(crate) fn shown(&self) -> (std::borrow::Cow<'_, str>, usize) {
        let cursor = secret::mask(&self.line[..self.cursor]).len();
        (secret::mask(&self.line), cursor)
    }

    /// Takes the line to send (recording it in the history) and empties the editor.
    pub(crate) fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.line);
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        // A line with a password is not kept: Up would show it (and it
        // would sit in memory for the whole session).
        if !line.is_empty() && !secret::holds_password(&line) && self.history.last() != Some(&line)
        {
            if self.history.len() == HISTORY_MAX {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// Empties the line without sending it (Ctrl+C); it stays in the kill
    /// buffer, so Ctrl+Y brings it back.
    pub(crate) fn clear(&mut self) {
        if !self.line.is_empty() {
            self.kill = std::mem::take(&mut self.line);
        }
        self.cursor = 0;
        self.browsing = None;
    }

    fn prev_boundary(&self, at: usize) -> usize {
        self.line[..at]
            .char_indices()
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self, at: usize) -> usize {
        self.line[at..]
            .chars()
            .next()
            .map_or(at, |c| at + c.len_utf8())
    }

    /// Start of the word before `at` (readline: skip spaces, then non-spaces).
    fn word_start(&self, at: usize) -> usize {
        let before = &self.line[..at];
        let trimmed = before.trim_end_matches(|c: char| !c.is_alphanumeric());
        trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| !c.is_alphanumeric())
            .map_or(0, |(i, c)| i + c.len_utf8())
    }

    /// End of the word after `at`.
    fn word_end(&self, at: usize) -> usize {
        let after = &self.line[at..];
        let skip = after.len()
            - after
                .trim_start_matches(|c: char| !c.is_alphanumeric())
                .len();
        let rest = &after[skip..];
        let word = rest
            .char_indices()
            .find(|(_, c)| !c.is_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        at + skip + word
    }

    fn moved(&mut self, to: usize) -> Edit {
        if to == self.cursor {
            Edit::Same
        } else {
            self.cursor = to;
            Edit::Changed
        }
    }

    fn kill_range(&mut self, from: usize, to: usize) -> Edit {
        if from == to {
            return Edit::Same;
        }
        self.kill = self.line[from..to].to_owned();
        self.line.replace_range(from..to, "");
        self.cursor = from;
        Edit::Changed
    }

    fn history_go(&mut self, to: Option<usize>) -> Edit {
        if self.browsing.is_none() {
            self.draft = self.line.clone();
        }
        self.browsing = to;
        self.line = match to {
            Some(i) => self.history[i].clone(),
            None => std::mem::take(&mut self.draft),
        };
        self.cursor = self.line.len();
        Edit::Changed
    }

    /// Applies an editing key; `None` for keys that are not about the line.
    pub(crate) fn key(&mut self, key: &Key) -> Option<Edit> {
        Some(match key {
            Key::Char(c) => self.insert(c.encode_utf8(&mut [0; 4])),
            Key::Backspace => {
                let from = self.prev_boundary(self.cursor);
                if from == self.cursor {
                    Edit::Same
                } else {
                    self.line.replace_range(from..self.cursor, "");
                    self.cursor = from;
                    Edit::Changed
                }
            }
            Key::Delete | Key::CtrlD => {
                let to = self.next_boundary(self.cursor);
                if to == self.cursor {
                    Edit::Same
                } else {
                    self.line.replace_range(self.cursor..to, "");
                    Edit::Changed
                }
            }
            Key::Left => self.moved(self.prev_boundary(self.cursor)),
            Key::Right => self.moved(self.next_boundary(self.cursor)),
            Key::WordLeft => self.moved(self.word_start(self.cursor)),
            Key::WordRight => self.moved(self.word_end(self.cursor)),
            Key::Home => self.moved(0),
            Key::End => self.moved(self.line.len()),
            Key::KillWordBack => self.kill_range(self.word_start(self.cursor), self.cursor),
            Key::KillToStart => self.kill_range(0, self.cursor),
            Key::KillToEnd => self.kill_range(self.cursor, self.line.len()),
            Key::Yank => {
                let kill = self.kill.clone();
                self.insert(&kill)
            }
            Key::Up => match self.browsing {
                None if self.history.is_empty() => Edit::Same,
                None => self.history_go(Some(self.history.len() - 1)),
                Some(0) => Edit::Same,
                Some(i) => self.history_go(Some(i - 1)),
            },
            Key::Down => match self.browsing {
                None => Edit::Same,
                Some(i) if i + 1 < self.history.len() => self.history_go(Some(i + 1)),
                Some(_) => self.history_go(None),
            },
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Editor {
        let mut e = Editor::new(4096);
        assert_eq!(e.insert(s), Edit::Changed);
        e
    }

    #[test]
    fn readline_motions_and_kills() {
        let mut e = typed("hello big world");
        e.key(&Key::WordLeft);
        assert_eq!(&e.line()[e.cursor()..], "world");
        e.key(&Key::WordLeft);
        assert_eq!(&e.line()[e.cursor()..], "big world");
        e.key(&Key::WordRight);
        assert_eq!(&e.line()[e.cursor()..], " world");
        e.key(&Key::KillToEnd);
        assert_eq!(e.line(), "hello big");
        e.key(&Key::Home);
        e.key(&Key::Yank);
        assert_eq!(e.line(), " worldhello big");
        e.key(&Key::End);
        e.key(&Key::KillWordBack);
        assert_eq!(e.line(), " worldhello ");
        e.key(&Key::KillToStart);
        assert_eq!(e.line(), "");
        e.key(&Key::Yank);
        assert_eq!(e.line(), " worldhello ");
        assert_eq!(e.key(&Key::Enter), None, "Enter is the caller's");
    }

    #[test]
    fn multibyte_characters_move_as_one() {
        let mut e = typed("é日x");
        e.key(&Key::Left);
        e.key(&Key::Left);
        e.key(&Key::Backspace);
        assert_eq!(e.line(), "日x");
        e.key(&Key::Delete);
        assert_eq!(e.line(), "x");
        assert_eq!(e.cursor(), 0);
    }

    #[test]
    fn the_limit_is_kept_before_drawing() {
        let mut e = Editor::new(10);
        assert_eq!(e.insert("0123456789"), Edit::Changed);
        assert_eq!(e.insert("x"), Edit::TooLong { bytes: 11 });
        assert_eq!(e.line(), "0123456789");
        let mut e = Editor::new(4096);
        assert_eq!(e.insert(&"y".repeat(5000)), Edit::TooLong { bytes: 5000 });
        assert!(e.is_empty());
    }

    #[test]
    fn control_characters_never_enter_the_line() {
        let mut e = typed("a\x1b[2Jb\tc\u{9b}");
        assert_eq!(e.line(), "a[2Jb\tc");
        assert_eq!(e.insert("\x07"), Edit::Same);
    }

    #[test]
    fn history_keeps_the_draft() {
        let mut e = typed("one");
        e.take();
        e.insert("two");
        e.take();
        e.insert("dra");
        e.key(&Key::Up);
        assert_eq!(e.line(), "two");
        e.key(&Key::Up);
        assert_eq!(e.line(), "one");
        assert_eq!(e.key(&Key::Up), Some(Edit::Same));
        e.key(&Key::Down);
        e.key(&Key::Down);
        assert_eq!(e.line(), "dra");
    }

    #[test]
    fn clear_keeps_the_line_for_yank() {
        let mut e = typed("oops");
        e.clear();
        assert!(e.is_empty());
        e.key(&Key::Yank);
        assert_eq!(e.line(), "oops");
    }

    #[test]
    fn a_password_is_masked_and_never_recalled() {
        let mut e = typed("/login bob hunter22");
        assert_eq!(e.shown(), ("/login bob ********".into(), 19));
        e.key(&Key::Home);
        e.key(&Key::Right);
        assert_eq!(e.shown().1, 1);
        e.key(&Key::End);
        let sent = e.take();
        assert_eq!(sent, "/login bob hunter22");
        e.insert("/join rust");
        e.take();
        e.insert("/register hunter22");
        e.take();
        // Up finds only the line without a password.
        e.key(&Key::Up);
        assert_eq!(e.line(), "/join rust");
        e.key(&Key::Up);
        assert_eq!(e.line(), "/join rust");
    }
}
