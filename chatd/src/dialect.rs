//! What a connection speaks ([`Dialect`]): this project's line protocol, or IRC
//! through `chatproto::irc`'s per-connection adapter.

use std::sync::Arc;

use chatproto::irc::{encode_message, IrcConfig, IrcSession};
use chatproto::{CloseReason, Event};

/// The protocol of a listener, and so of every connection it accepts.
#[derive(Clone, Debug)]
pub(crate) enum Dialect {
    Native,
    Irc(Arc<IrcConfig>),
}

impl Dialect {
    /// A new connection's adapter state, for IRC.
    pub(crate) fn session(&self) -> Option<IrcSession> {
        match self {
            Self::Native => None,
            Self::Irc(config) => Some(IrcSession::new(config.clone())),
        }
    }

    /// The goodbye for a connection the server cannot take or keep, written
    /// outside the state machine: `BYE <reason>`, or IRC's `ERROR`.
    pub(crate) fn goodbye(&self, reason: CloseReason) -> Vec<u8> {
        match self {
            Self::Native => Event::Bye(reason).to_bytes(),
            Self::Irc(_) => {
                let mut out = Vec::new();
                let text = format!("Closing link: ({reason})");
                // A reason token and this text always make a valid line.
                let _ = encode_message(&mut out, &[], None, "ERROR", &[&text]);
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goodbyes_in_each_dialect() {
        assert_eq!(
            Dialect::Native.goodbye(CloseReason::ServerFull),
            b"BYE server-full\n"
        );
        let irc = Dialect::Irc(Arc::new(IrcConfig::default()));
        assert_eq!(
            irc.goodbye(CloseReason::ServerShutdown),
            b"ERROR :Closing link: (server-shutdown)\r\n"
        );
        assert!(irc.session().is_some() && Dialect::Native.session().is_none());
    }
}
