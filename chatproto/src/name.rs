//! Validated names: user names ([`Name`]) and group names ([`GroupName`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest name, in bytes (and characters: names are ASCII).
pub const MAX_NAME_LEN: usize = 32;

/// Why a string is not a valid [`Name`] or [`GroupName`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds a character outside `A-Z a-z 0-9 _ -`.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the name.
        at: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("name is empty"),
            Self::TooLong { len } => {
                write!(
                    f,
                    "name is {len} bytes long, at most {MAX_NAME_LEN} allowed"
                )
            }
            Self::InvalidChar { ch, at } => write!(
                f,
                "name has {ch:?} at byte {at}; allowed are A-Z a-z 0-9 _ -"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// True for the bytes a name may hold.
pub(crate) fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some((at, ch)) = s
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !is_name_byte(c as u8))
    {
        return Err(NameError::InvalidChar { ch, at });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: s.len() });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(Arc<str>);

        impl $ty {
            /// The name as sent, with its original casing.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name's identity: names that differ only in ASCII case are the same
            /// name, so maps of names are keyed by this.
            pub fn key(&self) -> NameKey {
                if self.0.bytes().any(|b| b.is_ascii_uppercase()) {
                    NameKey(self.0.to_ascii_lowercase().into())
                } else {
                    // Most names are lowercase already: share the allocation.
                    NameKey(self.0.clone())
                }
            }

            /// True if `other` is the same name, ignoring ASCII case.
            pub fn same_as(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;

            fn try_from(s: &str) -> Result<Self, NameError> {
                validate(s)?;
                Ok(Self(s.into()))
            }
        }

        /// Validates an owned string, keeping the name's text as given.
        impl TryFrom<String> for $ty {
            type Error = NameError;

            fn try_from(s: String) -> Result<Self, NameError> {
                validate(&s)?;
                Ok(Self(s.into()))
            }
        }

        /// The same as `TryFrom<&str>`, for `str::parse`.
        impl FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::try_from(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }
    };
}

name_type!(
    /// A user name: 1 to 32 of `A-Z a-z 0-9 _ -`. Clones share one allocation,
    /// so a server can keep a name in several maps cheaply.
    ///
    /// Equality is exact (so encoding round-trips); uniqueness on a server is
    /// case-insensitive, which [`Name::key`] and [`Name::same_as`] express.
    ///
    /// Built with `TryFrom<&str>`, `TryFrom<String>` or `str::parse`, which all
    /// check the same rules and fail with [`NameError`]:
    ///
    /// ```
    /// use chatproto::Name;
    /// let alice = Name::try_from("Alice").unwrap();
    /// assert!(alice.same_as(&Name::try_from("alice").unwrap()));
    /// assert!(Name::try_from("al ice").is_err());
    /// let bob: Name = "bob".parse().unwrap();
    /// assert_eq!(Name::try_from(String::from("bob")), Ok(bob));
    /// ```
    Name
);

name_type!(
    /// A group name: the same rules as [`Name`] (1 to 32 of `A-Z a-z 0-9 _ -`,
    /// unique ignoring ASCII case).
    GroupName
);

/// The case-folded identity of a [`Name`] or [`GroupName`], for keying maps.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct NameKey(Arc<str>);

impl NameKey {
    /// The lowercase form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for ok in ["a", "Z", "bob_1", "x-y", &"n".repeat(MAX_NAME_LEN)] {
            assert_eq!(Name::try_from(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn invalid_names() {
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            (&"n".repeat(33), NameError::TooLong { len: 33 }),
            ("a b", NameError::InvalidChar { ch: ' ', at: 1 }),
            ("*", NameError::InvalidChar { ch: '*', at: 0 }),
            ("bé", NameError::InvalidChar { ch: 'é', at: 1 }),
            ("a=1", NameError::InvalidChar { ch: '=', at: 1 }),
            ("/x", NameError::InvalidChar { ch: '/', at: 0 }),
        ];
        for (input, err) in cases {
            assert_eq!(Name::try_from(*input).unwrap_err(), *err, "{input:?}");
        }
    }

    #[test]
    fn every_constructor_checks_the_same_rules() {
        let cases: &[(&str, Result<&str, NameError>)] = &[
            ("Ann_1", Ok("Ann_1")),
            ("", Err(NameError::Empty)),
            ("a b", Err(NameError::InvalidChar { ch: ' ', at: 1 })),
            (&"n".repeat(33), Err(NameError::TooLong { len: 33 })),
        ];
        for (input, want) in cases {
            let want = want.clone().map(str::to_owned);
            let as_str = |n: Name| n.as_str().to_owned();
            let as_group = |n: GroupName| n.as_str().to_owned();
            assert_eq!(Name::try_from(*input).map(as_str), want, "{input:?}");
            assert_eq!(Name::try_from(input.to_string()).map(as_str), want);
            assert_eq!(input.parse::<Name>().map(as_str), want);
            assert_eq!(GroupName::try_from(input.to_string()).map(as_group), want);
            assert_eq!(input.parse::<GroupName>().map(as_group), want);
        }
    }

    #[test]
    fn keys_ignore_case() {
        let a = GroupName::try_from("Rust").unwrap();
        let b = GroupName::try_from("rUST").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.key(), b.key());
        assert!(a.same_as(&b));
        assert_eq!(a.key().as_str(), "rust");
    }
}
