//! Plain-line mode (stdin not a terminal) against the real chatd: what scripts rely on.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use support::{chatcli, Peer, PipedClient, Server, WAIT};

fn port_arg(server: &Server) -> String {
    server.port.to_string()
}

#[test]
fn scripted_session_from_printf() {
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    // The README's example, byte for byte: printf 'alice\nhello\n/quit\n' | chatcli
    let mut child = Command::new(chatcli())
        .args(["--port", &port_arg(&server)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("chatcli starts");
    let mut stdin = child.stdin.take().expect("piped");
    stdin.write_all(b"alice\nhello\n/quit\n").expect("written");
    drop(stdin);
    let out = support::line_reader(child.stdout.take().expect("piped"));
    bob.expect("JOIN * alice");
    assert_eq!(bob.expect("MSG "), "MSG * alice hello");
    assert_eq!(bob.expect("PART "), "PART * alice quit");
    let lines = support::read_until(&out, "the goodbye", |l| l.contains("disconnected, bye"));
    let status = wait_child(&mut child);
    assert!(status.success(), "exit status {status}");
    let text = lines.join("\n");
    for want in [
        "-- connected to chatd ",
        "-- you are alice; /help lists the commands",
        "[Global] alice: hello",
        "-- disconnected, bye",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    // One rendered line per event, stamped, and no colour in a pipe.
    assert!(
        !text.contains('\x1b'),
        "escape codes in pipe output:\n{text}"
    );
    for line in &lines {
        let stamp = line.get(..6).unwrap_or_default();
        let ok = stamp.len() == 6
            && stamp.as_bytes()[2] == b':'
            && stamp.as_bytes()[5] == b' '
            && stamp
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 2 || i == 5 || b.is_ascii_digit());
        assert!(ok, "line without HH:MM stamp: {line:?}");
    }
}

fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().expect("waitable") {
            return s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chatcli did not exit within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_print_as_lines_and_eof_quits_cleanly() {
    let server = Server::start();
    let port = port_arg(&server);
    let mut bob = Peer::join(server.port, "bob");
    let mut cli = PipedClient::start(&["--port", &port, "--name", "carol"]);
    cli.expect("you are carol");
    bob.expect("JOIN * carol");
    bob.send("hi carol");
    cli.expect("[Global] bob: hi carol");
    bob.send("/me waves");
    cli.expect("* bob waves");
    bob.send("/msg carol psst");
    cli.expect("[DM] bob -> you: psst");
    cli.send("/msg bob back");
    cli.expect("[DM] you -> bob: back");
    assert_eq!(bob.expect("DM carol "), "DM carol bob back");
    cli.send("/users");
    cli.expect("-- 2 users in [Global]: bob, carol");
    cli.send("/join rust");
    cli.expect("-- you joined rust");
    cli.send("/groups");
    cli.expect("-- 1 group: rust (1)");
    cli.send("in the group");
    cli.expect("[rust] carol: in the group");
    // Offline help and local errors never reach the server.
    cli.send("/help");
    cli.expect("/join <group>");
    cli.send("/join");
    cli.expect("!! usage: /join <group>");
    // End of input: /quit, the server's BYE, exit 0.
    cli.close_stdin();
    bob.expect("PART * carol");
    let (status, rest) = cli.wait();
    assert!(status.success(), "exit status {status}; {rest:?}");
}

#[test]
fn taken_name_then_retry_in_a_script() {
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let mut cli = PipedClient::start(&["--port", &port_arg(&server)]);
    // Each line waits for the answer to the name before it, so the second line
    // is the second try and the third is a message.
    cli.send("BOB");
    cli.send("dave");
    cli.send("hello from dave");
    cli.expect("!! the name BOB is taken [name-taken]");
    cli.expect("you are dave");
    assert_eq!(bob.expect("MSG "), "MSG * dave hello from dave");
    cli.send("/quit");
    let (status, _) = cli.wait();
    assert!(status.success());
}

#[test]
fn server_gone_is_a_clear_failure() {
    let mut server = Server::start();
    let port = port_arg(&server);
    let mut cli = PipedClient::start(&["--port", &port, "--name", "erin"]);
    cli.expect("you are erin");
    server.kill();
    cli.expect("connection to 127.0.0.1:");
    let (status, _) = cli.wait();
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn unreachable_server_fails_at_once() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cli = PipedClient::start(&["--port", &port.to_string()]);
    cli.expect("cannot connect to 127.0.0.1:");
    let (status, _) = cli.wait();
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn bad_arguments_exit_2() {
    for args in [&["--name", "no spaces"][..], &["h:1", "--port", "2"][..]] {
        let out = Command::new(chatcli())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
