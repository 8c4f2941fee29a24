//! The library as a third party uses it: building values and commands with
//! `?`, framing with the documented limits, and a client `Session` talking to
//! the real state machine.

use std::time::{Duration, Instant};

use chatproto::server::{ConnId, Effect, Input, Server, ServerConfig};
use chatproto::{
    parse_event, Command, ErrorCode, Event, GroupName, LineFramer, Name, ParseError, Scope,
    Session, Text, Token, DEFAULT_MAX_LINE, EVENT_LINE_LIMIT,
};

/// Builds a command from owned strings, as a bot reading a config would.
fn invite(group: String, who: String, token: &str) -> Result<Vec<Command>, ParseError> {
    let group: GroupName = group.parse()?;
    let who = Name::try_from(who)?;
    let text = Text::try_from(format!("come to {group}"))?;
    let token = Token::try_from(token)?;
    Ok(vec![
        Command::Join(group),
        Command::Msg { to: who, text },
        Command::Ping(Some(token)),
    ])
}

#[test]
fn value_errors_convert_with_question_mark() {
    let lines: Vec<String> = invite("rust".into(), "bob".into(), "t1")
        .unwrap()
        .iter()
        .map(Command::to_string)
        .collect();
    assert_eq!(lines, ["/join rust", "/msg bob come to rust", "/ping t1"]);

    let cases: &[(&str, &str, &str, ErrorCode)] = &[
        ("ru st", "bob", "t1", ErrorCode::NameInvalid),
        ("rust", "", "t1", ErrorCode::NameInvalid),
        ("rust", "bob", "two words", ErrorCode::BadArgs),
    ];
    for (group, who, token, code) in cases {
        let err = invite(group.to_string(), who.to_string(), token).unwrap_err();
        assert_eq!(err.code(), *code, "{group:?} {who:?} {token:?}");
    }
}

fn msg_line(text_len: usize) -> Vec<u8> {
    let longest = "n".repeat(32);
    Event::Msg {
        scope: Scope::Group(GroupName::try_from(longest.as_str()).unwrap()),
        from: Name::try_from(longest.as_str()).unwrap(),
        text: Text::try_from("x".repeat(text_len)).unwrap(),
    }
    .to_bytes()
}

/// The crate docs say a client framing with DEFAULT_MAX_LINE drops MSG lines
/// whose text is 4027 bytes or more, and that for_client takes them.
#[test]
fn client_framing_limit_is_the_event_limit() {
    for (text_len, fits_server_limit) in [(4026, true), (4027, false), (4096, false)] {
        let line = msg_line(text_len);
        let mut small = LineFramer::new(DEFAULT_MAX_LINE);
        small.push(&line);
        assert_eq!(
            small.next_line().unwrap().is_ok(),
            fits_server_limit,
            "{text_len}"
        );

        let mut client = LineFramer::for_client();
        assert_eq!(client.max_line(), EVENT_LINE_LIMIT);
        client.push(&line);
        let event = parse_event(client.next_line().unwrap().unwrap()).unwrap();
        assert!(matches!(event, Event::Msg { text, .. } if text.as_str().len() == text_len));
    }
    assert_eq!(LineFramer::for_server().max_line(), DEFAULT_MAX_LINE);
}

/// A client (framer, session) connected to a real `Server` without sockets.
struct Client {
    id: ConnId,
    session: Session,
    framer: LineFramer,
    events: Vec<String>,
}

struct Net {
    server: Server,
    clients: Vec<Client>,
    now: Instant,
}

impl Net {
    fn new() -> Self {
        Self {
            server: Server::new(ServerConfig::default()),
            clients: Vec::new(),
            now: Instant::now(),
        }
    }

    /// Lets `secs` seconds pass, ticking once a second as a driver does.
    fn wait(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now += Duration::from_secs(1);
            self.input(Input::Tick);
        }
    }

    fn connect(&mut self) -> usize {
        let id = ConnId::new(self.clients.len() as u64 + 1);
        self.clients.push(Client {
            id,
            session: Session::new(),
            framer: LineFramer::for_client(),
            events: Vec::new(),
        });
        self.input(Input::Connected(id));
        self.clients.len() - 1
    }

    /// Sends as a client library user would: note it, encode it, the server
    /// frames and parses it.
    fn send(&mut self, c: usize, cmd: &Command) {
        self.clients[c].session.note_sent(cmd);
        let bytes = cmd.to_bytes();
        let mut framer = LineFramer::for_server();
        framer.push(&bytes);
        let id = self.clients[c].id;
        while let Some(line) = framer.next_line() {
            let input = Input::from_frame(id, line);
            self.input(input);
        }
    }

    fn input(&mut self, input: Input) {
        let mut replies = Vec::new();
        for effect in self.server.handle(self.now, input) {
            let Effect::Deliver { to, event } = effect else {
                continue;
            };
            let Some(c) = self.clients.iter().position(|c| c.id == to) else {
                continue;
            };
            let client = &mut self.clients[c];
            client.framer.push(event.line());
            while let Some(line) = client.framer.next_line() {
                let event = parse_event(line.unwrap()).unwrap();
                client.events.push(event.to_string());
                if let Some(reply) = client.session.handle(&event) {
                    replies.push((c, reply));
                }
            }
        }
        for (c, reply) in replies {
            self.send(c, &reply);
        }
    }
}

#[test]
fn session_reports_names_the_server_refused() {
    let mut net = Net::new();
    let ann = net.connect();
    net.send(ann, &Command::say("ann").unwrap());
    assert!(net.clients[ann].session.is_registered());
    assert_eq!(net.clients[ann].session.take_name_refusal(), None);

    let other = net.connect();
    // Pipelined: three names before any answer; the third is accepted.
    for name in ["ANN", "an n", "bob"] {
        net.send(other, &Command::say(name).unwrap());
    }
    let s = &mut net.clients[other].session;
    assert_eq!(s.name().map(Name::as_str), Some("bob"));
    assert_eq!(s.pending_name(), None);
    // Only the last refusal is kept: the one for "an n".
    let refused = s.take_name_refusal().unwrap();
    assert_eq!(
        (refused.name(), refused.code()),
        ("an n", &ErrorCode::NameInvalid)
    );

    // A rename to a taken name keeps the old one; to a reserved one too.
    for (wanted, code) in [
        ("Ann", ErrorCode::NameTaken),
        ("root", ErrorCode::NameReserved),
    ] {
        net.send(other, &Command::nick(wanted).unwrap());
        let s = &mut net.clients[other].session;
        let refused = s.take_name_refusal().unwrap();
        assert_eq!((refused.name(), refused.code()), (wanted, &code));
        assert_eq!(s.name().map(Name::as_str), Some("bob"));
    }

    net.send(other, &Command::nick("robert").unwrap());
    let s = &mut net.clients[other].session;
    assert_eq!((s.take_name_refusal(), s.pending_name()), (None, None));
    assert_eq!(s.name().map(Name::as_str), Some("robert"));
    assert!(net.clients[ann]
        .events
        .contains(&"NICK bob robert".to_string()));
}

#[test]
fn session_answers_the_servers_ping() {
    let mut net = Net::new();
    let ann = net.connect();
    net.send(ann, &Command::nick("ann").unwrap());
    net.send(ann, &Command::join("rust").unwrap());
    assert_eq!(net.clients[ann].session.scope().as_str(), "rust");
    // Silent past ping_after (60 s): PING, answered by the session's /pong,
    // which counts as activity; without it the idle timeout (120 s) would end
    // the connection.
    net.wait(100);
    assert!(net.clients[ann]
        .events
        .iter()
        .any(|e| e.starts_with("PING ")));
    net.wait(50);
    assert!(
        !net.clients[ann].session.is_closed(),
        "{:?}",
        net.clients[ann].events
    );
    net.send(ann, &Command::quit(Some("bye now")).unwrap());
    let c = &net.clients[ann];
    assert!(c.session.is_closed());
    assert_eq!(c.events.last().map(String::as_str), Some("BYE quit"));
}

/// A third party builds the scope and query commands with the constructors and
/// reads the replies' fields from the real state machine (at the given wall
/// time for the sign-on).
#[test]
fn scope_and_query_commands_from_outside() {
    use chatproto::server::Time;
    use std::time::{SystemTime, UNIX_EPOCH};

    let mut server = Server::new(ServerConfig::default());
    let now = Instant::now();
    let wall = UNIX_EPOCH + Duration::from_secs(1_764_600_000);
    let (ann, bob) = (ConnId::new(1), ConnId::new(2));
    for conn in [ann, bob] {
        let _ = server.handle(now, Input::Connected(conn));
    }
    let mut replies = |conn, cmd: Command, at: SystemTime| -> Vec<Event> {
        server
            .handle(Time::new(now, at), Input::Line(conn, cmd))
            .into_iter()
            .filter_map(|e| match e {
                Effect::Deliver { to, event } if to == conn => Some(event.event().clone()),
                _ => None,
            })
            .collect()
    };
    for (conn, name) in [(ann, "ann"), (bob, "bob")] {
        replies(conn, Command::nick(name).unwrap(), wall);
    }
    replies(bob, Command::join("Rust").unwrap(), wall);
    let said = replies(bob, Command::say_in("*", "hi").unwrap(), wall);
    assert!(said.is_empty(), "not echoed: {said:?}");
    let refused = replies(ann, Command::me_in("rust", "waves").unwrap(), wall);
    assert!(
        matches!(
            &refused[..],
            [Event::Err {
                code: ErrorCode::NotInGroup,
                ..
            }]
        ),
        "{refused:?}"
    );
    let whois = replies(ann, Command::whois("BOB").unwrap(), wall);
    let [Event::Whois {
        name,
        scope,
        idle,
        signon,
    }] = &whois[..]
    else {
        panic!("{whois:?}");
    };
    assert_eq!(
        (name.as_str(), scope.as_str(), *idle, *signon),
        ("bob", "Rust", 0, 1_764_600_000)
    );
    let count = replies(ann, Command::Count, wall);
    assert!(
        matches!(
            &count[..],
            [Event::Count {
                users: 2,
                groups: 1,
                connections: 2
            }]
        ),
        "{count:?}"
    );
}
