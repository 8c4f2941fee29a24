//! [`Command`]: what a client sends, with [`parse_line`] and [`Command::encode`].

use std::fmt;

use crate::error::clip;
use nom::combinator::opt;
use nom::sequence::preceded;

use crate::lex::{self, check_line, run, sp};
use crate::{GroupName, Name, ParseError, Password, Scope, Text, Token};

/// A line a client sends, parsed.
///
/// The parser is context-free: a plain line is always [`Command::Say`]; a server
/// treats it as the user's name while the connection is not yet registered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `<text>` or `//<text>`: say `text` in the current scope (or, before
    /// registration, ask for `text` as the name).
    Say(Text),
    /// `/nick <name>`: register, or rename.
    Nick(Name),
    /// `/users`: list the users of the current scope.
    Users,
    /// `/groups`: list the groups with member counts.
    Groups,
    /// `/join <group>`: make `group` the current group, creating it if needed.
    Join(GroupName),
    /// `/leave`: leave the current group, back to global.
    Leave,
    /// `/msg <name> <text>`: a private message.
    Msg {
        /// The recipient.
        to: Name,
        /// The message.
        text: Text,
    },
    /// `/me <text>`: an action in the current scope.
    Me(Text),
    /// `/help`: list the commands.
    Help,
    /// `/ping [token]`: ask for a `PONG`.
    Ping(Option<Token>),
    /// `/pong <token>`: answer a server's `PING`.
    Pong(Token),
    /// `/quit [reason]`: leave.
    Quit(Option<Text>),
    /// `/say <scope> <text>`: say `text` in `scope`, which must be global
    /// (`*`) or the sender's current group; so a user in a group can speak
    /// globally without leaving it.
    SayIn {
        /// Where: `*` or the sender's group (ignoring case).
        scope: Scope,
        /// What.
        text: Text,
    },
    /// `/act <scope> <text>`: an action in `scope`, as [`Command::SayIn`].
    MeIn {
        /// Where: `*` or the sender's group (ignoring case).
        scope: Scope,
        /// The action.
        text: Text,
    },
    /// `/whois <name>`: ask about one user (answered by `WHOIS`).
    Whois(Name),
    /// `/count`: ask how many users, groups and connections there are
    /// (answered by `COUNT`).
    Count,
    /// `/echo on` or `/echo off`: have the connection's own `MSG` and `ME`
    /// sent back to it too, or not (off at first). For clients that show what
    /// the server accepted rather than what they sent, such as IRC's
    /// `echo-message`.
    Echo(bool),
    /// `/register <password>`: make the name you have an account with this
    /// password; you are logged in to it (answered by `ACCOUNT <name>
    /// registered`).
    Register(Password),
    /// `/login <name> <password>`: log in to the account `name` and take its
    /// name; works as the first line too (answered by `WELCOME` if the name
    /// is new to the connection, then `ACCOUNT <name> logged-in`).
    Login {
        /// The account.
        name: Name,
        /// Its password.
        password: Password,
    },
    /// `/passwd <old> <new>`: change the password of the account you are
    /// logged in to.
    Passwd {
        /// The current password.
        old: Password,
        /// The new one.
        new: Password,
    },
    /// `/unregister <password>`: delete the account you are logged in to.
    Unregister(Password),
    /// `/history [count] [before-id]`: the current scope's lines before
    /// message `before` (else the latest), at most `count` (else the
    /// server's default).
    History {
        /// How many lines, at most.
        count: Option<u32>,
        /// Only lines with an id below this one.
        before: Option<u64>,
    },
}

/// Each command's usage and what it does, for help texts (server and client).
pub const COMMAND_HELP: &[(&str, &str)] = &[
    (
        "<text>",
        "say text in your current scope (your group, else global)",
    ),
    ("//<text>", "say text that starts with a slash"),
    ("/nick <name>", "register, or change your name"),
    ("/users", "list the users of your current scope"),
    ("/groups", "list the groups and their member counts"),
    (
        "/join <group>",
        "join a group (created if needed), leaving your current one",
    ),
    ("/leave", "leave your group, back to global"),
    ("/msg <name> <text>", "send a private message"),
    ("/me <text>", "act in your current scope"),
    ("/help", "show this list"),
    ("/ping [token]", "ask the server for a PONG"),
    ("/pong <token>", "answer the server's PING"),
    ("/quit [reason]", "leave"),
    (
        "/say <scope> <text>",
        "say text in * (global) or your group, wherever you are",
    ),
    ("/act <scope> <text>", "act in * (global) or your group"),
    (
        "/whois <name>",
        "show a user's scope, idle time and sign-on time",
    ),
    ("/count", "count the users, groups and connections"),
    (
        "/echo on|off",
        "get your own messages back as others see them (off at first)",
    ),
    (
        "/register <password>",
        "make your name an account (8-256 bytes, no space)",
    ),
    (
        "/login <name> <pw>",
        "log in to an account and take its name",
    ),
    ("/passwd <old> <new>", "change your account's password"),
    ("/unregister <pw>", "delete your account"),
    (
        "/history [n] [before]",
        "show earlier lines of your current scope",
    ),
];

const USAGE_NICK: &str = "/nick <name>";
const USAGE_JOIN: &str = "/join <group>";
const USAGE_MSG: &str = "/msg <name> <text>";
const USAGE_ME: &str = "/me <text>";
const USAGE_PING: &str = "/ping [token]";
const USAGE_PONG: &str = "/pong <token>";
const USAGE_ECHO: &str = "/echo on|off";
const USAGE_QUIT: &str = "/quit [reason]";
const USAGE_SAY: &str = "/say <scope> <text>";
const USAGE_ACT: &str = "/act <scope> <text>";
const USAGE_WHOIS: &str = "/whois <name>";
const USAGE_REGISTER: &str = "/register <password>";
const USAGE_LOGIN: &str = "/login <name> <password>";
const USAGE_PASSWD: &str = "/passwd <old> <new>";
const USAGE_UNREGISTER: &str = "/unregister <password>";
const USAGE_HISTORY: &str = "/history [count] [before-id]";

/// Parses one client line, line ending already removed.
///
/// Grammar (PROTOCOL.md, "Client lines"):
/// ```text
/// line    = "//" text / "/" command / text
/// command = "nick" SP name / "users" / "groups" / "join" SP group / "leave"
///         / "msg" SP name SP text / "me" SP text / "help"
///         / "ping" [SP token] / "pong" SP token / "quit" [SP text]
///         / "say" SP scope SP text / "act" SP scope SP text
///         / "whois" SP name / "count" / "echo" SP ("on" / "off")
///         / "register" SP password / "login" SP name SP password
///         / "passwd" SP password SP password / "unregister" SP password
///         / "history" [SP count [SP number]]
/// ```
/// Command words match ignoring ASCII case. Never panics, whatever the input.
///
/// ```
/// use chatproto::{parse_line, Command};
/// assert_eq!(parse_line("/LEAVE"), Ok(Command::Leave));
/// assert!(matches!(parse_line("//etc"), Ok(Command::Say(t)) if t.as_str() == "/etc"));
/// assert_eq!(parse_line("/frob").unwrap_err().code().as_str(), "unknown-command");
/// ```
pub fn parse_line(line: &str) -> Result<Command, ParseError> {
    check_line(line)?;
    let Some(after_slash) = line.strip_prefix('/') else {
        return run(lex::text, line, ParseError::Empty).map(Command::Say);
    };
    if after_slash.starts_with('/') {
        return run(lex::text, after_slash, ParseError::Empty).map(Command::Say);
    }
    let (word, args) = match after_slash.split_once(' ') {
        Some((word, args)) => (word, Some(args)),
        None => (after_slash, None),
    };
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    let no_args = |cmd: Command, usage: &'static str| match args {
        None => Ok(cmd),
        Some(_) => Err(ParseError::BadArgs { usage }),
    };
    let optional = |usage: &'static str| args.map(|a| (a, bad(usage)));
    let args = args.unwrap_or("");
    if is("users") {
        no_args(Command::Users, "/users")
    } else if is("groups") {
        no_args(Command::Groups, "/groups")
    } else if is("leave") {
        no_args(Command::Leave, "/leave")
    } else if is("help") {
        no_args(Command::Help, "/help")
    } else if is("count") {
        no_args(Command::Count, "/count")
    } else if is("echo") {
        match args {
            "on" => Ok(Command::Echo(true)),
            "off" => Ok(Command::Echo(false)),
            _ => Err(bad(USAGE_ECHO)),
        }
    } else if is("nick") {
        run(lex::name, args, bad(USAGE_NICK)).map(Command::Nick)
    } else if is("join") {
        run(lex::group_name, args, bad(USAGE_JOIN)).map(Command::Join)
    } else if is("msg") {
        run((lex::name, sp, lex::text), args, bad(USAGE_MSG))
            .map(|(to, _, text)| Command::Msg { to, text })
    } else if is("me") {
        run(lex::text, args, bad(USAGE_ME)).map(Command::Me)
    } else if is("ping") {
        optional(USAGE_PING)
            .map(|(a, e)| run(lex::token, a, e))
            .transpose()
            .map(Command::Ping)
    } else if is("pong") {
        run(lex::token, args, bad(USAGE_PONG)).map(Command::Pong)
    } else if is("say") {
        run((lex::scope, sp, lex::text), args, bad(USAGE_SAY))
            .map(|(scope, _, text)| Command::SayIn { scope, text })
    } else if is("act") {
        run((lex::scope, sp, lex::text), args, bad(USAGE_ACT))
            .map(|(scope, _, text)| Command::MeIn { scope, text })
    } else if is("whois") {
        run(lex::name, args, bad(USAGE_WHOIS)).map(Command::Whois)
    } else if is("register") {
        run(lex::password, args, bad(USAGE_REGISTER)).map(Command::Register)
    } else if is("login") {
        run((lex::name, sp, lex::password), args, bad(USAGE_LOGIN))
            .map(|(name, _, password)| Command::Login { name, password })
    } else if is("passwd") {
        run((lex::password, sp, lex::password), args, bad(USAGE_PASSWD))
            .map(|(old, _, new)| Command::Passwd { old, new })
    } else if is("unregister") {
        run(lex::password, args, bad(USAGE_UNREGISTER)).map(Command::Unregister)
    } else if is("history") {
        optional(USAGE_HISTORY)
            .map(|(a, e)| run((lex::count, opt(preceded(sp, lex::number))), a, e))
            .transpose()
            .map(|counted| match counted {
                Some((count, before)) => Command::History {
                    count: Some(count),
                    before,
                },
                None => Command::History {
                    count: None,
                    before: None,
                },
            })
    } else if is("quit") {
        optional(USAGE_QUIT)
            .map(|(a, e)| run(lex::text, a, e))
            .transpose()
            .map(Command::Quit)
    } else {
        Err(ParseError::UnknownCommand(clip(word, 32)))
    }
}

fn bad(usage: &'static str) -> ParseError {
    ParseError::BadArgs { usage }
}

/// Validating constructors, for programs that build commands rather than parse
/// what a person typed. Each checks its arguments with the same rules as
/// [`parse_line`] and fails with the same [`ParseError`] variant
/// ([`ParseError::BadText`], [`ParseError::BadName`] or [`ParseError::BadToken`]).
///
/// Commands without arguments ([`Command::Users`], [`Command::Groups`],
/// [`Command::Leave`], [`Command::Help`], [`Command::Count`]) cannot fail and are plain variants;
/// so is any variant built from values already validated, such as
/// `Command::Nick(name)` or `Command::Pong(token)`.
///
/// ```
/// use chatproto::{Command, ParseError};
///
/// fn greet(to: &str) -> Result<Vec<u8>, ParseError> {
///     let mut out = Vec::new();
///     Command::nick("bot")?.encode(&mut out);
///     Command::join("rust")?.encode(&mut out);
///     Command::say("/not a command")?.encode(&mut out);
///     Command::msg(to, "hello")?.encode(&mut out);
///     Command::Users.encode(&mut out);
///     Command::say_in("*", "hello everyone")?.encode(&mut out);
///     Command::quit(None)?.encode(&mut out);
///     Ok(out)
/// }
/// assert_eq!(
///     greet("ann").unwrap(),
///     b"/nick bot\n/join rust\n//not a command\n/msg ann hello\n/users\n/say * hello everyone\n/quit\n"
/// );
/// assert_eq!(greet("a b").unwrap_err().code().as_str(), "name-invalid");
/// assert!(matches!(Command::me("\x1b[2J"), Err(ParseError::BadText(_))));
/// assert!(matches!(Command::ping(Some("a b")), Err(ParseError::BadToken(_))));
/// ```
impl Command {
    /// `<text>`: say `text` in the current scope (before registration, the
    /// server takes it as the name). Text starting with `/` is encoded as `//`.
    pub fn say(text: &str) -> Result<Self, ParseError> {
        Ok(Self::Say(Text::try_from(text)?))
    }

    /// `/me <text>`: an action in the current scope.
    pub fn me(text: &str) -> Result<Self, ParseError> {
        Ok(Self::Me(Text::try_from(text)?))
    }

    /// `/msg <to> <text>`: a private message.
    pub fn msg(to: &str, text: &str) -> Result<Self, ParseError> {
        Ok(Self::Msg {
            to: Name::try_from(to)?,
            text: Text::try_from(text)?,
        })
    }

    /// `/join <group>`: join `group`, creating it if needed.
    pub fn join(group: &str) -> Result<Self, ParseError> {
        Ok(Self::Join(GroupName::try_from(group)?))
    }

    /// `/nick <name>`: register (before registration) or rename.
    pub fn nick(name: &str) -> Result<Self, ParseError> {
        Ok(Self::Nick(Name::try_from(name)?))
    }

    /// `/quit [reason]`: leave, with an optional reason the others see.
    pub fn quit(reason: Option<&str>) -> Result<Self, ParseError> {
        Ok(Self::Quit(reason.map(Text::try_from).transpose()?))
    }

    /// `/ping [token]`: ask the server for a `PONG` (with `token`, or the
    /// server's name).
    pub fn ping(token: Option<&str>) -> Result<Self, ParseError> {
        Ok(Self::Ping(token.map(Token::try_from).transpose()?))
    }

    /// `/pong <token>`: answer the server's `PING <token>` (a
    /// [`crate::Session`] does this for you).
    pub fn pong(token: &str) -> Result<Self, ParseError> {
        Ok(Self::Pong(Token::try_from(token)?))
    }

    /// `/say <scope> <text>`: say `text` in `scope`, `*` (global) or a group
    /// name (the server refuses a group the sender is not in).
    pub fn say_in(scope: &str, text: &str) -> Result<Self, ParseError> {
        Ok(Self::SayIn {
            scope: scope_from(scope)?,
            text: Text::try_from(text)?,
        })
    }

    /// `/act <scope> <text>`: an action in `scope`, as [`Command::say_in`].
    pub fn me_in(scope: &str, text: &str) -> Result<Self, ParseError> {
        Ok(Self::MeIn {
            scope: scope_from(scope)?,
            text: Text::try_from(text)?,
        })
    }

    /// `/whois <name>`: ask about the user called `name`.
    pub fn whois(name: &str) -> Result<Self, ParseError> {
        Ok(Self::Whois(Name::try_from(name)?))
    }

    /// `/register <password>`: make the current name an account.
    pub fn register(password: &str) -> Result<Self, ParseError> {
        Ok(Self::Register(Password::try_from(password)?))
    }

    /// `/login <name> <password>`: log in to the account `name`.
    pub fn login(name: &str, password: &str) -> Result<Self, ParseError> {
        Ok(Self::Login {
            name: Name::try_from(name)?,
            password: Password::try_from(password)?,
        })
    }

    /// `/passwd <old> <new>`: change the account's password.
    pub fn passwd(old: &str, new: &str) -> Result<Self, ParseError> {
        Ok(Self::Passwd {
            old: Password::try_from(old)?,
            new: Password::try_from(new)?,
        })
    }

    /// `/unregister <password>`: delete the account.
    pub fn unregister(password: &str) -> Result<Self, ParseError> {
        Ok(Self::Unregister(Password::try_from(password)?))
    }
}

/// `*` is global; anything else must be a group name.
fn scope_from(scope: &str) -> Result<Scope, ParseError> {
    if scope == "*" {
        return Ok(Scope::Global);
    }
    Ok(Scope::Group(GroupName::try_from(scope)?))
}

impl Command {
    /// Appends the command's line, LF included, to `out`.
    ///
    /// Cannot fail: the validated fields cannot hold what the grammar forbids.
    /// `parse_line` of the line (without its LF) gives back an equal command.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut put = |parts: &[&str]| {
            for p in parts {
                out.extend_from_slice(p.as_bytes());
            }
        };
        match self {
            Self::Say(t) if t.as_str().starts_with('/') => put(&["/", t.as_str()]),
            Self::Say(t) => put(&[t.as_str()]),
            Self::Nick(n) => put(&["/nick ", n.as_str()]),
            Self::Users => put(&["/users"]),
            Self::Groups => put(&["/groups"]),
            Self::Join(g) => put(&["/join ", g.as_str()]),
            Self::Leave => put(&["/leave"]),
            Self::Msg { to, text } => put(&["/msg ", to.as_str(), " ", text.as_str()]),
            Self::Me(t) => put(&["/me ", t.as_str()]),
            Self::Help => put(&["/help"]),
            Self::Ping(None) => put(&["/ping"]),
            Self::Ping(Some(t)) => put(&["/ping ", t.as_str()]),
            Self::Pong(t) => put(&["/pong ", t.as_str()]),
            Self::Quit(None) => put(&["/quit"]),
            Self::Quit(Some(r)) => put(&["/quit ", r.as_str()]),
            Self::SayIn { scope, text } => put(&["/say ", scope.as_str(), " ", text.as_str()]),
            Self::MeIn { scope, text } => put(&["/act ", scope.as_str(), " ", text.as_str()]),
            Self::Whois(n) => put(&["/whois ", n.as_str()]),
            Self::Count => put(&["/count"]),
            Self::Echo(true) => put(&["/echo on"]),
            Self::Echo(false) => put(&["/echo off"]),
            Self::Register(p) => put(&["/register ", p.expose()]),
            Self::Login { name, password } => {
                put(&["/login ", name.as_str(), " ", password.expose()]);
            }
            Self::Passwd { old, new } => put(&["/passwd ", old.expose(), " ", new.expose()]),
            Self::Unregister(p) => put(&["/unregister ", p.expose()]),
            Self::History { count, before } => {
                put(&["/history"]);
                if let Some(n) = count {
                    put(&[" ", &n.to_string()]);
                    if let Some(b) = before {
                        put(&[" ", &b.to_string()]);
                    }
                }
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

/// The wire line without its LF, for logs; passwords show as `<password>`
/// (only [`Command::encode`] writes them).
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HIDDEN: &str = "<password>";
        match self {
            Self::Register(_) => return write!(f, "/register {HIDDEN}"),
            Self::Login { name, .. } => return write!(f, "/login {name} {HIDDEN}"),
            Self::Passwd { .. } => return write!(f, "/passwd {HIDDEN} {HIDDEN}"),
            Self::Unregister(_) => return write!(f, "/unregister {HIDDEN}"),
            _ => {}
        }
        let bytes = self.to_bytes();
        f.write_str(String::from_utf8_lossy(&bytes[..bytes.len() - 1]).as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, TextError};

    fn name(s: &str) -> Name {
        Name::try_from(s).unwrap()
    }
    fn text(s: &str) -> Text {
        Text::try_from(s).unwrap()
    }
    fn pw(s: &str) -> Password {
        Password::try_from(s).unwrap()
    }

    #[test]
    fn parses_every_command() {
        let cases: Vec<(&str, Command)> = vec![
            ("hello world", Command::Say(text("hello world"))),
            ("  spaced  ", Command::Say(text("  spaced  "))),
            ("//slash", Command::Say(text("/slash"))),
            ("///", Command::Say(text("//"))),
            ("/nick bob", Command::Nick(name("bob"))),
            ("/users", Command::Users),
            ("/USERS", Command::Users),
            ("/groups", Command::Groups),
            (
                "/join rust",
                Command::Join(GroupName::try_from("rust").unwrap()),
            ),
            ("/leave", Command::Leave),
            (
                "/msg bob hi there",
                Command::Msg {
                    to: name("bob"),
                    text: text("hi there"),
                },
            ),
            ("/me waves", Command::Me(text("waves"))),
            ("/help", Command::Help),
            ("/ping", Command::Ping(None)),
            (
                "/ping 42",
                Command::Ping(Some(Token::try_from("42").unwrap())),
            ),
            ("/pong abc", Command::Pong(Token::try_from("abc").unwrap())),
            ("/quit", Command::Quit(None)),
            (
                "/quit gone fishing",
                Command::Quit(Some(text("gone fishing"))),
            ),
            (
                "/say * hi  all ",
                Command::SayIn {
                    scope: Scope::Global,
                    text: text("hi  all "),
                },
            ),
            (
                "/SAY Rust /not a command",
                Command::SayIn {
                    scope: Scope::Group(GroupName::try_from("Rust").unwrap()),
                    text: text("/not a command"),
                },
            ),
            (
                "/act * waves",
                Command::MeIn {
                    scope: Scope::Global,
                    text: text("waves"),
                },
            ),
            (
                "/act go nods",
                Command::MeIn {
                    scope: Scope::Group(GroupName::try_from("go").unwrap()),
                    text: text("nods"),
                },
            ),
            ("/whois Bob", Command::Whois(name("Bob"))),
            ("/count", Command::Count),
            ("/COUNT", Command::Count),
            ("/echo on", Command::Echo(true)),
            ("/ECHO off", Command::Echo(false)),
            ("/register hunter22", Command::Register(pw("hunter22"))),
            (
                "/LOGIN Ann pässwörd!",
                Command::Login {
                    name: name("Ann"),
                    password: pw("pässwörd!"),
                },
            ),
            (
                "/passwd hunter22 hunter23",
                Command::Passwd {
                    old: pw("hunter22"),
                    new: pw("hunter23"),
                },
            ),
            ("/unregister hunter22", Command::Unregister(pw("hunter22"))),
            (
                "/history",
                Command::History {
                    count: None,
                    before: None,
                },
            ),
            (
                "/history 50",
                Command::History {
                    count: Some(50),
                    before: None,
                },
            ),
            (
                "/history 0 18446744073709551615",
                Command::History {
                    count: Some(0),
                    before: Some(u64::MAX),
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line), Ok(want), "{line:?}");
        }
    }

    #[test]
    fn refuses_bad_lines() {
        let cases: &[(&str, ErrorCode)] = &[
            ("", ErrorCode::BadText),
            ("hi\x1b[2J", ErrorCode::BadText),
            ("/", ErrorCode::UnknownCommand),
            ("/frob", ErrorCode::UnknownCommand),
            ("/ join", ErrorCode::UnknownCommand),
            ("/users now", ErrorCode::BadArgs),
            ("/leave ", ErrorCode::BadArgs),
            ("/join", ErrorCode::BadArgs),
            ("/join ", ErrorCode::BadArgs),
            ("/join a b", ErrorCode::BadArgs),
            ("/join bad!", ErrorCode::NameInvalid),
            ("/nick", ErrorCode::BadArgs),
            (
                "/nick way-too-long-name-for-the-rules-here",
                ErrorCode::NameInvalid,
            ),
            ("/msg bob", ErrorCode::BadArgs),
            ("/msg bob ", ErrorCode::BadArgs),
            ("/msg b@b hi", ErrorCode::NameInvalid),
            ("/me", ErrorCode::BadArgs),
            ("/ping a b", ErrorCode::BadArgs),
            ("/ping ", ErrorCode::BadArgs),
            ("/pong", ErrorCode::BadArgs),
            ("/quit ", ErrorCode::BadArgs),
            ("/say", ErrorCode::BadArgs),
            ("/say *", ErrorCode::BadArgs),
            ("/say * ", ErrorCode::BadArgs),
            ("/say rust", ErrorCode::BadArgs),
            ("/say ** hi", ErrorCode::BadArgs),
            ("/say *rust hi", ErrorCode::BadArgs),
            ("/say  * hi", ErrorCode::BadArgs),
            ("/say bad! hi", ErrorCode::NameInvalid),
            ("/act", ErrorCode::BadArgs),
            ("/act go", ErrorCode::BadArgs),
            ("/act go ", ErrorCode::BadArgs),
            ("/act b@d hi", ErrorCode::NameInvalid),
            ("/whois", ErrorCode::BadArgs),
            ("/echo", ErrorCode::BadArgs),
            ("/echo maybe", ErrorCode::BadArgs),
            ("/echo on ", ErrorCode::BadArgs),
            ("/whois ", ErrorCode::BadArgs),
            ("/whois bob ", ErrorCode::BadArgs),
            ("/whois bob carol", ErrorCode::BadArgs),
            ("/whois b@b", ErrorCode::NameInvalid),
            ("/count ", ErrorCode::BadArgs),
            ("/count all", ErrorCode::BadArgs),
            ("/register", ErrorCode::BadArgs),
            ("/register ", ErrorCode::BadArgs),
            ("/register short", ErrorCode::BadPassword),
            ("/register two words", ErrorCode::BadPassword),
            ("/register longenough words", ErrorCode::BadArgs),
            ("/register hunter22 ", ErrorCode::BadArgs),
            ("/login", ErrorCode::BadArgs),
            ("/login ann", ErrorCode::BadArgs),
            ("/login ann ", ErrorCode::BadArgs),
            ("/login a@n hunter22", ErrorCode::NameInvalid),
            ("/login ann hunter", ErrorCode::BadPassword),
            ("/passwd hunter22", ErrorCode::BadArgs),
            ("/passwd hunter22 short", ErrorCode::BadPassword),
            ("/passwd hunter22 hunter23 x", ErrorCode::BadArgs),
            ("/unregister", ErrorCode::BadArgs),
            ("/history ", ErrorCode::BadArgs),
            ("/history x", ErrorCode::BadArgs),
            ("/history -1", ErrorCode::BadArgs),
            ("/history 1 2 3", ErrorCode::BadArgs),
            ("/history 4294967296", ErrorCode::BadArgs),
            ("/history 1 18446744073709551616", ErrorCode::BadArgs),
        ];
        for (line, code) in cases {
            assert_eq!(parse_line(line).unwrap_err().code(), *code, "{line:?}");
        }
    }

    #[test]
    fn errors_say_where_and_what() {
        assert_eq!(
            parse_line("ok\u{9b}31m"),
            Err(ParseError::BadText(TextError::ControlChar {
                ch: '\u{9b}',
                at: 2
            }))
        );
        let long = format!("/{}", "x".repeat(100));
        assert_eq!(
            parse_line(&long),
            Err(ParseError::UnknownCommand("x".repeat(32)))
        );
        assert_eq!(
            parse_line("/join").unwrap_err().to_string(),
            "usage: /join <group>"
        );
    }

    #[test]
    fn constructors_match_the_parser() {
        let cases: Vec<(Result<Command, ParseError>, &str)> = vec![
            (Command::say("hello  world "), "hello  world "),
            (Command::say("/etc"), "//etc"),
            (Command::me("waves"), "/me waves"),
            (Command::msg("Bob", "psst, hi"), "/msg Bob psst, hi"),
            (Command::join("Rust"), "/join Rust"),
            (Command::nick("ann_2"), "/nick ann_2"),
            (Command::quit(None), "/quit"),
            (Command::quit(Some("see you")), "/quit see you"),
            (Command::ping(None), "/ping"),
            (Command::ping(Some("42")), "/ping 42"),
            (Command::pong("abc"), "/pong abc"),
            (Command::say_in("*", "hi all"), "/say * hi all"),
            (Command::say_in("Rust", "/x"), "/say Rust /x"),
            (Command::me_in("*", "waves"), "/act * waves"),
            (Command::me_in("go", "nods  twice"), "/act go nods  twice"),
            (Command::whois("Bob"), "/whois Bob"),
            (Ok(Command::Count), "/count"),
        ];
        for (built, line) in cases {
            let built = built.unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(built.to_string(), line);
            assert_eq!(parse_line(line), Ok(built), "{line:?}");
        }
    }

    #[test]
    fn constructors_refuse_what_the_parser_refuses() {
        use crate::{NameError, TokenError};
        let esc = TextError::ControlChar { ch: '\x1b', at: 0 };
        let cases: Vec<(Result<Command, ParseError>, ParseError)> = vec![
            (Command::say(""), ParseError::BadText(TextError::Empty)),
            (Command::say("\x1b[2J"), ParseError::BadText(esc.clone())),
            (Command::me(""), ParseError::BadText(TextError::Empty)),
            (
                Command::msg("b@b", "hi"),
                ParseError::BadName(NameError::InvalidChar { ch: '@', at: 1 }),
            ),
            (
                Command::msg("bob", ""),
                ParseError::BadText(TextError::Empty),
            ),
            (Command::join(""), ParseError::BadName(NameError::Empty)),
            (
                Command::join("a b"),
                ParseError::BadName(NameError::InvalidChar { ch: ' ', at: 1 }),
            ),
            (
                Command::nick(&"n".repeat(33)),
                ParseError::BadName(NameError::TooLong { len: 33 }),
            ),
            (
                Command::quit(Some("")),
                ParseError::BadText(TextError::Empty),
            ),
            (Command::quit(Some("\x1b")), ParseError::BadText(esc)),
            (
                Command::ping(Some("a b")),
                ParseError::BadToken(TokenError::InvalidChar { ch: ' ', at: 1 }),
            ),
            (
                Command::pong(""),
                ParseError::BadToken(TokenError::BadLength { len: 0 }),
            ),
            (
                Command::say_in("**", "hi"),
                ParseError::BadName(NameError::InvalidChar { ch: '*', at: 0 }),
            ),
            (
                Command::say_in("", "hi"),
                ParseError::BadName(NameError::Empty),
            ),
            (
                Command::say_in("*", ""),
                ParseError::BadText(TextError::Empty),
            ),
            (
                Command::me_in("a b", "hi"),
                ParseError::BadName(NameError::InvalidChar { ch: ' ', at: 1 }),
            ),
            (
                Command::me_in("go", "\x1b"),
                ParseError::BadText(TextError::ControlChar { ch: '\x1b', at: 0 }),
            ),
            (Command::whois(""), ParseError::BadName(NameError::Empty)),
        ];
        for (i, (built, want)) in cases.into_iter().enumerate() {
            assert_eq!(built, Err(want), "case {i}");
        }
    }

    #[test]
    fn passwords_are_encoded_but_never_displayed_or_debugged() {
        for (line, shown) in [
            ("/register hunter22", "/register <password>"),
            ("/login ann hunter22", "/login ann <password>"),
            ("/passwd hunter22 hunter23", "/passwd <password> <password>"),
            ("/unregister hunter22", "/unregister <password>"),
        ] {
            let cmd = parse_line(line).unwrap();
            assert_eq!(cmd.to_bytes(), format!("{line}\n").into_bytes());
            assert_eq!(cmd.to_string(), shown);
            assert!(!format!("{cmd:?}").contains("hunter"), "{cmd:?}");
        }
        let built = Command::login("ann", "hunter22").unwrap();
        assert_eq!(parse_line("/login ann hunter22"), Ok(built));
        assert!(Command::register("short").is_err());
        assert!(Command::passwd("hunter22", "a b c d e").is_err());
        assert!(Command::unregister("hunter22").is_ok());
    }

    #[test]
    fn encodes_canonically() {
        for line in [
            "hello",
            "//slash",
            "/nick bob",
            "/users",
            "/groups",
            "/join rust",
            "/leave",
            "/msg bob hi",
            "/me waves",
            "/help",
            "/ping",
            "/ping 7",
            "/pong 7",
            "/quit",
            "/quit bye all",
            "/echo on",
            "/echo off",
            "/say * hi",
            "/say rust hi  there",
            "/act * waves",
            "/act rust waves",
            "/whois bob",
            "/count",
            "/history",
            "/history 5",
            "/history 5 1234",
        ] {
            let cmd = parse_line(line).unwrap();
            assert_eq!(cmd.to_bytes(), format!("{line}\n").into_bytes(), "{line:?}");
            assert_eq!(cmd.to_string(), line);
        }
    }
}
