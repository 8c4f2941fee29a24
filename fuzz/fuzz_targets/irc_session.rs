#![no_main]
// The check lives in src/lib.rs so that stable `cargo test` replays the corpus through it.
libfuzzer_sys::fuzz_target!(|data: &[u8]| chatproto_fuzz::check_irc_session(data));
