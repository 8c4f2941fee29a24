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

    /// Starts chatd with `args` (which must include `--listen`). Its accounts
    /// and history are kept in memory (`--ephemeral`) unless `args` name a
    /// `--data-dir`: tests run side by side, and chatd's default store
    /// directory in the working directory admits one server at a time.
    pub(crate) fn start_with(args: &[&str]) -> Self {
        let (server, _) = Self::spawn(args, Stdio::null());
        server
    }

    /// [`start_with`](Self::start_with), its stderr to `stderr`; also returns
    /// its later stdout lines (after the first).
    fn spawn(args: &[&str], stderr: Stdio) -> (Self, Receiver<String>) {
        let mut all: Vec<&str> = args.to_vec();
        if !args.contains(&"--data-dir") && !args.contains(&"--ephemeral") {
            all.push("--ephemeral");
        }
        let mut child = Command::new(chatd())
            .args(&all)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
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
        (Self { child, port }, lines)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops chatd with SIGTERM (its store flushed) and waits for it, bounded.
    pub(crate) fn stop(&mut self) {
        terminate(self.child.id());
        let deadline = Instant::now() + WAIT;
        while self
            .child
            .try_wait()
            .expect("chatd can be waited on")
            .is_none()
        {
            assert!(
                Instant::now() < deadline,
                "chatd did not stop within {WAIT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory under the system's temp dir, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    /// A fresh, empty directory named for `tag`, this process and the time.
    pub(crate) fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("chatcli-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        Self(dir)
    }

    /// A file in the directory, as a flag value.
    pub(crate) fn file(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("a UTF-8 temp path")
            .to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// chatd with a plaintext and a TLS listener and a self-signed certificate
/// made by chatd itself (`--tls-self-signed`) in a temporary `--data-dir`,
/// as its README tells operators to start it.
pub(crate) struct TlsServer {
    pub(crate) server: Server,
    /// The TLS listener's port (`server.port` is the plaintext one).
    pub(crate) tls_port: u16,
    /// The certificate as chatd logged it: `AB:CD:...`.
    pub(crate) fingerprint: String,
    pub(crate) dir: TempDir,
}

impl TlsServer {
    pub(crate) fn start() -> Self {
        let dir = TempDir::new("tls");
        let (server, tls_port, fingerprint) = Self::spawn(&dir, "127.0.0.1:0", "127.0.0.1:0");
        Self {
            server,
            tls_port,
            fingerprint,
            dir,
        }
    }

    /// Stops chatd and starts it again on the same ports; with `new_cert`,
    /// chatd makes a new certificate (a new fingerprint) first.
    pub(crate) fn restart(&mut self, new_cert: bool) {
        self.server.kill();
        if new_cert {
            for f in ["data/tls-self-signed.crt", "data/tls-self-signed.key"] {
                std::fs::remove_file(self.dir.file(f)).expect("remove the old certificate");
            }
        }
        let plain = format!("127.0.0.1:{}", self.server.port);
        let tls = format!("127.0.0.1:{}", self.tls_port);
        let (server, _, fingerprint) = Self::spawn(&self.dir, &plain, &tls);
        self.server = server;
        self.fingerprint = fingerprint;
    }

    fn spawn(dir: &TempDir, plain: &str, tls: &str) -> (Server, u16, String) {
        let data = dir.file("data");
        let log = dir.file("chatd.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let (server, lines) = Server::spawn(
            &[
                "--listen",
                plain,
                "--tls-listen",
                tls,
                "--tls-self-signed",
                "--data-dir",
                &data,
                "--ephemeral",
            ],
            Stdio::from(log_file),
        );
        let line = lines.recv_timeout(WAIT).expect("a second stdout line");
        let tls_port = line
            .strip_prefix("listening for TLS on ")
            .and_then(|a| a.trim().rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from chatd: {line:?}"));
        // Logged before the listeners print their lines, so it is there now.
        let text = std::fs::read_to_string(&log).expect("chatd's log");
        let fingerprint = text
            .lines()
            .find_map(|l| l.split_once("SHA-256 fingerprint ").map(|(_, f)| f.trim()))
            .unwrap_or_else(|| panic!("no fingerprint in chatd's log:\n{text}"))
            .to_owned();
        (server, tls_port, fingerprint)
    }

    /// The certificate chatd made, for `--ca-file`.
    pub(crate) fn cert(&self) -> String {
        self.dir.file("data/tls-self-signed.crt")
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
        Self::start_env(args, &[])
    }

    /// [`start`](Self::start) with environment variables set.
    pub(crate) fn start_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(chatcli())
            .args(args)
            .envs(env.iter().copied())
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
