//! The full-screen mode (the default on a terminal) in tmux against the real
//! chatd: views per conversation, unread marks, the bell for a DM or a mention
//! away from the view in front, completion, scrollback and search, pastes,
//! Ctrl+C, a server restart with the line typed offline kept, narrow and tiny
//! terminals and a resize during output. Every exit leaves the terminal as it
//! was (raw mode and the alternate screen undone).
//!
//! Skipped, with a message, only when tmux is not installed.

mod support;

use std::thread;
use std::time::{Duration, Instant};

use support::tmux::{assert_left_cleanly, bottom, shell_for, Tmux};
use support::{Peer, Server, TlsServer, WAIT};

fn skip(test: &str) -> bool {
    if Tmux::available() {
        return false;
    }
    eprintln!("SKIPPED {test}: tmux is not installed (apt-get install tmux)");
    true
}

/// The status line: the row above the input row.
fn status(screen: &str) -> String {
    let rows: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    rows.len()
        .checked_sub(2)
        .map(|i| rows[i].trim_end().to_owned())
        .unwrap_or_default()
}

/// Waits until tmux has seen a bell from the program.
fn wait_bell(tmux: &Tmux) {
    let deadline = Instant::now() + WAIT;
    while !tmux.rang() {
        assert!(
            Instant::now() < deadline,
            "no bell:\n{}",
            tmux.screen(false)
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn views_unread_marks_bell_and_completion() {
    if skip("views_unread_marks_bell_and_completion") {
        return;
    }
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let mut cat = Peer::join(server.port, "cat");
    cat.send("/join rustaceans");
    cat.expect("JOIN rustaceans cat");
    let tmux = Tmux::start_sized(
        "views",
        &shell_for(&format!("--port {} --name alice", server.port)),
        80,
        20,
    );
    let screen = tmux.wait_for("the status line", |s| {
        status(s).starts_with("[alice] [Global] connected")
    });
    assert_eq!(bottom(&screen), "[Global]>");
    // The member list of the global scope, from the client's own /users.
    tmux.wait_for("the member list", |s| s.contains("│ bob"));
    bob.send("hello everyone");
    tmux.wait_text("bob: hello everyone");

    // Group names complete after /join (the client asked /groups itself).
    tmux.type_text("/join ru");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the completed group", |s| {
        bottom(s) == "[Global]> /join rustaceans"
    });
    tmux.keys(&["C-u"]);

    // A group joined comes to the front, in its own view.
    tmux.type_text("/join rust");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the rust view", |s| bottom(s) == "[rust]>");
    assert!(screen.contains("-- alice joined rust"), "{screen}");
    assert!(status(&screen).contains("1:Global 2:rust"), "{screen}");
    assert!(
        !screen.contains("hello everyone"),
        "global lines in rust:\n{screen}"
    );
    assert!(!tmux.rang(), "a bell before any mention");

    // A mention in global and a DM, while rust is in front: both marked,
    // and the bell rings.
    bob.send("alice: look here");
    let screen = tmux.wait_for("the mark on global", |s| status(s).contains("1:Global(1!)"));
    assert!(!screen.contains("look here"), "{screen}");
    wait_bell(&tmux);
    bob.send("/msg alice psst");
    tmux.wait_for("the DM view", |s| status(s).contains("3:bob(1!)"));
    // Alt+1: global in front, read.
    tmux.keys(&["M-1"]);
    let screen = tmux.wait_for("global in front", |s| bottom(s) == "[Global]>");
    assert!(screen.contains("bob: alice: look here"), "{screen}");
    // Everyone connected, though /users now lists rust.
    assert!(
        screen.contains("│ bob") && screen.contains("│ cat"),
        "{screen}"
    );
    assert!(
        status(&screen).contains("1:Global 2:rust 3:bob(1!)"),
        "{screen}"
    );
    // Ctrl+N twice: the DM view; a line typed there is a /msg.
    tmux.keys(&["C-n", "C-n"]);
    tmux.wait_for("the DM view in front", |s| bottom(s) == "[DM bob]>");
    tmux.type_text("back to you");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("DM alice"), "DM alice bob back to you");
    tmux.wait_text("[DM] alice -> bob: back to you");

    // Completion in global: a name at the start of the line gets ": ".
    tmux.keys(&["C-p", "C-p"]);
    tmux.wait_for("global in front", |s| bottom(s) == "[Global]>");
    tmux.type_text("bo");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the completed name", |s| bottom(s) == "[Global]> bob:");
    tmux.type_text("done");
    tmux.keys(&["Enter"]);
    // alice is in rust: a line typed in the global view goes to global.
    assert_eq!(bob.expect("MSG "), "MSG * alice bob: done");

    // Ctrl+C clears a line being typed; on the empty line it leaves.
    tmux.type_text("not sent");
    tmux.wait_for("the typed line", |s| bottom(s) == "[Global]> not sent");
    tmux.keys(&["C-c"]);
    tmux.wait_for("the cleared line", |s| bottom(s) == "[Global]>");
    tmux.keys(&["C-c"]);
    assert_eq!(bob.expect("PART * alice"), "PART * alice quit");
    assert_left_cleanly(&tmux);
}

#[test]
fn pastes_scrollback_and_search() {
    if skip("pastes_scrollback_and_search") {
        return;
    }
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let tmux = Tmux::start_sized(
        "scroll",
        &shell_for(&format!("--port {} --name ann", server.port)),
        60,
        12,
    );
    tmux.wait_for("the prompt", |s| bottom(s) == "[Global]>");

    let pasted = format!("{}END", "p".repeat(2045));
    tmux.paste(&pasted);
    tmux.wait_for("the pasted line in the input", |s| {
        bottom(s).ends_with("pppEND")
    });
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG * ann"), format!("MSG * ann {pasted}"));
    let lines: Vec<String> = (0..80).map(|i| format!("pasted line {i}")).collect();
    tmux.paste(&lines.join("\n"));
    tmux.wait_for("the paste question", |s| {
        bottom(s).starts_with("paste 80 lines? Enter sends them as 80 messages")
    });
    tmux.keys(&["Enter"]);
    for line in &lines {
        assert_eq!(bob.expect("MSG * ann"), format!("MSG * ann {line}"));
    }
    let screen = tmux.wait_text("ann: pasted line 79");

    // Page Up shows older lines; Page Down comes back.
    assert!(!screen.contains("pasted line 69"), "{screen}");
    tmux.keys(&["PPage"]);
    let up = tmux.wait_text("ann: pasted line 65");
    assert!(!up.contains("pasted line 79"), "{up}");
    tmux.keys(&["NPage", "NPage"]);
    let down = tmux.wait_text("ann: pasted line 79");
    assert!(!down.contains("pasted line 65"), "{down}");

    // Ctrl+R searches back; Esc returns to the bottom.
    tmux.keys(&["C-r"]);
    tmux.type_text("line 12");
    let found = tmux.wait_for("the match", |s| s.contains("ann: pasted line 12"));
    assert!(bottom(&found).starts_with("search: line 12"), "{found}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("the bottom again", |s| {
        s.contains("pasted line 79") && bottom(s) == "[Global]>"
    });

    // Alt+T: stamps with seconds.
    tmux.keys(&["M-t"]);
    tmux.wait_for("seconds in the stamps", |s| {
        s.lines().any(|l| {
            let b = l.as_bytes();
            b.len() > 9 && b[2] == b':' && b[5] == b':' && b[8] == b' '
        })
    });
    tmux.keys(&["C-d"]);
    assert_left_cleanly(&tmux);
}

#[test]
fn restart_keeps_the_line_typed_offline() {
    if skip("restart_keeps_the_line_typed_offline") {
        return;
    }
    let mut server = Server::start();
    let port = server.port;
    let tmux = Tmux::start_sized(
        "restart",
        &shell_for(&format!("--port {port} --name ivy")),
        70,
        12,
    );
    tmux.wait_for("connected", |s| status(s).contains("connected"));
    tmux.type_text("/join rust");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the rust view", |s| bottom(s) == "[rust]>");
    server.kill();
    tmux.wait_for("the offline status", |s| status(s).contains("OFFLINE"));
    tmux.type_text("typed while offline");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_text("not connected; the line is kept in the input");
    assert!(bottom(&screen).ends_with("typed while offline"), "{screen}");

    let _server = Server::start_on(&format!("127.0.0.1:{port}"));
    let mut bob = Peer::join(port, "bob");
    bob.send("/join rust");
    // Re-registered and back in rust, the kept line still in the input.
    let screen = tmux.wait_for("the group again", |s| {
        status(s).starts_with("[ivy] [rust] connected")
    });
    assert_eq!(bottom(&screen), "[rust]> typed while offline");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG rust"), "MSG rust ivy typed while offline");
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
}

#[test]
fn narrow_tiny_and_resized_terminals() {
    if skip("narrow_tiny_and_resized_terminals") {
        return;
    }
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let tmux = Tmux::start_sized(
        "narrow",
        &shell_for(&format!("--port {} --name kay", server.port)),
        40,
        10,
    );
    tmux.wait_for("the prompt", |s| bottom(s) == "[Global]>");
    // 40 columns: no member list, long lines wrap inside the width.
    let long = "w".repeat(70);
    bob.send(&long);
    let screen = tmux.wait_text("wwwwwwwwww");
    assert!(
        !screen.contains('│'),
        "member list on 40 columns:\n{screen}"
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 40), "{screen}");

    // 20x5, then resizes while lines arrive: the input row stays at the bottom.
    tmux.resize(20, 5);
    tmux.wait_for("the tiny layout", |s| {
        s.lines().count() <= 5 && bottom(s) == "[Global]>"
    });
    for i in 0..30 {
        bob.send(&format!("line {i}"));
        if i % 10 == 5 {
            let (w, h) = [(80, 20), (30, 6), (50, 12)][i / 10];
            tmux.resize(w, h);
        }
    }
    tmux.resize(50, 12);
    // Redrawn at the last size (the size is checked a few times a second).
    let screen = tmux.wait_for("the last line at 50 columns", |s| {
        s.contains("bob: line 29") && status(s).starts_with("[kay] [Global] connected")
    });
    assert_eq!(bottom(&screen), "[Global]>", "{screen}");
    assert!(screen.contains("bob: line 28"), "{screen}");
    tmux.keys(&["C-d"]);
    assert_left_cleanly(&tmux);
}

/// A panic leaves raw mode and the alternate screen before its message is
/// printed, so the message is readable and the shell usable.
#[test]
fn a_panic_gives_the_terminal_back() {
    if skip("a_panic_gives_the_terminal_back") {
        return;
    }
    let server = Server::start();
    let shell = format!(
        "CHATCLI_PANIC_FOR_TEST=1 RUST_BACKTRACE=0 {}",
        shell_for(&format!("--port {} --name pam", server.port))
    );
    let tmux = Tmux::start_sized("panic", &shell, 80, 20);
    let screen = tmux.wait_for("both terminal modes", |s| s.matches("MODE=").count() == 2);
    assert!(screen.contains("EXIT=101"), "{screen}");
    assert!(screen.contains("CHATCLI_PANIC_FOR_TEST is set"), "{screen}");
    assert!(
        screen.contains("MODE=icanon") && screen.contains("MODE=echo"),
        "{screen}"
    );
    let alternate = tmux.run(&["display-message", "-p", "-t", "t", "#{alternate_on}"]);
    assert_eq!(
        String::from_utf8_lossy(&alternate.stdout).trim(),
        "0",
        "still on the alternate screen"
    );
}

/// A hostile server's escapes are shown inert in the view, the status line,
/// the member list and the title: the screen is not cleared, the title not set.
#[test]
fn hostile_server_is_inert_in_every_part_of_the_screen() {
    use std::io::{BufRead, Write};
    use std::net::TcpListener;
    if skip("hostile_server_is_inert_in_every_part_of_the_screen") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, mut r) = support::accept_registration(&listener, "eve");
        s.write_all(b"MSG * bob before the attack\n").unwrap();
        s.write_all(b"INFO \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\n")
            .unwrap();
        s.write_all("MSG * bob \u{9b}2J\n".as_bytes()).unwrap();
        // Bidi controls parse (they are not C0/C1): shown escaped in a view.
        s.write_all("MSG * bob \u{202e}gnirts\n".as_bytes())
            .unwrap();
        // Names that are not names do not parse: no member list or DM view
        // is made of them, the lines are shown escaped.
        s.write_all(b"USERS * eve b\x1bob\n").unwrap();
        s.write_all(b"DM x\x1b]0;pwned\x07 eve hi\n").unwrap();
        s.write_all(b"INFO after the attack\n").unwrap();
        // Read until the client leaves.
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.starts_with("/quit") {
                let _ = s.write_all(b"BYE quit\n");
                return true;
            }
            line.clear();
        }
        false
    });
    let tmux = Tmux::start_sized(
        "hostile",
        &shell_for(&format!("--port {port} --name eve --title")),
        200,
        16,
    );
    let screen = tmux.wait_text("-- after the attack");
    assert!(
        screen.contains("bob: before the attack"),
        "screen cleared:\n{screen}"
    );
    assert!(
        screen.contains("\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07"),
        "{screen}"
    );
    assert!(screen.contains("bob: \\u{202e}gnirts"), "{screen}");
    assert!(screen.contains("MSG * bob \\u{9b}2J"), "{screen}");
    assert!(screen.contains("DM x\\x1b]0;pwned\\x07 eve hi"), "{screen}");
    assert!(
        status(&screen).ends_with("1:Global"),
        "a view from a bad DM:\n{screen}"
    );
    let title = tmux.run(&["display-message", "-p", "-t", "t", "#{pane_title}"]);
    let title = String::from_utf8_lossy(&title.stdout).into_owned();
    assert!(
        !title.contains("pwned") || title.contains("\\x1b"),
        "title set: {title:?}"
    );
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
    assert!(server.join().expect("fake server"), "no /quit");
}

/// A mention in the view in front rings the bell only when the terminal
/// window is not in front (from the terminal's focus reports).
#[test]
fn a_mention_rings_when_the_window_is_behind() {
    if skip("a_mention_rings_when_the_window_is_behind") {
        return;
    }
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let tmux = Tmux::start_sized(
        "focus",
        &shell_for(&format!("--port {} --name alice", server.port)),
        80,
        12,
    );
    tmux.wait_for("the member list", |s| s.contains("│ bob"));
    bob.send("alice: you are looking");
    tmux.wait_text("bob: alice: you are looking");
    // Nothing else that could ring comes before the next check.
    thread::sleep(Duration::from_millis(300));
    assert!(!tmux.rang(), "a bell for a mention in front");
    // The terminal reports that its window left the front (ESC [ O).
    let out = tmux.run(&["send-keys", "-t", "t", "-H", "1b", "5b", "4f"]);
    assert!(out.status.success(), "send-keys -H");
    // A key after it, seen in the input row: the report was read.
    tmux.type_text("z");
    tmux.wait_for("the key after the report", |s| bottom(s) == "[Global]> z");
    bob.send("alice: are you there?");
    tmux.wait_text("bob: alice: are you there?");
    wait_bell(&tmux);
    tmux.keys(&["C-u", "C-d"]);
    assert_left_cleanly(&tmux);
}

/// Over TLS (`chats://` and chatd's self-signed certificate as `--ca-file`):
/// the replay shown as history, a password masked as it is typed and kept out
/// of the input history, the account's answer.
#[test]
fn over_tls_history_replayed_and_a_password_masked() {
    if skip("over_tls_history_replayed_and_a_password_masked") {
        return;
    }
    let srv = TlsServer::start();
    let mut bob = Peer::join(srv.server.port, "bob");
    bob.send("said before you came");
    bob.send("/ping stored");
    bob.expect("PONG stored");
    let args = format!(
        "--ca-file {} --name alice chats://localhost:{}",
        srv.cert(),
        srv.tls_port
    );
    let tmux = Tmux::start_sized("tls", &shell_for(&args), 80, 14);
    tmux.wait_for("the status line", |s| {
        status(s).starts_with("[alice] [Global] connected")
    });
    tmux.wait_text("(history) bob: said before you came");
    tmux.wait_text("1 earlier line of [Global] above");
    tmux.type_text("/register hunter2222");
    let screen = tmux.wait_for("the masked password", |s| {
        bottom(s) == "[Global]> /register **********"
    });
    assert!(!screen.contains("hunter"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_text("account alice registered");
    bob.send("live again");
    tmux.wait_text("bob: live again");
    // Up finds nothing: the line with the password was not kept.
    tmux.keys(&["Up"]);
    thread::sleep(Duration::from_millis(300));
    let screen = tmux.screen(false);
    assert_eq!(bottom(&screen), "[Global]>", "{screen}");
    assert!(!screen.contains("hunter2222"), "{screen}");
    tmux.keys(&["C-c"]);
    assert_eq!(bob.expect("PART * alice"), "PART * alice quit");
    assert_left_cleanly(&tmux);
}

/// A refused certificate ends the full-screen mode with status 1, and the
/// reason is printed again once the terminal is back (the view is gone).
#[test]
fn a_refused_certificate_is_said_after_the_screen_is_gone() {
    if skip("a_refused_certificate_is_said_after_the_screen_is_gone") {
        return;
    }
    let srv = TlsServer::start();
    let args = format!("--name alice chats://localhost:{}", srv.tls_port);
    let tmux = Tmux::start_sized("tls-refused", &shell_for(&args), 250, 10);
    let screen = tmux.wait_for("both terminal modes", |s| s.matches("MODE=").count() == 2);
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(
        screen.contains("MODE=icanon") && screen.contains("MODE=echo"),
        "terminal left raw:\n{screen}"
    );
    let said = screen
        .lines()
        .find(|l| l.starts_with("chatcli: cannot connect to localhost:"))
        .unwrap_or_else(|| panic!("no reason on the terminal:\n{screen}"));
    assert!(said.contains("not trusted by the system's roots"), "{said}");
    assert!(said.contains(&srv.fingerprint), "{said}");
}
