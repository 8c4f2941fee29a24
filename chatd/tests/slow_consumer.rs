//! A client that stops reading delays nobody; once its queue passes `--sendq`
//! it gets `BYE sendq-exceeded` (best effort) and is cut off, and the others
//! see its `PART`.

mod support;

use support::Chatd;

#[test]
fn a_slow_consumer_is_cut_off_and_nobody_else_waits() {
    let chatd = Chatd::start(&["--sendq", "256KiB", "--flood-rate", "0"]);
    let mut slow = chatd.user("slow");
    let mut talker = chatd.user("talker");
    let mut watcher = chatd.user("watcher");
    slow.expect("JOIN * talker");
    slow.expect("JOIN * watcher");
    talker.expect("JOIN * watcher");
    // From here on `slow` reads nothing.

    let text = "x".repeat(1000);
    let mut sent = 0;
    let mut kicked = false;
    // Bounded: 64 MB at most, far beyond any socket buffers plus the sendq.
    for _ in 0..1000 {
        let batch: String = (0..64).map(|i| format!("{} {text}\n", sent + i)).collect();
        talker.send_raw(batch.as_bytes());
        // The watcher keeps up: every line arrives, in order, while `slow` stalls.
        for i in 0..64 {
            let line = watcher.line();
            if line == "PART * slow sendq-exceeded" {
                kicked = true;
                let line = watcher.line();
                assert_eq!(line, format!("MSG * talker {} {text}", sent + i));
            } else {
                assert_eq!(line, format!("MSG * talker {} {text}", sent + i));
            }
        }
        sent += 64;
        if kicked {
            break;
        }
    }
    assert!(kicked, "slow was never cut off after {sent} lines");
    talker.send("/users");
    let (_, users) = talker.read_until(10, |l| l.starts_with("USERS "));
    assert_eq!(users, "USERS * talker watcher");

    // `slow` reads now: some of the talk, whole lines only, then the BYE, then EOF.
    let lines = slow.until_closed();
    let (bye, talk) = lines.split_last().expect("at least the BYE");
    assert_eq!(bye, "BYE sendq-exceeded");
    assert!(talk.len() < sent, "the backlog was dropped");
    for (i, line) in talk.iter().enumerate() {
        assert_eq!(*line, format!("MSG * talker {i} {text}"));
    }
}
