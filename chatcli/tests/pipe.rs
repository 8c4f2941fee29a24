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
    cli.expect("[DM] bob -> carol: psst");
    cli.send("/msg bob back");
    cli.expect("[DM] carol -> bob: back");
    assert_eq!(bob.expect("DM carol "), "DM carol bob back");
    cli.send("/users");
    cli.expect("-- 2 users in [Global]: bob, carol");
    cli.send("/join rust");
    cli.expect("-- carol joined rust");
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
    let mut cli = PipedClient::start(&["--port", &port, "--name", "erin", "--no-reconnect"]);
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
    let mut cli = PipedClient::start(&["--port", &port.to_string(), "--no-reconnect"]);
    cli.expect("cannot connect to 127.0.0.1:");
    let (status, _) = cli.wait();
    assert_eq!(status.code(), Some(1), "{status}");
}

#[test]
fn bad_arguments_exit_2() {
    // The client's own checks and argh's refusals alike (status 1 means the
    // server could not be reached, so a typo must not look like that).
    for args in [
        &["--name", "no spaces"][..],
        &["h:1", "--port", "2"],
        &["--port", "99999"],
        &["--port", "abc"],
        &["--bogus"],
        &["--name"],
        &["--keepalive", "0"],
    ] {
        let out = Command::new(chatcli())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let help = Command::new(chatcli())
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--no-reconnect"));
}

#[test]
fn answers_the_servers_ping() {
    // chatd pings after 1 s of silence and cuts off after 3 s: a client that
    // did not answer would be gone before the /users below.
    let server = Server::start_with(&[
        "--listen",
        "127.0.0.1:0",
        "--ping-after",
        "1s",
        "--idle-timeout",
        "3s",
    ]);
    let mut cli = PipedClient::start(&["--port", &port_arg(&server), "--name", "frank"]);
    cli.expect("you are frank");
    thread::sleep(Duration::from_secs(5));
    cli.send("/users");
    let seen = cli.expect("-- 1 user in [Global]: frank");
    assert!(
        !seen.iter().any(|l| l.contains("closed")),
        "disconnected: {seen:?}"
    );
    cli.send("/quit");
    assert!(cli.wait().0.success());
}

#[test]
fn sigterm_leaves_with_quit() {
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    let mut cli = PipedClient::start(&["--port", &port_arg(&server), "--name", "gina"]);
    cli.expect("you are gina");
    support::terminate(cli.id());
    assert_eq!(bob.expect("PART * gina"), "PART * gina quit");
    let (status, _) = cli.wait();
    assert!(status.success(), "{status}");
}

/// Reconnecting is the default (no flag).
#[test]
fn reconnects_and_rejoins_the_group() {
    let mut server = Server::start();
    let port = server.port;
    let mut cli = PipedClient::start(&["--port", &port.to_string(), "--name", "hana"]);
    cli.expect("you are hana");
    cli.send("/join rust");
    cli.expect("-- hana joined rust");
    server.kill();
    cli.expect("reconnecting in 1 s");
    let _server = Server::start_on(&format!("127.0.0.1:{port}"));
    cli.expect("-- reconnected");
    cli.expect("-- you are hana");
    cli.expect("-- hana joined rust");
    let mut bob = Peer::join(port, "bob");
    bob.send("/join rust");
    bob.expect("JOIN rust bob");
    bob.send("/users");
    assert_eq!(bob.expect("USERS "), "USERS rust bob hana");
    bob.send("still here?");
    cli.expect("[rust] bob: still here?");
    cli.send("/quit");
    assert!(cli.wait().0.success());
}

/// A server that breaks every rule: whatever it sends, the client prints
/// nothing that drives the terminal, and answers PING.
#[test]
fn hostile_server_output_is_inert() {
    use std::io::BufRead;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, mut r) = support::accept_registration(&listener, "eve");
        let mut line = String::new();
        let mut evil: Vec<u8> = Vec::new();
        evil.extend_from_slice(b"INFO \x1b]52;c;ZXZpbA==\x07\n");
        evil.extend_from_slice(b"MSG * bob \x1b[2Jcleared\n");
        evil.extend_from_slice("MSG * bob \u{9b}31mred\n".as_bytes());
        evil.extend_from_slice("MSG * bob \u{202e}txt.exe\n".as_bytes());
        evil.extend_from_slice(b"\xff\xfe\x1b[2J\n");
        evil.extend_from_slice(b"NOPE \x1b[31m\n");
        evil.extend(std::iter::repeat_n(b'x', 5 << 20));
        evil.extend_from_slice(b"\nPING 42\n");
        s.write_all(&evil).unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "/pong 42\n");
        s.write_all(b"INFO done\n").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "/quit\n");
        s.write_all(b"BYE quit\n").unwrap();
    });
    let mut cli = PipedClient::start(&["--port", &port.to_string()]);
    cli.send("eve");
    let seen = cli.expect("-- done");
    cli.close_stdin();
    let (status, rest) = cli.wait();
    server.join().expect("the fake server saw what it expected");
    assert!(status.success(), "{status}");
    let text = seen.into_iter().chain(rest).collect::<Vec<_>>().join("\n");
    for bad in ['\x1b', '\x07', '\u{9b}', '\u{202e}'] {
        assert!(!text.contains(bad), "{bad:?} reached the terminal:\n{text}");
    }
    for shown in [
        "\\x1b]52;c;ZXZpbA==\\x07",
        "\\x1b[2Jcleared",
        "\\u{9b}31mred",
        "[Global] bob: \\u{202e}txt.exe",
        "not valid UTF-8",
        "longer than 4194304 bytes",
        "NOPE \\x1b[31m",
        "-- disconnected, bye",
    ] {
        assert!(text.contains(shown), "{shown:?} missing from:\n{text}");
    }
}

#[test]
fn a_script_is_echoed_in_the_scope_the_server_confirmed() {
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    bob.send("/join rust");
    bob.expect("JOIN rust bob");
    let mut cli = PipedClient::start(&["--port", &port_arg(&server)]);
    // All at once, without waiting: each line that changes the meaning of the
    // next is answered before the next is read. A bad line in between is
    // reported and skipped. The protocol ties no ERR to its line, so the
    // refusal of the /msg must not pass for the answer to the /join after it
    // (the next line would be echoed as global while the server put it in rust).
    let stdin = cli.stdin.as_mut().expect("open");
    stdin
        .write_all(b"ivy\n/msg nobody x\n/join rust\nin rust\nbad \xff line\n/leave\nback in global\n/quit\n")
        .expect("written");
    let seen = cli.expect("-- disconnected, bye").join("\n");
    for want in [
        "!! no user is named nobody",
        "-- ivy joined rust",
        "[rust] ivy: in rust",
        "!! input line is not valid UTF-8 (byte 4), discarded",
        "-- ivy left rust",
        "[Global] ivy: back in global",
    ] {
        assert!(seen.contains(want), "{want:?} missing from:\n{seen}");
    }
    assert_eq!(bob.expect("MSG "), "MSG rust ivy in rust");
    assert_eq!(bob.expect("MSG "), "MSG * ivy back in global");
    assert!(cli.wait().0.success());
}

/// A server that stops reading holds the client's writes once the socket
/// buffers are full. SIGTERM must still end the client (status 0) rather than
/// wait behind a write that never completes.
#[test]
fn a_signal_leaves_while_the_server_is_not_reading() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Instant;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let _held = support::accept_registration(&listener, "sam");
        // Reads nothing more; holds the socket until the test is done.
        let _ = done_rx.recv_timeout(WAIT * 2);
    });
    let mut cli = PipedClient::start(&["--port", &port.to_string(), "--name", "sam"]);
    cli.expect("you are sam");
    // Feed 40 MB of lines, far beyond what the socket buffers hold: the client
    // stops taking them once a write is stuck.
    let mut stdin = cli.stdin.take().expect("open");
    let fed = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let fed = Arc::clone(&fed);
        thread::spawn(move || {
            let line = format!("{}\n", "x".repeat(4000));
            for _ in 0..10_000 {
                if stdin.write_all(line.as_bytes()).is_err() {
                    break; // the client is gone
                }
                fed.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Stuck: no line taken for two seconds (bounded by WAIT). A client merely
    // slowed (say, by its own output) may be taken for stuck; it then leaves
    // through /quit, which is also fine.
    let deadline = Instant::now() + WAIT;
    let mut last = usize::MAX;
    loop {
        let now = fed.load(Ordering::Relaxed);
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
        thread::sleep(Duration::from_secs(2));
    }
    assert!(
        last < 10_000,
        "the client took every line; nothing was held"
    );
    support::terminate(cli.id());
    let (status, rest) = cli.wait();
    assert!(status.success(), "{status}");
    assert!(
        rest.iter()
            .any(|l| l.contains("the server is not reading") || l.contains("no goodbye")),
        "no word about why: {:?}",
        rest.iter().rev().take(3).collect::<Vec<_>>()
    );
    drop(done_tx);
    server.join().expect("fake server");
    feeder.join().expect("feeder");
}

#[test]
fn server_shutdown_is_shown_with_its_reason() {
    let server = Server::start();
    let mut cli = PipedClient::start(&[
        "--port",
        &port_arg(&server),
        "--name",
        "jo",
        "--no-reconnect",
    ]);
    cli.expect("you are jo");
    support::terminate(server.pid());
    cli.expect("!! the server closed the connection: server-shutdown");
    cli.expect("closed by the server");
    let (status, _) = cli.wait();
    assert_eq!(status.code(), Some(1), "{status}");
}
