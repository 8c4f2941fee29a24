//! [`IrcSession`]: one IRC connection's state, registration, and the client's
//! lines turned into native [`Command`]s and immediate replies.
//!
//! Events going the other way are in `events.rs`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use super::events::{numeric_target, Lines};
use super::message::{parse_message, IrcMessage, IrcParseError};
use crate::{Command, FrameError, GroupName, Name, Password, Scope, Text, Token};

/// Settings shared by every IRC connection of a server. Built with
/// [`IrcConfig::default`] and changed field by field.
///
/// The strings go into IRC lines as they are: `server_name`, `network` and
/// `user_host` must be non-empty and hold no space, `global_channel` must
/// start with `&` and hold no space or comma.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IrcConfig {
    /// The source of server replies and the name in `001`-`004`. Default
    /// `chatd`, the native server's default name.
    pub server_name: String,
    /// `NETWORK=` in `005`. Default `chatd`.
    pub network: String,
    /// The version in `002`, `004` and CTCP `VERSION` replies. Default
    /// `chatd-` and this crate's version.
    pub version: String,
    /// The channel that stands for the global scope, or `None` for no global
    /// channel (global messages then do not reach IRC users). Default
    /// `&global`: `&` marks a server-local channel, which no client mistakes
    /// for a group.
    pub global_channel: Option<String>,
    /// The message of the day, one entry per `372` line; `None` answers `422`.
    /// Default `None`.
    pub motd: Option<Vec<String>>,
    /// When the server started, for `003` (free text). Default empty, which
    /// says nothing about a date.
    pub created: String,
    /// The host part of every user's `nick!user@host`: a fixed placeholder,
    /// so that no user's address is revealed. Default `hidden`.
    pub user_host: String,
    /// The native server keeps accounts: `sasl` (`PLAIN`) is offered. Logging
    /// in with `PASS account:password` or NickServ works either way (a server
    /// without accounts refuses it). Default `false`, as the server's.
    pub accounts: bool,
}

impl Default for IrcConfig {
    fn default() -> Self {
        Self {
            server_name: "chatd".into(),
            network: "chatd".into(),
            version: concat!("chatd-", env!("CARGO_PKG_VERSION")).into(),
            global_channel: Some("&global".into()),
            motd: None,
            created: String::new(),
            user_host: "hidden".into(),
            accounts: false,
        }
    }
}

/// A set of IRCv3 capabilities, as negotiated by one connection.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u8);

impl Caps {
    /// No capability.
    pub const NONE: Self = Self(0);
    /// `multi-prefix`: accepted; chatd has no channel prefixes, so it changes
    /// nothing.
    pub const MULTI_PREFIX: Self = Self(1);
    /// `userhost-in-names`: `353` lists `nick!user@host`.
    pub const USERHOST_IN_NAMES: Self = Self(2);
    /// `server-time`: chat lines carry `@time=`.
    pub const SERVER_TIME: Self = Self(4);
    /// `message-tags`: chat lines carry `@msgid=`.
    pub const MESSAGE_TAGS: Self = Self(8);
    /// `cap-notify`: accepted; chatd's capabilities never change while a
    /// client is connected, so there is nothing to notify.
    pub const CAP_NOTIFY: Self = Self(16);
    /// `echo-message`: the client's own `PRIVMSG`s and `NOTICE`s come back as
    /// the others get them (the session asks the native server for `/echo
    /// on`, so an echo means the server accepted the message).
    pub const ECHO_MESSAGE: Self = Self(32);
    /// `sasl`: `AUTHENTICATE PLAIN` logs in to an account before
    /// registration. Offered only with [`IrcConfig::accounts`].
    pub const SASL: Self = Self(64);

    /// Every capability chatd offers, with its `CAP LS` name.
    pub const OFFERED: &'static [(&'static str, Self)] = &[
        ("cap-notify", Self::CAP_NOTIFY),
        ("echo-message", Self::ECHO_MESSAGE),
        ("message-tags", Self::MESSAGE_TAGS),
        ("multi-prefix", Self::MULTI_PREFIX),
        ("sasl", Self::SASL),
        ("server-time", Self::SERVER_TIME),
        ("userhost-in-names", Self::USERHOST_IN_NAMES),
    ];

    /// True if every capability of `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both sets.
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `self` without the capabilities of `other`.
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The capabilities that change how a shared event is encoded
    /// ([`super::encode_shared`]): connections with equal dialects get
    /// byte-identical lines for it, so a driver keys its cache of shared
    /// encodings by this.
    pub fn dialect(self) -> Self {
        Self(self.0 & (Self::SERVER_TIME.0 | Self::MESSAGE_TAGS.0))
    }

    /// The capability called `name` in `CAP`, if chatd offers it.
    pub fn by_name(name: &str) -> Option<Self> {
        Self::OFFERED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, c)| c)
    }

    /// The names of the capabilities in the set, space-separated.
    pub fn names(self) -> String {
        let names: Vec<&str> = Self::OFFERED
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| *n)
            .collect();
        names.join(" ")
    }
}

impl fmt::Debug for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Caps({:?})", self.names())
    }
}

/// What one client line gives the driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct FromClient {
    /// Native commands for [`crate::server::Server::handle`], in order.
    pub commands: Vec<Command>,
    /// IRC lines (CRLF-terminated) to send to this client at once, before
    /// anything the commands cause.
    pub reply: Vec<u8>,
    /// Close the connection after sending `reply` (a `QUIT` before
    /// registration). The commands still go to the server first, so that it
    /// forgets the connection.
    pub close: bool,
}

/// How an event reaches this client, as decided by [`IrcSession::on_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Delivery {
    /// Nothing is sent (a native `HELLO`, an echo IRC does not want, a global
    /// message after `PART &global`).
    Nothing,
    /// A broadcast: send [`super::encode_shared`] of the event for this
    /// client's [`Caps::dialect`], which the driver computes once per dialect
    /// and shares across every IRC recipient.
    Shared,
    /// Lines for this client alone (CRLF-terminated).
    Lines(Vec<u8>),
}

/// Why a native command was sent: what its one reply becomes in IRC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Pending {
    /// `Command::Nick`: `WELCOME` or a name error.
    Nick(Name),
    /// `Command::Msg`: the `DM` confirmation or `no-such-user`.
    Msg { target: String, notice: bool },
    /// `Command::Join`: `JOIN g me` or an error.
    Join,
    /// `Command::Leave`: `PART g me` or an error.
    Leave,
    /// `Command::Users`: `USERS`, as a names list (353/366) of its scope.
    Names,
    /// `Command::Users`: `USERS`, as a `WHO` reply (352/315) of its scope.
    Who,
    /// `Command::Groups`: `GROUPS`, as a `LIST` reply (321/322/323).
    List,
    /// `Command::Whois`: `WHOIS` or `no-such-user`, as a `WHOIS` reply.
    Whois(String),
    /// `Command::Whois`: `WHOIS` or `no-such-user`, as a `WHO nick` reply.
    WhoNick(String),
    /// `Command::Count`: `COUNT`, as a `LUSERS` reply.
    Lusers,
    /// `Command::Login` or `Command::Register`: `ACCOUNT` or an error,
    /// answered as the client asked.
    Account(Via),
    /// `n` group messages (`Command::SayIn`/`MeIn` to `#channel`) in a row:
    /// each is answered by nothing, or by `not-in-group` when the group was
    /// left meanwhile. Consecutive ones share an entry, so a client that
    /// only chats does not grow the queue.
    Said { channel: String, n: usize },
}

/// How an IRC client asked for an account command: what its answer becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Via {
    /// `PRIVMSG NickServ :IDENTIFY ...` (or `NS`, `NICKSERV`): NickServ's
    /// `NOTICE`s, and `900` on success.
    NickServ,
    /// SASL `PLAIN`: `900` and `903`, or `904`.
    Sasl,
    /// `PASS account:password` at registration: `900`, or `464`.
    Pass,
}

/// The nick of the account service, as IRC users know it from ergo and
/// Atheme; reserved in the native server so nobody can pass for it.
pub(super) const NICKSERV: &str = "NickServ";

/// One IRC connection's adapter: registration, capabilities, the mapping
/// between channels and scopes, and the few things IRC keeps per connection
/// that the native server does not (away message, whether `&global` is
/// parted).
///
/// # How to drive it
/// Next to each IRC connection's native [`ConnId`](crate::server::ConnId),
/// keep one `IrcSession`. Frame the connection's input with
/// [`super::line_framer`] and give each result to [`on_line`](Self::on_line):
/// send its `reply` to the client, then pass each command to
/// [`Server::handle`](crate::server::Server::handle) as
/// [`Input::Line`](crate::server::Input::Line), in order. Give every
/// [`Outgoing`](crate::server::Outgoing) the server delivers to this
/// connection to [`on_event`](Self::on_event), in delivery order, and send
/// what it says. The session matches replies to the commands it issued in
/// order, so its commands must reach the server in the order it returned
/// them. Events never produce commands: where IRC wants a follow-up (the
/// names list after `JOIN`), the session asks for it right behind the command
/// (`/join g` then `/users`), since the server answers in order. So
/// `on_event` may run under the server's lock or later, in a writer task.
///
/// A line that yields no command (`CAP`, `MODE`, a client `PING`) does not
/// reach the server, so it does not count as activity there: a driver that
/// wants it to passes an empty-line refusal
/// ([`Refusal::from`](crate::Refusal)`(ParseError::Empty)`).
#[derive(Debug)]
pub struct IrcSession {
    pub(super) config: Arc<IrcConfig>,
    pub(super) caps: Caps,
    /// `CAP LS` came and `CAP END` not yet: registration waits.
    negotiating: bool,
    /// The nick asked for before registration, not yet sent to the server.
    wanted: Option<Name>,
    user_given: bool,
    /// A `Command::Nick` for registration is on its way.
    registering: bool,
    /// The registered nick.
    pub(super) nick: Option<Name>,
    /// The current group, as the server confirmed it.
    pub(super) group: Option<GroupName>,
    /// Global messages and presence are delivered (`&global` is joined).
    pub(super) in_global: bool,
    away: Option<String>,
    /// `PASS account:password`, used at registration.
    pass: Option<(Name, Password)>,
    /// The registration nick went out behind a `PASS` login: once the login
    /// succeeds the server refuses it as `logged-in` (the connection has the
    /// account's name), which is no error to the client.
    pub(super) nick_after_pass: bool,
    /// `AUTHENTICATE PLAIN` came: the base64 received so far (chunks of 400
    /// mean more follows).
    sasl: Option<String>,
    /// The server registered the connection (a SASL login) while `CAP`
    /// negotiation goes on: what it sent waits here until `CAP END`, since
    /// `001` must not come before it. Bounded by [`MAX_HELD`].
    pub(super) held: Option<Vec<u8>>,
    pub(super) pending: VecDeque<Pending>,
    /// `ERROR` was sent: nothing more goes out.
    pub(super) closed: bool,
}

/// The most bytes of a client's text a reply quotes.
const ECHO_MAX: usize = 64;

/// The most bytes held back between a SASL login and `CAP END` (the
/// registration burst and what arrives in that moment); more is dropped.
pub(super) const MAX_HELD: usize = 64 * 1024;

/// The longest SASL `PLAIN` message accepted, in base64 characters: a
/// 32-byte name twice and a 256-byte password fit.
const MAX_SASL_B64: usize = 1200;

impl IrcSession {
    /// A session for a new connection, not registered.
    pub fn new(config: Arc<IrcConfig>) -> Self {
        Self {
            config,
            caps: Caps::NONE,
            negotiating: false,
            wanted: None,
            user_given: false,
            registering: false,
            nick: None,
            group: None,
            in_global: false,
            away: None,
            pass: None,
            nick_after_pass: false,
            sasl: None,
            held: None,
            pending: VecDeque::new(),
            closed: false,
        }
    }

    /// The negotiated capabilities.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// The registered nick, once the server accepted it.
    pub fn nick(&self) -> Option<&Name> {
        self.nick.as_ref()
    }

    /// True once `ERROR` was sent; the driver closes the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The settings.
    pub fn config(&self) -> &IrcConfig {
        &self.config
    }

    /// Handles one framed client line (from [`super::line_framer`]).
    pub fn on_line(&mut self, line: Result<&str, FrameError>) -> FromClient {
        let mut out = FromClient::default();
        if self.closed {
            return out;
        }
        let config = self.config.clone();
        let mut r = Lines::new(&config, self.caps);
        let me = numeric_target(self.nick.as_ref());
        let line = match line {
            Ok(line) => line,
            Err(FrameError::LineTooLong { .. }) => {
                r.numeric(&me, "417", &[":Input line was too long"]);
                out.reply = r.into_bytes();
                return out;
            }
            Err(e) => {
                // IRCv3 UTF8ONLY: the line is rejected, visibly (ergo does the same).
                let text = format!("Message rejected, your IRC software MUST use UTF-8: {e}");
                r.server_line("FAIL", &["*", "INVALID_UTF8", &text]);
                out.reply = r.into_bytes();
                return out;
            }
        };
        let msg = match parse_message(line) {
            Ok(msg) => msg,
            Err(IrcParseError::BadCommand(word)) => {
                let word = echo(&word);
                r.numeric(&me, "421", &[&word, ":Unknown command"]);
                out.reply = r.into_bytes();
                return out;
            }
            Err(e) if e.numeric() == Some(417) => {
                r.numeric(&me, "417", &[":Input line was too long"]);
                out.reply = r.into_bytes();
                return out;
            }
            // Blank lines and lines without a command: nothing to answer.
            Err(_) => return out,
        };
        let cmd = msg.command().to_ascii_uppercase();
        let registered = self.nick.is_some();
        match cmd.as_str() {
            "CAP" => self.cap(&msg, &mut r, &mut out),
            "NICK" => self.nick_cmd(&msg, &mut r, &mut out),
            "USER" => self.user(&msg, &mut r, &mut out),
            "PASS" => {
                // `PASS account:password` logs in at registration; any other
                // PASS (a server password) is ignored, as before.
                let account = msg
                    .param(0)
                    .and_then(|p| p.split_once(':'))
                    .and_then(|(n, p)| {
                        Some((Name::try_from(n).ok()?, Password::try_from(p).ok()?))
                    });
                if !registered && account.is_some() {
                    self.pass = account;
                }
            }
            "AUTHENTICATE" => self.authenticate(&msg, &mut r, &mut out),
            "NS" | "NICKSERV" if registered => {
                self.nickserv(&msg.params().join(" "), &mut r, &mut out);
            }
            "PING" => match msg.param(0).filter(|p| !p.is_empty()) {
                Some(token) => {
                    let server = self.config.server_name.clone();
                    r.server_line("PONG", &[&server, token]);
                }
                None => r.numeric(&me, "409", &[":No origin specified"]),
            },
            "PONG" => {
                if let Some(Ok(token)) = msg.param(0).map(Token::try_from) {
                    out.commands.push(Command::Pong(token));
                }
            }
            "QUIT" => {
                let reason = msg
                    .param(0)
                    .map(strip_formatting)
                    .and_then(|t| Text::try_from(t.as_ref()).ok());
                if !registered {
                    r.error("Closing link: (quit)");
                    self.closed = true;
                    out.close = true;
                }
                out.commands.push(Command::Quit(reason));
            }
            _ if !registered => r.numeric(&me, "451", &[":You have not registered"]),
            "PRIVMSG" => self.privmsg(&msg, false, &mut r, &mut out),
            "NOTICE" => self.privmsg(&msg, true, &mut r, &mut out),
            "JOIN" => self.join(&msg, &mut r, &mut out),
            "PART" => self.part(&msg, &mut r, &mut out),
            "NAMES" => self.names(&msg, &mut r, &mut out),
            "WHO" => self.who(&msg, &mut r, &mut out),
            "WHOIS" => self.whois(&msg, &mut r, &mut out),
            "LIST" => {
                r.numeric(&me, "321", &["Channel", ":Users  Name"]);
                self.issue(&mut out, Command::Groups, Pending::List);
            }
            "TOPIC" => self.topic(&msg, &mut r),
            "MODE" => self.mode(&msg, &mut r),
            "MOTD" => self.motd(&mut r),
            "LUSERS" => self.issue(&mut out, Command::Count, Pending::Lusers),
            "AWAY" => match msg.param(0).filter(|a| !a.is_empty()) {
                Some(text) => {
                    self.away = Some(text.to_owned());
                    r.numeric(&me, "306", &[":You have been marked as being away"]);
                }
                None => {
                    self.away = None;
                    r.numeric(&me, "305", &[":You are no longer marked as being away"]);
                }
            },
            _ => {
                let word = echo(msg.command());
                r.numeric(&me, "421", &[&word, ":Unknown command"]);
            }
        }
        out.reply = r.into_bytes();
        out
    }

    /// Sends `command`, whose one reply means what `pending` says.
    fn issue(&mut self, out: &mut FromClient, command: Command, pending: Pending) {
        self.pending.push_back(pending);
        out.commands.push(command);
    }

    /// Sends a message to the current group's channel, naming the group, so
    /// that a message racing with a `JOIN` elsewhere is refused rather than
    /// said in the wrong group.
    fn say_in_group(&mut self, out: &mut FromClient, group: GroupName, text: Text, action: bool) {
        let channel = format!("#{group}");
        let scope = Scope::Group(group);
        out.commands.push(if action {
            Command::MeIn { scope, text }
        } else {
            Command::SayIn { scope, text }
        });
        if let Some(Pending::Said { channel: c, n }) = self.pending.back_mut() {
            if *c == channel {
                *n += 1;
                return;
            }
        }
        self.pending.push_back(Pending::Said { channel, n: 1 });
    }

    fn me(&self) -> String {
        numeric_target(self.nick.as_ref())
    }

    fn cap(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let sub = msg.param(0).unwrap_or("").to_ascii_uppercase();
        match sub.as_str() {
            "LS" => {
                if self.nick.is_none() {
                    self.negotiating = true;
                }
                let ls = Caps::OFFERED
                    .iter()
                    .fold(Caps::NONE, |all, &(_, c)| all.with(c));
                let ls = if self.config.accounts {
                    ls
                } else {
                    ls.without(Caps::SASL)
                };
                // Version 302 implies cap-notify (IRCv3 capability negotiation).
                let v302 = msg.param(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
                if v302 {
                    self.caps = self.caps.with(Caps::CAP_NOTIFY);
                }
                let mut names = ls.names();
                if v302 && ls.contains(Caps::SASL) {
                    names = names.replace("sasl", "sasl=PLAIN");
                }
                r.server_line("CAP", &[&me, "LS", &names]);
            }
            "LIST" => r.server_line("CAP", &[&me, "LIST", &self.caps.names()]),
            "REQ" => {
                if self.nick.is_none() {
                    self.negotiating = true;
                }
                let asked = msg.param(1).unwrap_or("");
                let mut caps = self.caps;
                let mut ok = !asked.trim().is_empty();
                for word in asked.split(' ').filter(|w| !w.is_empty()) {
                    let (remove, name) = match word.strip_prefix('-') {
                        Some(name) => (true, name),
                        None => (false, word),
                    };
                    match Caps::by_name(name) {
                        Some(Caps::SASL) if !self.config.accounts => ok = false,
                        Some(c) if remove => caps = caps.without(c),
                        Some(c) => caps = caps.with(c),
                        None => ok = false,
                    }
                }
                // All or nothing, as the spec says.
                let asked = echo_trailing(asked);
                if ok {
                    let echo = caps.contains(Caps::ECHO_MESSAGE);
                    if echo != self.caps.contains(Caps::ECHO_MESSAGE) {
                        // The native server sends the echo, so it is the
                        // message as accepted, with its id and time.
                        out.commands.push(Command::Echo(echo));
                    }
                    self.caps = caps;
                    r.server_line("CAP", &[&me, "ACK", &asked]);
                } else {
                    r.server_line("CAP", &[&me, "NAK", &asked]);
                }
            }
            "END" => {
                self.negotiating = false;
                if let Some(held) = self.held.take() {
                    // After this line's own reply: the welcome a SASL login
                    // earned, held until now.
                    r.extend(&held);
                }
                self.try_register(out);
            }
            _ => {
                let sub = echo(msg.param(0).unwrap_or("*"));
                r.numeric(&me, "410", &[&sub, ":Invalid CAP command"]);
            }
        }
    }

    fn nick_cmd(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let Some(asked) = msg.param(0).filter(|n| !n.is_empty()) else {
            return r.numeric(&me, "431", &[":No nickname given"]);
        };
        let name = match Name::try_from(asked) {
            Ok(name) => name,
            Err(e) => {
                let asked = echo(asked);
                return r.numeric(&me, "432", &[&asked, &format!(":Erroneous nickname: {e}")]);
            }
        };
        if self.nick.is_some() {
            self.issue(out, Command::Nick(name.clone()), Pending::Nick(name));
        } else if self.registering {
            // A nick is on its way: this one follows it, and registers if
            // that one is refused, or renames if not, as on IRC.
            self.register(out, name);
        } else {
            self.wanted = Some(name);
            self.try_register(out);
        }
    }

    fn user(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        if self.nick.is_some() || self.user_given && self.registering {
            return r.numeric(&me, "462", &[":You may not reregister"]);
        }
        // An empty username or realname is refused, as irctest expects.
        if msg.params().len() < 4 || msg.param(0) == Some("") || msg.param(3) == Some("") {
            return r.numeric(&me, "461", &["USER", ":Not enough parameters"]);
        }
        self.user_given = true;
        self.try_register(out);
    }

    /// Sends the wanted nick once NICK, USER and any CAP negotiation are done;
    /// with `PASS account:password`, logs in to the account first (whose
    /// name the connection then has; after a wrong password, `464`, it
    /// registers with the nick as without `PASS`).
    fn try_register(&mut self, out: &mut FromClient) {
        if self.nick.is_some() || self.registering || self.negotiating || !self.user_given {
            return;
        }
        if let Some((name, password)) = self.pass.take() {
            // The nick follows: after a login it confirms the account's name
            // (or is refused, harmlessly); after a failed one it registers.
            // Another nick than the account's is refused once logged in.
            self.nick_after_pass = self.wanted.as_ref().is_some_and(|w| !w.same_as(&name));
            let login = Command::Login { name, password };
            self.issue(out, login, Pending::Account(Via::Pass));
        }
        if let Some(name) = self.wanted.take() {
            self.register(out, name);
        }
    }

    /// `AUTHENTICATE`: SASL `PLAIN` (`authzid NUL authcid NUL password`,
    /// base64, in chunks of 400), as a native `/login authcid password`.
    fn authenticate(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let arg = msg.param(0).unwrap_or("");
        if !self.caps.contains(Caps::SASL) {
            return r.numeric(&me, "904", &[":SASL authentication failed"]);
        }
        if arg == "*" {
            self.sasl = None;
            return r.numeric(&me, "906", &[":SASL authentication aborted"]);
        }
        let Some(so_far) = &mut self.sasl else {
            if arg.eq_ignore_ascii_case("PLAIN") {
                self.sasl = Some(String::new());
                return r.server_line("AUTHENTICATE", &["+"]);
            }
            r.numeric(&me, "908", &["PLAIN", ":are available SASL mechanisms"]);
            return r.numeric(&me, "904", &[":SASL authentication failed"]);
        };
        if arg != "+" {
            so_far.push_str(arg);
        }
        if so_far.len() > MAX_SASL_B64 {
            self.sasl = None;
            return r.numeric(&me, "904", &[":SASL authentication failed"]);
        }
        if arg.len() == 400 {
            return; // More follows.
        }
        let message = self.sasl.take().and_then(|b64| base64_decode(&b64));
        let login = message.as_deref().and_then(|m| {
            let mut fields = m.split(|&b| b == 0);
            let (_authzid, authcid, password) = (fields.next()?, fields.next()?, fields.next()?);
            let name = Name::try_from(std::str::from_utf8(authcid).ok()?).ok()?;
            let password = Password::try_from(std::str::from_utf8(password).ok()?).ok()?;
            Some(Command::Login { name, password })
        });
        match login {
            Some(command) => {
                self.issue(out, command, Pending::Account(Via::Sasl));
                if self.nick.is_none() && self.config.global_channel.is_some() {
                    // The names of `&global`, joined on WELCOME, as in
                    // `register` (refused unseen if the login fails).
                    self.issue(out, Command::Users, Pending::Names);
                }
            }
            None => r.numeric(&me, "904", &[":SASL authentication failed"]),
        }
    }

    /// Asks for `name`, and for the names of `&global`, joined on `WELCOME`
    /// (that `/users` is refused as not-registered, and not shown, if the
    /// name is).
    fn register(&mut self, out: &mut FromClient, name: Name) {
        self.registering = true;
        self.issue(out, Command::Nick(name.clone()), Pending::Nick(name));
        if self.config.global_channel.is_some() {
            self.issue(out, Command::Users, Pending::Names);
        }
    }

    /// True between `CAP LS`/`REQ` and `CAP END` before registration.
    pub(super) fn negotiating(&self) -> bool {
        self.negotiating
    }

    /// A refused registration nick: the client may send another.
    pub(super) fn registration_refused(&mut self) {
        self.registering = false;
    }

    /// True if `channel` names the global channel.
    pub(super) fn is_global(&self, channel: &str) -> bool {
        self.config
            .global_channel
            .as_deref()
            .is_some_and(|g| g.eq_ignore_ascii_case(channel))
    }

    /// The group a `#g` channel stands for, if it is a valid one.
    fn group_of(channel: &str) -> Option<GroupName> {
        GroupName::try_from(channel.strip_prefix('#')?).ok()
    }

    /// True if `channel` is the current group's channel.
    fn is_current(&self, channel: &str) -> bool {
        matches!((&self.group, Self::group_of(channel)), (Some(g), Some(c)) if g.same_as(&c))
    }

    fn privmsg(
        &mut self,
        msg: &IrcMessage<'_>,
        notice: bool,
        r: &mut Lines<'_>,
        out: &mut FromClient,
    ) {
        let me = self.me();
        let cmd = if notice { "NOTICE" } else { "PRIVMSG" };
        let error = |r: &mut Lines<'_>, code: &str, params: &[&str]| {
            // NOTICE is never answered with errors (RFC 2812 3.3.2).
            if !notice {
                r.numeric(&me, code, params);
            }
        };
        let target = match msg.param(0) {
            Some(t) if !t.is_empty() && msg.params().len() >= 2 => t,
            Some(t) if !t.is_empty() => return error(r, "412", &[":No text to send"]),
            _ => return error(r, "411", &[&format!(":No recipient given ({cmd})")]),
        };
        // TARGMAX=PRIVMSG:1: only the first target counts.
        let target = target.split(',').next().unwrap_or(target);
        let raw = msg.param(1).unwrap_or("");
        if target.eq_ignore_ascii_case(NICKSERV) {
            if !notice {
                self.nickserv(raw, r, out);
            }
            return;
        }
        let (action, body) = match ctcp(raw) {
            Some(("ACTION", body)) => (true, body),
            Some((query, body)) => {
                if !notice {
                    self.answer_ctcp(target, query, body, r);
                }
                return;
            }
            None => (false, raw),
        };
        let stripped = strip_formatting(body);
        if stripped.is_empty() {
            return error(r, "412", &[":No text to send"]);
        }
        let text = match Text::try_from(stripped.as_ref()) {
            Ok(text) => text,
            Err(e) => {
                let t = echo(target);
                return error(r, "404", &[&t, &format!(":Cannot send to {t}: {e}")]);
            }
        };
        if target.starts_with('#') {
            if let (true, Some(group)) = (self.is_current(target), self.group.clone()) {
                self.say_in_group(out, group, text, action);
            } else if Self::group_of(target).is_some() {
                let t = echo(target);
                error(
                    r,
                    "404",
                    &[&t, ":Cannot send to channel (you are not in it)"],
                );
            } else {
                error(r, "403", &[&echo(target), ":No such channel"]);
            }
        } else if self.is_global(target) {
            if !self.in_global {
                let t = echo(target);
                error(r, "404", &[&t, ":Cannot send to channel (join it first)"]);
            } else {
                // Named scope: global also from inside a group, and never
                // the group by mistake.
                let scope = Scope::Global;
                out.commands.push(if action {
                    Command::MeIn { scope, text }
                } else {
                    Command::SayIn { scope, text }
                });
            }
        } else if target.starts_with('&') {
            error(r, "403", &[&echo(target), ":No such channel"]);
        } else {
            match Name::try_from(target) {
                Ok(to) => {
                    // A private action travels as `/me text`, which is also how a
                    // native user writes one (`/msg bob /me waves`).
                    let text = if action {
                        Text::try_from(format!("/me {}", text.as_str())).unwrap_or(text)
                    } else {
                        text
                    };
                    let pending = Pending::Msg {
                        target: to.as_str().to_owned(),
                        notice,
                    };
                    self.issue(out, Command::Msg { to, text }, pending);
                }
                Err(_) => error(r, "401", &[&echo(target), ":No such nick/channel"]),
            }
        }
    }

    /// A line to NickServ: `IDENTIFY [account] <password>` logs in,
    /// `REGISTER <password> [email]` registers the current nick; NickServ
    /// answers in `NOTICE`s. The password never appears in a reply.
    fn nickserv(&mut self, line: &str, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let words: Vec<&str> = line.split(' ').filter(|w| !w.is_empty()).collect();
        let verb = words.first().map(|w| w.to_ascii_uppercase());
        let password = |w: &str| Password::try_from(w).ok();
        let command = match (verb.as_deref(), &words[..]) {
            (Some("IDENTIFY"), [_, pw]) => self
                .nick
                .clone()
                .zip(password(pw))
                .map(|(name, password)| Command::Login { name, password }),
            (Some("IDENTIFY"), [_, account, pw]) => Name::try_from(*account)
                .ok()
                .zip(password(pw))
                .map(|(name, password)| Command::Login { name, password }),
            (Some("REGISTER"), [_, pw] | [_, pw, _]) => password(pw).map(Command::Register),
            (Some("IDENTIFY" | "REGISTER"), _) => None,
            _ => {
                let help = "Commands: IDENTIFY [account] <password>, REGISTER <password>";
                return r.nickserv_notice(&me, help);
            }
        };
        match command {
            Some(command) => self.issue(out, command, Pending::Account(Via::NickServ)),
            None => r.nickserv_notice(
                &me,
                "Syntax: IDENTIFY [account] <password> or REGISTER <password>; a password is \
                 8 to 256 bytes without spaces",
            ),
        }
    }

    /// Answers a CTCP query other than `ACTION` in the server's name; nothing
    /// of it is relayed.
    fn answer_ctcp(&self, target: &str, query: &str, body: &str, r: &mut Lines<'_>) {
        let me = self.me();
        let reply = match query {
            "VERSION" => format!("VERSION {}", self.config.version),
            "PING" => format!("PING {}", echo_trailing(body)),
            "CLIENTINFO" => "CLIENTINFO ACTION CLIENTINFO PING VERSION".to_owned(),
            other => format!(
                "ERRMSG {} :not supported by {}",
                echo(other),
                self.config.server_name
            ),
        };
        let _ = target;
        r.server_line("NOTICE", &[&me, &format!("\u{1}{reply}\u{1}")]);
    }

    fn join(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let Some(list) = msg.param(0).filter(|c| !c.is_empty()) else {
            return r.numeric(&me, "461", &["JOIN", ":Not enough parameters"]);
        };
        if list == "0" {
            // `JOIN 0` leaves every channel: the group, and &global.
            if self.group.is_some() {
                self.issue(out, Command::Leave, Pending::Leave);
            }
            if self.in_global {
                self.part_global(r);
            }
            return;
        }
        let mut channels = list.split(',');
        let channel = channels.next().unwrap_or(list);
        for extra in channels.filter(|c| !c.is_empty()) {
            // CHANLIMIT=#:1,&:1 and TARGMAX=JOIN:1.
            let extra = echo(extra);
            r.numeric(&me, "405", &[&extra, ":You have joined too many channels"]);
        }
        if self.is_global(channel) {
            if !self.in_global {
                self.join_global(r, &mut out.commands);
            }
            return;
        }
        match Self::group_of(channel) {
            Some(_) if self.is_current(channel) => {}
            Some(group) => {
                // The server answers in order: `/users` lists the new group.
                self.issue(out, Command::Join(group), Pending::Join);
                self.issue(out, Command::Users, Pending::Names);
            }
            None => r.numeric(&me, "403", &[&echo(channel), ":No such channel"]),
        }
    }

    /// Joins `&global`: the JOIN line, then the names (from `/users` when not
    /// in a group; a group member's `/users` lists the group).
    fn join_global(&mut self, r: &mut Lines<'_>, out: &mut Vec<Command>) {
        let Some(global) = self.config.global_channel.clone() else {
            return;
        };
        let Some(nick) = self.nick.clone() else {
            return;
        };
        self.in_global = true;
        r.user_line(&nick, "JOIN", &[&global]);
        if self.group.is_none() {
            self.pending.push_back(Pending::Names);
            out.push(Command::Users);
        } else {
            // A group member's `/users` lists the group; the native protocol
            // has no way to list the global scope from inside a group.
            let me = self.me();
            r.numeric(&me, "366", &[&global, ":End of /NAMES list"]);
        }
    }

    fn part_global(&mut self, r: &mut Lines<'_>) {
        self.in_global = false;
        if let (Some(global), Some(nick)) = (self.config.global_channel.clone(), self.nick.clone())
        {
            r.user_line(&nick, "PART", &[&global]);
        }
    }

    fn part(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let Some(list) = msg.param(0).filter(|c| !c.is_empty()) else {
            return r.numeric(&me, "461", &["PART", ":Not enough parameters"]);
        };
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            if self.is_global(channel) {
                if self.in_global {
                    self.part_global(r);
                } else {
                    r.numeric(&me, "442", &[&echo(channel), ":You're not on that channel"]);
                }
            } else if self.is_current(channel) {
                self.issue(out, Command::Leave, Pending::Leave);
            } else if Self::group_of(channel).is_some() {
                r.numeric(&me, "442", &[&echo(channel), ":You're not on that channel"]);
            } else {
                r.numeric(&me, "403", &[&echo(channel), ":No such channel"]);
            }
        }
    }

    fn names(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let channel = msg
            .param(0)
            .and_then(|l| l.split(',').next())
            .filter(|c| !c.is_empty());
        match channel {
            Some(c) if self.is_current(c) || self.is_global(c) && self.group.is_none() => {
                self.issue(out, Command::Users, Pending::Names);
            }
            Some(c) => r.numeric(&me, "366", &[&echo(c), ":End of /NAMES list"]),
            None => r.numeric(&me, "366", &["*", ":End of /NAMES list"]),
        }
    }

    fn who(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        let mask = msg.param(0).filter(|m| !m.is_empty()).unwrap_or("*");
        if self.is_current(mask) || self.is_global(mask) && self.group.is_none() {
            return self.issue(out, Command::Users, Pending::Who);
        }
        match Name::try_from(mask) {
            Ok(name) => self.issue(out, Command::Whois(name), Pending::WhoNick(echo(mask))),
            // A mask or a channel we are not in: nobody to show.
            Err(_) => r.numeric(&me, "315", &[&echo(mask), ":End of /WHO list"]),
        }
    }

    /// One `352` line.
    pub(super) fn who_line(&self, r: &mut Lines<'_>, channel: &str, nick: &Name) {
        let me = self.me();
        let here = if self.nick.as_ref() == Some(nick) && self.away.is_some() {
            "G"
        } else {
            "H"
        };
        let host = self.config.user_host.clone();
        let server = self.config.server_name.clone();
        r.numeric(
            &me,
            "352",
            &[
                channel,
                nick.as_str(),
                &host,
                &server,
                nick.as_str(),
                here,
                &format!(":0 {nick}"),
            ],
        );
    }

    fn whois(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>, out: &mut FromClient) {
        let me = self.me();
        // `WHOIS [server] nick`: the nick is the last parameter.
        let Some(target) = msg.params().last().copied().filter(|t| !t.is_empty()) else {
            return r.numeric(&me, "431", &[":No nickname given"]);
        };
        let target = target.split(',').next().unwrap_or(target);
        let t = echo(target);
        match Name::try_from(target) {
            Ok(name) => self.issue(out, Command::Whois(name), Pending::Whois(t)),
            Err(_) => {
                r.numeric(&me, "401", &[&t, ":No such nick/channel"]);
                r.numeric(&me, "318", &[&t, ":End of /WHOIS list"]);
            }
        }
    }

    /// The away message, if the user of this session set one.
    pub(super) fn away(&self) -> Option<&str> {
        self.away.as_deref()
    }

    fn topic(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>) {
        let me = self.me();
        let Some(channel) = msg.param(0).filter(|c| !c.is_empty()) else {
            return r.numeric(&me, "461", &["TOPIC", ":Not enough parameters"]);
        };
        let c = echo(channel);
        if !(self.is_current(channel) || self.is_global(channel) && self.in_global) {
            if Self::group_of(channel).is_some() || self.is_global(channel) {
                return r.numeric(&me, "442", &[&c, ":You're not on that channel"]);
            }
            return r.numeric(&me, "403", &[&c, ":No such channel"]);
        }
        if msg.params().len() > 1 {
            r.numeric(&me, "482", &[&c, ":Topics cannot be set here"]);
        } else {
            r.numeric(&me, "331", &[&c, ":No topic is set"]);
        }
    }

    fn mode(&mut self, msg: &IrcMessage<'_>, r: &mut Lines<'_>) {
        let me = self.me();
        let Some(target) = msg.param(0).filter(|c| !c.is_empty()) else {
            return r.numeric(&me, "461", &["MODE", ":Not enough parameters"]);
        };
        let t = echo(target);
        if target.starts_with(['#', '&']) {
            let known = self.is_current(target) || self.is_global(target);
            if !known {
                return r.numeric(&me, "403", &[&t, ":No such channel"]);
            }
            match msg.param(1) {
                None => {
                    // n: only members speak; t: nobody sets the topic.
                    r.numeric(&me, "324", &[&t, "+nt"]);
                    r.numeric(&me, "329", &[&t, "0"]);
                }
                Some(m) if m.trim_start_matches('+') == "b" => {
                    r.numeric(&me, "368", &[&t, ":End of channel ban list"]);
                }
                Some(_) => r.numeric(&me, "482", &[&t, ":Channel modes cannot be changed here"]),
            }
        } else if self
            .nick
            .as_ref()
            .is_some_and(|n| n.as_str().eq_ignore_ascii_case(target))
        {
            r.numeric(&me, "221", &["+"]);
        } else if Name::try_from(target).is_ok() {
            r.numeric(&me, "502", &[":Can't view or change modes for other users"]);
        } else {
            r.numeric(&me, "401", &[&t, ":No such nick/channel"]);
        }
    }

    /// `375`/`372`/`376`, or `422`.
    pub(super) fn motd(&self, r: &mut Lines<'_>) {
        let me = self.me();
        match &self.config.motd {
            None => r.numeric(&me, "422", &[":MOTD File is missing"]),
            Some(lines) => {
                let server = &self.config.server_name;
                r.numeric(&me, "375", &[&format!(":- {server} Message of the day - ")]);
                for line in lines {
                    r.numeric(&me, "372", &[&format!(":- {}", echo_trailing(line))]);
                }
                r.numeric(&me, "376", &[":End of /MOTD command."]);
            }
        }
    }
}

/// A CTCP message's command and body (`\x01ACTION waves\x01` gives
/// `("ACTION", "waves")`); the closing `\x01` is optional, as clients vary.
pub fn ctcp(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('\u{1}')?;
    let inner = inner.strip_suffix('\u{1}').unwrap_or(inner);
    Some(match inner.split_once(' ') {
        Some((cmd, body)) => (cmd, body),
        None => (inner, ""),
    })
}

/// Removes IRC formatting codes: bold (0x02), colour (0x03 with up to two
/// digits, then `,` and up to two digits), hex colour (0x04 with six hex
/// digits), reset (0x0F), monospace (0x11), reverse (0x16), italic (0x1D),
/// strikethrough (0x1E) and underline (0x1F). Other characters, control
/// characters included, are kept, so that what the native server refuses is
/// refused visibly. Borrows when there is nothing to strip.
pub fn strip_formatting(text: &str) -> Cow<'_, str> {
    const CODES: [char; 9] = [
        '\u{2}', '\u{3}', '\u{4}', '\u{f}', '\u{11}', '\u{16}', '\u{1d}', '\u{1e}', '\u{1f}',
    ];
    if !text.contains(CODES) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\u{3}' => {
                let fg = digits(rest, 2, |b| b.is_ascii_digit());
                rest = &rest[fg..];
                if fg > 0 && rest.starts_with(',') {
                    let bg = digits(&rest[1..], 2, |b| b.is_ascii_digit());
                    if bg > 0 {
                        rest = &rest[1 + bg..];
                    }
                }
            }
            '\u{4}' => {
                let fg = digits(rest, 6, |b| b.is_ascii_hexdigit());
                rest = &rest[fg..];
                if fg == 6 && rest.starts_with(',') {
                    let bg = digits(&rest[1..], 6, |b| b.is_ascii_hexdigit());
                    if bg == 6 {
                        rest = &rest[7..];
                    }
                }
            }
            c if CODES.contains(&c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// How many of the first `max` bytes of `s` satisfy `ok`, from the start.
fn digits(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> usize {
    s.bytes().take(max).take_while(|&b| ok(b)).count()
}

/// A client's word quoted in a middle parameter: clipped, never empty, no
/// space, no leading `:`, no control characters.
pub(super) fn echo(s: &str) -> String {
    let mut out: String = crate::error::clip(s, ECHO_MAX)
        .chars()
        .map(|c| if c == ' ' || c.is_control() { '?' } else { c })
        .collect();
    if out.starts_with(':') {
        out.replace_range(..1, "?");
    }
    if out.is_empty() {
        out.push('*');
    }
    out
}

/// A client's text quoted in a trailing parameter: clipped to 400 bytes, no
/// control characters.
pub(super) fn echo_trailing(s: &str) -> String {
    crate::error::clip(s, 400)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Standard base64 (RFC 4648, with padding) to bytes; `None` if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(
            match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            }
            .into(),
        )
    };
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, quad) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&three[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines from one new session: its replies and the commands it issues,
    /// as text.
    fn run(lines: &[&str]) -> (String, Vec<String>) {
        let mut session = IrcSession::new(Arc::new(IrcConfig::default()));
        let mut reply = Vec::new();
        let mut commands = Vec::new();
        for line in lines {
            let out = session.on_line(Ok(line));
            reply.extend(out.reply);
            commands.extend(out.commands.iter().map(ToString::to_string));
        }
        (String::from_utf8(reply).unwrap(), commands)
    }

    #[test]
    fn registration_table() {
        let cases: &[(&[&str], &str, &[&str])] = &[
            (&["NICK ann"], "", &[]),
            (&["NICK ann", "USER a 0 * :A"], "", &["/nick ann", "/users"]),
            (&["USER a 0 * :A", "nick ann"], "", &["/nick ann", "/users"]),
            (&["PASS x", "NICK ann", "USER a 0 * :A"], "", &["/nick ann", "/users"]),
            (&["CAP LS 302", "NICK ann", "USER a 0 * :A"], "ls", &[]),
            (&["CAP LS", "NICK ann", "USER a 0 * :A", "CAP END"], "ls", &["/nick ann", "/users"]),
            (&["CAP REQ :server-time", "NICK a", "USER a 0 * :A"], ":chatd CAP * ACK server-time\r\n", &[]),
            (&["NICK a", "USER a"], ":chatd 461 * USER :Not enough parameters\r\n", &[]),
            (&["NICK a", "USER a 0 * :"], ":chatd 461 * USER :Not enough parameters\r\n", &[]),
            (&["NICK a", "USER a 0 * :A", "NICK b"], "", &["/nick a", "/users", "/nick b", "/users"]),
            (&["NICK b@d"], ":chatd 432 * b@d :Erroneous nickname: name has '@' at byte 1; allowed are A-Z a-z 0-9 _ -\r\n", &[]),
            (&["JOIN :"], ":chatd 451 * :You have not registered\r\n", &[]),
            (&["PRIVMSG x :y"], ":chatd 451 * :You have not registered\r\n", &[]),
            (&["PING :a b"], ":chatd PONG chatd :a b\r\n", &[]),
            (&["PONG 7"], "", &["/pong 7"]),
            (&["QUIT"], "ERROR :Closing link: (quit)\r\n", &["/quit"]),
            (&["QUIT :\u{2}bye\u{2}"], "ERROR :Closing link: (quit)\r\n", &["/quit bye"]),
            (&["CAP FOO"], ":chatd 410 * FOO :Invalid CAP command\r\n", &[]),
            (&[""], "", &[]),
            (&["   "], "", &[]),
        ];
        let ls = ":chatd CAP * LS :cap-notify echo-message message-tags multi-prefix server-time userhost-in-names\r\n";
        for (lines, reply, commands) in cases {
            let want = if *reply == "ls" { ls } else { reply };
            assert_eq!(
                run(lines),
                (
                    want.to_owned(),
                    commands.iter().map(|c| c.to_string()).collect()
                ),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn base64_decodes_standard_padding_and_refuses_the_rest() {
        assert_eq!(
            base64_decode("AGFubgBodW50ZXIyMg==").unwrap(),
            b"\0ann\0hunter22"
        );
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert_eq!(base64_decode("").unwrap(), b"");
        for bad in ["YQ=", "Y===", "YQ==YWJj", "Y!==", "YWJ"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn formatting_is_stripped() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("\u{2}bold\u{2}", "bold"),
            ("\u{3}4red", "red"),
            ("\u{3}04,12on blue", "on blue"),
            ("\u{3}123", "3"),
            ("\u{3}4,5,6", ",6"),
            ("\u{3},5x", ",5x"),
            ("\u{3}4,x", ",x"),
            ("a\u{3}b", "ab"),
            ("\u{4}ff00ffpink", "pink"),
            ("\u{4}ff00ff,00ff00x", "x"),
            (
                "\u{1d}it\u{1f}un\u{1e}st\u{11}mo\u{16}rev\u{f}",
                "itunstmorev",
            ),
            ("é\u{2}ü", "éü"),
            ("\u{3}", ""),
            // Not formatting: kept for the server to refuse.
            ("a\u{1b}[2J", "a\u{1b}[2J"),
            ("\u{1}ACTION\u{1}", "\u{1}ACTION\u{1}"),
        ];
        for (raw, want) in cases {
            assert_eq!(strip_formatting(raw), *want, "{raw:?}");
        }
        assert!(matches!(strip_formatting("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn ctcp_is_recognised() {
        assert_eq!(ctcp("\u{1}ACTION waves\u{1}"), Some(("ACTION", "waves")));
        assert_eq!(ctcp("\u{1}ACTION waves"), Some(("ACTION", "waves")));
        assert_eq!(ctcp("\u{1}VERSION\u{1}"), Some(("VERSION", "")));
        assert_eq!(ctcp("hi \u{1}x\u{1}"), None);
    }

    #[test]
    fn echo_is_a_safe_middle_parameter() {
        let cases: &[(&str, &str)] = &[
            ("", "*"),
            ("a b", "a?b"),
            (":x", "?x"),
            ("\u{1}x", "?x"),
            ("#ok", "#ok"),
        ];
        for (raw, want) in cases {
            assert_eq!(echo(raw), *want);
            assert!(IrcMessage::new("421", &[&echo(raw), "x"]).is_ok());
        }
        assert_eq!(echo(&"é".repeat(100)).len(), 64);
    }

    #[test]
    fn caps_by_name_and_dialect() {
        assert_eq!(Caps::by_name("Server-Time"), Some(Caps::SERVER_TIME));
        assert_eq!(Caps::by_name("sasl"), Some(Caps::SASL));
        assert_eq!(Caps::by_name("chathistory"), None);
        let all = Caps::OFFERED
            .iter()
            .fold(Caps::NONE, |a, &(_, c)| a.with(c));
        assert_eq!(
            all.names(),
            "cap-notify echo-message message-tags multi-prefix sasl server-time userhost-in-names"
        );
        assert_eq!(all.dialect(), Caps::SERVER_TIME.with(Caps::MESSAGE_TAGS));
        assert_eq!(Caps::MULTI_PREFIX.dialect(), Caps::NONE);
        assert!(all.without(Caps::CAP_NOTIFY).contains(Caps::SERVER_TIME));
        assert!(!all.without(Caps::CAP_NOTIFY).contains(Caps::CAP_NOTIFY));
    }
}
