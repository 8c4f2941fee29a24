//! [`LineFramer`]: bytes in, bounded lines out.

use std::collections::VecDeque;
use std::ops::Range;

use crate::FrameError;

/// The default limit for client lines (what a server frames): 4096 bytes, line
/// ending excluded (PROTOCOL.md section 1).
pub const DEFAULT_MAX_LINE: usize = 4096;

/// A limit for server lines (what a client frames): 4 MiB. Server lines have no
/// protocol limit, and `USERS` grows by about 33 bytes per user, so a client
/// framing with [`DEFAULT_MAX_LINE`] would drop large listings. PROTOCOL.md asks
/// clients to accept at least 1 MiB; this fits about 120,000 names.
pub const EVENT_LINE_LIMIT: usize = 4 << 20;

/// Splits a byte stream into lines, enforcing a length limit while buffering.
///
/// A line ends with LF; a CR right before the LF is dropped. A line longer than
/// the limit is reported once as [`FrameError::LineTooLong`] and everything up to
/// its LF is discarded without being stored, so a peer cannot make the framer
/// hold more than the limit plus the chunk last pushed. A line that is not UTF-8
/// is reported as [`FrameError::BadEncoding`]. Either way the next line is
/// framed normally.
///
/// Call [`next_line`](Self::next_line) until it returns `None` after each
/// [`push`](Self::push); lines left undrained stay buffered.
///
/// ```
/// use chatproto::{FrameError, LineFramer};
/// let mut framer = LineFramer::new(8);
/// framer.push(b"hi\r\nthis is too long\nok");
/// assert_eq!(framer.next_line(), Some(Ok("hi")));
/// assert_eq!(framer.next_line(), Some(Err(FrameError::LineTooLong { max: 8 })));
/// assert_eq!(framer.next_line(), None); // "ok" waits for its LF
/// framer.push(b"\n");
/// assert_eq!(framer.next_line(), Some(Ok("ok")));
/// ```
#[derive(Debug)]
pub struct LineFramer {
    max_line: usize,
    /// Complete lines not yet handed out, then the current partial line.
    buf: Vec<u8>,
    /// Where the partial line starts in `buf`.
    partial_start: usize,
    /// Complete lines (ranges into `buf`, ending excluded) and errors, in order.
    ready: VecDeque<Framed>,
    /// True while skipping the rest of an overlong line.
    discarding: bool,
}

#[derive(Debug)]
enum Framed {
    Line(Range<usize>),
    Error(FrameError),
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes, line ending excluded.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            buf: Vec::new(),
            partial_start: 0,
            ready: VecDeque::new(),
            discarding: false,
        }
    }

    /// The line limit in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes held: undrained lines plus the partial line.
    pub fn buffered(&self) -> usize {
        if self.ready.is_empty() {
            self.buf.len() - self.partial_start
        } else {
            self.buf.len()
        }
    }

    /// True if a line (or an error) is ready for [`next_line`](Self::next_line).
    pub fn has_line(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Feeds received bytes.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.ready.is_empty() && self.partial_start > 0 {
            // Everything before the partial line was handed out: forget it.
            self.buf.drain(..self.partial_start);
            self.partial_start = 0;
        }
        while !data.is_empty() {
            let lf = data.iter().position(|&b| b == b'\n');
            if self.discarding {
                match lf {
                    Some(i) => {
                        self.discarding = false;
                        data = &data[i + 1..];
                        continue;
                    }
                    None => return,
                }
            }
            let (piece, rest) = match lf {
                Some(i) => (&data[..i], Some(&data[i + 1..])),
                None => (data, None),
            };
            // A line may hold one byte past the limit before its LF: a CR that the
            // LF strips. `finish_line` checks the exact length.
            if self.buf.len() - self.partial_start + piece.len() > self.max_line + 1 {
                self.buf.truncate(self.partial_start);
                self.ready.push_back(Framed::Error(FrameError::LineTooLong {
                    max: self.max_line,
                }));
                match rest {
                    Some(r) => data = r,
                    None => {
                        self.discarding = true;
                        return;
                    }
                }
                continue;
            }
            self.buf.extend_from_slice(piece);
            match rest {
                Some(r) => {
                    self.finish_line();
                    data = r;
                }
                None => return,
            }
        }
    }

    /// The partial line just got its LF: check it and queue it.
    fn finish_line(&mut self) {
        let mut end = self.buf.len();
        if self.buf[self.partial_start..end].last() == Some(&b'\r') {
            end -= 1;
        }
        let range = self.partial_start..end;
        // Length first, as `push` does for longer lines: a line one byte over the
        // limit is too long whatever its bytes (found by fuzzing).
        let framed = if range.len() > self.max_line {
            Framed::Error(FrameError::LineTooLong { max: self.max_line })
        } else {
            match std::str::from_utf8(&self.buf[range.clone()]) {
                Ok(_) => Framed::Line(range),
                Err(e) => Framed::Error(FrameError::BadEncoding {
                    at: e.valid_up_to(),
                }),
            }
        };
        if matches!(framed, Framed::Error(_)) {
            self.buf.truncate(self.partial_start);
        }
        self.partial_start = self.buf.len();
        self.ready.push_back(framed);
    }

    /// The next complete line (without its ending) or framing error, if any.
    #[allow(clippy::should_implement_trait)] // lends from self, so not an Iterator
    pub fn next_line(&mut self) -> Option<Result<&str, FrameError>> {
        match self.ready.pop_front()? {
            Framed::Error(e) => Some(Err(e)),
            Framed::Line(range) => {
                // Checked by `finish_line`; lossless conversion can't fail here.
                let line = std::str::from_utf8(&self.buf[range]).unwrap_or_default();
                Some(Ok(line))
            }
        }
    }

    /// Releases the buffer's memory when nothing is buffered, so an idle
    /// connection costs no buffer. Call it after [`next_line`](Self::next_line)
    /// returned `None` (before that, lines are still buffered and nothing is
    /// freed) and before waiting for more input.
    pub fn shrink(&mut self) {
        if self.ready.is_empty() && self.partial_start == self.buf.len() {
            self.buf = Vec::new();
            self.partial_start = 0;
            // The queue of ready lines keeps its capacity too once used.
            self.ready = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(f: &mut LineFramer) -> Vec<Result<String, FrameError>> {
        std::iter::from_fn(|| f.next_line().map(|r| r.map(str::to_owned))).collect()
    }

    #[test]
    fn splits_and_joins_chunks() {
        let input = b"one\ntwo\r\nthree\n";
        for chunk in 1..=input.len() {
            let mut f = LineFramer::new(16);
            let mut got = Vec::new();
            for c in input.chunks(chunk) {
                f.push(c);
                got.extend(drain(&mut f));
            }
            let want: Vec<Result<String, FrameError>> =
                vec![Ok("one".into()), Ok("two".into()), Ok("three".into())];
            assert_eq!(got, want, "chunk size {chunk}");
        }
    }

    #[test]
    fn limit_is_exact_and_excludes_ending() {
        let too_long = Err(FrameError::LineTooLong { max: 4 });
        let cases: &[(&[u8], Result<String, FrameError>)] = &[
            (b"abcd\n", Ok("abcd".into())),
            (b"abcd\r\n", Ok("abcd".into())),
            (b"abcde\n", too_long.clone()),
            (b"abcde\r\n", too_long.clone()),
            (b"abc\r\r\n", Ok("abc\r".into())),
        ];
        for (input, want) in cases {
            for chunk in 1..=input.len() {
                let mut f = LineFramer::new(4);
                let mut got = Vec::new();
                for c in input.chunks(chunk) {
                    f.push(c);
                    got.extend(drain(&mut f));
                }
                assert_eq!(got, vec![want.clone()], "{input:?} in chunks of {chunk}");
            }
        }
    }

    #[test]
    fn overlong_line_is_reported_once_and_not_buffered() {
        let mut f = LineFramer::new(10);
        f.push(b"before\n");
        f.push(&[b'x'; 100]);
        assert!(f.buffered() <= 11 + 7, "held {} bytes", f.buffered());
        for _ in 0..1000 {
            f.push(&[b'y'; 1000]);
        }
        assert!(f.buffered() <= 11 + 7, "held {} bytes", f.buffered());
        f.push(b"tail\nafter\n");
        assert_eq!(
            drain(&mut f),
            vec![
                Ok("before".into()),
                Err(FrameError::LineTooLong { max: 10 }),
                Ok("after".into())
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn bad_utf8_is_reported_and_skipped() {
        let mut f = LineFramer::new(32);
        f.push(b"ok\nab\xff\xfecd\nfine\n");
        assert_eq!(
            drain(&mut f),
            vec![
                Ok("ok".into()),
                Err(FrameError::BadEncoding { at: 2 }),
                Ok("fine".into())
            ]
        );
    }

    /// Fuzz finding (fuzz/corpus/framer/crash-one-over-limit-bad-utf8): a line
    /// exactly one byte over the limit that was not UTF-8 came out as
    /// `BadEncoding`, while every other overlong line is `LineTooLong`.
    #[test]
    fn line_one_byte_over_limit_with_bad_utf8_is_too_long() {
        for (max, input) in [
            (0, &b"\xbe\n"[..]),
            (4, b"abc\xbe\xbe\n"),
            (4, b"abc\xbe\xbe\r\n"),
        ] {
            for chunk in 1..=input.len() {
                let mut f = LineFramer::new(max);
                let mut got = Vec::new();
                for c in input.chunks(chunk) {
                    f.push(c);
                    got.extend(drain(&mut f));
                }
                assert_eq!(
                    got,
                    vec![Err(FrameError::LineTooLong { max })],
                    "{input:?} in chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn utf8_split_across_pushes() {
        let mut f = LineFramer::new(32);
        let bytes = "héllo\n".as_bytes();
        f.push(&bytes[..2]);
        f.push(&bytes[2..]);
        assert_eq!(drain(&mut f), vec![Ok("héllo".into())]);
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut f = LineFramer::new(4);
        f.push(b"\n\r\n");
        assert_eq!(drain(&mut f), vec![Ok(String::new()), Ok(String::new())]);
    }

    #[test]
    fn shrink_releases_idle_buffer() {
        let mut f = LineFramer::new(64);
        f.push(b"hello\n");
        assert_eq!(drain(&mut f), vec![Ok("hello".into())]);
        f.push(b"");
        f.shrink();
        assert_eq!(f.buffered(), 0);
        assert_eq!(
            (f.buf.capacity(), f.ready.capacity()),
            (0, 0),
            "nothing kept"
        );
        f.push(b"again\n");
        assert_eq!(drain(&mut f), vec![Ok("again".into())]);
    }
}
