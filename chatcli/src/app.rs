//! The client's loop: races the keyboard, the server, signals and timers on one
//! thread, keeps the [`Session`], and decides what to send, print and when to stop.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_channel::Receiver;
use chatproto::{
    parse_line, AccountState, Command, ErrorCode, Event, GroupName, Name, Password, Scope, Session,
    Text, Token, DEFAULT_MAX_LINE,
};
use futures_lite::future::{self, BoxedLocal};
use smol::Timer;

use crate::fullui::Alerts;
use crate::input::{Console, Input, TermOptions, PASTE_MAX_LINES};
use crate::net::{Connection, NetEvent, OpenError, TlsSetup};
use crate::render::{self, Line, Stamp};
use crate::roster::Roster;
use crate::views::{self, Origin, Target, ViewKey, When};

/// How long to wait for the server's `BYE` after `/quit` before closing anyway.
const QUIT_WAIT: Duration = Duration::from_secs(3);
/// How long to wait for the answer to a name, `/join` or `/leave` before
/// reading on regardless.
const ANSWER_WAIT: Duration = Duration::from_secs(10);
/// The same for a `/login`: a server slows wrong passwords down (chatd: up to
/// 16 s, PROTOCOL.md section 7).
const LOGIN_WAIT: Duration = Duration::from_secs(30);
/// Lines typed (or pasted) while an answer is awaited; past this they are refused.
const MAX_PENDING: usize = PASTE_MAX_LINES;
/// Reconnection back-off: first wait and ceiling.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What the command line asked for.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) addr: String,
    /// TLS over each connection (`--tls`, `chats://`, ...), or plaintext.
    pub(crate) tls: Option<TlsSetup>,
    pub(crate) name: Option<Name>,
    /// With `name`: log in to that account at connect, and after each
    /// reconnection (`--password-file`, `CHAT_PASSWORD`).
    pub(crate) password: Option<Password>,
    pub(crate) colour: bool,
    pub(crate) reconnect: bool,
    /// The full-screen mode when stdin and stdout are a terminal (else `--plain`).
    pub(crate) full_screen: bool,
    /// Bell and window title for mentions and DMs (full-screen mode).
    pub(crate) alerts: Alerts,
    /// After this long without a line from the server, ask it for a `PONG`;
    /// after as long again without any line, the connection counts as lost.
    pub(crate) keepalive: Duration,
}

/// How the client ended, as an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The person left (`/quit`, Ctrl+C, Ctrl+D, end of piped input, a signal).
    Quit,
    /// The server went away or could not be reached.
    Lost,
}

/// A line whose answer changes what the next lines mean was sent (a name,
/// `/nick`, `/join`, `/leave`: a plain line is a name until `WELCOME`, and the
/// local copy of a message must show the scope the server confirmed), followed
/// by `/ping <token>`. The protocol ties no `ERR` to the line that caused it,
/// so an `ERR` cannot tell whether it answers this line or an earlier one (a
/// `/msg` to nobody, say). But the server answers a connection's lines in
/// order: once `PONG <token>` is back, every answer to the lines before it has
/// arrived, and the session shows whether the name or group was taken.
#[derive(Debug)]
struct Awaiting {
    token: Token,
    until: Instant,
    /// The name was sent by the client itself (`--name`, or after a reconnection),
    /// so if it is refused the person must be told to type one.
    automatic: bool,
}

/// What woke the loop.
enum Wake {
    Input(std::io::Result<Input>),
    Connected(Result<Connection, OpenError>),
    Net(NetEvent),
    Signal,
    Timer,
}

struct App {
    opts: Options,
    console: Console,
    /// SIGINT (outside raw mode), SIGTERM, SIGHUP.
    signals: Receiver<()>,
    conn: Option<Connection>,
    /// A connection attempt under way. It is raced in [`App::wait`] like the
    /// rest rather than awaited alone, so that keys and signals still work
    /// while a server that drops packets keeps the client waiting (up to the
    /// connect timeout).
    connecting: Option<BoxedLocal<Result<Connection, OpenError>>>,
    /// A connection was made before: the next one is a reconnection.
    was_connected: bool,
    session: Session,
    /// A name, `/nick`, `/join` or `/leave` was sent and not answered yet.
    /// Piped lines wait for it, so that a script's second line is not taken as a
    /// name retry (or a name as a message), and is echoed in the right scope.
    awaiting: Option<Awaiting>,
    /// How many answers were awaited so far: makes each `/ping` token unique.
    answers_awaited: u64,
    /// Lines typed on the terminal while an answer is awaited, a connection
    /// attempted or a write held up; sent in order once that is over.
    pending: VecDeque<String>,
    /// `/quit` was sent; leave at `BYE`, at EOF, or at this deadline.
    quitting: Option<Instant>,
    /// The name to register again after a reconnection.
    last_name: Option<Name>,
    /// The group to join again once re-registered.
    rejoin: Option<GroupName>,
    /// When to try to reconnect, and the wait after that.
    reconnect_at: Option<Instant>,
    backoff: Duration,
    /// Set when the connection is closing for a reason worth an exit status.
    exit: Option<Exit>,
    /// Who is where, for the member list and completion.
    roster: Roster,
    /// When the server last sent a line (or the connection was made).
    last_heard: Instant,
    /// A keepalive `/ping` was sent at this time and nothing has come since.
    probing: Option<Instant>,
    /// `/users` sent by the client itself (full-screen mode, for the member
    /// list) whose replies are not shown.
    auto_users: u32,
    /// The same for `/groups` (for completing group names).
    auto_groups: u32,
    /// The client's own `/login` (`--password-file`) awaits its answer; the
    /// code of the `ERR` that refused it, once one came.
    logging_in: Option<Option<ErrorCode>>,
    /// The account to log in to at each (re)connection: from the flags, then
    /// whatever an account command typed here made true (`/login`,
    /// `/register`, `/passwd`; `/unregister` forgets it). Kept in memory only.
    credentials: Option<(Name, Password)>,
    /// What the last account command sent will make the credentials once
    /// the server says `ACCOUNT` (`None` inside: forget them).
    sent_credentials: Option<Option<(Name, Password)>>,
    /// `/history` lines sent whose `REPLAYED` has not come yet: that one
    /// says so even when nothing earlier was found.
    history_asked: u32,
    /// The id of the oldest `HISTORY` line of the replay under way, for the
    /// hint to page further back.
    replay_first_id: Option<u64>,
    /// Said on stderr once the terminal is given back (the full-screen
    /// mode's screen is gone by then): why the client gave up.
    farewell: Option<String>,
}

/// The local time of day, for stamps.
fn now_stamp() -> Stamp {
    let now = jiff::ZonedDateTime::now();
    // hour() is 0..=23 and minute() 0..=59, so both fit in u8.
    Stamp::new(
        u8::try_from(now.hour()).unwrap_or(0),
        u8::try_from(now.minute()).unwrap_or(0),
    )
}

/// The local time with seconds and the day, for the full-screen views.
fn now_when() -> When {
    when_of(&jiff::ZonedDateTime::now())
}

/// When a `HISTORY` line was said (ms since the Unix epoch), in the local
/// time zone; now if the server did not know.
fn when_said(unix_ms: u64) -> When {
    match render::said_at(unix_ms, &jiff::ZonedDateTime::now()) {
        Some(at) => when_of(&at),
        None => now_when(),
    }
}

fn when_of(now: &jiff::ZonedDateTime) -> When {
    let local_secs = now.timestamp().as_second() + i64::from(now.offset().seconds());
    When {
        day: i32::try_from(local_secs.div_euclid(86_400)).unwrap_or(0),
        // hour() is 0..=23, minute() and second() 0..=59 (a leap second is 59).
        hour: u8::try_from(now.hour()).unwrap_or(0),
        minute: u8::try_from(now.minute()).unwrap_or(0),
        second: u8::try_from(now.second()).unwrap_or(0),
    }
}

/// A line typed in the view in front of the full-screen mode (none in the
/// other modes), as the command it means there: see [`App::meant_in_view`].
/// `Err` with the reason and the line when it cannot be sent from there.
fn route(line: String, console: &Console, session: &Session) -> Result<String, (String, String)> {
    let Some((view, title)) = console.current_view() else {
        return Ok(line);
    };
    route_in(line, &view, &title, session)
}

/// [`route`] for the view `view` titled `title`. Pure.
fn route_in(
    line: String,
    view: &ViewKey,
    title: &str,
    session: &Session,
) -> Result<String, (String, String)> {
    let command = line.starts_with('/') && !line.starts_with("//");
    if line.is_empty() || command || !session.is_registered() {
        return Ok(line);
    }
    // `//text` is text starting with a slash; inside /say and /msg it is literal.
    let text = line
        .strip_prefix('/')
        .filter(|t| t.starts_with('/'))
        .unwrap_or(&line);
    match view {
        _ if *view == ViewKey::of_scope(session.scope()) => Ok(line),
        ViewKey::Global => Ok(format!("/say * {text}")),
        ViewKey::Dm(_) => Ok(format!("/msg {title} {text}")),
        ViewKey::Group(_) => Err((
            format!("you are not in {title} now (/join {title}); the line is kept in the input"),
            line,
        )),
    }
}

/// Runs the client until the person quits or the server is gone.
pub(crate) async fn run(opts: Options, signals: Receiver<()>) -> Exit {
    let console = Console::open(TermOptions {
        colour: opts.colour,
        full_screen: opts.full_screen,
        alerts: opts.alerts,
    });
    // For the test that a panic gives the terminal back (tests/full_screen.rs):
    // there is no other way to make this client panic on purpose.
    if std::env::var_os("CHATCLI_PANIC_FOR_TEST").is_some() {
        panic!("CHATCLI_PANIC_FOR_TEST is set");
    }
    let credentials = opts.name.clone().zip(opts.password.clone());
    let mut app = App {
        last_name: opts.name.clone(),
        opts,
        console,
        signals,
        conn: None,
        connecting: None,
        was_connected: false,
        session: Session::new(),
        awaiting: None,
        answers_awaited: 0,
        pending: VecDeque::new(),
        quitting: None,
        rejoin: None,
        reconnect_at: None,
        backoff: BACKOFF_FIRST,
        exit: None,
        roster: Roster::default(),
        last_heard: Instant::now(),
        probing: None,
        auto_users: 0,
        auto_groups: 0,
        logging_in: None,
        credentials,
        sent_credentials: None,
        history_asked: 0,
        replay_first_id: None,
        farewell: None,
    };
    app.start_connect();
    let exit = app.main_loop().await;
    if let Some(conn) = app.conn.take() {
        conn.close();
    }
    let full_screen = app.console.is_full_screen();
    app.console.finish();
    if let (true, Some(why)) = (full_screen, app.farewell) {
        eprintln!("chatcli: {why}");
    }
    exit
}

impl App {
    /// Shows lines in the view in front (or prints them).
    fn print(&mut self, lines: &[Line]) {
        self.console.show(lines, &Origin::current(), now_when());
    }

    /// The status line of the full-screen mode.
    fn status(&self) -> (String, String, String) {
        let name = match self.session.name() {
            Some(n) => n.as_str().to_owned(),
            None => "not registered".to_owned(),
        };
        let scope = render::scope_label(self.session.scope());
        let state = if self.connecting.is_some() {
            "connecting…".to_owned()
        } else if self.conn.is_none() {
            match self.reconnect_at {
                // A clock time rather than a countdown: the status line is
                // not redrawn every second.
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now()).as_secs();
                    let now = now_when();
                    let secs = (u64::from(now.hour) * 3600
                        + u64::from(now.minute) * 60
                        + u64::from(now.second)
                        + wait)
                        % 86_400;
                    format!(
                        "OFFLINE, next try at {:02}:{:02}:{:02}",
                        secs / 3600,
                        secs / 60 % 60,
                        secs % 60
                    )
                }
                None => "OFFLINE".to_owned(),
            }
        } else {
            "connected".to_owned()
        };
        (name, scope, state)
    }

    /// A line typed in a view of the full-screen mode, as the command it
    /// means there: text in a DM view is `/msg`, text in the global view while
    /// in a group is `/say *`. `None` (with a message) when it cannot be sent
    /// from there.
    fn meant_in_view(&mut self, line: String) -> Option<String> {
        match route(line, &self.console, &self.session) {
            Ok(line) => Some(line),
            Err((why, line)) => {
                self.error(&why);
                self.console.restore(line);
                None
            }
        }
    }

    fn notice(&mut self, text: &str) {
        self.print(&[render::notice(now_stamp(), text)]);
    }

    fn error(&mut self, text: &str) {
        self.print(&[render::local_error(now_stamp(), text)]);
    }

    fn prompt(&self) -> String {
        if self.connecting.is_some() {
            "[connecting]> ".to_owned()
        } else if self.conn.is_none() {
            "[offline]> ".to_owned()
        } else if !self.session.is_registered() {
            "name> ".to_owned()
        } else {
            // The scope as lines show it: `[Global]`, `[rust]`.
            format!("{}> ", render::scope_label(self.session.scope()))
        }
    }

    /// Starts a connection attempt; [`connected`](Self::connected) takes its result.
    fn start_connect(&mut self) {
        let addr = self.opts.addr.clone();
        let tls = self.opts.tls.clone();
        self.connecting = Some(Box::pin(async move {
            Connection::open(&addr, tls.as_ref()).await
        }));
    }

    /// A connection attempt ended: register the known name, if any, or give
    /// up, or plan the next attempt.
    async fn connected(&mut self, result: Result<Connection, OpenError>) {
        match result {
            Ok(conn) => {
                if self.was_connected {
                    self.notice("reconnected");
                }
                if self.opts.tls.as_ref().is_some_and(|t| t.insecure) {
                    // On every connection, not once: it stays true each time.
                    self.error(crate::tls::INSECURE_WARNING);
                }
                self.was_connected = true;
                self.conn = Some(conn);
                self.session = Session::new();
                self.roster.scope_changed();
                // Replies to /users sent on the old connection will not come.
                self.auto_users = 0;
                self.auto_groups = 0;
                self.last_heard = Instant::now();
                self.probing = None;
                self.history_asked = 0;
                self.replay_first_id = None;
                self.sent_credentials = None;
                if let Some((name, password)) = &self.credentials {
                    // The account's name, even after a rename: logged in,
                    // the name is the account's anyway.
                    let login = Command::Login {
                        name: name.clone(),
                        password: password.clone(),
                    };
                    self.logging_in = Some(None);
                    self.send(&login).await;
                    self.await_answer(true).await;
                } else if let Some(name) = &self.last_name {
                    // The plain first line is the most widely understood way
                    // to register (PROTOCOL.md); a valid name is valid text.
                    let line = Text::lossy(name.as_str());
                    self.send(&Command::Say(line)).await;
                    self.await_answer(true).await;
                }
            }
            Err(e) if e.is_permanent() => {
                // A certificate refused, or a port without TLS: no retry
                // will change it, reconnecting or not.
                let why = format!("cannot connect to {}: {e}", self.opts.addr);
                self.error(&why);
                self.farewell = Some(why);
                self.exit = Some(Exit::Lost);
            }
            Err(e) => {
                let addr = self.opts.addr.clone();
                if self.opts.reconnect {
                    let wait = self.backoff;
                    self.error(&format!(
                        "cannot connect to {addr}: {e}; trying again in {} s",
                        wait.as_secs()
                    ));
                    self.reconnect_at = Some(Instant::now() + wait);
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                } else {
                    let why = format!("cannot connect to {addr}: {e}");
                    self.error(&why);
                    self.farewell = Some(why);
                    self.exit = Some(Exit::Lost);
                }
            }
        }
        // Lines typed during the attempt: sent now (unless they wait for the
        // name's answer), or each told it was not sent.
        self.flush_pending().await;
    }

    /// Sends `cmd`; a failed write ends the connection like a read error would.
    ///
    /// A server that stops reading (paced, or hung) can hold the write for as
    /// long as it likes once the socket buffers are full, so a request to leave
    /// (a signal, or Ctrl+C or Ctrl+D on the terminal) is watched meanwhile and
    /// leaves at once: a `/quit` could not get through either. Lines typed
    /// meanwhile are queued.
    async fn send(&mut self, cmd: &Command) {
        let Self {
            conn: Some(conn),
            console,
            signals,
            pending,
            roster,
            session,
            ..
        } = self
        else {
            return;
        };
        let write = async { Some(conn.send(cmd).await) };
        let signal = async {
            if signals.recv().await.is_err() {
                // No handler could be installed: no signal will come.
                future::pending::<()>().await;
            }
        };
        let keys = async {
            if !console.is_terminal() {
                return future::pending().await;
            }
            loop {
                match console.next(roster).await {
                    // Routed now, in the view where it was typed.
                    Ok(Input::Line(line)) if pending.len() < MAX_PENDING => {
                        if let Ok(line) = route(line, console, session) {
                            pending.push_back(line);
                        }
                    }
                    Ok(Input::Lines(lines)) => {
                        let room = MAX_PENDING.saturating_sub(pending.len());
                        let routed = lines
                            .into_iter()
                            .filter_map(|l| route(l, console, session).ok());
                        pending.extend(routed.take(room));
                    }
                    // A full queue drops the line, here without a word:
                    // printing needs `self`, which the write borrows.
                    Ok(Input::Line(_) | Input::Unreadable(_) | Input::Refused(_)) => {}
                    Ok(Input::Quit | Input::Eof) | Err(_) => return,
                }
            }
        };
        let leave = async {
            future::or(signal, keys).await;
            None
        };
        match future::or(write, leave).await {
            Some(Ok(())) => {}
            Some(Err(e)) => self.connection_lost(Some(e)),
            None => {
                self.error("the server is not reading; leaving without a goodbye");
                if let Some(conn) = self.conn.take() {
                    conn.close();
                }
                self.exit = Some(Exit::Quit);
            }
        }
    }

    /// Sends the `/ping` that marks the end of the answer to the line just
    /// sent, and holds further lines until its `PONG` (see [`Awaiting`]).
    async fn await_answer(&mut self, automatic: bool) {
        if self.conn.is_none() {
            // The line's write failed: no answer will come.
            return;
        }
        self.answers_awaited += 1;
        let token = format!("chatcli-{}", self.answers_awaited);
        // "chatcli-" and the digits of a u64 are visible ASCII, well under 64 bytes.
        let token = Token::try_from(token.as_str()).expect("a valid token");
        // Set first: a failed send clears it along with the connection.
        let wait = if self.logging_in.is_some() {
            LOGIN_WAIT
        } else {
            ANSWER_WAIT
        };
        self.awaiting = Some(Awaiting {
            token: token.clone(),
            until: Instant::now() + wait,
            automatic,
        });
        self.send(&Command::Ping(Some(token))).await;
    }

    /// The server answered everything up to the awaited line: re-join the group
    /// after a reconnection, then go on with the lines that waited.
    async fn answered(&mut self, awaited: Awaiting) {
        if let Some(refused) = self.logging_in.take() {
            if !self.session.is_registered() {
                return self.login_refused(refused).await;
            }
        }
        if self.session.is_registered() {
            if let Some(group) = self.rejoin.take() {
                self.send(&Command::Join(group)).await;
                return self.await_answer(false).await;
            }
        } else if awaited.automatic && self.console.is_terminal() {
            self.notice("type another name to register");
        }
        self.flush_pending().await;
    }

    /// An account command typed here: what the credentials become if the
    /// server agrees (its `ACCOUNT` line; see [`App::credentials`]).
    fn note_account_command(&mut self, cmd: &Command) {
        let account = || self.session.account().or(self.session.name()).cloned();
        self.sent_credentials = match cmd {
            Command::Login { name, password } => Some(Some((name.clone(), password.clone()))),
            Command::Register(password) => account().map(|n| Some((n, password.clone()))),
            Command::Passwd { new, .. } => account().map(|n| Some((n, new.clone()))),
            Command::Unregister(_) => Some(None),
            _ => return,
        };
    }

    /// The client's own `/login` left it unregistered (refused with `code`,
    /// or no answer in time). A server without accounts gets the name plainly;
    /// otherwise the person is told, and stays connected to try again.
    async fn login_refused(&mut self, code: Option<ErrorCode>) {
        let Some(name) = self.credentials.as_ref().map(|(n, _)| n.clone()) else {
            return;
        };
        if code == Some(ErrorCode::Unavailable) {
            self.notice(&format!(
                "this server keeps no accounts: registering as {name} without logging in"
            ));
            self.send(&Command::Say(Text::lossy(name.as_str()))).await;
            return self.await_answer(true).await;
        }
        let why = match &code {
            Some(code) => format!("logging in as {name} failed [{code}]"),
            None => format!("logging in as {name}: no answer from the server"),
        };
        if self.console.is_terminal() {
            self.error(&format!(
                "{why}; type /login {name} <password>, or a name to register"
            ));
        } else {
            self.error(&why);
        }
        self.flush_pending().await;
    }

    async fn main_loop(&mut self) -> Exit {
        loop {
            if let Some(exit) = self.exit {
                return exit;
            }
            // Lines typed while a write was held up wait for nothing else.
            if self.awaiting.is_none() && self.connecting.is_none() {
                self.flush_pending().await;
                if let Some(exit) = self.exit {
                    return exit;
                }
            }
            let prompt = self.prompt();
            let (name, scope, state) = self.status();
            self.console.set_status(&name, &scope, &state);
            // Registered and connected: the full-screen mode shows the view's
            // conversation instead of the scope.
            let scoped =
                self.connecting.is_none() && self.conn.is_some() && self.session.is_registered();
            self.console.set_prompt(&prompt, scoped);
            self.console.redraw();
            let wake = self.wait().await;
            match wake {
                Wake::Input(Ok(input)) => self.on_input(input).await,
                Wake::Input(Err(e)) => {
                    self.error(&format!("cannot read input: {e}"));
                    self.quit(None).await;
                }
                Wake::Connected(result) => {
                    // Done: a finished future must not be polled again.
                    self.connecting = None;
                    self.connected(result).await;
                }
                Wake::Net(ev) => self.on_net(ev).await,
                Wake::Signal => self.quit(None).await,
                Wake::Timer => self.on_timer().await,
            }
        }
    }

    /// Waits for the first of: input (when it is wanted), the server, a signal,
    /// the nearest deadline.
    async fn wait(&mut self) -> Wake {
        // On a terminal the editor must be polled to show output and keys, so it
        // always is; typed lines are queued while a name is answered. Piped input
        // is left unread instead, which bounds what waits.
        let want_input = self.console.is_terminal()
            || (self.awaiting.is_none() && self.quitting.is_none() && self.connecting.is_none());
        let awaiting = self.awaiting.as_ref().map(|a| a.until);
        let keepalive = self.conn.as_ref().map(|_| match self.probing {
            Some(sent) => sent + self.opts.keepalive,
            None => self.last_heard + self.opts.keepalive,
        });
        let deadline = [awaiting, self.quitting, self.reconnect_at, keepalive]
            .into_iter()
            .flatten()
            .min();
        let Self {
            console,
            conn,
            connecting,
            signals,
            roster,
            ..
        } = self;
        let input = async {
            if want_input {
                Wake::Input(console.next(roster).await)
            } else {
                future::pending().await
            }
        };
        // Cancel-safe: the attempt lives in `self.connecting`, only borrowed here.
        let net = async {
            match (conn, connecting) {
                (Some(c), _) => Wake::Net(c.next().await),
                (None, Some(attempt)) => Wake::Connected(attempt.await),
                (None, None) => future::pending().await,
            }
        };
        let signal = async {
            match signals.recv().await {
                Ok(()) => Wake::Signal,
                // No handler could be installed: no signal will come.
                Err(_) => future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(at) => {
                    Timer::at(at).await;
                    Wake::Timer
                }
                None => future::pending().await,
            }
        };
        // Input first: on a terminal, polling the editor is what prints queued output.
        future::or(future::or(input, net), future::or(signal, timer)).await
    }

    async fn on_input(&mut self, input: Input) {
        match input {
            // Leaving: what is typed now would follow the /quit.
            Input::Line(_) if self.quitting.is_some() => {}
            Input::Line(line) => {
                self.typed(line).await;
            }
            Input::Lines(lines) => {
                for line in lines {
                    if self.quitting.is_some() || self.exit.is_some() || !self.typed(line).await {
                        break;
                    }
                }
            }
            Input::Unreadable(e) => self.error(&format!("input {e}")),
            Input::Refused(why) => self.error(&why),
            Input::Quit | Input::Eof => self.quit(None).await,
        }
    }

    /// A line typed or pasted: handled now, or queued while an answer or the
    /// connection is awaited. False if it fits no view (it stays in the
    /// input), which ends a paste there too.
    async fn typed(&mut self, line: String) -> bool {
        let Some(line) = self.meant_in_view(line) else {
            return false;
        };
        if self.awaiting.is_some() || self.connecting.is_some() {
            if self.pending.len() < MAX_PENDING {
                self.pending.push_back(line);
            } else {
                self.error("still waiting for the server's answer; line dropped");
            }
        } else {
            self.on_line(&line).await;
        }
        true
    }

    /// One line the person typed.
    async fn on_line(&mut self, line: &str) {
        if line.is_empty() {
            return;
        }
        if line.len() > DEFAULT_MAX_LINE {
            let n = line.len();
            return self.error(&format!(
                "line of {n} bytes is longer than the {DEFAULT_MAX_LINE} a server accepts, not sent"
            ));
        }
        let cmd = match parse_line(line) {
            Ok(cmd) => cmd,
            Err(e) => return self.error(&e.to_string()),
        };
        match cmd {
            Command::Help => {
                let help = render::help();
                return self.print(&help);
            }
            Command::Quit(reason) => return self.quit(reason).await,
            _ => {}
        }
        if self.conn.is_none() {
            if self.console.is_terminal() {
                self.error("not connected; the line is kept in the input");
                self.console.restore(line.to_owned());
                return;
            }
            return self.error("not connected; the line was not sent");
        }
        let registering = !self.session.is_registered();
        if registering {
            if let Command::Say(text) = &cmd {
                // Before registration a plain line is the name: check it here.
                if let Err(e) = Name::try_from(text.as_str()) {
                    return self.error(&format!("not a valid name: {e}"));
                }
            }
        }
        let changes_meaning = match &cmd {
            Command::Say(_) => registering,
            Command::Nick(_) => true,
            Command::Join(_) | Command::Leave => !registering,
            // A login registers, or renames.
            Command::Login { .. } => true,
            _ => false,
        };
        if matches!(cmd, Command::History { .. }) {
            self.history_asked += 1;
        }
        self.note_account_command(&cmd);
        self.send(&cmd).await;
        if self.conn.is_none() {
            // The write failed and said so: no local copy of a line not sent.
            return;
        }
        if changes_meaning {
            self.await_answer(false).await;
        }
        if let Some(echo) = render::own(&cmd, &self.session, now_stamp()) {
            let scope = match &cmd {
                Command::SayIn { scope, .. } | Command::MeIn { scope, .. } => scope.clone(),
                _ => self.session.scope().clone(),
            };
            let title = render::scope_title(&scope);
            let target = Target::View(ViewKey::of_scope(&scope));
            let origin = Origin {
                target: &target,
                title: &title,
                me: None,
                from_other: false,
                private: false,
                history: None,
            };
            self.console.show(&[echo], &origin, now_when());
        }
    }

    /// Lines typed while an answer was awaited (or a write held up), in
    /// order, until one of them again awaits one. None once leaving: they
    /// would follow the `/quit`.
    async fn flush_pending(&mut self) {
        if self.quitting.is_some() || self.exit.is_some() {
            self.pending.clear();
            return;
        }
        while self.awaiting.is_none() {
            let Some(line) = self.pending.pop_front() else {
                return;
            };
            self.on_line(&line).await;
        }
    }

    /// Starts leaving: `/quit` to the server, then wait for its `BYE` (bounded).
    /// A second request, or no connection, leaves at once.
    async fn quit(&mut self, reason: Option<Text>) {
        if self.quitting.is_some() || self.conn.is_none() {
            self.exit = Some(Exit::Quit);
            return;
        }
        self.send(&Command::Quit(reason)).await;
        if self.conn.is_none() {
            // The write failed: nothing to wait for.
            self.exit = Some(Exit::Quit);
            return;
        }
        self.quitting = Some(Instant::now() + QUIT_WAIT);
    }

    async fn on_net(&mut self, ev: NetEvent) {
        let at = now_stamp();
        if !matches!(ev, NetEvent::Closed(_)) {
            self.last_heard = Instant::now();
            self.probing = None;
        }
        match ev {
            NetEvent::Event(Event::Pong(token))
                if self.awaiting.as_ref().is_some_and(|a| a.token == token) =>
            {
                // Our own marker, not worth a line; a late one (after
                // ANSWER_WAIT) is shown like any other PONG.
                if let Some(awaited) = self.awaiting.take() {
                    self.answered(awaited).await;
                }
            }
            NetEvent::Event(Event::Pong(token)) if token.as_str().starts_with("chatcli-alive-") => {
                // A keepalive's answer: the server is there, nothing to show.
            }
            NetEvent::Event(Event::Hello {
                server, version, ..
            }) if self.last_name.is_some() => {
                // The greeting asks for a name, which the client sends itself.
                let line = render::hello_short(&server, &version, at);
                self.print(&[line]);
            }
            NetEvent::Event(Event::Groups(_)) if self.auto_groups > 0 => {
                // Group names for completion, asked for by the client itself.
                self.auto_groups -= 1;
                if let NetEvent::Event(event) = ev {
                    self.roster.handle(&event, &self.session);
                }
            }
            NetEvent::Event(Event::Users { .. }) if self.auto_users > 0 => {
                // The member list asked for by the client itself: not shown as a line.
                self.auto_users -= 1;
                if let NetEvent::Event(event) = ev {
                    self.roster.handle(&event, &self.session);
                    self.members_changed();
                }
            }
            NetEvent::Event(Event::Replayed { scope, count }) => {
                let asked = self.history_asked > 0;
                self.history_asked = self.history_asked.saturating_sub(1);
                let first = self.replay_first_id.take();
                if let Some(line) = render::replayed(&scope, count, first, asked, at) {
                    let target = Target::View(ViewKey::of_scope(&scope));
                    let title = render::scope_title(&scope);
                    let origin = Origin {
                        target: &target,
                        title: &title,
                        me: None,
                        from_other: false,
                        private: false,
                        history: None,
                    };
                    self.console.show(&[line], &origin, now_when());
                }
            }
            NetEvent::Event(event) => {
                if let (Event::Err { code, .. }, Some(refused @ None)) =
                    (&event, &mut self.logging_in)
                {
                    // The answer to our own /login (the only line in flight).
                    *refused = Some(code.clone());
                }
                let when = match &event {
                    Event::History(past) => {
                        if past.scope().is_some() {
                            let id = past.id();
                            self.replay_first_id =
                                Some(self.replay_first_id.map_or(id, |f| f.min(id)));
                        }
                        when_said(past.unix_ms())
                    }
                    _ => now_when(),
                };
                // Render first: the old name must still be ours on a rename.
                if let Some(line) = render::event(&event, &self.session, at) {
                    let (target, title, from_other, private) = self.meta_of(&event);
                    let me = self.session.name().map(|n| n.as_str().to_owned());
                    let origin = Origin {
                        target: &target,
                        title: &title,
                        me: me.as_deref(),
                        from_other,
                        private,
                        history: match &event {
                            Event::History(past) => Some(past.id()),
                            _ => None,
                        },
                    };
                    self.console.show(&[line], &origin, when);
                }
                let scope_before = self.session.scope().clone();
                let was_registered = self.session.is_registered();
                let old_name = self.session.name().cloned();
                if let Some(reply) = self.session.handle(&event) {
                    self.send(&reply).await;
                }
                self.roster.handle(&event, &self.session);
                if let (Event::Welcome(new), Some(old)) = (&event, &old_name) {
                    self.roster.rename(old.as_str(), new.as_str());
                }
                self.after_event(&event);
                let moved = *self.session.scope() != scope_before;
                let registered = !was_registered && self.session.is_registered();
                if moved {
                    if let Scope::Group(g) = self.session.scope() {
                        // A group just joined comes to the front, as in weechat.
                        self.console
                            .show_view(ViewKey::of_scope(self.session.scope()), g.as_str());
                    }
                }
                if (moved || registered) && self.console.is_full_screen() {
                    // The member list of the new scope.
                    self.auto_users += 1;
                    self.send(&Command::Users).await;
                }
                if registered && self.console.is_full_screen() {
                    self.auto_groups += 1;
                    self.send(&Command::Groups).await;
                }
                self.members_changed();
            }
            NetEvent::Unparsed { raw, err } => self.print(&[render::unparsed(&raw, &err, at)]),
            NetEvent::Unframed(err) => self.print(&[render::frame_error(&err, at)]),
            NetEvent::Closed(err) => self.connection_lost(err),
            NetEvent::SpeaksTls => {
                // Not worth reconnecting: the port will want TLS again.
                if let Some(conn) = self.conn.take() {
                    conn.close();
                }
                let why = format!(
                    "{} answered with TLS: it is a TLS port; connect with chats://{} (or --tls)",
                    self.opts.addr, self.opts.addr
                );
                self.error(&why);
                self.farewell = Some(why);
                self.exit = Some(Exit::Lost);
            }
        }
    }

    /// Where an event's line goes in the full-screen mode: its view, the
    /// view's title, whether someone else said it and whether it is a DM to us.
    fn meta_of(&self, event: &Event) -> (Target, String, bool, bool) {
        let target = views::target_of(event, &self.session);
        match event {
            // In the view of the line it repeats. A DM said to us while we
            // were away is news (unread, marked); other lines are not.
            Event::History(past) => {
                let (target, title, from_other, private) = self.meta_of(past.event());
                if private {
                    (target, title, from_other, private)
                } else {
                    (target, title, false, false)
                }
            }
            Event::Msg { scope, from, .. } | Event::Me { scope, from, .. } => (
                target,
                render::scope_title(scope),
                !self.session.is_me(from),
                false,
            ),
            Event::Dm { from, to, .. } => {
                let mine = self.session.is_me(from);
                let partner = if mine { to } else { from };
                (target, partner.as_str().to_owned(), !mine, !mine)
            }
            Event::Join { scope, .. } | Event::Part { scope, .. } => {
                (target, render::scope_title(scope), false, false)
            }
            _ => (target, String::new(), false, false),
        }
    }

    /// Tells the full-screen mode the members of our scope, and everyone.
    fn members_changed(&mut self) {
        let members = self
            .roster
            .members()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let everyone = self
            .roster
            .everyone()
            .into_iter()
            .map(str::to_owned)
            .collect();
        self.console
            .set_members(ViewKey::of_scope(self.session.scope()), members, everyone);
    }

    /// State changes that follow an event, beyond the session's own.
    fn after_event(&mut self, event: &Event) {
        if let Event::Err { .. } = event {
            // Likely the refusal of the account command in flight (an ERR
            // does not say): its credentials must not outlive it.
            self.sent_credentials = None;
        }
        if let Event::Account { state, .. } = event {
            // The answer to the last account command typed here; an ACCOUNT
            // for the client's own login at connect leaves them as they are.
            if let Some(sent) = self.sent_credentials.take() {
                match state {
                    AccountState::Unregistered => self.credentials = None,
                    AccountState::Registered
                    | AccountState::LoggedIn
                    | AccountState::PasswordChanged => self.credentials = sent,
                    _ => {}
                }
            }
        }
        if let Event::Welcome(name) = event {
            // Registered (or renamed): the name to use after a reconnection.
            self.last_name = Some(name.clone());
            self.backoff = BACKOFF_FIRST;
        }
    }

    /// The connection ended without our `/quit` being answered: leave, or
    /// reconnect later.
    fn connection_lost(&mut self, err: Option<std::io::Error>) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        conn.close();
        if self.quitting.is_some() {
            self.exit = Some(Exit::Quit);
            return;
        }
        let addr = self.opts.addr.clone();
        let why = match err {
            Some(e) => format!("connection to {addr} lost: {e}"),
            None => format!("connection to {addr} closed by the server"),
        };
        self.awaiting = None;
        self.logging_in = None;
        if self.opts.reconnect {
            self.rejoin = self.session.scope().group().cloned().or(self.rejoin.take());
            let wait = self.backoff;
            self.error(&format!("{why}; reconnecting in {} s", wait.as_secs()));
            self.reconnect_at = Some(Instant::now() + wait);
            self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        } else {
            self.error(&why);
            self.farewell = Some(why);
            self.exit = Some(Exit::Lost);
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.quitting.is_some_and(|at| at <= now) {
            self.notice("no goodbye from the server; closing anyway");
            self.exit = Some(Exit::Quit);
            return;
        }
        if self.awaiting.as_ref().is_some_and(|a| a.until <= now) {
            self.awaiting = None;
            match self.logging_in.take() {
                // Our own login went unanswered: said as such.
                Some(refused) if !self.session.is_registered() => {
                    self.login_refused(refused).await;
                }
                _ => {
                    self.error("no answer from the server in time; going on");
                    self.flush_pending().await;
                }
            }
        }
        if self.reconnect_at.is_some_and(|at| at <= now) {
            self.reconnect_at = None;
            self.start_connect();
        }
        if self.conn.is_some() {
            let wait = self.opts.keepalive;
            match self.probing {
                Some(sent) if sent + wait <= now => {
                    let secs = (now - self.last_heard).as_secs();
                    self.connection_lost(Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the server has said nothing for {secs} s"),
                    )));
                }
                None if self.last_heard + wait <= now => {
                    // Silence: ask for a sign of life (shown if it comes late
                    // as a PONG line, which is harmless).
                    self.probing = Some(now);
                    self.answers_awaited += 1;
                    let token = format!("chatcli-alive-{}", self.answers_awaited);
                    // Visible ASCII, well under 64 bytes.
                    let token = Token::try_from(token.as_str()).expect("a valid token");
                    self.send(&Command::Ping(Some(token))).await;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chatproto::parse_event;

    use super::*;

    fn session(lines: &[&str]) -> Session {
        let mut s = Session::new();
        for l in lines {
            let _ = s.handle(&parse_event(l).unwrap());
        }
        s
    }

    #[test]
    fn a_line_is_meant_for_the_view_it_is_typed_in() {
        let in_rust = session(&["WELCOME alice", "JOIN rust alice"]);
        let r = |line: &str, view: ViewKey, title: &str, s: &Session| {
            route_in(line.to_owned(), &view, title, s)
        };
        assert_eq!(
            r("hi", ViewKey::group("rust"), "rust", &in_rust),
            Ok("hi".into())
        );
        assert_eq!(
            r("hi", ViewKey::Global, "Global", &in_rust),
            Ok("/say * hi".into())
        );
        assert_eq!(
            r("hi", ViewKey::dm("bob"), "Bob", &in_rust),
            Ok("/msg Bob hi".into())
        );
        assert_eq!(
            r("/users", ViewKey::dm("bob"), "Bob", &in_rust),
            Ok("/users".into())
        );
        assert_eq!(
            r("//x", ViewKey::dm("bob"), "Bob", &in_rust),
            Ok("/msg Bob /x".into())
        );
        let (why, kept) = r("hi", ViewKey::group("go"), "go", &in_rust).unwrap_err();
        assert!(why.contains("not in go"), "{why}");
        assert_eq!(kept, "hi");
        let global = session(&["WELCOME alice"]);
        assert_eq!(r("hi", ViewKey::Global, "Global", &global), Ok("hi".into()));
        // Before registration a line is the name, wherever it is typed.
        assert_eq!(
            r("alice", ViewKey::dm("bob"), "bob", &Session::new()),
            Ok("alice".into())
        );
    }
}
