//! The interactive client in a real pseudo-terminal (tmux) against the real chatd:
//! registering at the prompt, chatting with a second client, a half-typed line
//! surviving an incoming message, and Ctrl+C leaving with status 0 and the
//! terminal restored.
//!
//! Skipped, with a message, only when tmux is not installed.

mod support;

use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use support::{chatcli, Peer, Server, WAIT};

/// A tmux server of our own (its own socket, no config), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs `shell_cmd` in a detached 100x30 session on a tmux server named
    /// for this process and `test`, so parallel tests do not share one.
    fn start(test: &str, shell_cmd: &str) -> Self {
        let socket = format!("chatcli-{}-{test}", std::process::id());
        let tmux = Self { socket };
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "100",
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

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "send-keys {keys:?}");
    }

    /// Literal text, typed (no key names interpreted).
    fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "t", "-l", text]);
        assert!(out.status.success(), "send-keys -l {text:?}");
    }

    /// The visible screen; with `escapes`, SGR colour codes included.
    fn screen(&self, escapes: bool) -> String {
        // -J joins wrapped lines, so long lines can be matched whole.
        let args: &[&str] = if escapes {
            &["capture-pane", "-p", "-J", "-e", "-t", "t"]
        } else {
            &["capture-pane", "-p", "-J", "-t", "t"]
        };
        String::from_utf8_lossy(&self.run(args).stdout).into_owned()
    }

    /// Waits until `check` holds for the screen; returns that screen.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen(false);
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "screen never showed {what}:\n{screen}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// A shell command running chatcli with `args`; after it exits, the shell
/// reports its status and the terminal's modes, then stays so the screen can
/// be read.
fn shell_for(args: &str) -> String {
    format!(
        "env -u NO_COLOR {} {args}; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | sed 's/^/MODE=/'; sleep 60",
        chatcli().display()
    )
}

/// Checks the shell's report after chatcli exited: status 0, and canonical
/// mode with echo (raw mode undone).
fn assert_left_cleanly(tmux: &Tmux) {
    let screen = tmux.wait_for("both terminal modes", |s| s.matches("MODE=").count() == 2);
    assert!(screen.contains("EXIT=0"), "exit status:\n{screen}");
    assert!(
        screen.contains("MODE=icanon"),
        "terminal left raw:\n{screen}"
    );
    assert!(
        screen.contains("MODE=echo"),
        "terminal left without echo:\n{screen}"
    );
}

/// The last non-empty line of a screen, where the prompt is; without trailing
/// blanks, which tmux may or may not report.
fn bottom(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_end()
}

#[test]
fn chat_in_a_terminal() {
    if !Tmux::available() {
        eprintln!("SKIPPED chat_in_a_terminal: tmux is not installed (apt-get install tmux)");
        return;
    }
    let server = Server::start();
    let shell = shell_for(&format!("--port {}", server.port));
    let tmux = Tmux::start("chat", &shell);

    // No --name: the server's greeting asks, the prompt says so.
    let screen = tmux.wait_text("-- connected to chatd");
    assert!(screen.contains("who are you"), "{screen}");
    tmux.wait_for("the name prompt", |s| bottom(s).starts_with("name>"));
    tmux.type_text("alice");
    tmux.keys(&["Enter"]);
    tmux.wait_text("-- you are alice");
    tmux.wait_for("the global prompt", |s| bottom(s).starts_with("[global]>"));

    // A second client: its messages appear, ours reach it.
    let mut bob = Peer::join(server.port, "bob");
    tmux.wait_text("-- bob connected");
    bob.send("hello alice");
    tmux.wait_text("[Global] bob: hello alice");
    // Names are coloured on a terminal (the SGR code precedes "bob").
    let coloured = tmux.screen(true);
    assert!(
        coloured
            .lines()
            .any(|l| l.contains("hello alice") && l.contains("\x1b[")),
        "no colour on the terminal:\n{coloured:?}"
    );

    // Half a line typed, then a message arrives: the half line stays intact
    // at the prompt, below the new message.
    tmux.type_text("half a li");
    tmux.wait_for("the half line", |s| bottom(s) == "[global]> half a li");
    bob.send("this arrives mid-typing");
    let screen = tmux.wait_text("[Global] bob: this arrives mid-typing");
    assert_eq!(
        bottom(&screen),
        "[global]> half a li",
        "half line lost:\n{screen}"
    );
    tmux.type_text("ne");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * alice half a line");
    tmux.wait_text("[Global] alice: half a line");

    // Line editing: Home, then fix the start of the line.
    tmux.type_text("ello");
    tmux.keys(&["Home"]);
    tmux.type_text("h");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * alice hello");

    // The prompt follows the scope.
    tmux.type_text("/join rust");
    tmux.keys(&["Enter"]);
    tmux.wait_text("-- you joined rust");
    tmux.wait_for("the group prompt", |s| bottom(s).starts_with("[rust]>"));

    // Ctrl+C: /quit sent, exit 0, terminal back in canonical mode with echo.
    tmux.type_text("unsent");
    tmux.keys(&["C-c"]);
    assert_eq!(bob.expect("PART * alice"), "PART * alice quit");
    assert_left_cleanly(&tmux);
}

#[test]
fn name_flag_no_colour_help_history_and_ctrl_d() {
    if !Tmux::available() {
        eprintln!("SKIPPED name_flag_no_colour_help_history_and_ctrl_d: tmux is not installed (apt-get install tmux)");
        return;
    }
    let server = Server::start();
    let tmux = Tmux::start(
        "flags",
        &shell_for(&format!("--port {} --name zed --no-color", server.port)),
    );
    tmux.wait_text("-- you are zed");
    tmux.wait_for("the global prompt", |s| bottom(s).starts_with("[global]>"));
    let mut bob = Peer::join(server.port, "bob");
    bob.send("/msg zed a secret");
    tmux.wait_text("[DM] bob -> you: a secret");
    // --no-color: not one escape sequence on the screen.
    let raw = tmux.screen(true);
    assert!(
        !raw.contains("\x1b["),
        "colour despite --no-color:\n{raw:?}"
    );
    // /help is answered locally.
    tmux.type_text("/help");
    tmux.keys(&["Enter"]);
    tmux.wait_text("/msg <name> <text>");
    tmux.wait_text("Ctrl+C or Ctrl+D quits");
    // History: Up brings back the last line sent.
    tmux.type_text("first line");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * zed first line");
    tmux.keys(&["Up"]);
    tmux.wait_for("the recalled line", |s| bottom(s) == "[global]> first line");
    tmux.keys(&["Enter"]);
    assert_eq!(bob.expect("MSG "), "MSG * zed first line");
    // A bad command: a local error, nothing sent.
    tmux.type_text("/join bad!name");
    tmux.keys(&["Enter"]);
    tmux.wait_text("!! ");
    // Ctrl+D leaves like /quit.
    tmux.keys(&["C-d"]);
    assert_eq!(bob.expect("PART * zed"), "PART * zed quit");
    assert_left_cleanly(&tmux);
}

/// On a real terminal, escapes from a hostile server are shown, not obeyed:
/// the screen is not cleared, the title and clipboard are not touched.
#[test]
fn hostile_server_cannot_drive_the_terminal() {
    use std::io::{BufRead, Write};
    use std::net::TcpListener;
    if !Tmux::available() {
        eprintln!("SKIPPED hostile_server_cannot_drive_the_terminal: tmux is not installed (apt-get install tmux)");
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, mut r) = support::accept_registration(&listener, "eve");
        let mut line = String::new();
        s.write_all(b"MSG * bob before the attack\n").unwrap();
        s.write_all(b"INFO \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\n")
            .unwrap();
        s.write_all("MSG * bob \u{9b}2J\n".as_bytes()).unwrap();
        s.write_all("MSG * bob \u{202e}gnirts\n".as_bytes())
            .unwrap();
        s.write_all(b"INFO after the attack\n").unwrap();
        // Hold the connection until the client leaves.
        let _ = r.read_line(&mut line);
        let _ = s.write_all(b"BYE quit\n");
        line
    });
    let tmux = Tmux::start("hostile", &shell_for(&format!("--port {port} --name eve")));
    let screen = tmux.wait_text("-- after the attack");
    assert!(
        screen.contains("[Global] bob: before the attack"),
        "screen was cleared:\n{screen}"
    );
    assert!(
        screen.contains("\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07"),
        "{screen}"
    );
    assert!(screen.contains("): MSG * bob \\u{9b}2J"), "{screen}");
    assert!(screen.contains("[Global] bob: \\u{202e}gnirts"), "{screen}");
    let title = tmux.run(&["display-message", "-p", "-t", "t", "#{pane_title}"]);
    assert!(
        !String::from_utf8_lossy(&title.stdout).contains("pwned"),
        "title was set"
    );
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
    assert_eq!(server.join().expect("fake server"), "/quit\n");
}

/// A server that never completes the connection (its accept queue is full, so
/// the kernel drops the attempt, as a firewall would): the prompt says the
/// client is connecting, and Ctrl+C leaves at once with status 0 instead of
/// being ignored until the connect timeout ends the client with status 1.
#[test]
fn ctrl_c_while_the_connection_hangs() {
    use socket2::{Domain, Socket, Type};
    use std::net::{SocketAddr, TcpStream};
    if !Tmux::available() {
        eprintln!("SKIPPED ctrl_c_while_the_connection_hangs: tmux is not installed (apt-get install tmux)");
        return;
    }
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let port = listener
        .local_addr()
        .unwrap()
        .as_socket()
        .expect("an IP address")
        .port();
    // A backlog of 0 still takes one connection; never accepted, it fills the queue.
    let _filler = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let tmux = Tmux::start("hang", &shell_for(&format!("--port {port} --name hal")));
    tmux.wait_for("the connecting prompt", |s| {
        bottom(s).starts_with("[connecting]>")
    });
    tmux.keys(&["C-c"]);
    assert_left_cleanly(&tmux);
    let screen = tmux.screen(false);
    assert!(!screen.contains("cannot connect"), "{screen}");
}
