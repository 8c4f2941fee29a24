//! Validated free text ([`Text`]) and short tokens ([`Token`]).

use std::fmt;
use std::str::FromStr;

/// True for the characters that text must not hold: C0 controls other than TAB,
/// DEL, and C1 controls. Letting them through would let one user drive another
/// user's terminal (ANSI and OSC escapes start with ESC or C1 CSI).
pub fn is_forbidden_char(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{7f}'..='\u{9f}')
}

/// Why a string is not valid [`Text`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextError {
    /// The text is empty.
    Empty,
    /// The text holds a control character.
    ControlChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the text.
        at: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("text is empty"),
            Self::ControlChar { ch, at } => {
                write!(f, "text has control character {ch:?} at byte {at}")
            }
        }
    }
}

impl std::error::Error for TextError {}

/// Free text: non-empty UTF-8 with no control characters (TAB is allowed).
///
/// Text is the last field of a line, so it may contain spaces; it is passed on
/// exactly as received, without trimming.
///
/// Built with `TryFrom<&str>`, `TryFrom<String>` or `str::parse`, which all
/// check the same rules and fail with [`TextError`]:
///
/// ```
/// use chatproto::Text;
/// assert_eq!(Text::try_from("hello  world ").unwrap().as_str(), "hello  world ");
/// assert_eq!(Text::try_from(String::from("hi")), "hi".parse());
/// assert!(Text::try_from("\x1b[2J").is_err());
/// assert_eq!(Text::lossy("a\x1bb").as_str(), "a\u{fffd}b");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Box<str>);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds text from anything, replacing each forbidden character with U+FFFD
    /// and an empty string with a single `-`. For error messages that quote input.
    pub fn lossy(s: &str) -> Self {
        if s.is_empty() {
            return Self("-".into());
        }
        Self(
            s.chars()
                .map(|c| if is_forbidden_char(c) { '\u{fffd}' } else { c })
                .collect::<String>()
                .into_boxed_str(),
        )
    }
}

fn check_text(s: &str) -> Result<(), TextError> {
    if s.is_empty() {
        return Err(TextError::Empty);
    }
    if let Some((at, ch)) = s.char_indices().find(|&(_, c)| is_forbidden_char(c)) {
        return Err(TextError::ControlChar { ch, at });
    }
    Ok(())
}

impl TryFrom<&str> for Text {
    type Error = TextError;

    fn try_from(s: &str) -> Result<Self, TextError> {
        check_text(s)?;
        Ok(Self(s.into()))
    }
}

/// Validates an owned string; its buffer is kept (shrunk to fit), not copied.
impl TryFrom<String> for Text {
    type Error = TextError;

    fn try_from(s: String) -> Result<Self, TextError> {
        check_text(&s)?;
        Ok(Self(s.into_boxed_str()))
    }
}

/// The same as `TryFrom<&str>`, for `str::parse`.
impl FromStr for Text {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, TextError> {
        Self::try_from(s)
    }
}

/// A name is always valid text: what a client sends as its first line.
impl From<crate::Name> for Text {
    fn from(name: crate::Name) -> Self {
        Self(name.as_str().into())
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({:?})", &*self.0)
    }
}

/// The longest [`Token`], in bytes.
pub const MAX_TOKEN_LEN: usize = 64;

/// A short word without spaces: 1 to 64 visible ASCII characters (`!` to `~`).
///
/// Used for ping tokens, the server's name and version, and reason codes.
/// Built with `TryFrom<&str>`, `TryFrom<String>` or `str::parse`, which all fail
/// with [`TokenError`]:
///
/// ```
/// use chatproto::Token;
/// let t: Token = "ping-7".parse().unwrap();
/// assert_eq!(Token::try_from(String::from("ping-7")), Ok(t));
/// assert!("two words".parse::<Token>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(Box<str>);

/// Why a string is not a valid [`Token`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is empty or longer than [`MAX_TOKEN_LEN`] bytes.
    BadLength {
        /// Its length in bytes.
        len: usize,
    },
    /// The token holds a character outside `!` to `~`.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadLength { len } => {
                write!(f, "token is {len} bytes long, 1 to {MAX_TOKEN_LEN} allowed")
            }
            Self::InvalidChar { ch, at } => {
                write!(
                    f,
                    "token has {ch:?} at byte {at}; allowed are visible ASCII characters"
                )
            }
        }
    }
}

impl std::error::Error for TokenError {}

pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic()
}

impl Token {
    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_token(s: &str) -> Result<(), TokenError> {
    if let Some((at, ch)) = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !is_token_byte(c as u8))
    {
        return Err(TokenError::InvalidChar { ch, at });
    }
    if s.is_empty() || s.len() > MAX_TOKEN_LEN {
        return Err(TokenError::BadLength { len: s.len() });
    }
    Ok(())
}

impl TryFrom<&str> for Token {
    type Error = TokenError;

    fn try_from(s: &str) -> Result<Self, TokenError> {
        check_token(s)?;
        Ok(Self(s.into()))
    }
}

/// Validates an owned string; its buffer is kept (shrunk to fit), not copied.
impl TryFrom<String> for Token {
    type Error = TokenError;

    fn try_from(s: String) -> Result<Self, TokenError> {
        check_token(&s)?;
        Ok(Self(s.into_boxed_str()))
    }
}

/// The same as `TryFrom<&str>`, for `str::parse`.
impl FromStr for Token {
    type Err = TokenError;

    fn from_str(s: &str) -> Result<Self, TokenError> {
        Self::try_from(s)
    }
}

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({:?})", &*self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        for ok in [
            "a",
            " lead and trail ",
            "tab\there",
            "ünïcödé ✓",
            "/not a command",
        ] {
            assert_eq!(Text::try_from(ok).unwrap().as_str(), ok);
        }
        let cases: &[(&str, TextError)] = &[
            ("", TextError::Empty),
            ("a\x1b[2J", TextError::ControlChar { ch: '\x1b', at: 1 }),
            ("\x7f", TextError::ControlChar { ch: '\x7f', at: 0 }),
            (
                "x\u{9b}1m",
                TextError::ControlChar {
                    ch: '\u{9b}',
                    at: 1,
                },
            ),
            ("cr\r", TextError::ControlChar { ch: '\r', at: 2 }),
            ("nul\0", TextError::ControlChar { ch: '\0', at: 3 }),
        ];
        for (input, err) in cases {
            assert_eq!(Text::try_from(*input).unwrap_err(), *err, "{input:?}");
        }
    }

    #[test]
    fn owned_and_parsed_text_check_the_same_rules() {
        let cases: &[(&str, Result<&str, TextError>)] = &[
            (" hi\tthere ", Ok(" hi\tthere ")),
            ("", Err(TextError::Empty)),
            ("a\x1b", Err(TextError::ControlChar { ch: '\x1b', at: 1 })),
        ];
        for (input, want) in cases {
            let want = want.clone().map(str::to_owned);
            let owned = |t: Text| t.as_str().to_owned();
            assert_eq!(Text::try_from(*input).map(owned), want, "{input:?}");
            assert_eq!(Text::try_from(input.to_string()).map(owned), want);
            assert_eq!(input.parse::<Text>().map(owned), want);
        }
    }

    #[test]
    fn owned_and_parsed_tokens_check_the_same_rules() {
        let long = "t".repeat(MAX_TOKEN_LEN + 1);
        let cases: &[(&str, Result<&str, TokenError>)] = &[
            ("abc-1", Ok("abc-1")),
            ("", Err(TokenError::BadLength { len: 0 })),
            (&long, Err(TokenError::BadLength { len: 65 })),
            ("a b", Err(TokenError::InvalidChar { ch: ' ', at: 1 })),
            ("é", Err(TokenError::InvalidChar { ch: 'é', at: 0 })),
        ];
        for (input, want) in cases {
            let want = want.clone().map(str::to_owned);
            let owned = |t: Token| t.as_str().to_owned();
            assert_eq!(Token::try_from(*input).map(owned), want, "{input:?}");
            assert_eq!(Token::try_from(input.to_string()).map(owned), want);
            assert_eq!(input.parse::<Token>().map(owned), want);
        }
    }

    #[test]
    fn names_are_text() {
        let name = crate::Name::try_from("ann").unwrap();
        assert_eq!(Text::from(name).as_str(), "ann");
    }

    #[test]
    fn lossy_never_fails() {
        assert_eq!(Text::lossy("").as_str(), "-");
        assert_eq!(
            Text::lossy("\x1b]52;c;x\x07").as_str(),
            "\u{fffd}]52;c;x\u{fffd}"
        );
    }

    #[test]
    fn token_rules() {
        assert!(Token::try_from("abc-123.x").is_ok());
        assert_eq!(
            Token::try_from("").unwrap_err(),
            TokenError::BadLength { len: 0 }
        );
        assert_eq!(
            Token::try_from("a b").unwrap_err(),
            TokenError::InvalidChar { ch: ' ', at: 1 }
        );
        assert!(Token::try_from(&*"t".repeat(65)).is_err());
    }
}
