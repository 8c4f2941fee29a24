//! The IRC listener (`--irc-listen`): IRC clients and native clients in one
//! chat, over TCP to the real binary. The adapter's finer points are tested in
//! `chatproto/tests/irc_session.rs`; here, that chatd wires it with the same
//! limits as native connections.

mod support;

use std::time::Duration;

use chatproto::irc::parse_message;
use support::{Chatd, Client};

/// The source's nick, the command and the params of an IRC line.
fn parts(line: &str) -> (String, String, Vec<String>) {
    let msg = parse_message(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let nick = msg.source().unwrap_or("").split('!').next().unwrap_or("");
    let params = msg.params().iter().map(|p| p.to_string()).collect();
    (nick.to_owned(), msg.command().to_owned(), params)
}

fn start(extra: &[&str]) -> (Chatd, std::net::SocketAddr) {
    let mut args = vec!["--irc-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let chatd = Chatd::start(&args);
    let irc = chatd.irc_addr();
    (chatd, irc)
}

/// Reads lines until one contains `needle`; returns it. Panics after 2000
/// lines or a line timeout.
fn until(c: &mut Client, needle: &str) -> String {
    let (_, line) = c.read_until(2000, |l| l.contains(needle));
    line
}

/// An IRC client registered as `nick` (with CAP negotiation), its burst read
/// up to the end of the global channel's names.
fn irc_user(addr: std::net::SocketAddr, nick: &str) -> Client {
    let mut c = Client::connect(addr);
    c.send("CAP LS 302");
    c.send(&format!("NICK {nick}"));
    c.send(&format!("USER {nick} 0 * :{nick} test"));
    until(&mut c, "CAP * LS");
    c.send("CAP END");
    let welcome = until(&mut c, " 001 ");
    assert!(welcome.contains(&format!(" 001 {nick} ")), "{welcome}");
    until(&mut c, &format!(" 366 {nick} &global "));
    c
}

#[test]
fn irc_and_native_users_talk_in_global_groups_and_private() {
    let (chatd, irc) = start(&[]);
    let mut nat = chatd.user("nat");
    let mut ircy = irc_user(irc, "ircy");
    nat.expect("JOIN * ircy");

    ircy.send("PRIVMSG &global :hello native");
    nat.expect("MSG * ircy hello native");
    nat.send("hi irc");
    let got = until(&mut ircy, "PRIVMSG &global");
    assert_eq!(
        parts(&got),
        (
            "nat".into(),
            "PRIVMSG".into(),
            vec!["&global".into(), "hi irc".into()]
        )
    );

    // Groups are channels; formatting codes are stripped on the way in.
    ircy.send("JOIN #rust");
    until(&mut ircy, " 366 ircy #rust ");
    nat.send("/join rust");
    nat.expect("JOIN rust nat");
    let joined = until(&mut ircy, "JOIN #rust");
    assert!(joined.starts_with(":nat!"), "{joined}");
    ircy.send("PRIVMSG #rust :\u{2}bold\u{2} and \u{3}04red\u{3}");
    nat.expect("MSG rust ircy bold and red");
    nat.send("/me waves");
    let action = until(&mut ircy, "PRIVMSG #rust");
    assert_eq!(parts(&action).2, ["#rust", "\u{1}ACTION waves\u{1}"]);

    // Private messages both ways.
    nat.send("/msg ircy psst");
    nat.expect("DM nat ircy psst");
    let dm = until(&mut ircy, "PRIVMSG ircy");
    assert_eq!(
        parts(&dm),
        (
            "nat".into(),
            "PRIVMSG".into(),
            vec!["ircy".into(), "psst".into()]
        )
    );
    ircy.send("PRIVMSG nat :back");
    nat.expect("DM ircy nat back");

    // A native line longer than an IRC line arrives in pieces, nothing lost.
    let long: String = (0..800)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect::<String>()
        + " end";
    nat.send(&long);
    let mut got = String::new();
    while got.len() < long.len() {
        let line = until(&mut ircy, "PRIVMSG #rust");
        assert!(line.len() + 2 <= 512, "{} bytes", line.len());
        got.push_str(&parts(&line).2[1]);
    }
    assert_eq!(got, long);

    ircy.send("QUIT :see you");
    until(&mut ircy, "ERROR");
    nat.expect("PART * ircy see you");
}

#[test]
fn irc_registration_errors_and_unknown_commands() {
    let (chatd, irc) = start(&[]);
    let _nat = chatd.user("taken");
    let mut c = Client::connect(irc);
    c.send("NICK taken");
    c.send("USER x 0 * :x");
    until(&mut c, " 433 ");
    c.send("NICK free");
    until(&mut c, " 001 free ");
    c.send("FROBNICATE now");
    until(&mut c, " 421 free FROBNICATE ");
    // Still served.
    c.send("PING :still");
    until(&mut c, "PONG");

    // A QUIT before registration gets ERROR and a close.
    let mut early = Client::connect(irc);
    early.send("QUIT");
    until(&mut early, "ERROR");
    assert!(early.is_closed());
}

#[test]
fn a_full_server_says_so_in_irc() {
    let (chatd, irc) = start(&["--max-clients", "1"]);
    let _only = chatd.user("only");
    let mut refused = Client::connect(irc);
    let line = refused.line();
    assert_eq!(line, "ERROR :Closing link: (server-full)");
}

#[test]
fn a_slow_irc_reader_is_cut_and_the_others_see_it() {
    let (chatd, irc) = start(&["--sendq", "32KiB", "--flood-rate", "0"]);
    let mut slow = irc_user(irc, "slowirc");
    let mut talker = chatd.user("talker");
    let mut watcher = chatd.user("watcher");
    talker.expect("JOIN * watcher");
    slow.send("PING :synced");
    until(&mut slow, "PONG");
    // From here on `slow` reads nothing.
    let text = "x".repeat(1000);
    let mut cut = false;
    // Batches of 8 KB, well under the watcher's 32 KiB queue.
    for batch in 0..400 {
        let lines: String = (0..8).map(|i| format!("{batch} {i} {text}\n")).collect();
        talker.send_raw(lines.as_bytes());
        let (_, last) = watcher.read_until(100, |l| {
            l == "PART * slowirc sendq-exceeded" || l.contains(&format!("{batch} 7 "))
        });
        if last == "PART * slowirc sendq-exceeded" {
            cut = true;
            break;
        }
    }
    assert!(cut, "the slow IRC reader was never cut off");
    talker.send("/users");
    let (_, users) = talker.read_until(1000, |l| l.starts_with("USERS "));
    assert_eq!(users, "USERS * talker watcher");
}

#[test]
fn sigterm_tells_irc_clients_with_error() {
    let (mut chatd, irc) = start(&[]);
    let mut c = irc_user(irc, "bye");
    chatd.signal("TERM");
    let line = until(&mut c, "ERROR");
    assert_eq!(line, "ERROR :Closing link: (server-shutdown)");
    c.half_close();
    assert!(chatd
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

#[test]
fn irc_queries_and_group_switching_over_tcp() {
    let (chatd, irc) = start(&["--server-name", "hub"]);
    let mut nat = chatd.user("nat");
    nat.send("/join go");
    nat.expect("JOIN go nat");
    // Without CAP: NICK and USER alone register.
    let mut c = Client::connect(irc);
    c.send("NICK ann");
    c.send("USER ann 0 * :Ann");
    let welcome = until(&mut c, " 001 ");
    assert!(welcome.starts_with(":hub 001 ann "), "{welcome}");
    until(&mut c, " 366 ann &global ");
    nat.expect("JOIN * ann");
    // Each query and the numeric that ends its answer.
    for (query, done) in [
        ("NAMES &global", " 366 ann &global "),
        ("LIST", " 323 ann "),
        ("WHO nat", " 315 ann nat "),
        ("WHOIS nat", " 318 ann nat "),
        ("WHOIS nobody", " 401 ann nobody "),
        ("LUSERS", " 255 ann "),
        ("MOTD", " 422 ann "),
        ("TOPIC #go", " 442 ann #go "),
        ("MODE ann", " 221 ann "),
        ("AWAY :lunch", " 306 ann "),
        ("AWAY", " 305 ann "),
    ] {
        c.send(query);
        until(&mut c, done);
    }
    // WHOIS tells the group a user is in, never an address.
    c.send("WHOIS nat");
    let channels = until(&mut c, " 319 ann nat ");
    assert!(channels.contains("#go"), "{channels}");
    let user = {
        c.send("WHOIS nat");
        until(&mut c, " 311 ann nat ")
    };
    assert!(!user.contains("127.0.0.1"), "{user}");
    // Switching groups parts the old channel first.
    c.send("JOIN #go");
    until(&mut c, " 366 ann #go ");
    nat.expect("JOIN go ann");
    c.send("JOIN #rust");
    let part = until(&mut c, "PART #go");
    assert!(part.starts_with(":ann!"), "{part}");
    until(&mut c, " 366 ann #rust ");
    nat.expect("PART go ann");
    // JOIN of the channel one is in changes nothing.
    c.send("JOIN #rust");
    c.send("PING :after");
    let (skipped, _) = c.read_until(50, |l| l.contains("PONG"));
    assert!(!skipped.iter().any(|l| l.contains("JOIN")), "{skipped:?}");
}

#[test]
fn one_order_per_scope_across_dialects() {
    let (chatd, irc) = start(&["--flood-rate", "0"]);
    let mut nat_sender = chatd.user("ns");
    let mut nat_reader = chatd.user("nr");
    let mut irc_sender = irc_user(irc, "is");
    let mut irc_reader = irc_user(irc, "ir");
    nat_sender.sync();
    nat_reader.sync();
    // Both senders talk in the global scope at once, 100 lines each.
    let burst = |who: &str, irc: bool| -> String {
        (0..100)
            .map(|i| {
                if irc {
                    format!("PRIVMSG &global :{who}-{i}\n")
                } else {
                    format!("{who}-{i}\n")
                }
            })
            .collect()
    };
    nat_sender.send_raw(burst("n", false).as_bytes());
    irc_sender.send_raw(burst("i", true).as_bytes());
    // Each reader records the order of all 200; they must agree.
    let mut native_order = Vec::new();
    while native_order.len() < 200 {
        let line = nat_reader.line();
        if let Some(text) = line.strip_prefix("MSG * ") {
            native_order.push(text.split_once(' ').unwrap().1.to_owned());
        }
    }
    let mut irc_order = Vec::new();
    while irc_order.len() < 200 {
        let line = until(&mut irc_reader, "PRIVMSG &global");
        irc_order.push(parts(&line).2[1].clone());
    }
    assert_eq!(native_order, irc_order, "both readers see one order");
    // Each sender's own lines are in the order sent.
    for who in ["n", "i"] {
        let mine: Vec<&String> = native_order.iter().filter(|t| t.starts_with(who)).collect();
        let want: Vec<String> = (0..100).map(|i| format!("{who}-{i}")).collect();
        assert_eq!(mine, want.iter().collect::<Vec<_>>());
    }
}

#[test]
fn echo_message_over_tcp() {
    let (chatd, irc) = start(&[]);
    let mut nat = chatd.user("nat");
    let mut c = Client::connect(irc);
    c.send("CAP LS 302");
    c.send("CAP REQ :echo-message server-time");
    c.send("NICK echo");
    c.send("USER echo 0 * :e");
    until(&mut c, "ACK");
    c.send("CAP END");
    until(&mut c, " 366 echo &global ");
    nat.expect("JOIN * echo");
    c.send("PRIVMSG &global :hi there");
    nat.expect("MSG * echo hi there");
    let own = until(&mut c, "PRIVMSG &global");
    // The server's copy: with its time, as everyone else got it.
    assert!(own.starts_with("@time="), "{own}");
    assert_eq!(parts(&own).2, ["&global", "hi there"]);
}
