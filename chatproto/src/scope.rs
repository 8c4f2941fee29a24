//! [`Scope`]: where a message goes, the global room or one group.

use std::fmt;

use crate::GroupName;

/// Where a message is said: the global room (`*` on the wire) or a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everyone connected; `*` on the wire.
    Global,
    /// The members of one group.
    Group(GroupName),
}

impl Scope {
    /// The scope as sent on the wire: `*` or the group's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Global => "*",
            Self::Group(g) => g.as_str(),
        }
    }

    /// The group, if this is one.
    pub fn group(&self) -> Option<&GroupName> {
        match self {
            Self::Global => None,
            Self::Group(g) => Some(g),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
