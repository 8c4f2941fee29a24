//! chatcli over TLS against the real chatd (`--tls-listen`, `--tls-self-signed`
//! in a temporary `--data-dir`): trusted by `--ca-file` or a pinned
//! `--fingerprint`, refused otherwise with one line and exit 1, never retried
//! in a loop nor downgraded to plaintext.

mod support;

use support::{Peer, PipedClient, TempDir, TlsServer};

fn chats(port: u16, host: &str) -> String {
    format!("chats://{host}:{port}")
}

/// The lines of a client that has exited, and its status code.
fn finished(cli: &mut PipedClient, seen: Vec<String>) -> (Option<i32>, String) {
    let (status, rest) = cli.wait();
    (
        status.code(),
        seen.into_iter().chain(rest).collect::<Vec<_>>().join("\n"),
    )
}

#[test]
fn chatting_over_tls_trusting_the_servers_certificate_file() {
    let srv = TlsServer::start();
    let mut bob = Peer::join(srv.server.port, "bob");
    let cert = srv.cert();
    // The name in the address is checked against the certificate (chatd's
    // names localhost), and sent as SNI.
    let addr = chats(srv.tls_port, "localhost");
    let mut alice = PipedClient::start(&["--ca-file", &cert, "--name", "alice", &addr]);
    alice.expect("-- you are alice");
    bob.expect("JOIN * alice");
    alice.send("hello over tls");
    assert_eq!(bob.expect("MSG "), "MSG * alice hello over tls");
    bob.send("hi alice");
    alice.expect("[Global] bob: hi alice");
    alice.close_stdin();
    let (status, rest) = alice.wait();
    assert!(status.success(), "{status}: {rest:?}");
    // --tls with the address in flags works the same.
    let port = srv.tls_port.to_string();
    let mut carol = PipedClient::start(&[
        "--tls",
        "--ca-file",
        &cert,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--name",
        "carol",
    ]);
    carol.expect("-- you are carol");
    carol.send("/quit");
    assert!(carol.wait().0.success());
}

#[test]
fn another_ca_is_refused_in_one_line_with_exit_1_even_when_reconnecting() {
    let srv = TlsServer::start();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = TempDir::new("other-ca");
    let wrong = dir.file("other.pem");
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    // Reconnecting is on by default: a refused certificate must still end it.
    let addr = chats(srv.tls_port, "localhost");
    let mut cli = PipedClient::start(&["--ca-file", &wrong, "--name", "mallory", &addr]);
    let seen = cli.expect("not trusted");
    let (code, text) = finished(&mut cli, seen);
    assert_eq!(code, Some(1), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("!!")).collect();
    assert_eq!(errors.len(), 1, "one line, no retries:\n{text}");
    assert!(errors[0].contains("--ca-file"), "{text}");
    // It says how to pin the certificate it saw, chatd's.
    assert!(errors[0].contains(&srv.fingerprint), "{text}");
    assert!(
        !text.contains("trying again") && !text.contains("you are"),
        "{text}"
    );
}

#[test]
fn a_pinned_fingerprint_is_accepted_and_another_refused() {
    let mut srv = TlsServer::start();
    // A pin needs no name check: an IP address the certificate may not list.
    let addr = chats(srv.tls_port, "127.0.0.1");
    let pin = srv.fingerprint.clone();
    let mut ok = PipedClient::start(&["--fingerprint", &pin, "--name", "pia", &addr]);
    ok.expect("-- you are pia");
    // chatd comes back with a new certificate: the reconnection is refused,
    // and the client stops instead of trying forever.
    srv.restart(true);
    assert_ne!(srv.fingerprint, pin);
    let seen = ok.expect("not the pinned");
    let (code, text) = finished(&mut ok, seen);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&srv.fingerprint),
        "the new one is named:\n{text}"
    );
    // Plain hex, lower case, is a pin too.
    let other = "00".repeat(32);
    let mut refused = PipedClient::start(&["--fingerprint", &other, "--name", "pia", &addr]);
    let seen = refused.expect("not the pinned");
    let (code, text) = finished(&mut refused, seen);
    assert_eq!(code, Some(1), "{text}");
    let fresh = srv.fingerprint.to_lowercase().replace(':', "");
    let mut again = PipedClient::start(&["--fingerprint", &fresh, "--name", "pia", &addr]);
    again.expect("-- you are pia");
    again.send("/quit");
    assert!(again.wait().0.success());
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_told_to_use_tls() {
    let srv = TlsServer::start();
    let addr = format!("127.0.0.1:{}", srv.tls_port);
    let mut cli = PipedClient::start(&["--name", "pat", &addr]);
    let seen = cli.expect("answered with TLS");
    let (code, text) = finished(&mut cli, seen);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("chats://{addr}")), "{text}");
    assert!(!text.contains("reconnecting"), "{text}");
}

#[test]
fn a_tls_client_on_the_plaintext_port_is_told_so() {
    let srv = TlsServer::start();
    let addr = chats(srv.server.port, "localhost");
    let mut cli = PipedClient::start(&["--ca-file", &srv.cert(), "--name", "tia", &addr]);
    let seen = cli.expect("does not speak TLS");
    let (code, text) = finished(&mut cli, seen);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        !text.contains("you are"),
        "no fallback to plaintext:\n{text}"
    );
}

#[test]
fn insecure_warns_on_every_connection() {
    let mut srv = TlsServer::start();
    let addr = chats(srv.tls_port, "localhost");
    let mut cli = PipedClient::start(&["--insecure", "--name", "ivy", &addr]);
    let first = cli.expect("-- you are ivy");
    let warnings = |lines: &[String]| {
        lines
            .iter()
            .filter(|l| l.contains("!! WARNING: --insecure"))
            .count()
    };
    assert_eq!(warnings(&first), 1, "{first:#?}");
    // A new certificate is no obstacle without verification, and the
    // reconnection warns again.
    srv.restart(true);
    let second = cli.expect("-- reconnected");
    let second: Vec<String> = second
        .into_iter()
        .chain(cli.expect("-- you are ivy"))
        .collect();
    assert_eq!(warnings(&second), 1, "{second:#?}");
    cli.send("/quit");
    assert!(cli.wait().0.success());
}
