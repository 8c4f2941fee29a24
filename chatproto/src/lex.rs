//! Shared nom pieces, one function per terminal of PROTOCOL.md's grammar.
//!
//! The parsers run on one complete line (the framer already found its end), so
//! they are `complete` parsers and `Incomplete` never arises; [`run`] maps it to
//! a failure all the same. nom's error type stays inside this crate: [`LexError`]
//! carries the precise [`ParseError`] a validating step produced, if any.

use nom::bytes::complete::{take_till1, take_while_m_n};
use nom::character::complete::char;
use nom::combinator::{all_consuming, map_opt, map_res, rest, verify};
use nom::error::{ErrorKind, FromExternalError};
use nom::{IResult, Parser};

use crate::{GroupName, Name, ParseError, Password, Scope, Text, Token};

/// nom's error for our parsers: where it failed and, if a validating step said
/// why, that reason.
#[derive(Debug)]
pub(crate) struct LexError {
    cause: Option<ParseError>,
}

impl nom::error::ParseError<&str> for LexError {
    fn from_error_kind(_input: &str, _kind: ErrorKind) -> Self {
        Self { cause: None }
    }

    fn append(_input: &str, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

impl FromExternalError<&str, ParseError> for LexError {
    fn from_external_error(_input: &str, _kind: ErrorKind, e: ParseError) -> Self {
        Self { cause: Some(e) }
    }
}

pub(crate) type LexResult<'a, T> = IResult<&'a str, T, LexError>;

/// Runs `parser` over the whole of `input`. A failure reports the validating
/// step's reason if there was one, else `otherwise`.
pub(crate) fn run<'a, T>(
    parser: impl Parser<&'a str, Output = T, Error = LexError>,
    input: &'a str,
    otherwise: ParseError,
) -> Result<T, ParseError> {
    match all_consuming(parser).parse(input) {
        Ok((_, value)) => Ok(value),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(e.cause.unwrap_or(otherwise)),
        Err(nom::Err::Incomplete(_)) => Err(otherwise),
    }
}

/// `SP = " "` — exactly one space separates fields.
pub(crate) fn sp(input: &str) -> LexResult<'_, char> {
    char(' ').parse(input)
}

/// `word = 1*(any character but SP)` — the raw text of a field, before validation.
pub(crate) fn word(input: &str) -> LexResult<'_, &str> {
    take_till1(|c| c == ' ').parse(input)
}

/// `name = 1*32(ALPHA / DIGIT / "_" / "-")`
pub(crate) fn name(input: &str) -> LexResult<'_, Name> {
    map_res(word, |w| Name::try_from(w).map_err(ParseError::BadName)).parse(input)
}

/// `group = name`
pub(crate) fn group_name(input: &str) -> LexResult<'_, GroupName> {
    map_res(word, |w| {
        GroupName::try_from(w).map_err(ParseError::BadName)
    })
    .parse(input)
}

/// `scope = "*" / group`
pub(crate) fn scope(input: &str) -> LexResult<'_, Scope> {
    if let Some(after) = input.strip_prefix('*') {
        return Ok((after, Scope::Global));
    }
    group_name.map(Scope::Group).parse(input)
}

/// `token = 1*64(%x21-7E)`
pub(crate) fn token(input: &str) -> LexResult<'_, Token> {
    map_res(word, |w| Token::try_from(w).map_err(ParseError::BadToken)).parse(input)
}

/// `text = 1*(any character but controls; TAB allowed)` — the rest of the line.
///
/// An empty rest is a plain failure (the caller reports its usage); control
/// characters were refused for the whole line before parsing started.
pub(crate) fn text(input: &str) -> LexResult<'_, Text> {
    map_res(verify(rest, |s: &str| !s.is_empty()), |s: &str| {
        Text::try_from(s).map_err(ParseError::BadText)
    })
    .parse(input)
}

/// `password = 8*256(any character but SP and controls)`, counted in bytes.
pub(crate) fn password(input: &str) -> LexResult<'_, Password> {
    map_res(word, Password::try_from).parse(input)
}

/// `count = 1*10DIGIT` (a `u32`)
pub(crate) fn count(input: &str) -> LexResult<'_, u32> {
    nom::character::complete::u32(input)
}

/// `number = 1*20DIGIT` (a `u64`): at most 20 digits, and a value that fits.
pub(crate) fn number(input: &str) -> LexResult<'_, u64> {
    // Twenty digits can exceed u64::MAX: such a value is a plain failure.
    map_opt(
        take_while_m_n(1, 20, |c: char| c.is_ascii_digit()),
        |d: &str| d.parse::<u64>().ok(),
    )
    .parse(input)
}

/// Refuses a line holding a forbidden control character, before any parsing.
pub(crate) fn check_line(line: &str) -> Result<(), ParseError> {
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some((at, ch)) = line
        .char_indices()
        .find(|&(_, c)| crate::text::is_forbidden_char(c))
    {
        return Err(ParseError::BadText(crate::TextError::ControlChar {
            ch,
            at,
        }));
    }
    Ok(())
}
