//! Shared by chatcli's integration tests: the real `chatd` on an ephemeral
//! loopback port, a raw protocol peer, and the `chatcli` binary with piped stdio.
//! Every wait here is bounded; a `Drop` guard ends every child process.

#![allow(dead_code)] // each test file uses a different part

pub(crate) mod tmux;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// Generous: the machine may be loaded by other test binaries.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// How long building chatd may take before the tests give up.
const BUILD_WAIT: Duration = Duration::from_secs(600);

/// The `chatcli` binary under test.
pub(crate) fn chatcli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_chatcli"))
}

/// The `chatd` binary next to `chatcli`, built first so that it is current.
/// A binary cannot be a dev-dependency, so the test asks cargo (a no-op when
/// `cargo test --workspace` already built it).
pub(crate) fn chatd() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = chatcli()
                .parent()
                .expect("binaries live in a directory")
                .to_path_buf();
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "chatd", "--bin", "chatd"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cmd.arg("--release");
            }
            let mut child = cmd.spawn().expect("cargo runs");
            let start = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait().expect("cargo can be waited on") {
                    break status;
                }
                if start.elapsed() > BUILD_WAIT {
                    let _ = child.kill();
                    panic!("building chatd took over {BUILD_WAIT:?}");
                }
                thread::sleep(Duration::from_millis(100));
            };
            assert!(status.success(), "cargo build -p chatd failed: {status}");
            let bin = dir.join(format!("chatd{}", std::env::consts::EXE_SUFFIX));
            assert!(bin.exists(), "no chatd at {}", bin.display());
            bin
        })
        .clone()
}

/// A running `chatd`, killed on drop.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Server {
    /// Starts chatd on an ephemeral port of 127.0.0.1.
    pub(crate) fn start() -> Self {
        Self::start_on("127.0.0.1:0")
    }

    /// Starts chatd on `listen` and reads the port from its first stdout line,
    /// `listening on 127.0.0.1:PORT` (the agreed contract).
    pub(crate) fn start_on(listen: &str) -> Self {
        Self::start_with(&["--listen", listen])
    }

    /// Starts chatd with `args` (which must include `--listen`).
    pub(crate) fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(chatd())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chatd starts");
        let stdout = child.stdout.take().expect("stdout was piped");
        let lines = line_reader(stdout);
        let first = match lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("chatd printed no first line: {e}");
            }
        };
        let port = first
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from chatd: {first:?}"));
        Self { child, port }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to process `pid` (std can only SIGKILL a child).
pub(crate) fn terminate(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -TERM {pid}: {sent}");
}

/// Lines of `r` on a channel, read by a thread that ends at EOF.
pub(crate) fn line_reader(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads from `lines` until one satisfies `want`; returns every line read.
/// Panics with what was seen if none does within [`WAIT`].
pub(crate) fn read_until(
    lines: &Receiver<String>,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = want(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!("no {what} within {WAIT:?}; saw {seen:#?}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("stream ended before {what}; saw {seen:#?}")
            }
        }
    }
}

/// A fake server's side of registration: accepts one client on `listener`,
/// greets it, checks that it sends `name` and then the `/ping <token>` with
/// which chatcli marks the end of the answer, and accepts the name (`WELCOME`,
/// then `PONG <token>`). Returns the socket and a reader of what the client
/// sends next; reads time out after [`WAIT`].
pub(crate) fn accept_registration(
    listener: &TcpListener,
    name: &str,
) -> (TcpStream, BufReader<TcpStream>) {
    let (mut s, _) = listener.accept().expect("the client connects");
    s.set_read_timeout(Some(WAIT)).expect("timeout set");
    let mut r = BufReader::new(s.try_clone().expect("socket clones"));
    s.write_all(b"HELLO fake 0.0.0 who are you\n")
        .expect("greeting");
    let mut line = String::new();
    r.read_line(&mut line).expect("a name");
    assert_eq!(line, format!("{name}\n"));
    line.clear();
    r.read_line(&mut line).expect("a ping");
    let token = line
        .strip_prefix("/ping ")
        .unwrap_or_else(|| panic!("{line:?} instead of /ping after the name"))
        .trim_end();
    s.write_all(format!("WELCOME {name}\nPONG {token}\n").as_bytes())
        .expect("welcome");
    (s, r)
}

/// A raw protocol client, as `nc` would be.
pub(crate) struct Peer {
    stream: TcpStream,
    lines: Receiver<String>,
}

impl Peer {
    /// Connects and registers as `name`, waiting for the `WELCOME`.
    pub(crate) fn join(port: u16, name: &str) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("chatd accepts");
        let lines = line_reader(stream.try_clone().expect("socket clones"));
        let mut peer = Self { stream, lines };
        peer.expect("HELLO ");
        peer.send(name);
        peer.expect(&format!("WELCOME {name}"));
        peer
    }

    pub(crate) fn send(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .expect("peer writes");
    }

    /// Reads until a line starting with `prefix`; returns that line.
    pub(crate) fn expect(&mut self, prefix: &str) -> String {
        let seen = read_until(&self.lines, &format!("line {prefix:?}"), |l| {
            l.starts_with(prefix)
        });
        seen.last().cloned().unwrap_or_default()
    }
}

/// `chatcli` with piped stdin and stdout (plain-line mode), killed on drop.
pub(crate) struct PipedClient {
    child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) stdout: Receiver<String>,
}

impl PipedClient {
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut child = Command::new(chatcli())
            .args(args)
            .env_remove("NO_COLOR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chatcli starts");
        let stdout = line_reader(child.stdout.take().expect("stdout was piped"));
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("chatcli reads stdin");
    }

    /// Reads output until a line contains `part`; returns the lines read.
    pub(crate) fn expect(&mut self, part: &str) -> Vec<String> {
        read_until(&self.stdout, &format!("output containing {part:?}"), |l| {
            l.contains(part)
        })
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (EOF).
    pub(crate) fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit, bounded; returns the status and the rest of stdout.
    pub(crate) fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("chatcli can be waited on") {
                let mut rest = Vec::new();
                while let Ok(line) = self.stdout.recv_timeout(Duration::from_secs(2)) {
                    rest.push(line);
                }
                return (status, rest);
            }
            assert!(
                Instant::now() < deadline,
                "chatcli did not exit within {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PipedClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
