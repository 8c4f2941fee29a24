//! [`Event`]: what a server sends, with [`parse_event`] and [`Event::encode`].

use std::fmt;

use nom::character::complete::char;
use nom::combinator::{map_res, opt};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::Parser;

use crate::error::clip;
use crate::lex::{self, check_line, run, sp, LexResult};
use crate::{
    AccountState, CloseReason, ErrorCode, GroupName, Name, ParseError, Past, Scope, Text, Token,
};

/// A line a server sends, parsed. The first field is always the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `HELLO <server> <version> <text>`: the greeting; `text` asks for a name.
    Hello {
        /// The server software's name.
        server: Token,
        /// Its version.
        version: Token,
        /// Words for a person.
        text: Text,
    },
    /// `WELCOME <name>`: registration (or rename) accepted; this is your name now.
    Welcome(Name),
    /// `MSG <scope> <from> <text>`: a chat message (never echoed to its sender).
    Msg {
        /// Where it was said.
        scope: Scope,
        /// Who said it.
        from: Name,
        /// What was said, exactly as sent.
        text: Text,
    },
    /// `ME <scope> <from> <text>`: an action.
    Me {
        /// Where.
        scope: Scope,
        /// Who.
        from: Name,
        /// The action.
        text: Text,
    },
    /// `DM <from> <to> <text>`: a private message, to its recipient and, as a
    /// confirmation, to its sender.
    Dm {
        /// The sender.
        from: Name,
        /// The recipient.
        to: Name,
        /// The message.
        text: Text,
    },
    /// `JOIN <scope> <name>`: `name` joined a group, or (`*`) connected.
    Join {
        /// The group, or global for a new user.
        scope: Scope,
        /// Who.
        name: Name,
    },
    /// `PART <scope> <name> [reason]`: `name` left a group, or (`*`) disconnected.
    Part {
        /// The group, or global for a user who left the server.
        scope: Scope,
        /// Who.
        name: Name,
        /// Why, if said: a close reason token or the user's `/quit` text.
        reason: Option<Text>,
    },
    /// `NICK <old> <new>`: someone was renamed.
    Nick {
        /// The former name.
        old: Name,
        /// The new name.
        new: Name,
    },
    /// `USERS <scope> <name>...`: the reply to `/users`.
    Users {
        /// The scope listed.
        scope: Scope,
        /// Its users, sorted ignoring case.
        names: Vec<Name>,
    },
    /// `GROUPS <group>=<count>...`: the reply to `/groups`, sorted ignoring case.
    Groups(Vec<(GroupName, u32)>),
    /// `INFO <text>`: a notice for a person, such as a line of help.
    Info(Text),
    /// `ERR <code> <text>`: a command was refused; nothing else changed.
    Err {
        /// What went wrong, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        text: Text,
    },
    /// `PING <token>`: answer with `/pong <token>`.
    Ping(Token),
    /// `PONG <token>`: the answer to `/ping`.
    Pong(Token),
    /// `BYE <reason>`: the server closes the connection after this line.
    Bye(CloseReason),
    /// `WHOIS <name> <scope> <idle> <signon>`: the reply to `/whois`.
    Whois {
        /// The user's name as registered.
        name: Name,
        /// Its scope: global, or its group as the group's creator spelled it.
        scope: Scope,
        /// Seconds since it last sent a line.
        idle: u32,
        /// When it registered, in seconds since the Unix epoch; 0 if the
        /// server does not know.
        signon: u64,
    },
    /// `COUNT <users> <groups> <connections>`: the reply to `/count`.
    Count {
        /// Registered users.
        users: u32,
        /// Groups.
        groups: u32,
        /// Live connections, unregistered ones included.
        connections: u32,
    },
    /// `ACCOUNT <name> <state>`: what an account command did to the account
    /// `name` (yours).
    Account {
        /// The account, as registered.
        name: Name,
        /// What happened.
        state: AccountState,
    },
    /// `HISTORY <id> <time> <line>`: a `MSG`, `ME` or `DM` said earlier,
    /// with its id and time (ms since the Unix epoch): replayed on `/join`,
    /// on registration, for `/history`, and for messages stored while you
    /// were offline. Never a live line.
    History(Past),
    /// `REPLAYED <scope> <count>`: the end of a replay of `scope`'s history
    /// (`count` `HISTORY` lines before it); what follows in `scope` is live.
    Replayed {
        /// The scope replayed.
        scope: Scope,
        /// How many lines were replayed.
        count: u32,
    },
}

/// Parses one server line, line ending already removed.
///
/// Grammar (PROTOCOL.md, "Server lines"); every line is `tag *(SP field) [SP text]`:
/// ```text
/// event = "HELLO" SP token SP token SP text / "WELCOME" SP name
///       / "MSG" SP scope SP name SP text / "ME" SP scope SP name SP text
///       / "DM" SP name SP name SP text / "JOIN" SP scope SP name
///       / "PART" SP scope SP name [SP text] / "NICK" SP name SP name
///       / "USERS" SP scope *(SP name) / "GROUPS" *(SP group "=" count)
///       / "INFO" SP text / "ERR" SP token SP text
///       / "PING" SP token / "PONG" SP token / "BYE" SP token
///       / "WHOIS" SP name SP scope SP count SP number
///       / "COUNT" SP count SP count SP count
///       / "ACCOUNT" SP name SP token
///       / "HISTORY" SP number SP number SP ( msg / me / dm )
///       / "REPLAYED" SP scope SP count
/// ```
/// Never panics, whatever the input.
///
/// ```
/// use chatproto::{parse_event, Event, Scope};
/// let Ok(Event::Msg { scope, from, text }) = parse_event("MSG rust bob hi all") else { panic!() };
/// assert_eq!((scope.as_str(), from.as_str(), text.as_str()), ("rust", "bob", "hi all"));
/// ```
pub fn parse_event(line: &str) -> Result<Event, ParseError> {
    check_line(line)?;
    let tag = line.split(' ').next().unwrap_or_default();
    let fields = &line[tag.len()..];
    let malformed = |tag| ParseError::MalformedEvent { tag };
    match tag {
        "HELLO" => run(
            (sp, lex::token, sp, lex::token, sp, lex::text),
            fields,
            malformed("HELLO"),
        )
        .map(|(_, server, _, version, _, text)| Event::Hello {
            server,
            version,
            text,
        }),
        "WELCOME" => run(preceded(sp, lex::name), fields, malformed("WELCOME")).map(Event::Welcome),
        "MSG" => run(scoped_text, fields, malformed("MSG")).map(|(scope, from, text)| Event::Msg {
            scope,
            from,
            text,
        }),
        "ME" => run(scoped_text, fields, malformed("ME")).map(|(scope, from, text)| Event::Me {
            scope,
            from,
            text,
        }),
        "DM" => run(
            (sp, lex::name, sp, lex::name, sp, lex::text),
            fields,
            malformed("DM"),
        )
        .map(|(_, from, _, to, _, text)| Event::Dm { from, to, text }),
        "JOIN" => run((sp, lex::scope, sp, lex::name), fields, malformed("JOIN"))
            .map(|(_, scope, _, name)| Event::Join { scope, name }),
        "PART" => run(
            (sp, lex::scope, sp, lex::name, opt(preceded(sp, lex::text))),
            fields,
            malformed("PART"),
        )
        .map(|(_, scope, _, name, reason)| Event::Part {
            scope,
            name,
            reason,
        }),
        "NICK" => run((sp, lex::name, sp, lex::name), fields, malformed("NICK"))
            .map(|(_, old, _, new)| Event::Nick { old, new }),
        "USERS" => run(
            (sp, lex::scope, many0(preceded(sp, lex::name))),
            fields,
            malformed("USERS"),
        )
        .map(|(_, scope, names)| Event::Users { scope, names }),
        "GROUPS" => run(
            many0(preceded(sp, group_count)),
            fields,
            malformed("GROUPS"),
        )
        .map(Event::Groups),
        "INFO" => run(preceded(sp, lex::text), fields, malformed("INFO")).map(Event::Info),
        "ERR" => run((sp, lex::token, sp, lex::text), fields, malformed("ERR")).map(
            |(_, code, _, text)| Event::Err {
                code: ErrorCode::from_token(code),
                text,
            },
        ),
        "PING" => run(preceded(sp, lex::token), fields, malformed("PING")).map(Event::Ping),
        "PONG" => run(preceded(sp, lex::token), fields, malformed("PONG")).map(Event::Pong),
        "BYE" => run(preceded(sp, lex::token), fields, malformed("BYE"))
            .map(|t| Event::Bye(CloseReason::from_token(t))),
        "WHOIS" => run(
            (
                sp,
                lex::name,
                sp,
                lex::scope,
                sp,
                lex::count,
                sp,
                lex::number,
            ),
            fields,
            malformed("WHOIS"),
        )
        .map(|(_, name, _, scope, _, idle, _, signon)| Event::Whois {
            name,
            scope,
            idle,
            signon,
        }),
        "COUNT" => run(
            (sp, lex::count, sp, lex::count, sp, lex::count),
            fields,
            malformed("COUNT"),
        )
        .map(|(_, users, _, groups, _, connections)| Event::Count {
            users,
            groups,
            connections,
        }),
        "ACCOUNT" => run(
            (sp, lex::name, sp, lex::token),
            fields,
            malformed("ACCOUNT"),
        )
        .map(|(_, name, _, state)| Event::Account {
            name,
            state: AccountState::from_token(state),
        }),
        "HISTORY" => {
            let (_, id, _, unix_ms, _, rest) = run(
                (sp, lex::number, sp, lex::number, sp, nom::combinator::rest),
                fields,
                malformed("HISTORY"),
            )?;
            let past = parse_event(rest)
                .ok()
                .and_then(|e| Past::new(id, unix_ms, e).ok());
            past.map(Event::History).ok_or(malformed("HISTORY"))
        }
        "REPLAYED" => run(
            (sp, lex::scope, sp, lex::count),
            fields,
            malformed("REPLAYED"),
        )
        .map(|(_, scope, _, count)| Event::Replayed { scope, count }),
        _ => Err(ParseError::UnknownEvent(clip(tag, 32))),
    }
}

/// `SP scope SP name SP text`, shared by `MSG` and `ME`.
fn scoped_text(input: &str) -> LexResult<'_, (Scope, Name, Text)> {
    (sp, lex::scope, sp, lex::name, sp, lex::text)
        .map(|(_, scope, _, name, _, text)| (scope, name, text))
        .parse(input)
}

/// `group "=" count`, one entry of `GROUPS`.
fn group_count(input: &str) -> LexResult<'_, (GroupName, u32)> {
    let group = map_res(
        nom::bytes::complete::take_while1(|c: char| {
            c.is_ascii() && crate::name::is_name_byte(c as u8)
        }),
        |w: &str| GroupName::try_from(w).map_err(ParseError::BadName),
    );
    (group, char('='), lex::count)
        .map(|(g, _, n)| (g, n))
        .parse(input)
}

impl Event {
    /// Appends the event's line, LF included, to `out`.
    ///
    /// Cannot fail; `parse_event` of the line (without its LF) gives back an
    /// equal event.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut put = |parts: &[&str]| {
            for p in parts {
                out.extend_from_slice(p.as_bytes());
            }
        };
        match self {
            Self::Hello {
                server,
                version,
                text,
            } => put(&[
                "HELLO ",
                server.as_str(),
                " ",
                version.as_str(),
                " ",
                text.as_str(),
            ]),
            Self::Welcome(n) => put(&["WELCOME ", n.as_str()]),
            Self::Msg { scope, from, text } => put(&[
                "MSG ",
                scope.as_str(),
                " ",
                from.as_str(),
                " ",
                text.as_str(),
            ]),
            Self::Me { scope, from, text } => put(&[
                "ME ",
                scope.as_str(),
                " ",
                from.as_str(),
                " ",
                text.as_str(),
            ]),
            Self::Dm { from, to, text } => {
                put(&["DM ", from.as_str(), " ", to.as_str(), " ", text.as_str()])
            }
            Self::Join { scope, name } => put(&["JOIN ", scope.as_str(), " ", name.as_str()]),
            Self::Part {
                scope,
                name,
                reason,
            } => {
                put(&["PART ", scope.as_str(), " ", name.as_str()]);
                if let Some(r) = reason {
                    put(&[" ", r.as_str()]);
                }
            }
            Self::Nick { old, new } => put(&["NICK ", old.as_str(), " ", new.as_str()]),
            Self::Users { scope, names } => {
                put(&["USERS ", scope.as_str()]);
                for n in names {
                    put(&[" ", n.as_str()]);
                }
            }
            Self::Groups(groups) => {
                put(&["GROUPS"]);
                let mut digits = String::new();
                for (g, n) in groups {
                    digits.clear();
                    fmt::Write::write_fmt(&mut digits, format_args!("{n}"))
                        .expect("writing to a String cannot fail");
                    put(&[" ", g.as_str(), "=", &digits]);
                }
            }
            Self::Info(t) => put(&["INFO ", t.as_str()]),
            Self::Err { code, text } => put(&["ERR ", code.as_str(), " ", text.as_str()]),
            Self::Ping(t) => put(&["PING ", t.as_str()]),
            Self::Pong(t) => put(&["PONG ", t.as_str()]),
            Self::Bye(r) => put(&["BYE ", r.as_str()]),
            Self::Whois {
                name,
                scope,
                idle,
                signon,
            } => put(&[
                "WHOIS ",
                name.as_str(),
                " ",
                scope.as_str(),
                " ",
                &idle.to_string(),
                " ",
                &signon.to_string(),
            ]),
            Self::Count {
                users,
                groups,
                connections,
            } => put(&[
                "COUNT ",
                &users.to_string(),
                " ",
                &groups.to_string(),
                " ",
                &connections.to_string(),
            ]),
            Self::Account { name, state } => put(&["ACCOUNT ", name.as_str(), " ", state.as_str()]),
            Self::History(past) => {
                put(&[
                    "HISTORY ",
                    &past.id().to_string(),
                    " ",
                    &past.unix_ms().to_string(),
                    " ",
                ]);
                // The inner event brings its own LF.
                return past.event().encode(out);
            }
            Self::Replayed { scope, count } => {
                put(&["REPLAYED ", scope.as_str(), " ", &count.to_string()]);
            }
        }
        out.push(b'\n');
    }

    /// The encoded line, LF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// The wire line without its LF, for logs.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.to_bytes();
        f.write_str(String::from_utf8_lossy(&bytes[..bytes.len() - 1]).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_lines_round_trip() {
        for line in [
            "HELLO chatd 0.1.0 welcome, who are you?",
            "WELCOME alice",
            "MSG * bob hi  there ",
            "MSG rust bob hi",
            "ME * bob waves",
            "DM bob alice psst",
            "JOIN * carol",
            "JOIN rust carol",
            "PART rust carol",
            "PART * carol ping-timeout",
            "PART * carol gone fishing",
            "NICK carol caroline",
            "USERS *",
            "USERS rust alice bob",
            "GROUPS",
            "GROUPS rust=2 go=1",
            "INFO /help  show this list",
            "ERR name-taken the name bob is taken",
            "ERR some-future-code text",
            "PING 17",
            "PONG chatd",
            "BYE quit",
            "BYE some-future-reason",
            "WHOIS bob * 0 0",
            "WHOIS Bob Rust 12 1764600000",
            "WHOIS bob * 4294967295 18446744073709551615",
            "COUNT 0 0 0",
            "COUNT 3 1 4",
            "ACCOUNT alice registered",
            "ACCOUNT Bob logged-in",
            "ACCOUNT bob some-future-state",
            "HISTORY 1 0 MSG * bob hi  there ",
            "HISTORY 18446744073709551615 1764600000000 ME rust bob waves",
            "HISTORY 7 8 DM bob alice psst",
            "REPLAYED * 0",
            "REPLAYED Rust 20",
        ] {
            let event = parse_event(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(event.to_string(), line);
        }
    }

    #[test]
    fn refuses_malformed_lines() {
        for line in [
            "",
            "HELLO chatd 0.1.0",
            "WELCOME",
            "WELCOME a b",
            "MSG * bob",
            "MSG * bob ",
            "MSG  bob hi",
            "MSG ** bob hi",
            "JOIN rust",
            "PART rust carol ",
            "USERS",
            "USERS * ",
            "USERS * a  b",
            "GROUPS ",
            "GROUPS rust",
            "GROUPS rust=x",
            "GROUPS rust=99999999999",
            "GROUPS =1",
            "ERR name-taken",
            "BYE",
            "BYE quit now",
            "msg * bob hi",
            "NOPE x",
            "INFO \x1b[2J",
            "WHOIS",
            "WHOIS bob",
            "WHOIS bob *",
            "WHOIS bob * 1",
            "WHOIS bob * 1 2 ",
            "WHOIS bob * 1 2 3",
            "WHOIS bob ** 1 2",
            "WHOIS b@b * 1 2",
            "WHOIS bob * x 2",
            "WHOIS bob * -1 2",
            "WHOIS bob * 4294967296 0",
            "WHOIS bob * 0 18446744073709551616",
            "WHOIS bob * 0 000000000000000000001",
            "COUNT",
            "COUNT 1 2",
            "COUNT 1 2 3 ",
            "COUNT 1 2 3 4",
            "COUNT 1 2 x",
            "COUNT 1 2 4294967296",
            "count 1 2 3",
            "ACCOUNT alice",
            "ACCOUNT alice logged-in x",
            "ACCOUNT a@b logged-in",
            "HISTORY 1 2",
            "HISTORY 1 2 ",
            "HISTORY 1 MSG * bob hi",
            "HISTORY x 2 MSG * bob hi",
            "HISTORY 1 2 JOIN * bob",
            "HISTORY 1 2 HISTORY 1 2 MSG * bob hi",
            "HISTORY 1 2 MSG * bob",
            "HISTORY 1 2 NOPE x",
            "REPLAYED *",
            "REPLAYED * x",
            "REPLAYED * 1 ",
        ] {
            assert!(parse_event(line).is_err(), "{line:?} parsed");
        }
    }

    #[test]
    fn whois_and_count_fields() {
        assert_eq!(
            parse_event("WHOIS Bob Rust 12 1764600000"),
            Ok(Event::Whois {
                name: Name::try_from("Bob").unwrap(),
                scope: Scope::Group(GroupName::try_from("Rust").unwrap()),
                idle: 12,
                signon: 1_764_600_000,
            })
        );
        assert_eq!(
            parse_event("COUNT 3 1 4"),
            Ok(Event::Count {
                users: 3,
                groups: 1,
                connections: 4
            })
        );
        // Leading zeros parse, and re-encode without them.
        let padded = parse_event("WHOIS bob * 007 0042").unwrap();
        assert_eq!(padded.to_string(), "WHOIS bob * 7 42");
    }

    #[test]
    fn unknown_codes_and_reasons_are_kept() {
        assert_eq!(
            parse_event("ERR name-taken x"),
            Ok(Event::Err {
                code: ErrorCode::NameTaken,
                text: Text::try_from("x").unwrap()
            })
        );
        assert_eq!(
            parse_event("BYE sendq-exceeded"),
            Ok(Event::Bye(CloseReason::SendqExceeded))
        );
    }
}
