//! The log at `info` stays bounded under a connection flood: per-connection
//! lines past 20 a second go to `debug` only and are counted in a summary.

mod support;

use std::time::{Duration, Instant};

use support::{Chatd, Launch, StderrTo};

const CONNECTIONS: usize = 500;
/// Per-connection info lines let through per second (`log_limit`).
const PER_SECOND: usize = 20;
/// Generous length of one log line (they run about 75 bytes).
const LINE_BYTES: usize = 160;

fn capture(level: &str) -> Chatd {
    Chatd::launch(
        &["--log-level", level],
        Launch {
            stderr: StderrTo::Capture,
            ..Launch::default()
        },
    )
}

/// Lines from the modules that log per connection.
fn connection_lines<'a>(log: &'a str, level: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    log.lines().filter(move |l| {
        l.contains(level)
            && ["chatd::conn]", "chatd::listener]", "chatd::shared]"]
                .iter()
                .any(|t| l.contains(t))
    })
}

/// The counts in the "N connection events not logged" summaries.
fn summarised(log: &str) -> usize {
    log.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once("] ")?;
            let (n, _) = rest.split_once(" connection events not logged")?;
            n.parse::<usize>().ok()
        })
        .sum()
}

/// Connects `n` clients one after another; each reads its HELLO and leaves.
fn flood(chatd: &Chatd, n: usize) {
    for _ in 0..n {
        drop(chatd.connect());
    }
}

#[test]
fn a_connection_flood_writes_a_bounded_log_at_info() {
    let chatd = capture("info");
    let start = Instant::now();
    flood(&chatd, CONNECTIONS);
    // Time for the last closes and a summary tick (once a second).
    std::thread::sleep(Duration::from_millis(2500));
    let log = chatd.stderr();
    let elapsed = start.elapsed();
    // Fixed one-second windows: at most this many began while we watched.
    let windows = elapsed.as_secs() as usize + 2;
    let logged = connection_lines(&log, "INFO").count();
    let held_back = summarised(&log);
    assert!(
        logged <= PER_SECOND * windows,
        "{logged} per-connection lines in {elapsed:?}"
    );
    assert!(
        logged + held_back >= CONNECTIONS,
        "every connection accounted for: {logged} logged, {held_back} summarised"
    );
    // About 75 bytes per attempt without the limit (over 70 KB here).
    let bound = windows * (PER_SECOND + 1) * LINE_BYTES + 1024;
    assert!(
        log.len() <= bound,
        "{} bytes of log for {CONNECTIONS} connections in {elapsed:?} (bound {bound})",
        log.len()
    );
}

#[test]
fn debug_still_shows_every_connection() {
    let chatd = capture("debug");
    flood(&chatd, 100);
    std::thread::sleep(Duration::from_millis(500));
    let log = chatd.stderr();
    let conn = log.lines().filter(|l| l.contains(" chatd::conn]")).count();
    // A connect and a close each; far more than the 20 a second kept at info.
    assert!(conn >= 200, "{conn} connection lines at debug");
}
