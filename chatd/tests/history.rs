//! History against the real binary: replay on `/join` and on registration,
//! no gap or duplicate while lines keep coming, `/history` paging,
//! retention, offline messages across a restart.

mod support;

use std::thread;
use std::time::Duration;

use support::{Chatd, Client, TempDir};

/// The id and the line of a `HISTORY <id> <time> <line>`.
fn history(line: &str) -> Option<(u64, String)> {
    let rest = line.strip_prefix("HISTORY ")?;
    let mut parts = rest.splitn(3, ' ');
    let id = parts.next()?.parse().ok()?;
    let time: u64 = parts.next()?.parse().ok()?;
    assert!(time > 1_700_000_000_000, "a wall-clock time: {line}");
    Some((id, parts.next()?.to_owned()))
}

/// Reads a replay up to its `REPLAYED <scope> <n>`: the lines, checked
/// against the count.
fn replay(c: &mut Client, scope: &str) -> Vec<(u64, String)> {
    let end = format!("REPLAYED {scope} ");
    let (before, last) = c.read_until(1000, |l| l.starts_with(&end));
    let lines: Vec<(u64, String)> = before.iter().filter_map(|l| history(l)).collect();
    assert_eq!(
        lines.len(),
        before.len(),
        "only HISTORY before REPLAYED: {before:?}"
    );
    assert_eq!(last[end.len()..], lines.len().to_string(), "{last}");
    lines
}

/// All stored lines of the current scope, paging back with `/history`.
fn page_all(c: &mut Client, scope: &str, page: usize) -> Vec<(u64, String)> {
    let mut all = Vec::new();
    let mut before: Option<u64> = None;
    for _ in 0..1000 {
        match before {
            None => c.send(&format!("/history {page}")),
            Some(b) => c.send(&format!("/history {page} {b}")),
        }
        let got = replay(c, scope);
        assert!(got.len() <= page);
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "oldest first: {got:?}"
        );
        let Some(first) = got.first() else {
            return all;
        };
        before = Some(first.0);
        let mut older = got;
        older.append(&mut all);
        all = older;
    }
    panic!("more than 1000 pages");
}

#[test]
fn replay_on_join_and_registration() {
    let chatd = Chatd::start(&[
        "--ephemeral",
        "--history-lines",
        "100",
        "--history-replay",
        "5",
    ]);
    let mut ann = chatd.connect();
    ann.send("ann");
    ann.expect("WELCOME ann");
    assert!(replay(&mut ann, "*").is_empty());
    for i in 0..3 {
        ann.send(&format!("global {i}"));
    }
    ann.send("/join rust");
    ann.expect("JOIN rust ann");
    assert!(replay(&mut ann, "rust").is_empty());
    for i in 0..8 {
        ann.send(&format!("said {i}"));
    }
    ann.send("/me waves");
    ann.sync();

    let mut bob = chatd.connect();
    bob.send("bob");
    bob.expect("WELCOME bob");
    let global = replay(&mut bob, "*");
    let texts: Vec<&str> = global.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        texts,
        [
            "MSG * ann global 0",
            "MSG * ann global 1",
            "MSG * ann global 2"
        ]
    );
    bob.send("/join RUST");
    bob.expect("JOIN rust bob");
    let group = replay(&mut bob, "rust");
    let texts: Vec<&str> = group.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(
        texts,
        [
            "MSG rust ann said 4",
            "MSG rust ann said 5",
            "MSG rust ann said 6",
            "MSG rust ann said 7",
            "ME rust ann waves"
        ]
    );
    assert!(group.windows(2).all(|w| w[0].0 < w[1].0), "{group:?}");
    assert!(global.last().unwrap().0 < group[0].0);

    // The group's history outlives the group: everyone leaves, it is gone,
    // and whoever creates it again gets it replayed.
    ann.send("/leave");
    bob.send("/leave");
    ann.sync();
    bob.sync();
    bob.send("/join rust");
    bob.expect("JOIN rust bob");
    assert_eq!(replay(&mut bob, "rust"), group);
}

/// A newcomer to `scope` (`g` by `/join`, or `*` by registering) gets the
/// replay, then the live lines, with nothing missing and nothing twice,
/// while another user keeps talking there.
fn no_gap_and_no_duplicate(scope: &str) {
    const LINES: usize = 1500;
    let chatd = Chatd::start(&[
        "--ephemeral",
        "--history-lines",
        "10000",
        "--history-replay",
        "20",
        "--flood-rate",
        "0",
    ]);
    let addr = chatd.addr;
    let mut talker = chatd.user("talker");
    talker.expect("REPLAYED * 0");
    if scope != "*" {
        talker.send(&format!("/join {scope}"));
        talker.expect(&format!("JOIN {scope} talker"));
        talker.expect(&format!("REPLAYED {scope} 0"));
    }
    let sender = thread::spawn(move || {
        for i in 0..LINES {
            talker.send(&format!("n{i}"));
            if i % 10 == 0 {
                // About 0.5 s in all: the newcomer lands in the middle.
                thread::sleep(Duration::from_millis(3));
            }
        }
        talker.sync();
        talker
    });
    thread::sleep(Duration::from_millis(100));
    let mut newcomer = Client::connect(addr);
    newcomer.expect_hello();
    newcomer.send("newcomer");
    if scope != "*" {
        newcomer.send(&format!("/join {scope}"));
    }
    let live = format!("MSG {scope} talker n");
    let end = format!("REPLAYED {scope} ");
    let mut numbers = Vec::new();
    let mut replayed = None;
    for _ in 0..LINES + 100 {
        let line = newcomer.line();
        let text = if let Some((_, past)) = history(&line) {
            past
        } else if line.starts_with(&end) {
            replayed = Some(numbers.len());
            continue;
        } else {
            line
        };
        if let Some(n) = text.strip_prefix(&live) {
            numbers.push(n.parse::<usize>().unwrap());
            if numbers.last() == Some(&(LINES - 1)) {
                break;
            }
        }
    }
    let _ = sender.join();
    let replayed = replayed.expect("a REPLAYED line");
    assert!((1..=20).contains(&replayed), "{replayed} lines replayed");
    assert!(numbers.len() > replayed, "no live line after the replay");
    let first = numbers[0];
    let want: Vec<usize> = (first..LINES).collect();
    assert_eq!(
        numbers, want,
        "a gap or a duplicate (replay was {replayed} lines)"
    );
}

#[test]
fn no_gap_and_no_duplicate_on_join_while_lines_keep_coming() {
    no_gap_and_no_duplicate("g");
}

#[test]
fn no_gap_and_no_duplicate_on_registration_while_lines_keep_coming() {
    no_gap_and_no_duplicate("*");
}

#[test]
fn history_pages_back_through_the_store() {
    let dir = TempDir::new("paging");
    let chatd = Chatd::start(&[
        "--data-dir",
        dir.arg(),
        "--history-lines",
        "1000",
        "--history-replay",
        "5",
        "--flood-rate",
        "0",
    ]);
    let mut ann = chatd.user("ann");
    ann.expect("REPLAYED * 0");
    ann.send("/join g");
    ann.expect("JOIN g ann");
    ann.expect("REPLAYED g 0");
    for i in 0..47 {
        ann.send(&format!("line {i}"));
    }
    let all = page_all(&mut ann, "g", 10);
    let texts: Vec<String> = all.iter().map(|(_, l)| l.clone()).collect();
    let want: Vec<String> = (0..47).map(|i| format!("MSG g ann line {i}")).collect();
    assert_eq!(texts, want);
    // Global's history is separate.
    ann.send("/leave");
    ann.sync();
    assert!(page_all(&mut ann, "*", 10).is_empty());
}

#[test]
fn retention_keeps_the_latest_lines_of_each_scope() {
    let dir = TempDir::new("retention");
    let chatd = Chatd::start(&[
        "--data-dir",
        dir.arg(),
        "--history-lines",
        "10",
        "--history-replay",
        "3",
        "--flood-rate",
        "0",
    ]);
    let mut ann = chatd.user("ann");
    ann.expect("REPLAYED * 0");
    for i in 0..25 {
        ann.send(&format!("g{i}"));
    }
    let kept: Vec<String> = page_all(&mut ann, "*", 7)
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let want: Vec<String> = (15..25).map(|i| format!("MSG * ann g{i}")).collect();
    assert_eq!(kept, want);
}

/// Offline messages wait for the account's next login, across a restart;
/// history and ids survive it too.
#[test]
fn offline_messages_and_history_survive_a_restart() {
    let dir = TempDir::new("restart");
    let args = ["--data-dir", dir.arg(), "--history-lines", "100"];
    let mut chatd = Chatd::start(&args);
    let mut ann = chatd.user("ann");
    ann.expect("REPLAYED * 0");
    ann.send("/register anns-secret");
    ann.expect("ACCOUNT ann registered");
    ann.send("before the restart");
    ann.send("/quit");
    ann.expect("BYE quit");
    let mut bob = chatd.user("bob");
    let (_, last) = bob.read_until(10, |l| l.starts_with("REPLAYED * "));
    assert_eq!(last, "REPLAYED * 1");
    bob.send("/msg ann are you there?");
    bob.expect("DM bob ann are you there?");
    let info = bob.expect_prefix("INFO ");
    assert!(info.contains("stored"), "{info}");
    bob.send("/msg nobody hello");
    bob.expect_prefix("ERR no-such-user ");
    bob.send("/history");
    let before = replay(&mut bob, "*");
    assert_eq!(before.len(), 1);

    chatd.signal("TERM");
    assert!(chatd
        .wait_exit(Duration::from_secs(15))
        .expect("exits")
        .success());
    let chatd = Chatd::start(&args);
    let mut ann = chatd.connect();
    ann.send("/login ann anns-secret");
    ann.expect("WELCOME ann");
    let global = replay(&mut ann, "*");
    assert_eq!(global, before, "the replay after the restart");
    ann.expect("ACCOUNT ann logged-in");
    let (dm_id, dm) = history(&ann.line()).expect("the stored DM");
    assert_eq!(dm, "DM bob ann are you there?");
    assert!(dm_id > before[0].0);
    // Delivered once: the next login has nothing waiting.
    ann.send("new line after the restart");
    ann.send("/history 1");
    let after = replay(&mut ann, "*");
    assert!(after[0].0 > dm_id, "ids keep increasing: {after:?}");
    ann.send("/quit");
    ann.expect("BYE quit");
    let mut again = chatd.connect();
    again.send("/login ann anns-secret");
    again.expect("WELCOME ann");
    replay(&mut again, "*");
    again.expect("ACCOUNT ann logged-in");
    again.expect_nothing();
}

/// --offline-dms bounds what waits for an account: past it the sender is
/// refused and the oldest are kept.
#[test]
fn a_full_mailbox_refuses_and_keeps_the_oldest() {
    let chatd = Chatd::start(&["--ephemeral", "--offline-dms", "2"]);
    let mut ann = chatd.user("ann");
    ann.send("/register anns-secret");
    ann.expect("ACCOUNT ann registered");
    ann.send("/quit");
    ann.expect("BYE quit");
    let mut bob = chatd.user("bob");
    for i in 0..2 {
        bob.send(&format!("/msg ann note {i}"));
        bob.expect(&format!("DM bob ann note {i}"));
        bob.expect_prefix("INFO ");
    }
    bob.send("/msg ann note 2");
    bob.expect_prefix("ERR mailbox-full ");
    let mut ann = chatd.connect();
    ann.send("/login ann anns-secret");
    ann.expect("WELCOME ann");
    ann.expect("ACCOUNT ann logged-in");
    let got: Vec<String> = (0..2)
        .filter_map(|_| history(&ann.line()))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(got, ["DM bob ann note 0", "DM bob ann note 1"]);
    ann.expect_nothing();
}
