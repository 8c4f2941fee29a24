//! TCP is a stream: lines split over many segments or merged into one behave
//! the same; CRLF works; overlong, non-UTF-8 and control-character lines are
//! refused without harming the connection or reaching anyone else.

mod support;

use std::thread;
use std::time::Duration;

use support::Chatd;

#[test]
fn one_byte_at_a_time_equals_one_line_per_write() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    bob.send("/join g");
    bob.expect("JOIN g bob");
    let mut ann = chatd.connect();
    for &b in b"ann\n/join g\nhello, in pieces\n" {
        ann.send_raw(&[b]);
        // TCP_NODELAY is set, so each byte leaves as its own segment.
        thread::sleep(Duration::from_millis(1));
    }
    ann.expect("WELCOME ann");
    ann.expect("JOIN g ann");
    bob.expect("JOIN * ann");
    bob.expect("JOIN g ann");
    bob.expect("MSG g ann hello, in pieces");
}

#[test]
fn several_lines_in_one_segment() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.connect();
    ann.send_raw(b"ann\n/join g\n/users\n/groups\none\ntwo\n/leave\nthree\n");
    for want in [
        "WELCOME ann",
        "JOIN g ann",
        "USERS g ann",
        "GROUPS g=1",
        "PART g ann",
    ] {
        ann.expect(want);
    }
    bob.expect("JOIN * ann");
    bob.expect("MSG * ann three");
    ann.expect_nothing();
}

#[test]
fn crlf_and_lf_both_end_lines() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.connect();
    ann.send_raw(b"ann\r\nwith crlf\r\nwith lf\n/users\r\n");
    ann.expect("WELCOME ann");
    ann.expect("USERS * ann bob");
    bob.expect("JOIN * ann");
    bob.expect("MSG * ann with crlf");
    bob.expect("MSG * ann with lf");
    // A lone CR inside a line is a control character, not a line end.
    ann.send_raw(b"a\rb\n");
    ann.expect_prefix("ERR bad-text ");
    bob.expect_nothing();
}

#[test]
fn overlong_line_is_refused_and_the_connection_stays() {
    let chatd = Chatd::start(&["--max-line", "64", "--flood-rate", "0"]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.user("ann");
    bob.expect("JOIN * ann");
    ann.send(&"x".repeat(65));
    ann.expect_prefix("ERR line-too-long ");
    // Exactly the limit is fine.
    let max = "y".repeat(64);
    ann.send(&max);
    bob.expect(&format!("MSG * ann {max}"));
    // A huge line in many writes is reported once and skipped, not buffered.
    let chunk = vec![b'z'; 64 * 1024];
    for _ in 0..64 {
        ann.send_raw(&chunk);
    }
    ann.send_raw(b"\nafter\n");
    ann.expect_prefix("ERR line-too-long ");
    bob.expect("MSG * ann after");
    ann.expect_nothing();
    bob.expect_nothing();
}

#[test]
fn default_limit_is_4096_bytes() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.user("ann");
    bob.expect("JOIN * ann");
    let fits = "a".repeat(4096);
    ann.send(&fits);
    bob.expect(&format!("MSG * ann {fits}"));
    ann.send(&"a".repeat(4097));
    ann.expect_prefix("ERR line-too-long ");
}

#[test]
fn invalid_utf8_is_refused() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.connect();
    ann.send_raw(b"\xff\xfe\n");
    ann.expect_prefix("ERR bad-encoding ");
    ann.register("ann");
    bob.expect("JOIN * ann");
    ann.send_raw(b"caf\xc3 broken\n");
    ann.expect_prefix("ERR bad-encoding ");
    ann.send_raw(b"/msg bob \xc0\xaf\n");
    ann.expect_prefix("ERR bad-encoding ");
    ann.send("café is fine");
    bob.expect("MSG * ann café is fine");
    bob.expect_nothing();
}

#[test]
fn control_characters_never_reach_another_terminal() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.user("ann");
    bob.expect("JOIN * ann");
    let attacks: [&[u8]; 8] = [
        b"clear \x1b[2J screen",
        b"\x1b]0;pwned title\x07",
        b"/me \x1b[31mred",
        b"/msg bob \x1b]8;;http://evil\x1b\\link",
        "c1 csi \u{9b}31m".as_bytes(),
        b"bell \x07",
        b"nul \x00 byte",
        b"del \x7f",
    ];
    for attack in attacks {
        let mut line = attack.to_vec();
        line.push(b'\n');
        ann.send_raw(&line);
        ann.expect_prefix("ERR bad-text ");
    }
    // The ERR text quotes nothing raw either.
    ann.send_raw(b"\x1b[2J\n");
    let err = ann.expect_prefix("ERR bad-text ");
    assert!(!err.bytes().any(|b| b < 0x20 && b != b'\t'), "{err:?}");
    bob.expect_nothing();
    // Tabs are text.
    ann.send("tab\there");
    bob.expect("MSG * ann tab\there");
}

#[test]
fn a_client_vanishing_mid_line_is_cleaned_up() {
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.user("ann");
    bob.expect("JOIN * ann");
    ann.send("/join g");
    ann.expect("JOIN g ann");
    ann.send_raw(b"half a line that never ends");
    drop(ann);
    bob.expect("PART * ann connection-lost");
    bob.send("/groups");
    bob.expect("GROUPS");
    bob.send("/users");
    bob.expect("USERS * bob");
}

#[test]
fn a_half_closed_client_gets_its_answers_then_eof() {
    // Like `printf 'ann\n/users\n' | nc -N host port`: the answers still come.
    let chatd = Chatd::start(&[]);
    let mut bob = chatd.user("bob");
    let mut ann = chatd.connect();
    ann.send_raw(b"ann\n/users\n");
    ann.half_close();
    assert_eq!(ann.until_closed(), vec!["WELCOME ann", "USERS * ann bob"]);
    bob.expect("JOIN * ann");
    bob.expect("PART * ann connection-lost");
}
