//! State transitions of the server, one behaviour per test, asserted on the
//! lines each fake connection receives.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chatproto::server::{Effect, Input, Outgoing, ServerConfig, Time};
use chatproto::{CloseReason, Refusal};
use support::World;

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn greeting_then_registration() {
    let mut w = World::new();
    w.user("alice");
    w.conn("bob");
    let hello = w.take("bob");
    assert_eq!(hello.len(), 1);
    assert!(hello[0].starts_with("HELLO chatd "), "{hello:?}");
    w.send("bob", "bob");
    assert_eq!(w.take("bob"), lines(&["WELCOME bob"]));
    assert_eq!(w.take("alice"), lines(&["JOIN * bob"]));
    assert_eq!(w.server.user_count(), 2);
}

#[test]
fn refused_name_can_be_retried() {
    let mut w = World::new();
    w.user("alice");
    w.conn("x");
    w.take_all();
    w.send("x", "Alice");
    assert_eq!(
        w.take("x"),
        lines(&["ERR name-taken the name Alice is taken"])
    );
    w.send("x", "no way");
    assert_eq!(w.take("x")[0].split(' ').nth(1), Some("name-invalid"));
    w.send("x", "/nick alice2");
    assert_eq!(w.take("x"), lines(&["WELCOME alice2"]));
    assert_eq!(w.take("alice"), lines(&["JOIN * alice2"]));
}

#[test]
fn commands_before_registration() {
    let mut w = World::new();
    w.conn("x");
    w.take_all();
    for cmd in [
        "/users", "/groups", "/join g", "/leave", "/me hi", "/msg a b",
    ] {
        w.send("x", cmd);
        assert_eq!(
            w.take("x"),
            lines(&["ERR not-registered register first: send your name"]),
            "{cmd}"
        );
    }
    w.send("x", "/ping t");
    assert_eq!(w.take("x"), lines(&["PONG t"]));
    w.send("x", "/help");
    assert!(w.take("x").iter().all(|l| l.starts_with("INFO ")));
    w.send("x", "/quit");
    assert_eq!(w.take("x"), lines(&["BYE quit"]));
    assert!(w.is_closed("x"));
    assert_eq!(w.server.connection_count(), 0);
}

#[test]
fn global_broadcast_reaches_everyone_but_the_sender_and_shares_one_buffer() {
    let mut w = World::new();
    let a = w.user("a");
    w.user("b");
    w.user("c");
    w.take_all();
    let effects = w.input(Input::Line(a, chatproto::parse_line("hi").unwrap()));
    let events: Vec<&Arc<Outgoing>> = effects
        .iter()
        .map(|e| match e {
            Effect::Deliver { to, event } => {
                assert_ne!(*to, a, "echoed to the sender");
                event
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(events.len(), 2);
    assert!(Arc::ptr_eq(events[0], events[1]), "one event per broadcast");
    assert!(
        Arc::ptr_eq(events[0].line(), events[1].line()),
        "encoded once per broadcast"
    );
    assert_eq!(w.take("b"), lines(&["MSG * a hi"]));
    assert_eq!(w.take("c"), lines(&["MSG * a hi"]));
}

#[test]
fn group_messages_stay_in_the_group_but_global_reaches_group_members() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.user("out");
    w.send("a", "/join g");
    w.send("b", "/join g");
    w.take_all();
    w.send("a", "in group");
    w.send("a", "/me nods");
    assert_eq!(w.take("b"), lines(&["MSG g a in group", "ME g a nods"]));
    assert_eq!(w.take("out"), Vec::<String>::new());
    w.send("out", "global");
    assert_eq!(w.take("a"), lines(&["MSG * out global"]));
    assert_eq!(w.take("b"), lines(&["MSG * out global"]));
}

#[test]
fn users_lists_the_current_scope() {
    let mut w = World::new();
    w.user("Zed");
    w.user("amy");
    w.user("bob");
    w.send("bob", "/users");
    assert_eq!(w.take("bob"), lines(&["USERS * amy bob Zed"]));
    w.send("bob", "/join g");
    w.send("Zed", "/join G");
    w.take_all();
    w.send("bob", "/users");
    assert_eq!(w.take("bob"), lines(&["USERS g bob Zed"]));
    // The cached listing follows changes.
    w.send("Zed", "/nick Zara");
    w.send("amy", "/join g");
    w.take_all();
    w.send("bob", "/users");
    assert_eq!(w.take("bob"), lines(&["USERS g amy bob Zara"]));
}

#[test]
fn join_while_in_a_group_switches() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.send("a", "/join one");
    w.send("b", "/join one");
    w.take_all();
    w.send("a", "/join two");
    assert_eq!(w.take("a"), lines(&["PART one a", "JOIN two a"]));
    assert_eq!(w.take("b"), lines(&["PART one a"]));
    w.send("b", "/groups");
    assert_eq!(w.take("b"), lines(&["GROUPS one=1 two=1"]));
    w.send("a", "/join TWO");
    assert_eq!(
        w.take("a"),
        lines(&["ERR already-in-group you are in two already"])
    );
}

#[test]
fn leave_while_not_in_a_group() {
    let mut w = World::new();
    w.user("a");
    w.send("a", "/leave");
    assert_eq!(
        w.take("a"),
        lines(&["ERR not-in-group you are not in a group"])
    );
}

#[test]
fn empty_groups_disappear() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.send("a", "/join g");
    w.send("b", "/join h");
    assert_eq!(w.server.group_count(), 2);
    w.send("a", "/leave");
    assert_eq!(w.server.group_count(), 1);
    w.send("b", "/join g");
    assert_eq!(w.server.group_count(), 1);
    w.take_all();
    w.send("a", "/groups");
    assert_eq!(w.take("a"), lines(&["GROUPS g=1"]));
}

#[test]
fn message_to_an_absent_user() {
    let mut w = World::new();
    w.user("a");
    w.send("a", "/msg ghost boo");
    assert_eq!(
        w.take("a"),
        lines(&["ERR no-such-user no user is named ghost"])
    );
}

#[test]
fn direct_messages_reach_recipient_and_confirm_to_sender() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.user("c");
    w.send("a", "/msg B  two spaces");
    assert_eq!(w.take("b"), lines(&["DM a b  two spaces"]));
    assert_eq!(w.take("a"), lines(&["DM a b  two spaces"]));
    assert_eq!(w.take("c"), Vec::<String>::new());
    w.send("a", "/msg a note to self");
    assert_eq!(
        w.take("a"),
        lines(&["DM a a note to self"]),
        "once, not twice"
    );
}

#[test]
fn rename_to_a_taken_name() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.send("a", "/nick B");
    assert_eq!(w.take("a"), lines(&["ERR name-taken the name B is taken"]));
    w.send("a", "/nick A");
    assert_eq!(
        w.take("a"),
        lines(&["WELCOME A"]),
        "changing case of one's own name is allowed"
    );
    assert_eq!(w.take("b"), lines(&["NICK a A"]));
    w.send("a", "/nick A");
    assert_eq!(w.take("a"), lines(&["WELCOME A"]));
    assert_eq!(
        w.take("b"),
        Vec::<String>::new(),
        "no NICK when nothing changed"
    );
}

#[test]
fn disconnect_mid_group() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.user("c");
    w.send("a", "/join g");
    w.send("b", "/join g");
    w.take_all();
    w.drop_conn("a", CloseReason::ConnectionLost);
    assert_eq!(w.take("b"), lines(&["PART * a connection-lost"]));
    assert_eq!(w.take("c"), lines(&["PART * a connection-lost"]));
    w.send("b", "/users");
    assert_eq!(w.take("b"), lines(&["USERS g b"]));
    w.drop_conn("b", CloseReason::ConnectionLost);
    assert_eq!(w.server.group_count(), 0);
    assert_eq!(w.server.user_count(), 1);
    // A late duplicate disconnect is ignored.
    w.drop_conn("b", CloseReason::ConnectionLost);
    assert_eq!(w.take("c"), lines(&["PART * b connection-lost"]));
}

#[test]
fn quit_with_and_without_reason() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.user("c");
    w.send("a", "/quit off to bed");
    assert_eq!(w.take("a"), lines(&["BYE quit"]));
    assert!(w.is_closed("a"));
    assert_eq!(w.take("b"), lines(&["PART * a off to bed"]));
    assert_eq!(w.take("c"), lines(&["PART * a off to bed"]));
    w.send("b", "/QUIT");
    assert_eq!(w.take("c"), lines(&["PART * b quit"]));
    assert_eq!(w.server.user_count(), 1);
}

#[test]
fn refused_lines_get_err_and_change_nothing() {
    let mut w = World::new();
    let a = w.user("a");
    w.user("b");
    w.send("a", "evil \x1b]52;c;AAAA\x07");
    let err = w.take("a");
    assert_eq!(err.len(), 1);
    assert!(err[0].starts_with("ERR bad-text "), "{err:?}");
    assert!(
        !err[0].contains('\x1b'),
        "the error must not echo the escape"
    );
    w.input(Input::Refused(
        a,
        Refusal::from(chatproto::FrameError::LineTooLong { max: 4096 }),
    ));
    assert_eq!(
        w.take("a"),
        lines(&["ERR line-too-long line longer than 4096 bytes, discarded"])
    );
    assert_eq!(w.take("b"), Vec::<String>::new());
}

#[test]
fn register_timeout() {
    let mut w = World::new();
    w.user("a");
    w.conn("lurker");
    w.take_all();
    w.advance(Duration::from_secs(29));
    assert!(!w.is_closed("lurker"));
    w.advance(Duration::from_secs(1));
    assert_eq!(w.take("lurker"), lines(&["BYE register-timeout"]));
    assert!(w.is_closed("lurker"));
    assert!(
        !w.is_closed("a"),
        "registered users do not time out on registration"
    );
    assert_eq!(
        w.take("a"),
        Vec::<String>::new(),
        "no PART for a connection that never registered"
    );
}

#[test]
fn ping_then_ping_timeout() {
    let mut config = ServerConfig::default();
    config.ping_after = Duration::from_secs(10);
    config.idle_timeout = Duration::from_secs(20);
    let mut w = World::with_config(config);
    w.user("quiet");
    w.user("chatty");
    w.advance(Duration::from_secs(9));
    w.send("chatty", "still here");
    w.take_all();
    w.advance(Duration::from_secs(1));
    assert_eq!(w.take("quiet"), lines(&["PING 1"]));
    w.advance(Duration::from_secs(1));
    assert_eq!(
        w.take("quiet"),
        Vec::<String>::new(),
        "one PING per silence"
    );
    w.advance(Duration::from_secs(8));
    assert!(!w.is_closed("quiet"));
    // t = 20 s: quiet has been silent for the idle timeout, chatty for 11 s.
    w.advance(Duration::from_secs(1));
    assert_eq!(w.take("quiet"), lines(&["BYE ping-timeout"]));
    assert!(w.is_closed("quiet"));
    assert_eq!(
        w.take("chatty"),
        lines(&["PING 2", "PART * quiet ping-timeout"])
    );
    w.send("chatty", "/pong 2");
    w.advance(Duration::from_secs(15));
    assert!(!w.is_closed("chatty"), "the pong counts as activity");
}

#[test]
fn kick_sends_bye_close_and_part() {
    let mut w = World::new();
    let slow = w.user("slow");
    w.user("b");
    let effects = w.input(Input::Kick(slow, CloseReason::SendqExceeded));
    assert!(effects.contains(&Effect::Close {
        conn: slow,
        reason: CloseReason::SendqExceeded
    }));
    assert_eq!(w.take("slow"), lines(&["BYE sendq-exceeded"]));
    assert_eq!(w.take("b"), lines(&["PART * slow sendq-exceeded"]));
}

#[test]
fn shutdown_says_goodbye_to_everyone() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.conn("unregistered");
    w.send("a", "/join g");
    w.take_all();
    w.input(Input::Shutdown);
    for label in ["a", "b", "unregistered"] {
        assert_eq!(w.take(label), lines(&["BYE server-shutdown"]), "{label}");
        assert!(w.is_closed(label));
    }
    assert_eq!(w.server.connection_count(), 0);
    assert_eq!(w.server.group_count(), 0);
}

#[test]
fn ping_without_token_answers_with_server_name() {
    let mut w = World::new();
    w.user("a");
    w.send("a", "/ping");
    assert_eq!(w.take("a"), lines(&["PONG chatd"]));
    w.send("a", "/pong whatever");
    assert_eq!(w.take("a"), Vec::<String>::new());
}

#[test]
fn help_lists_every_command() {
    let mut w = World::new();
    w.user("a");
    w.send("a", "/help");
    let help = w.take("a");
    assert_eq!(help.len(), chatproto::COMMAND_HELP.len());
    assert!(
        help.iter().any(|l| l.starts_with("INFO /join <group>")),
        "{help:?}"
    );
}

#[test]
fn lines_from_unknown_connections_are_ignored() {
    let mut w = World::new();
    w.user("a");
    let ghost = chatproto::server::ConnId::new(999);
    let effects = w.input(Input::Line(ghost, chatproto::parse_line("hi").unwrap()));
    assert!(effects.is_empty());
    let effects = w.input(Input::Disconnected(ghost, CloseReason::ConnectionLost));
    assert!(effects.is_empty());
}

#[test]
fn names_that_imitate_the_server_are_reserved() {
    let mut config = ServerConfig::default();
    config.server_name = chatproto::Token::try_from("hub").unwrap();
    let mut w = World::with_config(config);
    w.conn("x");
    w.take_all();
    for name in ["admin", "Chatd", "HUB", "root"] {
        w.send("x", name);
        let got = w.take("x");
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("ERR name-reserved "), "{got:?}");
    }
    w.send("x", "/nick ok");
    assert_eq!(w.take("x"), lines(&["WELCOME ok"]));
    w.send("x", "/nick Server");
    assert_eq!(
        w.take("x"),
        lines(&["ERR name-reserved the name Server is reserved"])
    );
    let x = w.conn("x");
    assert_eq!(w.server.name_of(x).unwrap().as_str(), "ok");
}

#[test]
fn greeting_text_is_configurable() {
    let mut config = ServerConfig::default();
    config.greeting = chatproto::Text::try_from("hi there").unwrap();
    let mut w = World::with_config(config);
    w.conn("x");
    let hello = w.take("x");
    assert!(hello[0].starts_with("HELLO chatd ") && hello[0].ends_with(" hi there"));
}

#[test]
fn presence_is_not_announced_above_the_limit() {
    let mut config = ServerConfig::default();
    config.presence_limit = 2;
    let mut w = World::with_config(config);
    w.user("a");
    w.conn("b");
    w.conn("c");
    w.take_all();
    w.send("b", "b");
    w.take("b");
    assert_eq!(w.take("a"), lines(&["JOIN * b"]), "two users: announced");
    w.send("c", "c");
    let got = w.take("c");
    assert_eq!(got[0], "WELCOME c");
    assert!(
        got[1].starts_with("INFO more than 2 users are here"),
        "{got:?}"
    );
    assert_eq!(w.pending(), Vec::new(), "nobody else hears of c");
    w.send("a", "/join g");
    w.send("c", "/join g");
    w.user("d");
    w.take_all();
    // Four users: a's departure reaches its group only.
    w.drop_conn("a", CloseReason::ConnectionLost);
    assert_eq!(w.take("c"), lines(&["PART * a connection-lost"]));
    assert_eq!(w.pending(), Vec::new());
    w.send("b", "/quit");
    assert_eq!(w.take("b"), lines(&["BYE quit"]));
    assert_eq!(w.pending(), Vec::new(), "b was in no group");
    // Two users left: announced again.
    w.send("c", "/quit bye");
    w.take("c");
    assert_eq!(w.take("d"), lines(&["PART * c bye"]));
}

#[test]
fn a_stalled_server_does_not_time_out_its_clients() {
    let mut config = ServerConfig::default();
    config.register_timeout = Duration::from_secs(2);
    config.ping_after = Duration::from_secs(1);
    config.idle_timeout = Duration::from_secs(2);
    let mut w = World::with_config(config);
    w.user("a");
    w.conn("newcomer");
    w.take_all();
    // The process is stopped for 30 s before its first tick; the clients'
    // lines wait in the sockets.
    w.stall(Duration::from_secs(30));
    assert!(!w.is_closed("a") && !w.is_closed("newcomer"));
    assert_eq!(w.pending(), Vec::new(), "no PING, no BYE");
    // Once running again, the waiting lines are read.
    w.send("a", "still here");
    w.send("newcomer", "n");
    w.advance(Duration::from_millis(900));
    assert!(!w.is_closed("a"));
    assert_eq!(w.take("newcomer"), lines(&["WELCOME n"]));
    // Timeouts still work afterwards.
    w.advance(Duration::from_secs(3));
    assert!(w.is_closed("a"), "a silent client still times out");
}

#[test]
fn empty_lines_count_as_activity_and_get_no_answer() {
    let mut config = ServerConfig::default();
    config.ping_after = Duration::from_secs(1);
    config.idle_timeout = Duration::from_secs(2);
    let mut w = World::with_config(config);
    w.user("a");
    for _ in 0..10 {
        w.send("a", "");
        w.advance(Duration::from_millis(500));
    }
    assert!(!w.is_closed("a"));
    assert_eq!(w.take("a"), Vec::<String>::new(), "no ERR, no PING");
}

#[test]
fn a_connection_after_shutdown_is_told_so() {
    let mut w = World::new();
    w.user("a");
    w.input(Input::Shutdown);
    w.conn("late");
    assert_eq!(w.take("late"), lines(&["BYE server-shutdown"]));
    assert!(w.is_closed("late"));
    assert_eq!(w.server.connection_count(), 0);
}

#[test]
fn events_carry_increasing_ids_and_the_drivers_wall_time() {
    let mut w = World::new();
    let a = w.user("a");
    w.user("b");
    let wall = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    let mut ids = Vec::new();
    for text in ["one", "two"] {
        let line = chatproto::parse_line(text).unwrap();
        let effects = w
            .server
            .handle(Time::new(w.now, wall), Input::Line(a, line));
        let [Effect::Deliver { event, .. }] = &effects[..] else {
            panic!("{effects:?}");
        };
        assert_eq!(event.unix_ms(), 1_700_000_000_123);
        ids.push(event.id());
    }
    assert!(ids[0] > 0 && ids[1] > ids[0], "{ids:?}");
    // Without a wall clock, the time is unknown (0).
    let effects = w.input(Input::Line(a, chatproto::parse_line("three").unwrap()));
    let [Effect::Deliver { event, .. }] = &effects[..] else {
        panic!("{effects:?}");
    };
    assert_eq!((event.unix_ms(), event.id() > ids[1]), (0, true));
}

#[test]
fn say_in_global_from_a_group_reaches_everyone_but_the_sender() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.user("out");
    w.send("a", "/join g");
    w.send("b", "/join g");
    w.take_all();
    w.send("a", "/say * hello  world ");
    w.send("a", "/ACT * waves");
    let want = lines(&["MSG * a hello  world ", "ME * a waves"]);
    assert_eq!(w.take("b"), want, "a group member");
    assert_eq!(w.take("out"), want, "a user in no group");
    assert_eq!(w.take("a"), Vec::<String>::new(), "not echoed");
    // a is still in its group: plain text still goes there only.
    w.send("a", "still here");
    assert_eq!(w.take("b"), lines(&["MSG g a still here"]));
    assert_eq!(w.take("out"), Vec::<String>::new());
}

#[test]
fn say_in_ones_own_group_uses_the_groups_spelling() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.user("out");
    w.send("a", "/join Rust");
    w.send("b", "/join rust");
    w.take_all();
    w.send("b", "/say RUST hi");
    w.send("b", "/act rust nods");
    assert_eq!(w.take("a"), lines(&["MSG Rust b hi", "ME Rust b nods"]));
    assert_eq!(w.take("out"), Vec::<String>::new());
    assert_eq!(w.take("b"), Vec::<String>::new());
}

#[test]
fn say_in_a_group_one_is_not_in_is_refused() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.send("b", "/join other");
    w.send("a", "/join g");
    w.take_all();
    w.send("a", "/say other psst");
    assert_eq!(
        w.take("a"),
        lines(&["ERR not-in-group you are not in other"])
    );
    w.send("a", "/leave");
    w.take_all();
    // In no group at all, only * works.
    w.send("a", "/act g nods");
    assert_eq!(w.take("a"), lines(&["ERR not-in-group you are not in g"]));
    assert_eq!(w.take("b"), Vec::<String>::new(), "nothing reached other");
    w.send("a", "/say * ok");
    assert_eq!(w.take("b"), lines(&["MSG * a ok"]));
}

#[test]
fn whois_of_self_other_and_absent() {
    let mut w = World::new();
    w.user("Ann");
    w.user("bob");
    w.send("bob", "/join Rust");
    w.take_all();
    w.send("Ann", "/whois BOB");
    assert_eq!(w.take("Ann"), lines(&["WHOIS bob Rust 0 0"]));
    w.send("bob", "/whois ann");
    assert_eq!(w.take("bob"), lines(&["WHOIS Ann * 0 0"]));
    w.send("Ann", "/whois Ann");
    assert_eq!(w.take("Ann"), lines(&["WHOIS Ann * 0 0"]));
    w.send("Ann", "/whois ghost");
    assert_eq!(
        w.take("Ann"),
        lines(&["ERR no-such-user no user is named ghost"])
    );
    // A group joined with other casing keeps its creator's spelling.
    w.send("Ann", "/join rust");
    w.take_all();
    w.send("bob", "/whois ann");
    assert_eq!(w.take("bob"), lines(&["WHOIS Ann Rust 0 0"]));
}

#[test]
fn whois_counts_idle_seconds_since_the_last_line() {
    let mut w = World::new();
    w.user("a");
    w.user("b");
    w.advance(Duration::from_millis(12_700));
    w.send("a", "/whois b");
    assert_eq!(w.take("a"), lines(&["WHOIS b * 12 0"]));
    // Any line is activity, a refused one included.
    w.send("b", "/frob");
    w.advance(Duration::from_secs(3));
    w.send("a", "/whois b");
    assert_eq!(w.take("a"), lines(&["WHOIS b * 3 0"]));
    // The asker's own line counts: it is never idle when it asks.
    w.send("a", "/whois a");
    assert_eq!(w.take("a"), lines(&["WHOIS a * 0 0"]));
    // Time the server did not run does not count.
    w.stall(Duration::from_secs(40));
    w.send("a", "/whois b");
    assert_eq!(w.take("a"), lines(&["WHOIS b * 3 0"]));
}

#[test]
fn whois_signon_is_the_wall_time_of_registration() {
    let mut w = World::new();
    w.user("a");
    let x = w.conn("x");
    let wall = std::time::UNIX_EPOCH + Duration::from_millis(1_764_600_123_999);
    let name = chatproto::parse_line("xena").unwrap();
    let _ = w
        .server
        .handle(Time::new(w.now, wall), Input::Line(x, name));
    // Later wall times (a rename, say) do not change it.
    let later = wall + Duration::from_secs(60);
    let rename = chatproto::parse_line("/nick Xena").unwrap();
    let _ = w
        .server
        .handle(Time::new(w.now, later), Input::Line(x, rename));
    w.take_all();
    w.send("a", "/whois xena");
    assert_eq!(w.take("a"), lines(&["WHOIS Xena * 0 1764600123"]));
    // Registered without a wall clock: unknown, 0.
    w.send("x", "/whois a");
    assert_eq!(w.take("x"), lines(&["WHOIS a * 0 0"]));
}

#[test]
fn count_follows_joins_leaves_and_unregistered_connections() {
    let mut w = World::new();
    w.user("a");
    w.send("a", "/count");
    assert_eq!(w.take("a"), lines(&["COUNT 1 0 1"]));
    w.user("b");
    w.user("c");
    w.conn("lurker");
    w.send("a", "/join g");
    w.send("b", "/join h");
    w.send("c", "/join G");
    w.take_all();
    w.send("a", "/count");
    assert_eq!(w.take("a"), lines(&["COUNT 3 2 4"]));
    w.send("b", "/leave");
    w.drop_conn("c", CloseReason::ConnectionLost);
    w.take_all();
    w.send("a", "/count");
    assert_eq!(w.take("a"), lines(&["COUNT 2 1 3"]));
    w.send("lurker", "/quit");
    w.take_all();
    w.send("a", "/count");
    assert_eq!(w.take("a"), lines(&["COUNT 2 1 2"]));
}

#[test]
fn the_new_commands_need_registration() {
    let mut w = World::new();
    w.user("a");
    w.conn("x");
    w.take_all();
    for cmd in ["/say * hi", "/act * hi", "/whois a", "/count"] {
        w.send("x", cmd);
        assert_eq!(
            w.take("x"),
            lines(&["ERR not-registered register first: send your name"]),
            "{cmd}"
        );
    }
    assert_eq!(w.take("a"), Vec::<String>::new());
}

#[test]
fn echo_on_sends_ones_own_lines_back_as_the_others_get_them() {
    let mut w = World::new();
    let a = w.user("a");
    w.user("b");
    w.send("a", "/echo on");
    assert_eq!(w.take("a"), Vec::<String>::new(), "no answer to /echo");
    let effects = w.input(Input::Line(a, chatproto::parse_line("hi").unwrap()));
    let events: Vec<&Arc<Outgoing>> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 2);
    assert!(Arc::ptr_eq(events[0], events[1]), "the same event for both");
    assert_eq!(w.take("a"), lines(&["MSG * a hi"]));
    assert_eq!(w.take("b"), lines(&["MSG * a hi"]));
    w.send("a", "/join g");
    w.take_all();
    w.send("a", "/me waves");
    assert_eq!(w.take("a"), lines(&["ME g a waves"]));
    w.send("a", "/say * all");
    assert_eq!(w.take("a"), lines(&["MSG * a all"]));
    w.send("a", "/echo off");
    w.send("a", "quiet");
    assert_eq!(w.take("a"), Vec::<String>::new());
    // Allowed before registration too (an IRC client asks during CAP).
    w.conn("early");
    w.take_all();
    w.send("early", "/echo on");
    assert_eq!(w.take("early"), Vec::<String>::new());
}
