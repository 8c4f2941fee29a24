//! One client connection: connect, register, read and classify lines with the
//! time their first byte arrived, send, and the loop that drives a
//! [`Behavior`] until a signal, EOF or a deadline.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpStream as StdStream};
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};

use chatproto::irc::{parse_message, IrcMessage};
use chatproto::{
    parse_event, CloseReason, Command, ErrorCode, Event, GroupName, LineFramer, Text, Token,
};
use futures_lite::future;
use smol::{Async, Timer};

use crate::runtime::{Counters, Ctx, Stage};
use crate::transport::{Stream, Tls, TlsSettings};

/// Bytes asked for per read. Small enough for 10,000 clients (160 MB), large
/// enough that a read takes many broadcast lines at once.
const READ_BUF: usize = 16 * 1024;
/// The longest line accepted from a server: a `/users` reply listing 10,000
/// names of 32 bytes is 330 KB.
const MAX_LINE: usize = 4 << 20;
/// Lines longer than this make the framer free its buffer once drained, so a
/// large `/users` reply does not stay allocated on every idle client.
const BIG_LINE: usize = 16 * 1024;
/// [`Conn::pump`] asks its [`Behavior`] for more output once less than this
/// is waiting to be written: enough to keep the socket busy, little enough
/// that a paced sender does not build a backlog of its own.
const LOW_WATER: usize = 16 * 1024;

/// Linux errno values for running out of file descriptors.
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

/// The channel chatd's IRC listener puts every IRC user in: the global scope.
pub(crate) const IRC_GLOBAL: &str = "&global";

/// The host chatd shows for every IRC user (`nick!nick@hidden`).
const IRC_HOST: &str = "hidden";

/// The longest IRC line body, CRLF excluded.
const IRC_MAX_BODY: usize = 510;

/// Which protocol one connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// PROTOCOL.md, on `--addr`.
    Native,
    /// IRC (chatd's `--irc-listen`), on `--irc-addr`.
    Irc,
}

/// `--dialect`: which clients speak IRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DialectMode {
    Native,
    Irc,
    /// Every other client (odd indexes) speaks IRC.
    Mix,
}

impl DialectMode {
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "native" => Ok(Self::Native),
            "irc" => Ok(Self::Irc),
            "mix" => Ok(Self::Mix),
            _ => Err(format!("--dialect {s:?}: use native, irc or mix")),
        }
    }

    /// Its name, as `--dialect` takes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Irc => "irc",
            Self::Mix => "mix",
        }
    }

    /// The dialect of client `i` of a scenario.
    pub(crate) fn for_client(self, i: usize) -> Dialect {
        match self {
            Self::Native => Dialect::Native,
            Self::Irc => Dialect::Irc,
            Self::Mix if i % 2 == 1 => Dialect::Irc,
            Self::Mix => Dialect::Native,
        }
    }
}

impl Dialect {
    /// The channel of `group`, or the global channel.
    pub(crate) fn irc_channel(group: Option<&GroupName>) -> String {
        group.map_or_else(|| IRC_GLOBAL.to_owned(), |g| format!("#{}", g.as_str()))
    }

    /// A chat line to the client's scope: `text` as is (native), or
    /// `PRIVMSG <channel> :text` (IRC, `channel` from [`Dialect::irc_channel`]).
    /// `text` must be one line of valid text.
    pub(crate) fn say(self, channel: &str, text: &str, out: &mut Vec<u8>) {
        match self {
            Self::Native => Command::Say(Text::lossy(text)).encode(out),
            Self::Irc => {
                out.extend_from_slice(b"PRIVMSG ");
                out.extend_from_slice(channel.as_bytes());
                out.extend_from_slice(b" :");
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// `/users`, or `NAMES &global`.
    pub(crate) fn users(self, out: &mut Vec<u8>) {
        match self {
            Self::Native => Command::Users.encode(out),
            Self::Irc => {
                out.extend_from_slice(b"NAMES ");
                out.extend_from_slice(IRC_GLOBAL.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// `/ping token`, or `PING token` (`token` is one word).
    pub(crate) fn ping(self, token: &str, out: &mut Vec<u8>) {
        match self {
            Self::Native => {
                out.extend_from_slice(b"/ping ");
                out.extend_from_slice(token.as_bytes());
                out.push(b'\n');
            }
            Self::Irc => {
                out.extend_from_slice(b"PING ");
                out.extend_from_slice(token.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// The answer to the server's `PING token`.
    fn pong(self, token: &Token, out: &mut Vec<u8>) {
        match self {
            Self::Native => Command::Pong(token.clone()).encode(out),
            Self::Irc => {
                out.extend_from_slice(b"PONG :");
                out.extend_from_slice(token.as_str().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// The most bytes of chat text an IRC client named `nick` may send to
/// `channel` and have delivered in one line: chatd relays it as
/// `:nick!nick@hidden PRIVMSG channel :text` within 512 bytes with CRLF, and
/// splits longer text into several lines.
pub(crate) fn irc_text_budget(nick: &str, channel: &str) -> usize {
    // ":" source " PRIVMSG " channel " :" text
    let source = 2 * nick.len() + 2 + IRC_HOST.len();
    IRC_MAX_BODY.saturating_sub(1 + source + 9 + channel.len() + 2)
}

/// A server line, classified. The hot lines (`MSG`, `USERS`, `JOIN`, `PART`)
/// are split by hand without allocating, because the tester must keep up with
/// hundreds of thousands of them per second on one core; every other line goes
/// through `chatproto::parse_event`.
#[derive(Debug)]
pub(crate) enum Incoming<'a> {
    Msg {
        scope: &'a str,
        text: &'a str,
    },
    Users,
    Join {
        scope: &'a str,
        name: &'a str,
    },
    Part {
        name: &'a str,
        reason: Option<&'a str>,
    },
    Event(Event),
    /// A valid line this tester has no use for (IRC numerics, notices).
    Other,
    /// Did not frame or parse.
    Malformed,
}

pub(crate) fn classify(line: &str) -> Incoming<'_> {
    if let Some(rest) = line.strip_prefix("MSG ") {
        let mut f = rest.splitn(3, ' ');
        if let (Some(scope), Some(_from), Some(text)) = (f.next(), f.next(), f.next()) {
            return Incoming::Msg { scope, text };
        }
    } else if line == "USERS" || line.starts_with("USERS ") {
        return Incoming::Users;
    } else if let Some(rest) = line.strip_prefix("JOIN ") {
        if let Some((scope, name)) = rest.split_once(' ') {
            return Incoming::Join { scope, name };
        }
    } else if let Some(rest) = line.strip_prefix("PART ") {
        let mut f = rest.splitn(3, ' ');
        if let (Some(_scope), Some(name)) = (f.next(), f.next()) {
            return Incoming::Part {
                name,
                reason: f.next(),
            };
        }
    }
    match parse_event(line) {
        Ok(e) => Incoming::Event(e),
        Err(_) => Incoming::Malformed,
    }
}

/// The scope of an IRC channel as the native protocol names it: `*` for the
/// global channel, `g` for `#g`; `None` for anything else (a nick).
fn irc_scope(channel: &str) -> Option<&str> {
    if channel == IRC_GLOBAL {
        Some("*")
    } else {
        channel.strip_prefix('#')
    }
}

/// An IRC line, classified as the native line it stands for, so the
/// scenarios need not know the dialect: `PRIVMSG` to a channel is `MSG`,
/// `JOIN`/`PART`/`QUIT` are `JOIN`/`PART`, the first `353` of a `NAMES`
/// reply is `USERS` (the rest of it, up to its `366`, is [`Incoming::Other`];
/// `names_open` tracks that), `PING`/`PONG` are themselves, `ERROR :Closing
/// link: (reason)` is `BYE reason`, error numerics (400-599) and chatd's
/// `NOTICE me :code: text` for a refused command are `ERR`.
pub(crate) fn classify_irc<'a>(line: &'a str, names_open: &mut bool) -> Incoming<'a> {
    let Ok(msg) = parse_message(line) else {
        return Incoming::Malformed;
    };
    let nick = msg.source().and_then(|s| s.split_once('!')).map(|(n, _)| n);
    if let Some(n) = msg.numeric() {
        return match n {
            353 if !*names_open => {
                *names_open = true;
                Incoming::Users
            }
            // A reply without names (`NAMES` of a channel one is not in).
            366 if !std::mem::replace(names_open, false) => Incoming::Users,
            n if is_error_numeric(n) => match Token::try_from(msg.command()) {
                Ok(code) => Incoming::Event(Event::Err {
                    code: ErrorCode::from_token(code),
                    text: Text::lossy(msg.params().last().copied().unwrap_or("")),
                }),
                Err(_) => Incoming::Other,
            },
            _ => Incoming::Other,
        };
    }
    let p = |i: usize| msg.param(i);
    let cmd = msg.command();
    if cmd.eq_ignore_ascii_case("PRIVMSG") {
        if let (Some(_), Some(scope), Some(text)) = (nick, p(0).and_then(irc_scope), p(1)) {
            return Incoming::Msg { scope, text };
        }
    } else if cmd.eq_ignore_ascii_case("JOIN") {
        if let (Some(name), Some(scope)) = (nick, p(0).and_then(irc_scope)) {
            return Incoming::Join { scope, name };
        }
    } else if cmd.eq_ignore_ascii_case("PART") {
        if let Some(name) = nick {
            return Incoming::Part { name, reason: p(1) };
        }
    } else if cmd.eq_ignore_ascii_case("QUIT") {
        if let Some(name) = nick {
            return Incoming::Part {
                name,
                reason: p(0).filter(|r| !r.is_empty()),
            };
        }
    } else if cmd.eq_ignore_ascii_case("PING") {
        if let Some(Ok(token)) = p(0).map(Token::try_from) {
            return Incoming::Event(Event::Ping(token));
        }
    } else if cmd.eq_ignore_ascii_case("PONG") {
        if let Some(Ok(token)) = msg.params().last().copied().map(Token::try_from) {
            return Incoming::Event(Event::Pong(token));
        }
    } else if cmd.eq_ignore_ascii_case("ERROR") {
        let text = p(0).unwrap_or("");
        // chatd: `ERROR :Closing link: (sendq-exceeded)`.
        let reason = text
            .rsplit_once('(')
            .and_then(|(_, r)| r.strip_suffix(')'))
            .unwrap_or("closed");
        if let Ok(token) = Token::try_from(reason) {
            return Incoming::Event(Event::Bye(CloseReason::from_token(token)));
        }
    } else if cmd.eq_ignore_ascii_case("NOTICE") && nick.is_none() {
        // chatd turns a refused command into `NOTICE me :code: text`.
        if let Some((code, text)) = p(1).and_then(|t| t.split_once(": ")) {
            if let Ok(token) = Token::try_from(code) {
                let code = ErrorCode::from_token(token);
                if !matches!(code, ErrorCode::Other(_)) {
                    return Incoming::Event(Event::Err {
                        code,
                        text: Text::lossy(text),
                    });
                }
            }
        }
    }
    Incoming::Other
}

/// Why a connection could not be opened and registered.
#[derive(Debug)]
pub(crate) enum OpenError {
    Io(&'static str, io::Error),
    Timeout(&'static str),
    /// The server answered the name (or `/join`) with this line.
    Refused(String),
    Closed(&'static str),
}

impl OpenError {
    pub(crate) fn is_fd_exhausted(&self) -> bool {
        matches!(self, Self::Io(_, e) if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)))
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Signalled => f.write_str("stopped"),
            Self::Deadline => f.write_str("deadline passed"),
            Self::Closed => f.write_str("closed by server"),
            Self::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(stage, e) if matches!(e.raw_os_error(), Some(EMFILE | ENFILE)) => write!(
                f,
                "{stage}: out of file descriptors ({e}); raise `ulimit -n` or use fewer clients"
            ),
            Self::Io(stage, e) => write!(f, "{stage}: {e}"),
            Self::Timeout(stage) => write!(f, "{stage}: timed out"),
            Self::Refused(line) => write!(f, "refused: {line}"),
            Self::Closed(stage) => write!(f, "{stage}: server closed the connection"),
        }
    }
}

/// How a [`Conn::drive`] ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The signal fired.
    Signalled,
    /// The deadline passed.
    Deadline,
    /// The server closed the connection (after `BYE`, if it sent one).
    Closed,
    Failed(io::Error),
}

/// What a client does while [`Conn::drive`] runs it.
pub(crate) trait Behavior {
    /// When it next wants to send, if ever.
    fn next_send(&self) -> Option<Instant> {
        None
    }
    /// Appends what it sends now to `out`.
    fn send(&mut self, _now: Instant, _out: &mut Vec<u8>) {}
    /// A line arrived; its first byte arrived at `first_byte`.
    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, out: &mut Vec<u8>);
    /// A read's lines have all been handed to [`Behavior::line`].
    fn read_done(&mut self) {}
}

/// Ignores everything (but [`Conn`] still answers `PING`).
pub(crate) struct Quiet;

impl Behavior for Quiet {
    fn line(&mut self, _: Incoming<'_>, _: Instant, _: &mut Vec<u8>) {}
}

/// Send times every `interval` from `first` until `end`, for a client that
/// times each reply: slots it missed are skipped, not sent in a burst (a burst
/// would time the tester's lag, not the server's).
#[derive(Debug)]
pub(crate) struct Schedule {
    next: Instant,
    interval: Duration,
    end: Instant,
}

impl Schedule {
    pub(crate) fn new(first: Instant, interval: Duration, end: Instant) -> Self {
        Self {
            next: first,
            interval,
            end,
        }
    }

    /// The next send time, for [`Behavior::next_send`]; `None` once over.
    pub(crate) fn next(&self) -> Option<Instant> {
        (self.next < self.end).then_some(self.next)
    }

    /// Takes the slot due at `now`: `None` if sending time is over (woken
    /// late; the coordinator may already be counting replies), else how many
    /// slots it fell behind by and skipped (an overloaded tester or a blocked
    /// write).
    pub(crate) fn take(&mut self, now: Instant) -> Option<u64> {
        if now >= self.end {
            self.next = self.end;
            return None;
        }
        self.next += self.interval;
        let mut missed = 0;
        while self.next <= now {
            self.next += self.interval;
            missed += 1;
        }
        Some(missed)
    }
}

/// Sends one line over and over from `start` until `end`: at `rate` lines/s,
/// or (`None`) as fast as the server takes them (run it with
/// [`Conn::pump`]). Hands every line it receives to `seen`.
pub(crate) struct Flood<F> {
    line: Vec<u8>,
    rate: Option<f64>,
    start: Instant,
    end: Instant,
    /// Lines queued for sending so far.
    pub(crate) sent: u64,
    pub(crate) seen: F,
}

impl<F: FnMut(Incoming<'_>, Instant)> Flood<F> {
    /// `line` is one encoded line, LF included.
    pub(crate) fn new(
        line: Vec<u8>,
        rate: Option<f64>,
        start: Instant,
        end: Instant,
        seen: F,
    ) -> Self {
        Self {
            line,
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            start,
            end,
            sent: 0,
            seen,
        }
    }

    /// Lines one top-up adds at most: about [`LOW_WATER`] bytes' worth.
    fn batch(&self) -> u64 {
        (LOW_WATER / self.line.len().max(1)) as u64 + 1
    }
}

impl<F: FnMut(Incoming<'_>, Instant)> Behavior for Flood<F> {
    fn next_send(&self) -> Option<Instant> {
        let at = match self.rate {
            None => self.start,
            Some(r) => self.start + Duration::from_secs_f64(self.sent as f64 / r),
        };
        // Past the end it is done, whatever its schedule says (a due time
        // that sends nothing would wake its driver at once, forever).
        (at < self.end && Instant::now() < self.end).then_some(at)
    }

    fn send(&mut self, now: Instant, out: &mut Vec<u8>) {
        if now >= self.end {
            return;
        }
        let n = match self.rate {
            None => self.batch(),
            Some(r) => {
                let due = (now.saturating_duration_since(self.start).as_secs_f64() * r) as u64 + 1;
                // Behind schedule (the server paced it) it catches up at
                // most one batch at a time.
                due.saturating_sub(self.sent).min(self.batch())
            }
        };
        for _ in 0..n {
            out.extend_from_slice(&self.line);
        }
        self.sent += n;
    }

    fn line(&mut self, line: Incoming<'_>, first_byte: Instant, _: &mut Vec<u8>) {
        (self.seen)(line, first_byte);
    }
}

/// When each line's first byte arrived, given when each read returned: a
/// line's first byte came with the read that brought it, or, for a line that
/// was partial before a read, with the read that brought its start.
#[derive(Debug)]
struct FirstByte {
    /// When the partial line left in the framer began.
    partial_since: Instant,
    /// When the next line out of the framer began.
    next_line: Instant,
    /// When the last read returned.
    last_read: Instant,
    /// A line came out since the last read.
    any: bool,
}

impl FirstByte {
    fn new(now: Instant) -> Self {
        Self {
            partial_since: now,
            next_line: now,
            last_read: now,
            any: false,
        }
    }

    /// A read returned at `at`; `carried` if a partial line was buffered.
    fn read(&mut self, at: Instant, carried: bool) {
        self.next_line = if carried { self.partial_since } else { at };
        self.last_read = at;
        self.any = false;
    }

    /// A line came out of the framer: when its first byte arrived.
    fn line(&mut self, at: Instant) -> Instant {
        let first = self.next_line;
        self.next_line = at;
        self.any = true;
        first
    }

    /// Every complete line came out; what is left began with the last read
    /// if a line ended in it, else where it began before.
    fn drained(&mut self) {
        self.partial_since = if self.any {
            self.last_read
        } else {
            self.next_line
        };
    }
}

/// `422 ERR_NOMOTD`: a numeric in the error range that refuses nothing.
const ERR_NOMOTD: u16 = 422;

/// True for an IRC numeric that refuses a command.
fn is_error_numeric(n: u16) -> bool {
    (400..600).contains(&n) && n != ERR_NOMOTD
}

/// An error if `m` is the server refusing: `ERROR`, or an error numeric.
fn refusal(m: &IrcMessage<'_>) -> Result<(), String> {
    if m.is_command("ERROR") || m.numeric().is_some_and(is_error_numeric) {
        let mut line = Vec::new();
        let _ = m.encode(&mut line);
        return Err(String::from_utf8_lossy(&line).trim_end().to_owned());
    }
    Ok(())
}

/// A registered connection.
pub(crate) struct Conn {
    stream: Stream,
    /// The last read filled the buffer, so more may be waiting: read again
    /// at once rather than wait for readiness first.
    more: bool,
    framer: LineFramer,
    buf: Box<[u8]>,
    /// Queued output, written by [`Conn::flush`].
    out: Vec<u8>,
    clock: FirstByte,
    big_line: bool,
    /// The reason of the `BYE` the server sent, if it did.
    pub(crate) bye: Option<String>,
    pub(crate) name: String,
    /// When the connect began (after waiting for a connect slot).
    pub(crate) started: Instant,
    /// From then to the connection being usable: TCP connect, plus the TLS
    /// handshake with `--tls`.
    pub(crate) connected_in: Duration,
    bytes_in: u64,
    lines_in: u64,
    malformed: u64,
    dialect: Dialect,
    /// IRC: a `NAMES` reply has begun (its first `353` came) and not ended.
    names_open: bool,
}

impl Conn {
    /// Connects, registers as `name` and joins `group` if given. Native: reads
    /// `HELLO`, sends `name`, waits for `WELCOME` (and its own `JOIN`). IRC
    /// (on `--irc-addr`): `CAP LS 302`, `NICK`, `USER`, `CAP END` once the
    /// capabilities are listed (none is asked for), then waits for `001` and
    /// the end of `&global`'s names (and `JOIN #group`'s). `rcvbuf` sets
    /// SO_RCVBUF before connecting.
    pub(crate) async fn open(
        ctx: &Ctx,
        counters: &Counters,
        dialect: Dialect,
        name: String,
        group: Option<&GroupName>,
        rcvbuf: Option<usize>,
    ) -> Result<Self, OpenError> {
        let deadline = ctx.bound(Instant::now() + ctx.connect_timeout);
        let addr = match dialect {
            Dialect::Native => Some(ctx.addr),
            Dialect::Irc => ctx.irc_addr,
        };
        let result = {
            let _slot = ctx.connect_slots.acquire().await;
            match crate::runtime::until(deadline, async {
                let addr = addr.ok_or_else(|| OpenError::Refused("IRC needs --irc-addr".into()))?;
                Self::connect_and_register(addr, ctx.tls.as_ref(), dialect, name, rcvbuf).await
            })
            .await
            {
                Some(r) => r,
                None => Err(OpenError::Timeout("connect and register")),
            }
        };
        let result = match (result, group) {
            (Ok(mut conn), Some(g)) => match crate::runtime::until(deadline, conn.join(g)).await {
                Some(Ok(())) => Ok(conn),
                Some(Err(e)) => Err(e),
                None => Err(OpenError::Timeout("join")),
            },
            (r, _) => r,
        };
        match &result {
            Ok(conn) => {
                Counters::add(&counters.connected, 1);
                counters.record_connect(conn.connected_in, ctx.tls.is_some());
                Counters::add(&counters.bytes_in, conn.bytes_in);
                Counters::add(&counters.bytes_out, conn.out.len() as u64);
            }
            Err(e) => {
                Counters::add(&counters.failed, 1);
                if e.is_fd_exhausted() {
                    Counters::add(&counters.fd_exhausted, 1);
                }
                counters.error(e.to_string());
            }
        }
        result.map(|mut c| {
            c.bytes_in = 0;
            c.out.clear();
            c
        })
    }

    /// A TCP connection to `addr`, with the TLS handshake done if `tls`.
    pub(crate) async fn connect(
        addr: SocketAddr,
        tls: Option<&TlsSettings>,
        rcvbuf: Option<usize>,
    ) -> io::Result<Stream> {
        let tcp = Self::connect_tcp(addr, rcvbuf).await?;
        Ok(match tls {
            None => Stream::Plain(tcp),
            Some(settings) => Stream::Tls(Box::new(Tls::handshake(tcp, settings).await?)),
        })
    }

    async fn connect_tcp(addr: SocketAddr, rcvbuf: Option<usize>) -> io::Result<Async<StdStream>> {
        let stream = match rcvbuf {
            None => Async::<StdStream>::connect(addr).await?,
            Some(size) => {
                use socket2::{Domain, Socket, Type};
                let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                socket.set_recv_buffer_size(size)?;
                socket.set_nonblocking(true)?;
                match socket.connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(115) => {} // EINPROGRESS
                    Err(e) => return Err(e),
                }
                let stream = Async::new(StdStream::from(socket))?;
                stream.writable().await?;
                if let Some(e) = stream.get_ref().take_error()? {
                    return Err(e);
                }
                stream
            }
        };
        // Small lines must not wait for Nagle.
        stream.get_ref().set_nodelay(true)?;
        Ok(stream)
    }

    async fn connect_and_register(
        addr: SocketAddr,
        tls: Option<&TlsSettings>,
        dialect: Dialect,
        name: String,
        rcvbuf: Option<usize>,
    ) -> Result<Self, OpenError> {
        let started = Instant::now();
        let stream = Self::connect(addr, tls, rcvbuf).await.map_err(|e| {
            OpenError::Io(
                if tls.is_some() {
                    "connect+tls"
                } else {
                    "connect"
                },
                e,
            )
        })?;
        let now = Instant::now();
        let conn = Self {
            stream,
            more: false,
            framer: LineFramer::new(MAX_LINE),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            out: Vec::new(),
            clock: FirstByte::new(now),
            big_line: false,
            bye: None,
            name,
            started,
            connected_in: now - started,
            bytes_in: 0,
            lines_in: 0,
            malformed: 0,
            dialect,
            names_open: false,
        };
        if dialect == Dialect::Irc {
            return conn.register_irc().await;
        }
        let mut conn = conn
            .expect(|e| matches!(e, Event::Hello { .. }), "hello")
            .await?;
        let text = Text::try_from(conn.name.as_str())
            .map_err(|e| OpenError::Refused(format!("name {:?}: {e}", conn.name)))?;
        Command::Say(text).encode(&mut conn.out);
        let name = conn.name.clone();
        conn.expect(
            |e| matches!(e, Event::Welcome(n) if n.as_str() == name),
            "register",
        )
        .await
    }

    /// The protocol this connection speaks.
    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// IRC registration, with `CAP` as IRCv3 clients do it.
    async fn register_irc(mut self) -> Result<Self, OpenError> {
        let me = self.name.clone();
        let hello = format!("CAP LS 302\r\nNICK {me}\r\nUSER {me} 0 * :{me}\r\n");
        self.out.extend_from_slice(hello.as_bytes());
        // 0: waiting for the capability list, 1: for 001, 2: for the names.
        let mut step = 0;
        self.irc_until("register", |m, out| {
            match step {
                0 if m.is_command("CAP") && m.param(1) == Some("LS") => {
                    out.extend_from_slice(b"CAP END\r\n");
                    step = 1;
                }
                1 if m.numeric() == Some(1) && m.param(0) == Some(&me) => step = 2,
                2 if m.numeric() == Some(366)
                    && m.param(0) == Some(&me)
                    && m.param(1) == Some(IRC_GLOBAL) =>
                {
                    return Ok(true)
                }
                _ => refusal(m)?,
            }
            Ok(false)
        })
        .await?;
        Ok(self)
    }

    /// Flushes queued output, then reads IRC lines and hands each to `step`
    /// until it returns true (the rest of that read is dropped) or an error
    /// (the server refused).
    async fn irc_until(
        &mut self,
        stage: &'static str,
        mut step: impl FnMut(&IrcMessage<'_>, &mut Vec<u8>) -> Result<bool, String>,
    ) -> Result<(), OpenError> {
        loop {
            self.flush().await.map_err(|e| OpenError::Io(stage, e))?;
            let Some(at) = self.read().await.map_err(|e| OpenError::Io(stage, e))? else {
                return Err(OpenError::Closed(stage));
            };
            let mut outcome = None;
            while let Some(line) = self.framer.next_line() {
                self.lines_in += 1;
                self.clock.line(at);
                let (None, Ok(line)) = (&outcome, line) else {
                    continue;
                };
                let Ok(msg) = parse_message(line) else {
                    self.malformed += 1;
                    continue;
                };
                if msg.is_command("PING") {
                    if let Some(t) = msg.param(0) {
                        self.out
                            .extend_from_slice(format!("PONG :{t}\r\n").as_bytes());
                    }
                    continue;
                }
                match step(&msg, &mut self.out) {
                    Ok(false) => {}
                    Ok(true) => outcome = Some(Ok(())),
                    Err(e) => outcome = Some(Err(OpenError::Refused(e))),
                }
            }
            self.clock.drained();
            if let Some(o) = outcome {
                return o;
            }
        }
    }

    async fn join(&mut self, group: &GroupName) -> Result<(), OpenError> {
        if self.dialect == Dialect::Irc {
            let channel = Dialect::irc_channel(Some(group));
            self.out
                .extend_from_slice(format!("JOIN {channel}\r\n").as_bytes());
            let me = self.name.clone();
            return self
                .irc_until("join", |m, _| {
                    if m.numeric() == Some(366)
                        && m.param(0) == Some(&me)
                        && m.param(1).is_some_and(|c| c.eq_ignore_ascii_case(&channel))
                    {
                        return Ok(true);
                    }
                    refusal(m)?;
                    Ok(false)
                })
                .await;
        }
        Command::Join(group.clone()).encode(&mut self.out);
        let (mut joined, mut refused) = (false, None);
        while !joined {
            self.flush().await.map_err(|e| OpenError::Io("join", e))?;
            let Some(at) = self.read().await.map_err(|e| OpenError::Io("join", e))? else {
                return Err(OpenError::Closed("join"));
            };
            let me = self.name.clone();
            self.drain(at, |line, _, _| match line {
                Incoming::Join { scope, name } if scope == group.as_str() && name == me => {
                    joined = true;
                }
                Incoming::Event(Event::Err { code, text }) => {
                    refused = Some(format!("ERR {code} {text}"));
                }
                _ => {}
            });
            if let Some(r) = refused.take() {
                return Err(OpenError::Refused(r));
            }
        }
        Ok(())
    }

    /// Flushes queued output, then reads until an event matching `want`.
    async fn expect(
        mut self,
        want: impl Fn(&Event) -> bool,
        stage: &'static str,
    ) -> Result<Self, OpenError> {
        loop {
            self.flush().await.map_err(|e| OpenError::Io(stage, e))?;
            let Some(at) = self.read().await.map_err(|e| OpenError::Io(stage, e))? else {
                return Err(OpenError::Closed(stage));
            };
            let (mut found, mut refused) = (false, None);
            self.drain(at, |line, _, _| match line {
                Incoming::Event(e) if !found && want(&e) => found = true,
                Incoming::Event(e @ (Event::Err { .. } | Event::Bye(_))) => {
                    refused = Some(format!("{e:?}"));
                }
                _ => {}
            });
            if let Some(r) = refused {
                return Err(OpenError::Refused(r));
            }
            if found {
                return Ok(self);
            }
        }
    }

    /// Reads once into the framer; `None` at EOF, else when the bytes arrived.
    ///
    /// After a short read it waits for readiness before reading: the socket
    /// was drained, so reading at once would only cost a failing `recv`.
    /// Cancel-safe: dropped while waiting, nothing is lost.
    pub(crate) async fn read(&mut self) -> io::Result<Option<Instant>> {
        self.read_up_to(READ_BUF).await
    }

    /// [`Conn::read`], taking at most `max` bytes (a client that reads slowly
    /// on purpose).
    pub(crate) async fn read_up_to(&mut self, max: usize) -> io::Result<Option<Instant>> {
        let max = max.clamp(1, READ_BUF);
        if !self.more {
            self.stream.readable().await?;
        }
        let n = loop {
            match self.try_read(max)? {
                Some(n) => break n,
                None => self.stream.readable().await?,
            }
        };
        Ok(self.took(n, max))
    }

    /// One non-blocking read of at most `max` bytes into the read buffer:
    /// `None` if nothing was waiting.
    fn try_read(&mut self, max: usize) -> io::Result<Option<usize>> {
        self.stream.try_read(&mut self.buf[..max])
    }

    /// Frames the `n` bytes a read of at most `max` returned; `None` at EOF.
    fn took(&mut self, n: usize, max: usize) -> Option<Instant> {
        self.more = n == max;
        if n == 0 {
            return None;
        }
        let at = Instant::now();
        // All complete lines were drained after the last read, so anything
        // still buffered is the start of a line that began earlier.
        self.clock.read(at, self.framer.buffered() > 0);
        self.framer.push(&self.buf[..n]);
        self.bytes_in += n as u64;
        Some(at)
    }

    /// Hands every complete line to `f` with the time its first byte arrived
    /// (the read that brought it), answering `PING` and noting `BYE` itself.
    pub(crate) fn drain(
        &mut self,
        at: Instant,
        mut f: impl FnMut(Incoming<'_>, Instant, &mut Vec<u8>),
    ) {
        while let Some(line) = self.framer.next_line() {
            self.lines_in += 1;
            let incoming = match line {
                Ok(l) => {
                    if l.len() > BIG_LINE {
                        self.big_line = true;
                    }
                    match self.dialect {
                        Dialect::Native => classify(l),
                        Dialect::Irc => classify_irc(l, &mut self.names_open),
                    }
                }
                Err(_) => Incoming::Malformed,
            };
            match &incoming {
                Incoming::Event(Event::Ping(token)) => self.dialect.pong(token, &mut self.out),
                Incoming::Event(Event::Bye(reason)) => self.bye = Some(reason.to_string()),
                Incoming::Malformed => self.malformed += 1,
                _ => {}
            }
            f(incoming, self.clock.line(at), &mut self.out);
        }
        self.clock.drained();
        if self.big_line && self.framer.buffered() == 0 {
            self.framer.shrink();
            self.big_line = false;
        }
    }

    /// Writes the queued output.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() || self.stream.pending() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Adds this connection's byte and line counts since the last call.
    pub(crate) fn report(&mut self, counters: &Counters, sent: u64) {
        Counters::add(&counters.bytes_in, std::mem::take(&mut self.bytes_in));
        Counters::add(&counters.lines_in, std::mem::take(&mut self.lines_in));
        Counters::add(&counters.malformed, std::mem::take(&mut self.malformed));
        Counters::add(&counters.bytes_out, sent);
    }

    /// Runs `b` until `start` fires; returns the run's start time, or `None`
    /// (counted as closed early) if the connection ended or `deadline` passed
    /// first.
    pub(crate) async fn await_start<B: Behavior>(
        &mut self,
        stage: &Stage,
        b: &mut B,
        deadline: Instant,
    ) -> Option<Instant> {
        let waiter = stage.start.waiter();
        let waited = self
            .drive(&stage.counters, b, pin!(waiter.recv()), deadline)
            .await;
        let at = stage.window().filter(|_| matches!(waited, End::Signalled));
        if at.is_none() {
            Counters::add(&stage.counters.closed_early, 1);
        }
        at.map(|(from, _)| from)
    }

    /// Counts this connection as closed before the run ended and keeps why
    /// (the server's `BYE` if it sent one, else how `end` came).
    pub(crate) fn ended_early(&self, counters: &Counters, end: &End, who: &str) {
        Counters::add(&counters.closed_early, 1);
        let why = self
            .bye
            .as_ref()
            .map_or_else(|| end.to_string(), |b| format!("BYE {b}"));
        counters.error(format!("{who} ended early: {why}"));
    }

    /// Runs `b` until `signal` completes, `deadline` passes, or the server
    /// closes the connection. Output is written between reads; a write that
    /// cannot finish by `deadline` ends the run.
    pub(crate) async fn drive<B: Behavior, S: Future>(
        &mut self,
        counters: &Counters,
        b: &mut B,
        mut signal: Pin<&mut S>,
        deadline: Instant,
    ) -> End {
        enum Wake {
            Read(io::Result<Option<Instant>>),
            Timer,
            Signal,
        }
        let next = |b: &B| b.next_send().map_or(deadline, |t| t.min(deadline));
        let mut armed = next(b);
        let mut timer = Timer::at(armed);
        let end = loop {
            let wake = future::or(async { Wake::Read(self.read().await) }, async {
                future::or(
                    async {
                        (&mut timer).await;
                        Wake::Timer
                    },
                    async {
                        signal.as_mut().await;
                        Wake::Signal
                    },
                )
                .await
            })
            .await;
            match wake {
                Wake::Read(Ok(Some(at))) => {
                    self.drain(at, |line, first, out| b.line(line, first, out));
                    b.read_done();
                    // A line may have changed the schedule (a reply that
                    // lets the client go on): re-arm only then, since
                    // re-arming on every read costs the hot clients.
                    let due = next(b);
                    if due != armed {
                        armed = due;
                        timer.set_at(due);
                    }
                }
                Wake::Read(Ok(None)) => break End::Closed,
                Wake::Read(Err(e)) => break End::Failed(e),
                Wake::Signal => break End::Signalled,
                Wake::Timer => {
                    let now = Instant::now();
                    if now >= deadline {
                        break End::Deadline;
                    }
                    if b.next_send().is_some_and(|t| t <= now) {
                        b.send(now, &mut self.out);
                    }
                    armed = next(b);
                    timer.set_at(armed);
                }
            }
            let sent = self.out.len() as u64;
            match crate::runtime::until(deadline, self.flush()).await {
                Some(Ok(())) => self.report(counters, sent),
                Some(Err(e)) => break End::Failed(e),
                None => break End::Deadline,
            }
        };
        self.report(counters, 0);
        end
    }

    /// Reads and discards for up to `limit`, looking for the server's `BYE`:
    /// what a client that never read finds once it does. Returns true if the
    /// server closed the connection within the limit.
    pub(crate) async fn read_to_close(&mut self, counters: &Counters, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let closed = loop {
            // A read that is always ready would never let `until`'s timer
            // win: check the time as well.
            if Instant::now() >= deadline {
                break false;
            }
            match crate::runtime::until(deadline, self.read()).await {
                Some(Ok(Some(at))) => self.drain(at, |_, _, _| {}),
                Some(Ok(None) | Err(_)) => break true,
                None => break false,
            }
        };
        self.report(counters, 0);
        closed
    }

    /// Like [`Conn::drive`], for clients that send as fast as the server lets
    /// them: it writes only what the socket takes at once and keeps reading
    /// meanwhile, so a sender the server paces (by not reading it) still
    /// reads its replies and echoes instead of becoming a slow consumer
    /// itself. `b` is asked for more output whenever less than
    /// [`LOW_WATER`] bytes wait and its schedule says so.
    pub(crate) async fn pump<B: Behavior, S: Future>(
        &mut self,
        counters: &Counters,
        b: &mut B,
        mut signal: Pin<&mut S>,
        deadline: Instant,
    ) -> End {
        enum Wake {
            Readable,
            Writable,
            Timer,
            Signal,
        }
        let mut timer = Timer::at(deadline);
        let end = loop {
            // Socket readiness and a due schedule can stay true for as long
            // as the server keeps up: let the executor's other tasks run.
            future::yield_now().await;
            let now = Instant::now();
            if now >= deadline {
                break End::Deadline;
            }
            let room = self.out.len() < LOW_WATER;
            if room && b.next_send().is_some_and(|t| t <= now) {
                b.send(now, &mut self.out);
            }
            let wake_at = if self.out.len() < LOW_WATER {
                b.next_send().map_or(deadline, |t| t.min(deadline))
            } else {
                deadline
            };
            timer.set_at(wake_at);
            let wake = if self.more {
                Wake::Readable
            } else {
                let want_write = !self.out.is_empty() || self.stream.pending();
                let stream = &self.stream;
                // The signal first: it must win even when the socket is
                // always ready.
                future::or(
                    async {
                        signal.as_mut().await;
                        Wake::Signal
                    },
                    future::or(
                        async {
                            // An error shows again in the read that follows.
                            let _ = stream.readable().await;
                            Wake::Readable
                        },
                        future::or(
                            async {
                                if want_write {
                                    let _ = stream.writable().await;
                                    Wake::Writable
                                } else {
                                    future::pending().await
                                }
                            },
                            async {
                                (&mut timer).await;
                                Wake::Timer
                            },
                        ),
                    ),
                )
                .await
            };
            match wake {
                Wake::Readable => match self.try_read(READ_BUF) {
                    Ok(Some(n)) => {
                        let Some(at) = self.took(n, READ_BUF) else {
                            break End::Closed;
                        };
                        self.drain(at, |line, first, out| b.line(line, first, out));
                        b.read_done();
                        self.report(counters, 0);
                    }
                    Ok(None) => self.more = false,
                    Err(e) => break End::Failed(e),
                },
                Wake::Writable => {}
                Wake::Timer => continue,
                Wake::Signal => break End::Signalled,
            }
            // Write what the socket takes now (also after a read: it may
            // have queued a PONG).
            if !self.out.is_empty() || self.stream.pending() {
                match self.stream.try_write(&self.out) {
                    Ok(n) => {
                        self.out.drain(..n);
                        self.report(counters, n as u64);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => break End::Failed(e),
                }
            }
        };
        self.report(counters, 0);
        end
    }

    /// Writes `chunk` over and over, reading nothing, until `end` or until
    /// `max_writes` writes: a client that sends and never reads. Returns the
    /// error that ended it (the server closed it, say), if one did.
    pub(crate) async fn send_until(
        &mut self,
        counters: &Counters,
        chunk: &[u8],
        end: Instant,
        max_writes: u64,
    ) -> Option<io::Error> {
        for _ in 0..max_writes {
            match crate::runtime::until(end, self.stream.write_all(chunk)).await {
                Some(Ok(())) => Counters::add(&counters.bytes_out, chunk.len() as u64),
                Some(Err(e)) => return Some(e),
                None => return None,
            }
            // A socket that always has room would otherwise keep this task
            // on its thread.
            future::yield_now().await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_hot_lines_without_parsing() {
        assert!(matches!(
            classify("MSG * ann 1 2 3 hello there"),
            Incoming::Msg {
                scope: "*",
                text: "1 2 3 hello there"
            }
        ));
        assert!(matches!(classify("USERS * a b c"), Incoming::Users));
        assert!(matches!(classify("USERS *"), Incoming::Users));
        assert!(matches!(
            classify("JOIN rust bob"),
            Incoming::Join {
                scope: "rust",
                name: "bob"
            }
        ));
        assert!(matches!(
            classify("PART * bob sendq-exceeded"),
            Incoming::Part {
                name: "bob",
                reason: Some("sendq-exceeded")
            }
        ));
        assert!(matches!(
            classify("PART * bob"),
            Incoming::Part {
                name: "bob",
                reason: None
            }
        ));
    }

    #[test]
    fn first_byte_of_lines_split_across_reads() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        let mut framer = LineFramer::new(64);
        let mut clock = FirstByte::new(t0);
        let mut got = Vec::new();
        for (ms, chunk) in [
            (1, &b"US"[..]),       // a line starts
            (2, b"ERS a\nUSERS"),  // ends it (began at 1), starts another
            (3, b" b"),            // no line ends
            (4, b"\nUSERS c\nUS"), // ends one begun at 2, one whole, starts one
            (5, b"ERS d\n"),       // ends the one begun at 4
        ] {
            clock.read(t(ms), framer.buffered() > 0);
            framer.push(chunk);
            while let Some(line) = framer.next_line() {
                got.push((line.unwrap().to_owned(), clock.line(t(ms))));
            }
            clock.drained();
        }
        let want: Vec<(String, Instant)> = [
            ("USERS a", 1),
            ("USERS b", 2),
            ("USERS c", 4),
            ("USERS d", 4),
        ]
        .iter()
        .map(|(l, ms)| ((*l).to_owned(), t(*ms)))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn irc_lines_classify_as_the_native_lines_they_stand_for() {
        let mut names = false;
        let mut c = |l| classify_irc(l, &mut names);
        assert!(matches!(
            c(":ann!ann@hidden PRIVMSG &global :1 2 3 xx"),
            Incoming::Msg {
                scope: "*",
                text: "1 2 3 xx"
            }
        ));
        assert!(matches!(
            c(":ann!ann@hidden PRIVMSG #rust :hi there"),
            Incoming::Msg {
                scope: "rust",
                text: "hi there"
            }
        ));
        // Private messages and server notices are not chat in a scope.
        assert!(matches!(
            c(":ann!ann@hidden PRIVMSG bob :psst"),
            Incoming::Other
        ));
        assert!(matches!(
            c(":bob!bob@hidden JOIN #rust"),
            Incoming::Join {
                scope: "rust",
                name: "bob"
            }
        ));
        assert!(matches!(
            c(":bob!bob@hidden JOIN &global"),
            Incoming::Join {
                scope: "*",
                name: "bob"
            }
        ));
        assert!(matches!(
            c(":bob!bob@hidden QUIT :sendq-exceeded"),
            Incoming::Part {
                name: "bob",
                reason: Some("sendq-exceeded")
            }
        ));
        assert!(matches!(
            c(":bob!bob@hidden PART #rust"),
            Incoming::Part {
                name: "bob",
                reason: None
            }
        ));
        assert!(matches!(c("PING abc"), Incoming::Event(Event::Ping(t)) if t.as_str() == "abc"));
        assert!(matches!(
            c(":chatd PONG chatd :7"),
            Incoming::Event(Event::Pong(t)) if t.as_str() == "7"
        ));
        assert!(matches!(
            c("ERROR :Closing link: (sendq-exceeded)"),
            Incoming::Event(Event::Bye(CloseReason::SendqExceeded))
        ));
        assert!(matches!(
            c(":chatd NOTICE ann :rate-limited: slow down"),
            Incoming::Event(Event::Err {
                code: ErrorCode::RateLimited,
                ..
            })
        ));
        assert!(matches!(
            c(":chatd NOTICE ann :a notice: not an error"),
            Incoming::Other
        ));
        assert!(matches!(
            c(":chatd 401 ann bob :No such nick/channel"),
            Incoming::Event(Event::Err { .. })
        ));
        assert!(matches!(
            c(":chatd 422 ann :MOTD File is missing"),
            Incoming::Other
        ));
        assert!(matches!(c(":chatd 001 ann :Welcome"), Incoming::Other));
        assert!(matches!(c(""), Incoming::Malformed));
    }

    #[test]
    fn a_names_reply_is_one_users_line_at_its_first_byte() {
        let mut names = false;
        let mut users = 0;
        for line in [
            ":chatd 353 t = &global :a b c",
            ":chatd 353 t = &global :d e",
            ":chatd 366 t &global :End of /NAMES list",
            ":chatd 353 t = &global :a",
            ":chatd 366 t &global :End of /NAMES list",
            // A reply without names.
            ":chatd 366 t #nope :End of /NAMES list",
        ] {
            if matches!(classify_irc(line, &mut names), Incoming::Users) {
                users += 1;
            }
        }
        assert_eq!((users, names), (3, false));
    }

    #[test]
    fn dialects_encode_what_the_scenarios_send() {
        let mut out = Vec::new();
        let global = Dialect::irc_channel(None);
        let group = Dialect::irc_channel(Some(&GroupName::try_from("g").unwrap()));
        Dialect::Native.say(&global, "0 1 2", &mut out);
        Dialect::Irc.say(&global, "0 1 2", &mut out);
        Dialect::Irc.say(&group, "hi", &mut out);
        Dialect::Native.users(&mut out);
        Dialect::Irc.users(&mut out);
        Dialect::Native.ping("x", &mut out);
        Dialect::Irc.ping("x", &mut out);
        Dialect::Native.pong(&Token::try_from("y").unwrap(), &mut out);
        Dialect::Irc.pong(&Token::try_from("y").unwrap(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 1 2\nPRIVMSG &global :0 1 2\r\nPRIVMSG #g :hi\r\n/users\nNAMES &global\r\n\
             /ping x\nPING x\r\n/pong y\nPONG :y\r\n"
        );
        let modes: Vec<Dialect> = (0..4).map(|i| DialectMode::Mix.for_client(i)).collect();
        let (n, i) = (Dialect::Native, Dialect::Irc);
        assert_eq!(modes, [n, i, n, i]);
        assert_eq!(DialectMode::Irc.for_client(0), i);
        assert_eq!(DialectMode::parse("mix"), Ok(DialectMode::Mix));
        assert!(DialectMode::parse("IRC").is_err());
    }

    #[test]
    fn irc_text_budget_is_what_fits_one_relayed_line() {
        let (nick, channel) = ("f1a2b-999", "&global");
        let budget = irc_text_budget(nick, channel);
        let line = format!(
            ":{nick}!{nick}@hidden PRIVMSG {channel} :{}\r\n",
            "x".repeat(budget)
        );
        assert_eq!(line.len(), 512);
    }

    #[test]
    fn other_lines_go_through_parse_event() {
        assert!(matches!(
            classify("WELCOME ann"),
            Incoming::Event(Event::Welcome(_))
        ));
        assert!(matches!(
            classify("BYE sendq-exceeded"),
            Incoming::Event(Event::Bye(CloseReason::SendqExceeded))
        ));
        assert!(matches!(classify("MSG broken"), Incoming::Malformed));
        assert!(matches!(classify("NONSENSE"), Incoming::Malformed));
        assert!(matches!(classify(""), Incoming::Malformed));
    }
}
