//! Terminal input bytes to [`Key`]s and pastes: a pure, incremental decoder.
//!
//! Why not crossterm's event reader: it reads the terminal 1024 bytes at a time
//! and returns as soon as one event is parsed, so with more than 1 KiB arriving
//! at once (a paste into a terminal without bracketed paste, or typed by tmux)
//! the rest stays in the kernel until the next key press: its edge-triggered
//! poll is not woken again for data that was already there. This decoder is
//! fed whatever one read returned, all of it, so nothing waits.
//!
//! It knows what xterm-like terminals (xterm, tmux, screen, VTE, kitty's legacy
//! mode) send for the keys this client uses; anything else is [`Key::Other`].

use std::collections::VecDeque;

use crate::editor::Key;

/// A bracketed paste larger than this is refused (its bytes are dropped as they
/// come, so memory stays bounded).
pub(crate) const PASTE_MAX_BYTES: usize = 1 << 20;

const PASTE_END: &[u8] = b"\x1b[201~";

/// What the terminal sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TermInput {
    Key(Key),
    /// A bracketed paste, whole (invalid UTF-8 replaced).
    Paste(String),
    /// A bracketed paste over [`PASTE_MAX_BYTES`]; its size.
    PasteTooLarge(usize),
    /// The terminal window came to the front (`true`) or left it.
    Focus(bool),
}

#[derive(Debug, Default)]
pub(crate) struct KeyDecoder {
    /// An incomplete sequence or character from the end of the last read.
    pending: Vec<u8>,
    /// Inside a bracketed paste: what it holds so far, and its full size.
    paste: Option<(Vec<u8>, usize)>,
}

impl KeyDecoder {
    /// Decodes `bytes` (one read's worth) into `out`. A sequence cut by the end
    /// of the read is kept for the next call, except a lone ESC, which is the
    /// Esc key (terminals send a sequence in one write).
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut VecDeque<TermInput>) {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(bytes);
        let mut i = 0;
        while i < buf.len() {
            if let Some((held, size)) = &mut self.paste {
                // Look for the end marker from where it could start.
                let rest = &buf[i..];
                match find(rest, PASTE_END) {
                    Some(at) => {
                        *size += at;
                        if held.len() + at <= PASTE_MAX_BYTES {
                            held.extend_from_slice(&rest[..at]);
                        }
                        let (held, size) = self.paste.take().expect("inside a paste");
                        out.push_back(if size > PASTE_MAX_BYTES {
                            TermInput::PasteTooLarge(size)
                        } else {
                            TermInput::Paste(String::from_utf8_lossy(&held).into_owned())
                        });
                        i += at + PASTE_END.len();
                    }
                    None => {
                        // Keep a tail that may be the start of the marker.
                        let keep = (1..PASTE_END.len())
                            .rev()
                            .find(|&n| {
                                rest.len() >= n && PASTE_END.starts_with(&rest[rest.len() - n..])
                            })
                            .unwrap_or(0);
                        let take = rest.len() - keep;
                        *size += take;
                        let room = PASTE_MAX_BYTES.saturating_sub(held.len());
                        held.extend_from_slice(&rest[..take.min(room)]);
                        self.pending = rest[take..].to_vec();
                        return;
                    }
                }
                continue;
            }
            match decode_one(&buf[i..]) {
                Decoded::Key(key, used) => {
                    out.push_back(TermInput::Key(key));
                    i += used;
                }
                Decoded::PasteStart(used) => {
                    self.paste = Some((Vec::new(), 0));
                    i += used;
                }
                Decoded::Focus(front, used) => {
                    out.push_back(TermInput::Focus(front));
                    i += used;
                }
                Decoded::Incomplete => {
                    self.pending = buf[i..].to_vec();
                    return;
                }
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

enum Decoded {
    Key(Key, usize),
    PasteStart(usize),
    Focus(bool, usize),
    Incomplete,
}

/// The first key in `b` (not empty) and how many bytes it took.
fn decode_one(b: &[u8]) -> Decoded {
    match b[0] {
        0x1b => match b.get(1) {
            None => Decoded::Key(Key::Esc, 1),
            Some(b'[') => csi(b),
            Some(b'O') => match b.get(2) {
                None => Decoded::Incomplete,
                Some(&f) => Decoded::Key(final_key(f, 1), 3),
            },
            Some(0x1b) => Decoded::Key(Key::Esc, 1),
            Some(_) => match decode_one(&b[1..]) {
                // ESC before a key is Alt with it.
                Decoded::Key(Key::Char(c), used) => Decoded::Key(alt(c), used + 1),
                Decoded::Key(_, used) => Decoded::Key(Key::Other, used + 1),
                other => other,
            },
        },
        b'\r' | b'\n' => Decoded::Key(Key::Enter, 1),
        b'\t' => Decoded::Key(Key::Tab, 1),
        0x7f | 0x08 => Decoded::Key(Key::Backspace, 1),
        c @ 0x01..=0x1a => Decoded::Key(ctrl(c - 1 + b'a'), 1),
        0x00..=0x1f => Decoded::Key(Key::Other, 1),
        lead => {
            let len = match lead {
                0x20..=0x7f => 1,
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                // Not a character start: skip the byte.
                _ => return Decoded::Key(Key::Other, 1),
            };
            if b.len() < len {
                return Decoded::Incomplete;
            }
            match std::str::from_utf8(&b[..len]) {
                Ok(s) => Decoded::Key(Key::Char(s.chars().next().expect("one char")), len),
                Err(_) => Decoded::Key(Key::Other, 1),
            }
        }
    }
}

/// `ESC [ params final`.
fn csi(b: &[u8]) -> Decoded {
    let Some(end) = b[2..].iter().position(|&c| (0x40..=0x7e).contains(&c)) else {
        // Parameters so far; a sequence longer than any we know is dropped.
        return if b.len() > 32 {
            Decoded::Key(Key::Other, b.len())
        } else {
            Decoded::Incomplete
        };
    };
    let used = 2 + end + 1;
    let params = std::str::from_utf8(&b[2..2 + end]).unwrap_or("");
    let mut nums = params.split(';').map(|p| p.parse::<u32>().unwrap_or(1));
    let first = nums.next().unwrap_or(1);
    let modifier = nums.next().unwrap_or(1);
    let key = match b[2 + end] {
        // Focus reports: `ESC [ I` in front, `ESC [ O` behind.
        b'I' if params.is_empty() => return Decoded::Focus(true, used),
        b'O' if params.is_empty() => return Decoded::Focus(false, used),
        b'~' => match first {
            1 | 7 => Key::Home,
            4 | 8 => Key::End,
            3 => Key::Delete,
            5 => Key::PageUp,
            6 => Key::PageDown,
            200 => return Decoded::PasteStart(used),
            _ => Key::Other,
        },
        f => final_key(f, modifier),
    };
    Decoded::Key(key, used)
}

/// The key of a CSI or SS3 final byte, with xterm's modifier parameter
/// (1 none, 3 Alt, 5 Ctrl).
fn final_key(f: u8, modifier: u32) -> Key {
    let ctrl = modifier.saturating_sub(1) & 4 != 0;
    let alt = modifier.saturating_sub(1) & 2 != 0;
    match f {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' if ctrl => Key::WordRight,
        b'D' if ctrl => Key::WordLeft,
        b'C' if alt => Key::NextView,
        b'D' if alt => Key::PrevView,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        _ => Key::Other,
    }
}

/// Ctrl with a letter.
fn ctrl(c: u8) -> Key {
    match c {
        b'a' => Key::Home,
        b'b' => Key::Left,
        b'c' => Key::Interrupt,
        b'd' => Key::CtrlD,
        b'e' => Key::End,
        b'f' => Key::Search,
        b'k' => Key::KillToEnd,
        b'l' => Key::Redraw,
        b'n' => Key::NextView,
        b'p' => Key::PrevView,
        b'r' => Key::Search,
        b'u' => Key::KillToStart,
        b'w' => Key::KillWordBack,
        b'y' => Key::Yank,
        _ => Key::Other,
    }
}

/// Alt with a character.
fn alt(c: char) -> Key {
    match c {
        'b' | 'B' => Key::WordLeft,
        'f' | 'F' => Key::WordRight,
        't' | 'T' => Key::ToggleSeconds,
        '1'..='9' => Key::View(c as usize - '1' as usize),
        '0' => Key::View(9),
        _ => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> Vec<TermInput> {
        let mut d = KeyDecoder::default();
        let mut out = VecDeque::new();
        for c in chunks {
            d.push(c, &mut out);
        }
        out.into_iter().collect()
    }

    fn keys(chunks: &[&[u8]]) -> Vec<Key> {
        decode(chunks)
            .into_iter()
            .map(|t| match t {
                TermInput::Key(k) => k,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn more_than_a_kilobyte_at_once_is_all_decoded() {
        let typed = "a".repeat(1500) + "0123456789";
        let got = keys(&[typed.as_bytes()]);
        assert_eq!(got.len(), 1510);
        assert_eq!(got.last(), Some(&Key::Char('9')));
    }

    #[test]
    fn readline_and_cursor_keys() {
        assert_eq!(
            keys(&[b"\x01\x05\x17\x15\x0b\x19\x03\x04\x0c\x0e\x10\r\t\x7f"]),
            [
                Key::Home,
                Key::End,
                Key::KillWordBack,
                Key::KillToStart,
                Key::KillToEnd,
                Key::Yank,
                Key::Interrupt,
                Key::CtrlD,
                Key::Redraw,
                Key::NextView,
                Key::PrevView,
                Key::Enter,
                Key::Tab,
                Key::Backspace
            ]
        );
        assert_eq!(
            keys(&[b"\x1b[A\x1b[B\x1b[C\x1b[D\x1bOH\x1b[F\x1b[1~\x1b[4~\x1b[3~\x1b[5~\x1b[6~"]),
            [
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Delete,
                Key::PageUp,
                Key::PageDown
            ]
        );
        assert_eq!(
            keys(&[b"\x1b[1;5D\x1b[1;5C\x1b[1;3D\x1b[1;3C\x1bb\x1bf\x1b2\x1b0"]),
            [
                Key::WordLeft,
                Key::WordRight,
                Key::PrevView,
                Key::NextView,
                Key::WordLeft,
                Key::WordRight,
                Key::View(1),
                Key::View(9)
            ]
        );
    }

    #[test]
    fn a_lone_escape_is_the_esc_key_and_cut_sequences_wait() {
        assert_eq!(keys(&[b"\x1b"]), [Key::Esc]);
        assert_eq!(keys(&[b"\x1b[", b"1;5", b"C"]), [Key::WordRight]);
        assert_eq!(keys(&["é日".as_bytes()]), [Key::Char('é'), Key::Char('日')]);
        let bytes = "日".as_bytes();
        assert_eq!(keys(&[&bytes[..1], &bytes[1..]]), [Key::Char('日')]);
    }

    #[test]
    fn focus_reports() {
        assert_eq!(
            decode(&[b"\x1b[O\x1b[Ix"]),
            [
                TermInput::Focus(false),
                TermInput::Focus(true),
                TermInput::Key(Key::Char('x'))
            ]
        );
        // SS3 (ESC O) is not a focus report.
        assert_eq!(keys(&[b"\x1bOA"]), [Key::Up]);
    }

    #[test]
    fn bracketed_paste_arrives_as_one_even_when_cut() {
        let got = decode(&[b"x\x1b[200~one\r\ntw", b"o\x1b[20", b"1~y"]);
        assert_eq!(
            got,
            [
                TermInput::Key(Key::Char('x')),
                TermInput::Paste("one\r\ntwo".to_owned()),
                TermInput::Key(Key::Char('y'))
            ]
        );
    }

    #[test]
    fn a_huge_paste_is_refused_with_bounded_memory() {
        let mut d = KeyDecoder::default();
        let mut out = VecDeque::new();
        d.push(b"\x1b[200~", &mut out);
        let chunk = vec![b'z'; 64 * 1024];
        for _ in 0..20 {
            d.push(&chunk, &mut out);
        }
        assert!(d.paste.as_ref().unwrap().0.len() <= PASTE_MAX_BYTES);
        d.push(b"\x1b[201~", &mut out);
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            [TermInput::PasteTooLarge(20 * 64 * 1024)]
        );
    }
}
