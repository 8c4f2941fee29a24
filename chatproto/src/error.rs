//! Error types: what went wrong with a line ([`ParseError`], [`FrameError`]).

use std::fmt;

use crate::{ErrorCode, NameError, Text, TextError, TokenError};

/// Why the [`crate::LineFramer`] could not produce a line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The line exceeded the limit; everything up to its LF was discarded.
    LineTooLong {
        /// The limit in bytes, line ending excluded.
        max: usize,
    },
    /// The line was not valid UTF-8; it was discarded.
    BadEncoding {
        /// Byte offset of the first invalid byte within the line.
        at: usize,
    },
}

impl FrameError {
    /// The code a server reports for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::LineTooLong { .. } => ErrorCode::LineTooLong,
            Self::BadEncoding { .. } => ErrorCode::BadEncoding,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LineTooLong { max } => {
                write!(f, "line longer than {max} bytes, discarded")
            }
            Self::BadEncoding { at } => {
                write!(f, "line is not valid UTF-8 (byte {at}), discarded")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Why a line is not a valid command or event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The line is empty.
    Empty,
    /// The line holds a forbidden control character.
    BadText(TextError),
    /// `/word` where `word` is no command. Holds the word, cut to 32 bytes.
    UnknownCommand(String),
    /// A known command with missing or extra arguments.
    BadArgs {
        /// The command's usage, e.g. `/join <group>`.
        usage: &'static str,
    },
    /// A name argument breaks the name rules.
    BadName(NameError),
    /// A token argument breaks the token rules.
    BadToken(TokenError),
    /// A password is shorter than 8 or longer than 256 bytes. Holds its
    /// length, never the password.
    BadPassword {
        /// The length in bytes.
        len: usize,
    },
    /// A server line with an unknown tag. Holds the tag, cut to 32 bytes.
    UnknownEvent(String),
    /// A server line with a known tag whose fields do not match its grammar.
    MalformedEvent {
        /// The event's tag.
        tag: &'static str,
    },
}

impl ParseError {
    /// The code a server reports for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Empty | Self::BadText(_) => ErrorCode::BadText,
            Self::UnknownCommand(_) => ErrorCode::UnknownCommand,
            Self::BadArgs { .. } | Self::BadToken(_) => ErrorCode::BadArgs,
            Self::BadName(_) => ErrorCode::NameInvalid,
            Self::BadPassword { .. } => ErrorCode::BadPassword,
            // A client never sends these; the code is for completeness.
            Self::UnknownEvent(_) | Self::MalformedEvent { .. } => ErrorCode::UnknownCommand,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty line"),
            Self::BadText(e) => e.fmt(f),
            Self::UnknownCommand(w) => write!(f, "unknown command /{w}, try /help"),
            Self::BadArgs { usage } => write!(f, "usage: {usage}"),
            Self::BadName(e) => e.fmt(f),
            Self::BadToken(e) => e.fmt(f),
            Self::BadPassword { len } => write!(
                f,
                "a password is 8 to 256 bytes with no space (this one is {len} bytes)"
            ),
            Self::UnknownEvent(t) => write!(f, "unknown event {t}"),
            Self::MalformedEvent { tag } => write!(f, "malformed {tag} event"),
        }
    }
}

impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadText(e) => Some(e),
            Self::BadName(e) => Some(e),
            Self::BadToken(e) => Some(e),
            _ => None,
        }
    }
}

/// A name that breaks the rules, as [`ParseError::BadName`], so `?` converts it.
impl From<NameError> for ParseError {
    fn from(e: NameError) -> Self {
        Self::BadName(e)
    }
}

/// Text that breaks the rules, as [`ParseError::BadText`], so `?` converts it.
impl From<TextError> for ParseError {
    fn from(e: TextError) -> Self {
        Self::BadText(e)
    }
}

/// A token that breaks the rules, as [`ParseError::BadToken`], so `?` converts it.
impl From<TokenError> for ParseError {
    fn from(e: TokenError) -> Self {
        Self::BadToken(e)
    }
}

/// A line the driver could not turn into a [`crate::Command`], handed to the
/// server as [`crate::server::Input::Refused`] so that it answers with `ERR`.
///
/// An empty line ([`ParseError::Empty`]) becomes a refusal that the server does
/// not answer: PROTOCOL.md ignores empty lines, but they still count as activity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    code: ErrorCode,
    message: Text,
    empty_line: bool,
}

impl Refusal {
    /// A refusal with this code; control characters in `message` are replaced.
    pub fn new(code: ErrorCode, message: &str) -> Self {
        Self {
            code,
            message: Text::lossy(message),
            empty_line: false,
        }
    }

    /// True for an empty line, which the server ignores (no `ERR`) but counts
    /// as activity.
    pub fn is_empty_line(&self) -> bool {
        self.empty_line
    }

    /// The code sent in `ERR`.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The text sent in `ERR`.
    pub fn message(&self) -> &Text {
        &self.message
    }
}

impl From<ParseError> for Refusal {
    fn from(e: ParseError) -> Self {
        let mut refusal = Self::new(e.code(), &e.to_string());
        refusal.empty_line = e == ParseError::Empty;
        refusal
    }
}

impl From<FrameError> for Refusal {
    fn from(e: FrameError) -> Self {
        Self::new(e.code(), &e.to_string())
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, for errors that quote input.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_errors_convert_to_their_parse_errors() {
        let cases: &[(ParseError, ParseError, ErrorCode)] = &[
            (
                NameError::Empty.into(),
                ParseError::BadName(NameError::Empty),
                ErrorCode::NameInvalid,
            ),
            (
                TextError::Empty.into(),
                ParseError::BadText(TextError::Empty),
                ErrorCode::BadText,
            ),
            (
                TokenError::BadLength { len: 0 }.into(),
                ParseError::BadToken(TokenError::BadLength { len: 0 }),
                ErrorCode::BadArgs,
            ),
        ];
        for (got, want, code) in cases {
            assert_eq!(got, want);
            assert_eq!(got.code(), *code);
        }
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}
