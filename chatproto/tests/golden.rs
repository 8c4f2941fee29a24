//! PROTOCOL.md's example session, replayed against the state machine and
//! checked line by line both ways, so the spec cannot drift from the code.

mod support;

use chatproto::{parse_event, parse_line, CloseReason};
use support::World;

const PROTOCOL: &str = include_str!("../../PROTOCOL.md");

/// The lines of the example session's code block.
fn example_lines() -> Vec<&'static str> {
    let section = PROTOCOL
        .split("## 9. Example session")
        .nth(1)
        .expect("PROTOCOL.md has an example session");
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
}

fn steps() -> Vec<Step<'static>> {
    example_lines()
        .into_iter()
        .map(|l| {
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
        }
    }
    assert_eq!(
        world.pending(),
        Vec::<(String, Vec<String>)>::new(),
        "lines the example does not show"
    );
}
