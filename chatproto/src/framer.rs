//! [`LineFramer`]: bytes in, bounded lines out.

use std::collections::VecDeque;

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
/// Lines are found when asked for, not when pushed: what the framer holds is
/// the bytes themselves and nothing per line, so a chunk of 8 KiB of bare LFs
/// costs 8 KiB while it waits, not thousands of queued entries.
///
/// Call [`next_line`](Self::next_line) until it returns `None` after each
/// [`push`](Self::push); lines left undrained stay buffered.
///
/// Which limit: a server frames client lines with [`LineFramer::for_server`]
/// ([`DEFAULT_MAX_LINE`]); a client frames server lines with
/// [`LineFramer::for_client`] ([`EVENT_LINE_LIMIT`]), because server lines carry
/// a client's whole text plus a prefix, and listings grow with the server.
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
    /// Bytes not handed out yet: complete lines, then the partial line.
    buf: Vec<u8>,
    /// Where the unconsumed bytes start in `buf`.
    start: usize,
    /// Where the partial line (no LF seen yet) starts in `buf`.
    partial_start: usize,
    /// Offsets in `buf` where an overlong line was cut out: each is reported as
    /// [`FrameError::LineTooLong`] once the lines before it are handed out.
    /// One per overlong line, so never more than the bytes pushed allow.
    cuts: VecDeque<usize>,
    /// True while skipping the rest of an overlong line.
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes, line ending excluded.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            buf: Vec::new(),
            start: 0,
            partial_start: 0,
            cuts: VecDeque::new(),
            discarding: false,
        }
    }

    /// A framer for what a server reads: client lines of at most
    /// [`DEFAULT_MAX_LINE`] bytes (PROTOCOL.md section 1).
    pub fn for_server() -> Self {
        Self::new(DEFAULT_MAX_LINE)
    }

    /// A framer for what a client reads: server lines of up to
    /// [`EVENT_LINE_LIMIT`] bytes. A `MSG` carrying a 4096-byte text is longer
    /// than 4096 bytes, and `USERS` grows with the server, so a client framing
    /// with [`DEFAULT_MAX_LINE`] would drop them.
    pub fn for_client() -> Self {
        Self::new(EVENT_LINE_LIMIT)
    }

    /// The line limit in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes held: undrained lines plus the partial line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True if a line (or an error) is ready for [`next_line`](Self::next_line).
    pub fn has_line(&self) -> bool {
        self.cuts.front() == Some(&self.start)
            || self.buf[self.start..self.partial_start].contains(&b'\n')
    }

    /// Feeds received bytes.
    pub fn push(&mut self, mut data: &[u8]) {
        if self.start > 0 {
            // Forget what was handed out; what remains is small (a partial line,
            // or lines a paced reader has not taken yet).
            self.buf.drain(..self.start);
            self.partial_start -= self.start;
            for cut in &mut self.cuts {
                *cut -= self.start;
            }
            self.start = 0;
        }
        if self.discarding {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.discarding = false;
                    data = &data[i + 1..];
                }
                None => return,
            }
        }
        let last_lf = data.iter().rposition(|&b| b == b'\n');
        self.buf.extend_from_slice(data);
        if let Some(i) = last_lf {
            self.partial_start = self.buf.len() - data.len() + i + 1;
        }
        // A line may hold one byte past the limit before its LF: a CR that the
        // LF strips. `next_line` checks complete lines exactly.
        if self.buf.len() - self.partial_start > self.max_line.saturating_add(1) {
            self.buf.truncate(self.partial_start);
            self.cuts.push_back(self.partial_start);
            self.discarding = true;
        }
    }

    /// The next complete line (without its ending) or framing error, if any.
    #[allow(clippy::should_implement_trait)] // lends from self, so not an Iterator
    pub fn next_line(&mut self) -> Option<Result<&str, FrameError>> {
        if self.cuts.front() == Some(&self.start) {
            self.cuts.pop_front();
            return Some(Err(FrameError::LineTooLong { max: self.max_line }));
        }
        let lf = self.start
            + self.buf[self.start..self.partial_start]
                .iter()
                .position(|&b| b == b'\n')?;
        let mut range = self.start..lf;
        self.start = lf + 1;
        if self.buf[range.clone()].last() == Some(&b'\r') {
            range.end -= 1;
        }
        // Length first: a line one byte over the limit is too long whatever
        // its bytes (found by fuzzing).
        if range.len() > self.max_line {
            return Some(Err(FrameError::LineTooLong { max: self.max_line }));
        }
        Some(
            std::str::from_utf8(&self.buf[range]).map_err(|e| FrameError::BadEncoding {
                at: e.valid_up_to(),
            }),
        )
    }

    /// Releases the buffer's memory when nothing is buffered, so an idle
    /// connection costs no buffer. Call it after [`next_line`](Self::next_line)
    /// returned `None` (before that, lines are still buffered and nothing is
    /// freed) and before waiting for more input.
    pub fn shrink(&mut self) {
        if self.start == self.buf.len() && self.cuts.is_empty() {
            self.buf = Vec::new();
            self.cuts = VecDeque::new();
            self.start = 0;
            self.partial_start = 0;
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
    fn a_flood_of_empty_lines_costs_its_bytes_only() {
        // Lines are found on demand: 8 KiB of LFs hold 8 KiB, not an entry per line.
        let mut f = LineFramer::new(4096);
        f.push(&[b'\n'; 8192]);
        assert_eq!(f.buffered(), 8192);
        assert_eq!(f.buf.capacity(), 8192);
        assert_eq!(f.cuts.capacity(), 0);
        assert_eq!(drain(&mut f).len(), 8192);
    }

    #[test]
    fn a_limit_near_usize_max_does_not_wrap() {
        let mut f = LineFramer::new(usize::MAX);
        f.push(b"fine\n");
        assert_eq!(drain(&mut f), vec![Ok("fine".into())]);
    }

    #[test]
    fn lines_before_and_after_a_cut_keep_their_order() {
        let mut f = LineFramer::new(4);
        f.push(b"a\nb\nxxxxxxxx");
        f.push(b"yyy\nc\nzzzzzzz");
        f.push(b"\nd\n");
        let too_long = Err(FrameError::LineTooLong { max: 4 });
        assert_eq!(
            drain(&mut f),
            vec![
                Ok("a".into()),
                Ok("b".into()),
                too_long.clone(),
                Ok("c".into()),
                too_long,
                Ok("d".into())
            ]
        );
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
            (f.buf.capacity(), f.cuts.capacity()),
            (0, 0),
            "nothing kept"
        );
        f.push(b"again\n");
        assert_eq!(drain(&mut f), vec![Ok("again".into())]);
    }
}
