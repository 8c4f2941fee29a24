//! Sans-IO building blocks for the chat line protocol described in PROTOCOL.md:
//! parsers and encoders for client commands and server events, a bounded line
//! framer, and the server's state machine as pure functions.
//!
//! Nothing here opens a socket, reads a clock, takes a lock or spawns a task:
//! bytes, lines and the current time go in, values and effects come out, so the
//! same code runs under any async runtime, a blocking loop, or a test.
//!
//! A third-party client reads bytes from its socket, frames and parses them,
//! keeps a [`Session`], and encodes commands:
//!
//! ```
//! use chatproto::{parse_event, parse_line, Event, LineFramer, Session};
//!
//! // Bytes as they might arrive from a server, split anywhere.
//! let received: [&[u8]; 3] = [b"HELLO chatd 0.1.0 who are you?\nWEL", b"COME ann\r\n", b"PING 42\n"];
//! let mut framer = LineFramer::new(chatproto::EVENT_LINE_LIMIT);
//! let mut session = Session::new();
//! let mut to_send = Vec::new();
//! parse_line("ann").unwrap().encode(&mut to_send); // our name
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
//! assert_eq!(to_send, b"ann\n/pong 42\n");
//! ```
//!
//! A server drives [`server::Server`]; see its documentation for the call order.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

mod client;
mod codes;
mod command;
mod error;
mod event;
mod framer;
mod lex;
mod name;
mod rate;
mod scope;
pub mod server;
mod text;

pub use client::{NameRefusal, Session};
pub use codes::{CloseReason, ErrorCode};
pub use command::{parse_line, Command, COMMAND_HELP};
pub use error::{FrameError, ParseError, Refusal};
pub use event::{parse_event, Event};
pub use framer::{LineFramer, DEFAULT_MAX_LINE, EVENT_LINE_LIMIT};
pub use name::{GroupName, Name, NameError, NameKey, MAX_NAME_LEN};
pub use rate::TokenBucket;
pub use scope::Scope;
pub use text::{is_forbidden_char, Text, TextError, Token, TokenError, MAX_TOKEN_LEN};

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
