//! Round-trip laws for `chatproto::irc`, over messages built only through the
//! validating constructors: `parse(encode(x)) == x`, encoded lines are
//! canonical (`encode(parse(s)) == s`), and for arbitrary lines that parse,
//! encoding again gives an equal message in no more bytes.

use chatproto::irc::{
    escape_tag_value, parse_message, IrcEncodeError, IrcMessage, Tag, MAX_LINE_LEN, MAX_TAGS_LEN,
};
use proptest::prelude::*;

/// The parts of a message, owned, so that a test can build an `IrcMessage`
/// borrowing from them.
#[derive(Clone, Debug)]
struct Parts {
    tags: Vec<(String, String)>,
    source: Option<String>,
    command: String,
    params: Vec<String>,
}

impl Parts {
    /// Builds the message through the validating constructors only.
    fn build(&self) -> IrcMessage<'_> {
        let params: Vec<&str> = self.params.iter().map(String::as_str).collect();
        let mut msg = IrcMessage::new(&self.command, &params).expect("params follow the rules");
        if let Some(source) = &self.source {
            msg = msg.with_source(source).expect("sources have no space");
        }
        for (key, value) in &self.tags {
            msg = msg.with_tag(Tag::new(key, value.as_str()).expect("keys and values are valid"));
        }
        msg
    }

    /// The tag section's length (`@`, tags, space) counted independently of
    /// the encoder: 0 without tags.
    fn tags_len(&self) -> usize {
        if self.tags.is_empty() {
            return 0;
        }
        let tags: usize = self
            .tags
            .iter()
            .map(|(k, v)| {
                k.len()
                    + if v.is_empty() {
                        0
                    } else {
                        1 + escape_tag_value(v).len()
                    }
            })
            .sum();
        1 + tags + (self.tags.len() - 1) + 1
    }

    /// The rest of the line's length, CRLF excluded.
    fn body_len(&self) -> usize {
        let source = self.source.as_ref().map_or(0, |s| s.len() + 2);
        let params: usize = self.params.iter().map(|p| p.len() + 1).sum();
        let colon = self
            .params
            .last()
            .is_some_and(|last| last.is_empty() || last.starts_with(':') || last.contains(' '));
        source + self.command.len() + params + usize::from(colon)
    }
}

/// Characters worth mixing in: the grammar's own, controls IRC allows, UTF-8.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        2 => Just(' '),
        2 => Just(':'),
        1 => Just(';'),
        1 => Just('='),
        1 => Just('\\'),
        1 => Just('@'),
        1 => Just('\r'),
        1 => Just('\n'),
        1 => Just('\u{1}'),
        1 => Just('é'),
    ]
}

fn string_of(len: std::ops::Range<usize>, keep: fn(char) -> bool) -> impl Strategy<Value = String> {
    proptest::collection::vec(tricky_char(), len)
        .prop_map(move |chars| chars.into_iter().filter(|&c| keep(c)).collect())
}

fn tag_key() -> impl Strategy<Value = String> {
    prop_oneof![
        // As the grammar has it: [+][vendor/]name.
        "\\+?([a-z0-9.-]{1,12}/)?[A-Za-z0-9-]{1,12}",
        // Opaque keys, which parsers must accept too.
        string_of(1..12, |c| !matches!(
            c,
            '=' | ';' | ' ' | '\0' | '\r' | '\n'
        )),
    ]
    .prop_filter("keys are not empty", |k| !k.is_empty())
}

fn tag_value(max: usize) -> impl Strategy<Value = String> {
    string_of(0..max, |c| c != '\0')
}

fn command() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z]{1,12}", "[0-9]{3}"]
}

fn source() -> impl Strategy<Value = String> {
    string_of(1..24, |c| !matches!(c, ' ' | '\0' | '\r' | '\n'))
        .prop_filter("sources are not empty", |s| !s.is_empty())
}

fn middle() -> impl Strategy<Value = String> {
    string_of(1..12, |c| !matches!(c, ' ' | '\0' | '\r' | '\n'))
        .prop_filter("middle params are not empty, no leading ':'", |s| {
            !s.is_empty() && !s.starts_with(':')
        })
}

fn last_param(max: usize) -> impl Strategy<Value = String> {
    string_of(0..max, |c| !matches!(c, '\0' | '\r' | '\n'))
}

/// Messages that fit the limits: small parts.
fn parts() -> impl Strategy<Value = Parts> {
    let tags = proptest::collection::vec((tag_key(), tag_value(16)), 0..5);
    let params = (
        proptest::collection::vec(middle(), 0..6),
        proptest::option::of(last_param(40)),
    );
    (tags, proptest::option::of(source()), command(), params).prop_map(
        |(tags, source, command, (mut params, last))| {
            params.extend(last);
            Parts {
                tags,
                source,
                command,
                params,
            }
        },
    )
}

/// Messages around the limits: long tag values and a long last param, made
/// by repeating short random strings (generating thousands of random
/// characters per case would make this test take minutes).
fn big_parts() -> impl Strategy<Value = Parts> {
    let long_value = (tag_value(12), 0..1000usize).prop_map(|(s, n)| s.repeat(n));
    let tags = proptest::collection::vec((tag_key(), long_value), 0..4);
    let long_last = (last_param(12), 0..100usize).prop_map(|(s, n)| s.repeat(n));
    let params = (proptest::collection::vec(middle(), 0..4), long_last);
    (tags, proptest::option::of(source()), command(), params).prop_map(
        |(tags, source, command, (mut params, last))| {
            params.push(last);
            Parts {
                tags,
                source,
                command,
                params,
            }
        },
    )
}

/// Lines that are mostly IRC-shaped, with runs of spaces, stray colons, empty
/// tag items and escapes: what a lenient parser must read consistently.
fn line() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("@".to_owned()),
        Just(":".to_owned()),
        Just(" ".to_owned()),
        Just("  ".to_owned()),
        Just(";".to_owned()),
        Just("=".to_owned()),
        Just("\\".to_owned()),
        Just("PRIVMSG".to_owned()),
        Just("001".to_owned()),
        "[a-z#+]{1,6}",
        string_of(1..4, |_| true),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

/// The encoded line without its CRLF; it holds no other CR, LF or NUL.
fn body_of(out: &[u8]) -> &str {
    let line = std::str::from_utf8(out).expect("encoders write UTF-8");
    let body = line.strip_suffix("\r\n").expect("ends with CRLF");
    assert!(!body.contains(['\r', '\n', '\0']), "{body:?}");
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// parse(encode(x)) == x, and the encoding is canonical.
    #[test]
    fn built_messages_round_trip(parts in parts()) {
        let msg = parts.build();
        let mut out = Vec::new();
        msg.encode(&mut out).expect("small messages fit");
        let body = body_of(&out);
        let parsed = parse_message(body).expect("encoded lines parse");
        prop_assert_eq!(&parsed, &msg);
        let mut again = Vec::new();
        parsed.encode(&mut again).expect("it fit before");
        prop_assert_eq!(again, out);
    }

}

proptest! {
    // About a third of these cases are over a limit (tags or body), a
    // half fit: measured when the test was written.
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Encoding fails exactly when a part is over its limit, with that
    /// length, and then leaves `out` alone; what fits round-trips.
    #[test]
    fn encoding_enforces_the_limits(parts in big_parts()) {
        let msg = parts.build();
        let (tags_len, body_len) = (parts.tags_len(), parts.body_len());
        let mut out = b"before".to_vec();
        let result = msg.encode(&mut out);
        if tags_len > MAX_TAGS_LEN {
            prop_assert_eq!(result, Err(IrcEncodeError::TagsTooLong { len: tags_len }));
        } else if body_len + 2 > MAX_LINE_LEN {
            prop_assert_eq!(result, Err(IrcEncodeError::BodyTooLong { len: body_len + 2 }));
        } else {
            prop_assert_eq!(result, Ok(()));
            prop_assert_eq!(out.len(), 6 + tags_len + body_len + 2);
            let parsed = parse_message(body_of(&out[6..])).expect("encoded lines parse");
            prop_assert_eq!(parsed, msg);
            return Ok(());
        }
        prop_assert_eq!(out, b"before");
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever parses re-encodes, no longer than it was, to a line that
    /// parses to the same message (the inverse law for non-canonical input).
    #[test]
    fn parsed_lines_re_encode(line in line()) {
        let Ok(msg) = parse_message(&line) else { return Ok(()) };
        let mut out = Vec::new();
        msg.encode(&mut out).expect("a parsed message fits");
        let body = body_of(&out);
        prop_assert!(body.len() <= line.trim_start_matches(' ').len(), "{:?} grew to {:?}", line, body);
        prop_assert_eq!(parse_message(body), Ok(msg));
    }
}
