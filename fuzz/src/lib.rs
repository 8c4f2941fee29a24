//! The fuzz checks for chatproto, one plain function per cargo-fuzz target.
//!
//! Each `check_*` takes the fuzzer's raw bytes and panics when chatproto breaks
//! one of its promises. The targets in `fuzz_targets/` only call these, and
//! `chatproto/tests/fuzz_corpus.rs` includes this file to replay the committed
//! corpus on stable `cargo test --workspace`; so this file uses only chatproto
//! and std, never libfuzzer-sys.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::panic;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatproto::server::{
    AccountsConfig, Answer, ConnId, Effect, HistoryConfig, Input, Outgoing, PeerKey, Request,
    RequestId, Server, ServerConfig, StoreOp,
};
use chatproto::{
    parse_event, parse_line, CloseReason, Command, ErrorCode, Event, FrameError, GroupName,
    LineFramer, Name, NameKey, ParseError, Password, Past, Refusal, Scope, Session, Text, Token,
    COMMAND_HELP,
};

/// A target's check: panics when chatproto breaks a promise on these bytes.
pub type Check = fn(&[u8]);

/// Every target: its name (the `fuzz/corpus/<name>/` directory) and its check.
pub const TARGETS: &[(&str, Check)] = &[
    ("parse_line", check_parse_line),
    ("parse_event", check_parse_event),
    ("framer", check_framer),
    ("server", check_server),
    ("irc_message", check_irc_message),
    ("irc_session", check_irc_session),
];

/// Feeds every file in `dir` to `check`; returns how many files passed, or the
/// names of the files that failed (each failure's panic message is printed too).
pub fn replay_dir(dir: &Path, check: Check) -> Result<usize, String> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    files.sort();
    let mut failed = Vec::new();
    for path in &files {
        let bytes = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if panic::catch_unwind(|| check(&bytes)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    if failed.is_empty() {
        Ok(files.len())
    } else {
        Err(format!("failing corpus files: {}", failed.join(", ")))
    }
}

// ---------------------------------------------------------------------------
// parse_line and parse_event

/// Target `parse_line`: the bytes (lossily decoded) as one client line.
pub fn check_parse_line(data: &[u8]) {
    check_client_line(&String::from_utf8_lossy(data));
}

/// Target `parse_event`: the bytes (lossily decoded) as one server line.
pub fn check_parse_event(data: &[u8]) {
    check_server_line(&String::from_utf8_lossy(data));
}

/// `parse_line` never panics; what parses re-encodes to one line that parses to
/// the same command; the encoding differs from the input only in the command
/// word's case; errors are small and map to a known code.
pub fn check_client_line(line: &str) {
    let cmd = match parse_line(line) {
        Ok(cmd) => cmd,
        Err(e) => return check_parse_error(line, &e),
    };
    let bytes = cmd.to_bytes();
    let encoded = single_line(&bytes);
    let again = parse_line(encoded)
        .unwrap_or_else(|e| panic!("{line:?} parsed to {cmd:?}, re-encoded as {encoded:?}: {e}"));
    assert_eq!(again, cmd, "{line:?} re-encoded as {encoded:?}");
    assert_eq!(
        cmd.to_string(),
        encoded,
        "Display differs from the wire form"
    );
    assert_eq!(
        encoded,
        canonical_client_line(line),
        "{line:?} is not re-encoded canonically"
    );
}

/// `parse_event` never panics; what parses re-encodes to one line that parses to
/// the same event, equal to the input unless a number (of `GROUPS`, `WHOIS` or
/// `COUNT`) had leading zeros; a `Session` fed the event answers `PING` with the same token.
pub fn check_server_line(line: &str) {
    let event = match parse_event(line) {
        Ok(event) => event,
        Err(e) => return check_parse_error(line, &e),
    };
    let bytes = event.to_bytes();
    let encoded = single_line(&bytes);
    let again = parse_event(encoded)
        .unwrap_or_else(|e| panic!("{line:?} parsed to {event:?}, re-encoded as {encoded:?}: {e}"));
    assert_eq!(again, event, "{line:?} re-encoded as {encoded:?}");
    assert_eq!(
        event.to_string(),
        encoded,
        "Display differs from the wire form"
    );
    if numbers_are_canonical(line) {
        assert_eq!(
            encoded, line,
            "a canonical event line is not re-encoded as itself"
        );
    }
    let mut session = Session::new();
    let reply = session.handle(&event);
    match &event {
        Event::Ping(token) => assert_eq!(reply, Some(Command::Pong(token.clone()))),
        Event::Welcome(name) => assert_eq!(session.name(), Some(name)),
        Event::Bye(_) => assert!(session.is_closed()),
        _ => {}
    }
}

/// Parse errors map to a code this version knows and quote little of the input,
/// so an `ERR` reply never echoes a whole line back.
fn check_parse_error(line: &str, e: &ParseError) {
    let code = e.code();
    let token = Token::try_from(code.as_str()).expect("error codes are tokens");
    assert!(
        ErrorCode::KNOWN.contains(&ErrorCode::from_token(token)),
        "{line:?}: unknown code {code}"
    );
    let message = e.to_string();
    assert!(
        !message.is_empty() && message.len() <= 256,
        "{line:?}: error message of {} bytes: {message:?}",
        message.len()
    );
    match e {
        ParseError::UnknownCommand(quoted) | ParseError::UnknownEvent(quoted) => {
            assert!(quoted.len() <= 32, "{line:?}: quotes {quoted:?}");
        }
        ParseError::Empty => assert!(line.is_empty(), "non-empty {line:?} reported empty"),
        _ => {}
    }
    let refusal = Refusal::from(e.clone());
    assert_eq!(refusal.code(), &code);
    assert!(!refusal.message().as_str().is_empty());
}

/// The encoded bytes are UTF-8 and exactly one LF-terminated line; returns it
/// without its LF.
fn single_line(bytes: &[u8]) -> &str {
    let line = std::str::from_utf8(bytes).expect("encoders write UTF-8");
    let body = line
        .strip_suffix('\n')
        .expect("encoders end the line with LF");
    assert!(!body.contains(['\n', '\r']), "encoded {body:?} spans lines");
    body
}

/// `line` with its command word lowercased: the only thing a client may write
/// in more than one way.
fn canonical_client_line(line: &str) -> String {
    match line.strip_prefix('/') {
        Some(rest) if !rest.starts_with('/') => {
            let (word, args) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
            format!("/{}{args}", word.to_ascii_lowercase())
        }
        _ => line.to_owned(),
    }
}

/// True unless a number of a `GROUPS`, `WHOIS` or `COUNT` line has a leading
/// zero (which re-encodes without it).
fn numbers_are_canonical(line: &str) -> bool {
    let fields: Vec<&str> = line.split(' ').collect();
    let numbers: Vec<&str> = match fields[0] {
        "GROUPS" => fields[1..]
            .iter()
            .filter_map(|field| field.split_once('='))
            .map(|(_, count)| count)
            .collect(),
        // WHOIS <name> <scope> <idle> <signon>
        "WHOIS" => fields.get(3..).unwrap_or_default().to_vec(),
        "COUNT" => fields[1..].to_vec(),
        _ => Vec::new(),
    };
    numbers.iter().all(|n| *n == "0" || !n.starts_with('0'))
}

// ---------------------------------------------------------------------------
// framer

/// Target `framer`: byte 0 picks the line limit (0 to 63), byte 1 seeds the
/// chunk sizes, the rest is the stream. It is framed whole, byte by byte, and
/// in pseudo-random chunks (shrinking when idle); each way must give the same
/// lines and errors as a plain model, none longer than the limit, and the
/// framer must never hold more than the limit plus one chunk.
pub fn check_framer(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max = usize::from(limit % 64);
    let want = model_frames(stream, max);
    let pending = stream.rsplit(|&b| b == b'\n').next().unwrap_or_default();
    let want_buffered = if pending.len() > max + 1 {
        0
    } else {
        pending.len()
    };

    let whole = [stream];
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    let mut rng = u64::from(*seed) + 1;
    let mut random = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        // xorshift: cheap, deterministic chunk sizes from 1 to about twice the limit.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let n = 1 + (rng % (2 * max as u64 + 4)) as usize;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        random.push(chunk);
        rest = tail;
    }
    for (how, chunks, shrink) in [
        ("whole", &whole[..], false),
        ("bytewise", &bytes[..], false),
        ("random chunks", &random[..], true),
    ] {
        let (got, buffered) = frame_chunks(chunks, max, shrink);
        assert_eq!(got, want, "max {max}, framed {how}: {chunks:?}");
        assert_eq!(
            buffered, want_buffered,
            "max {max}, framed {how}: bytes held at the end"
        );
    }
}

type Framed = Result<String, FrameError>;

/// Runs a framer over `chunks`, draining after each push; returns what it framed
/// and how many bytes it held at the end.
fn frame_chunks(chunks: &[&[u8]], max: usize, shrink: bool) -> (Vec<Framed>, usize) {
    let mut framer = LineFramer::new(max);
    assert_eq!(framer.max_line(), max);
    let mut out = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        let held = framer.buffered();
        assert!(
            held <= max + 1 + chunk.len(),
            "held {held} bytes after a push of {}, limit {max}",
            chunk.len()
        );
        loop {
            let has_line = framer.has_line();
            let Some(next) = framer.next_line() else {
                assert!(!has_line, "has_line() but no next_line()");
                break;
            };
            assert!(has_line, "next_line() without has_line()");
            if let Ok(line) = next {
                assert!(line.len() <= max, "{line:?} is longer than {max}");
                assert!(!line.contains('\n'), "{line:?} holds a LF");
            }
            out.push(next.map(str::to_owned));
        }
        let held = framer.buffered();
        assert!(held <= max + 1, "held {held} bytes while idle, limit {max}");
        if shrink {
            framer.shrink();
        }
    }
    (out, framer.buffered())
}

/// What a framer must produce for `stream`, written the obvious way: split on
/// LF, drop one CR, check length then UTF-8. A partial last line is reported
/// as too long once it passes the limit plus a CR.
fn model_frames(stream: &[u8], max: usize) -> Vec<Framed> {
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let pending = lines.pop().unwrap_or_default();
    let mut out: Vec<Framed> = lines
        .into_iter()
        .map(|raw| {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.len() > max {
                return Err(FrameError::LineTooLong { max });
            }
            std::str::from_utf8(line)
                .map(str::to_owned)
                .map_err(|e| FrameError::BadEncoding {
                    at: e.valid_up_to(),
                })
        })
        .collect();
    if pending.len() > max + 1 {
        out.push(Err(FrameError::LineTooLong { max }));
    }
    out
}

// ---------------------------------------------------------------------------
// server

/// Connections the server target uses: few, so that they meet in groups.
const CONNS: u8 = 6;
/// Inputs per run at most, so every run ends quickly.
const MAX_STEPS: usize = 400;

/// Client lines the server target picks from: every command, with names and
/// groups that collide ignoring case.
const DICTIONARY: &[&str] = &[
    "ann",
    "Ann",
    "bob",
    "carol",
    "not a name",
    "hello all",
    "//slash",
    "/nick ann",
    "/nick ANN",
    "/nick bob",
    "/nick dave_2",
    "/users",
    "/groups",
    "/join rust",
    "/join Rust",
    "/join go",
    "/leave",
    "/msg ann hi",
    "/msg BOB  hey ",
    "/msg nobody hi",
    "/me waves",
    "/help",
    "/ping",
    "/ping 7",
    "/pong 1",
    "/quit",
    "/quit gone fishing",
    "admin",
    "/nick Chatd",
    "/say * hi all",
    "/say rust in rust",
    "/say GO in go",
    "/act * dances",
    "/act Rust nods",
    "/whois ann",
    "/whois BOB",
    "/whois nobody",
    "/count",
    "/echo on",
    "/echo off",
];

/// Target `server`: the bytes are a program of inputs for one [`Server`]: byte
/// `op` then its operands (a missing byte reads as 0):
/// - `0 c`: connection `c` connects;
/// - `1 c i`: `c` sends dictionary line `i`;
/// - `2 c n bytes[n]`: `c` sends those bytes as a line: a `Line` if it parses, a
///   `Refused` if not, nothing if empty (as chatd does);
/// - `3 c r` / `4 c r`: `c` disconnects / is kicked, with close reason `r`;
/// - `5 s`: `s` seconds pass, then a `Tick`;
/// - `6 c k`: `c` sent a line the framer refused;
/// - `7`: `Shutdown`.
///
/// After every input the server's effects must equal those of a small reference
/// model (per recipient, in order; `ERR`, `HELLO` and `INFO` texts are not
/// compared; `WHOIS` is compared whole: the model counts idle seconds on its
/// own clock, and signon is 0 since this driver gives no wall clock), every
/// delivered line must be a canonical event, one broadcast must share one
/// allocation, `check_invariants` must pass, and the counts and names
/// must match the model's.
pub fn check_server(data: &[u8]) {
    let mut program = Program(data);
    let start = Instant::now();
    let mut now = start;
    let mut config = ServerConfig::default();
    // Small enough that six connections cross it both ways.
    config.presence_limit = 3;
    let mut server = Server::new(config);
    let mut model = Model::new(server.config());
    let mut history = Vec::new();
    for step in 0..MAX_STEPS {
        let Some(op) = program.next() else { break };
        let Some(input) = program.input(op, &mut now) else {
            continue;
        };
        history.push(format!("t+{}s {input:?}", (now - start).as_secs()));
        let want = model.handle(now, &input);
        let effects = server.handle(now, input);
        let context = || format!("step {step}, inputs so far:\n  {}", history.join("\n  "));
        let got = observe(&effects).unwrap_or_else(|e| panic!("{e}\n{}", context()));
        assert_eq!(got, want, "effects differ from the model's\n{}", context());
        if let Err(e) = server.check_invariants() {
            panic!("invariant broken: {e}\n{}", context());
        }
        model
            .check_counts(&server)
            .unwrap_or_else(|e| panic!("{e}\n{}", context()));
    }
    check_server_accounts(data);
}

/// The fuzz bytes, read as operations.
struct Program<'a>(&'a [u8]);

impl Program<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn operand(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn conn(&mut self) -> ConnId {
        ConnId::new(u64::from(self.operand() % CONNS))
    }

    fn reason(&mut self) -> CloseReason {
        let known = CloseReason::KNOWN;
        known[usize::from(self.operand()) % known.len()].clone()
    }

    /// Decodes operation `op`; `None` for a line the driver would ignore.
    fn input(&mut self, op: u8, now: &mut Instant) -> Option<Input> {
        Some(match op % 8 {
            0 => Input::Connected(self.conn()),
            1 => {
                let conn = self.conn();
                let line = DICTIONARY[usize::from(self.operand()) % DICTIONARY.len()];
                // The dictionary holds only valid lines (checked by a test below).
                Input::Line(conn, parse_line(line).expect("dictionary lines parse"))
            }
            2 => {
                let conn = self.conn();
                let len = usize::from(self.operand() % 64).min(self.0.len());
                let (bytes, rest) = self.0.split_at(len);
                self.0 = rest;
                match parse_line(&String::from_utf8_lossy(bytes)) {
                    Ok(cmd) => Input::Line(conn, cmd),
                    Err(e) => Input::Refused(conn, e.into()),
                }
            }
            3 => Input::Disconnected(self.conn(), self.reason()),
            4 => Input::Kick(self.conn(), self.reason()),
            5 => {
                *now += Duration::from_secs(u64::from(self.operand()));
                Input::Tick
            }
            6 => {
                let conn = self.conn();
                let error = if self.operand().is_multiple_of(2) {
                    FrameError::LineTooLong { max: 4096 }
                } else {
                    FrameError::BadEncoding { at: 3 }
                };
                Input::Refused(conn, error.into())
            }
            _ => Input::Shutdown,
        })
    }
}

/// What a connection received in one step: event lines (normalized) and closes,
/// in order, per connection.
type Observed = BTreeMap<ConnId, Vec<String>>;

/// The effects as seen per connection. Every delivered line must parse as an
/// event and be that event's canonical encoding, and deliveries of one
/// broadcast line must share one allocation.
fn observe(effects: &[Effect]) -> Result<Observed, String> {
    let mut seen = Observed::new();
    // Keyed by event id: equal lines of different events (a queue of the
    // same message drained in one step) are different broadcasts.
    let mut shared: BTreeMap<u64, &Arc<[u8]>> = BTreeMap::new();
    let mut ids: BTreeMap<u64, &Arc<Outgoing>> = BTreeMap::new();
    for effect in effects {
        match effect {
            Effect::Deliver { to, event: out } => {
                // One id per event made; 0 only for constant replies. A
                // HISTORY line has the id of the line it repeats, which may
                // be live in the same step.
                let past = matches!(out.event(), Event::History(_));
                if out.id() != 0 && !past && !Arc::ptr_eq(ids.entry(out.id()).or_insert(out), out) {
                    return Err(format!("two events with id {}", out.id()));
                }
                let bytes = out.line();
                let text = std::str::from_utf8(bytes)
                    .map_err(|e| format!("delivery to {to:?} is not UTF-8: {e}"))?;
                let Some(body) = text.strip_suffix('\n') else {
                    return Err(format!("delivery to {to:?} does not end with LF: {text:?}"));
                };
                let mut broadcast = false;
                for line in body.split('\n') {
                    let event = parse_event(line)
                        .map_err(|e| format!("{to:?} got {line:?}, which does not parse: {e}"))?;
                    if event != *out.event() {
                        return Err(format!("{line:?} is not the encoding of {:?}", out.event()));
                    }
                    let again = event.to_bytes();
                    if again.strip_suffix(b"\n") != Some(line.as_bytes()) {
                        return Err(format!("{to:?} got non-canonical {line:?}"));
                    }
                    broadcast |= matches!(
                        event,
                        Event::Msg { .. }
                            | Event::Me { .. }
                            | Event::Dm { .. }
                            | Event::Join { .. }
                            | Event::Part { .. }
                            | Event::Nick { .. }
                    );
                    seen.entry(*to).or_default().push(normalize(&event));
                }
                if broadcast {
                    let first = shared.entry(out.id()).or_insert(bytes);
                    if !Arc::ptr_eq(first, bytes) {
                        return Err(format!("{text:?} was encoded more than once"));
                    }
                }
            }
            Effect::Close { conn, reason } => {
                seen.entry(*conn).or_default().push(close_mark(reason));
            }
            Effect::Store(_) | Effect::Request { .. } => {
                return Err(format!("{effect:?} with accounts and history off"));
            }
        }
    }
    Ok(seen)
}

/// An event as compared with the model: texts meant for people are left out.
fn normalize(event: &Event) -> String {
    match event {
        Event::Hello { .. } => "HELLO".to_owned(),
        Event::Info(_) => "INFO".to_owned(),
        Event::Err { code, .. } => format!("ERR {code}"),
        other => other.to_string(),
    }
}

fn close_mark(reason: &CloseReason) -> String {
    format!("<close {reason}>")
}

/// One connection as the model sees it.
#[derive(Debug)]
struct ModelConn {
    name: Option<Name>,
    group: Option<NameKey>,
    connected_at: Instant,
    last_heard: Instant,
    pinged: bool,
    /// `/echo on`: its own MSG and ME come back to it.
    echo: bool,
}

/// The server's documented behaviour, written plainly: a map of connections,
/// users and groups found by scanning it.
#[derive(Debug)]
struct Model {
    server_name: Token,
    register_timeout: Duration,
    ping_after: Duration,
    idle_timeout: Duration,
    max_tick_gap: Duration,
    presence_limit: usize,
    /// Names nobody may take: the configured ones and the server's own.
    reserved: Vec<NameKey>,
    last_input: Option<Instant>,
    shut_down: bool,
    conns: BTreeMap<ConnId, ModelConn>,
    /// Each group's name as its creator spelled it.
    groups: BTreeMap<NameKey, GroupName>,
    pings_sent: u64,
    out: Observed,
}

impl Model {
    fn new(config: &ServerConfig) -> Self {
        Self {
            server_name: config.server_name.clone(),
            register_timeout: config.register_timeout,
            ping_after: config.ping_after,
            idle_timeout: config.idle_timeout,
            max_tick_gap: config.max_tick_gap,
            presence_limit: config.presence_limit,
            reserved: config
                .reserved_names
                .iter()
                .map(Name::key)
                .chain(Name::try_from(config.server_name.as_str()).map(|n| n.key()))
                .collect(),
            last_input: None,
            shut_down: false,
            conns: BTreeMap::new(),
            groups: BTreeMap::new(),
            pings_sent: 0,
            out: Observed::new(),
        }
    }

    fn send(&mut self, to: ConnId, event: &Event) {
        self.out.entry(to).or_default().push(normalize(event));
    }

    fn send_all(&mut self, to: &[ConnId], event: &Event) {
        for &c in to {
            self.send(c, event);
        }
    }

    fn error(&mut self, to: ConnId, code: ErrorCode) {
        let text = Text::try_from("-").expect("valid text literal");
        self.send(to, &Event::Err { code, text });
    }

    /// Registered connections, except `but`.
    fn users_except(&self, but: Option<ConnId>) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(&id, c)| c.name.is_some() && Some(id) != but)
            .map(|(&id, _)| id)
            .collect()
    }

    fn user(&self, key: &NameKey) -> Option<(ConnId, Name)> {
        self.conns.iter().find_map(|(&id, c)| {
            let name = c.name.as_ref()?;
            (name.key() == *key).then(|| (id, name.clone()))
        })
    }

    fn members(&self, group: &NameKey) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.group.as_ref() == Some(group))
            .map(|(&id, _)| id)
            .collect()
    }

    fn name_of(&self, conn: ConnId) -> Option<Name> {
        self.conns.get(&conn)?.name.clone()
    }

    fn group_of(&self, conn: ConnId) -> Option<NameKey> {
        self.conns.get(&conn)?.group.clone()
    }

    /// The effects `input` must have, per connection.
    fn handle(&mut self, now: Instant, input: &Input) -> Observed {
        // A gap past max_tick_gap since the last input is a stall, counted
        // against no one: every connection's clocks move forward by it.
        if let Some(last) = self.last_input {
            let gap = now.saturating_duration_since(last);
            if gap > self.max_tick_gap {
                for c in self.conns.values_mut() {
                    c.connected_at += gap;
                    c.last_heard += gap;
                }
            }
        }
        self.last_input = Some(self.last_input.map_or(now, |last| last.max(now)));
        match input {
            Input::Connected(c) if self.shut_down && !self.conns.contains_key(c) => {
                self.send(*c, &Event::Bye(CloseReason::ServerShutdown));
                let close = close_mark(&CloseReason::ServerShutdown);
                self.out.entry(*c).or_default().push(close);
            }
            Input::Connected(c) => {
                if !self.conns.contains_key(c) {
                    let conn = ModelConn {
                        name: None,
                        group: None,
                        connected_at: now,
                        last_heard: now,
                        pinged: false,
                        echo: false,
                    };
                    self.conns.insert(*c, conn);
                    self.out.entry(*c).or_default().push("HELLO".to_owned());
                }
            }
            Input::Line(c, cmd) => {
                if let Some(conn) = self.conns.get_mut(c) {
                    conn.last_heard = now;
                    conn.pinged = false;
                    if conn.name.is_some() {
                        self.registered_line(now, *c, cmd);
                    } else {
                        self.unregistered_line(*c, cmd);
                    }
                }
            }
            Input::Refused(c, refusal) => {
                if let Some(conn) = self.conns.get_mut(c) {
                    conn.last_heard = now;
                    conn.pinged = false;
                    // An empty line is activity, never an error.
                    if !refusal.is_empty_line() {
                        self.error(*c, refusal.code().clone());
                    }
                }
            }
            Input::Kick(c, reason) => self.close(*c, reason, None, true),
            Input::Disconnected(c, reason) => self.close(*c, reason, None, false),
            Input::Tick => self.tick(now),
            Input::Shutdown => {
                self.shut_down = true;
                let bye = Event::Bye(CloseReason::ServerShutdown);
                for c in std::mem::take(&mut self.conns).into_keys() {
                    self.send(c, &bye);
                    let close = close_mark(&CloseReason::ServerShutdown);
                    self.out.entry(c).or_default().push(close);
                }
                self.groups.clear();
            }
            other => panic!("the model does not know input {other:?}"),
        }
        std::mem::take(&mut self.out)
    }

    fn unregistered_line(&mut self, c: ConnId, cmd: &Command) {
        match cmd {
            Command::Say(text) => match Name::try_from(text.as_str()) {
                Ok(name) => self.register(c, name),
                Err(_) => self.error(c, ErrorCode::NameInvalid),
            },
            Command::Nick(name) => self.register(c, name.clone()),
            Command::Help
            | Command::Ping(_)
            | Command::Pong(_)
            | Command::Quit(_)
            | Command::Echo(_) => {
                self.any_time_line(c, cmd);
            }
            _ => self.error(c, ErrorCode::NotRegistered),
        }
    }

    /// Commands that work the same before and after registration.
    fn any_time_line(&mut self, c: ConnId, cmd: &Command) {
        match cmd {
            Command::Help => {
                let info = Event::Info(Text::try_from("-").expect("valid text literal"));
                for _ in COMMAND_HELP {
                    self.send(c, &info);
                }
            }
            Command::Ping(token) => {
                let token = token.clone().unwrap_or_else(|| self.server_name.clone());
                self.send(c, &Event::Pong(token));
            }
            Command::Pong(_) => {}
            Command::Echo(on) => self.conns.get_mut(&c).expect("live").echo = *on,
            Command::Quit(said) => self.close(c, &CloseReason::Quit, said.clone(), true),
            other => panic!("the model does not know command {other:?}"),
        }
    }

    fn registered_line(&mut self, now: Instant, c: ConnId, cmd: &Command) {
        let me = self
            .name_of(c)
            .expect("registered_line is for registered connections");
        match cmd {
            Command::Say(text) => {
                let (to, scope) = self.scope_of(c);
                let event = Event::Msg {
                    scope,
                    from: me,
                    text: text.clone(),
                };
                self.send_all(&to, &event);
            }
            Command::Me(text) => {
                let (to, scope) = self.scope_of(c);
                let event = Event::Me {
                    scope,
                    from: me,
                    text: text.clone(),
                };
                self.send_all(&to, &event);
            }
            Command::Nick(new) => self.rename(c, me, new.clone()),
            Command::Users => {
                let (scope, mut members) = match self.group_of(c) {
                    Some(key) => (Scope::Group(self.groups[&key].clone()), self.members(&key)),
                    None => (Scope::Global, self.users_except(None)),
                };
                members.sort_by_key(|id| self.name_of(*id).map(|n| n.key()));
                let names = members.iter().filter_map(|id| self.name_of(*id)).collect();
                self.send(c, &Event::Users { scope, names });
            }
            Command::Groups => {
                let groups = self
                    .groups
                    .iter()
                    .map(|(key, name)| (name.clone(), self.members(key).len() as u32))
                    .collect();
                self.send(c, &Event::Groups(groups));
            }
            Command::Join(group) => {
                if self.group_of(c) == Some(group.key()) {
                    return self.error(c, ErrorCode::AlreadyInGroup);
                }
                if self.group_of(c).is_some() {
                    self.leave_group(c, me.clone());
                }
                let key = group.key();
                let display = self
                    .groups
                    .entry(key.clone())
                    .or_insert_with(|| group.clone());
                let scope = Scope::Group(display.clone());
                self.conns.get_mut(&c).expect("live").group = Some(key.clone());
                let members = self.members(&key);
                self.send_all(&members, &Event::Join { scope, name: me });
            }
            Command::Leave => match self.group_of(c) {
                Some(_) => self.leave_group(c, me),
                None => self.error(c, ErrorCode::NotInGroup),
            },
            Command::Msg { to, text } => match self.user(&to.key()) {
                None => self.error(c, ErrorCode::NoSuchUser),
                Some((to_conn, to)) => {
                    let dm = Event::Dm {
                        from: me,
                        to,
                        text: text.clone(),
                    };
                    self.send(to_conn, &dm);
                    if to_conn != c {
                        self.send(c, &dm);
                    }
                }
            },
            Command::SayIn { scope, text } => {
                let text = text.clone();
                self.say_in(c, scope, |scope, from| Event::Msg { scope, from, text });
            }
            Command::MeIn { scope, text } => {
                let text = text.clone();
                self.say_in(c, scope, |scope, from| Event::Me { scope, from, text });
            }
            Command::Whois(name) => match self.user(&name.key()) {
                None => self.error(c, ErrorCode::NoSuchUser),
                Some((id, name)) => {
                    let conn = &self.conns[&id];
                    let scope = match &conn.group {
                        Some(key) => Scope::Group(self.groups[key].clone()),
                        None => Scope::Global,
                    };
                    let idle = now.saturating_duration_since(conn.last_heard).as_secs();
                    let whois = Event::Whois {
                        name,
                        scope,
                        idle: u32::try_from(idle).unwrap_or(u32::MAX),
                        // This target's driver gives no wall clock.
                        signon: 0,
                    };
                    self.send(c, &whois);
                }
            },
            Command::Count => {
                let count = Event::Count {
                    users: self.users_except(None).len() as u32,
                    groups: self.groups.len() as u32,
                    connections: self.conns.len() as u32,
                };
                self.send(c, &count);
            }
            _ => self.any_time_line(c, cmd),
        }
    }

    /// `/say` and `/act`: global, or `c`'s own group (ignoring case).
    fn say_in(&mut self, c: ConnId, scope: &Scope, event: impl FnOnce(Scope, Name) -> Event) {
        let me = self.name_of(c).expect("registered");
        let (to, scope) = match scope {
            Scope::Global => (self.users_except(self.not_echoed(c)), Scope::Global),
            Scope::Group(g) if self.group_of(c) == Some(g.key()) => self.scope_of(c),
            Scope::Group(_) => return self.error(c, ErrorCode::NotInGroup),
        };
        self.send_all(&to, &event(scope, me));
    }

    /// Who gets plain text from `c`, and the scope it is said in.
    fn scope_of(&self, c: ConnId) -> (Vec<ConnId>, Scope) {
        let but = self.not_echoed(c);
        match self.group_of(c) {
            Some(key) => {
                let to = self
                    .members(&key)
                    .into_iter()
                    .filter(|&m| Some(m) != but)
                    .collect();
                (to, Scope::Group(self.groups[&key].clone()))
            }
            None => (self.users_except(but), Scope::Global),
        }
    }

    /// Who does not get what `c` says: `c`, unless it asked with `/echo on`.
    fn not_echoed(&self, c: ConnId) -> Option<ConnId> {
        (!self.conns[&c].echo).then_some(c)
    }

    fn register(&mut self, c: ConnId, name: Name) {
        if self.user(&name.key()).is_some() {
            return self.error(c, ErrorCode::NameTaken);
        }
        if self.reserved.contains(&name.key()) {
            return self.error(c, ErrorCode::NameReserved);
        }
        self.conns.get_mut(&c).expect("live").name = Some(name.clone());
        self.send(c, &Event::Welcome(name.clone()));
        let others = self.users_except(Some(c));
        if others.len() + 1 > self.presence_limit {
            let info = Event::Info(Text::try_from("-").expect("valid text literal"));
            return self.send(c, &info);
        }
        self.send_all(
            &others,
            &Event::Join {
                scope: Scope::Global,
                name,
            },
        );
    }

    fn rename(&mut self, c: ConnId, old: Name, new: Name) {
        if new == old {
            return self.send(c, &Event::Welcome(new));
        }
        if matches!(self.user(&new.key()), Some((owner, _)) if owner != c) {
            return self.error(c, ErrorCode::NameTaken);
        }
        if self.reserved.contains(&new.key()) {
            return self.error(c, ErrorCode::NameReserved);
        }
        self.conns.get_mut(&c).expect("live").name = Some(new.clone());
        self.send(c, &Event::Welcome(new.clone()));
        let others = self.users_except(Some(c));
        self.send_all(&others, &Event::Nick { old, new });
    }

    /// `PART <group> <name>` to every member, the leaver included; the last one
    /// out removes the group.
    fn leave_group(&mut self, c: ConnId, name: Name) {
        let Some(key) = self.group_of(c) else { return };
        let scope = Scope::Group(self.groups[&key].clone());
        let members = self.members(&key);
        self.send_all(
            &members,
            &Event::Part {
                scope,
                name,
                reason: None,
            },
        );
        self.conns.get_mut(&c).expect("live").group = None;
        if self.members(&key).is_empty() {
            self.groups.remove(&key);
        }
    }

    fn close(&mut self, c: ConnId, reason: &CloseReason, said: Option<Text>, bye: bool) {
        let Some(conn) = self.conns.remove(&c) else {
            return;
        };
        if bye {
            self.send(c, &Event::Bye(reason.clone()));
            self.out.entry(c).or_default().push(close_mark(reason));
        }
        let Some(name) = conn.name else { return };
        let everyone = self.users_except(None);
        // Counted with the leaver, who is already gone from `conns`.
        let announce = everyone.len() < self.presence_limit;
        let mut told = if announce { everyone } else { Vec::new() };
        if let Some(key) = conn.group {
            let members = self.members(&key);
            if members.is_empty() {
                self.groups.remove(&key);
            }
            if !announce {
                told = members;
            }
        }
        let reason = said.unwrap_or_else(|| Text::lossy(reason.as_str()));
        let part = Event::Part {
            scope: Scope::Global,
            name,
            reason: Some(reason),
        };
        self.send_all(&told, &part);
    }

    fn tick(&mut self, now: Instant) {
        let mut expired = Vec::new();
        let mut to_ping = Vec::new();
        for (&id, c) in &self.conns {
            if c.name.is_none() {
                if now.saturating_duration_since(c.connected_at) >= self.register_timeout {
                    expired.push((id, CloseReason::RegisterTimeout));
                }
                continue;
            }
            let silent = now.saturating_duration_since(c.last_heard);
            if silent >= self.idle_timeout {
                expired.push((id, CloseReason::PingTimeout));
            } else if silent >= self.ping_after && !c.pinged {
                to_ping.push(id);
            }
        }
        for id in to_ping {
            self.pings_sent += 1;
            let token = Token::try_from(self.pings_sent.to_string().as_str())
                .expect("decimal numbers are tokens");
            self.conns.get_mut(&id).expect("live").pinged = true;
            self.send(id, &Event::Ping(token));
        }
        for (id, reason) in expired {
            self.close(id, &reason, None, true);
        }
    }

    /// The server's counts and names agree with the model's.
    fn check_counts(&self, server: &Server) -> Result<(), String> {
        let want = (
            self.conns.len(),
            self.users_except(None).len(),
            self.groups.len(),
        );
        let got = (
            server.connection_count(),
            server.user_count(),
            server.group_count(),
        );
        if got != want {
            return Err(format!(
                "(connections, users, groups) are {got:?}, the model has {want:?}"
            ));
        }
        for n in 0..CONNS {
            let id = ConnId::new(u64::from(n));
            let (got, want) = (server.name_of(id), self.name_of(id));
            if got != want.as_ref() {
                return Err(format!("{id:?} is named {got:?}, the model has {want:?}"));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// server, with accounts and history on

/// The lines of the accounts run: the plain dictionary's, plus account and
/// history commands. `acct` is an account from the start (password
/// `hunter22`); every password here is one of three.
const ACCOUNT_DICTIONARY: &[&str] = &[
    "acct",
    "/nick acct",
    "/nick Acct2",
    "/register hunter22",
    "/register wrong-pw",
    "/login acct hunter22",
    "/login ACCT wrong-pw",
    "/login ann hunter22",
    "/login bob hunter22",
    "/passwd hunter22 new-pass",
    "/passwd wrong-pw new-pass",
    "/unregister hunter22",
    "/unregister new-pass",
    "/history",
    "/history 2",
    "/history 5 104",
    "/history 0",
    "/msg acct are you there",
    "/msg ACCT hello",
    "/msg ann offline?",
];

/// The passwords of [`ACCOUNT_DICTIONARY`]: none may show in `Debug` output.
const PASSWORDS: &[&str] = &["hunter22", "wrong-pw", "new-pass"];

/// Replayed per scope on join and registration in the accounts run.
const REPLAY: usize = 3;

/// The accounts run's store: what the server told it to keep, answering
/// truthfully (unless the program says otherwise).
#[derive(Debug, Default)]
struct FuzzStore {
    /// Account key -> password.
    accounts: BTreeMap<String, String>,
    /// Every line kept, per scope key (`*` or the group's key), in order.
    lines: BTreeMap<String, Vec<Past>>,
    /// Offline DMs per account key.
    offline: BTreeMap<String, Vec<Past>>,
}

fn scope_key_of(scope: &Scope) -> String {
    match scope {
        Scope::Global => "*".to_owned(),
        Scope::Group(g) => g.key().as_str().to_owned(),
    }
}

impl FuzzStore {
    fn keep(&mut self, op: &StoreOp) {
        let past = |o: &Outgoing| {
            Past::new(o.id(), o.unix_ms(), o.event().clone())
                .unwrap_or_else(|e| panic!("stored {e:?}, which is no past line"))
        };
        match op {
            StoreOp::Line(o) => {
                let p = past(o);
                let key = scope_key_of(p.scope().expect("a stored line has a scope"));
                self.lines.entry(key).or_default().push(p);
            }
            StoreOp::OfflineDm { account, event } => {
                assert!(matches!(event.event(), Event::Dm { .. }), "{event:?}");
                let key = account.key().as_str().to_owned();
                self.offline.entry(key).or_default().push(past(event));
            }
            StoreOp::DeleteOfflineDms { account, through } => {
                if let Some(v) = self.offline.get_mut(account.key().as_str()) {
                    v.retain(|p| p.id() > *through);
                }
            }
            other => panic!("unknown store write {other:?}"),
        }
    }

    /// The truthful answer, applied to the store.
    fn answer(&mut self, request: &Request) -> Answer {
        let verify = |s: &Self, account: &Name, password: &Password| match s
            .accounts
            .get(account.key().as_str())
        {
            None => Err(Answer::NoSuchAccount),
            Some(p) if p != password.expose() => Err(Answer::WrongPassword),
            Some(_) => Ok(()),
        };
        match request {
            Request::Register { account, password } => {
                let key = account.key().as_str().to_owned();
                if self.accounts.contains_key(&key) {
                    return Answer::NameTaken;
                }
                self.accounts.insert(key, password.expose().to_owned());
                Answer::Done
            }
            Request::Login { account, password } => match verify(self, account, password) {
                Err(e) => e,
                Ok(()) => Answer::LoggedIn {
                    offline: self
                        .offline
                        .get(account.key().as_str())
                        .cloned()
                        .unwrap_or_default(),
                },
            },
            Request::ChangePassword { account, old, new } => match verify(self, account, old) {
                Err(e) => e,
                Ok(()) => {
                    let key = account.key().as_str().to_owned();
                    self.accounts.insert(key, new.expose().to_owned());
                    Answer::Done
                }
            },
            Request::Unregister { account, password } => match verify(self, account, password) {
                Err(e) => e,
                Ok(()) => {
                    self.accounts.remove(account.key().as_str());
                    self.offline.remove(account.key().as_str());
                    Answer::Done
                }
            },
            Request::History {
                scope,
                before,
                limit,
            } => {
                let lines = self.lines.get(&scope_key_of(scope)).cloned();
                let mut lines: Vec<Past> = lines
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| before.is_none_or(|b| p.id() < b))
                    .collect();
                let skip = lines.len().saturating_sub(*limit);
                lines.drain(..skip);
                Answer::History(lines)
            }
            other => panic!("unknown request {other:?}"),
        }
    }
}

/// The accounts run of target `server`: the same bytes as a program for a
/// server with accounts and history on, whose store is a [`FuzzStore`]. Byte
/// `op % 10`: `0`-`7` as in [`check_server`] (`1` reads
/// [`ACCOUNT_DICTIONARY`] and the plain dictionary), then
/// - `8 k a`: answer request `k` of those not answered yet (past their
///   number: one answered already, or an id never given) with the store's
///   truthful answer (`a % 4` 0 or 1), `Failed` (2), or an answer of the
///   wrong kind (3);
/// - `9 c p`: `c` connects from peer `p % 3`.
///
/// Checked after every input: the lines are canonical events (as in
/// [`check_server`]), the invariants hold, no password shows in a request's
/// `Debug`, an answer that is not outstanding changes nothing, every replay
/// (`HISTORY` lines up to `REPLAYED`) is a gapless run of its scope's stored
/// lines and, on `/join` and registration, the latest ones; offline messages
/// delivered at login are those the store answered with; nobody takes an
/// account's name without logging in to it.
pub fn check_server_accounts(data: &[u8]) {
    let mut program = Program(data);
    let start = Instant::now();
    let mut now = start;
    let mut config = ServerConfig::default();
    config.presence_limit = 3;
    let mut accounts = AccountsConfig::default();
    accounts.offline_dms = 2;
    config.accounts = Some(accounts);
    config.max_queued_lines = 4;
    let mut history = HistoryConfig::default();
    history.replay = REPLAY;
    // More than the groups a program can make: no scope is evicted, so a
    // replay is always the scope's latest lines.
    history.max_scopes = 2 * MAX_STEPS;
    history.page = 2;
    history.max_page = 5;
    config.history = Some(history);
    let mut server = Server::new(config);
    let mut store = FuzzStore::default();
    store
        .accounts
        .insert("acct".to_owned(), "hunter22".to_owned());
    server.add_account(Name::try_from("acct").expect("a name"), 0);
    let seeds: Vec<Past> = ["MSG * old before the restart", "MSG rust old in rust"]
        .iter()
        .zip(100..)
        .map(|(line, id)| Past::from_stored(id, 1, line).expect("a past line"))
        .collect();
    for p in &seeds {
        let key = scope_key_of(p.scope().expect("seeds have scopes"));
        store.lines.entry(key).or_default().push(p.clone());
    }
    server.seed_history(seeds);
    server.set_next_id(200);
    let mut pending: Vec<(RequestId, Request)> = Vec::new();
    let mut answered: Vec<RequestId> = Vec::new();
    let mut history_log = Vec::new();
    for step in 0..MAX_STEPS {
        let Some(op) = program.next() else { break };
        let (input, gave) = match op % 10 {
            8 => {
                let k = usize::from(program.operand());
                let how = program.operand() % 4;
                let (id, request) = if k < pending.len() {
                    pending.remove(k)
                } else if let Some(old) = answered.get(k % answered.len().max(1)) {
                    (
                        *old,
                        Request::History {
                            scope: Scope::Global,
                            before: None,
                            limit: 1,
                        },
                    )
                } else {
                    (
                        RequestId::new(1 << 40),
                        Request::History {
                            scope: Scope::Global,
                            before: None,
                            limit: 1,
                        },
                    )
                };
                let stale = answered.contains(&id) || id.get() == 1 << 40;
                let answer = match how {
                    _ if stale => Answer::Failed,
                    2 => Answer::Failed,
                    3 => match request {
                        Request::History { .. } => Answer::Done,
                        _ => Answer::History(Vec::new()),
                    },
                    _ => store.answer(&request),
                };
                answered.push(id);
                (Input::Answer(id, answer.clone()), Some((stale, answer)))
            }
            9 => {
                let conn = program.conn();
                let peer = PeerKey::new(u64::from(program.operand() % 3));
                (Input::ConnectedFrom(conn, peer), None)
            }
            1 => {
                let conn = program.conn();
                let i = usize::from(program.operand());
                let line = ACCOUNT_DICTIONARY
                    .iter()
                    .chain(DICTIONARY)
                    .nth(i % (ACCOUNT_DICTIONARY.len() + DICTIONARY.len()))
                    .expect("in range");
                (
                    Input::Line(conn, parse_line(line).expect("dictionary lines parse")),
                    None,
                )
            }
            other => match program.input(other, &mut now) {
                Some(input) => (input, None),
                None => continue,
            },
        };
        history_log.push(format!("t+{}s {input:?}", (now - start).as_secs()));
        let context = || {
            format!(
                "step {step}, inputs so far:\n  {}",
                history_log.join("\n  ")
            )
        };
        let outstanding_before = server.outstanding_requests();
        let unregistered: Vec<ConnId> = (0..CONNS)
            .map(|n| ConnId::new(u64::from(n)))
            .filter(|&c| server.name_of(c).is_none())
            .collect();
        let effects = server.handle(now, input);
        if let Some((true, _)) = gave {
            assert!(
                effects.is_empty(),
                "an answer not outstanding did something\n{}",
                context()
            );
            assert_eq!(
                server.outstanding_requests(),
                outstanding_before,
                "{}",
                context()
            );
        }
        let logged_in_with = match &gave {
            Some((false, Answer::LoggedIn { offline })) => Some(offline.clone()),
            _ => None,
        };
        observe_accounts(
            &server,
            &unregistered,
            &effects,
            &mut store,
            &mut pending,
            logged_in_with.as_deref(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", context()));
        observe(
            &effects
                .iter()
                .filter(|e| matches!(e, Effect::Deliver { .. } | Effect::Close { .. }))
                .cloned()
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", context()));
        if let Err(e) = server.check_invariants() {
            panic!("invariant broken: {e}\n{}", context());
        }
    }
}

/// The accounts run's checks of one input's effects (see
/// [`check_server_accounts`]); keeps the store and the pending requests.
fn observe_accounts(
    server: &Server,
    unregistered: &[ConnId],
    effects: &[Effect],
    store: &mut FuzzStore,
    pending: &mut Vec<(RequestId, Request)>,
    logged_in_with: Option<&[Past]>,
) -> Result<(), String> {
    // Per connection: the HISTORY lines since its last REPLAYED, and what
    // came just before them (JOIN or WELCOME: a replay of the latest).
    let mut replaying: BTreeMap<ConnId, (Option<String>, Vec<Past>)> = BTreeMap::new();
    let mut offline_seen: BTreeMap<ConnId, Vec<u64>> = BTreeMap::new();
    let stored_before: Vec<u64> = store.offline.values().flatten().map(Past::id).collect();
    let mut welcomed: Vec<(ConnId, Name)> = Vec::new();
    for effect in effects {
        match effect {
            Effect::Store(op) => store.keep(op),
            Effect::Request { id, request } => {
                let shown = format!("{effect:?}");
                if let Some(p) = PASSWORDS.iter().find(|p| shown.contains(*p)) {
                    return Err(format!("password {p:?} shows in {shown}"));
                }
                pending.push((*id, request.clone()));
            }
            Effect::Close { .. } => {}
            Effect::Deliver { to, event } => {
                match event.event() {
                    Event::History(p) if matches!(p.event(), Event::Dm { .. }) => {
                        offline_seen.entry(*to).or_default().push(p.id());
                    }
                    Event::History(p) => replaying.entry(*to).or_default().1.push(p.clone()),
                    Event::Replayed { scope, count } => {
                        let (before, lines) = replaying.remove(to).unwrap_or_default();
                        if lines.len() != *count as usize {
                            return Err(format!(
                                "{to:?}: REPLAYED {scope} {count} after {} lines",
                                lines.len()
                            ));
                        }
                        let log = store
                            .lines
                            .get(&scope_key_of(scope))
                            .map_or(&[][..], Vec::as_slice);
                        let ids: Vec<u64> = lines.iter().map(Past::id).collect();
                        let start = log.iter().position(|p| Some(&p.id()) == ids.first());
                        let run = start.map(|s| &log[s..(s + ids.len()).min(log.len())]);
                        let gapless = ids.is_empty()
                            || run.is_some_and(|r| r.iter().map(Past::id).eq(ids.iter().copied()));
                        if !gapless {
                            return Err(format!(
                                "{to:?}: replay of {scope} {ids:?} is no run of the store's lines"
                            ));
                        }
                        if lines
                            .iter()
                            .zip(run.unwrap_or_default())
                            .any(|(a, b)| a != b)
                        {
                            return Err(format!(
                                "{to:?}: replayed lines of {scope} differ from the stored ones"
                            ));
                        }
                        if before.is_some() {
                            let latest: Vec<u64> =
                                log.iter().rev().take(REPLAY).rev().map(Past::id).collect();
                            if ids != latest {
                                return Err(format!("{to:?}: replay of {scope} is {ids:?}, the latest are {latest:?}"));
                            }
                        }
                    }
                    Event::Welcome(name) => {
                        // Registration replays global; a rename (or a
                        // second WELCOME in the step) replays nothing.
                        let registers =
                            unregistered.contains(to) && !welcomed.iter().any(|(c, _)| c == to);
                        if registers {
                            replaying.insert(*to, (Some(format!("WELCOME {name}")), Vec::new()));
                        } else {
                            replaying.remove(to);
                        }
                        welcomed.push((*to, name.clone()));
                    }
                    Event::Join {
                        scope: scope @ Scope::Group(_),
                        name,
                    } => {
                        replaying.insert(*to, (Some(format!("JOIN {scope} {name}")), Vec::new()));
                    }
                    // The quiet-presence notice comes between WELCOME and the
                    // replay; anything else ends what a replay could follow.
                    Event::Info(_) => {}
                    _ => {
                        replaying.remove(to);
                    }
                }
            }
        }
    }
    if let Some(offline) = logged_in_with {
        let mut want: Vec<u64> = offline
            .iter()
            .filter(|p| matches!(p.event(), Event::Dm { .. }))
            .map(Past::id)
            .collect();
        want.sort_unstable();
        want.dedup();
        let got: Vec<u64> = offline_seen.values().flatten().copied().collect();
        // All the store answered, in order, and besides only messages it
        // was told to keep (stored while the login was checked).
        let answered_all = want.iter().all(|id| got.contains(id));
        let known = got
            .iter()
            .all(|id| want.contains(id) || stored_before.contains(id));
        let ascending = got.windows(2).all(|p| p[0] < p[1]);
        let right = answered_all && known && ascending;
        if !got.is_empty() && !right {
            return Err(format!(
                "offline messages delivered {got:?}, the store answered {want:?}"
            ));
        }
    } else if !offline_seen.is_empty() {
        return Err(format!("offline messages {offline_seen:?} without a login"));
    }
    // Whoever was given an account's name holds it logged in (a rename to
    // the name one has is a WELCOME too, so this asks the server, after the
    // step, rather than looking for ACCOUNT in it).
    for (conn, name) in welcomed {
        let key = name.key().as_str().to_owned();
        let logged_in = server
            .account_of(conn)
            .is_some_and(|a| a.key() == name.key());
        if store.accounts.contains_key(&key) && !logged_in && server.name_of(conn).is_some() {
            return Err(format!(
                "{conn:?} took the account name {name} without logging in"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// irc_message

/// Target `irc_message`: the bytes (lossily decoded) as one IRC line.
/// `parse_message` never panics; what parses encodes (it never grows past the
/// limits) to one CRLF-terminated line with no other CR, LF or NUL, no longer
/// than the input, that parses to an equal message and re-encodes to itself;
/// errors are short, `Empty` only for blank lines, and only the length errors
/// and a bad command carry a numeric.
pub fn check_irc_message(data: &[u8]) {
    use chatproto::irc::{parse_message, IrcParseError};

    let line = String::from_utf8_lossy(data);
    let msg = match parse_message(&line) {
        Ok(msg) => msg,
        Err(e) => {
            let message = e.to_string();
            // A quoted command is escaped: 32 bytes may take 200 characters.
            assert!(message.len() <= 256, "{line:?}: error {message:?}");
            match &e {
                IrcParseError::Empty => assert!(line.trim_matches(' ').is_empty()),
                IrcParseError::TagsTooLong { .. } | IrcParseError::BodyTooLong { .. } => {
                    assert_eq!(e.numeric(), Some(417));
                    assert!(line.len() > 510, "{line:?} reported too long");
                }
                IrcParseError::BadCommand(word) => {
                    assert_eq!(e.numeric(), Some(421));
                    assert!(word.len() <= 32, "{line:?}: quotes {word:?}");
                }
                _ => assert_eq!(e.numeric(), None, "{e:?}"),
            }
            return;
        }
    };
    let mut bytes = Vec::new();
    msg.encode(&mut bytes)
        .unwrap_or_else(|e| panic!("{line:?} parsed to {msg:?}, which does not encode: {e}"));
    let encoded = std::str::from_utf8(&bytes).expect("encoders write UTF-8");
    let body = encoded.strip_suffix("\r\n").expect("lines end with CRLF");
    assert!(
        !body.contains(['\r', '\n', '\0']),
        "{line:?} encoded as {body:?}"
    );
    assert!(
        body.len() <= line.trim_start_matches(' ').len(),
        "{line:?} grew to {body:?}"
    );
    let again = parse_message(body)
        .unwrap_or_else(|e| panic!("{line:?} parsed to {msg:?}, re-encoded as {body:?}: {e}"));
    assert_eq!(again, msg, "{line:?} re-encoded as {body:?}");
    let mut twice = Vec::new();
    again.encode(&mut twice).expect("it encoded before");
    assert_eq!(twice, bytes, "{body:?} is not canonical");
}

/// Target `irc_session`: a program of lines, one per LF-separated piece, for
/// three IRC sessions and one native user on a real `Server`. A piece starting
/// `0`, `1` or `2` is an IRC line from that session (over the frame limit:
/// `LineTooLong`; not UTF-8: `BadEncoding`); `n` a native line from the native
/// user; `x0`..`x2` drops that session's connection; `t` lets 61 seconds pass
/// in ticks; anything else goes to session `byte % 3`. Nothing panics; every
/// IRC line produced (replies, own lines, shared encodings) parses with
/// `parse_message`, ends with CRLF and is at most 512 bytes without its tags;
/// two sessions of one dialect get the same shared bytes; the server's
/// invariants hold after every input. The server keeps accounts (`acct`,
/// password `hunter22`) and history, and its requests are answered at once,
/// so SASL, `PASS`, NickServ and replays run too.
pub fn check_irc_session(data: &[u8]) {
    use chatproto::irc::{
        encode_shared, parse_message, Delivery, IrcConfig, IrcSession, FRAME_LIMIT, MAX_LINE_LEN,
    };
    use chatproto::server::Time;

    fn check_lines(bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("IRC output is UTF-8");
        assert!(text.is_empty() || text.ends_with("\r\n"), "{text:?}");
        for line in text.split_terminator("\r\n") {
            let msg = parse_message(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let body = match line.strip_prefix('@') {
                Some(tagged) => tagged.split_once(' ').map_or("", |(_, b)| b),
                None => line,
            };
            assert!(body.len() + 2 <= MAX_LINE_LEN, "{line:?} is too long");
            assert!(!msg.command().is_empty());
        }
    }

    // Accounts and history on, so logins (SASL, PASS, NickServ) and replays
    // reach the adapter; requests are answered at once by a tiny store in
    // which `acct` has the password `hunter22`.
    let mut irc_config = IrcConfig::default();
    irc_config.accounts = true;
    let config = Arc::new(irc_config);
    let mut server_config = ServerConfig::default();
    server_config.accounts = Some(AccountsConfig::default());
    server_config.history = Some(HistoryConfig::default());
    let mut server = Server::new(server_config);
    server.add_account(Name::try_from("acct").expect("a name"), 0);
    let mut store = FuzzStore::default();
    store
        .accounts
        .insert("acct".to_owned(), "hunter22".to_owned());
    let start = Instant::now();
    let mut elapsed = Duration::ZERO;
    let native = ConnId::new(100);
    let ids = [ConnId::new(0), ConnId::new(1), ConnId::new(2)];
    let mut sessions: Vec<IrcSession> = ids
        .iter()
        .map(|_| IrcSession::new(config.clone()))
        .collect();
    let mut shared: BTreeMap<(u64, String), Arc<[u8]>> = BTreeMap::new();

    let mut run =
        |server: &mut Server, sessions: &mut [IrcSession], elapsed: Duration, input: Input| {
            let time = Time {
                instant: start + elapsed,
                unix_ms: 1_796_119_200_000 + u64::try_from(elapsed.as_millis()).unwrap_or(0),
            };
            // Each answer may let queued lines ask again: bounded rounds.
            let mut inputs = vec![input];
            for _ in 0..16 {
                let Some(input) = inputs.pop() else { break };
                for effect in server.handle(time, input) {
                    let (to, event) = match effect {
                        Effect::Deliver { to, event } => (to, event),
                        Effect::Store(op) => {
                            store.keep(&op);
                            continue;
                        }
                        Effect::Request { id, request } => {
                            inputs.insert(0, Input::Answer(id, store.answer(&request)));
                            continue;
                        }
                        Effect::Close { .. } => continue,
                    };
                    let Some(i) = ids.iter().position(|&id| id == to) else {
                        continue;
                    };
                    match sessions[i].on_event(&event) {
                        Delivery::Nothing => {}
                        Delivery::Lines(bytes) => check_lines(&bytes),
                        Delivery::Shared => {
                            let caps = sessions[i].caps();
                            let bytes = encode_shared(&event, caps, &config);
                            check_lines(&bytes);
                            let key = (event.id(), format!("{:?}", caps.dialect()));
                            let first = shared.entry(key).or_insert_with(|| bytes.clone());
                            assert_eq!(*first, bytes, "one dialect, one encoding");
                        }
                    }
                }
                server.check_invariants().unwrap();
            }
        };

    for &id in ids.iter().chain([&native]) {
        run(&mut server, &mut sessions, elapsed, Input::Connected(id));
    }
    let nat = parse_line("nat").expect("a valid name");
    run(
        &mut server,
        &mut sessions,
        elapsed,
        Input::Line(native, nat),
    );

    for piece in data.split(|&b| b == b'\n').take(200) {
        elapsed += Duration::from_secs(1);
        let Some((&first, rest)) = piece.split_first() else {
            continue;
        };
        let target = match first {
            b'0'..=b'2' => usize::from(first - b'0'),
            b'n' => {
                if let Ok(Ok(cmd)) = std::str::from_utf8(rest).map(parse_line) {
                    run(
                        &mut server,
                        &mut sessions,
                        elapsed,
                        Input::Line(native, cmd),
                    );
                }
                continue;
            }
            b'x' => {
                let i = usize::from(rest.first().copied().unwrap_or(0) % 3);
                let gone = Input::Disconnected(ids[i], CloseReason::ConnectionLost);
                run(&mut server, &mut sessions, elapsed, gone);
                continue;
            }
            b't' => {
                for _ in 0..61 {
                    elapsed += Duration::from_secs(1);
                    run(&mut server, &mut sessions, elapsed, Input::Tick);
                }
                continue;
            }
            other => usize::from(other % 3),
        };
        let line = if rest.len() > FRAME_LIMIT {
            Err(FrameError::LineTooLong { max: FRAME_LIMIT })
        } else {
            std::str::from_utf8(rest).map_err(|e| FrameError::BadEncoding {
                at: e.valid_up_to(),
            })
        };
        let from = sessions[target].on_line(line);
        check_lines(&from.reply);
        for cmd in from.commands {
            run(
                &mut server,
                &mut sessions,
                elapsed,
                Input::Line(ids[target], cmd),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_lines_parse() {
        for line in DICTIONARY {
            assert!(parse_line(line).is_ok(), "{line:?}");
        }
    }

    /// A program using /say, /act, /whois and /count in and out of groups,
    /// registered or not, with time passing: the server agrees with the model.
    #[test]
    fn server_model_knows_the_scope_and_query_commands() {
        let line = |c: u8, text: &str| {
            let i = DICTIONARY
                .iter()
                .position(|l| *l == text)
                .expect("in DICTIONARY");
            [1, c, u8::try_from(i).expect("a small dictionary")]
        };
        let mut program = vec![0, 0, 0, 1, 0, 2];
        for (c, text) in [
            (0, "ann"),
            (1, "bob"),
            (0, "/join rust"),
            (1, "/join Rust"),
            (0, "/say * hi all"),
            (0, "/say GO in go"),
            (1, "/act Rust nods"),
        ] {
            program.extend(line(c, text));
        }
        // Six seconds pass in ticks 2 s apart (a longer gap would be a stall).
        program.extend([5, 2, 5, 2, 5, 2]);
        for (c, text) in [
            (0, "/whois BOB"),
            (2, "/whois ann"),
            (1, "/whois nobody"),
            (1, "/count"),
            (2, "carol"),
            (2, "/say rust in rust"),
            (2, "/act * dances"),
            (2, "/count"),
        ] {
            program.extend(line(c, text));
        }
        check_server(&program);
    }

    /// A program of account and history commands with the store answering,
    /// late, twice, wrongly and for connections that left: the accounts
    /// run's checks hold.
    #[test]
    fn server_accounts_run_holds_on_an_account_story() {
        let line = |c: u8, text: &str| {
            let i = ACCOUNT_DICTIONARY
                .iter()
                .chain(DICTIONARY)
                .position(|l| *l == text)
                .expect("in a dictionary");
            [1, c, u8::try_from(i).expect("a small dictionary")]
        };
        // Answer the oldest pending request truthfully.
        let yes = [8, 0, 0];
        let mut program = vec![9, 0, 1, 9, 1, 1, 0, 2];
        program.extend(line(0, "ann"));
        program.extend(line(0, "/register hunter22"));
        program.extend(line(0, "/join rust"));
        program.extend(yes);
        program.extend(line(0, "hello all"));
        program.extend(line(1, "acct"));
        program.extend(line(1, "/login ACCT wrong-pw"));
        program.extend(yes);
        program.extend([5, 2]);
        program.extend(line(1, "/login acct hunter22"));
        program.extend([5, 2, 5, 1]);
        program.extend(yes);
        program.extend(line(1, "/join Rust"));
        program.extend(line(1, "/history 5 104"));
        program.extend(yes);
        program.extend(line(0, "/quit"));
        program.extend(line(2, "bob"));
        program.extend(line(2, "/msg ann offline?"));
        program.extend(line(2, "/msg ann offline?"));
        program.extend(line(2, "/msg ann offline?"));
        program.extend(line(2, "/login ann hunter22"));
        program.extend(yes);
        program.extend([8, 9, 0, 8, 0, 2]); // twice, and nothing pending
        program.extend(line(1, "/unregister hunter22"));
        program.extend([8, 0, 3]); // an answer of the wrong kind
        program.extend(line(1, "/history"));
        check_server(&program);
    }

    /// The IRC check holds on lines that parse and lines that do not (and is
    /// used in every crate that includes this file, so never dead code).
    #[test]
    fn irc_check_holds_on_sample_lines() {
        let lines = [
            "@a=\\s;b :s PRIVMSG #a :hi there",
            "001 ann :",
            "",
            "PRIV1 x",
            ": x",
        ];
        for line in lines {
            check_irc_message(line.as_bytes());
        }
    }
}
