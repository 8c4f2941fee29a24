//! State transitions of accounts, offline messages and history: the requests
//! the server returns, the answers a driver gives, and the lines each fake
//! connection receives.

mod support;

use std::time::Duration;

use chatproto::server::{
    AccountsConfig, Answer, Effect, HistoryConfig, Input, Request, RequestId, ServerConfig, StoreOp,
};
use chatproto::{parse_line, CloseReason, Name, Past};
use support::World;

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn config(history: bool) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.accounts = Some(AccountsConfig::default());
    if history {
        let mut h = HistoryConfig::default();
        h.replay = 3;
        config.history = Some(h);
    }
    config
}

fn name(s: &str) -> Name {
    Name::try_from(s).unwrap()
}

/// A world with accounts on, where `alice` is an account (not connected).
fn with_alice() -> World {
    let mut w = World::with_config(config(false));
    w.server.add_account(name("alice"), 0);
    w
}

/// Logs `label` in as `account` (the driver says yes), discarding its lines.
fn log_in(w: &mut World, label: &str, account: &str) {
    w.send(label, &format!("/login {account} hunter22"));
    let request = w.answer(Answer::LoggedIn { offline: vec![] });
    assert!(matches!(request, Request::Login { .. }), "{request:?}");
    w.take_all();
}

#[test]
fn everything_is_off_by_default_and_returns_no_new_effects() {
    let mut w = World::new();
    w.conn("x");
    w.take_all();
    w.send("x", "/login alice hunter22");
    assert_eq!(
        w.take("x"),
        lines(&["ERR unavailable this server keeps no accounts"])
    );
    w.send("x", "/register hunter22");
    assert_eq!(
        w.take("x"),
        lines(&["ERR not-registered register first: send your name"])
    );
    w.send("x", "x");
    w.user("y");
    w.send("x", "/join g");
    w.send("x", "hello");
    w.take_all();
    for cmd in [
        "/register hunter22",
        "/passwd hunter22 hunter23",
        "/unregister hunter22",
        "/login y hunter22",
    ] {
        w.send("x", cmd);
        let got = w.take("x");
        assert_eq!(
            got,
            lines(&["ERR unavailable this server keeps no accounts"]),
            "{cmd}"
        );
    }
    w.send("x", "/history");
    assert_eq!(
        w.take("x"),
        lines(&["ERR unavailable this server keeps no history"])
    );
    w.send("y", "/join g");
    assert_eq!(w.take("y"), lines(&["JOIN g y"]), "no replay when off");
    assert!(w.requests.is_empty() && w.stored.is_empty());
}

#[test]
fn register_waits_for_the_driver_and_queues_lines_in_order() {
    let mut w = World::with_config(config(false));
    w.user("alice");
    w.user("bob");
    w.send("alice", "/register hunter22");
    let alice = w.conn("alice");
    assert!(w.server.is_waiting(alice));
    w.send("alice", "/ping 1");
    w.send("alice", "/frob");
    w.send("alice", "hi");
    assert_eq!(
        w.take("alice"),
        Vec::<String>::new(),
        "all wait for the answer"
    );
    assert_eq!(w.take("bob"), Vec::<String>::new());
    let (id, request) = w.request();
    let Request::Register { account, password } = &request else {
        panic!("{request:?}")
    };
    assert_eq!((account.as_str(), password.expose()), ("alice", "hunter22"));
    w.input(Input::Answer(id, Answer::Done));
    assert_eq!(
        w.take("alice"),
        lines(&[
            "ACCOUNT alice registered",
            "PONG 1",
            "ERR unknown-command unknown command /frob, try /help",
        ])
    );
    assert_eq!(w.take("bob"), lines(&["MSG * alice hi"]));
    assert_eq!(w.server.account_of(alice), Some(&name("alice")));
    w.send("alice", "/register hunter22");
    assert_eq!(w.take("alice")[0].split(' ').nth(1), Some("logged-in"));
    assert!(w.requests.is_empty());
}

#[test]
fn an_account_name_is_reserved_with_a_hint_to_log_in() {
    let mut w = with_alice();
    w.conn("x");
    w.take_all();
    let hint = "ERR name-reserved the name alice belongs to an account: /login alice <password>";
    w.send("x", "ALICE");
    assert_eq!(w.take("x"), lines(&[hint]));
    w.send("x", "/nick x");
    w.send("x", "/nick Alice");
    assert_eq!(w.take("x"), lines(&["WELCOME x", hint]));
    assert_eq!(w.server.account_count(), 1);
}

#[test]
fn a_name_being_registered_is_protected_until_the_late_answer() {
    let mut w = World::with_config(config(false));
    w.user("alice");
    w.send("alice", "/register hunter22");
    w.drop_conn("alice", CloseReason::ConnectionLost);
    w.send("x", "alice");
    assert_eq!(
        w.take("x").last().unwrap().split(' ').nth(1),
        Some("name-reserved")
    );
    // The store says the account exists already: the name is free again.
    assert_eq!(w.answer(Answer::NameTaken).clone(), w_register("alice"));
    w.send("x", "alice");
    assert_eq!(w.take("x"), lines(&["WELCOME alice"]));
    // A registration answered Done after its connection left stays.
    w.send("x", "/register hunter22");
    w.drop_conn("x", CloseReason::ConnectionLost);
    let _ = w.answer(Answer::Done);
    w.send("y", "alice");
    assert_eq!(
        w.take("y").last().unwrap().split(' ').nth(1),
        Some("name-reserved")
    );
    assert_eq!(w.server.account_count(), 1);
}

fn w_register(account: &str) -> Request {
    Request::Register {
        account: name(account),
        password: chatproto::Password::try_from("hunter22").unwrap(),
    }
}

#[test]
fn login_as_the_first_line_registers_with_the_accounts_spelling() {
    let mut w = World::with_config(config(false));
    w.server.add_account(name("Alice"), 0);
    w.user("bob");
    w.send("a", "/login alice hunter22");
    assert_eq!(w.take("a").len(), 1, "HELLO only, until the answer");
    let request = w.answer(Answer::LoggedIn { offline: vec![] });
    assert!(matches!(request, Request::Login { ref account, .. } if account.as_str() == "Alice"));
    assert_eq!(
        w.take("a"),
        lines(&["WELCOME Alice", "ACCOUNT Alice logged-in"])
    );
    assert_eq!(w.take("bob"), lines(&["JOIN * Alice"]));
    // Its name is its account's now.
    w.send("a", "/nick other");
    assert_eq!(
        w.take("a"),
        lines(&["ERR logged-in you are logged in as Alice: your name is your account's"])
    );
    w.send("a", "/login alice hunter22");
    assert_eq!(w.take("a")[0].split(' ').nth(1), Some("logged-in"));
}

#[test]
fn login_from_a_registered_connection_renames_it() {
    let mut w = with_alice();
    w.user("guest");
    w.user("bob");
    w.send("guest", "/login alice hunter22");
    let _ = w.answer(Answer::LoggedIn { offline: vec![] });
    assert_eq!(
        w.take("guest"),
        lines(&["WELCOME alice", "ACCOUNT alice logged-in"])
    );
    assert_eq!(w.take("bob"), lines(&["NICK guest alice"]));
}

#[test]
fn a_second_login_replaces_the_first_session() {
    let mut w = with_alice();
    w.user("bob");
    log_in(&mut w, "a1", "alice");
    w.send("a2", "/login alice hunter22");
    let _ = w.answer(Answer::LoggedIn { offline: vec![] });
    assert_eq!(w.take("a1"), lines(&["BYE session-replaced"]));
    assert!(w.is_closed("a1"));
    assert_eq!(
        w.take("bob"),
        lines(&["PART * alice session-replaced", "JOIN * alice"])
    );
    assert_eq!(
        w.take("a2")[1..],
        lines(&["WELCOME alice", "ACCOUNT alice logged-in"])[..]
    );
}

#[test]
fn unknown_accounts_are_refused_at_once() {
    let mut w = with_alice();
    w.conn("x");
    w.take_all();
    w.send("x", "/login bob hunter22");
    assert_eq!(
        w.take("x"),
        lines(&["ERR no-such-account no account is named bob"])
    );
    assert!(w.requests.is_empty());
}

#[test]
fn failed_logins_are_answered_late_doubling_per_account_and_peer() {
    let mut w = with_alice();
    w.conn_from("x", 7);
    w.take_all();
    let mut waited = Vec::new();
    for _ in 0..3 {
        w.send("x", "/login alice wrongpass");
        let _ = w.answer(Answer::WrongPassword);
        let mut secs = 0;
        while w.take("x").is_empty() {
            assert!(secs < 60, "no answer");
            w.advance(Duration::from_secs(1));
            secs += 1;
        }
        waited.push(secs);
    }
    assert_eq!(waited, [1, 2, 4]);
    // The owner, elsewhere, is not slowed down: success is never delayed.
    w.conn_from("owner", 8);
    w.take_all();
    w.send("owner", "/login alice hunter22");
    let _ = w.answer(Answer::LoggedIn { offline: vec![] });
    assert_eq!(w.take("owner")[0], "WELCOME alice");
}

#[test]
fn a_peer_that_failed_waits_before_its_next_try_on_any_connection() {
    let mut w = with_alice();
    w.conn_from("x", 7);
    w.send("x", "/login alice wrongpass");
    let _ = w.answer(Answer::WrongPassword);
    // A new connection from the same peer, at once: its login is held.
    w.conn_from("y", 7);
    w.take_all();
    w.send("y", "/login alice guess123");
    assert!(w.requests.is_empty(), "held back by the peer's failure");
    let y = w.conn("y");
    assert!(w.server.is_waiting(y));
    w.advance(Duration::from_secs(1));
    assert_eq!(
        w.take("x"),
        lines(&["ERR wrong-password wrong password for alice"])
    );
    assert!(matches!(w.request().1, Request::Login { .. }));
}

#[test]
fn late_duplicate_and_unknown_answers_are_ignored() {
    let mut w = with_alice();
    w.user("bob");
    w.send("x", "/login alice hunter22");
    let (id, _) = w.request();
    w.drop_conn("x", CloseReason::ConnectionLost);
    w.take_all();
    // The answer comes for a connection that is gone: nobody is logged in,
    // nothing is delivered, and the offline messages are not deleted.
    let past = Past::from_stored(5, 0, "DM bob alice hi").unwrap();
    let effects = w.input(Input::Answer(
        id,
        Answer::LoggedIn {
            offline: vec![past],
        },
    ));
    assert!(effects.is_empty(), "{effects:?}");
    assert_eq!(w.input(Input::Answer(id, Answer::Done)), vec![]);
    assert_eq!(
        w.input(Input::Answer(RequestId::new(999), Answer::Failed)),
        vec![]
    );
    assert_eq!(w.pending(), vec![]);
    assert_eq!(w.server.outstanding_requests(), 0);
}

#[test]
fn passwd_and_unregister_need_a_login_and_say_what_happened() {
    let mut w = with_alice();
    w.user("bob");
    w.send("bob", "/passwd hunter22 hunter23");
    w.send("bob", "/unregister hunter22");
    assert_eq!(
        w.take("bob"),
        lines(&[
            "ERR not-logged-in log in first: /login <name> <password>",
            "ERR not-logged-in log in first: /login <name> <password>",
        ])
    );
    log_in(&mut w, "a", "alice");
    w.send("a", "/passwd hunter22 hunter23");
    let request = w.answer(Answer::Done);
    let Request::ChangePassword { account, old, new } = request else {
        panic!()
    };
    assert_eq!(
        (account.as_str(), old.expose(), new.expose()),
        ("alice", "hunter22", "hunter23")
    );
    assert_eq!(w.take("a"), lines(&["ACCOUNT alice password-changed"]));
    w.send("a", "/unregister hunter23");
    let _ = w.answer(Answer::WrongPassword);
    w.advance(Duration::from_secs(1));
    assert_eq!(
        w.take("a"),
        lines(&["ERR wrong-password wrong password for alice"])
    );
    w.send("a", "/unregister hunter23");
    let _ = w.answer(Answer::Done);
    assert_eq!(w.take("a"), lines(&["ACCOUNT alice unregistered"]));
    assert_eq!(w.server.account_count(), 0);
    // The name is an ordinary one again: it can be renamed away and taken.
    w.send("a", "/nick alice2");
    w.send("c", "alice");
    assert_eq!(w.take("c").last().unwrap(), "WELCOME alice");
}

#[test]
fn a_failing_store_is_unavailable_not_wrong() {
    let mut w = World::with_config(config(false));
    w.user("alice");
    w.send("alice", "/register hunter22");
    let _ = w.answer(Answer::Failed);
    assert_eq!(
        w.take("alice"),
        lines(&["ERR unavailable could not register now; try again later"])
    );
    w.send("bob", "alice"); // the name is free again
    assert_eq!(
        w.take("bob").last().unwrap(),
        "ERR name-taken the name alice is taken"
    );
}

/// Connects `label` from `peer`, names it `label` and sends `/register`;
/// returns the lines it got after `WELCOME` and the rest of the greeting.
fn register_from(w: &mut World, label: &str, peer: u64) -> Vec<String> {
    w.conn_from(label, peer);
    w.send(label, label);
    w.take_all();
    w.send(label, "/register hunter22");
    w.take(label)
}

const TOO_MANY: &str = "ERR rate-limited too many registrations from your address; try again in";

#[test]
fn registrations_per_peer_are_limited_and_refused_at_once() {
    let mut w = World::with_config(config(false));
    let limit = AccountsConfig::default().max_registrations;
    for n in 0..limit {
        if n > 0 {
            w.advance(Duration::from_secs(1));
        }
        let label = format!("u{n}");
        assert_eq!(register_from(&mut w, &label, 7), Vec::<String>::new());
        let _ = w.answer(Answer::Done);
        assert_eq!(
            w.take(&label),
            lines(&[&format!("ACCOUNT {label} registered")])
        );
    }
    // One more from the same address: refused with no request, and the
    // connection is not held (its next line is answered at once).
    let got = register_from(&mut w, "extra", 7);
    assert_eq!(got, lines(&[&format!("{TOO_MANY} 15 min")]));
    assert!(w.requests.is_empty(), "no hash for a refused registration");
    let extra = w.conn("extra");
    assert!(!w.server.is_waiting(extra));
    assert_eq!(w.server.account_of(extra), None);
    w.send("extra", "/ping 1");
    assert_eq!(w.take("extra"), lines(&["PONG 1"]));
    // Its name did not become an account: another may take it.
    w.send("extra", "/nick extra2");
    w.send("other", "extra");
    assert_eq!(w.take("other").last().unwrap(), "WELCOME extra");
    // Other addresses, and connections without one, are not limited.
    assert_eq!(register_from(&mut w, "elsewhere", 8), Vec::<String>::new());
    assert!(matches!(w.answer(Answer::Done), Request::Register { .. }));
    w.user("peerless");
    w.send("peerless", "/register hunter22");
    assert!(matches!(w.answer(Answer::Done), Request::Register { .. }));
    // The wait shown shrinks (the first was 4 s ago, 4 min 56 s are left);
    // once the first registration is 15 minutes old, one more is allowed
    // (one, not the whole limit again: the second was a second later).
    w.advance(Duration::from_secs(10 * 60));
    assert_eq!(
        register_from(&mut w, "later", 7),
        lines(&[&format!("{TOO_MANY} 5 min")])
    );
    w.advance(Duration::from_secs(5 * 60 - 4));
    assert_eq!(register_from(&mut w, "again", 7), Vec::<String>::new());
    assert!(matches!(w.answer(Answer::Done), Request::Register { .. }));
    assert_eq!(
        register_from(&mut w, "again2", 7),
        lines(&[&format!("{TOO_MANY} 1 s")])
    );
}

#[test]
fn every_registration_asked_counts_but_passwd_and_unregister_do_not() {
    let mut accounts = AccountsConfig::default();
    accounts.max_registrations = 2;
    let mut config = ServerConfig::default();
    config.accounts = Some(accounts);
    let mut w = World::with_config(config);
    // A registration the store refuses cost a hash all the same.
    assert_eq!(register_from(&mut w, "a", 7), Vec::<String>::new());
    let _ = w.answer(Answer::NameTaken);
    assert_eq!(w.take("a")[0].split(' ').nth(1), Some("name-reserved"));
    // Logged in: changing the password and unregistering are not limited.
    assert_eq!(register_from(&mut w, "b", 7), Vec::<String>::new());
    let _ = w.answer(Answer::Done);
    for _ in 0..3 {
        w.send("b", "/passwd hunter22 hunter23");
        assert!(matches!(
            w.answer(Answer::Done),
            Request::ChangePassword { .. }
        ));
    }
    w.send("b", "/unregister hunter23");
    assert!(matches!(w.answer(Answer::Done), Request::Unregister { .. }));
    w.take_all();
    // Registering again, now that it is no account, is a third.
    w.send("b", "/register hunter22");
    assert_eq!(w.take("b")[0].split(' ').nth(1), Some("rate-limited"));
    assert!(w.requests.is_empty());
    // Refusals for other reasons do not count: after three of them, the
    // peer still has both its registrations.
    w.conn_from("c", 9);
    w.take_all();
    for _ in 0..3 {
        w.send("c", "/register hunter22");
        assert_eq!(w.take("c")[0].split(' ').nth(1), Some("not-registered"));
    }
    w.send("c", "c");
    w.take_all();
    w.send("c", "/register short");
    assert_eq!(w.take("c")[0].split(' ').nth(1), Some("bad-password"));
    w.send("c", "/register hunter22");
    let _ = w.answer(Answer::Failed);
    w.send("c", "/register hunter22");
    assert!(matches!(w.answer(Answer::Done), Request::Register { .. }));
}

#[test]
fn offline_messages_are_stored_bounded_and_delivered_at_login() {
    let mut cfg = config(false);
    cfg.accounts.as_mut().unwrap().offline_dms = 2;
    let mut w = World::with_config(cfg);
    w.server.add_account(name("alice"), 1);
    w.user("bob");
    w.send("bob", "/msg ALICE are you there?");
    assert_eq!(
        w.take("bob"),
        lines(&[
            "DM bob alice are you there?",
            "INFO alice is offline: your message is stored for their next login",
        ])
    );
    let [StoreOp::OfflineDm { account, event }] = &w.stored[..] else {
        panic!("{:?}", w.stored)
    };
    assert_eq!(account.as_str(), "alice");
    assert_eq!(&event.line()[..], b"DM bob alice are you there?\n");
    let first_id = event.id();
    w.send("bob", "/msg alice hello?");
    assert_eq!(
        w.take("bob"),
        lines(&["ERR mailbox-full alice is offline with 2 messages waiting; yours was not stored"])
    );
    w.send("bob", "/msg nobody hi");
    assert_eq!(
        w.take("bob"),
        lines(&["ERR no-such-user no user is named nobody"])
    );
    // At login the driver's answer carries them (out of order, and one
    // that is no DM, which is skipped).
    w.send("a", "/login alice hunter22");
    let offline = vec![
        Past::from_stored(first_id, 1_700_000_000_000, "DM bob alice are you there?").unwrap(),
        Past::from_stored(first_id - 1, 1_600_000_000_000, "DM carol alice old one").unwrap(),
        Past::from_stored(4, 0, "MSG * carol not a dm").unwrap(),
    ];
    w.stored.clear();
    let _ = w.answer(Answer::LoggedIn { offline });
    assert_eq!(
        w.take("a")[1..],
        lines(&[
            "WELCOME alice",
            "ACCOUNT alice logged-in",
            &format!(
                "HISTORY {} 1600000000000 DM carol alice old one",
                first_id - 1
            ),
            &format!("HISTORY {first_id} 1700000000000 DM bob alice are you there?"),
        ])[..]
    );
    assert_eq!(
        w.stored,
        vec![StoreOp::DeleteOfflineDms {
            account: name("alice"),
            through: first_id
        }]
    );
    // Online now: a DM is live again.
    w.send("bob", "/msg alice hi");
    assert_eq!(w.take("a"), lines(&["DM bob alice hi"]));
}

#[test]
fn too_many_lines_while_waiting_are_refused_busy() {
    let mut cfg = config(false);
    cfg.max_queued_lines = 2;
    let mut w = World::with_config(cfg);
    w.user("alice");
    w.send("alice", "/register hunter22");
    for t in 1..=3 {
        w.send("alice", &format!("/ping {t}"));
    }
    assert_eq!(
        w.take("alice"),
        lines(&[
            "ERR busy too many lines while your last command is answered; this one was discarded"
        ])
    );
    let _ = w.answer(Answer::Done);
    assert_eq!(
        w.take("alice"),
        lines(&["ACCOUNT alice registered", "PONG 1", "PONG 2"])
    );
}

#[test]
fn passwords_never_show_in_debug_output() {
    let mut w = World::with_config(config(false));
    w.user("alice");
    let cmd = parse_line("/register sekrit-pass").unwrap();
    let input = Input::Line(w.conn("alice"), cmd);
    assert!(!format!("{input:?}").contains("sekrit"));
    let effects = w.input(input);
    let shown = format!("{effects:?}");
    assert!(
        shown.contains("Register") && !shown.contains("sekrit"),
        "{shown}"
    );
    let shown = format!("{:?}", w.server);
    assert!(!shown.contains("sekrit"), "{shown}");
}

#[test]
fn a_join_replays_the_groups_latest_lines_before_live_ones() {
    let mut w = World::with_config(config(true));
    w.user("a");
    w.user("b");
    w.send("a", "/join g");
    for i in 1..=5 {
        w.send("a", &format!("line {i}"));
    }
    w.send("a", "/me waves");
    w.take_all();
    let recorded: Vec<String> = w
        .stored
        .iter()
        .map(|op| match op {
            StoreOp::Line(o) => String::from_utf8(o.line().to_vec()).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(recorded.len(), 6);
    assert_eq!(recorded[5], "ME g a waves\n");
    w.send("b", "/join G");
    w.send("a", "live");
    let got = w.take("b");
    let shapes: Vec<String> = got
        .iter()
        .map(|l| {
            // HISTORY <id> <time> <line>: the id and time vary.
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            if f[0] == "HISTORY" {
                format!("HISTORY {}", f[3])
            } else {
                l.clone()
            }
        })
        .collect();
    assert_eq!(
        shapes,
        lines(&[
            "JOIN g b",
            "HISTORY MSG g a line 4",
            "HISTORY MSG g a line 5",
            "HISTORY ME g a waves",
            "REPLAYED g 3",
            "MSG g a live",
        ])
    );
    // Ids increase, and the replayed ones are the lines' own.
    let ids: Vec<u64> = got[1..4]
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|p| p[0] < p[1]), "{ids:?}");
}

#[test]
fn registration_replays_global_history_and_a_recreated_group_keeps_its_own() {
    let mut w = World::with_config(config(true));
    w.user("a");
    w.send("a", "hello all");
    w.send("a", "/join g");
    w.send("a", "in g");
    w.send("a", "/leave"); // g is gone
    w.take_all();
    w.send("n", "newbie");
    let got = w.take("n");
    assert_eq!(got[1], "WELCOME newbie");
    assert!(got[2].starts_with("HISTORY ") && got[2].ends_with(" MSG * a hello all"));
    assert_eq!(got[3], "REPLAYED * 1");
    w.send("n", "/join g");
    let got = w.take("n");
    assert_eq!(got[0], "JOIN g newbie");
    assert!(got[1].ends_with(" MSG g a in g"), "{got:?}");
    assert_eq!(got[2], "REPLAYED g 1");
}

#[test]
fn history_pages_from_memory_or_asks_the_store() {
    let mut w = World::with_config(config(true));
    w.server.set_next_id(1000);
    w.user("a");
    for i in 1..=4 {
        w.send("a", &format!("m{i}"));
    }
    w.take_all();
    // The ring holds the last three (ids ascending from 1000 on).
    w.send("a", "/history 2");
    let got = w.take("a");
    assert_eq!(got.len(), 3);
    assert!(got[0].ends_with("MSG * a m3") && got[1].ends_with("MSG * a m4"));
    assert_eq!(got[2], "REPLAYED * 2");
    let m3: u64 = got[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(m3 >= 1000);
    assert!(w.requests.is_empty(), "served from memory");
    // Before m3, two lines: only m2 is in memory, so the store is asked.
    w.send("a", &format!("/history 2 {m3}"));
    w.send("a", "/ping after");
    let (id, request) = w.request();
    assert_eq!(
        request,
        Request::History {
            scope: chatproto::Scope::Global,
            before: Some(m3),
            limit: 2
        }
    );
    let stored = vec![
        Past::from_stored(m3 - 2, 5, "MSG * a m1").unwrap(),
        Past::from_stored(m3 - 1, 6, "MSG * a m2").unwrap(),
        Past::from_stored(m3, 7, "MSG * a m3").unwrap(), // not below: dropped
        Past::from_stored(1, 7, "MSG other a elsewhere").unwrap(), // other scope
    ];
    w.input(Input::Answer(id, Answer::History(stored)));
    assert_eq!(
        w.take("a"),
        lines(&[
            &format!("HISTORY {} 5 MSG * a m1", m3 - 2),
            &format!("HISTORY {} 6 MSG * a m2", m3 - 1),
            "REPLAYED * 2",
            "PONG after",
        ])
    );
    w.send("a", "/history 0");
    assert_eq!(w.take("a"), lines(&["REPLAYED * 0"]));
}

#[test]
fn seeded_history_is_replayed_and_ids_continue() {
    let mut w = World::with_config(config(true));
    w.server.seed_history([
        Past::from_stored(40, 1, "MSG Rust old hello").unwrap(),
        Past::from_stored(41, 2, "ME Rust old waves").unwrap(),
        Past::from_stored(42, 3, "DM old bob skipped").unwrap(),
    ]);
    w.server.set_next_id(43);
    w.server.set_next_id(7); // never lowers
    w.user("a");
    w.send("a", "/join rust");
    assert_eq!(
        w.take("a"),
        lines(&[
            "JOIN rust a",
            "HISTORY 40 1 MSG Rust old hello",
            "HISTORY 41 2 ME Rust old waves",
            "REPLAYED rust 2",
        ])
    );
    let a = w.conn("a");
    let effects = w.input(Input::Line(a, parse_line("x").unwrap()));
    let Some(Effect::Store(StoreOp::Line(said))) = effects.last() else {
        panic!("{effects:?}")
    };
    assert!(said.id() > 43);
}

#[test]
fn the_number_of_scopes_kept_is_bounded_least_recent_first() {
    let mut cfg = config(true);
    cfg.history.as_mut().unwrap().max_scopes = 3;
    let mut w = World::with_config(cfg);
    w.user("a");
    w.send("a", "global line");
    for g in ["g1", "g2", "g3"] {
        w.send("a", &format!("/join {g}"));
        w.send("a", &format!("in {g}"));
    }
    w.send("a", "/leave");
    w.take_all();
    // Global and two groups fit: g1, the least recent, was forgotten.
    for (g, replayed) in [("g1", 0), ("g2", 1), ("g3", 1)] {
        w.send("a", &format!("/join {g}"));
        let got = w.take("a");
        assert!(got.contains(&format!("REPLAYED {g} {replayed}")), "{got:?}");
    }
}

#[test]
fn an_unregistration_answered_after_the_session_was_replaced_logs_the_new_one_out() {
    let mut w = with_alice();
    log_in(&mut w, "a1", "alice");
    w.send("a1", "/unregister hunter22");
    let (id, _) = w.request();
    log_in(&mut w, "a2", "alice"); // replaces a1, whose request is still out
    w.input(Input::Answer(id, Answer::Done));
    assert_eq!(w.take("a2"), lines(&["ACCOUNT alice unregistered"]));
    let a2 = w.conn("a2");
    assert_eq!(w.server.account_of(a2), None);
    assert_eq!(w.server.account_count(), 0);
}

#[test]
fn a_failed_registration_answered_late_keeps_a_name_someone_logged_in_to() {
    let mut w = World::with_config(config(false));
    w.user("n");
    w.send("n", "/register hunter22");
    let (id, _) = w.request();
    w.drop_conn("n", CloseReason::ConnectionLost);
    // Meanwhile the store did create the account, and someone logs in.
    log_in(&mut w, "m", "n");
    w.input(Input::Answer(id, Answer::Failed));
    let m = w.conn("m");
    assert_eq!(w.server.account_of(m), Some(&name("n")));
    assert_eq!(w.server.account_count(), 1);
}

#[test]
fn a_login_answered_after_the_account_was_unregistered_finds_none() {
    let mut w = with_alice();
    log_in(&mut w, "a1", "alice");
    w.send("a2", "/login alice hunter22");
    let (login, _) = w.request();
    w.send("a1", "/unregister hunter22");
    let _ = w.answer(Answer::Done);
    w.take_all();
    w.input(Input::Answer(login, Answer::LoggedIn { offline: vec![] }));
    assert_eq!(
        w.take("a2"),
        lines(&["ERR no-such-account no account is named alice"])
    );
    assert_eq!(w.take("a1"), Vec::<String>::new(), "not replaced");
}

#[test]
fn a_dm_stored_while_the_login_is_checked_comes_with_it() {
    let mut w = with_alice();
    w.user("bob");
    w.send("a", "/login alice hunter22");
    let (login, _) = w.request();
    // The store read the (empty) mailbox already; then bob writes.
    w.send("bob", "/msg alice just in time");
    w.stored.clear();
    w.input(Input::Answer(login, Answer::LoggedIn { offline: vec![] }));
    let got = w.take("a");
    assert!(
        got.last().unwrap().ends_with(" DM bob alice just in time"),
        "{got:?}"
    );
    assert!(matches!(w.stored[..], [StoreOp::DeleteOfflineDms { .. }]));
    // Had the store's answer held it too, it would come once.
    w.drop_conn("a", CloseReason::ConnectionLost);
    w.send("a2", "/login alice hunter22");
    let (again, _) = w.request();
    w.send("bob", "/msg alice twice?");
    let stored = w.stored.iter().rev().find_map(|op| match op {
        StoreOp::OfflineDm { event, .. } => Some(event.clone()),
        _ => None,
    });
    let dm = stored.expect("stored while a2's login is checked");
    let past = Past::new(dm.id(), dm.unix_ms(), dm.event().clone()).unwrap();
    w.input(Input::Answer(
        again,
        Answer::LoggedIn {
            offline: vec![past],
        },
    ));
    let got = w.take("a2");
    let dms = got
        .iter()
        .filter(|l| l.contains(" DM bob alice twice?"))
        .count();
    assert_eq!(dms, 1, "{got:?}");
}
