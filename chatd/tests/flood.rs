//! A flooding client is paced by its token bucket: the server stops reading
//! it until tokens refill, drops nothing, and others are not slowed down.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::Chatd;

#[test]
fn a_flood_is_paced_not_dropped_and_others_go_first() {
    // 10 at once, then 20 per second: 70 lines take about 3 s.
    let chatd = Chatd::start(&["--flood-burst", "10", "--flood-rate", "20"]);
    let mut watcher = chatd.user("watcher");
    let mut other = chatd.user("other");
    let mut flooder = chatd.user("flooder");
    watcher.expect("JOIN * other");
    watcher.expect("JOIN * flooder");
    other.expect("JOIN * flooder");

    let start = Instant::now();
    let flood: String = (0..70).map(|i| format!("flood {i}\n")).collect();
    flooder.send_raw(flood.as_bytes());
    // Wait until pacing has started, then speak up from another client.
    watcher.expect("MSG * flooder flood 0");
    other.send("meanwhile");

    let mut got = Vec::new();
    let mut other_at = None;
    while got.len() < 69 {
        let line = watcher.line();
        if line == "MSG * other meanwhile" {
            other_at = Some(got.len());
        } else {
            got.push(line);
        }
    }
    let elapsed = start.elapsed();
    let want: Vec<String> = (1..70)
        .map(|i| format!("MSG * flooder flood {i}"))
        .collect();
    assert_eq!(got[..69], want[..], "every line, in order");
    let other_at = other_at.expect("the other client's line arrived during the flood");
    assert!(
        other_at < 60,
        "the other client waited for the flood ({other_at})"
    );
    // A lower bound only: a loaded machine makes it slower, never faster.
    assert!(
        elapsed >= Duration::from_millis(2000),
        "not paced: {elapsed:?}"
    );
    // Pacing is not a punishment: the flooder is still connected.
    flooder.send("/ping ok");
    let (_, pong) = flooder.read_until(10, |l| l.starts_with("PONG "));
    assert_eq!(pong, "PONG ok");
}

#[test]
fn rate_zero_turns_pacing_off() {
    let chatd = Chatd::start(&["--flood-burst", "1", "--flood-rate", "0"]);
    let mut watcher = chatd.user("watcher");
    let mut flooder = chatd.user("flooder");
    watcher.expect("JOIN * flooder");
    let start = Instant::now();
    let flood: String = (0..500).map(|i| format!("line {i}\n")).collect();
    flooder.send_raw(flood.as_bytes());
    for i in 0..500 {
        watcher.expect(&format!("MSG * flooder line {i}"));
    }
    // Paced at burst 1 and rate 0 would mean forever; 500 lines arrive at once.
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn an_unpaced_flooder_does_not_starve_the_others() {
    // Pacing off and one executor thread: a reader that always finds data
    // must still let the other tasks run.
    let chatd = Chatd::start(&["--flood-rate", "0", "--threads", "1"]);
    let mut other = chatd.user("other");
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..1)
        .map(|i| {
            let mut c = chatd.user(&format!("flooder{i}"));
            // A group of its own: the flood costs chatd work but sends nothing back.
            c.send(&format!("/join solo{i}"));
            c.expect(&format!("JOIN solo{i} flooder{i}"));
            let stop = stop.clone();
            thread::spawn(move || {
                let batch = "/me x\n".repeat(10_000);
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                    if c.stream.write_all(batch.as_bytes()).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let start = Instant::now();
        // Panics if no answer comes within the harness's line timeout.
        other.sync();
        slowest = slowest.max(start.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().expect("flooder thread");
    }
    // Generous for a loaded machine; a starved client waits for the whole flood.
    assert!(slowest < Duration::from_secs(5), "answers took {slowest:?}");
}
