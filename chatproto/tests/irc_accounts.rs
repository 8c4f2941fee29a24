//! IRC connections logging in (SASL `PLAIN`, `PASS account:password`,
//! NickServ) and getting history, on a real `Server` with accounts and
//! history on, whose store requests a tiny in-test store answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatproto::irc::{encode_shared, parse_message, Delivery, IrcConfig, IrcSession};
use chatproto::server::{
    AccountsConfig, Answer, ConnId, Effect, HistoryConfig, Input, Request, RequestId, Server,
    ServerConfig, StoreOp, Time,
};
use chatproto::{parse_line, Name, Past};

/// 2026-12-01T10:00:00.000Z
const WALL_MS: u64 = 1_796_119_200_000;

enum Kind {
    Native,
    Irc(Box<IrcSession>),
}

struct Conn {
    id: ConnId,
    kind: Kind,
    got: Vec<String>,
}

struct World {
    server: Server,
    config: Arc<IrcConfig>,
    conns: HashMap<String, Conn>,
    next: u64,
    now: Instant,
    /// The store: account key -> password, offline DMs per account key.
    passwords: HashMap<String, String>,
    offline: HashMap<String, Vec<Past>>,
    requests: Vec<(RequestId, Request)>,
}

impl World {
    fn new() -> Self {
        let mut config = ServerConfig::default();
        config.accounts = Some(AccountsConfig::default());
        config.history = Some(HistoryConfig::default());
        let mut server = Server::new(config);
        server.add_account(Name::try_from("acct").unwrap(), 0);
        let mut irc = IrcConfig::default();
        irc.accounts = true;
        Self {
            server,
            config: Arc::new(irc),
            conns: HashMap::new(),
            next: 1,
            now: Instant::now(),
            passwords: HashMap::from([("acct".to_owned(), "hunter22".to_owned())]),
            offline: HashMap::new(),
            requests: Vec::new(),
        }
    }

    fn time(&self) -> Time {
        Time {
            instant: self.now,
            unix_ms: WALL_MS,
        }
    }

    fn connect(&mut self, who: &str, kind: Kind) {
        let id = ConnId::new(self.next);
        self.next += 1;
        let conn = Conn {
            id,
            kind,
            got: Vec::new(),
        };
        self.conns.insert(who.to_owned(), conn);
        self.input(Input::Connected(id));
    }

    fn native(&mut self, name: &str) {
        self.connect(name, Kind::Native);
        self.native_send(name, name);
        self.take(name);
    }

    fn irc_conn(&mut self, who: &str) {
        let session = IrcSession::new(self.config.clone());
        self.connect(who, Kind::Irc(Box::new(session)));
    }

    fn native_send(&mut self, who: &str, line: &str) {
        let id = self.conns[who].id;
        self.input(Input::Line(id, parse_line(line).unwrap()));
    }

    fn send(&mut self, who: &str, line: &str) {
        let conn = self.conns.get_mut(who).unwrap();
        let Kind::Irc(session) = &mut conn.kind else {
            panic!("{who} is native")
        };
        let from = session.on_line(Ok(line));
        push_lines(&mut conn.got, &from.reply);
        let id = conn.id;
        for cmd in from.commands {
            self.input(Input::Line(id, cmd));
        }
    }

    fn input(&mut self, input: Input) {
        let effects = self.server.handle(self.time(), input);
        for effect in effects {
            match effect {
                Effect::Deliver { to, event } => {
                    let config = self.config.clone();
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
                                let bytes = encode_shared(&event, session.caps(), &config);
                                push_lines(&mut conn.got, &bytes);
                            }
                        },
                    }
                }
                Effect::Store(StoreOp::OfflineDm { account, event }) => {
                    let past = Past::new(event.id(), event.unix_ms(), event.event().clone());
                    let key = account.key().as_str().to_owned();
                    self.offline.entry(key).or_default().push(past.unwrap());
                }
                Effect::Request { id, request } => self.requests.push((id, request)),
                Effect::Store(_) | Effect::Close { .. } => {}
            }
        }
        self.server.check_invariants().unwrap();
    }

    /// The store answers the oldest request, truthfully.
    fn store_answers(&mut self) {
        let (id, request) = self.requests.remove(0);
        let answer = match request {
            Request::Login { account, password } => {
                let key = account.key().as_str().to_owned();
                match self.passwords.get(&key) {
                    Some(p) if p == password.expose() => Answer::LoggedIn {
                        offline: self.offline.remove(&key).unwrap_or_default(),
                    },
                    Some(_) => Answer::WrongPassword,
                    None => Answer::NoSuchAccount,
                }
            }
            Request::Register { account, password } => {
                let key = account.key().as_str().to_owned();
                self.passwords.insert(key, password.expose().to_owned());
                Answer::Done
            }
            other => panic!("unexpected {other:?}"),
        };
        self.input(Input::Answer(id, answer));
    }

    fn advance(&mut self, secs: u64) {
        for _ in 0..secs {
            self.now += Duration::from_secs(1);
            self.input(Input::Tick);
        }
    }

    fn take(&mut self, who: &str) -> Vec<String> {
        std::mem::take(&mut self.conns.get_mut(who).unwrap().got)
    }
}

/// Splits CRLF lines, checking each parses.
fn push_lines(got: &mut Vec<String>, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).unwrap();
    for line in text.split_terminator("\r\n") {
        parse_message(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        got.push(line.to_owned());
    }
}

/// The commands (numerics included) of `got`, in order.
fn commands(got: &[String]) -> Vec<String> {
    got.iter()
        .map(|l| parse_message(l).unwrap().command().to_owned())
        .collect()
}

#[test]
fn sasl_is_offered_only_with_accounts() {
    let mut w = World::new();
    w.irc_conn("a");
    w.send("a", "CAP LS 302");
    let ls = w.take("a");
    assert!(ls[0].contains(" sasl=PLAIN "), "{ls:?}");
    let mut plain = World::new();
    plain.config = Arc::new(IrcConfig::default());
    plain.irc_conn("b");
    plain.send("b", "CAP LS 302");
    assert!(!plain.take("b")[0].contains("sasl"));
    plain.send("b", "CAP REQ :sasl");
    assert!(plain.take("b")[0].contains(" NAK "));
}

#[test]
fn sasl_plain_logs_in_before_cap_end_and_the_welcome_waits_for_it() {
    let mut w = World::new();
    w.native("nat");
    w.irc_conn("a");
    for line in ["CAP LS 302", "CAP REQ :sasl", "NICK guest", "USER g 0 * :G"] {
        w.send("a", line);
    }
    w.take("a");
    w.send("a", "AUTHENTICATE PLAIN");
    assert_eq!(w.take("a"), [":chatd AUTHENTICATE +"]);
    w.send("a", "AUTHENTICATE AGFjY3QAaHVudGVyMjI=");
    assert!(w.take("a").is_empty(), "the store has not answered");
    w.store_answers();
    let got = w.take("a");
    assert_eq!(commands(&got), ["900", "903"], "{got:?}");
    assert_eq!(
        got[0],
        ":chatd 900 acct acct!acct@hidden acct :You are now logged in as acct"
    );
    w.send("a", "CAP END");
    let got = w.take("a");
    let cmds = commands(&got);
    assert_eq!(cmds[..5], ["001", "002", "003", "004", "005"], "{got:?}");
    assert!(got[0].starts_with(":chatd 001 acct "), "{got:?}");
    assert!(cmds.contains(&"JOIN".to_owned()) && cmds.ends_with(&["353".into(), "366".into()]));
    assert_eq!(w.take("nat"), ["JOIN * acct"]);
}

#[test]
fn a_failed_sasl_login_is_904_and_registration_goes_on_with_the_nick() {
    let mut w = World::new();
    w.irc_conn("a");
    for line in ["CAP LS 302", "CAP REQ :sasl", "NICK guest", "USER g 0 * :G"] {
        w.send("a", line);
    }
    w.send("a", "AUTHENTICATE PLAIN");
    w.send("a", "AUTHENTICATE AGFjY3QAd3JvbmdwYXNz");
    w.store_answers();
    w.take("a");
    w.advance(1); // a wrong password is answered late
    assert_eq!(commands(&w.take("a")), ["904"]);
    w.send("a", "AUTHENTICATE FOO");
    assert_eq!(commands(&w.take("a")), ["908", "904"]);
    w.send("a", "CAP END");
    let got = w.take("a");
    assert!(got[0].starts_with(":chatd 001 guest "), "{got:?}");
}

#[test]
fn pass_account_password_logs_in_at_registration() {
    let mut w = World::new();
    w.irc_conn("a");
    w.send("a", "PASS acct:hunter22");
    w.send("a", "NICK acct");
    w.send("a", "USER a 0 * :A");
    w.store_answers();
    let got = w.take("a");
    assert!(got[0].starts_with(":chatd 001 acct "), "{got:?}");
    assert!(commands(&got).contains(&"900".to_owned()), "{got:?}");
    // A wrong one: 464, then the nick registers as without PASS.
    w.irc_conn("b");
    w.send("b", "PASS acct:wrongpass");
    w.send("b", "NICK bee");
    w.send("b", "USER b 0 * :B");
    w.store_answers();
    w.advance(1);
    let got = w.take("b");
    assert_eq!(commands(&got)[0], "464", "{got:?}");
    assert!(got[1].starts_with(":chatd 001 bee "), "{got:?}");
}

#[test]
fn pass_with_another_nick_registers_as_the_account_without_an_error() {
    // IRC clients send their configured nick with PASS; after the login the
    // connection has the account's name, and the nick is not refused for it.
    let mut w = World::new();
    w.irc_conn("a");
    w.send("a", "PASS acct:hunter22");
    w.send("a", "NICK someone");
    w.send("a", "USER a 0 * :A");
    w.store_answers();
    let got = w.take("a");
    assert!(got[0].starts_with(":chatd 001 acct "), "{got:?}");
    assert!(commands(&got).contains(&"900".to_owned()), "{got:?}");
    assert!(
        !commands(&got)
            .iter()
            .any(|c| c == "432" || c == "433" || c == "NOTICE"),
        "{got:?}"
    );
}

#[test]
fn nickserv_identify_and_register() {
    let mut w = World::new();
    w.irc_conn("a");
    w.send("a", "NICK guest");
    w.send("a", "USER g 0 * :G");
    w.take("a");
    w.send("a", "PRIVMSG NickServ :IDENTIFY acct hunter22");
    w.store_answers();
    let got = w.take("a");
    assert_eq!(commands(&got), ["NICK", "900", "NOTICE"], "{got:?}");
    assert_eq!(got[0], ":guest!guest@hidden NICK acct");
    assert_eq!(
        got[2],
        ":NickServ!NickServ@chatd NOTICE acct :You are now identified for acct"
    );
    assert!(!got.concat().contains("hunter22"));
    w.irc_conn("b");
    w.send("b", "NICK bee");
    w.send("b", "USER b 0 * :B");
    w.take("b");
    w.send("b", "NS REGISTER sesame-open");
    w.store_answers();
    let got = w.take("b");
    assert_eq!(commands(&got), ["900", "NOTICE"], "{got:?}");
    w.send("b", "PRIVMSG NickServ :IDENTIFY short");
    assert!(w.take("b")[0].contains("Syntax: IDENTIFY"), "no request");
    w.send("b", "PRIVMSG NickServ :HELP");
    assert!(w.take("b")[0].contains("Commands: IDENTIFY"));
    assert!(w.requests.is_empty());
}

#[test]
fn history_is_replayed_with_server_time_or_a_time_prefix() {
    let mut w = World::new();
    w.native("nat");
    w.native_send("nat", "/join rust");
    w.native_send("nat", "hello from before");
    w.irc_conn("t");
    for line in [
        "CAP LS 302",
        "CAP REQ :server-time",
        "CAP END",
        "NICK tim",
        "USER t 0 * :T",
    ] {
        w.send("t", line);
    }
    w.irc_conn("p");
    w.send("p", "NICK pat");
    w.send("p", "USER p 0 * :P");
    w.take("t");
    w.take("p");
    w.send("t", "JOIN #rust");
    w.send("p", "JOIN #rust");
    let got = w.take("t");
    let replay = got
        .iter()
        .find(|l| l.contains("hello from before"))
        .unwrap();
    assert_eq!(
        replay,
        "@time=2026-12-01T10:00:00.000Z :nat!nat@hidden PRIVMSG #rust :hello from before"
    );
    let got = w.take("p");
    let replay = got
        .iter()
        .find(|l| l.contains("hello from before"))
        .unwrap();
    assert_eq!(
        replay,
        ":nat!nat@hidden PRIVMSG #rust :[2026-12-01 10:00] hello from before"
    );
}

#[test]
fn offline_messages_reach_an_irc_login() {
    let mut w = World::new();
    w.native("nat");
    w.native_send("nat", "/msg acct see you tomorrow");
    w.irc_conn("a");
    w.send("a", "PASS acct:hunter22");
    w.send("a", "NICK acct");
    w.send("a", "USER a 0 * :A");
    w.store_answers();
    let got = w.take("a");
    let dm = got.iter().find(|l| l.contains("see you tomorrow")).unwrap();
    assert_eq!(
        dm,
        ":nat!nat@hidden PRIVMSG acct :[2026-12-01 10:00] see you tomorrow"
    );
}
