//! The interactive client in a real pseudo-terminal (tmux) against the real chatd:
//! registering at the prompt, chatting with a second client, a half-typed line
//! surviving an incoming message, and Ctrl+C leaving with status 0 and the
//! terminal restored.
//!
//! Skipped, with a message, only when tmux is not installed.

mod support;

use std::thread;

use support::tmux::{assert_left_cleanly, bottom, shell_for, Tmux};
use support::{Peer, Server};

#[test]
fn chat_in_a_terminal() {
    if !Tmux::available() {
        eprintln!("SKIPPED chat_in_a_terminal: tmux is not installed (apt-get install tmux)");
        return;
    }
    let server = Server::start();
    let shell = shell_for(&format!("--plain --port {}", server.port));
    let tmux = Tmux::start("chat", &shell);

    // No --name: the server's greeting asks, the prompt says so.
    let screen = tmux.wait_text("-- connected to chatd");
    assert!(screen.contains("who are you"), "{screen}");
    tmux.wait_for("the name prompt", |s| bottom(s).starts_with("name>"));
    tmux.type_text("alice");
    tmux.keys(&["Enter"]);
    tmux.wait_text("-- you are alice");
    tmux.wait_for("the global prompt", |s| bottom(s).starts_with("[Global]>"));

    // A second client: its messages appear, ours reach it.
    let mut bob = Peer::join(server.port, "bob");
    tmux.wait_text("-- bob connected");
    bob.send("hello alice");
    tmux.wait_text("[Global] bob: hello alice");
    // Names are coloured on a terminal (the SGR code precedes "bob").
    let coloured = tmux.screen(true);
    assert!(
        coloured
            .lines()
            .any(|l| l.contains("hello alice") && l.contains("\x1b[")),
        "no colour on the terminal:\n{coloured:?}"
    );
    // A notice is dimmed as a whole, not just its time stamp.
    let greeting = coloured
        .lines()
        .find(|l| l.contains("connected to chatd"))
        .expect("the greeting");
    let upto = &greeting[..greeting.find("chatd").expect("in it")];
    assert!(
        upto.starts_with("\x1b[2m") && !upto.contains("\x1b[0m") && !upto.contains("\x1b[22m"),
        "greeting not dimmed: {greeting:?}"
    );

    // Half a line typed, then a message arrives: the half line stays intact
    // at the prompt, below the new message.
    tmux.type_text("half a li");
    tmux.wait_for("the half line", |s| bottom(s) == "[Global]> half a li");
    bob.send("this arrives mid-typing");
    let screen = tmux.wait_text("[Global] bob: this arrives mid-typing");
    assert_eq!(
        bottom(&screen),
        "[Global]> half a li",
        "half line lost:\n{screen}"
    );
    tmux.type_text("ne");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * alice half a line");
    tmux.wait_text("[Global] alice: half a line");

    // Line editing: Home, then fix the start of the line.
    tmux.type_text("ello");
    tmux.keys(&["Home"]);
    tmux.type_text("h");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * alice hello");

    // The prompt follows the scope.
    tmux.type_text("/join rust");
    tmux.keys(&["Enter"]);
    tmux.wait_text("-- alice joined rust");
    tmux.wait_for("the group prompt", |s| bottom(s).starts_with("[rust]>"));

    // Ctrl+C on a line being typed clears it and sends nothing; on the empty
    // line it leaves: /quit sent, exit 0, terminal back in canonical mode.
    tmux.type_text("unsent");
    tmux.wait_for("the typed line", |s| bottom(s) == "[rust]> unsent");
    tmux.keys(&["C-c"]);
    tmux.wait_for("the cleared line", |s| bottom(s) == "[rust]>");
    tmux.keys(&["C-c"]);
    assert_eq!(bob.expect("PART * alice"), "PART * alice quit");
    assert_left_cleanly(&tmux);
}

#[test]
fn name_flag_no_colour_help_history_and_ctrl_d() {
    if !Tmux::available() {
        eprintln!("SKIPPED name_flag_no_colour_help_history_and_ctrl_d: tmux is not installed (apt-get install tmux)");
        return;
    }
    let server = Server::start();
    let tmux = Tmux::start(
        "flags",
        &shell_for(&format!(
            "--plain --port {} --name zed --no-color",
            server.port
        )),
    );
    tmux.wait_text("-- you are zed");
    tmux.wait_for("the global prompt", |s| bottom(s).starts_with("[Global]>"));
    let mut bob = Peer::join(server.port, "bob");
    bob.send("/msg zed a secret");
    tmux.wait_text("[DM] bob -> zed: a secret");
    // --no-color: not one escape sequence on the screen.
    let raw = tmux.screen(true);
    assert!(
        !raw.contains("\x1b["),
        "colour despite --no-color:\n{raw:?}"
    );
    // /help is answered locally.
    tmux.type_text("/help");
    tmux.keys(&["Enter"]);
    tmux.wait_text("/msg <name> <text>");
    tmux.wait_text("Ctrl+D quits on an empty line");
    // History: Up brings back the last line sent.
    tmux.type_text("first line");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * zed first line");
    tmux.keys(&["Up"]);
    tmux.wait_for("the recalled line", |s| bottom(s) == "[Global]> first line");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * zed first line");
    // A bad command: a local error, nothing sent.
    tmux.type_text("/join bad!name");
    tmux.keys(&["Enter"]);
    tmux.wait_text("!! ");
    // Ctrl+D leaves like /quit.
    tmux.keys(&["C-d"]);
    assert_eq!(bob.expect("PART * zed"), "PART * zed quit");
    assert_left_cleanly(&tmux);
}

/// On a real terminal, escapes from a hostile server are shown, not obeyed:
/// the screen is not cleared, the title and clipboard are not touched.
#[test]
fn hostile_server_cannot_drive_the_terminal() {
    use std::io::{BufRead, Write};
    use std::net::TcpListener;
    if !Tmux::available() {
        eprintln!("SKIPPED hostile_server_cannot_drive_the_terminal: tmux is not installed (apt-get install tmux)");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, mut r) = support::accept_registration(&listener, "eve");
        let mut line = String::new();
        s.write_all(b"MSG * bob before the attack\n").unwrap();
        s.write_all(b"INFO \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\n")
            .unwrap();
        s.write_all("MSG * bob \u{9b}2J\n".as_bytes()).unwrap();
        s.write_all("MSG * bob \u{202e}gnirts\n".as_bytes())
            .unwrap();
        s.write_all(b"INFO after the attack\n").unwrap();
        // Hold the connection until the client leaves.
        let _ = r.read_line(&mut line);
        let _ = s.write_all(b"BYE quit\n");
        line
    });
    let tmux = Tmux::start(
        "hostile",
        &shell_for(&format!("--plain --port {port} --name eve")),
    );
    let screen = tmux.wait_text("-- after the attack");
    assert!(
        screen.contains("[Global] bob: before the attack"),
        "screen was cleared:\n{screen}"
    );
    assert!(
        screen.contains("\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07"),
        "{screen}"
    );
    assert!(screen.contains("): MSG * bob \\u{9b}2J"), "{screen}");
    assert!(screen.contains("[Global] bob: \\u{202e}gnirts"), "{screen}");
    let title = tmux.run(&["display-message", "-p", "-t", "t", "#{pane_title}"]);
    assert!(
        !String::from_utf8_lossy(&title.stdout).contains("pwned"),
        "title was set"
    );
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
    assert_eq!(server.join().expect("fake server"), "/quit\n");
}

/// A server that never completes the connection (its accept queue is full, so
/// the kernel drops the attempt, as a firewall would): the prompt says the
/// client is connecting, and Ctrl+C leaves at once with status 0 instead of
/// being ignored until the connect timeout ends the client with status 1.
#[test]
fn ctrl_c_while_the_connection_hangs() {
    use socket2::{Domain, Socket, Type};
    use std::net::{SocketAddr, TcpStream};
    if !Tmux::available() {
        eprintln!("SKIPPED ctrl_c_while_the_connection_hangs: tmux is not installed (apt-get install tmux)");
        return;
    }
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let port = listener
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an IP address")
        .port();
    // A backlog of 0 still takes one connection; never accepted, it fills the queue.
    let _filler = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let tmux = Tmux::start(
        "hang",
        &shell_for(&format!("--plain --port {port} --name hal")),
    );
    tmux.wait_for("the connecting prompt", |s| {
        bottom(s).starts_with("[connecting]>")
    });
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
    let screen = tmux.screen(false);
    assert!(!screen.contains("cannot connect"), "{screen}");
}

/// The line mode logging in by hand: the password masked as it is typed (also
/// after moving the cursor into it), the answer shown, Up not bringing it back.
#[test]
fn a_typed_login_is_masked_and_forgotten() {
    if !Tmux::available() {
        eprintln!("SKIPPED a_typed_login_is_masked_and_forgotten: tmux is not installed");
        return;
    }
    let server = Server::start();
    // The account, made by a raw client that then leaves.
    let mut owner = Peer::join(server.port, "alice");
    owner.send("/register correct-horse");
    owner.expect("ACCOUNT alice registered");
    owner.send("/quit");
    owner.expect("BYE ");
    let tmux = Tmux::start(
        "login",
        &shell_for(&format!("--plain --port {}", server.port)),
    );
    tmux.wait_for("the name prompt", |s| bottom(s).starts_with("name>"));
    tmux.type_text("/login alice correct-horse");
    tmux.wait_for("the masked line", |s| {
        bottom(s) == "name> /login alice *************"
    });
    tmux.keys(&["Left", "Left", "Left"]);
    tmux.type_text("x");
    tmux.keys(&["BSpace"]);
    let screen = tmux.wait_for("still masked", |s| {
        bottom(s) == "name> /login alice *************"
    });
    assert!(!screen.contains("correct-horse"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_text("-- logged in as alice");
    tmux.wait_for("the global prompt", |s| bottom(s).starts_with("[Global]>"));
    tmux.keys(&["Up"]);
    thread::sleep(std::time::Duration::from_millis(300));
    let screen = tmux.screen(false);
    assert_eq!(bottom(&screen), "[Global]>", "{screen}");
    assert!(!screen.contains("correct-horse"), "{screen}");
    tmux.keys(&["C-d"]);
    assert_left_cleanly(&tmux);
}
