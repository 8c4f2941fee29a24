//! Stable wire tokens: error codes ([`ErrorCode`]), close reasons
//! ([`CloseReason`]) and account states ([`AccountState`]).

use std::fmt;

use crate::Token;

/// Defines an enum of known wire tokens plus `Other(Token)` for tokens a newer
/// peer may send, with `as_str`, `from_token`, `KNOWN` and `Display`.
macro_rules! token_enum {
    ($(#[$tydoc:meta])* $ty:ident { $($(#[$doc:meta])* $variant:ident => $s:literal,)* }) => {
        $(#[$tydoc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $ty {
            $($(#[$doc])* $variant,)*
            /// A token this version does not know (sent by a newer peer).
            Other(Token),
        }

        impl $ty {
            /// Every value this version knows, in PROTOCOL.md's order.
            pub const KNOWN: &'static [$ty] = &[$($ty::$variant,)*];

            /// The token as sent on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $s,)*
                    Self::Other(t) => t.as_str(),
                }
            }

            /// The value for a wire token; unknown tokens become `Other`.
            pub fn from_token(t: Token) -> Self {
                match t.as_str() {
                    $($s => Self::$variant,)*
                    _ => Self::Other(t),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

token_enum! {
    /// A stable, kebab-case error code as sent in `ERR <code> <text>`.
    ///
    /// Clients should act on the code, never on the text.
    ErrorCode {
        /// The name is registered by someone else (ignoring case).
        NameTaken => "name-taken",
        /// The name breaks the name rules.
        NameInvalid => "name-invalid",
        /// The name is reserved (it could pass for the server or its staff).
        NameReserved => "name-reserved",
        /// The command needs a registered name first.
        NotRegistered => "not-registered",
        /// `/something` that is not a command.
        UnknownCommand => "unknown-command",
        /// A known command with missing or extra arguments.
        BadArgs => "bad-args",
        /// `/msg` to a name nobody has.
        NoSuchUser => "no-such-user",
        /// `/leave` while not in a group.
        NotInGroup => "not-in-group",
        /// `/join` of the group one is already in.
        AlreadyInGroup => "already-in-group",
        /// The line was longer than the server's limit; it was discarded.
        LineTooLong => "line-too-long",
        /// The line was not valid UTF-8; it was discarded.
        BadEncoding => "bad-encoding",
        /// The line held control characters (or was empty).
        BadText => "bad-text",
        /// The client sends faster than the server accepts.
        RateLimited => "rate-limited",
        /// The server has no accounts or no history (or its store failed):
        /// the command cannot work here, or not now.
        Unavailable => "unavailable",
        /// A password breaks the password rules (8 to 256 bytes, no space).
        BadPassword => "bad-password",
        /// The password given is not the account's.
        WrongPassword => "wrong-password",
        /// `/login` to a name that is no account.
        NoSuchAccount => "no-such-account",
        /// `/passwd` or `/unregister` without being logged in.
        NotLoggedIn => "not-logged-in",
        /// `/register`, `/login` or `/nick` while logged in to an account.
        LoggedIn => "logged-in",
        /// Too many lines sent while an account command was being answered;
        /// this one was discarded.
        Busy => "busy",
        /// `/msg` to an offline account whose stored messages are at the limit.
        MailboxFull => "mailbox-full",
    }
}

token_enum! {
    /// Why a connection ended: the token of `BYE <reason>`, and the reason in the
    /// `PART * <name> <reason>` everyone else sees.
    CloseReason {
        /// The client sent `/quit`.
        Quit => "quit",
        /// The server is shutting down.
        ServerShutdown => "server-shutdown",
        /// The server (or the client's address) has too many connections.
        ServerFull => "server-full",
        /// The client read too slowly; its queue passed the server's limit.
        SendqExceeded => "sendq-exceeded",
        /// The client did not register in time.
        RegisterTimeout => "register-timeout",
        /// The client stayed silent too long, even after a `PING`.
        PingTimeout => "ping-timeout",
        /// The client sent too much, too fast.
        Flood => "flood",
        /// The connection closed or failed without a `/quit` (no `BYE` is sent).
        ConnectionLost => "connection-lost",
        /// The account this connection was logged in to logged in from
        /// another connection.
        SessionReplaced => "session-replaced",
    }
}

token_enum! {
    /// What happened to the account named in `ACCOUNT <name> <state>`.
    AccountState {
        /// `/register` succeeded: the account exists and you are logged in.
        Registered => "registered",
        /// `/login` succeeded: you are logged in (and have the account's name).
        LoggedIn => "logged-in",
        /// `/passwd` succeeded.
        PasswordChanged => "password-changed",
        /// `/unregister` succeeded: the account is gone; you keep the name
        /// until you leave.
        Unregistered => "unregistered",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_tokens_round_trip() {
        for code in ErrorCode::KNOWN {
            let t = Token::try_from(code.as_str()).unwrap();
            assert_eq!(ErrorCode::from_token(t), *code);
        }
        for reason in CloseReason::KNOWN {
            let t = Token::try_from(reason.as_str()).unwrap();
            assert_eq!(CloseReason::from_token(t), *reason);
        }
        for state in AccountState::KNOWN {
            let t = Token::try_from(state.as_str()).unwrap();
            assert_eq!(AccountState::from_token(t), *state);
        }
    }

    #[test]
    fn unknown_tokens_are_kept() {
        let other = ErrorCode::from_token(Token::try_from("future-code").unwrap());
        assert_eq!(other.as_str(), "future-code");
        assert!(matches!(other, ErrorCode::Other(_)));
        let other = CloseReason::from_token(Token::try_from("moved").unwrap());
        assert_eq!(other.to_string(), "moved");
    }
}
