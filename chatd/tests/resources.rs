//! Resource attacks and accidents (issue 8): what a slow or hostile client
//! costs, pacing by bytes, a paused server, empty lines, presence storms,
//! large replies and kick cascades. Each test fails on the server before the
//! fix it covers. (The kick cascade's rounds are tested in `chatd/src/shared.rs`:
//! over TCP the overflows of a cascade do not come at one instant.)

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::{Chatd, Client};

/// A `kB` field of /proc/<pid>/status (`VmHWM`, `VmRSS`), in bytes.
fn status_bytes(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in status"));
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

/// CPU time the process has used so far (user + system).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks (100 per second).
    let after = &stat[stat.rfind(')').expect("command name") + 2..];
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

/// Writes `bytes` until `deadline`, ignoring a peer that stops reading or
/// closes; returns how many bytes went out.
fn write_until(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut sent = 0;
    while Instant::now() < deadline {
        match stream.write(bytes) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn clients_that_never_read_cost_about_their_sendq() {
    const CLIENTS: usize = 10;
    const SENDQ: usize = 256 << 10;
    let chatd = Chatd::start(&["--sendq", "256KiB", "--flood-rate", "0", "--threads", "1"]);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|i| chatd.user(&format!("p{i}"))).collect();
    for c in &mut clients {
        c.sync();
    }
    let before = status_bytes(chatd.pid(), "VmHWM");
    // Each sends 800 KB of `/ping a` and reads nothing: its PONGs pile up.
    let pings = "/ping a\n".repeat(100_000);
    let deadline = Instant::now() + Duration::from_secs(8);
    thread::scope(|s| {
        for c in &mut clients {
            let pings = pings.as_bytes();
            s.spawn(move || write_until(&mut c.stream, pings, deadline));
        }
    });
    let peak = status_bytes(chatd.pid(), "VmHWM").saturating_sub(before);
    // Queues charged what they hold: at most the budget (1.3x for slack) per
    // client, plus a little for the rest of the server. Before, every PONG was
    // charged 7 bytes but held about 56.
    let allowed = CLIENTS * SENDQ * 13 / 10 + (3 << 20);
    assert!(
        peak < allowed,
        "peak grew by {peak} bytes for {CLIENTS} clients, allowed {allowed}"
    );
}

#[test]
fn a_reader_of_160_kb_per_s_survives_eight_dm_senders() {
    let chatd = Chatd::start(&[]);
    let mut victim = chatd.user("victim");
    let mut senders: Vec<Client> = (0..8).map(|i| chatd.user(&format!("s{i}"))).collect();
    victim.sync();
    let dm = format!("/msg victim {}\n", "d".repeat(4000)).repeat(50);
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut received = 0;
    thread::scope(|s| {
        for c in &mut senders {
            let dm = dm.as_bytes();
            s.spawn(move || write_until(&mut c.stream, dm, deadline));
        }
        // 16 KB every 100 ms: 160 KB/s.
        let stream = &mut victim.stream;
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = vec![0u8; 16_000];
        while Instant::now() < deadline {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => received += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(received > 100_000, "the DMs arrived ({received} bytes)");
    // Still connected: the backlog drains and a ping is answered.
    victim.stream.set_read_timeout(None).unwrap();
    victim.send("/ping still-here");
    let (skipped, pong) =
        victim.read_until(100_000, |l| l == "PONG still-here" || l.starts_with("BYE "));
    assert_eq!(pong, "PONG still-here", "after {} lines", skipped.len());
}

#[test]
fn an_endless_line_is_paced_by_its_bytes() {
    let chatd = Chatd::start(&[]);
    let mut streams: Vec<Client> = (0..2).map(|i| chatd.user(&format!("e{i}"))).collect();
    let junk = vec![b'x'; 64 * 1024];
    let before = cpu_time(chatd.pid());
    let deadline = Instant::now() + Duration::from_secs(3);
    thread::scope(|s| {
        for c in &mut streams {
            let junk = &junk[..];
            s.spawn(move || write_until(&mut c.stream, junk, deadline));
        }
    });
    let used = cpu_time(chatd.pid()) - before;
    // Unpaced, two such streams kept both cores busy (about 6 s of CPU here).
    assert!(
        used < Duration::from_millis(800),
        "chatd used {used:?} of CPU on two endless lines in 3 s"
    );
}

#[test]
fn a_paused_server_does_not_kick_its_clients() {
    let chatd = Chatd::start(&[
        "--ping-after",
        "1s",
        "--idle-timeout",
        "2s",
        "--register-timeout",
        "3s",
    ]);
    // Talkers go on talking while chatd is stopped; their lines wait in the
    // sockets. Sleepers say nothing while it is stopped, and speak right after
    // it resumes: the ticker, overdue, ran before their lines could arrive,
    // so before the fix they were kicked every time (talkers only sometimes).
    let mut talkers: Vec<Client> = (0..6).map(|i| chatd.user(&format!("t{i}"))).collect();
    let mut sleepers: Vec<Client> = (0..6).map(|i| chatd.user(&format!("s{i}"))).collect();
    let mut newcomers: Vec<Client> = (0..2).map(|_| chatd.connect()).collect();
    let talk = |clients: &mut Vec<Client>| {
        for c in clients.iter_mut() {
            c.send("/pong keepalive");
        }
    };
    for _ in 0..2 {
        talk(&mut talkers);
        talk(&mut sleepers);
        thread::sleep(Duration::from_millis(300));
    }
    chatd.signal("STOP");
    // Stopped for longer than every timeout.
    for _ in 0..14 {
        talk(&mut talkers);
        thread::sleep(Duration::from_millis(300));
    }
    for (i, n) in newcomers.iter_mut().enumerate() {
        n.send(&format!("n{i}"));
    }
    chatd.signal("CONT");
    for _ in 0..5 {
        talk(&mut talkers);
        talk(&mut sleepers);
        thread::sleep(Duration::from_millis(300));
    }
    for c in talkers.iter_mut().chain(&mut sleepers) {
        let lines = c.sync();
        assert!(
            !lines.iter().any(|l| l.starts_with("BYE ")),
            "kicked after the pause: {lines:?}"
        );
    }
    for (i, n) in newcomers.iter_mut().enumerate() {
        n.expect(&format!("WELCOME n{i}"));
    }
}

#[test]
fn empty_lines_keep_a_client_alive_and_get_no_answer() {
    let chatd = Chatd::start(&["--ping-after", "1s", "--idle-timeout", "2s"]);
    let mut c = chatd.user("lf");
    for _ in 0..10 {
        c.send_raw(b"\n\r\n");
        thread::sleep(Duration::from_millis(400));
    }
    // No ERR for the empty lines, no PING (never silent for 1 s), no BYE.
    assert_eq!(c.sync(), Vec::<String>::new());
}

#[test]
fn floods_of_empty_lines_hold_little_memory() {
    const CLIENTS: usize = 300;
    let chatd = Chatd::start(&["--threads", "1"]);
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| chatd.connect()).collect();
    let before = status_bytes(chatd.pid(), "VmRSS");
    for c in &mut clients {
        c.send_raw(&[b'\n'; 8192]);
    }
    for c in &mut clients {
        c.send("/ping done");
        c.expect("PONG done");
    }
    let grown = status_bytes(chatd.pid(), "VmRSS").saturating_sub(before);
    // Before, each 8 KiB of LFs queued ~190 KiB of per-line entries, held for
    // minutes by pacing (57 MB here).
    assert!(grown < 12 << 20, "RSS grew by {grown} bytes");
}

#[test]
fn above_the_presence_limit_arrivals_are_not_announced() {
    let chatd = Chatd::start(&["--presence-limit", "2"]);
    let mut a = chatd.user("a");
    let mut b = chatd.user("b");
    a.expect("JOIN * b");
    let mut c = chatd.connect();
    c.send("c");
    c.expect("WELCOME c");
    c.expect_prefix("INFO more than 2 users are here");
    assert_eq!(a.sync(), Vec::<String>::new(), "a hears nothing of c");
    assert_eq!(b.sync(), Vec::<String>::new());
    c.send("/users");
    c.expect("USERS * a b c");
}

#[test]
fn large_replies_are_paced_by_their_size() {
    // 150 users with long names: each `/users` answer is about 5 KB.
    let chatd = Chatd::start(&[
        "--presence-limit",
        "0",
        "--flood-burst",
        "5",
        "--flood-rate",
        "5",
    ]);
    let _crowd: Vec<Client> = (0..150)
        .map(|i| chatd.user(&format!("a_rather_long_user_name_{i:08}")))
        .collect();
    let mut asker = chatd.user("asker");
    asker.send_raw("/users\n".repeat(40).as_bytes());
    let start = Instant::now();
    let mut answers = 0;
    while start.elapsed() < Duration::from_secs(4) {
        match asker.try_line(Duration::from_millis(100)) {
            Some(l) if l.starts_with("USERS ") => answers += 1,
            _ => {}
        }
    }
    // 5 tokens at once and 5 a second: one per line would allow about 25
    // answers in 4 s; with a token per 4000 bytes of reply, about 11.
    assert!(
        (4..=16).contains(&answers),
        "{answers} answers of 5 KB in 4 s"
    );
}

#[test]
fn a_client_deep_in_pacing_debt_lets_a_shutdown_finish_promptly() {
    // A token a second: 8 KiB of one line puts the client 32 s in debt.
    let mut chatd = Chatd::start(&["--flood-burst", "1", "--flood-rate", "1"]);
    let mut c = chatd.user("slowpoke");
    c.send_raw(&[b'x'; 8192]);
    thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    chatd.signal("TERM");
    c.expect("BYE server-shutdown");
    c.half_close();
    let status = chatd
        .wait_exit(Duration::from_secs(10))
        .expect("chatd exits");
    assert!(status.success());
    // Before, the reader slept its whole debt and the shutdown waited out its
    // 5 s grace for this connection.
    assert!(
        asked.elapsed() < Duration::from_millis(3500),
        "exit took {:?}",
        asked.elapsed()
    );
}
