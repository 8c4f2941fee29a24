//! The line mode (`--plain`) in a real terminal (tmux) against the real chatd:
//! the paper cuts of issue 12, each checked the way it was seen. Pastes arrive
//! whole; long lines leave no stale prompt rows; Ctrl+L leaves no copies in
//! the scrollback; a silent server is noticed; own DMs cannot be mimicked.
//!
//! Skipped, with a message, only when tmux is not installed.

mod support;

use std::io::BufRead;
use std::net::TcpListener;
use std::process::Command;
use std::thread;

use support::tmux::{assert_left_cleanly, bottom, shell_for, Tmux};
use support::{Peer, Server};

fn skip(test: &str) -> bool {
    if Tmux::available() {
        return false;
    }
    eprintln!("SKIPPED {test}: tmux is not installed (apt-get install tmux)");
    true
}

/// Bug 1: more than 1 KiB typed at once (a paste into a terminal without
/// bracketed paste) is shown whole at once, not held until the next key; a
/// bracketed paste of one 2 KiB line goes into the input; a paste of 80 lines
/// asks first, Esc cancels it and Enter sends 80 messages.
#[test]
fn pastes_arrive_whole() {
    if skip("pastes_arrive_whole") {
        return;
    }
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let tmux = Tmux::start(
        "paste",
        &shell_for(&format!("--plain --port {} --name ann", server.port)),
    );
    tmux.wait_for("the prompt", |s| bottom(s) == "[Global]>");

    let typed = format!("{}0123456789", "a".repeat(1490));
    tmux.type_text(&typed);
    tmux.wait_for("the end of 1500 typed characters", |s| {
        bottom(s).ends_with("aaa0123456789")
    });
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG * ann"), format!("MSG * ann {typed}"));

    let pasted = format!("{}END", "b".repeat(2045));
    tmux.paste(&pasted);
    tmux.wait_for("the pasted line in the input", |s| {
        bottom(s).ends_with("bbbEND")
    });
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG * ann"), format!("MSG * ann {pasted}"));

    let lines: Vec<String> = (0..80).map(|i| format!("pasted line {i}")).collect();
    tmux.paste(&lines.join("\n"));
    tmux.wait_for("the paste question", |s| {
        bottom(s).starts_with("paste 80 lines? Enter sends them as 80 messages, Esc cancels")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the prompt again", |s| bottom(s) == "[Global]>");
    tmux.type_text("after the cancelled paste");
    tmux.keys(&["Enter"]);
    assert_eq!(
        bob.expect("MSG * ann"),
        "MSG * ann after the cancelled paste",
        "the cancelled paste was sent"
    );
    tmux.paste(&format!("{}\n", lines.join("\n")));
    tmux.wait_for("the paste question", |s| {
        bottom(s).starts_with("paste 80 lines?")
    });
    tmux.keys(&["Enter"]);
    for line in &lines {
        assert_eq!(bob.expect("MSG * ann"), format!("MSG * ann {line}"));
    }
    tmux.keys(&["C-d"]);
    assert_left_cleanly(&tmux);
}

/// Bugs 2, 3 and 4: a line wider than the terminal, sent or cleared, leaves no
/// stale prompt row; 5000 characters are refused at once, not drawn; after
/// Ctrl+L, keys leave no copies of the prompt in the scrollback.
#[test]
fn long_lines_and_redraws_leave_nothing_behind() {
    if skip("long_lines_and_redraws_leave_nothing_behind") {
        return;
    }
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let tmux = Tmux::start_sized(
        "long",
        &shell_for(&format!("--plain --port {} --name ann", server.port)),
        60,
        20,
    );
    tmux.wait_for("the prompt", |s| bottom(s) == "[Global]>");
    let prompt_rows = |s: &str| s.lines().filter(|l| l.starts_with("[Global]>")).count();

    let wide = format!("{}W", "w".repeat(149));
    tmux.type_text(&wide);
    tmux.wait_for("the end of the wide line", |s| bottom(s).ends_with("wwwW"));
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG * ann"), format!("MSG * ann {wide}"));
    tmux.wait_text(&format!("[Global] ann: {wide}"));
    let screen = tmux.wait_for("an empty prompt", |s| bottom(s) == "[Global]>");
    assert_eq!(prompt_rows(&screen), 1, "a stale prompt row:\n{screen}");

    tmux.type_text(&"u".repeat(150));
    tmux.wait_for("the wide line", |s| bottom(s).ends_with("uuu"));
    tmux.keys(&["C-u"]);
    let screen = tmux.wait_for("an empty prompt", |s| bottom(s) == "[Global]>");
    assert!(!screen.contains("uuu"), "Ctrl+U left a row:\n{screen}");
    assert_eq!(prompt_rows(&screen), 1, "{screen}");

    tmux.paste(&"x".repeat(5000));
    let screen = tmux.wait_text("paste refused: the line would be 5000 bytes");
    assert_eq!(bottom(&screen), "[Global]>", "{screen}");
    assert!(
        !tmux.history().contains("xxxxxxxxxx"),
        "the long paste was drawn"
    );

    tmux.keys(&["C-l"]);
    for c in "abcdefgh".chars() {
        tmux.type_text(&c.to_string());
        tmux.wait_for("the key", |s| bottom(s).ends_with(c));
    }
    let history = tmux.history();
    let copies = history
        .lines()
        .filter(|l| l.starts_with("[Global]> a"))
        .count();
    assert_eq!(
        copies, 1,
        "copies of the prompt in the scrollback:\n{history}"
    );
    tmux.keys(&["C-u", "C-d"]);
    assert_left_cleanly(&tmux);
}

/// Bug 7: a server that goes silent (no line, not even a PING) is asked for a
/// sign of life after the keepalive, and given up after as long again.
#[test]
fn a_silent_server_is_noticed() {
    if skip("a_silent_server_is_noticed") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (_s, mut r) = support::accept_registration(&listener, "kim");
        // Read what comes, answer nothing, until the client gives up.
        let mut seen = Vec::new();
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            seen.push(std::mem::take(&mut line));
        }
        seen
    });
    let tmux = Tmux::start(
        "silent",
        &shell_for(&format!(
            "--plain --port {port} --name kim --keepalive 1 --no-reconnect"
        )),
    );
    let screen = tmux.wait_text("EXIT=");
    assert!(
        screen.contains("the server has said nothing for"),
        "{screen}"
    );
    assert!(screen.contains("EXIT=1"), "{screen}");
    let seen = server.join().expect("fake server");
    assert!(
        seen.iter().any(|l| l.starts_with("/ping chatcli-alive-")),
        "{seen:?}"
    );
}

/// Bugs 6 and 8: without colours a user named `you` cannot pass for us; with
/// --name the server's "who are you?" is not shown; the prompt spells the
/// scope as lines do; /help leaves out /pong; Tab completes, and rings the
/// bell when nothing matches; SIGTERM leaves with one line.
#[test]
fn no_look_alikes_and_no_paper_cuts() {
    if skip("no_look_alikes_and_no_paper_cuts") {
        return;
    }
    let server = Server::start();
    let tmux = Tmux::start(
        "cuts",
        &shell_for(&format!(
            "--plain --port {} --name zed --no-color --no-bell",
            server.port
        )),
    );
    let screen = tmux.wait_for("the prompt", |s| bottom(s) == "[Global]>");
    assert!(screen.contains("-- connected to chatd"), "{screen}");
    assert!(!screen.contains("who are you"), "{screen}");

    let mut you = Peer::join(server.port, "you");
    tmux.wait_text("-- you connected");
    you.send("/msg zed hi from you");
    tmux.wait_text("[DM] you -> zed: hi from you");
    tmux.type_text("/msg you back");
    tmux.keys(&["Enter"]);
    you.expect("DM zed you back");
    let screen = tmux.wait_text("[DM] zed -> you: back");
    assert!(!screen.contains("you -> you"), "{screen}");

    tmux.type_text("/help");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_text("/msg <name> <text>");
    assert!(!screen.contains("/pong"), "{screen}");

    tmux.type_text("Yo");
    tmux.keys(&["Tab"]);
    tmux.wait_for("the completed name", |s| bottom(s) == "[Global]> you:");
    tmux.type_text("done");
    tmux.keys(&["Enter"]);
    assert_eq!(you.expect("MSG * zed"), "MSG * zed you: done");
    // --no-bell: the DM did not ring; a Tab that completes nothing still does.
    assert!(!tmux.rang(), "a bell before any failed completion");
    tmux.type_text("qqq");
    tmux.keys(&["Tab"]);
    let deadline = std::time::Instant::now() + support::WAIT;
    while !tmux.rang() {
        assert!(
            std::time::Instant::now() < deadline,
            "no bell for a Tab that completes nothing"
        );
        thread::sleep(std::time::Duration::from_millis(50));
    }
    tmux.keys(&["C-u"]);

    // SIGTERM: one goodbye line, then the shell's report.
    let pane = tmux.run(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
    let shell_pid = String::from_utf8_lossy(&pane.stdout).trim().to_owned();
    let child = Command::new("pgrep")
        .args(["-P", &shell_pid])
        .output()
        .expect("pgrep runs");
    let pid: u32 = String::from_utf8_lossy(&child.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("chatcli's pid");
    support::terminate(pid);
    assert_left_cleanly(&tmux);
    let screen = tmux.screen(false);
    let after: Vec<&str> = screen
        .lines()
        .skip_while(|l| !l.contains("-- disconnected, bye"))
        .take_while(|l| !l.starts_with("EXIT="))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(after.len(), 1, "more than one line on SIGTERM:\n{screen}");
}

/// The line mode on a narrow terminal, then a tiny one resized while lines
/// arrive; a mention highlighted with the bell; a server restart with the
/// line typed offline kept in the input and sent once reconnected.
#[test]
fn narrow_tiny_resize_mention_and_restart() {
    if skip("narrow_tiny_resize_mention_and_restart") {
        return;
    }
    let mut server = Server::start();
    let port = server.port;
    let mut bob = Peer::join(port, "bob");
    let tmux = Tmux::start_sized(
        "restart",
        &shell_for(&format!("--plain --port {port} --name lea")),
        40,
        10,
    );
    tmux.wait_for("the prompt", |s| bottom(s) == "[Global]>");
    assert!(!tmux.rang(), "a bell before the mention");
    bob.send("lea: are you there");
    tmux.wait_text("bob: lea: are you there");
    let deadline = std::time::Instant::now() + support::WAIT;
    while !tmux.rang() {
        assert!(
            std::time::Instant::now() < deadline,
            "no bell for a mention"
        );
        thread::sleep(std::time::Duration::from_millis(50));
    }
    let coloured = tmux.screen(true);
    let line = coloured
        .lines()
        .find(|l| l.contains("are you there"))
        .expect("the mention");
    assert!(line.contains("33m"), "not highlighted: {line:?}");

    // 70 characters on 40 columns wrap above an intact prompt row.
    bob.send(&"w".repeat(70));
    let screen = tmux.wait_for("the wrapped line", |s| s.contains(&"w".repeat(30)));
    assert_eq!(bottom(&screen), "[Global]>", "{screen}");

    tmux.resize(20, 5);
    for i in 0..20 {
        bob.send(&format!("line {i}"));
        if i == 10 {
            tmux.resize(30, 8);
        }
    }
    let screen = tmux.wait_text("bob: line 19");
    assert_eq!(bottom(&screen), "[Global]>", "{screen}");

    server.kill();
    tmux.wait_text("reconnecting in 1 s");
    tmux.wait_for("the offline prompt", |s| bottom(s) == "[offline]>");
    tmux.type_text("kept");
    tmux.keys(&["Enter"]);
    tmux.wait_text("line is kept in the input");
    tmux.wait_for("the kept line", |s| bottom(s) == "[offline]> kept");
    let _server = Server::start_on(&format!("127.0.0.1:{port}"));
    let mut ben = Peer::join(port, "ben");
    tmux.wait_text("-- reconnected");
    tmux.wait_for("the kept line, online", |s| bottom(s) == "[Global]> kept");
    tmux.keys(&["Enter"]);
    assert_eq!(ben.expect("MSG "), "MSG * lea kept");
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
}
