//! The server's state machine: users, groups and scopes, as pure functions of
//! inputs, with effects returned as data.

mod groups;
mod outgoing;
mod users;

pub use outgoing::{Outgoing, Time};

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
    parse_line, CloseReason, Command, ErrorCode, Event, FrameError, GroupName, Name, NameKey,
    Refusal, Scope, Text, Token, COMMAND_HELP,
};
use groups::Groups;
use users::Users;

/// An opaque handle for one connection, chosen by the driver. Each connection
/// needs an id no other live connection has.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The handle for the driver's number `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The driver's number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// Settings of the state machine. Built with [`ServerConfig::default`] and
/// changed field by field.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Sent in `HELLO`. Default `chatd`.
    pub server_name: Token,
    /// Sent in `HELLO`. Default: this crate's version.
    pub version: Token,
    /// The words for a person at the end of `HELLO`. Default: asks for a name
    /// and says what a name may hold.
    pub greeting: Text,
    /// Names nobody may register (compared ignoring case), so that no user can
    /// pass for the server or its staff; the server's own name is reserved
    /// too. Default: `server`, `admin`, `administrator`, `root`, `system`,
    /// `operator`, `moderator`, `chatd`.
    pub reserved_names: Vec<Name>,
    /// Above this many users, registrations and disconnections are no longer
    /// announced to everyone (`JOIN *` to all, `PART *` to all): each one would
    /// cost a line to every user, so a reconnect storm of N users would cost N²
    /// lines. A disconnection is still told to the leaver's group. Default
    /// 1000.
    pub presence_limit: usize,
    /// A connection that has not registered this long after connecting is
    /// closed with `register-timeout`. Default 30 s: ample for a person typing.
    pub register_timeout: Duration,
    /// A registered connection silent this long gets a `PING`. Default 60 s.
    pub ping_after: Duration,
    /// A registered connection silent this long is closed with `ping-timeout`.
    /// Default 120 s: one minute to answer the `PING`.
    pub idle_timeout: Duration,
    /// Two inputs further apart than this mean the driver was not running
    /// (the process was stopped, the machine stalled), since it ticks about
    /// once a second: the time between them does not count against anyone's
    /// timeouts, so a server that resumes does not kick clients whose lines
    /// are still waiting to be read. Default 3 s, for a driver that ticks
    /// once a second; a driver must tick more often than this.
    pub max_tick_gap: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_name: Token::try_from("chatd").expect("valid token literal"),
            version: Token::try_from(env!("CARGO_PKG_VERSION")).expect("versions are tokens"),
            greeting: Text::lossy("welcome! who are you? send your name (1-32 of A-Z a-z 0-9 _ -)"),
            reserved_names: [
                "server",
                "admin",
                "administrator",
                "root",
                "system",
                "operator",
                "moderator",
                "chatd",
            ]
            .into_iter()
            .map(|n| Name::try_from(n).expect("valid name literal"))
            .collect(),
            presence_limit: 1000,
            register_timeout: Duration::from_secs(30),
            ping_after: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_tick_gap: Duration::from_secs(3),
        }
    }
}

/// What happened, as told to [`Server::handle`] by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A connection was accepted. The server greets it with `HELLO`.
    Connected(ConnId),
    /// The connection sent a line that parsed.
    Line(ConnId, Command),
    /// The connection sent a line that did not frame or parse; the server
    /// answers `ERR` and changes nothing else. An empty line
    /// ([`Refusal::is_empty_line`]) gets no answer but counts as activity.
    Refused(ConnId, Refusal),
    /// The driver closes the connection for `reason` (a slow consumer, say):
    /// the server sends `BYE`, then [`Effect::Close`], and tells the others.
    Kick(ConnId, CloseReason),
    /// The connection is already gone (reset, EOF, write error): the server
    /// forgets it and tells the others. Unknown ids are ignored.
    Disconnected(ConnId, CloseReason),
    /// Time passed: checks registration and idle timeouts. Call about once a
    /// second (more often is fine); timeouts are as precise as the ticks. See
    /// [`ServerConfig::max_tick_gap`] for ticks that come late.
    Tick,
    /// The server is shutting down: every connection gets `BYE
    /// server-shutdown` and is closed, and a connection that still arrives
    /// afterwards gets the same.
    Shutdown,
}

impl Input {
    /// The input for one result of [`LineFramer::next_line`](crate::LineFramer::next_line):
    /// a parsed line, or a refusal (an empty line included, which the server
    /// ignores as PROTOCOL.md says).
    ///
    /// ```
    /// use chatproto::server::{ConnId, Input};
    /// use chatproto::LineFramer;
    /// let mut framer = LineFramer::for_server();
    /// framer.push(b"/join rust\n\n");
    /// let conn = ConnId::new(1);
    /// assert!(matches!(Input::from_frame(conn, framer.next_line().unwrap()), Input::Line(..)));
    /// let empty = Input::from_frame(conn, framer.next_line().unwrap());
    /// assert!(matches!(empty, Input::Refused(_, r) if r.is_empty_line()));
    /// ```
    pub fn from_frame(conn: ConnId, line: Result<&str, FrameError>) -> Self {
        match line.map(parse_line) {
            Ok(Ok(cmd)) => Self::Line(conn, cmd),
            Ok(Err(e)) => Self::Refused(conn, e.into()),
            Err(e) => Self::Refused(conn, e.into()),
        }
    }
}

/// What the driver must do, in order, as returned by [`Server::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Effect {
    /// Queue `event` for `to`, encoded in `to`'s dialect ([`Outgoing::line`]
    /// for this protocol). Every recipient of a broadcast gets the same `Arc`.
    Deliver {
        /// The recipient.
        to: ConnId,
        /// The event and its stamp.
        event: Arc<Outgoing>,
    },
    /// Flush what is queued for `conn`, then close it. The server has already
    /// forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why, for logs.
        reason: CloseReason,
    },
}

#[derive(Debug)]
struct Conn {
    name: Option<Name>,
    group: Option<NameKey>,
    connected_at: Instant,
    last_heard: Instant,
    pinged: bool,
    /// The wall time of the registering input, in ms since the Unix epoch
    /// (0 if the driver gave none), for `WHOIS`.
    registered_unix_ms: u64,
    /// `/echo on`: its own `MSG` and `ME` come back to it too.
    echo: bool,
}

/// The chat server's state machine: no sockets, clocks, locks or tasks.
///
/// # How to drive it
/// For each connection the driver picks a fresh [`ConnId`] and calls
/// [`handle`](Self::handle) with [`Input::Connected`]; for each line it reads, it
/// frames it ([`crate::LineFramer::for_server`]) and passes what the framer
/// returns through [`Input::from_frame`] (a parsed [`Input::Line`], or an
/// [`Input::Refused`]: empty lines are refusals the server ignores); when the
/// connection ends on its own, [`Input::Disconnected`]. About once a second it
/// passes [`Input::Tick`]. Every call takes the current time and returns
/// effects: the driver carries them out in order, queueing each
/// [`Effect::Deliver`] without waiting on a socket, and closing the connection
/// on [`Effect::Close`]. If it calls `handle` for one input at a time and
/// queues the effects before the next call, every member of a scope receives
/// that scope's lines in one order.
///
/// What is left to the driver:
/// - After [`Input::Disconnected`] no [`Effect::Close`] follows: the driver
///   frees the connection itself. Inputs for unknown ids are ignored, so a
///   line racing with a close is harmless.
/// - Slow consumers: the driver budgets each connection's queued bytes and
///   passes [`Input::Kick`] with [`CloseReason::SendqExceeded`] when one is
///   over; of what is delivered to it afterwards only its `BYE` matters.
/// - Pacing: the driver reads a client no faster than it allows (see
///   [`crate::TokenBucket`]); the state machine handles whatever it is given.
/// - Closing: on [`Effect::Close`], flush what is queued, send a FIN, and keep
///   reading (and dropping) input for a few seconds until the client closes;
///   closing a socket with unread input sends a reset, which discards the
///   final `BYE`.
/// - Shutdown: after [`Input::Shutdown`] stop accepting. A connection that
///   still arrives is answered `BYE server-shutdown` and closed.
/// - Ticks may come more often than once a second. Late ones are fine too:
///   see [`ServerConfig::max_tick_gap`].
///
/// ```
/// use std::time::Instant;
/// use chatproto::server::{ConnId, Effect, Input, Server, ServerConfig};
/// use chatproto::parse_line;
///
/// let mut server = Server::new(ServerConfig::default());
/// let now = Instant::now();
/// let (alice, bob) = (ConnId::new(1), ConnId::new(2));
/// for (conn, name) in [(alice, "alice"), (bob, "bob")] {
///     let _ = server.handle(now, Input::Connected(conn));
///     let _ = server.handle(now, Input::Line(conn, parse_line(name).unwrap()));
/// }
/// let effects = server.handle(now, Input::Line(alice, parse_line("hi bob").unwrap()));
/// let [Effect::Deliver { to, event }] = &effects[..] else { panic!("{effects:?}") };
/// assert_eq!((*to, &event.line()[..]), (bob, &b"MSG * alice hi bob\n"[..]));
/// ```
///
/// A driver that wants message ids with wall-clock stamps (for history, or
/// IRC's `server-time`) passes a [`Time`] instead of an `Instant`:
/// ```
/// # use std::time::{Instant, SystemTime};
/// # use chatproto::server::{Server, ServerConfig, Time, Input, ConnId};
/// # let mut server = Server::new(ServerConfig::default());
/// let _ = server.handle(Time::new(Instant::now(), SystemTime::now()), Input::Tick);
/// ```
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    conns: HashMap<ConnId, Conn>,
    users: Users,
    groups: Groups,
    hello: Arc<Outgoing>,
    help: Vec<Arc<Outgoing>>,
    /// Sent after `WELCOME` while presence is not announced.
    quiet_presence: Arc<Outgoing>,
    /// The next message id.
    next_id: u64,
    reserved: BTreeSet<NameKey>,
    pings_sent: u64,
    /// When the last input came.
    last_input: Option<Instant>,
    /// Stalls so far: time between ticks that counts against no one. Times
    /// kept per connection are on the clock [`Self::clock`] returns.
    stalled: Duration,
    shut_down: bool,
}

/// A constant reply: id 0, time 0.
fn constant(event: Event) -> Arc<Outgoing> {
    Arc::new(Outgoing::new(event, 0, 0))
}

fn text(s: &str) -> Text {
    Text::lossy(s)
}

/// Where effects go while one input is handled, and how its events are stamped.
struct Out {
    effects: Vec<Effect>,
    next_id: u64,
    unix_ms: u64,
}

impl Out {
    /// Stamps `event` with the next id and this input's time.
    fn stamp(&mut self, event: Event) -> Arc<Outgoing> {
        let id = self.next_id;
        self.next_id += 1;
        Arc::new(Outgoing::new(event, id, self.unix_ms))
    }

    fn deliver(&mut self, to: ConnId, event: &Arc<Outgoing>) {
        self.effects.push(Effect::Deliver {
            to,
            event: event.clone(),
        });
    }

    fn deliver_all(
        &mut self,
        to: impl Iterator<Item = ConnId>,
        except: Option<ConnId>,
        event: &Arc<Outgoing>,
    ) {
        for c in to {
            if Some(c) != except {
                self.deliver(c, event);
            }
        }
    }

    fn event(&mut self, to: ConnId, event: Event) {
        let event = self.stamp(event);
        self.deliver(to, &event);
    }

    fn error(&mut self, to: ConnId, code: ErrorCode, message: &str) {
        self.event(
            to,
            Event::Err {
                code,
                text: text(message),
            },
        );
    }

    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        self.effects.push(Effect::Close { conn, reason });
    }
}

impl Server {
    /// A server with no connections.
    pub fn new(config: ServerConfig) -> Self {
        let hello = constant(Event::Hello {
            server: config.server_name.clone(),
            version: config.version.clone(),
            text: config.greeting.clone(),
        });
        let quiet_presence = constant(Event::Info(text(&format!(
            "more than {} users are here, so arrivals and departures are not announced; \
             /users lists who is here",
            config.presence_limit
        ))));
        let mut reserved: BTreeSet<NameKey> = config.reserved_names.iter().map(Name::key).collect();
        if let Ok(own) = Name::try_from(config.server_name.as_str()) {
            reserved.insert(own.key());
        }
        let help = COMMAND_HELP
            .iter()
            .map(|(usage, what)| constant(Event::Info(text(&format!("{usage:<20} {what}")))))
            .collect();
        Self {
            config,
            conns: HashMap::new(),
            users: Users::default(),
            groups: Groups::default(),
            hello,
            help,
            quiet_presence,
            next_id: 1,
            reserved,
            pings_sent: 0,
            last_input: None,
            stalled: Duration::ZERO,
            shut_down: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Live connections, registered or not.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Registered users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Groups (each has at least one member).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The name a connection registered, if any.
    pub fn name_of(&self, conn: ConnId) -> Option<&Name> {
        self.conns.get(&conn)?.name.as_ref()
    }

    /// True while registrations and disconnections are announced to everyone
    /// (at most [`ServerConfig::presence_limit`] users).
    pub fn announces_presence(&self) -> bool {
        self.users.len() <= self.config.presence_limit
    }

    /// Time that passed between inputs further apart than
    /// [`ServerConfig::max_tick_gap`], which counted against no one's
    /// timeouts. A driver may log when it grows: the process did not run.
    pub fn stalled(&self) -> Duration {
        self.stalled
    }

    /// `now` on the clock that stalls do not advance (see
    /// [`ServerConfig::max_tick_gap`]).
    fn clock(&self, now: Instant) -> Instant {
        now.checked_sub(self.stalled).unwrap_or(now)
    }

    /// Handles one input at time `now`; returns what the driver must do, in order.
    pub fn handle(&mut self, now: impl Into<Time>, input: Input) -> Vec<Effect> {
        let time = now.into();
        self.note_time(time.instant);
        let now = self.clock(time.instant);
        let mut out = Out {
            effects: Vec::new(),
            next_id: self.next_id,
            unix_ms: time.unix_ms,
        };
        match input {
            Input::Connected(conn) => self.connected(now, conn, &mut out),
            Input::Line(conn, cmd) => {
                if let Some(c) = self.heard(now, conn) {
                    if c.name.is_some() {
                        self.registered_line(now, conn, cmd, &mut out);
                    } else {
                        self.unregistered_line(conn, cmd, &mut out);
                    }
                }
            }
            Input::Refused(conn, refusal) => {
                if self.heard(now, conn).is_some() && !refusal.is_empty_line() {
                    out.error(conn, refusal.code().clone(), refusal.message().as_str());
                }
            }
            Input::Kick(conn, reason) => self.close(conn, reason, None, true, &mut out),
            Input::Disconnected(conn, reason) => self.close(conn, reason, None, false, &mut out),
            Input::Tick => self.tick(now, &mut out),
            Input::Shutdown => self.shutdown(&mut out),
        }
        self.next_id = out.next_id;
        out.effects
    }

    /// Notes an input at `now`. A gap past `max_tick_gap` since the last one
    /// is a stall: it is added to `stalled`, so the clock reads as it did at
    /// the last input.
    fn note_time(&mut self, now: Instant) {
        if let Some(last) = self.last_input {
            let gap = now.saturating_duration_since(last);
            if gap > self.config.max_tick_gap {
                self.stalled += gap;
            }
        }
        self.last_input = Some(self.last_input.map_or(now, |last| last.max(now)));
    }

    /// Notes that `conn` spoke; returns it if it is live.
    fn heard(&mut self, now: Instant, conn: ConnId) -> Option<&Conn> {
        let c = self.conns.get_mut(&conn)?;
        c.last_heard = now;
        c.pinged = false;
        Some(c)
    }

    fn connected(&mut self, now: Instant, conn: ConnId, out: &mut Out) {
        if self.conns.contains_key(&conn) {
            return; // A driver bug; keep the live connection's state.
        }
        if self.shut_down {
            // The driver should have stopped accepting; say goodbye anyway.
            out.event(conn, Event::Bye(CloseReason::ServerShutdown));
            out.close(conn, CloseReason::ServerShutdown);
            return;
        }
        self.conns.insert(
            conn,
            Conn {
                name: None,
                group: None,
                connected_at: now,
                last_heard: now,
                pinged: false,
                registered_unix_ms: 0,
                echo: false,
            },
        );
        out.deliver(conn, &self.hello);
    }

    fn unregistered_line(&mut self, conn: ConnId, cmd: Command, out: &mut Out) {
        match cmd {
            Command::Say(t) => match Name::try_from(t.as_str()) {
                Ok(name) => self.register(conn, name, out),
                Err(e) => out.error(conn, ErrorCode::NameInvalid, &e.to_string()),
            },
            Command::Nick(name) => self.register(conn, name, out),
            Command::Help => {
                for line in &self.help {
                    out.deliver(conn, line);
                }
            }
            Command::Ping(t) => self.pong(conn, t, out),
            Command::Pong(_) => {}
            Command::Echo(on) => self.set_echo(conn, on),
            Command::Quit(reason) => self.close(conn, CloseReason::Quit, reason, true, out),
            _ => out.error(
                conn,
                ErrorCode::NotRegistered,
                "register first: send your name",
            ),
        }
    }

    fn registered_line(&mut self, now: Instant, conn: ConnId, cmd: Command, out: &mut Out) {
        match cmd {
            Command::Say(t) => self.say(
                conn,
                |scope, from| Event::Msg {
                    scope,
                    from,
                    text: t,
                },
                out,
            ),
            Command::Me(t) => self.say(
                conn,
                |scope, from| Event::Me {
                    scope,
                    from,
                    text: t,
                },
                out,
            ),
            Command::Nick(name) => self.rename(conn, name, out),
            Command::Users => {
                let listing = match self.group_of(conn) {
                    Some(key) => match self.groups.get_mut(&key) {
                        Some(g) => g.listing(|e| out.stamp(e)),
                        None => self.users.listing(|e| out.stamp(e)),
                    },
                    None => self.users.listing(|e| out.stamp(e)),
                };
                out.deliver(conn, &listing);
            }
            Command::Groups => {
                let listing = self.groups.listing(|e| out.stamp(e));
                out.deliver(conn, &listing);
            }
            Command::Join(group) => self.join(conn, group, out),
            Command::Leave => {
                if self.group_of(conn).is_some() {
                    self.leave_group(conn, out);
                } else {
                    out.error(conn, ErrorCode::NotInGroup, "you are not in a group");
                }
            }
            Command::Msg { to, text } => self.direct(conn, to, text, out),
            Command::Help => {
                for line in &self.help {
                    out.deliver(conn, line);
                }
            }
            Command::Ping(t) => self.pong(conn, t, out),
            Command::Pong(_) => {}
            Command::Echo(on) => self.set_echo(conn, on),
            Command::Quit(reason) => self.close(conn, CloseReason::Quit, reason, true, out),
            Command::SayIn { scope, text } => self.say_in(
                conn,
                scope,
                |scope, from| Event::Msg { scope, from, text },
                out,
            ),
            Command::MeIn { scope, text } => self.say_in(
                conn,
                scope,
                |scope, from| Event::Me { scope, from, text },
                out,
            ),
            Command::Whois(name) => self.whois(now, conn, name, out),
            Command::Count => {
                let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
                let event = Event::Count {
                    users: count(self.users.len()),
                    groups: count(self.groups.len()),
                    connections: count(self.conns.len()),
                };
                out.event(conn, event);
            }
        }
    }

    fn group_of(&self, conn: ConnId) -> Option<NameKey> {
        self.conns.get(&conn)?.group.clone()
    }

    /// Refuses a name that is reserved; true if it was.
    fn refuse_reserved(&self, conn: ConnId, name: &Name, out: &mut Out) -> bool {
        let reserved = self.reserved.contains(&name.key());
        if reserved {
            let msg = format!("the name {name} is reserved");
            out.error(conn, ErrorCode::NameReserved, &msg);
        }
        reserved
    }

    fn register(&mut self, conn: ConnId, name: Name, out: &mut Out) {
        if self.users.get(&name.key()).is_some() {
            let msg = format!("the name {name} is taken");
            return out.error(conn, ErrorCode::NameTaken, &msg);
        }
        if self.refuse_reserved(conn, &name, out) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.name = Some(name.clone());
        c.registered_unix_ms = out.unix_ms;
        self.users.insert(name.clone(), conn);
        out.event(conn, Event::Welcome(name.clone()));
        if !self.announces_presence() {
            return out.deliver(conn, &self.quiet_presence);
        }
        let joined = out.stamp(Event::Join {
            scope: Scope::Global,
            name,
        });
        out.deliver_all(self.users.conns(), Some(conn), &joined);
    }

    fn rename(&mut self, conn: ConnId, new: Name, out: &mut Out) {
        let Some(old) = self.name_of(conn).cloned() else {
            return;
        };
        if new == old {
            return out.event(conn, Event::Welcome(new));
        }
        if matches!(self.users.get(&new.key()), Some((_, owner)) if *owner != conn) {
            let msg = format!("the name {new} is taken");
            return out.error(conn, ErrorCode::NameTaken, &msg);
        }
        if self.refuse_reserved(conn, &new, out) {
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.name = Some(new.clone());
        if let Some(group) = &c.group {
            self.groups.rename(group, &old.key(), &new);
        }
        self.users.remove(&old.key());
        self.users.insert(new.clone(), conn);
        out.event(conn, Event::Welcome(new.clone()));
        let nick = out.stamp(Event::Nick { old, new });
        out.deliver_all(self.users.conns(), Some(conn), &nick);
    }

    fn set_echo(&mut self, conn: ConnId, on: bool) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.echo = on;
        }
    }

    /// Who of a scope does not get a line `conn` says there: `conn` itself,
    /// unless it asked for its own lines with `/echo on`.
    fn not_echoed(&self, conn: ConnId) -> Option<ConnId> {
        match self.conns.get(&conn) {
            Some(c) if c.echo => None,
            _ => Some(conn),
        }
    }

    /// `MSG`/`ME` to the sender's scope, not echoed (unless asked).
    fn say(&mut self, conn: ConnId, event: impl FnOnce(Scope, Name) -> Event, out: &mut Out) {
        let except = self.not_echoed(conn);
        let Some(Conn {
            name: Some(from),
            group,
            ..
        }) = self.conns.get(&conn)
        else {
            return;
        };
        match group.as_ref().and_then(|key| self.groups.get(key)) {
            Some(g) => {
                let bytes = out.stamp(event(Scope::Group(g.name.clone()), from.clone()));
                out.deliver_all(g.conns(), except, &bytes);
            }
            None => {
                let bytes = out.stamp(event(Scope::Global, from.clone()));
                out.deliver_all(self.users.conns(), except, &bytes);
            }
        }
    }

    /// `MSG`/`ME` to a named scope: global, or the sender's own group
    /// (compared ignoring case; sent with the group's own spelling).
    fn say_in(
        &mut self,
        conn: ConnId,
        scope: Scope,
        event: impl FnOnce(Scope, Name) -> Event,
        out: &mut Out,
    ) {
        let Scope::Group(wanted) = &scope else {
            let Some(from) = self.name_of(conn).cloned() else {
                return;
            };
            let bytes = out.stamp(event(Scope::Global, from));
            return out.deliver_all(self.users.conns(), self.not_echoed(conn), &bytes);
        };
        if self.group_of(conn) != Some(wanted.key()) {
            let msg = format!("you are not in {wanted}");
            return out.error(conn, ErrorCode::NotInGroup, &msg);
        }
        self.say(conn, event, out);
    }

    /// `WHOIS <name> <scope> <idle> <signon>`, or `ERR no-such-user`.
    fn whois(&mut self, now: Instant, conn: ConnId, name: Name, out: &mut Out) {
        let Some((name, target)) = self.users.get(&name.key()).cloned() else {
            let msg = format!("no user is named {name}");
            return out.error(conn, ErrorCode::NoSuchUser, &msg);
        };
        let Some(c) = self.conns.get(&target) else {
            return;
        };
        let scope = match c.group.as_ref().and_then(|key| self.groups.get(key)) {
            Some(g) => Scope::Group(g.name.clone()),
            None => Scope::Global,
        };
        let idle = now.saturating_duration_since(c.last_heard).as_secs();
        let event = Event::Whois {
            name,
            scope,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            signon: c.registered_unix_ms / 1000,
        };
        out.event(conn, event);
    }

    fn direct(&mut self, conn: ConnId, to: Name, text: Text, out: &mut Out) {
        let Some(from) = self.name_of(conn).cloned() else {
            return;
        };
        let Some((to, to_conn)) = self.users.get(&to.key()).cloned() else {
            let msg = format!("no user is named {to}");
            return out.error(conn, ErrorCode::NoSuchUser, &msg);
        };
        let bytes = out.stamp(Event::Dm { from, to, text });
        out.deliver(to_conn, &bytes);
        if to_conn != conn {
            out.deliver(conn, &bytes);
        }
    }

    fn join(&mut self, conn: ConnId, group: GroupName, out: &mut Out) {
        let key = group.key();
        if self.group_of(conn).as_ref() == Some(&key) {
            // The group's own spelling, which may differ in case from the request.
            let spelled = self.groups.get(&key).map_or(&group, |g| &g.name);
            let msg = format!("you are in {spelled} already");
            return out.error(conn, ErrorCode::AlreadyInGroup, &msg);
        }
        if self.group_of(conn).is_some() {
            self.leave_group(conn, out);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(name) = c.name.clone() else { return };
        c.group = Some(key);
        let g = self.groups.join(&group, &name, conn);
        let bytes = out.stamp(Event::Join {
            scope: Scope::Group(g.name.clone()),
            name,
        });
        out.deliver_all(g.conns(), None, &bytes);
    }

    /// `PART <group> <name>` to the group, the leaver included; the last one out
    /// removes the group.
    fn leave_group(&mut self, conn: ConnId, out: &mut Out) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let (Some(key), Some(name)) = (c.group.take(), c.name.clone()) else {
            return;
        };
        if let Some(g) = self.groups.get(&key) {
            let bytes = out.stamp(Event::Part {
                scope: Scope::Group(g.name.clone()),
                name: name.clone(),
                reason: None,
            });
            out.deliver_all(g.conns(), None, &bytes);
        }
        self.groups.leave(&key, &name.key());
    }

    fn pong(&mut self, conn: ConnId, token: Option<Token>, out: &mut Out) {
        let token = token.unwrap_or_else(|| self.config.server_name.clone());
        out.event(conn, Event::Pong(token));
    }

    /// Ends a connection: optionally `BYE` and [`Effect::Close`], then forgets it
    /// and sends everyone else `PART * <name> <reason>` (above the presence
    /// limit, only the members of its group).
    fn close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        said: Option<Text>,
        bye: bool,
        out: &mut Out,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if bye {
            out.event(conn, Event::Bye(reason.clone()));
            out.close(conn, reason.clone());
        }
        let Some(name) = c.name else { return };
        let announce = self.announces_presence();
        let reason = said.unwrap_or_else(|| text(reason.as_str()));
        let part = out.stamp(Event::Part {
            scope: Scope::Global,
            name: name.clone(),
            reason: Some(reason),
        });
        if let Some(group) = &c.group {
            self.groups.leave(group, &name.key());
            if !announce {
                if let Some(g) = self.groups.get(group) {
                    out.deliver_all(g.conns(), None, &part);
                }
            }
        }
        self.users.remove(&name.key());
        if announce {
            out.deliver_all(self.users.conns(), None, &part);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Out) {
        let cfg = &self.config;
        let mut expired = Vec::new();
        let mut to_ping = Vec::new();
        for (&id, c) in &self.conns {
            if c.name.is_none() {
                if now.saturating_duration_since(c.connected_at) >= cfg.register_timeout {
                    expired.push((id, CloseReason::RegisterTimeout));
                }
                continue;
            }
            let silent = now.saturating_duration_since(c.last_heard);
            if silent >= cfg.idle_timeout {
                expired.push((id, CloseReason::PingTimeout));
            } else if silent >= cfg.ping_after && !c.pinged {
                to_ping.push(id);
            }
        }
        // Sorted so the effects do not depend on hash order.
        to_ping.sort_unstable();
        expired.sort_unstable_by_key(|(id, _)| *id);
        for id in to_ping {
            self.pings_sent += 1;
            let token = Token::try_from(self.pings_sent.to_string().as_str())
                .expect("decimal numbers are tokens");
            if let Some(c) = self.conns.get_mut(&id) {
                c.pinged = true;
            }
            out.event(id, Event::Ping(token));
        }
        for (id, reason) in expired {
            self.close(id, reason, None, true, out);
        }
    }

    fn shutdown(&mut self, out: &mut Out) {
        self.shut_down = true;
        let bye = out.stamp(Event::Bye(CloseReason::ServerShutdown));
        let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for conn in ids {
            out.deliver(conn, &bye);
            out.close(conn, CloseReason::ServerShutdown);
        }
        self.conns.clear();
        self.users = Users::default();
        self.groups = Groups::default();
    }

    /// Checks the state's invariants; returns the first one broken. For tests
    /// and fuzzing: every user is one live connection; every group member is a
    /// registered user whose group is that group; no group is empty.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut registered = 0;
        for (&id, c) in &self.conns {
            let Some(name) = &c.name else {
                if c.group.is_some() {
                    return Err(format!("{id:?} is in a group without a name"));
                }
                continue;
            };
            registered += 1;
            match self.users.get(&name.key()) {
                Some((n, owner)) if *owner == id && n == name => {}
                _ => return Err(format!("{id:?} ({name}) is not registered as itself")),
            }
            if let Some(key) = &c.group {
                let member = self
                    .groups
                    .members(key)
                    .is_some_and(|mut m| m.any(|(k, owner)| owner == id && *k == name.key()));
                if !member {
                    return Err(format!(
                        "{id:?} thinks it is in {key:?} but is not a member"
                    ));
                }
            }
        }
        if registered != self.users.len() {
            return Err(format!(
                "{} users but {registered} registered connections",
                self.users.len()
            ));
        }
        let mut members = 0;
        for g in self.groups.iter() {
            if g.len() == 0 {
                return Err(format!("group {} is empty", g.name));
            }
            for id in g.conns() {
                let in_it =
                    self.conns.get(&id).and_then(|c| c.group.as_ref()) == Some(&g.name.key());
                if !in_it {
                    return Err(format!("{id:?} is listed in {} but not in it", g.name));
                }
            }
            members += g.len();
        }
        let grouped = self.conns.values().filter(|c| c.group.is_some()).count();
        if members != grouped {
            return Err(format!(
                "{members} group members but {grouped} grouped connections"
            ));
        }
        Ok(())
    }
}
