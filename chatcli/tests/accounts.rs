//! Accounts and history in the scripting mode, against the real chatd (its
//! store in a temporary `--data-dir`, or in memory) and a fake server: logging
//! in at connect from `--password-file` or `CHAT_PASSWORD` (and again after a
//! reconnection), a refused login shown while the client stays connected,
//! replayed lines marked as history before the live ones, `/history` paging.

mod support;

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::thread;

use support::{Peer, PipedClient, Server, TempDir};

#[test]
fn logging_in_at_connect_from_a_file_or_the_environment() {
    let dir = TempDir::new("accounts");
    let data = dir.file("data");
    let mut server = Server::start_with(&["--listen", "127.0.0.1:0", "--data-dir", &data]);
    let port = server.port.to_string();
    let mut everything = Vec::new();

    let mut first = PipedClient::start(&["--port", &port, "--name", "alice"]);
    first.expect("-- you are alice");
    first.send("/register correct-horse");
    everything.extend(first.expect("account alice registered"));
    first.send("/quit");
    let (status, rest) = first.wait();
    assert!(status.success(), "{status}");
    everything.extend(rest);

    // Stored for alice while she is away.
    let mut bob = Peer::join(server.port, "bob");
    bob.send("/msg alice see you tomorrow");
    bob.expect("INFO ");

    // A wrong password: the refusal is shown, the client stays connected,
    // and a /login typed then works.
    let mut cli = PipedClient::start_env(
        &["--port", &port, "--name", "alice"],
        &[("CHAT_PASSWORD", "battery-staple")],
    );
    let seen = cli.expect("logging in as alice failed");
    assert!(
        seen.iter().any(|l| l.contains("[wrong-password]")),
        "{seen:#?}"
    );
    everything.extend(seen);
    cli.send("/login alice correct-horse");
    everything.extend(cli.expect("-- logged in as alice"));
    // The offline message, after the login, marked as history.
    let dm = cli.expect("[DM] bob -> alice: see you tomorrow");
    assert!(dm.last().unwrap().contains("(history)"), "{dm:#?}");
    everything.extend(dm);
    cli.send("/quit");
    let (status, rest) = cli.wait();
    assert!(status.success(), "{status}");
    everything.extend(rest);

    // From a file, at connect, and again after the server comes back.
    let pw = dir.file("password");
    std::fs::write(&pw, "correct-horse\n").unwrap();
    // As the README says to keep it (others' read access gets a warning).
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut cli = PipedClient::start(&["--port", &port, "--name", "alice", "--password-file", &pw]);
    everything.extend(cli.expect("-- logged in as alice"));
    server.stop();
    everything.extend(cli.expect("reconnecting in 1 s"));
    let _server = Server::start_with(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &data,
    ]);
    everything.extend(cli.expect("-- reconnected"));
    everything.extend(cli.expect("-- logged in as alice"));
    cli.send("/quit");
    let (status, rest) = cli.wait();
    assert!(status.success(), "{status}");
    everything.extend(rest);

    let text = everything.join("\n");
    for secret in ["correct-horse", "battery-staple"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
}

/// `/register`, `/passwd` and `/unregister` typed here decide how the client
/// logs in again after a reconnection (the password kept in memory only).
#[test]
fn account_commands_typed_here_are_remembered_for_reconnections() {
    let dir = TempDir::new("relogin");
    let data = dir.file("data");
    let mut server = Server::start_with(&["--listen", "127.0.0.1:0", "--data-dir", &data]);
    let port = server.port;
    let restart = |server: &mut Server| {
        server.stop();
        *server = Server::start_with(&[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
            &data,
        ]);
    };
    let mut cli = PipedClient::start(&["--port", &port.to_string(), "--name", "alice"]);
    cli.expect("-- you are alice");
    cli.send("/register correct-horse");
    cli.expect("account alice registered");
    restart(&mut server);
    cli.expect("-- reconnected");
    cli.expect("-- logged in as alice");
    cli.send("/passwd correct-horse new-horse-1");
    cli.expect("password of alice changed");
    restart(&mut server);
    cli.expect("-- reconnected");
    cli.expect("-- logged in as alice");
    cli.send("/unregister new-horse-1");
    cli.expect("account alice deleted");
    restart(&mut server);
    cli.expect("-- reconnected");
    let seen = cli.expect("-- you are alice");
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("logged in") || l.contains("!!")),
        "a plain registration after /unregister: {seen:#?}"
    );
    cli.send("/quit");
    assert!(cli.wait().0.success());
}

#[test]
fn an_unreadable_password_file_exits_2() {
    let mut cli = PipedClient::start(&[
        "--port",
        "1",
        "--name",
        "alice",
        "--password-file",
        "/nonexistent/chatcli-password",
    ]);
    let (status, _) = cli.wait();
    assert_eq!(status.code(), Some(2));
}

#[test]
fn history_is_marked_and_comes_before_the_live_lines() {
    let server = Server::start();
    let mut bob = Peer::join(server.port, "bob");
    bob.send("/join rust");
    bob.expect("JOIN rust bob");
    bob.send("first words");
    bob.send("second words");
    bob.send("/ping stored");
    bob.expect("PONG stored");

    let port = server.port.to_string();
    let mut cli = PipedClient::start(&["--port", &port, "--name", "alice"]);
    cli.expect("-- you are alice");
    cli.send("/join rust");
    let seen = cli.expect("earlier lines of [rust] above");
    let history: Vec<&String> = seen.iter().filter(|l| l.contains("(history)")).collect();
    assert_eq!(history.len(), 2, "{seen:#?}");
    assert!(
        history[0].ends_with("[rust] (history) bob: first words"),
        "{seen:#?}"
    );
    assert!(
        history[1].ends_with("[rust] (history) bob: second words"),
        "{seen:#?}"
    );
    // The hint names the id of the oldest line, to page back from.
    let end = seen.last().unwrap();
    let id = end
        .split("/history 20 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or_else(|| panic!("no id in {end:?}"))
        .to_owned();
    bob.send("live now");
    let live = cli.expect("bob: live now");
    assert!(
        live.last().unwrap().ends_with("[rust] bob: live now"),
        "{live:#?}"
    );
    cli.send(&format!("/history 5 {id}"));
    cli.expect("-- nothing earlier in [rust]");
    cli.send("/history 1");
    let page = cli.expect("1 earlier line of [rust] above");
    assert!(
        page.iter().any(|l| l.ends_with("(history) bob: live now")),
        "{page:#?}"
    );
    cli.send("/quit");
    assert!(cli.wait().0.success());
}

/// A server without accounts answers the client's own `/login` with `ERR
/// unavailable`: the client says so and registers the name plainly.
#[test]
fn a_server_without_accounts_gets_the_name_plainly() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(support::WAIT)).unwrap();
        let mut r = std::io::BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        let mut next = |r: &mut std::io::BufReader<_>| {
            line.clear();
            r.read_line(&mut line).unwrap();
            line.trim_end().to_owned()
        };
        s.write_all(b"HELLO old 0.0.1 who are you\n").unwrap();
        assert_eq!(next(&mut r), "/login alice correct-horse");
        let ping = next(&mut r);
        let token = ping.strip_prefix("/ping ").expect("a /ping").to_owned();
        s.write_all(
            format!("ERR unavailable this server keeps no accounts\nPONG {token}\n").as_bytes(),
        )
        .unwrap();
        assert_eq!(next(&mut r), "alice");
        let ping = next(&mut r);
        let token = ping.strip_prefix("/ping ").expect("a /ping").to_owned();
        s.write_all(format!("WELCOME alice\nPONG {token}\n").as_bytes())
            .unwrap();
        assert_eq!(next(&mut r), "/quit");
        s.write_all(b"BYE quit\n").unwrap();
    });
    let mut cli = PipedClient::start_env(
        &["--port", &port.to_string(), "--name", "alice"],
        &[("CHAT_PASSWORD", "correct-horse")],
    );
    let seen = cli.expect("-- you are alice");
    let text = seen.join("\n");
    assert!(text.contains("[unavailable]"), "{text}");
    assert!(
        text.contains("keeps no accounts: registering as alice without logging in"),
        "{text}"
    );
    cli.send("/quit");
    assert!(cli.wait().0.success());
    server.join().expect("the fake server saw what it expected");
}
