//! Sans-IO building blocks for the chat line protocol described in PROTOCOL.md:
//! parsers and encoders for client commands and server events, a bounded line
//! framer, a client's [`Session`], and the server's state machine as pure
//! functions.
//!
//! Nothing here opens a socket, reads a clock, takes a lock or spawns a task:
//! bytes, lines and the current time go in, values and effects come out, so the
//! same code runs under any async runtime, a blocking loop, or a test.
//!
//! A third-party client reads bytes from its socket, frames and parses them,
//! keeps a [`Session`], and encodes commands:
//!
//! ```
//! use chatproto::{parse_event, Command, Event, LineFramer, Session};
//!
//! // Bytes as they might arrive from a server, split anywhere.
//! let received: [&[u8]; 3] = [b"HELLO chatd 0.1.0 who are you?\nWEL", b"COME ann\r\n", b"PING 42\n"];
//! let mut framer = LineFramer::for_client();
//! let mut session = Session::new();
//! let mut to_send = Vec::new();
//! let register = Command::nick("ann").unwrap();
//! session.note_sent(&register); // so the session can tell a refused name
//! register.encode(&mut to_send);
//! for chunk in received {
//!     framer.push(chunk);
//!     while let Some(line) = framer.next_line() {
//!         let event = parse_event(line.unwrap()).unwrap();
//!         if let Some(reply) = session.handle(&event) {
//!             reply.encode(&mut to_send); // answers PING with /pong
//!         }
//!         if let Event::Welcome(name) = &event {
//!             println!("registered as {name}");
//!         }
//!     }
//! }
//! assert_eq!(session.name().unwrap().as_str(), "ann");
//! assert_eq!(to_send, b"/nick ann\n/pong 42\n");
//! ```
//!
//! # Building commands and values
//! [`parse_line`] reads what a person typed (`/msg bob hi`). A program builds
//! commands with the validating constructors [`Command::say`],
//! [`Command::msg`], [`Command::join`], [`Command::nick`] and the like, or from
//! values it validated itself: [`Name`], [`GroupName`], [`Text`] and [`Token`]
//! come from `&str` or `String` (`TryFrom`) and from `str::parse`. Their
//! errors convert into [`ParseError`], so `?` works across them:
//!
//! ```
//! use chatproto::{Command, Name, ParseError, Text};
//! fn dm(to: String, text: &str) -> Result<Command, ParseError> {
//!     let to = Name::try_from(to)?;
//!     let text: Text = text.parse()?;
//!     Ok(Command::Msg { to, text })
//! }
//! assert_eq!(dm("bob".into(), "hi")?, Command::msg("bob", "hi")?);
//! assert_eq!(dm("b b".into(), "hi").unwrap_err().code().as_str(), "name-invalid");
//! # Ok::<(), ParseError>(())
//! ```
//!
//! # Which line limit to frame with
//! The two directions use different limits; this is the one place that says
//! which:
//!
//! - A **server** frames client lines with [`LineFramer::for_server`]:
//!   [`DEFAULT_MAX_LINE`], 4096 bytes, line ending excluded, PROTOCOL.md's
//!   limit for client lines.
//! - A **client** frames server lines with [`LineFramer::for_client`]:
//!   [`EVENT_LINE_LIMIT`], 4 MiB. Server lines have no limit of their own:
//!   `USERS` and `GROUPS` grow with the server (about 33 bytes per user), and a
//!   line that carries a user's text is longer than the line that user sent.
//!   `MSG <group> <from> <text>` adds up to 70 bytes, so a client framing with
//!   [`DEFAULT_MAX_LINE`] drops `MSG` lines whose text is 4027 bytes or more.
//!
//! # A blocking client
//! Every blocking client runs the same loop: read, frame, parse, let the
//! [`Session`] handle the event and send its reply.
//! `chatproto/examples/blocking_client.rs` is a whole client around it (a
//! thread reading stdin, joining a group):
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use chatproto::{parse_event, Command, LineFramer, Session};
//!
//! fn run(addr: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
//!     let mut socket = TcpStream::connect(addr)?;
//!     let mut session = Session::new();
//!     let register = Command::nick(name)?;
//!     session.note_sent(&register);
//!     socket.write_all(&register.to_bytes())?;
//!
//!     let mut framer = LineFramer::for_client();
//!     let mut buf = [0; 8192];
//!     while !session.is_closed() {
//!         let n = socket.read(&mut buf)?;
//!         if n == 0 {
//!             return Err("connection closed without BYE".into());
//!         }
//!         framer.push(&buf[..n]);
//!         while let Some(line) = framer.next_line() {
//!             // Skip what cannot be read, such as a tag from a newer server.
//!             let Ok(Ok(event)) = line.map(parse_event) else { continue };
//!             println!("{event}");
//!             if let Some(reply) = session.handle(&event) {
//!                 session.note_sent(&reply);
//!                 socket.write_all(&reply.to_bytes())?;
//!             }
//!             if let Some(refused) = session.take_name_refusal() {
//!                 return Err(refused.to_string().into());
//!             }
//!         }
//!     }
//!     Ok(())
//! }
//! # run("127.0.0.1:8080", "ann").unwrap();
//! ```
//!
//! # TLS
//! TLS is transport, so it stays outside this crate: the loop above is the
//! same over an encrypted stream. Connect the TCP socket, run the handshake
//! with the TLS library of your runtime (rustls through `rustls::StreamOwned`
//! for blocking code, `futures-rustls` for smol or async-std, `tokio-rustls`
//! for tokio, or `native-tls`), then read the decrypted bytes into the
//! [`LineFramer`] and write encoded commands to the TLS stream instead of the
//! socket. Things a chat client should get right:
//!
//! - Verify the server: its certificate chain against trusted roots and its
//!   name against the host you dialled. A chatd started with
//!   `--tls-self-signed` logs its certificate's SHA-256 fingerprint (as
//!   `openssl x509 -fingerprint -sha256` prints it): trust that certificate
//!   file as a root, or pin the fingerprint, rather than turning verification
//!   off.
//! - Never fall back to plaintext when the handshake fails: say what did not
//!   match and stop.
//! - A peer that closes without TLS's `close_notify` looks like an unexpected
//!   EOF to most TLS libraries; after chatd's `BYE` it is an ordinary close.
//!
//! chatd serves this protocol over TLS on `--tls-listen` and IRC over TLS on
//! `--irc-tls-listen` (by convention port 6697). `chatcli/src/tls.rs` in this
//! repository is a complete client side on futures-rustls.
//!
//! # A server
//! A server drives [`server::Server`]: [`guide`] says how, and what is left to
//! the driver; `chatproto/examples/std_server.rs` is a small one on std threads.
//!
//! [`irc`] parses and encodes IRC messages, for a server that also speaks IRC.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod account;
mod client;
mod codes;
mod command;
mod error;
mod event;
mod framer;
pub mod irc;
mod lex;
mod name;
mod past;
mod rate;
mod scope;
pub mod server;
mod text;

pub mod guide {
    #![doc = include_str!("guide_server.md")]
}

pub use account::{Password, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
pub use client::{NameRefusal, Session};
pub use codes::{AccountState, CloseReason, ErrorCode};
pub use command::{parse_line, Command, COMMAND_HELP};
pub use error::{FrameError, ParseError, Refusal};
pub use event::{parse_event, Event};
pub use framer::{LineFramer, DEFAULT_MAX_LINE, EVENT_LINE_LIMIT};
pub use name::{GroupName, Name, NameError, NameKey, MAX_NAME_LEN};
pub use past::Past;
pub use rate::TokenBucket;
pub use scope::Scope;
pub use text::{is_forbidden_char, Text, TextError, Token, TokenError, MAX_TOKEN_LEN};

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
