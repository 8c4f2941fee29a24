//! Per-scope order: 50 clients in one group, 10 of them sending 200 messages
//! each at once. Every receiver gets every message exactly once, each sender's
//! messages in the order sent, and all receivers in one and the same order.

mod support;

use std::thread;

use support::{Chatd, Client};

const CLIENTS: usize = 50;
const SENDERS: usize = 10;
const MESSAGES: usize = 200;

#[test]
fn every_receiver_sees_one_order() {
    let chatd = Chatd::start(&["--flood-rate", "0"]);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut c = chatd.user(&format!("c{i}"));
            c.send("/join g");
            c.read_until(CLIENTS * 2, |l| l == format!("JOIN g c{i}"));
            c
        })
        .collect();
    // Drain the JOIN lines of later arrivals.
    for c in &mut clients {
        c.sync();
    }

    // The first SENDERS clients send from their own threads, all at once.
    let mut receivers = clients.split_off(SENDERS);
    let senders: Vec<thread::JoinHandle<Client>> = clients
        .into_iter()
        .enumerate()
        .map(|(s, mut c)| {
            thread::spawn(move || {
                for m in 0..MESSAGES {
                    c.send(&format!("s{s} m{m}"));
                }
                c
            })
        })
        .collect();
    let mut senders: Vec<Client> = senders.into_iter().map(|t| t.join().unwrap()).collect();

    let read = |c: &mut Client, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let line = c.line();
                let rest = line
                    .strip_prefix("MSG g ")
                    .unwrap_or_else(|| panic!("{line:?}"));
                let (from, text) = rest.split_once(' ').unwrap();
                assert_eq!(from[1..], text[1..text.find(' ').unwrap()], "{line:?}");
                text.to_owned()
            })
            .collect()
    };
    let mut reference: Option<Vec<String>> = None;
    // Kept open until the end, so nobody sees a PART.
    for c in &mut receivers {
        let got = read(c, SENDERS * MESSAGES);
        c.expect_nothing();
        match &reference {
            None => {
                // Exactly once each, and each sender in the order sent.
                for s in 0..SENDERS {
                    let mine: Vec<&String> = got
                        .iter()
                        .filter(|t| t.starts_with(&format!("s{s} ")))
                        .collect();
                    let want: Vec<String> = (0..MESSAGES).map(|m| format!("s{s} m{m}")).collect();
                    assert_eq!(mine, want.iter().collect::<Vec<_>>(), "sender {s}");
                }
                reference = Some(got);
            }
            Some(r) => assert_eq!(&got, r, "receivers disagree on the order"),
        }
    }
    // Senders see everything but their own lines, in the same order.
    let reference = reference.unwrap();
    for (s, c) in senders.iter_mut().enumerate() {
        let own = format!("s{s} ");
        let want: Vec<String> = reference
            .iter()
            .filter(|t| !t.starts_with(&own))
            .cloned()
            .collect();
        let got = read(c, want.len());
        assert_eq!(got, want, "sender {s}");
        c.expect_nothing();
    }
}
