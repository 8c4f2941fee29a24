//! Thousands of clients connect and vanish in every way a client can (no
//! name, FIN, reset, mid-line, half-close, /quit): the server cleans up after
//! each one, so users, groups and connection places all come back.

mod support;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use socket2::SockRef;
use support::{eventually, Chatd, Client};

const ROUNDS: usize = 40;
const PER_ROUND: usize = 50;

/// A connection past its HELLO, retrying while the server is still freeing
/// the places of the previous round.
fn connect(chatd: &Chatd) -> Client {
    for _ in 0..500 {
        let mut c = Client::connect(chatd.addr);
        let first = c.line();
        if first.starts_with("HELLO ") {
            return c;
        }
        assert_eq!(first, "BYE server-full");
        thread::sleep(Duration::from_millis(10));
    }
    panic!("places are never freed: connections leak");
}

#[test]
fn thousands_of_vanishing_clients_leave_nothing_behind() {
    // Room for two rounds plus the observer: a leak fills it within a few rounds.
    let max = (2 * PER_ROUND + 1).to_string();
    let chatd = Chatd::start(&["--max-clients", &max, "--flood-rate", "0"]);
    let mut observer = chatd.user("observer");
    let mut seen = Vec::new();
    for round in 0..ROUNDS {
        let mut clients = Vec::new();
        for k in 0..PER_ROUND {
            let i = round * PER_ROUND + k;
            let mut c = connect(&chatd);
            let kind = i % 6;
            if kind != 0 {
                c.register(&format!("u{i}"));
            }
            if kind == 2 || kind == 3 {
                c.send(&format!("/join g{}", i % 7));
                c.expect_prefix("JOIN g");
            }
            clients.push((kind, c));
        }
        for (kind, mut c) in clients {
            match kind {
                // Vanish mid-line.
                2 => c.send_raw(b"half a li"),
                // Vanish with a reset instead of a FIN.
                3 => SockRef::from(&c.stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap(),
                // Half-close: done sending, still reading; the server closes.
                4 => {
                    c.half_close();
                    let lines = c.until_closed();
                    let chat = |l: &String| l.starts_with("JOIN ") || l.starts_with("PART ");
                    assert!(lines.iter().all(chat), "{lines:?}");
                }
                5 => {
                    c.send("/quit");
                    let lines = c.until_closed();
                    assert_eq!(lines.last().map(String::as_str), Some("BYE quit"));
                }
                _ => {}
            }
        }
        // Keep the observer's queue short.
        seen.extend(observer.sync());
    }

    let mut users = String::new();
    let clean = eventually(Duration::from_secs(20), || {
        observer.send("/users");
        let (before, line) = observer.read_until(100_000, |l| l.starts_with("USERS "));
        seen.extend(before);
        users = line;
        users == "USERS * observer"
    });
    assert!(clean, "users left behind: {users}");
    observer.send("/groups");
    let (before, groups) = observer.read_until(100_000, |l| l.starts_with("GROUPS"));
    seen.extend(before);
    assert_eq!(groups, "GROUPS", "empty groups must disappear");

    // Everyone who arrived was seen leaving.
    let names = |tag: &str| -> BTreeSet<String> {
        seen.iter()
            .filter_map(|l| l.strip_prefix(tag))
            .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    };
    let joined = names("JOIN * ");
    assert_eq!(joined.len(), ROUNDS * PER_ROUND * 5 / 6);
    assert_eq!(joined, names("PART * "));

    // And the places are free: a full round fits again.
    let again: Vec<Client> = (0..2 * PER_ROUND).map(|_| connect(&chatd)).collect();
    assert_eq!(again.len(), 2 * PER_ROUND);
}
