//! IRC connections (`IrcSession`) and native ones on one real `Server`,
//! through a small socket-free harness: what each connection receives, as
//! lines.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chatproto::irc::{
    encode_shared, parse_message, Caps, Delivery, IrcConfig, IrcSession, MAX_LINE_LEN,
};
use chatproto::server::{ConnId, Effect, Input, Server, ServerConfig, Time};
use chatproto::{parse_line, Command, FrameError};

/// 2026-12-01T10:00:00.000Z
const WALL_MS: u64 = 1_796_119_200_000;

enum Kind {
    Native,
    Irc(IrcSession),
}

struct Conn {
    id: ConnId,
    kind: Kind,
    got: Vec<String>,
    closed: bool,
}

struct World {
    server: Server,
    config: Arc<IrcConfig>,
    conns: HashMap<String, Conn>,
    next: u64,
    start: Instant,
    /// Shared encodings by (event id, dialect): what a driver would cache.
    shared: HashMap<(u64, Caps), Arc<[u8]>>,
    shared_encodes: usize,
}

impl World {
    fn new() -> Self {
        Self::with(IrcConfig::default())
    }

    fn with(config: IrcConfig) -> Self {
        Self {
            server: Server::new(ServerConfig::default()),
            config: Arc::new(config),
            conns: HashMap::new(),
            next: 1,
            start: Instant::now(),
            shared: HashMap::new(),
            shared_encodes: 0,
        }
    }

    fn time(&self) -> Time {
        Time {
            instant: self.start,
            unix_ms: WALL_MS,
        }
    }

    fn connect(&mut self, who: &str, kind: Kind) {
        let id = ConnId::new(self.next);
        self.next += 1;
        self.conns.insert(
            who.to_owned(),
            Conn {
                id,
                kind,
                got: Vec::new(),
                closed: false,
            },
        );
        let effects = self.server.handle(self.time(), Input::Connected(id));
        self.run(effects);
    }

    fn native(&mut self, name: &str) {
        self.connect(name, Kind::Native);
        self.native_send(name, name);
        self.take(name);
    }

    fn irc_conn(&mut self, who: &str) {
        let session = IrcSession::new(self.config.clone());
        self.connect(who, Kind::Irc(session));
    }

    /// An IRC user registered without CAP, its welcome burst taken.
    fn irc(&mut self, name: &str) {
        self.irc_conn(name);
        self.send(name, &format!("NICK {name}"));
        self.send(name, &format!("USER {name} 0 * :{name}"));
        let got = self.take(name);
        assert!(got.iter().any(|l| l.contains(" 001 ")), "{got:?}");
    }

    fn native_send(&mut self, who: &str, line: &str) {
        let id = self.conns[who].id;
        let cmd = parse_line(line).unwrap();
        let effects = self.server.handle(self.time(), Input::Line(id, cmd));
        self.run(effects);
    }

    /// One IRC line from `who`.
    fn send(&mut self, who: &str, line: &str) {
        self.send_frame(who, Ok(line));
    }

    fn send_frame(&mut self, who: &str, line: Result<&str, FrameError>) {
        let conn = self.conns.get_mut(who).unwrap();
        let Kind::Irc(session) = &mut conn.kind else {
            panic!("{who} is native")
        };
        let from = session.on_line(line);
        push_lines(&mut conn.got, &from.reply);
        if from.close {
            conn.closed = true;
        }
        let id = conn.id;
        self.submit(id, from.commands);
    }

    /// Several IRC lines read before any of their commands reaches the
    /// server, as a driver that batches might do.
    fn send_batch(&mut self, who: &str, batch: &[&str]) {
        let conn = self.conns.get_mut(who).unwrap();
        let Kind::Irc(session) = &mut conn.kind else {
            panic!("{who} is native")
        };
        let mut commands = Vec::new();
        for line in batch {
            let from = session.on_line(Ok(line));
            push_lines(&mut conn.got, &from.reply);
            commands.extend(from.commands);
        }
        let id = conn.id;
        self.submit(id, commands);
    }

    fn submit(&mut self, id: ConnId, commands: Vec<Command>) {
        for cmd in commands {
            let effects = self.server.handle(self.time(), Input::Line(id, cmd));
            self.run(effects);
        }
    }

    fn run(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Deliver { to, event } => {
                    let Some(conn) = self.conns.values_mut().find(|c| c.id == to) else {
                        continue;
                    };
                    match &mut conn.kind {
                        Kind::Native => {
                            let line = String::from_utf8(event.line().to_vec()).unwrap();
                            conn.got.push(line.trim_end().to_owned());
                        }
                        Kind::Irc(session) => match session.on_event(&event) {
                            Delivery::Nothing => {}
                            Delivery::Lines(bytes) => push_lines(&mut conn.got, &bytes),
                            Delivery::Shared => {
                                let key = (event.id(), session.caps().dialect());
                                let config = &self.config;
                                let encodes = &mut self.shared_encodes;
                                let bytes = self.shared.entry(key).or_insert_with(|| {
                                    *encodes += 1;
                                    encode_shared(&event, session.caps(), config)
                                });
                                push_lines(&mut conn.got, bytes);
                            }
                        },
                    }
                }
                Effect::Close { conn, .. } => {
                    if let Some(c) = self.conns.values_mut().find(|c| c.id == conn) {
                        c.closed = true;
                    }
                }
                Effect::Store(_) | Effect::Request { .. } => {}
            }
        }
        self.server.check_invariants().unwrap();
    }

    fn take(&mut self, who: &str) -> Vec<String> {
        std::mem::take(&mut self.conns.get_mut(who).unwrap().got)
    }

    fn take_all(&mut self) {
        for c in self.conns.values_mut() {
            c.got.clear();
        }
    }

    fn session(&self, who: &str) -> &IrcSession {
        match &self.conns[who].kind {
            Kind::Irc(s) => s,
            Kind::Native => panic!("{who} is native"),
        }
    }
}

/// Splits CRLF lines, checking each parses and fits in 512 bytes.
fn push_lines(got: &mut Vec<String>, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap();
    for line in text.split_terminator("\r\n") {
        let body = match line.strip_prefix('@') {
            Some(tagged) => tagged.split_once(' ').unwrap().1,
            None => line,
        };
        assert!(body.len() + 2 <= MAX_LINE_LEN, "{line:?} too long");
        parse_message(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        got.push(line.to_owned());
    }
    assert!(text.is_empty() || text.ends_with("\r\n"));
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The numerics of `got`, in order.
fn numerics(got: &[String]) -> Vec<String> {
    got.iter()
        .filter_map(|l| parse_message(l).ok())
        .filter(|m| m.numeric().is_some())
        .map(|m| m.command().to_owned())
        .collect()
}

#[test]
fn registration_without_cap_sends_001_to_005_422_and_joins_global() {
    let mut w = World::new();
    w.native("nat");
    w.irc_conn("ann");
    w.send("ann", "PASS secret");
    w.send("ann", "NICK ann");
    assert_eq!(w.take("ann"), Vec::<String>::new(), "not registered yet");
    w.send("ann", "USER ann 0 * :Ann A");
    let got = w.take("ann");
    assert_eq!(
        numerics(&got),
        ["001", "002", "003", "004", "005", "422", "353", "366"]
    );
    assert_eq!(
        got[0],
        ":chatd 001 ann :Welcome to the chatd IRC network, ann"
    );
    assert!(
        got[3].starts_with(":chatd 004 ann chatd chatd-"),
        "{}",
        got[3]
    );
    assert!(got[3].ends_with(" i nt"), "{}", got[3]);
    let isupport = &got[4];
    for token in [
        "CASEMAPPING=ascii",
        "NICKLEN=32",
        "CHANNELLEN=33",
        "CHANTYPES=#&",
        "CHANLIMIT=#:1,&:1",
        "NETWORK=chatd",
        "PREFIX= ",
        "TARGMAX=JOIN:1,PART:1,PRIVMSG:1,NOTICE:1",
        "UTF8ONLY",
    ] {
        assert!(isupport.contains(token), "{token} missing: {isupport}");
    }
    assert!(!isupport.contains("EXCEPTS") && !isupport.contains("INVEX"));
    assert_eq!(
        got[6..],
        lines(&[
            ":ann!ann@hidden JOIN &global",
            ":chatd 353 ann = &global :ann nat",
            ":chatd 366 ann &global :End of /NAMES list",
        ])
    );
    assert_eq!(w.take("nat"), lines(&["JOIN * ann"]));
}

#[test]
fn registration_with_cap_waits_for_cap_end() {
    let mut w = World::with({
        let mut c = IrcConfig::default();
        c.motd = Some(vec!["be nice".into(), "".into()]);
        c
    });
    w.irc_conn("ann");
    w.send("ann", "CAP LS 302");
    w.send("ann", "NICK ann");
    w.send("ann", "USER ann 0 * :Ann");
    let got = w.take("ann");
    assert_eq!(
        got,
        lines(&[
            ":chatd CAP * LS :cap-notify echo-message message-tags multi-prefix server-time userhost-in-names"
        ])
    );
    w.send("ann", "CAP REQ :multi-prefix userhost-in-names server-time");
    w.send("ann", "CAP REQ :sasl");
    w.send("ann", "CAP LIST");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd CAP * ACK :multi-prefix userhost-in-names server-time",
            ":chatd CAP * NAK sasl",
            ":chatd CAP * LIST :cap-notify multi-prefix server-time userhost-in-names",
        ])
    );
    assert_eq!(w.server.user_count(), 0, "waits for CAP END");
    w.send("ann", "CAP END");
    let got = w.take("ann");
    assert_eq!(
        numerics(&got),
        ["001", "002", "003", "004", "005", "375", "372", "372", "376", "353", "366"]
    );
    assert!(got.contains(&":chatd 372 ann :- be nice".to_owned()));
    // userhost-in-names
    assert!(got.contains(&":chatd 353 ann = &global ann!ann@hidden".to_owned()));
    assert_eq!(w.server.user_count(), 1);
}

#[test]
fn before_registration_other_commands_get_451_and_quit_gets_error() {
    let mut w = World::new();
    w.irc_conn("x");
    w.send("x", "CAP LS 302");
    w.send("x", "JOIN :");
    w.send("x", "PRIVMSG #a :hi");
    w.send("x", "PING tok");
    w.send("x", "FROB");
    assert_eq!(
        w.take("x"),
        lines(&[
            ":chatd CAP * LS :cap-notify echo-message message-tags multi-prefix server-time userhost-in-names",
            ":chatd 451 * :You have not registered",
            ":chatd 451 * :You have not registered",
            ":chatd PONG chatd tok",
            ":chatd 451 * :You have not registered",
        ])
    );
    w.send("x", "QUIT :bye");
    assert_eq!(w.take("x"), lines(&["ERROR :Closing link: (quit)"]));
    assert!(w.conns["x"].closed);
    assert_eq!(w.server.connection_count(), 0, "the server forgot it");
}

#[test]
fn nick_errors_before_and_after_registration() {
    let mut w = World::new();
    w.native("taken");
    w.irc_conn("x");
    w.send("x", "NICK taken");
    w.send("x", "USER x 0 * :x");
    assert_eq!(
        w.take("x"),
        lines(&[":chatd 433 * taken :Nickname is already in use"])
    );
    w.send("x", "NICK admin");
    assert_eq!(numerics(&w.take("x")), ["432"], "reserved");
    w.send("x", "NICK b@d");
    assert_eq!(numerics(&w.take("x")), ["432"], "invalid");
    w.send("x", "NICK");
    assert_eq!(numerics(&w.take("x")), ["431"]);
    w.send("x", "NICK fine");
    assert_eq!(numerics(&w.take("x"))[0], "001");
    w.take_all();
    // Renames.
    w.send("x", "NICK TAKEN");
    assert_eq!(
        w.take("x"),
        lines(&[":chatd 433 fine TAKEN :Nickname is already in use"])
    );
    w.send("x", "NICK better");
    assert_eq!(w.take("x"), lines(&[":fine!fine@hidden NICK better"]));
    assert_eq!(w.take("taken"), lines(&["NICK fine better"]));
    assert_eq!(w.session("x").nick().unwrap().as_str(), "better");
}

#[test]
fn global_chat_between_native_and_irc() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.irc("bob");
    w.take_all();
    w.send("ann", "PRIVMSG &global :hello all");
    assert_eq!(w.take("nat"), lines(&["MSG * ann hello all"]));
    assert_eq!(
        w.take("bob"),
        lines(&[":ann!ann@hidden PRIVMSG &global :hello all"])
    );
    assert_eq!(w.take("ann"), Vec::<String>::new(), "no echo");
    w.native_send("nat", "hi  there ");
    assert_eq!(
        w.take("ann"),
        lines(&[":nat!nat@hidden PRIVMSG &global :hi  there "])
    );
    // NOTICE travels like PRIVMSG.
    w.send("bob", "NOTICE &global :note");
    assert_eq!(w.take("nat"), lines(&["MSG * bob note"]));
}

#[test]
fn groups_join_part_and_switch() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.native_send("nat", "/join Rust");
    w.send("ann", "JOIN #rust");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":ann!ann@hidden JOIN #Rust",
            ":chatd 353 ann = #Rust :ann nat",
            ":chatd 366 ann #Rust :End of /NAMES list",
        ])
    );
    assert_eq!(w.take("nat"), lines(&["JOIN Rust nat", "JOIN Rust ann"]));
    // Joining the channel one is in does nothing.
    w.send("ann", "JOIN #RUST");
    assert_eq!(w.take("ann"), Vec::<String>::new());
    // Talk in the group, both ways.
    w.send("ann", "PRIVMSG #Rust :in the group");
    assert_eq!(w.take("nat"), lines(&["MSG Rust ann in the group"]));
    w.native_send("nat", "back");
    assert_eq!(
        w.take("ann"),
        lines(&[":nat!nat@hidden PRIVMSG #Rust back"])
    );
    // A channel one is not in.
    w.send("ann", "PRIVMSG #go :x");
    assert_eq!(numerics(&w.take("ann")), ["404"]);
    // Switching: PART #Rust then JOIN #go.
    w.send("ann", "JOIN #go");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":ann!ann@hidden PART #Rust",
            ":ann!ann@hidden JOIN #go",
            ":chatd 353 ann = #go ann",
            ":chatd 366 ann #go :End of /NAMES list",
        ])
    );
    assert_eq!(w.take("nat"), lines(&["PART Rust ann"]));
    w.native_send("nat", "/join go");
    assert_eq!(w.take("ann"), lines(&[":nat!nat@hidden JOIN #go"]));
    w.take("nat");
    w.send("ann", "PART #go :later");
    assert_eq!(w.take("ann"), lines(&[":ann!ann@hidden PART #go"]));
    assert_eq!(w.take("nat"), lines(&["PART go ann"]));
    w.send("ann", "PART #go");
    assert_eq!(numerics(&w.take("ann")), ["442"]);
    w.send("ann", "JOIN");
    w.send("ann", "JOIN bad");
    assert_eq!(numerics(&w.take("ann")), ["461", "403"]);
}

#[test]
fn part_global_stops_global_messages_and_join_resumes() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.send("ann", "PART &global");
    assert_eq!(w.take("ann"), lines(&[":ann!ann@hidden PART &global"]));
    w.native_send("nat", "anyone?");
    w.native_send("nat", "/me looks");
    assert_eq!(w.take("ann"), Vec::<String>::new());
    w.send("ann", "PRIVMSG &global :x");
    assert_eq!(numerics(&w.take("ann")), ["404"]);
    // Departures still arrive, as QUIT: a group channel may hold the user.
    w.native("gone");
    w.native_send("gone", "/quit bye");
    assert_eq!(w.take("ann"), lines(&[":gone!gone@hidden QUIT bye"]));
    w.send("ann", "JOIN &global");
    assert_eq!(numerics(&w.take("ann")), ["353", "366"]);
    w.native_send("nat", "again");
    assert_eq!(
        w.take("ann"),
        lines(&[":nat!nat@hidden PRIVMSG &global again"])
    );
}

#[test]
fn global_channel_from_inside_a_group() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.send("ann", "JOIN #g");
    w.take_all();
    // Global messages still arrive while in a group.
    w.native_send("nat", "global");
    assert_eq!(
        w.take("ann"),
        lines(&[":nat!nat@hidden PRIVMSG &global global"])
    );
    w.send("ann", "PRIVMSG &global :from the group");
    w.send("ann", "PRIVMSG &global :\u{1}ACTION acts\u{1}");
    assert_eq!(w.take("ann"), Vec::<String>::new());
    assert_eq!(
        w.take("nat"),
        lines(&["MSG * ann from the group", "ME * ann acts"])
    );
}

#[test]
fn a_message_racing_with_a_join_elsewhere_is_refused_not_misdelivered() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.native_send("nat", "/join h");
    w.send("ann", "JOIN #g");
    w.take_all();
    // The PRIVMSG is read while the session still thinks it is in #g.
    w.send_batch(
        "ann",
        &[
            "JOIN #h",
            "PRIVMSG #g :meant for g",
            "PRIVMSG #g :\u{1}ACTION too\u{1}",
            "PRIVMSG nat :dm",
        ],
    );
    let got = w.take("ann");
    assert_eq!(
        got,
        lines(&[
            ":ann!ann@hidden PART #g",
            ":ann!ann@hidden JOIN #h",
            ":chatd 353 ann = #h :ann nat",
            ":chatd 366 ann #h :End of /NAMES list",
            ":chatd 404 ann #g :Cannot send to channel (you left it)",
            ":chatd 404 ann #g :Cannot send to channel (you left it)",
        ])
    );
    assert_eq!(w.take("nat"), lines(&["JOIN h ann", "DM ann nat dm"]));
    // Group messages in a row share one pending entry, and later replies
    // still match: a DM to nobody is still a 401.
    for _ in 0..100 {
        w.send("ann", "PRIVMSG #h :x");
    }
    w.send("ann", "PRIVMSG ghost :x");
    assert_eq!(numerics(&w.take("ann")), ["401"]);
    assert_eq!(w.take("nat").len(), 100);
}

#[test]
fn private_messages_and_errors() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.send("ann", "PRIVMSG nat :psst");
    assert_eq!(w.take("nat"), lines(&["DM ann nat psst"]));
    assert_eq!(
        w.take("ann"),
        Vec::<String>::new(),
        "confirmation swallowed"
    );
    w.native_send("nat", "/msg ann back");
    assert_eq!(w.take("ann"), lines(&[":nat!nat@hidden PRIVMSG ann back"]));
    w.send("ann", "PRIVMSG nobody :x");
    assert_eq!(
        w.take("ann"),
        lines(&[":chatd 401 ann nobody :No such nick/channel"])
    );
    w.send("ann", "NOTICE nobody :x");
    w.send("ann", "NOTICE");
    assert_eq!(w.take("ann"), Vec::<String>::new(), "NOTICE gets no errors");
    w.send("ann", "PRIVMSG");
    w.send("ann", "PRIVMSG nat");
    w.send("ann", "PRIVMSG nat :");
    w.send("ann", "PRIVMSG nat :\u{2}\u{2}");
    w.send("ann", "PRIVMSG b@d :x");
    assert_eq!(
        numerics(&w.take("ann")),
        ["411", "412", "412", "412", "401"]
    );
}

#[test]
fn formatting_is_stripped_and_control_characters_refused_visibly() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.send(
        "ann",
        "PRIVMSG &global :\u{2}bold\u{2} \u{3}04,12red\u{3} \u{1d}it\u{f}",
    );
    assert_eq!(w.take("nat"), lines(&["MSG * ann bold red it"]));
    w.send("ann", "PRIVMSG &global :a\u{1b}[2Jb");
    let got = w.take("ann");
    assert_eq!(numerics(&got), ["404"]);
    assert!(got[0].contains("control character"), "{got:?}");
    assert_eq!(w.take("nat"), Vec::<String>::new());
}

#[test]
fn ctcp_action_both_ways_and_other_ctcp_answered() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.send("ann", "PRIVMSG &global :\u{1}ACTION waves\u{1}");
    assert_eq!(w.take("nat"), lines(&["ME * ann waves"]));
    w.native_send("nat", "/me bows");
    assert_eq!(
        w.take("ann"),
        lines(&[":nat!nat@hidden PRIVMSG &global :\u{1}ACTION bows\u{1}"])
    );
    // A private action travels as `/me`.
    w.send("ann", "PRIVMSG nat :\u{1}ACTION winks\u{1}");
    assert_eq!(w.take("nat"), lines(&["DM ann nat /me winks"]));
    w.native_send("nat", "/msg ann /me nods");
    assert_eq!(
        w.take("ann"),
        lines(&[":nat!nat@hidden PRIVMSG ann :\u{1}ACTION nods\u{1}"])
    );
    w.take("nat");
    w.send("ann", "PRIVMSG nat :\u{1}VERSION\u{1}");
    let got = w.take("ann");
    assert_eq!(got.len(), 1);
    assert!(
        got[0].starts_with(":chatd NOTICE ann :\u{1}VERSION chatd-"),
        "{got:?}"
    );
    w.send("ann", "PRIVMSG nat :\u{1}TIME\u{1}");
    assert!(w.take("ann")[0].contains("ERRMSG TIME"));
    w.send("ann", "NOTICE nat :\u{1}VERSION x\u{1}");
    assert_eq!(w.take("ann"), Vec::<String>::new());
    assert_eq!(
        w.take("nat"),
        Vec::<String>::new(),
        "no CTCP is relayed raw"
    );
}

#[test]
fn long_native_messages_are_split_without_loss() {
    let mut w = World::new();
    let long_nick = "n".repeat(32);
    let group = "g".repeat(32);
    w.native(&long_nick);
    w.irc("ann");
    w.native_send(&long_nick, &format!("/join {group}"));
    w.send("ann", &format!("JOIN #{group}"));
    w.take_all();
    // 4096 bytes of text with multi-byte characters, to cut at boundaries.
    let text = "abcé€😀 ".repeat(300);
    let mut text = text[..text.floor_char_boundary_compat(4096)].to_owned();
    while text.len() < 4096 {
        text.push('x');
    }
    let text = text.as_str();
    w.native_send(&long_nick, text);
    let got = w.take("ann");
    assert!(got.len() >= 9, "{}", got.len());
    let prefix = format!(":{long_nick}!{long_nick}@hidden PRIVMSG #{group} ");
    let mut joined = String::new();
    for line in &got {
        let msg = parse_message(line).unwrap();
        assert!(line.starts_with(&prefix), "{line}");
        joined.push_str(msg.param(1).unwrap());
    }
    assert_eq!(joined, text);
    // And an action, with its CTCP wrapping on every line.
    w.native_send(&long_nick, &format!("/me {text}"));
    let got = w.take("ann");
    let mut joined = String::new();
    for line in &got {
        let msg = parse_message(line).unwrap();
        let body = msg.param(1).unwrap();
        let body = body.strip_prefix("\u{1}ACTION ").unwrap();
        joined.push_str(body.strip_suffix('\u{1}').unwrap());
    }
    assert_eq!(joined, text);
}

/// `str::floor_char_boundary` is unstable: the same for tests.
trait FloorBoundary {
    fn floor_char_boundary_compat(&self, at: usize) -> usize;
}

impl FloorBoundary for str {
    fn floor_char_boundary_compat(&self, at: usize) -> usize {
        let mut at = at.min(self.len());
        while !self.is_char_boundary(at) {
            at -= 1;
        }
        at
    }
}

#[test]
fn server_time_and_msgid_tags() {
    let mut w = World::new();
    w.native("nat");
    w.irc_conn("ann");
    for line in [
        "CAP LS 302",
        "CAP REQ :server-time message-tags",
        "CAP END",
        "NICK ann",
        "USER a 0 * :a",
    ] {
        w.send("ann", line);
    }
    w.take_all();
    w.native_send("nat", "hi");
    let got = w.take("ann");
    assert_eq!(got.len(), 1);
    let msg = parse_message(&got[0]).unwrap();
    assert_eq!(
        msg.tag("time").and_then(|t| t.value()),
        Some("2026-12-01T10:00:00.000Z")
    );
    assert!(msg.tag("msgid").and_then(|t| t.value()).is_some());
    assert_eq!(msg.params(), ["&global", "hi"]);
}

#[test]
fn a_broadcast_is_encoded_once_per_dialect() {
    let mut w = World::new();
    w.native("nat");
    w.irc("a");
    w.irc("b");
    w.irc_conn("t");
    for line in ["CAP REQ server-time", "NICK t", "USER t 0 * :t", "CAP END"] {
        w.send("t", line);
    }
    w.take_all();
    w.shared_encodes = 0;
    w.native_send("nat", "to everyone");
    let (a, b, t) = (w.take("a"), w.take("b"), w.take("t"));
    assert_eq!(a, b, "same caps, same bytes");
    assert_ne!(a, t);
    assert!(t[0].starts_with("@time="), "{t:?}");
    assert_eq!(
        w.shared_encodes, 2,
        "one encoding per dialect, not per recipient"
    );
    // Byte-identical through encode_shared directly, for two sessions' caps.
    let (sa, sb) = (w.session("a").caps(), w.session("b").caps());
    assert_eq!(sa.dialect(), sb.dialect());
}

#[test]
fn ping_pong_and_quit() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.send("ann", "PING :12345");
    assert_eq!(w.take("ann"), lines(&[":chatd PONG chatd 12345"]));
    w.send("ann", "PING");
    assert_eq!(numerics(&w.take("ann")), ["409"]);
    w.send("ann", "PONG :x");
    assert_eq!(w.take("ann"), Vec::<String>::new());
    w.send("ann", "QUIT :gone fishing");
    assert_eq!(w.take("ann"), lines(&["ERROR :Closing link: (quit)"]));
    assert!(w.conns["ann"].closed);
    assert_eq!(w.take("nat"), lines(&["PART * ann gone fishing"]));
}

#[test]
fn native_departures_are_quit_lines() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.take_all();
    w.native_send("nat", "/quit bye now");
    assert_eq!(w.take("ann"), lines(&[":nat!nat@hidden QUIT :bye now"]));
}

#[test]
fn queries_names_list_who_whois_topic_mode_motd_away() {
    let mut w = World::new();
    w.native("nat");
    w.irc("ann");
    w.send("ann", "JOIN #g");
    w.native_send("nat", "/join g");
    w.take_all();
    w.send("ann", "NAMES #g");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 353 ann = #g :ann nat",
            ":chatd 366 ann #g :End of /NAMES list"
        ])
    );
    w.send("ann", "LIST");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 321 ann Channel :Users  Name",
            ":chatd 322 ann #g 2 :",
            ":chatd 323 ann :End of /LIST",
        ])
    );
    w.send("ann", "WHO #g");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 352 ann #g ann hidden chatd ann H :0 ann",
            ":chatd 352 ann #g nat hidden chatd nat H :0 nat",
            ":chatd 315 ann #g :End of /WHO list",
        ])
    );
    w.send("ann", "WHO ann");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 352 ann * ann hidden chatd ann H :0 ann",
            ":chatd 315 ann ann :End of /WHO list",
        ])
    );
    w.send("ann", "WHO nat");
    w.send("ann", "WHO ghost");
    w.send("ann", "WHO *");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 352 ann * nat hidden chatd nat H :0 nat",
            ":chatd 315 ann nat :End of /WHO list",
            ":chatd 315 ann ghost :End of /WHO list",
            ":chatd 315 ann * :End of /WHO list",
        ])
    );
    w.send("ann", "WHOIS nat");
    let got = w.take("ann");
    assert_eq!(numerics(&got), ["311", "319", "312", "317", "318"]);
    assert_eq!(got[0], ":chatd 311 ann nat nat hidden * nat");
    assert_eq!(got[1], ":chatd 319 ann nat :&global #g");
    assert!(got[3].starts_with(":chatd 317 ann nat 0 "), "{got:?}");
    w.send("ann", "WHOIS ghost");
    assert_eq!(numerics(&w.take("ann")), ["401", "318"]);
    w.irc_conn("unregistered");
    w.send("ann", "LUSERS");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 251 ann :There are 2 users and 0 invisible on 1 servers",
            ":chatd 253 ann 1 :unknown connection(s)",
            ":chatd 254 ann 1 :channels formed",
            ":chatd 255 ann :I have 3 clients and 0 servers",
        ])
    );
    w.send("ann", "TOPIC #g");
    w.send("ann", "TOPIC #g :new");
    w.send("ann", "TOPIC #h");
    assert_eq!(numerics(&w.take("ann")), ["331", "482", "442"]);
    w.send("ann", "MODE #g");
    w.send("ann", "MODE #g b");
    w.send("ann", "MODE ann");
    w.send("ann", "MODE nat");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 324 ann #g +nt",
            ":chatd 329 ann #g 0",
            ":chatd 368 ann #g :End of channel ban list",
            ":chatd 221 ann +",
            ":chatd 502 ann :Can't view or change modes for other users",
        ])
    );
    w.send("ann", "MOTD");
    assert_eq!(numerics(&w.take("ann")), ["422"]);
    w.send("ann", "AWAY :lunch");
    w.send("ann", "WHO ann");
    w.send("ann", "WHOIS ann");
    w.send("ann", "AWAY");
    let got = w.take("ann");
    assert_eq!(
        numerics(&got),
        ["306", "352", "315", "311", "319", "312", "301", "317", "318", "305"]
    );
    assert!(
        got.contains(&":chatd 301 ann ann lunch".to_owned()),
        "{got:?}"
    );
    assert!(got[1].contains(" G :0 ann"), "{got:?}");
}

#[test]
fn unknown_and_malformed_commands() {
    let mut w = World::new();
    w.irc("ann");
    w.send("ann", "FROBNICATE x");
    w.send("ann", "X1 y");
    w.send("ann", "");
    w.send("ann", &format!("PRIVMSG &global :{}", "x".repeat(600)));
    w.send_frame("ann", Err(FrameError::LineTooLong { max: 8703 }));
    w.send_frame("ann", Err(FrameError::BadEncoding { at: 3 }));
    w.send("ann", "USER a b c d");
    assert_eq!(
        w.take("ann"),
        lines(&[
            ":chatd 421 ann FROBNICATE :Unknown command",
            ":chatd 421 ann X1 :Unknown command",
            ":chatd 417 ann :Input line was too long",
            ":chatd 417 ann :Input line was too long",
            ":chatd FAIL * INVALID_UTF8 :Message rejected, your IRC software MUST use UTF-8: \
             line is not valid UTF-8 (byte 3), discarded",
            ":chatd 462 ann :You may not reregister",
        ])
    );
}

#[test]
fn native_bye_becomes_error() {
    let mut w = World::new();
    w.irc("ann");
    let id = w.conns["ann"].id;
    let effects = w.server.handle(
        w.time(),
        Input::Kick(id, chatproto::CloseReason::SendqExceeded),
    );
    w.run(effects);
    assert_eq!(
        w.take("ann"),
        lines(&["ERROR :Closing link: (sendq-exceeded)"])
    );
    assert!(w.session("ann").is_closed());
}

#[test]
fn no_global_channel() {
    let mut w = World::with({
        let mut c = IrcConfig::default();
        c.global_channel = None;
        c
    });
    w.native("nat");
    w.irc_conn("ann");
    w.send("ann", "NICK ann");
    w.send("ann", "USER ann 0 * :a");
    let got = w.take("ann");
    assert!(!got.iter().any(|l| l.contains(" JOIN ")), "{got:?}");
    w.native_send("nat", "hi");
    assert_eq!(w.take("ann"), Vec::<String>::new());
    w.send("ann", "JOIN &global");
    assert_eq!(numerics(&w.take("ann")), ["403"]);
}

#[test]
fn echo_message_returns_ones_own_messages_as_the_server_sent_them() {
    let mut w = World::new();
    w.native("nat");
    w.irc_conn("ann");
    w.send("ann", "CAP REQ :echo-message");
    w.send("ann", "NICK ann");
    w.send("ann", "USER ann 0 * :Ann");
    w.send("ann", "CAP END");
    w.take_all();
    w.send("ann", "PRIVMSG &global :hello");
    assert_eq!(w.take("nat"), lines(&["MSG * ann hello"]));
    assert_eq!(
        w.take("ann"),
        lines(&[":ann!ann@hidden PRIVMSG &global hello"])
    );
    // A private message comes back too, as sent.
    w.send("ann", "PRIVMSG nat :psst");
    assert_eq!(w.take("nat"), lines(&["DM ann nat psst"]));
    assert_eq!(w.take("ann"), lines(&[":ann!ann@hidden PRIVMSG nat psst"]));
    // Dropping the capability stops it.
    w.send("ann", "CAP REQ :-echo-message");
    w.take_all();
    w.send("ann", "PRIVMSG &global :quiet");
    assert_eq!(w.take("ann"), Vec::<String>::new());
}
