//! [`IrcMessage`]: one IRC line, with [`parse_message`] and [`IrcMessage::encode`].
//!
//! The grammar and its leniencies are in the parent module's docs.

use std::borrow::Cow;
use std::fmt;

use nom::branch::alt;
use nom::bytes::complete::{take_till, take_till1, take_while, take_while1};
use nom::character::complete::char;
use nom::combinator::{all_consuming, cut, map, map_res, opt, rest};
use nom::error::{ErrorKind, FromExternalError};
use nom::multi::{many0, separated_list1};
use nom::sequence::{preceded, terminated};
use nom::{IResult, Parser};

use crate::error::clip;

/// The longest line, tags excluded, CRLF included: 512 bytes
/// (modern.ircdocs.horse, "Message format"). The parser, which sees lines
/// without their ending, allows 510.
pub const MAX_LINE_LEN: usize = 512;

/// The longest tag section, its leading `@` and trailing space included: 8191
/// bytes (IRCv3 message-tags, "Size limit").
pub const MAX_TAGS_LEN: usize = 8191;

/// The most tag data a client may send, and a server may add to a message:
/// 4094 bytes, without the `@` and the space (IRCv3 message-tags). The parser
/// accepts up to [`MAX_TAGS_LEN`], so that a server can relay its own tags; a
/// server that wants to hold clients to this limit checks it itself.
pub const MAX_CLIENT_TAG_DATA: usize = 4094;

/// The line limit to give a [`crate::LineFramer`] reading IRC input: 8703
/// bytes, line ending excluded. The longest valid line is
/// [`MAX_TAGS_LEN`] + [`MAX_LINE_LEN`] - 2 = 8701 bytes; the 2 spare bytes let
/// a line just over the limit reach [`parse_message`], which says which part
/// is too long. Longer lines the framer drops as
/// [`crate::FrameError::LineTooLong`], which a server answers with
/// [`ERR_INPUTTOOLONG`] as well.
pub const FRAME_LIMIT: usize = MAX_TAGS_LEN + MAX_LINE_LEN;

/// `417 ERR_INPUTTOOLONG`: a server's answer to a line over the limits.
pub const ERR_INPUTTOOLONG: u16 = 417;

/// `421 ERR_UNKNOWNCOMMAND`: a server's answer to a command it does not know,
/// or one that is not even a command word.
pub const ERR_UNKNOWNCOMMAND: u16 = 421;

/// The body limit as the parser sees it: [`MAX_LINE_LEN`] without CRLF.
const MAX_BODY_LEN: usize = MAX_LINE_LEN - 2;

/// A framer for IRC input: [`FRAME_LIMIT`] bytes per line; it accepts CRLF
/// and, as many servers do, a bare LF.
pub fn line_framer() -> crate::LineFramer {
    crate::LineFramer::new(FRAME_LIMIT)
}

/// One message tag: a key and its value, unescaped.
///
/// An empty value and a missing one are the same (IRCv3 message-tags treats
/// `foo=` as `foo`), so both compare equal, [`Tag::value`] returns `None` for
/// both, and both encode as the bare key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    key: &'a str,
    /// Unescaped; empty for no value. Borrowed unless unescaping changed it.
    value: Cow<'a, str>,
}

impl<'a> Tag<'a> {
    /// A tag with this key and value (unescaped; escaping happens when
    /// encoding). An empty value is the same as [`Tag::key_only`].
    ///
    /// Keys are opaque, as the spec asks, so any key is allowed except an
    /// empty one or one holding `=`, `;`, a space, NUL, CR or LF, which could
    /// not be read back. A value may hold anything but NUL: `;`, spaces, `\`,
    /// CR and LF are escaped.
    pub fn new(key: &'a str, value: impl Into<Cow<'a, str>>) -> Result<Self, IrcEncodeError> {
        let value = value.into();
        if !is_tag_key(key) {
            return Err(IrcEncodeError::BadTagKey);
        }
        if value.contains('\0') {
            return Err(IrcEncodeError::BadTagValue);
        }
        Ok(Self { key, value })
    }

    /// A tag without a value, such as `bot`.
    pub fn key_only(key: &'a str) -> Result<Self, IrcEncodeError> {
        Self::new(key, "")
    }

    /// The whole key as written: client-only prefix and vendor included.
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The unescaped value; `None` if missing or empty.
    pub fn value(&self) -> Option<&str> {
        Some(self.value.as_ref()).filter(|v| !v.is_empty())
    }

    /// True for a client-only tag (key starting with `+`), which a server
    /// relays without giving it meaning.
    pub fn is_client_only(&self) -> bool {
        self.key.starts_with('+')
    }

    /// The vendor of a vendor-specific key (`example.com` in
    /// `+example.com/foo`), if any.
    pub fn vendor(&self) -> Option<&'a str> {
        let key = self.key.strip_prefix('+').unwrap_or(self.key);
        key.rsplit_once('/').map(|(vendor, _)| vendor)
    }

    /// The key's name, without client-only prefix and vendor (`foo` in
    /// `+example.com/foo`).
    pub fn name(&self) -> &'a str {
        let key = self.key.strip_prefix('+').unwrap_or(self.key);
        key.rsplit_once('/').map_or(key, |(_, name)| name)
    }
}

/// One IRC message, borrowing from the line it was parsed from (or from the
/// strings it was built from).
///
/// Build one with [`IrcMessage::new`], [`with_source`](Self::with_source) and
/// [`with_tag`](Self::with_tag), which refuse anything that cannot be encoded
/// and read back the same; or use [`encode_message`] for a one-off line.
///
/// ```
/// use chatproto::irc::{parse_message, IrcMessage, Tag};
///
/// let msg = IrcMessage::new("PRIVMSG", &["#rust", "hello there"])?
///     .with_source("ann!a@example.com")?
///     .with_tag(Tag::new("time", "2026-12-01T10:00:00.000Z")?);
/// let mut out = Vec::new();
/// msg.encode(&mut out)?;
/// assert_eq!(
///     out,
///     b"@time=2026-12-01T10:00:00.000Z :ann!a@example.com PRIVMSG #rust :hello there\r\n"
/// );
/// let line = std::str::from_utf8(&out).unwrap().trim_end();
/// assert_eq!(parse_message(line)?, msg);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IrcMessage<'a> {
    tags: Vec<Tag<'a>>,
    source: Option<&'a str>,
    command: &'a str,
    params: Vec<&'a str>,
}

impl<'a> IrcMessage<'a> {
    /// A message without tags or source. `command` is letters (any case) or a
    /// three-digit numeric. Every parameter but the last must be non-empty,
    /// without spaces and not start with `:`; the last may be anything; none
    /// may hold NUL, CR or LF.
    pub fn new(command: &'a str, params: &[&'a str]) -> Result<Self, IrcEncodeError> {
        if !is_command(command) {
            return Err(IrcEncodeError::BadCommand);
        }
        let last = params.len().saturating_sub(1);
        for (index, param) in params.iter().enumerate() {
            let ok = !param.contains(['\0', '\r', '\n']) && (index == last || is_middle(param));
            if !ok {
                return Err(IrcEncodeError::BadParam { index });
            }
        }
        Ok(Self {
            tags: Vec::new(),
            source: None,
            command,
            params: params.to_vec(),
        })
    }

    /// The same message with this source (`nick!user@host` or a server name,
    /// without the `:`): non-empty, without spaces, NUL, CR or LF.
    pub fn with_source(mut self, source: &'a str) -> Result<Self, IrcEncodeError> {
        if !is_source(source) {
            return Err(IrcEncodeError::BadSource);
        }
        self.source = Some(source);
        Ok(self)
    }

    /// The same message with `tag` added after its other tags.
    pub fn with_tag(mut self, tag: Tag<'a>) -> Self {
        self.tags.push(tag);
        self
    }

    /// The tags, in line order; a key may appear more than once.
    pub fn tags(&self) -> &[Tag<'a>] {
        &self.tags
    }

    /// The tag with this key; the last one if repeated (the spec says to
    /// disregard all but the final occurrence).
    pub fn tag(&self, key: &str) -> Option<&Tag<'a>> {
        self.tags.iter().rev().find(|t| t.key == key)
    }

    /// The source, without its `:`.
    pub fn source(&self) -> Option<&'a str> {
        self.source
    }

    /// The command as written: letters in any case, or three digits.
    pub fn command(&self) -> &'a str {
        self.command
    }

    /// True if the command is `name`, ignoring ASCII case as IRC does.
    pub fn is_command(&self, name: &str) -> bool {
        self.command.eq_ignore_ascii_case(name)
    }

    /// The command as a number, if it is a numeric reply such as `001`.
    pub fn numeric(&self) -> Option<u16> {
        if self.command.bytes().all(|b| b.is_ascii_digit()) {
            self.command.parse().ok()
        } else {
            None
        }
    }

    /// The parameters; the trailing one is just the last.
    pub fn params(&self) -> &[&'a str] {
        &self.params
    }

    /// Parameter `index`, if present.
    pub fn param(&self, index: usize) -> Option<&'a str> {
        self.params.get(index).copied()
    }

    /// Appends the line and its CRLF to `out`.
    ///
    /// The last parameter gets a `:` when it needs one (empty, holding a space
    /// or starting with `:`), tag values are escaped, and tags with an empty
    /// value are written as bare keys. Fails, leaving `out` as it was, if the
    /// tag section is over [`MAX_TAGS_LEN`] or the rest over [`MAX_LINE_LEN`]
    /// with its CRLF: the error's `len` tells how much to cut. A parsed
    /// message always fits, because it encodes no longer than it was written.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), IrcEncodeError> {
        let start = out.len();
        if !self.tags.is_empty() {
            out.push(b'@');
            for (i, tag) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(b';');
                }
                out.extend_from_slice(tag.key.as_bytes());
                if !tag.value.is_empty() {
                    out.push(b'=');
                    escape_into(&tag.value, out);
                }
            }
            out.push(b' ');
        }
        let tags_len = out.len() - start;
        if tags_len > MAX_TAGS_LEN {
            out.truncate(start);
            return Err(IrcEncodeError::TagsTooLong { len: tags_len });
        }
        if let Some(source) = self.source {
            out.push(b':');
            out.extend_from_slice(source.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(self.command.as_bytes());
        if let Some((last, middle)) = self.params.split_last() {
            for param in middle {
                out.push(b' ');
                out.extend_from_slice(param.as_bytes());
            }
            out.push(b' ');
            if !is_middle(last) {
                out.push(b':');
            }
            out.extend_from_slice(last.as_bytes());
        }
        let body_len = out.len() - start - tags_len;
        if body_len > MAX_BODY_LEN {
            out.truncate(start);
            return Err(IrcEncodeError::BodyTooLong { len: body_len + 2 });
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// Encodes one line into `out` (CRLF included) from its parts, validating each
/// as [`Tag::new`], [`IrcMessage::new`] and [`IrcMessage::with_source`] do,
/// and the lengths as [`IrcMessage::encode`] does. On error `out` is unchanged.
///
/// A tag given as `(key, None)` or `(key, Some(""))` is written as the bare
/// key.
///
/// ```
/// use chatproto::irc::{encode_message, IrcEncodeError};
/// let mut out = Vec::new();
/// encode_message(&mut out, &[("+draft/react", Some("a b;c"))], Some("irc.example"), "NOTICE", &["*", ""])?;
/// assert_eq!(out, b"@+draft/react=a\\sb\\:c :irc.example NOTICE * :\r\n");
/// assert_eq!(
///     encode_message(&mut out, &[], None, "PRIVMSG", &["#a b", "hi"]),
///     Err(IrcEncodeError::BadParam { index: 0 })
/// );
/// # Ok::<(), IrcEncodeError>(())
/// ```
pub fn encode_message(
    out: &mut Vec<u8>,
    tags: &[(&str, Option<&str>)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) -> Result<(), IrcEncodeError> {
    let mut msg = IrcMessage::new(command, params)?;
    if let Some(source) = source {
        msg = msg.with_source(source)?;
    }
    for &(key, value) in tags {
        msg = msg.with_tag(Tag::new(key, value.unwrap_or(""))?);
    }
    msg.encode(out)
}

/// Escapes a tag value for the wire: `;` as `\:`, space as `\s`, `\` as `\\`,
/// CR as `\r` and LF as `\n` (IRCv3 message-tags, "Escaping values").
/// Borrows when there is nothing to escape. NUL cannot be escaped:
/// [`Tag::new`] refuses it.
pub fn escape_tag_value(value: &str) -> Cow<'_, str> {
    if !value.contains([';', ' ', '\\', '\r', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len() + 8);
    escape_into(value, &mut out);
    // Escaping replaces ASCII bytes with ASCII bytes, so UTF-8 stays valid.
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

fn escape_into(value: &str, out: &mut Vec<u8>) {
    for b in value.bytes() {
        match b {
            b';' => out.extend_from_slice(b"\\:"),
            b' ' => out.extend_from_slice(b"\\s"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Unescapes a tag value as written on the wire: the reverse of
/// [`escape_tag_value`], plus the spec's rules for bad input: an unknown
/// escape `\x` becomes `x`, and a lone `\` at the end is dropped. Borrows when
/// there is no `\`.
pub fn unescape_tag_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other), // `\\` too
            None => {}
        }
    }
    Cow::Owned(out)
}

/// Why a line is not an IRC message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IrcParseError {
    /// The line is empty or only spaces; servers ignore such lines.
    Empty,
    /// The tag section (`@`, tags, space) is over [`MAX_TAGS_LEN`] bytes.
    TagsTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The rest of the line is over [`MAX_LINE_LEN`] bytes with CRLF.
    BodyTooLong {
        /// Its length in bytes, counting the CRLF.
        len: usize,
    },
    /// The line holds NUL, CR or LF.
    ForbiddenByte {
        /// The byte.
        byte: u8,
        /// Its offset in the line.
        at: usize,
    },
    /// A `:` with no source after it.
    EmptySource,
    /// Tags or a source, but no command.
    MissingCommand,
    /// A command that is neither letters nor three digits. Holds it, cut to
    /// 32 bytes.
    BadCommand(String),
}

impl IrcParseError {
    /// The numeric a server answers with, if any: [`ERR_INPUTTOOLONG`] for a
    /// line too long, [`ERR_UNKNOWNCOMMAND`] for a bad command word. For the
    /// others there is none fitting: servers drop such lines silently.
    pub fn numeric(&self) -> Option<u16> {
        match self {
            Self::TagsTooLong { .. } | Self::BodyTooLong { .. } => Some(ERR_INPUTTOOLONG),
            Self::BadCommand(_) => Some(ERR_UNKNOWNCOMMAND),
            Self::Empty | Self::ForbiddenByte { .. } | Self::EmptySource | Self::MissingCommand => {
                None
            }
        }
    }
}

impl fmt::Display for IrcParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty line"),
            Self::TagsTooLong { len } => {
                write!(f, "tags of {len} bytes, more than {MAX_TAGS_LEN}")
            }
            Self::BodyTooLong { len } => {
                write!(
                    f,
                    "line of {len} bytes without tags, more than {MAX_LINE_LEN}"
                )
            }
            Self::ForbiddenByte { byte, at } => {
                write!(f, "forbidden byte {byte:#04x} at {at}")
            }
            Self::EmptySource => f.write_str("empty source"),
            Self::MissingCommand => f.write_str("no command"),
            Self::BadCommand(w) => write!(f, "invalid command {w:?}"),
        }
    }
}

impl std::error::Error for IrcParseError {}

/// Why a message cannot be encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IrcEncodeError {
    /// A tag key is empty or holds `=`, `;`, a space, NUL, CR or LF.
    BadTagKey,
    /// A tag value holds NUL.
    BadTagValue,
    /// The source is empty or holds a space, NUL, CR or LF.
    BadSource,
    /// The command is neither letters nor three digits.
    BadCommand,
    /// A parameter holds NUL, CR or LF, or one before the last is empty, holds
    /// a space or starts with `:`.
    BadParam {
        /// Its position, from 0.
        index: usize,
    },
    /// The tag section would be over [`MAX_TAGS_LEN`] bytes.
    TagsTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The line without tags would be over [`MAX_LINE_LEN`] bytes with CRLF.
    BodyTooLong {
        /// Its length in bytes, counting the CRLF.
        len: usize,
    },
}

impl fmt::Display for IrcEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadTagKey => f.write_str("invalid tag key"),
            Self::BadTagValue => f.write_str("tag value holds NUL"),
            Self::BadSource => f.write_str("invalid source"),
            Self::BadCommand => f.write_str("invalid command"),
            Self::BadParam { index } => write!(f, "invalid parameter {index}"),
            Self::TagsTooLong { len } => {
                write!(f, "tags of {len} bytes, more than {MAX_TAGS_LEN}")
            }
            Self::BodyTooLong { len } => {
                write!(
                    f,
                    "line of {len} bytes without tags, more than {MAX_LINE_LEN}"
                )
            }
        }
    }
}

impl std::error::Error for IrcEncodeError {}

/// Parses one IRC line, its line ending already removed (frame with
/// [`line_framer`]).
///
/// Checks, in this order: empty, the length limits (so that a server can
/// answer [`ERR_INPUTTOOLONG`]), NUL/CR/LF, then the grammar in the module
/// docs. Never panics, whatever the input.
///
/// ```
/// use chatproto::irc::{parse_message, IrcParseError};
/// let msg = parse_message("@id=1;+typing :ann!a@h privmsg #a :hi there")?;
/// assert!(msg.is_command("PRIVMSG"));
/// assert_eq!(msg.params(), ["#a", "hi there"]);
/// assert_eq!(msg.tag("id").and_then(|t| t.value()), Some("1"));
/// assert_eq!(parse_message("@a=b").unwrap_err(), IrcParseError::MissingCommand);
/// # Ok::<(), IrcParseError>(())
/// ```
pub fn parse_message(line: &str) -> Result<IrcMessage<'_>, IrcParseError> {
    let line = line.trim_start_matches(' ');
    if line.trim_end_matches(' ').is_empty() {
        return Err(IrcParseError::Empty);
    }
    check_lengths(line)?;
    if let Some(at) = line
        .bytes()
        .position(|b| matches!(b, b'\0' | b'\r' | b'\n'))
    {
        let byte = line.as_bytes()[at];
        return Err(IrcParseError::ForbiddenByte { byte, at });
    }
    match all_consuming(message).parse(line) {
        Ok((_, msg)) => Ok(msg),
        // Every failure of `message` carries its reason; `MissingCommand` is
        // the fallback should one not.
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
            Err(e.0.unwrap_or(IrcParseError::MissingCommand))
        }
        Err(nom::Err::Incomplete(_)) => Err(IrcParseError::MissingCommand),
    }
}

/// The tag section counts its `@` and one space after it, as the spec does
/// (a missing space counts too); the body is what follows the spaces after
/// the tags, and counts a CRLF.
fn check_lengths(line: &str) -> Result<(), IrcParseError> {
    let (tags_len, body) = match line.strip_prefix('@') {
        Some(rest) => match rest.split_once(' ') {
            Some((tags, body)) => (tags.len() + 2, body.trim_start_matches(' ')),
            None => (line.len() + 1, ""),
        },
        None => (0, line),
    };
    if tags_len > MAX_TAGS_LEN {
        return Err(IrcParseError::TagsTooLong { len: tags_len });
    }
    if body.len() > MAX_BODY_LEN {
        return Err(IrcParseError::BodyTooLong {
            len: body.len() + 2,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The nom rules, one per grammar rule.

/// nom's error inside this module: the precise reason, when a validating step
/// gave one. Kept private: callers see [`IrcParseError`].
#[derive(Debug)]
struct Failure(Option<IrcParseError>);

impl nom::error::ParseError<&str> for Failure {
    fn from_error_kind(_input: &str, _kind: ErrorKind) -> Self {
        Self(None)
    }

    fn append(_input: &str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

impl FromExternalError<&str, IrcParseError> for Failure {
    fn from_external_error(_input: &str, _kind: ErrorKind, e: IrcParseError) -> Self {
        Self(Some(e))
    }
}

type Res<'a, T> = IResult<&'a str, T, Failure>;

/// `message = ["@" tags SP] [":" source SP] command *(SP param) [SP]`, where
/// each SP may be a run of spaces.
fn message(i: &str) -> Res<'_, IrcMessage<'_>> {
    let (i, tags) = opt(terminated(tags, spaces0)).parse(i)?;
    let (i, source) = opt(terminated(source, spaces0)).parse(i)?;
    let (i, command) = command(i)?;
    let (i, params) = many0(preceded(spaces1, param)).parse(i)?;
    let (i, _) = spaces0(i)?;
    let msg = IrcMessage {
        tags: tags.unwrap_or_default(),
        source,
        command,
        params,
    };
    Ok((i, msg))
}

/// `SP` as clients send it: one or more spaces.
fn spaces1(i: &str) -> Res<'_, &str> {
    take_while1(|c| c == ' ').parse(i)
}

fn spaces0(i: &str) -> Res<'_, &str> {
    take_while(|c| c == ' ').parse(i)
}

/// `"@" tags`, `tags = tag *(";" tag)`; items with an empty key are skipped.
fn tags(i: &str) -> Res<'_, Vec<Tag<'_>>> {
    let list = separated_list1(char(';'), tag);
    map(preceded(char('@'), list), |tags| {
        tags.into_iter().flatten().collect()
    })
    .parse(i)
}

/// `tag = key ["=" value]`, `key = 1*(any but "=" ";" SP)`,
/// `value = *(any but ";" SP)`, unescaped. `None` for an empty key.
fn tag(i: &str) -> Res<'_, Option<Tag<'_>>> {
    let key = take_till(|c| matches!(c, '=' | ';' | ' '));
    let value = preceded(char('='), take_till(|c| c == ';' || c == ' '));
    map((key, opt(value)), |(key, value): (&str, Option<&str>)| {
        (!key.is_empty()).then(|| Tag {
            key,
            value: unescape_tag_value(value.unwrap_or("")),
        })
    })
    .parse(i)
}

/// `":" source`, `source = 1*(any but SP)`.
fn source(i: &str) -> Res<'_, &str> {
    let name = map_res(take_till(|c| c == ' '), |s: &str| {
        if s.is_empty() {
            Err(IrcParseError::EmptySource)
        } else {
            Ok(s)
        }
    });
    // After the `:` there is no going back: the line has a (bad) source.
    preceded(char(':'), cut(name)).parse(i)
}

/// `command = 1*ALPHA / 3DIGIT`
fn command(i: &str) -> Res<'_, &str> {
    let word = map_res(take_till(|c| c == ' '), |w: &str| {
        if w.is_empty() {
            Err(IrcParseError::MissingCommand)
        } else if is_command(w) {
            Ok(w)
        } else {
            Err(IrcParseError::BadCommand(clip(w, 32)))
        }
    });
    cut(word).parse(i)
}

/// `param = ":" trailing / middle`
fn param(i: &str) -> Res<'_, &str> {
    alt((preceded(char(':'), rest), take_till1(|c| c == ' '))).parse(i)
}

fn is_command(s: &str) -> bool {
    let b = s.as_bytes();
    (!b.is_empty() && b.iter().all(u8::is_ascii_alphabetic))
        || (b.len() == 3 && b.iter().all(u8::is_ascii_digit))
}

/// A parameter that needs no `:`: non-empty, no space, no leading `:`.
fn is_middle(s: &str) -> bool {
    !s.is_empty() && !s.starts_with(':') && !s.contains(' ')
}

fn is_source(s: &str) -> bool {
    !s.is_empty() && !s.contains([' ', '\0', '\r', '\n'])
}

fn is_tag_key(s: &str) -> bool {
    !s.is_empty() && !s.contains(['=', ';', ' ', '\0', '\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tags<'a> = &'a [(&'a str, &'a str)];

    /// Parses `line`, checks each part, and checks that it re-encodes as
    /// `canonical` (or as itself when `None`), which parses to the same message.
    fn check(
        line: &str,
        tags: Tags<'_>,
        source: Option<&str>,
        command: &str,
        params: &[&str],
        canonical: Option<&str>,
    ) {
        let msg = parse_message(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let got: Vec<(&str, &str)> = msg
            .tags()
            .iter()
            .map(|t| (t.key(), t.value().unwrap_or("")))
            .collect();
        assert_eq!(got, tags, "tags of {line:?}");
        assert_eq!(msg.source(), source, "source of {line:?}");
        assert_eq!(msg.command(), command, "command of {line:?}");
        assert_eq!(msg.params(), params, "params of {line:?}");
        let mut out = Vec::new();
        msg.encode(&mut out)
            .unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let encoded = std::str::from_utf8(&out).expect("UTF-8 in, UTF-8 out");
        let body = encoded.strip_suffix("\r\n").expect("ends with CRLF");
        assert_eq!(body, canonical.unwrap_or(line), "{line:?} re-encoded");
        assert_eq!(parse_message(body).as_ref(), Ok(&msg), "{body:?} re-parsed");
    }

    #[test]
    fn trailing_and_middle_params() {
        let cases: &[(&str, &[&str], Option<&str>)] = &[
            ("PRIVMSG #a :hello world", &["#a", "hello world"], None),
            ("PRIVMSG #a :", &["#a", ""], None),
            ("PRIVMSG #a ::-)", &["#a", ":-)"], None),
            ("PRIVMSG #a :x", &["#a", "x"], Some("PRIVMSG #a x")),
            ("MODE #a +b a:b", &["#a", "+b", "a:b"], None),
            ("CMD a::b :c:d", &["a::b", "c:d"], Some("CMD a::b c:d")),
            ("CMD :a b ", &["a b "], None),
            ("CMD :  ", &["  "], None),
            ("CMD :", &[""], None),
            ("CMD a :", &["a", ""], None),
            ("CMD a :b :c", &["a", "b :c"], None),
            ("PING", &[], None),
            ("PING  a   b  ", &["a", "b"], Some("PING a b")),
            ("CMD a ", &["a"], Some("CMD a")),
            ("CMD ", &[], Some("CMD")),
            ("  CMD a", &["a"], Some("CMD a")),
            (
                "PRIVMSG #a :\x01ACTION waves\x01",
                &["#a", "\x01ACTION waves\x01"],
                None,
            ),
            ("PRIVMSG #é :héllo wörld", &["#é", "héllo wörld"], None),
            ("CMD a\tb", &["a\tb"], None),
        ];
        for (line, params, canonical) in cases {
            let command = line.split_whitespace().next().unwrap();
            check(line, &[], None, command, params, *canonical);
        }
    }

    #[test]
    fn sources_commands_and_numerics() {
        check(
            ":irc.example 001 ann :Welcome to IRC",
            &[],
            Some("irc.example"),
            "001",
            &["ann", "Welcome to IRC"],
            None,
        );
        check(
            ":ann!a@h privmsg #a hi",
            &[],
            Some("ann!a@h"),
            "privmsg",
            &["#a", "hi"],
            None,
        );
        check("::weird CMD", &[], Some(":weird"), "CMD", &[], None);
        check(
            ":s   CMD   x",
            &[],
            Some("s"),
            "CMD",
            &["x"],
            Some(":s CMD x"),
        );

        let msg = parse_message("privMsg #a hi").unwrap();
        assert!(msg.is_command("PRIVMSG") && msg.is_command("privmsg"));
        assert!(!msg.is_command("PRIVMSGX"));
        assert_eq!(msg.numeric(), None);
        assert_eq!(
            parse_message("433 * ann :taken").unwrap().numeric(),
            Some(433)
        );
        assert_eq!(parse_message("001 ann").unwrap().numeric(), Some(1));
        assert_eq!(msg.param(1), Some("hi"));
        assert_eq!(msg.param(2), None);
    }

    #[test]
    fn tags() {
        let cases: &[(&str, Tags<'_>, Option<&str>)] = &[
            ("@a=b;c PRIVMSG #a hi", &[("a", "b"), ("c", "")], None),
            ("@c;a=b CMD", &[("c", ""), ("a", "b")], None),
            ("@a= CMD", &[("a", "")], Some("@a CMD")),
            (
                "@+example.com/foo=bar;time=2026-12-01T10:00:00Z CMD",
                &[
                    ("+example.com/foo", "bar"),
                    ("time", "2026-12-01T10:00:00Z"),
                ],
                None,
            ),
            ("@a=\\:\\s\\\\\\r\\n CMD", &[("a", "; \\\r\n")], None),
            ("@a=x\\ CMD", &[("a", "x")], Some("@a=x CMD")),
            ("@a=\\ CMD", &[("a", "")], Some("@a CMD")),
            ("@a=\\b\\0 CMD", &[("a", "b0")], Some("@a=b0 CMD")),
            ("@a=b=c CMD", &[("a", "b=c")], None),
            (
                "@;a=1;;b; CMD",
                &[("a", "1"), ("b", "")],
                Some("@a=1;b CMD"),
            ),
            ("@=x;a CMD", &[("a", "")], Some("@a CMD")),
            ("@ CMD", &[], Some("CMD")),
            ("@a=1;a=2 CMD", &[("a", "1"), ("a", "2")], None),
            ("@a=é:ü CMD", &[("a", "é:ü")], None),
            ("@a=b   :s  CMD  x", &[("a", "b")], Some("@a=b :s CMD x")),
        ];
        for (line, tags, canonical) in cases {
            let msg = parse_message(line).unwrap();
            let source = msg.source();
            check(line, tags, source, msg.command(), msg.params(), *canonical);
        }

        let msg = parse_message("@a=1;a=2;+example.com/x=y;bot :s CMD").unwrap();
        assert_eq!(
            msg.tag("a").and_then(Tag::value),
            Some("2"),
            "last one wins"
        );
        assert_eq!(msg.tag("bot").map(Tag::value), Some(None));
        assert_eq!(msg.tag("nope"), None);
        let vendor = msg.tag("+example.com/x").unwrap();
        assert!(vendor.is_client_only());
        assert_eq!((vendor.vendor(), vendor.name()), (Some("example.com"), "x"));
        let plain = msg.tag("bot").unwrap();
        assert!(!plain.is_client_only());
        assert_eq!((plain.vendor(), plain.name()), (None, "bot"));
        // An empty value and none are the same.
        assert_eq!(Tag::new("k", "").unwrap(), Tag::key_only("k").unwrap());
        assert_eq!(parse_message("@k= X"), parse_message("@k X"));
    }

    #[test]
    fn invalid_lines() {
        let bad = |w: &str| IrcParseError::BadCommand(w.to_owned());
        let cases: &[(&str, IrcParseError)] = &[
            ("", IrcParseError::Empty),
            ("   ", IrcParseError::Empty),
            ("@a=b", IrcParseError::MissingCommand),
            ("@a=b ", IrcParseError::MissingCommand),
            ("@", IrcParseError::MissingCommand),
            ("@a=b :src", IrcParseError::MissingCommand),
            (":src", IrcParseError::MissingCommand),
            (":src   ", IrcParseError::MissingCommand),
            (":", IrcParseError::EmptySource),
            (": CMD", IrcParseError::EmptySource),
            ("@a : CMD", IrcParseError::EmptySource),
            ("PRIV1 x", bad("PRIV1")),
            ("12 x", bad("12")),
            ("1234", bad("1234")),
            ("CMD:x y", bad("CMD:x")),
            ("ÄRGER x", bad("ÄRGER")),
            ("@a :s #x", bad("#x")),
            (
                "PRIVMSG\0 x",
                IrcParseError::ForbiddenByte { byte: 0, at: 7 },
            ),
            ("A\rB", IrcParseError::ForbiddenByte { byte: b'\r', at: 1 }),
            (
                "@a=\n X",
                IrcParseError::ForbiddenByte { byte: b'\n', at: 3 },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_message(line).as_ref(), Err(want), "{line:?}");
        }
        let long = format!("{} x", "A1".repeat(40));
        match parse_message(&long) {
            Err(IrcParseError::BadCommand(w)) => assert_eq!(w, "A1".repeat(16)),
            other => panic!("{other:?}"),
        }
    }

    /// A line with a tag section of `tags_len` bytes (`@`, tags, space) and a
    /// body of `body_len` bytes (without CRLF).
    fn line_of(tags_len: usize, body_len: usize) -> String {
        let mut line = String::new();
        if tags_len > 0 {
            line.push_str("@a=");
            line.push_str(&"v".repeat(tags_len - 4));
            line.push(' ');
        }
        // The text starts with a space, so its `:` is canonical.
        line.push_str("PRIVMSG #a : ");
        line.push_str(&"x".repeat(body_len - 13));
        assert_eq!(line.len(), tags_len + body_len);
        line
    }

    #[test]
    fn length_limits() {
        // 510 bytes plus CRLF is 512: fits; one more does not.
        let fits = line_of(0, 510);
        let text = format!(" {}", "x".repeat(497));
        check(&fits, &[], None, "PRIVMSG", &["#a", &text], None);
        assert_eq!(
            parse_message(&line_of(0, 511)),
            Err(IrcParseError::BodyTooLong { len: 513 })
        );
        // The tag section counts its `@` and its space: 8191 fits, 8192 not.
        let both = line_of(8191, 510);
        assert!(parse_message(&both).is_ok());
        assert_eq!(
            parse_message(&line_of(8192, 510)),
            Err(IrcParseError::TagsTooLong { len: 8192 })
        );
        assert_eq!(
            parse_message(&line_of(8191, 511)),
            Err(IrcParseError::BodyTooLong { len: 513 })
        );
        // Without its space the section counts one anyway.
        let only_tags = format!("@{}", "a".repeat(8189));
        assert_eq!(
            parse_message(&only_tags),
            Err(IrcParseError::MissingCommand)
        );
        assert_eq!(
            parse_message(&format!("{only_tags}a")),
            Err(IrcParseError::TagsTooLong { len: 8192 })
        );
        // Spaces after the tag section and at the start are separators, not body.
        let spaced = format!("  @a {}{}", " ".repeat(20), line_of(0, 510));
        assert!(parse_message(&spaced).is_ok());
        // Length is checked before the bytes: a long line with NUL is 417.
        let long_nul = format!("{}\0", line_of(0, 511));
        assert_eq!(parse_message(&long_nul).unwrap_err().numeric(), Some(417));

        // The longest valid line gets through the framer with CRLF; a longer
        // one than FRAME_LIMIT does not.
        let mut framer = line_framer();
        assert_eq!(framer.max_line(), FRAME_LIMIT);
        framer.push(both.as_bytes());
        framer.push(b"\r\n");
        framer.push(format!("{}\r\n", "x".repeat(FRAME_LIMIT + 1)).as_bytes());
        assert_eq!(framer.next_line(), Some(Ok(both.as_str())));
        assert!(matches!(
            framer.next_line(),
            Some(Err(crate::FrameError::LineTooLong { max: FRAME_LIMIT }))
        ));
    }

    #[test]
    fn encoding_checks_lengths_and_leaves_out_alone() {
        // "PRIVMSG #a " is 11 bytes, so 499 bytes of text make 510.
        let x499 = "x".repeat(499);
        let x500 = "x".repeat(500);
        let mut out = b"kept".to_vec();
        let fits = IrcMessage::new("PRIVMSG", &["#a", &x499]).unwrap();
        fits.encode(&mut out).unwrap();
        assert_eq!(out.len(), 4 + 512);
        out.truncate(4);
        let over = IrcMessage::new("PRIVMSG", &["#a", &x500]).unwrap();
        assert_eq!(
            over.encode(&mut out),
            Err(IrcEncodeError::BodyTooLong { len: 513 })
        );
        assert_eq!(out, b"kept");

        // "@a=" + value + " " is 8191 bytes with 8187 bytes of value.
        let v = "v".repeat(8187);
        let tagged = fits.clone().with_tag(Tag::new("a", v.as_str()).unwrap());
        tagged.encode(&mut out).unwrap();
        assert_eq!(out.len(), 4 + 8191 + 512);
        out.truncate(4);
        // Escaping counts: one `;` more makes it 8193.
        let v2 = format!("{v};");
        let tagged = fits.with_tag(Tag::new("a", v2.as_str()).unwrap());
        assert_eq!(
            tagged.encode(&mut out),
            Err(IrcEncodeError::TagsTooLong { len: 8193 })
        );
        assert_eq!(out, b"kept");
    }

    #[test]
    fn constructors_refuse_what_cannot_be_encoded() {
        let cases: &[(Result<IrcMessage<'_>, IrcEncodeError>, IrcEncodeError)] = &[
            (IrcMessage::new("", &[]), IrcEncodeError::BadCommand),
            (IrcMessage::new("PRIV1", &[]), IrcEncodeError::BadCommand),
            (IrcMessage::new("12", &[]), IrcEncodeError::BadCommand),
            (IrcMessage::new("P M", &[]), IrcEncodeError::BadCommand),
            (
                IrcMessage::new("CMD", &["", "x"]),
                IrcEncodeError::BadParam { index: 0 },
            ),
            (
                IrcMessage::new("CMD", &["a", "b c", "x"]),
                IrcEncodeError::BadParam { index: 1 },
            ),
            (
                IrcMessage::new("CMD", &[":a", "x"]),
                IrcEncodeError::BadParam { index: 0 },
            ),
            (
                IrcMessage::new("CMD", &["a", "b\rc"]),
                IrcEncodeError::BadParam { index: 1 },
            ),
            (
                IrcMessage::new("CMD", &["b\nc"]),
                IrcEncodeError::BadParam { index: 0 },
            ),
            (
                IrcMessage::new("CMD", &["b\0"]),
                IrcEncodeError::BadParam { index: 0 },
            ),
            (
                IrcMessage::new("CMD", &[]).and_then(|m| m.with_source("")),
                IrcEncodeError::BadSource,
            ),
            (
                IrcMessage::new("CMD", &[]).and_then(|m| m.with_source("a b")),
                IrcEncodeError::BadSource,
            ),
            (
                IrcMessage::new("CMD", &[]).and_then(|m| m.with_source("a\r")),
                IrcEncodeError::BadSource,
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.as_ref(), Err(want));
        }
        for key in ["", "a=b", "a;b", "a b", "a\0", "a\r", "a\n"] {
            assert_eq!(
                Tag::key_only(key),
                Err(IrcEncodeError::BadTagKey),
                "{key:?}"
            );
        }
        assert_eq!(Tag::new("a", "x\0y"), Err(IrcEncodeError::BadTagValue));
        // What the last param may hold, and a value's CR/LF, are fine.
        assert!(IrcMessage::new("CMD", &["a", ""]).is_ok());
        assert!(IrcMessage::new("CMD", &["a", ":b c"]).is_ok());
        assert!(Tag::new("+x/y", "a\r\nb; \\").is_ok());

        let mut out = b"kept".to_vec();
        let results = [
            encode_message(&mut out, &[("", None)], None, "CMD", &[]),
            encode_message(&mut out, &[("k", Some("\0"))], None, "CMD", &[]),
            encode_message(&mut out, &[], Some(""), "CMD", &[]),
            encode_message(&mut out, &[], None, "C1", &[]),
            encode_message(&mut out, &[], None, "CMD", &["", ""]),
        ];
        assert_eq!(
            results,
            [
                Err(IrcEncodeError::BadTagKey),
                Err(IrcEncodeError::BadTagValue),
                Err(IrcEncodeError::BadSource),
                Err(IrcEncodeError::BadCommand),
                Err(IrcEncodeError::BadParam { index: 0 }),
            ]
        );
        assert_eq!(out, b"kept");
        encode_message(
            &mut out,
            &[("a", Some("")), ("b", None), ("c", Some("1 2"))],
            Some("s"),
            "CMD",
            &["x", ""],
        )
        .unwrap();
        assert_eq!(out, b"kept@a;b;c=1\\s2 :s CMD x :\r\n");
    }

    #[test]
    fn tag_value_escaping() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("plain", "plain"),
            ("a;b", "a\\:b"),
            ("a b", "a\\sb"),
            ("a\\b", "a\\\\b"),
            ("\r\n", "\\r\\n"),
            ("; \\\r\n", "\\:\\s\\\\\\r\\n"),
            ("é=:", "é=:"),
        ];
        for (value, escaped) in cases {
            assert_eq!(escape_tag_value(value), *escaped, "{value:?}");
            assert_eq!(unescape_tag_value(escaped), *value, "{escaped:?}");
        }
        // Bad input, read as the spec says.
        let lenient: &[(&str, &str)] = &[
            ("\\", ""),
            ("abc\\", "abc"),
            ("\\b", "b"),
            ("\\\\\\", "\\"),
            ("\\é", "é"),
            ("\\;", ";"),
        ];
        for (raw, value) in lenient {
            assert_eq!(unescape_tag_value(raw), *value, "{raw:?}");
        }
        assert!(matches!(escape_tag_value("plain"), Cow::Borrowed(_)));
        assert!(matches!(unescape_tag_value("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn errors_map_to_numerics_and_read_well() {
        let parse_errors = [
            (IrcParseError::Empty, None),
            (IrcParseError::TagsTooLong { len: 8192 }, Some(417)),
            (IrcParseError::BodyTooLong { len: 513 }, Some(417)),
            (IrcParseError::ForbiddenByte { byte: 0, at: 3 }, None),
            (IrcParseError::EmptySource, None),
            (IrcParseError::MissingCommand, None),
            (IrcParseError::BadCommand("X1".into()), Some(421)),
        ];
        let mut messages: Vec<String> = Vec::new();
        for (e, numeric) in &parse_errors {
            assert_eq!(e.numeric(), *numeric, "{e:?}");
            messages.push(e.to_string());
        }
        let encode_errors = [
            IrcEncodeError::BadTagKey,
            IrcEncodeError::BadTagValue,
            IrcEncodeError::BadSource,
            IrcEncodeError::BadCommand,
            IrcEncodeError::BadParam { index: 1 },
            IrcEncodeError::TagsTooLong { len: 8192 },
            IrcEncodeError::BodyTooLong { len: 513 },
        ];
        messages.extend(encode_errors.iter().map(ToString::to_string));
        for m in &messages {
            let first = m.chars().next().unwrap();
            assert!(!first.is_uppercase() && !m.ends_with('.'), "{m:?}");
        }
        assert_eq!(messages[3], "forbidden byte 0x00 at 3");
        // A quoted command is clipped, then escaped for logs (found by the
        // fuzzer: 6 characters per control byte).
        let controls = format!("{} x", "\u{11}".repeat(100));
        let e = parse_message(&controls).unwrap_err();
        assert_eq!(e, IrcParseError::BadCommand("\u{11}".repeat(32)));
        assert!(e.to_string().len() <= 256 && !e.to_string().contains('\u{11}'));
        assert_eq!(messages[2], "line of 513 bytes without tags, more than 512");
    }
}
