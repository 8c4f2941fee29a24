//! `--max-clients` and `--max-per-ip`: a newcomer past a limit gets `BYE
//! server-full` and is closed; the clients already there are unaffected, and a
//! place freed by a leaver can be taken again.

mod support;

use std::time::Duration;

use support::{eventually, Chatd, Client};

/// Connects and returns what the server said before closing, if it closed.
fn refused(chatd: &Chatd) -> Option<Vec<String>> {
    let mut c = Client::connect(chatd.addr);
    let first = c.line();
    if first.starts_with("HELLO ") {
        return None;
    }
    let mut lines = vec![first];
    lines.extend(c.until_closed());
    Some(lines)
}

#[test]
fn past_max_clients_newcomers_get_server_full() {
    let chatd = Chatd::start(&["--max-clients", "2"]);
    let mut ann = chatd.user("ann");
    let mut anon = chatd.connect(); // unregistered connections count too
    for _ in 0..3 {
        assert_eq!(refused(&chatd), Some(vec!["BYE server-full".to_owned()]));
    }
    // Those already in are unaffected.
    ann.send("/users");
    ann.expect("USERS * ann");
    anon.send("/ping still-here");
    anon.expect("PONG still-here");
    // A place freed is available again once the server has noticed.
    anon.send("/quit");
    assert_eq!(anon.until_closed(), vec!["BYE quit"]);
    // Closing our end ends chatd's wait for it (it reads until the client is done).
    drop(anon);
    assert!(
        eventually(Duration::from_secs(10), || refused(&chatd).is_none()),
        "the freed place was never given back"
    );
}

#[test]
fn past_max_per_ip_newcomers_get_server_full() {
    // Loopback is exempt by default; the test asks for the limit anyway.
    let chatd = Chatd::start(&["--max-per-ip", "2", "--limit-loopback"]);
    let mut ann = chatd.user("ann");
    let _bob = chatd.user("bob");
    assert_eq!(refused(&chatd), Some(vec!["BYE server-full".to_owned()]));
    ann.expect("JOIN * bob");
    ann.expect_nothing();
}

#[test]
fn loopback_is_exempt_from_the_per_ip_limit_by_default() {
    let chatd = Chatd::start(&["--max-per-ip", "1"]);
    let clients: Vec<Client> = (0..5).map(|_| chatd.connect()).collect();
    assert_eq!(clients.len(), 5);
}
