//! The store scenarios, `fill` and `replay`, run as the real `chatload`
//! binary with few clients against the real chatd on 127.0.0.1 (in memory,
//! `--ephemeral`), and `replay` also against a small in-process server built
//! on chatproto's state machine with history on, which can drop or repeat
//! one replayed line, so that the scenario's checks are shown to catch both.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chatproto::server::{ConnId, Effect, HistoryConfig, Input, Server, ServerConfig, Time};
use chatproto::{parse_line, CloseReason, Event, LineFramer, Refusal, DEFAULT_MAX_LINE};
use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

mod support;
use support::{run_bounded, Chatd};

/// `chatload --json --addr addr args...`: its report, or its stderr.
fn chatload(addr: &str, args: &[&str]) -> Result<Value, String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatload"));
    cmd.args(["--addr", addr, "--json", "-q", "--timeout", "60"])
        .args(args);
    let out = run_bounded(cmd, RUN_TIMEOUT);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("the report is JSON"))
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn fill_counts_what_chatd_took_within_its_pacing() {
    let chatd = Chatd::start();
    // 8 clients x 50 lines: the burst of 40 and 10 more at 20/s.
    let r = chatload(
        &chatd.addr,
        &[
            "fill", "--total", "403", "-c", "8", "--rate", "20", "-d", "20",
        ],
    )
    .expect("fill ran");
    assert_eq!(num(&r, "sent"), 403, "{r}");
    assert_eq!(num(&r, "taken"), 403, "{r}");
    assert_eq!(num(&r, "unconfirmed_clients"), 0, "{r}");
    assert_eq!(num(&r, "closed_early"), 0, "{r}");
    // The paced part takes about half a second: never instantaneous.
    let secs = r["duration_s"].as_f64().expect("duration_s");
    assert!((0.3..20.0).contains(&secs), "{r}");

    // Time runs out first: what was sent by then is all taken.
    let r = chatload(
        &chatd.addr,
        &[
            "fill", "--total", "100000", "-c", "4", "--rate", "10", "-d", "1",
        ],
    )
    .expect("fill ran");
    let (sent, taken) = (num(&r, "sent"), num(&r, "taken"));
    assert!((160..=300).contains(&sent), "4 x (40 + ~10): {r}");
    assert_eq!(taken, sent, "{r}");
}

/// Which replayed line the fake server spoils.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// Leaves out the n-th `HISTORY` line it delivers (counted from 0).
    Drop(usize),
    /// Sends the n-th `HISTORY` line it delivers twice.
    Repeat(usize),
}

/// A chat server on 127.0.0.1 made of chatproto's state machine with history
/// on: a thread per connection, writes done under the one lock (fine for the
/// few fast readers of a test). Lives as long as the test process.
fn fake_history_server(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let mut config = ServerConfig::default();
    config.history = Some(HistoryConfig::default());
    let shared = Arc::new(Mutex::new((
        Server::new(config),
        HashMap::<ConnId, TcpStream>::new(),
        0usize,
    )));
    let handle = move |shared: &Mutex<(Server, HashMap<ConnId, TcpStream>, usize)>, input| {
        let mut guard = shared.lock().expect("no test thread panics holding it");
        let (server, writers, history_seen) = &mut *guard;
        let now = Time::new(Instant::now(), std::time::SystemTime::now());
        for effect in server.handle(now, input) {
            match effect {
                Effect::Deliver { to, event } => {
                    let mut times = 1;
                    if matches!(event.event(), Event::History(_)) {
                        match fault {
                            Fault::Drop(n) if n == *history_seen => times = 0,
                            Fault::Repeat(n) if n == *history_seen => times = 2,
                            _ => {}
                        }
                        *history_seen += 1;
                    }
                    if let Some(w) = writers.get_mut(&to) {
                        for _ in 0..times {
                            let _ = w.write_all(event.line());
                        }
                    }
                }
                Effect::Close { conn, .. } => {
                    if let Some(w) = writers.remove(&conn) {
                        let _ = w.shutdown(Shutdown::Write);
                    }
                }
                // Nothing is stored, and /join asks the store nothing.
                _ => {}
            }
        }
    };
    thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let conn = ConnId::new(n as u64 + 1);
            let shared = shared.clone();
            thread::spawn(move || {
                let Ok(writer) = stream.try_clone() else {
                    return;
                };
                shared.lock().expect("not poisoned").1.insert(conn, writer);
                handle(&shared, Input::Connected(conn));
                let mut framer = LineFramer::new(DEFAULT_MAX_LINE);
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    framer.push(&buf[..n]);
                    let mut inputs = Vec::new();
                    while let Some(line) = framer.next_line() {
                        inputs.push(match line.map(parse_line) {
                            Ok(Ok(cmd)) => Input::Line(conn, cmd),
                            Ok(Err(e)) => Input::Refused(conn, Refusal::from(e)),
                            Err(e) => Input::Refused(conn, Refusal::from(e)),
                        });
                    }
                    for input in inputs {
                        handle(&shared, input);
                    }
                }
                handle(
                    &shared,
                    Input::Disconnected(conn, CloseReason::ConnectionLost),
                );
                shared.lock().expect("not poisoned").1.remove(&conn);
            });
        }
    });
    addr
}

fn replay(addr: &str, extra: &[&str]) -> Result<Value, String> {
    let mut args = vec!["replay", "-n", "12", "--lines", "25", "--fill-rate", "200"];
    args.extend_from_slice(extra);
    chatload(addr, &args)
}

#[test]
fn replay_checks_every_joiners_lines_against_a_server_with_history() {
    let addr = fake_history_server(Fault::None);
    let r = replay(&addr, &[]).expect("replay ran");
    assert_eq!(num(&r, "joined"), 12, "{r}");
    assert_eq!(num(&r, "replayed"), 12, "{r}");
    assert_eq!(num(&r, "expected_per_client"), 20, "{r}");
    assert_eq!(num(&r, "clients_with_errors"), 0, "{r}");
    assert_eq!(r["to_replayed"]["count"].as_u64(), Some(12), "{r}");
    assert_eq!(r["to_last_history"]["count"].as_u64(), Some(12), "{r}");

    // Spread over half a second, with live lines going on meanwhile: the
    // live lines follow each replay without a gap.
    let r = replay(&addr, &["--spread", "0.5", "--live-rate", "40"]).expect("replay ran");
    assert_eq!(num(&r, "replayed"), 12, "{r}");
    assert_eq!(num(&r, "clients_with_errors"), 0, "{r}");
    assert!(num(&r, "live_lines_checked") >= 12, "{r}");
}

#[test]
fn replay_counts_a_dropped_or_repeated_history_line_as_an_error() {
    for (fault, what) in [(Fault::Drop(7), "a gap"), (Fault::Repeat(3), "repeat")] {
        let addr = fake_history_server(fault);
        let r = replay(&addr, &[]).expect("replay ran");
        assert_eq!(num(&r, "clients_with_errors"), 1, "{fault:?}: {r}");
        let errors = r["errors"].to_string();
        assert!(errors.contains(what), "{fault:?}: {errors}");
    }
}

#[test]
fn replay_against_chatd_checks_its_replay_length() {
    let chatd = Chatd::start_with(&["--history-replay", "5"]);
    // Live lines go on meanwhile (10/s, under chatd's pacing): each joiner's
    // follow its replay without a gap or a repeat.
    let live = [
        "--history-replay",
        "5",
        "--spread",
        "0.3",
        "--live-rate",
        "10",
    ];
    let r = replay(&chatd.addr, &live).expect("replay ran");
    assert_eq!(num(&r, "replayed"), 12, "{r}");
    assert!(num(&r, "live_lines_checked") >= 12, "{r}");
    assert_eq!(num(&r, "expected_per_client"), 5, "{r}");
    assert_eq!(num(&r, "clients_with_errors"), 0, "{r}");
    // Told to expect chatd's default of 20, every joiner finds 5.
    let r = replay(&chatd.addr, &[]).expect("replay ran");
    assert_eq!(num(&r, "clients_with_errors"), 12, "{r}");
    assert!(
        r["errors"]
            .to_string()
            .contains("5 lines replayed, 20 expected"),
        "{r}"
    );
}

#[test]
fn replay_against_a_chatd_without_history_fails_with_one_line() {
    let chatd = Chatd::start_with(&["--history-lines", "0"]);
    let e = replay(&chatd.addr, &[]).expect_err("no history, nothing measured");
    assert!(e.contains("keeps no history"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}
