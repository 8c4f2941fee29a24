//! Real IRC clients against the real chatd: irssi and weechat, each headless in
//! a tmux session of its own, register, join a group, exchange messages with a
//! native client, and quit.
//!
//! Skipped, with a message, when tmux, irssi or weechat is not installed,
//! unless `CHAT_REQUIRE_REAL_CLIENTS` is set (`.ci/run` installs them and sets
//! it, so CI cannot skip them silently).

mod support;

use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use support::{Chatd, Client};

/// How long a client may take to show something: generous, for a loaded machine.
const WAIT: Duration = Duration::from_secs(20);

/// A tmux server of our own (its own socket, no config), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `shell_cmd` in a detached 120x30 session on a tmux server named for
    /// this process and `test`.
    fn start(test: &str, shell_cmd: &str) -> Self {
        let tmux = Self {
            socket: format!("chatd-{}-{test}", std::process::id()),
        };
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "30",
            shell_cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Types `line` and Enter.
    fn line(&self, line: &str) {
        let out = self.run(&["send-keys", "-t", "t", "-l", line]);
        assert!(out.status.success(), "send-keys {line:?}");
        let out = self.run(&["send-keys", "-t", "t", "Enter"]);
        assert!(out.status.success(), "send-keys Enter");
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`.
    fn wait_text(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// True if every program runs; otherwise the test is skipped (or fails, in CI).
fn installed(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CHAT_REQUIRE_REAL_CLIENTS").is_none(),
        "{test}: {missing:?} not installed, and CHAT_REQUIRE_REAL_CLIENTS is set"
    );
    eprintln!(
        "SKIPPED {test}: {missing:?} not installed (apt-get install tmux irssi weechat-curses)"
    );
    false
}

/// A private, empty directory for a client's configuration.
fn home(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("chatd-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A native client in group `rust`, there before the IRC client connects.
fn native_in_rust(chatd: &Chatd) -> Client {
    let mut nat = chatd.user("nat");
    nat.send("/join rust");
    nat.expect("JOIN rust nat");
    nat
}

/// The part of the test that is the same for every client: the IRC user
/// `nick` joins `#rust`, where `nat` is, and they talk both ways; then it quits.
fn chat_with_native(nat: &mut Client, tmux: &Tmux, nick: &str, quit: &str) {
    // The client registered (or soon will): its arrival is announced.
    let (_, joined) = nat.read_until(50, |l| l == format!("JOIN * {nick}"));
    assert_eq!(joined, format!("JOIN * {nick}"));
    tmux.line("/join #rust");
    nat.expect(&format!("JOIN rust {nick}"));
    tmux.line(&format!("hi from {nick}"));
    nat.expect(&format!("MSG rust {nick} hi from {nick}"));
    nat.send("hello back");
    tmux.wait_text("hello back");
    tmux.line(quit);
    let (_, part) = nat.read_until(50, |l| l.starts_with(&format!("PART * {nick}")));
    assert!(part.starts_with(&format!("PART * {nick}")), "{part}");
}

#[test]
fn irssi_chats_with_a_native_client() {
    if !installed("irssi_chats_with_a_native_client", &["tmux", "irssi"]) {
        return;
    }
    let chatd = Chatd::start(&["--irc-listen", "127.0.0.1:0"]);
    let irc = chatd.irc_addr();
    let mut nat = native_in_rust(&chatd);
    let dir = home("irssi");
    let tmux = Tmux::start(
        "irssi",
        &format!(
            "irssi --home={} -n ann -c {} -p {}; sleep 60",
            dir.display(),
            irc.ip(),
            irc.port()
        ),
    );
    tmux.wait_text("Welcome to the chatd IRC network, ann");
    // Scripted input must not look like a paste to irssi.
    tmux.line("/set paste_detect_time 0");
    chat_with_native(&mut nat, &tmux, "ann", "/quit bye now");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn weechat_chats_with_a_native_client() {
    if !installed("weechat_chats_with_a_native_client", &["tmux", "weechat"]) {
        return;
    }
    let chatd = Chatd::start(&["--irc-listen", "127.0.0.1:0"]);
    let irc = chatd.irc_addr();
    let mut nat = native_in_rust(&chatd);
    let dir = home("weechat");
    let tmux = Tmux::start(
        "weechat",
        &format!(
            "weechat --dir {} -r '/server add chatd {}/{} -notls -nicks=bob; /connect chatd'; sleep 60",
            dir.display(),
            irc.ip(),
            irc.port()
        ),
    );
    tmux.wait_text("&global");
    chat_with_native(&mut nat, &tmux, "bob", "/quit bye now");
    let _ = std::fs::remove_dir_all(dir);
}
