//! No input takes the server down: clients sending random bytes (lines of
//! every length, slashes, control characters, broken UTF-8) get errors or are
//! cut off, every line the server sends still parses, and others carry on.

mod support;

use std::io::Write;
use std::thread;
use std::time::Duration;

use chatproto::parse_event;
use support::{Chatd, Client};

/// xorshift64*: reproducible noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Bytes biased towards what parsers trip on.
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        const WORDS: [&[u8]; 12] = [
            b"\n", b"\r\n", b"/", b"//", b" ", b"/join ", b"/msg ", b"/nick ", b"/me ", b"\x1b[",
            b"\xc3", b"\xff",
        ];
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            let r = self.next();
            match r % 4 {
                0 => out.extend_from_slice(WORDS[(r >> 8) as usize % WORDS.len()]),
                1 => out.extend(std::iter::repeat_n(
                    b'a' + (r >> 8) as u8 % 26,
                    (r >> 16) as usize % 40,
                )),
                _ => out.push((r >> 8) as u8),
            }
        }
        out
    }
}

#[test]
fn random_bytes_from_many_clients_do_no_harm() {
    let chatd = Chatd::start(&["--flood-rate", "0", "--max-line", "512", "--sendq", "64KiB"]);
    let mut bystander = chatd.user("bystander");
    let noisy: Vec<thread::JoinHandle<usize>> = (0..8u64)
        .map(|seed| {
            let c = Client::connect(chatd.addr);
            thread::spawn(move || {
                let mut c = c;
                let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (seed + 1));
                if seed % 2 == 0 {
                    c.send(&format!("noisy{seed}"));
                }
                let mut lines = 0;
                for _ in 0..64 {
                    if c.stream.write_all(&noise.bytes(4096)).is_err() {
                        break; // cut off (sendq) or closed (/quit): fine
                    }
                    while let Some(line) = c.try_line(Duration::from_millis(2)) {
                        assert!(parse_event(&line).is_ok(), "unparseable line {line:?}");
                        lines += 1;
                    }
                }
                lines
            })
        })
        .collect();
    let mut total = 0;
    for t in noisy {
        total += t.join().expect("noisy client thread");
    }
    assert!(total > 0, "the server answered nothing");

    // Everything the bystander got parses, and it is still served.
    for line in bystander.sync() {
        assert!(parse_event(&line).is_ok(), "unparseable line {line:?}");
    }
    let mut late = chatd.user("late");
    late.send("/ping alive");
    let (_, pong) = late.read_until(1000, |l| l.starts_with("PONG "));
    assert_eq!(pong, "PONG alive");
}
