//! SIGTERM and SIGINT: stop accepting, `BYE server-shutdown` to everyone,
//! flush, exit 0. A second signal exits at once, even with stderr closed.
//! SIGHUP does not stop the server.

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{eventually, Chatd, Launch, StderrTo};

fn graceful(signal: &str) {
    let mut chatd = Chatd::start(&[]);
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("bob");
    bob.send("/join g");
    bob.expect("JOIN g bob");
    let mut anon = chatd.connect();
    ann.expect("JOIN * bob");
    // Queued for ann (bob's copy proves it) but not read by her before the
    // signal: it is flushed ahead of the BYE.
    bob.send("/msg ann last words");
    bob.expect("DM bob ann last words");

    chatd.signal(signal);
    assert_eq!(
        ann.until_closed(),
        vec!["DM bob ann last words", "BYE server-shutdown"]
    );
    for c in [&mut bob, &mut anon] {
        assert_eq!(c.until_closed(), vec!["BYE server-shutdown"]);
    }
    let status = chatd
        .wait_exit(Duration::from_secs(10))
        .expect("chatd exits after the shutdown");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(TcpStream::connect(chatd.addr).is_err(), "still accepting");
}

#[test]
fn sigterm_says_bye_and_exits_zero() {
    graceful("TERM");
}

#[test]
fn sigint_says_bye_and_exits_zero() {
    graceful("INT");
}

#[test]
fn a_second_signal_exits_at_once() {
    // A client that never reads keeps its queue from flushing, so the
    // shutdown would wait its full grace period; the second signal cuts it short.
    let mut chatd = Chatd::start(&["--sendq", "64MiB", "--flood-rate", "0"]);
    let _stuck = chatd.user("stuck");
    let mut talker = chatd.user("talker");
    let line = format!("{}\n", "x".repeat(4000));
    let batch = line.repeat(64);
    // Enough to fill every socket buffer between chatd and `stuck`.
    for _ in 0..48 {
        talker.send_raw(batch.as_bytes());
        talker.expect_nothing();
    }
    chatd.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        chatd.is_running(),
        "the first signal waits for queues to flush"
    );
    let start = Instant::now();
    chatd.signal("TERM");
    let status = chatd
        .wait_exit(Duration::from_secs(3))
        .expect("the second signal exits at once");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn sighup_does_not_stop_the_server() {
    let mut chatd = Chatd::launch(
        &["--log-level", "info"],
        Launch {
            stderr: StderrTo::Capture,
            ..Launch::default()
        },
    );
    let mut ann = chatd.user("ann");
    chatd.signal("HUP");
    // Time for a shutdown to begin, were SIGHUP one.
    std::thread::sleep(Duration::from_millis(300));
    ann.expect_nothing();
    assert!(chatd.is_running());
    assert!(
        eventually(Duration::from_secs(10), || chatd
            .stderr()
            .contains("SIGHUP: nothing to reload")),
        "SIGHUP is logged:\n{}",
        chatd.stderr()
    );
    let mut bob = chatd.user("bob");
    ann.expect("JOIN * bob");
    bob.send("hi");
    ann.expect("MSG * bob hi");
    // SIGHUP did not count as a first shutdown signal: one SIGTERM is still
    // a graceful shutdown with status 0.
    chatd.signal("TERM");
    assert_eq!(ann.until_closed(), vec!["BYE server-shutdown"]);
    assert_eq!(bob.until_closed(), vec!["BYE server-shutdown"]);
    let status = chatd.wait_exit(Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn a_closed_stderr_does_not_stop_the_second_signal() {
    // Every log line and message fails with EPIPE; none may panic the
    // signal handling, or the second SIGTERM would be ignored.
    let mut chatd = Chatd::launch(
        &["--log-level", "debug"],
        Launch {
            stderr: StderrTo::Closed,
            ..Launch::default()
        },
    );
    // Registered and never closing: the shutdown waits up to 5 s for it.
    let _holder = chatd.user("holder");
    chatd.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(chatd.is_running(), "the first signal waits for the client");
    let start = Instant::now();
    chatd.signal("TERM");
    let status = chatd
        .wait_exit(Duration::from_secs(3))
        .expect("the second signal exits at once");
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{status:?}");
}
