//! Harness for chatd's integration tests: runs the built binary on
//! 127.0.0.1 with an ephemeral port ([`Chatd`]) and speaks the protocol through
//! blocking sockets with read timeouts ([`Client`]).

#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chatproto::{parse_event, Event, LineFramer};

/// How long any single expected line may take: generous, for a loaded 2-core machine.
pub(crate) const LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running chatd, killed when dropped.
pub(crate) struct Chatd {
    child: Child,
    pub(crate) addr: SocketAddr,
    /// Everything chatd wrote to stderr so far, with [`StderrTo::Capture`].
    stderr: Option<Arc<Mutex<Vec<u8>>>>,
    /// The "listening ..." lines after the first one (IRC listeners).
    listening: mpsc::Receiver<String>,
}

/// Where chatd's stderr goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum StderrTo {
    /// Null, or the test's stderr when CHATD_TEST_LOG is set.
    #[default]
    Default,
    /// Into a buffer that [`Chatd::stderr`] returns.
    Capture,
    /// A pipe whose read end is closed: every write fails with EPIPE.
    Closed,
}

/// How to start chatd beyond its flags.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Launch {
    /// Run it under `ulimit -n` this many descriptors (soft and hard), set by sh.
    pub(crate) nofile: Option<u32>,
    pub(crate) stderr: StderrTo,
}

impl Chatd {
    /// Starts chatd on 127.0.0.1 with an ephemeral port and extra `args`.
    /// Set CHATD_TEST_LOG=debug (or info) to see its log on stderr.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::launch(args, Launch::default())
    }

    /// Like [`Chatd::start`], with a descriptor limit or stderr set by `how`.
    pub(crate) fn launch(args: &[&str], how: Launch) -> Self {
        let log = std::env::var("CHATD_TEST_LOG").ok();
        let chatd = env!("CARGO_BIN_EXE_chatd");
        let mut command = match how.nofile {
            None => Command::new(chatd),
            Some(n) => {
                // exec keeps the pid, so signals and kill reach chatd itself.
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(chatd);
                sh
            }
        };
        let (stderr, captured_from) = match how.stderr {
            StderrTo::Default if log.is_some() => (Stdio::inherit(), false),
            StderrTo::Default => (Stdio::null(), false),
            StderrTo::Capture => (Stdio::piped(), true),
            StderrTo::Closed => {
                // The read end is dropped at once; the child gets only the
                // write end (std's pipes are close-on-exec).
                let (reader, writer) = std::io::pipe().expect("pipe");
                drop(reader);
                (Stdio::from(writer), false)
            }
        };
        let mut child = command
            .arg("--listen")
            .arg("127.0.0.1:0")
            // Two threads unless the test picks its own number.
            .args(if args.contains(&"--threads") {
                &[][..]
            } else {
                &["--threads", "2"][..]
            })
            // In memory unless the test gives a --data-dir (no chatd-data
            // left in the crate, no store file locked by tests running at
            // once), and without history unless it sets --history-lines:
            // the replies as before history (no REPLAYED after WELCOME and
            // /join) for the tests that are not about it.
            .args(
                if args.contains(&"--data-dir") || args.contains(&"--ephemeral") {
                    &[][..]
                } else {
                    &["--ephemeral"][..]
                },
            )
            .args(if args.contains(&"--history-lines") {
                &[][..]
            } else {
                &["--history-lines", "0"][..]
            })
            .args(args)
            .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn chatd");
        drop(command); // its copy of a closed-pipe stderr, so only chatd holds one
        let captured = captured_from.then(|| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let mut from = child.stderr.take().expect("stderr was piped");
            let to = buf.clone();
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n @ 1..) = from.read(&mut chunk) {
                    to.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
            buf
        });
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        // Passes on the "listening ..." lines chatd starts with, then keeps
        // draining so chatd never blocks on stdout.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().take(8).map_while(Result::ok) {
                if !line.starts_with("listening") {
                    break;
                }
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let mut guard = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: captured,
            listening: rx,
        };
        guard.addr = guard.next_listening("listening on ", Duration::from_secs(30));
        assert!(guard.addr.ip().is_loopback());
        guard
    }

    /// The address on chatd's next "listening ..." stdout line, which must
    /// start with `prefix`.
    fn next_listening(&self, prefix: &str, timeout: Duration) -> SocketAddr {
        let line = self
            .listening
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("chatd printed no {prefix:?} line"));
        let addr = line
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        addr.parse().expect("a socket address")
    }

    /// The address of the IRC listener (start chatd with `--irc-listen
    /// 127.0.0.1:0`).
    pub(crate) fn irc_addr(&self) -> SocketAddr {
        self.next_listening("listening for IRC on ", Duration::from_secs(10))
    }

    /// The address of the next TLS listener (start chatd with `--tls-listen
    /// 127.0.0.1:0`, after any `--irc-listen` ones were read).
    pub(crate) fn tls_addr(&self) -> SocketAddr {
        self.next_listening("listening for TLS on ", Duration::from_secs(10))
    }

    /// The address of the next IRC-over-TLS listener (`--irc-tls-listen`;
    /// printed after the TLS listeners).
    pub(crate) fn irc_tls_addr(&self) -> SocketAddr {
        self.next_listening("listening for IRC over TLS on ", Duration::from_secs(10))
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What chatd wrote to stderr so far (started with [`StderrTo::Capture`]).
    pub(crate) fn stderr(&self) -> String {
        let buf = self
            .stderr
            .as_ref()
            .expect("started with StderrTo::Capture");
        String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
    }

    /// Sends a signal by name (`TERM`, `INT`) with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for chatd to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// True while the process runs.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// A connected client that has read the `HELLO` greeting.
    pub(crate) fn connect(&self) -> Client {
        let mut c = Client::connect(self.addr);
        c.expect_hello();
        c
    }

    /// A client registered as `name`.
    pub(crate) fn user(&self, name: &str) -> Client {
        let mut c = self.connect();
        c.register(name);
        c
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Distinct `/ping` tokens across all clients of a test binary.
static TOKENS: AtomicU64 = AtomicU64::new(1);

/// A blocking protocol client; every read has a timeout, so no test hangs.
pub(crate) struct Client {
    pub(crate) stream: TcpStream,
    framer: LineFramer,
}

impl Client {
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to chatd");
        Self::from_stream(stream)
    }

    pub(crate) fn from_stream(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(LINE_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            framer: LineFramer::new(1 << 20),
        }
    }

    /// Sends `line` and its LF.
    pub(crate) fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to chatd");
    }

    /// The next line, or `None` on EOF, a reset, or after `timeout`.
    pub(crate) fn try_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.framer.next_line() {
                return Some(line.expect("chatd sent a valid line").to_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16 * 1024];
            let read = self.stream.read(&mut buf);
            self.stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
            match read {
                Ok(0) => return None,
                Ok(n) => self.framer.push(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None, // reset
            }
        }
    }

    /// The next line; panics after [`LINE_TIMEOUT`] or on EOF.
    pub(crate) fn line(&mut self) -> String {
        self.try_line(LINE_TIMEOUT)
            .expect("a line from chatd within the timeout")
    }

    /// The next line, parsed as an event.
    pub(crate) fn event(&mut self) -> Event {
        let line = self.line();
        parse_event(&line).unwrap_or_else(|e| panic!("chatd sent {line:?}: {e}"))
    }

    /// Asserts the next line.
    pub(crate) fn expect(&mut self, want: &str) {
        let got = self.line();
        assert_eq!(got, want);
    }

    /// Asserts the next line starts with `prefix`; returns it.
    pub(crate) fn expect_prefix(&mut self, prefix: &str) -> String {
        let got = self.line();
        assert!(
            got.starts_with(prefix),
            "expected {prefix:?}..., got {got:?}"
        );
        got
    }

    pub(crate) fn expect_hello(&mut self) {
        let event = self.event();
        assert!(matches!(event, Event::Hello { .. }), "{event:?}");
    }

    /// Sends the name and expects `WELCOME`.
    pub(crate) fn register(&mut self, name: &str) {
        self.send(name);
        self.expect(&format!("WELCOME {name}"));
    }

    /// Round trip through the server: sends `/ping <token>` and returns every
    /// line received before the matching `PONG`. Lines the server queued for
    /// this client before handling the ping come first, so an empty result
    /// proves nothing was pending.
    pub(crate) fn sync(&mut self) -> Vec<String> {
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        self.send(&format!("/ping t{token}"));
        let pong = format!("PONG t{token}");
        let mut before = Vec::new();
        for _ in 0..100_000 {
            let line = self.line();
            if line == pong {
                return before;
            }
            before.push(line);
        }
        panic!("no {pong} after 100000 lines");
    }

    /// Asserts that nothing was pending for this client.
    pub(crate) fn expect_nothing(&mut self) {
        let pending = self.sync();
        assert!(pending.is_empty(), "unexpected lines: {pending:?}");
    }

    /// Reads until EOF (or a reset); returns the lines read. Panics if the
    /// server keeps the connection open past the timeout.
    pub(crate) fn until_closed(&mut self) -> Vec<String> {
        let deadline = Instant::now() + LINE_TIMEOUT;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "still open; read {lines:?}");
            match self.try_line(left) {
                Some(line) => lines.push(line),
                None if self.is_closed() => return lines,
                None => panic!("still open after {LINE_TIMEOUT:?}; read {lines:?}"),
            }
        }
    }

    /// True if the server closed the connection (EOF or reset), checked
    /// without waiting for more than a moment.
    pub(crate) fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut byte = [0u8; 1];
        let closed = match self.stream.peek(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        self.stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
        closed
    }

    /// Reads lines until one satisfies `pred` (at most `max` lines); returns
    /// the lines before it and the line itself.
    pub(crate) fn read_until(
        &mut self,
        max: usize,
        mut pred: impl FnMut(&str) -> bool,
    ) -> (Vec<String>, String) {
        let mut before = Vec::new();
        for _ in 0..max {
            let line = self.line();
            if pred(&line) {
                return (before, line);
            }
            before.push(line);
        }
        panic!("no matching line within {max} lines; read {before:?}");
    }

    /// Closes the sending half (the client says it is done).
    pub(crate) fn half_close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Polls `check` every 50 ms until it returns true or `timeout` passes.
pub(crate) fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A directory under the system's temp dir, removed when dropped (a test's
/// `--data-dir`).
pub(crate) struct TempDir(pub(crate) std::path::PathBuf);

impl TempDir {
    /// A fresh, empty directory named for `tag`, this process and the time.
    pub(crate) fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("chatd-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }

    /// The path as a flag value.
    pub(crate) fn arg(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Client {
    /// Connects from the loopback address `from` (127.0.0.2, say): chatd
    /// counts failed logins per address, and every 127/8 address is local.
    pub(crate) fn connect_from(addr: SocketAddr, from: [u8; 4]) -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let local = SocketAddr::from((from, 0));
        socket.bind(&local.into()).expect("bind a loopback address");
        socket.connect(&addr.into()).expect("connect to chatd");
        Self::from_stream(socket.into())
    }
}
