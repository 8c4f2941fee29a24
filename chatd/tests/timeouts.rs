//! Register timeout, the server's PING after silence, and the ping timeout.

mod support;

use std::time::{Duration, Instant};

use support::Chatd;

const SHORT: [&str; 6] = [
    "--register-timeout",
    "1s",
    "--ping-after",
    "1s",
    "--idle-timeout",
    "3s",
];

#[test]
fn unregistered_clients_are_closed_after_the_register_timeout() {
    let chatd = Chatd::start(&SHORT);
    let mut ann = chatd.user("ann");
    let mut slow = chatd.connect();
    slow.send("/help"); // talking is not registering
    let start = Instant::now();
    let lines = slow.until_closed();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("BYE register-timeout")
    );
    assert!(start.elapsed() >= Duration::from_millis(500));
    // Nobody saw it, since it never had a name.
    ann.send("/users");
    let (before, _) = ann.read_until(10, |l| l.starts_with("USERS "));
    assert!(before.iter().all(|l| l.starts_with("PING ")), "{before:?}");
}

#[test]
fn silent_clients_get_a_ping_then_a_ping_timeout() {
    let chatd = Chatd::start(&SHORT);
    let mut quiet = chatd.user("quiet");
    let ping = quiet.line();
    assert!(ping.starts_with("PING "), "{ping:?}");
    // No answer: closed (the PART the others see is checked below).
    let lines = quiet.until_closed();
    assert_eq!(lines, vec!["BYE ping-timeout"]);
}

#[test]
fn answering_pings_keeps_a_client_connected() {
    let chatd = Chatd::start(&SHORT);
    let mut busy = chatd.user("busy");
    let mut quiet = chatd.user("quiet");
    busy.expect("JOIN * quiet");
    let start = Instant::now();
    let mut pings = 0;
    // Well past the idle timeout, answering each PING.
    while start.elapsed() < Duration::from_secs(5) {
        let Some(line) = busy.try_line(Duration::from_millis(500)) else {
            continue;
        };
        if let Some(token) = line.strip_prefix("PING ") {
            pings += 1;
            busy.send(&format!("/pong {token}"));
        } else {
            assert_eq!(line, "PART * quiet ping-timeout");
        }
    }
    assert!(pings >= 1, "never pinged");
    busy.send("/users");
    let (_, users) = busy.read_until(10, |l| l.starts_with("USERS "));
    assert_eq!(users, "USERS * busy");
    // The quiet one was pinged and dropped meanwhile.
    let lines = quiet.until_closed();
    assert_eq!(lines.last().map(String::as_str), Some("BYE ping-timeout"));
}
