//! What the tests against the real chatd share: bounded child processes,
//! the chatd binary of the same profile, and a chatd on an ephemeral port.

#![allow(dead_code)] // Each test file uses a different part of the harness.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Generous bounds for a loaded 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd`, killing it if it outlives `limit`.
pub(crate) fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{cmd:?} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The chatd binary of the same profile as this test's chatload, built with
/// `cargo build -p chatd` (a no-op when it is fresh; `cargo test -p chatload`
/// alone does not build other packages' binaries). `CHATD_BIN` names another
/// one instead (say, a release build of a given commit).
pub(crate) fn chatd_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CHATD_BIN") {
        return PathBuf::from(bin);
    }
    let chatload = Path::new(env!("CARGO_BIN_EXE_chatload"));
    let dir = chatload.parent().expect("binary has a directory");
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.args(["build", "--quiet", "-p", "chatd"]);
    if dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = dir.parent() {
        cmd.arg("--target-dir").arg(target);
    }
    let out = run_bounded(cmd, BUILD_TIMEOUT);
    assert!(
        out.status.success(),
        "cargo build -p chatd failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chatd = dir.join("chatd");
    assert!(chatd.exists(), "no chatd at {}", chatd.display());
    chatd
}

/// A chatd on 127.0.0.1 with an ephemeral port, killed when dropped.
pub(crate) struct Chatd {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// Its IRC listener, if started with `--irc-listen`.
    pub(crate) irc_addr: Option<String>,
    /// Its TLS listeners, if started with `--tls-listen` / `--irc-tls-listen`.
    pub(crate) tls_addr: Option<String>,
    pub(crate) irc_tls_addr: Option<String>,
}

impl Chatd {
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// A chatd with `flags` added to the usual ones. `--ephemeral`: its store
    /// in memory, so no test leaves a `chatd-data` directory behind.
    pub(crate) fn start_with(flags: &[&str]) -> Self {
        let mut child = Command::new(chatd_binary())
            .args(["--listen", "127.0.0.1:0", "--threads", "1", "--ephemeral"])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chatd");
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        // Hands on every line, and keeps draining so chatd never blocks.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut guard = Self {
            child,
            addr: String::new(),
            irc_addr: None,
            tls_addr: None,
            irc_tls_addr: None,
        };
        let next = || {
            rx.recv_timeout(Duration::from_secs(30))
                .expect("chatd printed its addresses")
        };
        let first = next();
        guard.addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        assert!(guard.addr.starts_with("127.0.0.1:"), "{}", guard.addr);
        if flags.contains(&"--irc-listen") {
            // After the native `listening on` line(s); a bounded wait.
            for _ in 0..10 {
                let line = next();
                if let Some(irc) = line.strip_prefix("listening for IRC on ") {
                    guard.irc_addr = Some(irc.to_owned());
                    break;
                }
            }
            let irc = guard
                .irc_addr
                .as_deref()
                .expect("chatd printed its IRC address");
            assert!(irc.starts_with("127.0.0.1:"), "{irc}");
        }
        if flags.contains(&"--tls-listen") {
            // After the plaintext listeners' lines; a bounded wait.
            for _ in 0..10 {
                let line = next();
                if let Some(a) = line.strip_prefix("listening for TLS on ") {
                    guard.tls_addr = Some(a.to_owned());
                } else if let Some(a) = line.strip_prefix("listening for IRC over TLS on ") {
                    guard.irc_tls_addr = Some(a.to_owned());
                }
                let irc_done = !flags.contains(&"--irc-tls-listen") || guard.irc_tls_addr.is_some();
                if guard.tls_addr.is_some() && irc_done {
                    break;
                }
            }
            assert!(guard.tls_addr.is_some(), "chatd printed its TLS address");
        }
        guard
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
