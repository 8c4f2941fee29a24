//! Under a low descriptor limit every newcomer gets an answer: `HELLO` while
//! descriptors last, then `BYE server-full`; none is left waiting in the
//! accept backlog with no answer at all.

mod support;

use std::time::{Duration, Instant};

use support::{eventually, Chatd, Client, Launch, StderrTo};

/// `ulimit -n` for chatd: room for a few dozen connections only.
const LIMIT: u32 = 64;
/// More clients than LIMIT descriptors could ever hold.
const CLIENTS: usize = 150;

#[test]
fn every_client_gets_hello_or_bye_under_a_low_descriptor_limit() {
    let chatd = Chatd::launch(
        &["--log-level", "info"],
        Launch {
            nofile: Some(LIMIT),
            stderr: StderrTo::Capture,
        },
    );
    // All connected before any is read: those chatd has not accepted yet wait
    // in its backlog, as they do when a crowd arrives at once.
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(chatd.addr)).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut welcomed, mut refused, mut silent) = (Vec::new(), 0, 0);
    for (i, c) in clients.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.try_line(left.max(Duration::from_millis(1))).as_deref() {
            Some(l) if l.starts_with("HELLO ") => welcomed.push(i),
            Some("BYE server-full") => refused += 1,
            Some(other) => panic!("client {i} got {other:?}"),
            None => silent += 1,
        }
    }
    assert_eq!(
        silent,
        0,
        "{silent} of {CLIENTS} clients got nothing within 5 s ({} HELLO, {refused} BYE)",
        welcomed.len()
    );
    assert!(
        !welcomed.is_empty() && welcomed.len() < LIMIT as usize,
        "{} welcomed under a limit of {LIMIT}",
        welcomed.len()
    );
    assert_eq!(welcomed.len() + refused, CLIENTS);

    // The admitted ones are served normally.
    let first = welcomed[0];
    clients[first].register("ann");
    clients[first].expect_nothing();

    // Places come back once clients leave.
    drop(clients);
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut c = Client::connect(chatd.addr);
            c.try_line(Duration::from_secs(2))
                .is_some_and(|l| l.starts_with("HELLO "))
        }),
        "a newcomer is welcomed again"
    );
    let log = chatd.stderr();
    assert!(
        log.contains(&format!("descriptor limit {LIMIT} is below --max-clients")),
        "the cap is explained in the log:\n{log}"
    );
}
