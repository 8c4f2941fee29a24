//! The server's state machine: users, groups and scopes, as pure functions of
//! inputs, with effects returned as data.
//!
//! Accounts, history and offline messages are data too: what must be stored
//! is an [`Effect::Store`], what must be looked up or hashed an
//! [`Effect::Request`] answered by an [`Input::Answer`]. [`Server`] lists the
//! driver's duties; the [guide](crate::guide#accounts-and-history) spells out
//! which effect to answer with which input, and in what order.

mod accounts;
mod groups;
mod history;
mod outgoing;
mod requests;
mod users;

pub use accounts::AccountsConfig;
pub use history::HistoryConfig;
pub use outgoing::{Outgoing, Time};
pub use requests::{Answer, PeerKey, Request, RequestId, StoreOp};

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
    parse_line, AccountState, CloseReason, Command, ErrorCode, Event, FrameError, GroupName, Name,
    NameKey, Password, Past, Refusal, Scope, Text, Token, COMMAND_HELP,
};
use accounts::{Accounts, FailKey, Failures, Registrations};
use groups::Groups;
use history::{scope_key, Rings, ScopeKey};
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
    /// `operator`, `moderator`, `chatd`, `nickserv`.
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
    /// Accounts (`/register`, `/login`, `/passwd`, `/unregister`), protected
    /// names and offline messages. `None` (the default): those commands are
    /// answered `ERR unavailable` and no [`Request`] or [`StoreOp`] about
    /// accounts is returned, so a driver without a store works unchanged.
    pub accounts: Option<AccountsConfig>,
    /// History: every `MSG` and `ME` of a scope is a [`StoreOp::Line`], the
    /// latest are replayed on `/join` and on registration, and `/history`
    /// pages back. `None` (the default): `/history` is answered `ERR
    /// unavailable` and nothing is replayed or stored. Off by default, like
    /// accounts, because replay changes what a `/join` sends: a driver turns
    /// it on when it has the store that makes it useful across restarts.
    pub history: Option<HistoryConfig>,
    /// Lines a connection may send while one of its account or history
    /// commands waits for the driver's answer (or for a failed login's
    /// delay): they are handled in order afterwards. A line beyond this is
    /// refused with `ERR busy`. Default 32: a client that logs in and
    /// pipelines its first commands fits; a driver that stops reading a
    /// connection while [`Server::is_waiting`] never gets there.
    pub max_queued_lines: usize,
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
                // The account service IRC users know: nobody may pass for it.
                "nickserv",
            ]
            .into_iter()
            .map(|n| Name::try_from(n).expect("valid name literal"))
            .collect(),
            presence_limit: 1000,
            register_timeout: Duration::from_secs(30),
            ping_after: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_tick_gap: Duration::from_secs(3),
            accounts: None,
            history: None,
            max_queued_lines: 32,
        }
    }
}

/// What happened, as told to [`Server::handle`] by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A connection was accepted. The server greets it with `HELLO`.
    Connected(ConnId),
    /// A connection was accepted from `peer`: as [`Input::Connected`], and
    /// failed logins from the same peer slow each other down, and its
    /// `/register`s count against the peer's limit
    /// ([`AccountsConfig::max_registrations`]).
    ConnectedFrom(ConnId, PeerKey),
    /// The driver's answer to the [`Effect::Request`] with this id. Answers
    /// that come late (the connection gone, or its id reused), twice, or
    /// with an unknown id are harmless: what they mean for the account is
    /// kept (an account registered stays registered), the rest ignored.
    Answer(RequestId, Answer),
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
///
/// Not `non_exhaustive` on purpose: a driver must carry out every effect, so
/// a new kind should fail its build rather than be ignored.
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
    /// Write this to the store, after every earlier [`Effect::Store`] (only
    /// with [`ServerConfig::history`] or [`ServerConfig::accounts`]).
    Store(StoreOp),
    /// Find out or do `request` off the lock (hashing, store reads), then
    /// pass [`Input::Answer`] with `id` (only with
    /// [`ServerConfig::accounts`] or [`ServerConfig::history`]).
    Request {
        /// The id to answer with.
        id: RequestId,
        /// What to do.
        request: Request,
    },
}

/// Why a connection's lines wait.
#[derive(Debug)]
enum Busy {
    /// For the answer to this request.
    Asked(RequestId),
    /// Until this time (on the stall-free clock), then this.
    Until(Instant, Later),
}

#[derive(Debug)]
enum Later {
    /// Send a request (a login held back by its peer's failures).
    Ask(Asked, Request),
    /// Refuse (a failure answer held back to slow guessing down).
    Refuse(ErrorCode, String),
}

/// A line that waits while its connection is busy.
#[derive(Debug)]
enum Queued {
    Line(Command),
    Refused(Refusal),
}

/// What a request was for, kept until its answer.
#[derive(Debug)]
enum Asked {
    Register(Name),
    Login(Name),
    Passwd(Name),
    Unregister(Name),
    History {
        scope: Scope,
        before: Option<u64>,
        limit: usize,
    },
}

#[derive(Debug)]
struct Outstanding {
    conn: ConnId,
    peer: Option<PeerKey>,
    asked: Asked,
    /// For a login: `DM`s to the account stored while it was checked, which
    /// the store's answer may not hold; delivered with it if it succeeds.
    late_dms: Vec<Past>,
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
    /// Where it comes from, if the driver said.
    peer: Option<PeerKey>,
    /// The account it is logged in to (its name is the account's).
    account: Option<Name>,
    /// Set while its lines wait.
    busy: Option<Busy>,
    /// Lines that came while busy, oldest first.
    queue: VecDeque<Queued>,
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
/// With [`ServerConfig::accounts`] or [`ServerConfig::history`] on, two more
/// effects appear, and the driver must carry them out too (the
/// [guide](crate::guide#accounts-and-history) says how, step by step):
/// - [`Effect::Store`]: hand the [`StoreOp`] to the store's writer, in order;
///   no answer.
/// - [`Effect::Request`]: do what the [`Request`] says off the lock (argon2,
///   store reads), then pass [`Input::Answer`] with its id: exactly one
///   answer per request, also when its connection is gone.
///
/// and at start-up it seeds the state from the store:
/// [`add_account`](Self::add_account), [`seed_history`](Self::seed_history),
/// [`set_next_id`](Self::set_next_id).
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
    accounts: Accounts,
    failures: Failures,
    registrations: Registrations,
    rings: Rings,
    requests: HashMap<RequestId, Outstanding>,
    next_request: u64,
}

/// A wait as a person reads it: whole seconds under a minute, else whole
/// minutes, rounded up so that trying again then succeeds.
fn wait_text(wait: Duration) -> String {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if secs < 60 {
        format!("{} s", secs.max(1))
    } else {
        format!("{} min", secs.div_ceil(60))
    }
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

    fn store(&mut self, op: StoreOp) {
        self.effects.push(Effect::Store(op));
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
            accounts: Accounts::default(),
            failures: Failures::default(),
            registrations: Registrations::default(),
            rings: Rings::default(),
            requests: HashMap::new(),
            next_request: 1,
        }
    }

    /// Start-up: `name` is an account (the store has it), with `stored_dms`
    /// offline messages waiting. Its name is protected from then on. Call
    /// once per account before the first input.
    pub fn add_account(&mut self, name: Name, stored_dms: usize) {
        self.accounts.insert(name, stored_dms);
    }

    /// Start-up: the latest stored lines of a scope (`MSG` and `ME`; others
    /// are skipped), oldest first, so a `/join` replays them. Of each scope
    /// only the last [`HistoryConfig::replay`] are kept; seed the scopes
    /// spoken in most recently last, since the least recent are the first
    /// forgotten past [`HistoryConfig::max_scopes`]. Ignored without
    /// [`ServerConfig::history`].
    pub fn seed_history(&mut self, lines: impl IntoIterator<Item = Past>) {
        let Some(cfg) = &self.config.history else {
            return;
        };
        for past in lines {
            self.rings.push(past, cfg);
        }
    }

    /// Start-up: message ids continue from `next` (one more than the highest
    /// id the store has), so ids keep increasing across restarts. Never
    /// lowers the next id.
    pub fn set_next_id(&mut self, next: u64) {
        self.next_id = self.next_id.max(next);
    }

    /// The id the next event will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// True while `conn`'s lines wait for an answer to one of its requests
    /// (or for a failed login's delay): a driver may stop reading it
    /// meanwhile, as it does for pacing, so its lines never overflow
    /// [`ServerConfig::max_queued_lines`].
    pub fn is_waiting(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.busy.is_some())
    }

    /// The account `conn` is logged in to, if any.
    pub fn account_of(&self, conn: ConnId) -> Option<&Name> {
        self.conns.get(&conn)?.account.as_ref()
    }

    /// Accounts known (those added at start-up, registered since, and being
    /// registered), less those unregistered.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Requests returned and not answered yet.
    pub fn outstanding_requests(&self) -> usize {
        self.requests.len()
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
            Input::Connected(conn) => self.connected(now, conn, None, &mut out),
            Input::ConnectedFrom(conn, peer) => self.connected(now, conn, Some(peer), &mut out),
            Input::Line(conn, cmd) => self.line(now, conn, Queued::Line(cmd), &mut out),
            Input::Refused(conn, refusal) => {
                if refusal.is_empty_line() {
                    let _ = self.heard(now, conn);
                } else {
                    self.line(now, conn, Queued::Refused(refusal), &mut out);
                }
            }
            Input::Answer(id, answer) => self.answer(now, id, answer, &mut out),
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

    fn connected(&mut self, now: Instant, conn: ConnId, peer: Option<PeerKey>, out: &mut Out) {
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
                peer,
                account: None,
                busy: None,
                queue: VecDeque::new(),
            },
        );
        out.deliver(conn, &self.hello);
    }

    /// A line (or refusal) from `conn`: handled now, or queued while the
    /// connection waits for an answer.
    fn line(&mut self, now: Instant, conn: ConnId, item: Queued, out: &mut Out) {
        let max = self.config.max_queued_lines;
        let Some(c) = self.heard(now, conn) else {
            return;
        };
        if c.busy.is_none() {
            return self.dispatch(now, conn, item, out);
        }
        let c = self.conns.get_mut(&conn).expect("heard returned it");
        if c.queue.len() < max {
            c.queue.push_back(item);
        } else {
            let msg = "too many lines while your last command is answered; this one was discarded";
            out.error(conn, ErrorCode::Busy, msg);
        }
    }

    fn dispatch(&mut self, now: Instant, conn: ConnId, item: Queued, out: &mut Out) {
        match item {
            Queued::Refused(r) => out.error(conn, r.code().clone(), r.message().as_str()),
            Queued::Line(cmd) => {
                if self.name_of(conn).is_some() {
                    self.registered_line(now, conn, cmd, out);
                } else {
                    self.unregistered_line(now, conn, cmd, out);
                }
            }
        }
    }

    /// Handles the lines that waited while `conn` was busy, until it is busy
    /// again or none is left.
    fn drain(&mut self, now: Instant, conn: ConnId, out: &mut Out) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.busy.is_some() {
                return;
            }
            let Some(item) = c.queue.pop_front() else {
                return;
            };
            self.dispatch(now, conn, item, out);
        }
    }

    fn unregistered_line(&mut self, now: Instant, conn: ConnId, cmd: Command, out: &mut Out) {
        match cmd {
            Command::Login { name, password } => self.login(now, conn, name, password, out),
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
            Command::Register(password) => self.register_account(now, conn, password, out),
            Command::Login { name, password } => self.login(now, conn, name, password, out),
            Command::Passwd { old, new } => {
                self.with_account(conn, out, |account| Request::ChangePassword {
                    account,
                    old,
                    new,
                });
            }
            Command::Unregister(password) => {
                self.with_account(conn, out, |account| Request::Unregister {
                    account,
                    password,
                });
            }
            Command::History { count, before } => self.history(conn, count, before, out),
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

    /// The accounts settings, or `ERR unavailable` to `conn`.
    fn accounts_on(&self, conn: ConnId, out: &mut Out) -> Option<&AccountsConfig> {
        let cfg = self.config.accounts.as_ref();
        if cfg.is_none() {
            out.error(
                conn,
                ErrorCode::Unavailable,
                "this server keeps no accounts",
            );
        }
        cfg
    }

    /// Returns `request` to the driver; `conn` waits for its answer.
    fn ask(&mut self, conn: ConnId, asked: Asked, request: Request, out: &mut Out) {
        let id = RequestId::new(self.next_request);
        self.next_request += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.busy = Some(Busy::Asked(id));
        let peer = c.peer;
        let late_dms = Vec::new();
        self.requests.insert(
            id,
            Outstanding {
                conn,
                peer,
                asked,
                late_dms,
            },
        );
        out.effects.push(Effect::Request { id, request });
    }

    /// `/register <password>`: the connection's name becomes an account.
    fn register_account(&mut self, now: Instant, conn: ConnId, password: Password, out: &mut Out) {
        if self.accounts_on(conn, out).is_none() {
            return;
        }
        if let Some(account) = self.account_of(conn) {
            let msg = format!("you are logged in as {account} already");
            return out.error(conn, ErrorCode::LoggedIn, &msg);
        }
        let Some(name) = self.name_of(conn).cloned() else {
            return;
        };
        if self.refuse_account_name(conn, &name, out) {
            return;
        }
        // Counted last, so that only a registration that would cost a hash
        // counts. Refused rather than held, as a failed login is: the wait
        // can be minutes, and the connection's other lines would wait too.
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        let limit = peer.zip(self.config.accounts.as_ref());
        if let Some(Err(open)) = limit.map(|(p, cfg)| self.registrations.admit(p, now, cfg)) {
            let msg = format!(
                "too many registrations from your address; try again in {}",
                wait_text(open.saturating_duration_since(now))
            );
            return out.error(conn, ErrorCode::RateLimited, &msg);
        }
        // Protected at once: were the connection to leave before the answer,
        // nobody may take the name the store may be giving an account.
        self.accounts.insert(name.clone(), 0);
        let request = Request::Register {
            account: name.clone(),
            password,
        };
        self.ask(conn, Asked::Register(name), request, out);
    }

    /// `/login <name> <password>`, before or after registration.
    fn login(&mut self, now: Instant, conn: ConnId, name: Name, password: Password, out: &mut Out) {
        let Some(cfg) = self.accounts_on(conn, out) else {
            return;
        };
        if let Some(account) = self.account_of(conn) {
            let msg = format!("you are logged in as {account} already");
            return out.error(conn, ErrorCode::LoggedIn, &msg);
        }
        let Some(account) = self.accounts.get(&name.key()).map(|a| a.name.clone()) else {
            let msg = format!("no account is named {name}");
            return out.error(conn, ErrorCode::NoSuchAccount, &msg);
        };
        let request = Request::Login {
            account: account.clone(),
            password,
        };
        let peer = self.conns.get(&conn).and_then(|c| c.peer);
        if let Some(open) = peer.and_then(|p| self.failures.gate(p, now, cfg)) {
            // This peer failed lately: its next try waits, so guesses from
            // one address cannot go faster than the failures' delay by
            // opening more connections.
            if let Some(c) = self.conns.get_mut(&conn) {
                c.busy = Some(Busy::Until(
                    open,
                    Later::Ask(Asked::Login(account), request),
                ));
            }
            return;
        }
        self.ask(conn, Asked::Login(account), request, out);
    }

    /// `/passwd` and `/unregister`: a request about the account `conn` is
    /// logged in to.
    fn with_account(&mut self, conn: ConnId, out: &mut Out, request: impl FnOnce(Name) -> Request) {
        if self.accounts_on(conn, out).is_none() {
            return;
        }
        let Some(account) = self.account_of(conn).cloned() else {
            return out.error(
                conn,
                ErrorCode::NotLoggedIn,
                "log in first: /login <name> <password>",
            );
        };
        let request = request(account.clone());
        let asked = match request {
            Request::Unregister { .. } => Asked::Unregister(account),
            _ => Asked::Passwd(account),
        };
        self.ask(conn, asked, request, out);
    }

    /// `/history [count] [before-id]` in the current scope: from memory when
    /// the ring holds the whole answer, else a [`Request::History`].
    fn history(&mut self, conn: ConnId, count: Option<u32>, before: Option<u64>, out: &mut Out) {
        let Some(cfg) = &self.config.history else {
            return out.error(conn, ErrorCode::Unavailable, "this server keeps no history");
        };
        let limit = count.unwrap_or(cfg.page).min(cfg.max_page);
        let scope = match self.group_of(conn).and_then(|key| self.groups.get(&key)) {
            Some(g) => Scope::Group(g.name.clone()),
            None => Scope::Global,
        };
        let key = scope_key(&scope);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if let Some(lines) = self.rings.page(&key, before, limit) {
            for line in &lines {
                out.deliver(conn, line);
            }
            let count = u32::try_from(lines.len()).unwrap_or(u32::MAX);
            return out.event(conn, Event::Replayed { scope, count });
        }
        let request = Request::History {
            scope: scope.clone(),
            before,
            limit,
        };
        let asked = Asked::History {
            scope,
            before,
            limit,
        };
        self.ask(conn, asked, request, out);
    }

    /// A `/msg` to a name nobody has: stored if it is an offline account's.
    fn direct_offline(&mut self, conn: ConnId, from: Name, to: Name, text: Text, out: &mut Out) {
        let limit = self.config.accounts.as_ref().map_or(0, |a| a.offline_dms);
        let Some(account) = self.accounts.get_mut(&to.key()).filter(|_| limit > 0) else {
            let msg = format!("no user is named {to}");
            return out.error(conn, ErrorCode::NoSuchUser, &msg);
        };
        if account.stored_dms >= limit {
            let msg = format!(
                "{} is offline with {limit} messages waiting; yours was not stored",
                account.name
            );
            return out.error(conn, ErrorCode::MailboxFull, &msg);
        }
        account.stored_dms += 1;
        let to = account.name.clone();
        let dm = out.stamp(Event::Dm {
            from,
            to: to.clone(),
            text,
        });
        out.store(StoreOp::OfflineDm {
            account: to.clone(),
            event: dm.clone(),
        });
        // A login to it may be checked right now, its store read done: it
        // gets this one too (logged_in drops what comes twice).
        let key = to.key();
        for o in self.requests.values_mut() {
            if matches!(&o.asked, Asked::Login(a) if a.key() == key) {
                if let Ok(past) = Past::new(dm.id(), dm.unix_ms(), dm.event().clone()) {
                    o.late_dms.push(past);
                }
            }
        }
        out.deliver(conn, &dm);
        let msg = format!("{to} is offline: your message is stored for their next login");
        out.event(conn, Event::Info(Text::lossy(&msg)));
    }

    /// The driver answered request `id`.
    fn answer(&mut self, now: Instant, id: RequestId, answer: Answer, out: &mut Out) {
        let Some(Outstanding {
            conn,
            peer,
            asked,
            late_dms,
        }) = self.requests.remove(&id)
        else {
            return; // Unknown, or answered already.
        };
        let waiting = match self.conns.get_mut(&conn) {
            Some(c) if matches!(c.busy, Some(Busy::Asked(asked_id)) if asked_id == id) => {
                c.busy = None;
                true
            }
            _ => false,
        };
        match asked {
            Asked::Register(name) => self.registered(waiting.then_some(conn), name, answer, out),
            Asked::Login(account) => {
                if let Answer::LoggedIn { mut offline } = answer {
                    if let Some(p) = peer {
                        self.failures.forget(&FailKey::Peer(p));
                    }
                    if waiting {
                        offline.extend(late_dms);
                        self.logged_in(conn, account, offline, out);
                    }
                } else {
                    self.failed(now, waiting.then_some(conn), peer, &account, &answer, out);
                }
            }
            Asked::Passwd(account) | Asked::Unregister(account)
                if !matches!(answer, Answer::Done) =>
            {
                self.failed(now, waiting.then_some(conn), peer, &account, &answer, out);
            }
            Asked::Passwd(account) => {
                if waiting {
                    let state = AccountState::PasswordChanged;
                    out.event(
                        conn,
                        Event::Account {
                            name: account,
                            state,
                        },
                    );
                }
            }
            Asked::Unregister(account) => {
                let key = account.key();
                self.accounts.remove(&key);
                // Whoever is logged in to it now: the asker, or (had it been
                // replaced meanwhile) the session that replaced it.
                let holder = self.users.get(&key).map(|(_, c)| *c);
                let logged_in = holder
                    .and_then(|h| self.conns.get_mut(&h))
                    .filter(|c| c.account.as_ref().is_some_and(|a| a.key() == key));
                if let (Some(c), Some(holder)) = (logged_in, holder) {
                    c.account = None;
                    let state = AccountState::Unregistered;
                    out.event(
                        holder,
                        Event::Account {
                            name: account,
                            state,
                        },
                    );
                }
            }
            Asked::History {
                scope,
                before,
                limit,
            } => {
                if waiting {
                    self.history_answer(conn, scope, before, limit, answer, out);
                }
            }
        }
        if waiting {
            self.drain(now, conn, out);
        }
    }

    /// The answer to `/register`; `conn` if it still waits for it.
    fn registered(&mut self, conn: Option<ConnId>, name: Name, answer: Answer, out: &mut Out) {
        if answer == Answer::Done {
            if let Some(c) = conn.and_then(|c| self.conns.get_mut(&c)) {
                c.account = Some(name.clone());
            }
            if let Some(conn) = conn {
                let state = AccountState::Registered;
                out.event(conn, Event::Account { name, state });
            }
            return;
        }
        // The name is free again, unless someone logged in to it meanwhile
        // (the store had it after all).
        let key = name.key();
        let logged_in = self.users.get(&key).is_some_and(|(_, c)| {
            self.conns
                .get(c)
                .is_some_and(|c| c.account.as_ref().is_some_and(|a| a.key() == key))
        });
        if !logged_in {
            self.accounts.remove(&key);
        }
        let Some(conn) = conn else { return };
        match answer {
            Answer::NameTaken => {
                let msg =
                    format!("the name {name} belongs to an account: /login {name} <password>");
                out.error(conn, ErrorCode::NameReserved, &msg);
            }
            _ => out.error(
                conn,
                ErrorCode::Unavailable,
                "could not register now; try again later",
            ),
        }
    }

    /// A login, `/passwd` or `/unregister` that did not succeed: a wrong
    /// password is counted against the account and the peer, and its answer
    /// is held back by the delay they earned (a success never is, so an
    /// attacker cannot lock the owner out).
    fn failed(
        &mut self,
        now: Instant,
        conn: Option<ConnId>,
        peer: Option<PeerKey>,
        account: &Name,
        answer: &Answer,
        out: &mut Out,
    ) {
        let (code, msg) = match answer {
            Answer::WrongPassword => (
                ErrorCode::WrongPassword,
                format!("wrong password for {account}"),
            ),
            Answer::NoSuchAccount => (
                ErrorCode::NoSuchAccount,
                format!("no account is named {account}"),
            ),
            _ => (
                ErrorCode::Unavailable,
                "accounts are unavailable now; try again later".to_owned(),
            ),
        };
        let mut delay = Duration::ZERO;
        if let (ErrorCode::WrongPassword | ErrorCode::NoSuchAccount, Some(cfg)) =
            (&code, &self.config.accounts)
        {
            let mut keys = vec![FailKey::Account(account.key())];
            keys.extend(peer.map(FailKey::Peer));
            delay = self.failures.fail(&keys, now, cfg);
        }
        let Some(conn) = conn else { return };
        if delay.is_zero() {
            return out.error(conn, code, &msg);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.busy = Some(Busy::Until(now + delay, Later::Refuse(code, msg)));
        }
    }

    /// A successful login: whoever has the account's name is replaced, the
    /// connection takes the name, then `ACCOUNT`, then the messages stored
    /// while it was offline.
    fn logged_in(&mut self, conn: ConnId, account: Name, offline: Vec<Past>, out: &mut Out) {
        let key = account.key();
        // Unregistered while the password was checked: it is gone.
        let Some(account) = self.accounts.get(&key).map(|a| a.name.clone()) else {
            let msg = format!("no account is named {account}");
            return out.error(conn, ErrorCode::NoSuchAccount, &msg);
        };
        let holder = self.users.get(&key).map(|(_, c)| *c).filter(|c| *c != conn);
        if let Some(old) = holder {
            self.close(old, CloseReason::SessionReplaced, None, true, out);
        }
        match self.name_of(conn).cloned() {
            None => self.take_name(conn, account.clone(), out),
            Some(old) if old != account => self.change_name(conn, old, account.clone(), out),
            Some(_) => {}
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.account = Some(account.clone());
        }
        let state = AccountState::LoggedIn;
        out.event(
            conn,
            Event::Account {
                name: account.clone(),
                state,
            },
        );
        let mut offline: Vec<Past> = offline
            .into_iter()
            .filter(|p| matches!(p.event(), Event::Dm { .. }))
            .collect();
        offline.sort_by_key(Past::id);
        offline.dedup_by_key(|p| p.id());
        let done = self.accounts.get(&key).map_or(0, |a| a.delivered_through);
        offline.retain(|p| p.id() > done);
        let Some(through) = offline.last().map(Past::id) else {
            return;
        };
        let delivered = offline.len();
        for past in offline {
            let (id, unix_ms) = (past.id(), past.unix_ms());
            out.deliver(
                conn,
                &Arc::new(Outgoing::new(Event::History(past), id, unix_ms)),
            );
        }
        if let Some(a) = self.accounts.get_mut(&key) {
            a.stored_dms = a.stored_dms.saturating_sub(delivered);
            a.delivered_through = through;
        }
        out.store(StoreOp::DeleteOfflineDms { account, through });
    }

    /// The store's answer to `/history`: its lines of `scope` below
    /// `before`, the latest `limit`, oldest first, then `REPLAYED`.
    fn history_answer(
        &mut self,
        conn: ConnId,
        scope: Scope,
        before: Option<u64>,
        limit: usize,
        answer: Answer,
        out: &mut Out,
    ) {
        let Answer::History(lines) = answer else {
            return out.error(
                conn,
                ErrorCode::Unavailable,
                "history is unavailable now; try again later",
            );
        };
        let key = scope_key(&scope);
        let mut lines: Vec<Past> = lines
            .into_iter()
            .filter(|p| p.scope().map(scope_key) == Some(key.clone()))
            .filter(|p| before.is_none_or(|b| p.id() < b))
            .collect();
        lines.sort_by_key(Past::id);
        lines.dedup_by_key(|p| p.id());
        let skip = lines.len().saturating_sub(limit);
        let count = u32::try_from(lines.len() - skip).unwrap_or(u32::MAX);
        for past in lines.into_iter().skip(skip) {
            let (id, unix_ms) = (past.id(), past.unix_ms());
            out.deliver(
                conn,
                &Arc::new(Outgoing::new(Event::History(past), id, unix_ms)),
            );
        }
        out.event(conn, Event::Replayed { scope, count });
    }

    /// Connections whose wait ends by `now`: a held-back login goes to the
    /// driver, a held-back failure is answered, then their queued lines run.
    fn timers(&mut self, now: Instant, out: &mut Out) {
        let mut due: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.busy, Some(Busy::Until(at, _)) if at <= now))
            .map(|(&id, _)| id)
            .collect();
        due.sort_unstable();
        for conn in due {
            let Some(Busy::Until(_, later)) = self.conns.get_mut(&conn).and_then(|c| c.busy.take())
            else {
                continue;
            };
            match later {
                Later::Ask(asked, request) => self.ask(conn, asked, request, out),
                Later::Refuse(code, msg) => out.error(conn, code, &msg),
            }
            self.drain(now, conn, out);
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
        if self.refuse_reserved(conn, &name, out) || self.refuse_account_name(conn, &name, out) {
            return;
        }
        self.take_name(conn, name, out);
    }

    /// Refuses a name that is an account's (the caller is not logged in to
    /// it); true if it was.
    fn refuse_account_name(&self, conn: ConnId, name: &Name, out: &mut Out) -> bool {
        let Some(account) = self.accounts.get(&name.key()) else {
            return false;
        };
        let msg = format!(
            "the name {} belongs to an account: /login {} <password>",
            account.name, account.name
        );
        out.error(conn, ErrorCode::NameReserved, &msg);
        true
    }

    /// Registers `conn` as `name`, which is free: `WELCOME`, the arrival
    /// told to the others, then the global scope's history.
    fn take_name(&mut self, conn: ConnId, name: Name, out: &mut Out) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.name = Some(name.clone());
        c.registered_unix_ms = out.unix_ms;
        self.users.insert(name.clone(), conn);
        out.event(conn, Event::Welcome(name.clone()));
        if self.announces_presence() {
            let joined = out.stamp(Event::Join {
                scope: Scope::Global,
                name,
            });
            out.deliver_all(self.users.conns(), Some(conn), &joined);
        } else {
            out.deliver(conn, &self.quiet_presence);
        }
        self.replay(conn, &None, Scope::Global, out);
    }

    /// The latest lines of a scope kept in memory, as `HISTORY`, then
    /// `REPLAYED` (only with history on).
    fn replay(&self, conn: ConnId, key: &ScopeKey, scope: Scope, out: &mut Out) {
        if self.config.history.is_none() {
            return;
        }
        let mut count = 0u32;
        for line in self.rings.lines(key) {
            out.deliver(conn, line);
            count += 1;
        }
        out.event(conn, Event::Replayed { scope, count });
    }

    /// Keeps a `MSG` or `ME` just said: in its scope's ring, and as a
    /// [`StoreOp::Line`] (only with history on).
    fn record(&mut self, said: &Arc<Outgoing>, out: &mut Out) {
        let Some(cfg) = &self.config.history else {
            return;
        };
        if let Ok(past) = Past::new(said.id(), said.unix_ms(), said.event().clone()) {
            self.rings.push(past, cfg);
            out.store(StoreOp::Line(said.clone()));
        }
    }

    fn rename(&mut self, conn: ConnId, new: Name, out: &mut Out) {
        let Some(old) = self.name_of(conn).cloned() else {
            return;
        };
        if new == old {
            return out.event(conn, Event::Welcome(new));
        }
        if let Some(account) = self.account_of(conn) {
            let msg = format!("you are logged in as {account}: your name is your account's");
            return out.error(conn, ErrorCode::LoggedIn, &msg);
        }
        if matches!(self.users.get(&new.key()), Some((_, owner)) if *owner != conn) {
            let msg = format!("the name {new} is taken");
            return out.error(conn, ErrorCode::NameTaken, &msg);
        }
        if self.refuse_reserved(conn, &new, out) || self.refuse_account_name(conn, &new, out) {
            return;
        }
        self.change_name(conn, old, new, out);
    }

    /// Renames `conn` from `old` to `new`, which is free.
    fn change_name(&mut self, conn: ConnId, old: Name, new: Name, out: &mut Out) {
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
        let said = match group.as_ref().and_then(|key| self.groups.get(key)) {
            Some(g) => {
                let bytes = out.stamp(event(Scope::Group(g.name.clone()), from.clone()));
                out.deliver_all(g.conns(), except, &bytes);
                bytes
            }
            None => {
                let bytes = out.stamp(event(Scope::Global, from.clone()));
                out.deliver_all(self.users.conns(), except, &bytes);
                bytes
            }
        };
        self.record(&said, out);
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
            out.deliver_all(self.users.conns(), self.not_echoed(conn), &bytes);
            return self.record(&bytes, out);
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
            return self.direct_offline(conn, from, to, text, out);
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
        let scope = Scope::Group(g.name.clone());
        let bytes = out.stamp(Event::Join {
            scope: scope.clone(),
            name,
        });
        out.deliver_all(g.conns(), None, &bytes);
        self.replay(conn, &Some(group.key()), scope, out);
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
        self.timers(now, out);
        let cfg = &self.config;
        let mut expired = Vec::new();
        let mut to_ping = Vec::new();
        for (&id, c) in &self.conns {
            if c.name.is_none() {
                if c.busy.is_some() {
                    continue; // It waits for the server, not the other way round.
                }
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
            match &c.busy {
                None if !c.queue.is_empty() => {
                    return Err(format!("{id:?} has lines queued but waits for nothing"));
                }
                Some(Busy::Asked(r)) if self.requests.get(r).is_none_or(|o| o.conn != id) => {
                    return Err(format!(
                        "{id:?} waits for {r:?}, which is not outstanding for it"
                    ));
                }
                _ => {}
            }
            if let Some(account) = &c.account {
                if c.name.as_ref() != Some(account) || !self.accounts.contains(&account.key()) {
                    return Err(format!("{id:?} is logged in to {account} without its name"));
                }
            }
            if let Some(name) = &c.name {
                let registering = self
                    .requests
                    .values()
                    .any(|o| matches!(&o.asked, Asked::Register(n) if o.conn == id && n == name));
                if self.accounts.contains(&name.key()) && c.account.is_none() && !registering {
                    return Err(format!(
                        "{id:?} has the account name {name} without logging in"
                    ));
                }
            }
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
        if let Some(cfg) = &self.config.accounts {
            if self.registrations.len() > cfg.max_registration_peers.max(1) {
                let n = self.registrations.len();
                return Err(format!("registrations of {n} peers remembered"));
            }
        }
        if let Some(cfg) = &self.config.history {
            if self.rings.scopes() > cfg.max_scopes.max(2) {
                return Err(format!("{} scopes kept in memory", self.rings.scopes()));
            }
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
