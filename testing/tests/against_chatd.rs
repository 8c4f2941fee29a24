//! Runs the real `chatload` binary, briefly and with few clients, against a
//! real chatd on 127.0.0.1 (ephemeral port), and checks its `--json` reports.
//! Performance numbers are not asserted here: they go in BENCHMARKS.md.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous bounds for a loaded 2-core machine.
const BUILD_TIMEOUT: Duration = Duration::from_secs(300);
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd`, killing it if it outlives `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
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
/// alone does not build other packages' binaries).
fn chatd_binary() -> PathBuf {
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
struct Chatd {
    child: Child,
    addr: String,
}

impl Chatd {
    fn start() -> Self {
        let mut child = Command::new(chatd_binary())
            .args(["--listen", "127.0.0.1:0", "--threads", "1"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chatd");
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        // Reads the first line, then keeps draining so chatd never blocks.
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let mut guard = Self {
            child,
            addr: String::new(),
        };
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chatd printed its address");
        guard.addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        assert!(guard.addr.starts_with("127.0.0.1:"), "{}", guard.addr);
        guard
    }

    /// Runs chatload with `args` after the common options; returns its JSON.
    fn chatload(&self, args: &[&str]) -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatload"));
        cmd.args(["--addr", &self.addr, "--json", "--quiet", "--timeout", "45"])
            .args(args);
        let out = run_bounded(cmd, RUN_TIMEOUT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "chatload {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
    }
}

impl Drop for Chatd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v:#}"))
}

#[test]
fn scenarios_report_clean_runs_against_chatd() {
    let chatd = Chatd::start();

    let ttfb = chatd.chatload(&["ttfb", "-n", "5", "-r", "4", "-d", "2", "--drain", "5"]);
    assert_eq!(ttfb["mode"], "single", "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_ok"), 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_failed"), 0, "{ttfb:#}");
    let sent = num(&ttfb, "requests_sent");
    assert!(sent >= 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "responses"), sent, "{ttfb:#}");
    assert_eq!(num(&ttfb, "unanswered"), 0, "{ttfb:#}");
    assert_eq!(ttfb["ttfb"]["count"].as_u64(), Some(sent), "{ttfb:#}");
    assert!(
        ttfb["ttfb"]["max_ms"].as_f64().is_some_and(|m| m > 0.0),
        "{ttfb:#}"
    );

    let fan = chatd.chatload(&[
        "fanout", "-n", "6", "-s", "2", "-m", "20", "-d", "2", "--group", "load",
    ]);
    assert_eq!(fan["scope"], "load", "{fan:#}");
    assert_eq!(num(&fan, "connections_ok"), 6, "{fan:#}");
    let msgs = num(&fan, "messages_sent");
    assert!(msgs >= 20, "{fan:#}");
    // Every message reaches the 5 other members, once.
    assert_eq!(num(&fan, "expected_deliveries"), msgs * 5, "{fan:#}");
    assert_eq!(num(&fan, "deliveries"), msgs * 5, "{fan:#}");
    assert_eq!(num(&fan, "lost"), 0, "{fan:#}");
    assert_eq!(num(&fan, "duplicated"), 0, "{fan:#}");
    assert_eq!(num(&fan, "foreign"), 0, "{fan:#}");
    assert_eq!(fan["latency"]["count"].as_u64(), Some(msgs * 5), "{fan:#}");

    // Two seconds are far too short to fill chatd's send queue: only the
    // readers' side and the probe are checked here (BENCHMARKS.md has the cut).
    let slow = chatd.chatload(&[
        "slowreader",
        "-n",
        "4",
        "-s",
        "2",
        "-m",
        "20",
        "-d",
        "2",
        "--final-read",
        "1",
    ]);
    assert_eq!(num(&slow, "connections_ok"), 4 + 1 + 1, "{slow:#}");
    assert_eq!(num(&slow, "lost"), 0, "{slow:#}");
    assert_eq!(slow["slow"]["slow_clients"], 1, "{slow:#}");
    let probes = num(&slow["slow"], "probe_sent");
    assert!(probes >= 2, "{slow:#}");
    assert_eq!(num(&slow["slow"], "probe_answered"), probes, "{slow:#}");

    let idle = chatd.chatload(&[
        "idle",
        "-n",
        "20",
        "--pid",
        &chatd.child.id().to_string(),
        "--hold",
        "0.5",
    ]);
    assert_eq!(num(&idle, "connections_ok"), 20, "{idle:#}");
    assert_eq!(num(&idle, "still_open_after_hold"), 20, "{idle:#}");
    assert!(num(&idle["rss_after_hold"], "vm_rss") > 0, "{idle:#}");
}

#[test]
fn refuses_a_non_loopback_address_without_connecting() {
    let out = run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_chatload"));
            c.args(["--addr", "192.0.2.1:8080", "ttfb", "-n", "1", "-d", "1"]);
            c
        },
        RUN_TIMEOUT,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}
