//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) through the same
//! checks the cargo-fuzz targets run, so `cargo test --workspace` covers them on
//! stable without cargo-fuzz or libfuzzer-sys. The fuzz crate itself is outside
//! the workspace; its checks use only chatproto and std, so they compile here.

use std::fs;
use std::path::Path;

// The checks are `pub` for the fuzz targets; here they sit in a private module.
#[allow(unreachable_pub)]
#[path = "../../fuzz/src/lib.rs"]
mod checks;

/// Replays `fuzz/corpus/<target>/`; fails naming every file whose check panics.
fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target named {target}"));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    match checks::replay_dir(&dir, *check) {
        Ok(files) => assert!(files > 0, "{} holds no corpus files", dir.display()),
        Err(failures) => panic!("{target}: {failures}"),
    }
}

#[test]
fn parse_line_corpus() {
    replay("parse_line");
}

#[test]
fn parse_event_corpus() {
    replay("parse_event");
}

#[test]
fn framer_corpus() {
    replay("framer");
}

#[test]
fn server_corpus() {
    replay("server");
}

#[test]
fn irc_message_corpus() {
    replay("irc_message");
}

#[test]
fn irc_session_corpus() {
    replay("irc_session");
}

/// Every target has a test above and a corpus directory: a new target cannot be
/// added without being replayed.
#[test]
fn every_target_is_replayed() {
    let names: Vec<&str> = checks::TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        [
            "parse_line",
            "parse_event",
            "framer",
            "server",
            "irc_message",
            "irc_session"
        ]
    );
}

/// A failing file is reported by name (and the others are not), so a CI
/// failure points at the input to look at.
#[test]
fn replay_names_the_failing_file() {
    let dir = std::env::temp_dir().join(format!("fuzz-corpus-replay-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir is writable");
    fs::write(dir.join("fine"), b"ok").expect("temp dir is writable");
    fs::write(dir.join("breaks"), b"boom").expect("temp dir is writable");
    let result = checks::replay_dir(&dir, |data: &[u8]| assert_ne!(data, b"boom"));
    fs::remove_dir_all(&dir).expect("we created it");
    let err = result.expect_err("the check panics on one file");
    assert!(err.contains("breaks") && !err.contains("fine"), "{err}");
}
