//! What the state machine asks of a driver's store and password hashing
//! ([`Request`], answered by an [`Answer`]), and what it tells the store to
//! write ([`StoreOp`]). Plain data: the state machine hashes nothing and
//! stores nothing.

use std::fmt;
use std::sync::Arc;

use super::Outgoing;
use crate::{Name, Password, Past, Scope};

/// The handle of one [`Request`]: the driver answers with
/// [`Input::Answer`](super::Input::Answer) and this id. Ids are never reused,
/// so an answer that comes late (its connection gone, its id taken by a new
/// connection) or twice is recognised and ignored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(u64);

impl RequestId {
    /// The number, for the driver's logs and maps.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The id numbered `n` (for tests and drivers that keep ids as numbers).
    pub const fn new(n: u64) -> Self {
        Self(n)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Where a connection comes from, as far as failed logins and registrations
/// go: an opaque key the driver derives from the peer's address (the IPv4
/// address, or the IPv6 /64), passed with
/// [`Input::ConnectedFrom`](super::Input::ConnectedFrom). Failed logins from
/// one key slow down further logins from it, and its `/register`s are
/// limited ([`AccountsConfig::max_registrations`](super::AccountsConfig::max_registrations)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerKey(u64);

impl PeerKey {
    /// The key numbered `n`, e.g. a hash of the address.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// What the driver must find out or do, off the state machine's lock, and
/// answer with [`Input::Answer`](super::Input::Answer). Every request gets
/// exactly one answer; when the store fails, [`Answer::Failed`].
///
/// Accounts are keyed by [`Name::key`] (names are unique ignoring case);
/// `account` is the spelling to keep.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Hash `password` (argon2id) and create the account `account` with that
    /// hash, unless it exists. Answer [`Answer::Done`], or
    /// [`Answer::NameTaken`] if it exists.
    Register {
        /// The account, spelled as it is to be kept.
        account: Name,
        /// Its password.
        password: Password,
    },
    /// Verify `password` against the account's hash. Answer
    /// [`Answer::LoggedIn`] with the account's stored offline messages (read
    /// after every [`StoreOp`] returned before this request was applied),
    /// [`Answer::WrongPassword`], or [`Answer::NoSuchAccount`].
    Login {
        /// The account.
        account: Name,
        /// The password given.
        password: Password,
    },
    /// Verify `old`, then hash `new` and keep it. Answer [`Answer::Done`] or
    /// [`Answer::WrongPassword`].
    ChangePassword {
        /// The account.
        account: Name,
        /// The password given as the current one.
        old: Password,
        /// The new one.
        new: Password,
    },
    /// Verify `password`, then delete the account and its offline messages.
    /// Answer [`Answer::Done`] or [`Answer::WrongPassword`].
    Unregister {
        /// The account.
        account: Name,
        /// The password given.
        password: Password,
    },
    /// Read `scope`'s stored lines with an id below `before` (all if `None`),
    /// the latest `limit` of them. Answer [`Answer::History`], oldest first.
    History {
        /// The scope; stored lines are keyed by its case-folded name
        /// (`GroupName::key`), since a group's spelling may change between
        /// its lives.
        scope: Scope,
        /// Only ids below this.
        before: Option<u64>,
        /// At most this many (the latest).
        limit: usize,
    },
}

/// The driver's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// [`Request::Register`], [`Request::ChangePassword`] or
    /// [`Request::Unregister`] succeeded.
    Done,
    /// [`Request::Login`] succeeded; the account's offline messages (`DM`s),
    /// oldest first.
    LoggedIn {
        /// The stored messages, to deliver and then delete.
        offline: Vec<Past>,
    },
    /// The password did not match.
    WrongPassword,
    /// [`Request::Login`]: there is no such account.
    NoSuchAccount,
    /// [`Request::Register`]: the account exists already.
    NameTaken,
    /// [`Request::History`]: the lines found, oldest first.
    History(Vec<Past>),
    /// The store or the hashing failed; the user is told to try later.
    Failed,
}

/// What the driver must write to its store, in the order returned. No answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreOp {
    /// A `MSG` or `ME` said in a scope (global or a group): keep it as its
    /// scope's key, [`Outgoing::id`], [`Outgoing::unix_ms`] and
    /// [`Outgoing::line`]; [`Past::from_stored`] reads it back.
    Line(Arc<Outgoing>),
    /// A `DM` to `account`, which is offline: keep it until
    /// [`StoreOp::DeleteOfflineDms`].
    OfflineDm {
        /// The recipient account.
        account: Name,
        /// The `DM` with its id and time.
        event: Arc<Outgoing>,
    },
    /// `account`'s offline messages with ids up to `through` were delivered:
    /// delete them.
    DeleteOfflineDms {
        /// The account.
        account: Name,
        /// The highest id delivered.
        through: u64,
    },
}
