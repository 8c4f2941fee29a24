//! IRC messages: the message layer of an IRC listener, sans IO.
//!
//! [`parse_message`] reads one line (its CRLF or LF already removed by a
//! [`crate::LineFramer`] from [`line_framer`]) into an [`IrcMessage`] that
//! borrows from the line; [`IrcMessage::encode`] and [`encode_message`] write
//! lines back, refusing anything that would not read back the same.
//!
//! # Grammar
//! modern.ircdocs.horse's "Message format", extended by the IRCv3
//! message-tags specification:
//!
//! ```text
//! message  = ["@" tags SP] [":" source SP] command *(SP param) [SP]
//! tags     = tag *(";" tag)
//! tag      = key ["=" value]        ; value escaped: escape_tag_value
//! command  = 1*ALPHA / 3DIGIT       ; compared ignoring ASCII case
//! param    = middle / ":" trailing  ; only the last param may be trailing
//! middle   = 1*(any but SP), not starting with ":"
//! trailing = *(any)                 ; may be empty, may hold SP and ":"
//! ```
//!
//! NUL, CR and LF appear nowhere. The tag section (`@`, tags and one space) is
//! at most [`MAX_TAGS_LEN`] bytes, the rest at most [`MAX_LINE_LEN`] bytes
//! with its CRLF. The parser is lenient where real clients stray from the
//! grammar: a run of spaces counts as one SP, spaces at the start and end of
//! the line are ignored, tag keys are opaque (the spec forbids rejecting a
//! message over its tag keys), and empty tag items (`@;a`) are skipped.
//!
//! The trailing parameter is no special case: it is the last of
//! [`IrcMessage::params`], and the encoder writes its `:` when needed.
//!
//! ```
//! use chatproto::irc::{line_framer, parse_message, IrcMessage};
//!
//! let mut framer = line_framer();
//! framer.push(b"@+draft/reply=42 PRIVMSG #rust :hello there\r\nPING x\n");
//! let mut out = Vec::new();
//! while let Some(line) = framer.next_line() {
//!     let msg = parse_message(line.unwrap())?;
//!     if msg.is_command("ping") {
//!         IrcMessage::new("PONG", &msg.params()[..1])?.encode(&mut out)?;
//!     } else {
//!         assert_eq!(msg.tag("+draft/reply").and_then(|t| t.value()), Some("42"));
//!         assert_eq!(msg.params(), ["#rust", "hello there"]);
//!     }
//! }
//! assert_eq!(out, b"PONG x\r\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What a server does with a message (registration, numerics such as 421 for
//! an unknown command) is the per-connection adapter's job: [`IrcSession`]
//! turns a connection's IRC lines into native [`crate::Command`]s and the
//! native server's events into IRC lines, and [`encode_shared`] encodes a
//! broadcast once per dialect.
//!
//! Accounts map onto the native `/login` and `/register`: SASL `PLAIN`
//! (offered with [`IrcConfig::accounts`]; the `001` a login before `CAP END`
//! earns waits for `CAP END`), `PASS account:password` at registration, and
//! `PRIVMSG NickServ :IDENTIFY [account] <password>` or `REGISTER
//! <password>` (also as `NS` and `NICKSERV`). A native `HISTORY` line becomes
//! the `PRIVMSG` it was, stamped with its own time: as a `server-time` tag
//! for clients that negotiated it, else as `[YYYY-MM-DD HH:MM] ` before the
//! text. `CHATHISTORY` is not offered.
//!
//! A driver runs one [`IrcSession`] per IRC connection next to the native
//! [`Server`](crate::server::Server): client lines in, commands to the server
//! and replies out; the server's events in, IRC lines out:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use chatproto::irc::{encode_shared, Delivery, IrcConfig, IrcSession};
//! use chatproto::server::{ConnId, Effect, Input, Server, ServerConfig};
//!
//! let mut server = Server::new(ServerConfig::default());
//! let mut session = IrcSession::new(Arc::new(IrcConfig::default()));
//! let conn = ConnId::new(1);
//! let mut to_client = Vec::new();
//! let mut effects = server.handle(Instant::now(), Input::Connected(conn));
//! for line in ["CAP LS 302", "NICK ann", "USER ann 0 * :Ann", "CAP END"] {
//!     let from = session.on_line(Ok(line));
//!     to_client.extend(from.reply);
//!     for command in from.commands {
//!         effects.extend(server.handle(Instant::now(), Input::Line(conn, command)));
//!     }
//! }
//! for effect in effects {
//!     let Effect::Deliver { event, .. } = effect else { continue };
//!     match session.on_event(&event) {
//!         Delivery::Nothing => {}
//!         Delivery::Lines(lines) => to_client.extend(lines),
//!         // A real driver encodes this once per (event, session.caps().dialect()).
//!         Delivery::Shared => {
//!             to_client.extend_from_slice(&encode_shared(&event, session.caps(), session.config()))
//!         }
//!     }
//! }
//! let text = String::from_utf8(to_client).unwrap();
//! assert!(text.contains(":chatd 001 ann :Welcome to the chatd IRC network, ann\r\n"));
//! assert!(text.ends_with(":ann!ann@hidden JOIN &global\r\n:chatd 353 ann = &global ann\r\n\
//!                         :chatd 366 ann &global :End of /NAMES list\r\n"));
//! ```

mod events;
mod message;
mod session;

pub use events::{encode_shared, rfc3339_ms};
pub use session::{ctcp, strip_formatting, Caps, Delivery, FromClient, IrcConfig, IrcSession};

pub use message::{
    encode_message, escape_tag_value, line_framer, parse_message, unescape_tag_value,
    IrcEncodeError, IrcMessage, IrcParseError, Tag, ERR_INPUTTOOLONG, ERR_UNKNOWNCOMMAND,
    FRAME_LIMIT, MAX_CLIENT_TAG_DATA, MAX_LINE_LEN, MAX_TAGS_LEN,
};
