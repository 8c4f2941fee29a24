//! Closing a connection while its client is still sending: the server keeps
//! reading (and discarding) until the client is done or the grace period ends,
//! so the kernel does not answer the unread input with a reset, which would
//! throw away the lines still on their way to the client, its `BYE` included.

mod support;

use std::io::{ErrorKind, Read};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;
use support::{Chatd, Client, LINE_TIMEOUT};

/// `/help` answers this many lines before the `/quit`.
const HELPS: usize = 200;

#[test]
fn a_client_still_sending_after_quit_gets_every_line_and_its_bye() {
    let chatd = Chatd::start(&["--flood-rate", "0"]);
    let mut c = chatd.connect();
    c.register("chatty");
    // A small receive buffer, and nothing read yet: most of the answers wait
    // in chatd's socket when it closes.
    SockRef::from(&c.stream).set_recv_buffer_size(4096).unwrap();
    let mut script = "/help\n".repeat(HELPS);
    script.push_str("/quit\n");
    c.send_raw(script.as_bytes());
    // More input after the /quit, which chatd no longer handles.
    let junk = "after the quit\n".repeat(1000);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        // A write may fail once chatd has given up on the connection.
        if std::io::Write::write_all(&mut c.stream, junk.as_bytes()).is_err() {
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }

    let mut got = Vec::new();
    c.stream.set_read_timeout(Some(LINE_TIMEOUT)).unwrap();
    let mut buf = [0u8; 4096];
    let end = loop {
        match c.stream.read(&mut buf) {
            Ok(0) => break "EOF".to_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break format!("{e}"),
        }
    };
    let text = String::from_utf8(got).expect("UTF-8 from chatd");
    let lines: Vec<&str> = text.lines().collect();
    let infos = lines.iter().filter(|l| l.starts_with("INFO ")).count();
    assert_eq!(
        end,
        "EOF",
        "closed with a reset after {} lines",
        lines.len()
    );
    assert_eq!(lines.last(), Some(&"BYE quit"));
    let per_help = infos / HELPS;
    assert!(
        per_help > 0 && infos == per_help * HELPS,
        "{infos} INFO lines"
    );
    drop(Client::from_stream(c.stream));
}

#[test]
fn a_client_that_never_stops_sending_is_cut_off_after_the_grace_period() {
    let chatd = Chatd::start(&[]);
    let mut c = chatd.user("endless");
    c.send("/quit");
    c.expect("BYE quit");
    // Keep sending regardless: chatd drains it only for its 5 s grace period.
    let start = Instant::now();
    let chunk = vec![b'x'; 64 * 1024];
    let cut_off = loop {
        if let Err(e) = std::io::Write::write_all(&mut c.stream, &chunk) {
            // A write timeout would mean chatd stopped reading, not that it closed.
            break !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
        }
        if start.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(cut_off, "still draining after {:?}", start.elapsed());
}
