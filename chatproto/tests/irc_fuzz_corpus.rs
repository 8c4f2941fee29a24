//! Replays the committed `fuzz/corpus/irc_message/` seeds through the
//! `irc_message` fuzz check on stable, as `fuzz_corpus.rs` does for the other
//! targets. (Once `irc_message` is in the fuzz crate's `TARGETS` and replayed
//! by `fuzz_corpus.rs`, this file can go.)

use std::fs;
use std::path::{Path, PathBuf};

use chatproto::irc::parse_message;

// Only `replay_dir` and `check_irc_message` are used here.
#[allow(unreachable_pub, dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/irc_message")
}

#[test]
fn irc_message_corpus() {
    match checks::replay_dir(&corpus(), checks::check_irc_message) {
        Ok(files) => assert!(files >= 10, "only {files} seeds"),
        Err(failures) => panic!("irc_message: {failures}"),
    }
}

/// The seeds exercise both sides of the check: lines that parse (and go
/// through the round trip) and lines that fail (and go through the error
/// checks).
#[test]
fn irc_message_corpus_has_good_and_bad_lines() {
    let (mut good, mut bad) = (0, 0);
    for entry in fs::read_dir(corpus()).expect("the corpus is committed") {
        let bytes = fs::read(entry.expect("listable").path()).expect("readable");
        match parse_message(&String::from_utf8_lossy(&bytes)) {
            Ok(_) => good += 1,
            Err(_) => bad += 1,
        }
    }
    assert!(good >= 5 && bad >= 5, "{good} good and {bad} bad seeds");
}
