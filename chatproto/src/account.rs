//! [`Password`]: the validated, redacted password of the account commands.

use std::fmt;

use crate::ParseError;

/// The shortest password, in bytes.
pub const MIN_PASSWORD_LEN: usize = 8;
/// The longest password, in bytes: long enough for any passphrase, short
/// enough that hashing it costs a bounded time.
pub const MAX_PASSWORD_LEN: usize = 256;

/// A password as sent in `/register`, `/login`, `/passwd` and `/unregister`:
/// 8 to 256 bytes of visible characters, no space, no control character
/// (PROTOCOL.md's `password` rule).
///
/// It never shows itself: `Debug` prints `Password(<redacted>)` and there is
/// no `Display`, so a command, effect or input logged with `{:?}` leaks no
/// password. Only [`expose`](Self::expose) gives the text, for the driver's
/// hashing.
///
/// ```
/// use chatproto::Password;
/// let p = Password::try_from("correct horse").unwrap_err(); // a space
/// assert_eq!(p.code().as_str(), "bad-args");
/// let p = Password::try_from("hunter22").unwrap();
/// assert_eq!(format!("{p:?}"), "Password(<redacted>)");
/// assert_eq!(p.expose(), "hunter22");
/// assert_eq!(Password::try_from("short").unwrap_err().code().as_str(), "bad-password");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Box<str>);

impl Password {
    /// The password's text, for hashing or verifying it. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Checks the password rule. A space is a [`ParseError::BadArgs`] (on the
/// wire it splits the arguments); a wrong length a [`ParseError::BadPassword`];
/// a control character a [`ParseError::BadText`]. No error quotes the password.
impl TryFrom<&str> for Password {
    type Error = ParseError;

    fn try_from(s: &str) -> Result<Self, ParseError> {
        if s.contains(' ') {
            return Err(ParseError::BadArgs {
                usage: "a password holds no space",
            });
        }
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&s.len()) {
            return Err(ParseError::BadPassword { len: s.len() });
        }
        if let Some((at, ch)) = s.char_indices().find(|&(_, c)| crate::is_forbidden_char(c)) {
            return Err(ParseError::BadText(crate::TextError::ControlChar {
                ch,
                at,
            }));
        }
        Ok(Self(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_bytes() {
        assert!(Password::try_from("1234567").is_err());
        assert!(Password::try_from("12345678").is_ok());
        assert!(Password::try_from("éééé").is_ok()); // 8 bytes
        assert!(Password::try_from(&"x".repeat(256)[..]).is_ok());
        assert_eq!(
            Password::try_from(&"x".repeat(257)[..]),
            Err(ParseError::BadPassword { len: 257 })
        );
    }

    #[test]
    fn errors_never_quote_the_password() {
        for bad in ["secret", "secret pass", "secret\x1bpass", &"s".repeat(300)] {
            let e = Password::try_from(bad).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{e}");
            assert!(!format!("{e:?}").contains("secret"), "{e:?}");
        }
    }
}
