//! Round-trip laws, over values built only through the validating constructors:
//! `parse(encode(x)) == x` for every command and event.

use chatproto::{
    is_forbidden_char, parse_event, parse_line, AccountState, CloseReason, Command, ErrorCode,
    Event, GroupName, Name, Password, Past, Scope, Text, Token,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = Name> {
    "[A-Za-z0-9_-]{1,32}".prop_map(|s| Name::try_from(s.as_str()).expect("matches the name rules"))
}

fn group() -> impl Strategy<Value = GroupName> {
    "[A-Za-z0-9_-]{1,32}"
        .prop_map(|s| GroupName::try_from(s.as_str()).expect("matches the name rules"))
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::Global), group().prop_map(Scope::Group)]
}

/// Any characters (spaces, tabs, slashes, non-ASCII) minus the forbidden ones.
fn text() -> impl Strategy<Value = Text> {
    let ch = prop_oneof![
        4 => any::<char>(),
        2 => Just(' '),
        1 => Just('/'),
        1 => Just('\t'),
        1 => Just('='),
    ];
    proptest::collection::vec(ch, 1..40).prop_map(|chars| {
        let mut s: String = chars
            .into_iter()
            .filter(|c| !is_forbidden_char(*c))
            .collect();
        if s.is_empty() {
            s.push('x');
        }
        Text::try_from(s.as_str()).expect("forbidden characters were removed")
    })
}

fn token() -> impl Strategy<Value = Token> {
    "[!-~]{1,64}".prop_map(|s| Token::try_from(s.as_str()).expect("visible ASCII"))
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop_oneof![
        proptest::sample::select(ErrorCode::KNOWN.to_vec()),
        token().prop_map(ErrorCode::from_token),
    ]
}

fn close_reason() -> impl Strategy<Value = CloseReason> {
    prop_oneof![
        proptest::sample::select(CloseReason::KNOWN.to_vec()),
        token().prop_map(CloseReason::from_token),
    ]
}

/// 8 to 256 bytes: visible ASCII and some non-ASCII letters, no space.
fn password() -> impl Strategy<Value = Password> {
    "[!-~éß€]{8,64}"
        .prop_map(|s| Password::try_from(s.as_str()).expect("matches the password rule"))
}

fn account_state() -> impl Strategy<Value = AccountState> {
    prop_oneof![
        proptest::sample::select(AccountState::KNOWN.to_vec()),
        token().prop_map(AccountState::from_token),
    ]
}

/// A MSG, ME or DM with an id and a time.
fn past() -> impl Strategy<Value = Past> {
    let said = prop_oneof![
        (scope(), name(), text()).prop_map(|(scope, from, text)| Event::Msg { scope, from, text }),
        (scope(), name(), text()).prop_map(|(scope, from, text)| Event::Me { scope, from, text }),
        (name(), name(), text()).prop_map(|(from, to, text)| Event::Dm { from, to, text }),
    ];
    (any::<u64>(), any::<u64>(), said)
        .prop_map(|(id, ms, e)| Past::new(id, ms, e).expect("MSG, ME and DM are past lines"))
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        text().prop_map(Command::Say),
        name().prop_map(Command::Nick),
        Just(Command::Users),
        Just(Command::Groups),
        group().prop_map(Command::Join),
        Just(Command::Leave),
        (name(), text()).prop_map(|(to, text)| Command::Msg { to, text }),
        text().prop_map(Command::Me),
        Just(Command::Help),
        proptest::option::of(token()).prop_map(Command::Ping),
        token().prop_map(Command::Pong),
        proptest::option::of(text()).prop_map(Command::Quit),
        (scope(), text()).prop_map(|(scope, text)| Command::SayIn { scope, text }),
        (scope(), text()).prop_map(|(scope, text)| Command::MeIn { scope, text }),
        name().prop_map(Command::Whois),
        Just(Command::Count),
        any::<bool>().prop_map(Command::Echo),
        password().prop_map(Command::Register),
        (name(), password()).prop_map(|(name, password)| Command::Login { name, password }),
        (password(), password()).prop_map(|(old, new)| Command::Passwd { old, new }),
        password().prop_map(Command::Unregister),
        prop_oneof![
            Just((None, None)),
            any::<u32>().prop_map(|n| (Some(n), None)),
            (any::<u32>(), any::<u64>()).prop_map(|(n, b)| (Some(n), Some(b))),
        ]
        .prop_map(|(count, before)| Command::History { count, before }),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (token(), token(), text()).prop_map(|(server, version, text)| Event::Hello {
            server,
            version,
            text
        }),
        name().prop_map(Event::Welcome),
        (scope(), name(), text()).prop_map(|(scope, from, text)| Event::Msg { scope, from, text }),
        (scope(), name(), text()).prop_map(|(scope, from, text)| Event::Me { scope, from, text }),
        (name(), name(), text()).prop_map(|(from, to, text)| Event::Dm { from, to, text }),
        (scope(), name()).prop_map(|(scope, name)| Event::Join { scope, name }),
        (scope(), name(), proptest::option::of(text())).prop_map(|(scope, name, reason)| {
            Event::Part {
                scope,
                name,
                reason,
            }
        }),
        (name(), name()).prop_map(|(old, new)| Event::Nick { old, new }),
        (scope(), proptest::collection::vec(name(), 0..8))
            .prop_map(|(scope, names)| Event::Users { scope, names }),
        proptest::collection::vec((group(), any::<u32>()), 0..8).prop_map(Event::Groups),
        text().prop_map(Event::Info),
        (error_code(), text()).prop_map(|(code, text)| Event::Err { code, text }),
        token().prop_map(Event::Ping),
        token().prop_map(Event::Pong),
        close_reason().prop_map(Event::Bye),
        (name(), scope(), any::<u32>(), any::<u64>()).prop_map(|(name, scope, idle, signon)| {
            Event::Whois {
                name,
                scope,
                idle,
                signon,
            }
        }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(users, groups, connections)| {
            Event::Count {
                users,
                groups,
                connections,
            }
        }),
        (name(), account_state()).prop_map(|(name, state)| Event::Account { name, state }),
        past().prop_map(Event::History),
        (scope(), any::<u32>()).prop_map(|(scope, count)| Event::Replayed { scope, count }),
    ]
}

/// The encoded line without its LF.
fn line(bytes: &[u8]) -> &str {
    let s = std::str::from_utf8(bytes).expect("encoders write UTF-8");
    s.strip_suffix('\n').expect("encoders end lines with LF")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn commands_round_trip(cmd in command()) {
        let bytes = cmd.to_bytes();
        let l = line(&bytes);
        prop_assert!(!l.contains('\n'));
        prop_assert_eq!(parse_line(l), Ok(cmd));
    }

    #[test]
    fn events_round_trip(ev in event()) {
        let bytes = ev.to_bytes();
        let l = line(&bytes);
        prop_assert!(!l.contains('\n'));
        prop_assert_eq!(parse_event(l), Ok(ev));
    }

    /// Non-canonical input (any case of a command word): parse, encode, parse
    /// again gives the same value.
    #[test]
    fn parsed_commands_survive_reencoding(s in "(/[A-Za-z]{1,6}( [!-~]{1,10}){0,3}|[ -~]{1,30})") {
        if let Ok(cmd) = parse_line(&s) {
            let bytes = cmd.to_bytes();
            prop_assert_eq!(parse_line(line(&bytes)), Ok(cmd));
        }
    }

    /// Arbitrary strings never panic either parser.
    #[test]
    fn parsers_never_panic(s in any::<String>()) {
        let _ = parse_line(&s);
        let _ = parse_event(&s);
    }
}
