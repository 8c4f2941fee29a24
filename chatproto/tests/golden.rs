//! PROTOCOL.md's example session, replayed against the state machine and
//! checked line by line both ways, so the spec cannot drift from the code.

mod support;

use std::time::Duration;

use chatproto::server::{AccountsConfig, Answer, HistoryConfig, Request, ServerConfig, StoreOp};
use chatproto::{parse_event, parse_line, CloseReason, Event, Past};
use support::World;

const PROTOCOL: &str = include_str!("../../PROTOCOL.md");

/// The lines of the example session's code block.
fn example_lines() -> Vec<&'static str> {
    session_lines("## 10. Example session\n")
}

/// The lines of the first code block after `heading`.
fn session_lines(heading: &str) -> Vec<&'static str> {
    let section = PROTOCOL
        .split(heading)
        .nth(1)
        .expect("PROTOCOL.md has the example session");
    let block = section
        .split("```text\n")
        .nth(1)
        .expect("the session is a text block");
    let block = block.split("```").next().expect("the block ends");
    block.lines().filter(|l| !l.trim().is_empty()).collect()
}

enum Step<'a> {
    Client(&'a str, &'a str),
    Server(&'a str, &'a str),
    Closes(&'a str),
    /// `store: <answer>`: the store answers the oldest request.
    Store(&'a str),
    /// `<n> s passes`.
    Passes(u64),
}

fn steps() -> Vec<Step<'static>> {
    parse_steps(example_lines())
}

fn parse_steps(lines: Vec<&'static str>) -> Vec<Step<'static>> {
    lines
        .into_iter()
        .map(|l| {
            if let Some(answer) = l.strip_prefix("store: ") {
                return Step::Store(answer);
            }
            if let Some(secs) = l.strip_suffix(" s passes") {
                return Step::Passes(secs.parse().expect("whole seconds"));
            }
            let (label, rest) = l.split_once(' ').expect("label first");
            if let Some(line) = rest.strip_prefix("C: ") {
                Step::Client(label, line)
            } else if let Some(line) = rest.strip_prefix("S: ") {
                Step::Server(label, line)
            } else if rest == "closes" {
                Step::Closes(label)
            } else {
                panic!("unreadable example line {l:?}")
            }
        })
        .collect()
}

#[test]
fn example_session_has_every_event_kind() {
    let tags: std::collections::BTreeSet<&str> = steps()
        .iter()
        .filter_map(|s| match s {
            Step::Server(_, line) => line.split(' ').next(),
            _ => None,
        })
        .collect();
    for tag in [
        "HELLO", "WELCOME", "MSG", "ME", "DM", "JOIN", "PART", "NICK", "USERS", "GROUPS", "ERR",
        "PONG", "BYE",
    ] {
        assert!(tags.contains(tag), "the example never shows {tag}");
    }
}

#[test]
fn server_lines_parse_and_encode_back() {
    for step in steps() {
        if let Step::Server(_, line) = step {
            let event = parse_event(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            assert_eq!(event.to_bytes(), format!("{line}\n").into_bytes());
        }
    }
}

#[test]
fn client_lines_that_parse_encode_back() {
    let mut parsed = 0;
    for step in steps() {
        if let Step::Client(_, line) = step {
            // `/frob` and `/join` are in the example to show their errors.
            if let Ok(cmd) = parse_line(line) {
                assert_eq!(cmd.to_bytes(), format!("{line}\n").into_bytes());
                parsed += 1;
            }
        }
    }
    assert!(parsed > 20, "only {parsed} client lines parsed");
}

#[test]
fn server_produces_exactly_the_example() {
    let mut world = World::new();
    for (i, step) in steps().into_iter().enumerate() {
        match step {
            Step::Client(label, line) => world.send(label, line),
            Step::Server(label, line) => {
                world.conn(label);
                let got = world.next(label);
                assert_eq!(
                    got.as_deref(),
                    Some(line),
                    "example line {} for {label}",
                    i + 1
                );
            }
            Step::Closes(label) => world.drop_conn(label, CloseReason::ConnectionLost),
            Step::Store(_) | Step::Passes(_) => panic!("the first example has no store"),
        }
    }
    assert_eq!(
        world.pending(),
        Vec::<(String, Vec<String>)>::new(),
        "lines the example does not show"
    );
}

/// A store as small as can be: what the server told it to keep, and the
/// answers it gives from that.
#[derive(Default)]
struct FakeStore {
    lines: Vec<Past>,
    offline: Vec<(String, Past)>,
}

impl FakeStore {
    fn keep(&mut self, ops: Vec<StoreOp>) {
        for op in ops {
            let past = |o: &chatproto::server::Outgoing| {
                Past::new(o.id(), o.unix_ms(), o.event().clone())
                    .expect("stored lines are past lines")
            };
            match op {
                StoreOp::Line(o) => self.lines.push(past(&o)),
                StoreOp::OfflineDm { account, event } => {
                    self.offline
                        .push((account.key().as_str().to_owned(), past(&event)));
                }
                StoreOp::DeleteOfflineDms { account, through } => self
                    .offline
                    .retain(|(a, p)| a != account.key().as_str() || p.id() > through),
                other => panic!("unknown store write {other:?}"),
            }
        }
    }

    fn yes(&self, request: &Request) -> Answer {
        match request {
            Request::Register { .. }
            | Request::ChangePassword { .. }
            | Request::Unregister { .. } => Answer::Done,
            Request::Login { account, .. } => Answer::LoggedIn {
                offline: self
                    .offline
                    .iter()
                    .filter(|(a, _)| a == account.key().as_str())
                    .map(|(_, p)| p.clone())
                    .collect(),
            },
            Request::History {
                scope,
                before,
                limit,
            } => {
                let mut found: Vec<Past> = self
                    .lines
                    .iter()
                    .filter(|p| {
                        p.scope().map(|s| s.as_str().to_ascii_lowercase())
                            == Some(scope.as_str().to_ascii_lowercase())
                    })
                    .filter(|p| before.is_none_or(|b| p.id() < b))
                    .cloned()
                    .collect();
                let skip = found.len().saturating_sub(*limit);
                found.drain(..skip);
                Answer::History(found)
            }
            other => panic!("unknown request {other:?}"),
        }
    }
}

#[test]
fn server_produces_exactly_the_accounts_example() {
    let mut config = ServerConfig::default();
    config.accounts = Some(AccountsConfig::default());
    config.history = Some(HistoryConfig::default());
    let mut world = World::with_config(config);
    world.unix_ms = 1_764_600_000_000;
    let mut store = FakeStore::default();
    let steps = parse_steps(session_lines(
        "## 11. Example session with accounts and history\n",
    ));
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Step::Client(label, line) => world.send(label, line),
            Step::Server(label, line) => {
                world.conn(label);
                let got = world.next(label);
                assert_eq!(
                    got.as_deref(),
                    Some(line),
                    "example line {} for {label}",
                    i + 1
                );
                // Every line shown parses, and HISTORY holds a past line.
                if let Ok(Event::History(past)) = parse_event(line) {
                    assert_ne!(past.unix_ms(), 0);
                }
            }
            Step::Closes(label) => world.drop_conn(label, CloseReason::ConnectionLost),
            Step::Store(answer) => {
                store.keep(std::mem::take(&mut world.stored));
                let (id, request) = world.request();
                let answer = match answer {
                    "yes" => store.yes(&request),
                    "wrong-password" => Answer::WrongPassword,
                    other => panic!("unknown store answer {other:?}"),
                };
                world.input(chatproto::server::Input::Answer(id, answer));
            }
            Step::Passes(secs) => world.advance(Duration::from_secs(secs)),
        }
    }
    assert_eq!(
        world.pending(),
        Vec::<(String, Vec<String>)>::new(),
        "lines the example does not show"
    );
    assert!(
        world.requests.is_empty(),
        "questions the example does not answer"
    );
}
