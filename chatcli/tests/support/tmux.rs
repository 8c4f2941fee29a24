//! A tmux server of our own for the terminal tests: a detached session that
//! runs chatcli, keys and pastes sent to it, its screen and scrollback read back.

use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use super::{chatcli, WAIT};

/// A tmux server of our own (its own socket, no config), killed on drop.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    pub(crate) fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs `shell_cmd` in a detached 100x30 session on a tmux server named
    /// for this process and `test`, so parallel tests do not share one.
    pub(crate) fn start(test: &str, shell_cmd: &str) -> Self {
        Self::start_sized(test, shell_cmd, 100, 30)
    }

    /// As [`start`](Self::start), in a `width` x `height` terminal.
    pub(crate) fn start_sized(test: &str, shell_cmd: &str, width: u16, height: u16) -> Self {
        let socket = format!("chatcli-{}-{test}", std::process::id());
        let tmux = Self { socket };
        let (w, h) = (width.to_string(), height.to_string());
        let out = tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            &w,
            "-y",
            &h,
            shell_cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "send-keys {keys:?}");
    }

    /// Literal text, typed (no key names interpreted).
    pub(crate) fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "t", "-l", text]);
        assert!(out.status.success(), "send-keys -l {text:?}");
    }

    /// Pastes `text` as a terminal does when the program asked for bracketed
    /// paste (tmux wraps it in `ESC [200~` … `ESC [201~`).
    pub(crate) fn paste(&self, text: &str) {
        use std::io::Write;
        let mut load = Command::new("tmux")
            .args(["-L", &self.socket, "load-buffer", "-b", "p", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("tmux runs");
        load.stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .expect("buffer written");
        assert!(load.wait().expect("tmux ends").success(), "load-buffer");
        let out = self.run(&["paste-buffer", "-p", "-d", "-b", "p", "-t", "t"]);
        assert!(out.status.success(), "paste-buffer");
    }

    /// The scrollback above the screen and the screen, joined lines.
    pub(crate) fn history(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether the program rang the bell since the window was created.
    pub(crate) fn rang(&self) -> bool {
        let out = self.run(&["display-message", "-p", "-t", "t", "#{window_bell_flag}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    pub(crate) fn resize(&self, width: u16, height: u16) {
        let out = self.run(&[
            "resize-window",
            "-t",
            "t",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
        ]);
        assert!(out.status.success(), "resize-window");
    }

    /// The visible screen; with `escapes`, SGR colour codes included.
    pub(crate) fn screen(&self, escapes: bool) -> String {
        // -J joins wrapped lines, so long lines can be matched whole.
        let args: &[&str] = if escapes {
            &["capture-pane", "-p", "-J", "-e", "-t", "t"]
        } else {
            &["capture-pane", "-p", "-J", "-t", "t"]
        };
        String::from_utf8_lossy(&self.run(args).stdout).into_owned()
    }

    /// Waits until `check` holds for the screen; returns that screen.
    pub(crate) fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
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

    pub(crate) fn wait_text(&self, text: &str) -> String {
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
pub(crate) fn shell_for(args: &str) -> String {
    format!(
        "env -u NO_COLOR {} {args}; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | sed 's/^/MODE=/'; sleep 60",
        chatcli().display()
    )
}

/// Checks the shell's report after chatcli exited: status 0, and canonical
/// mode with echo (raw mode undone).
pub(crate) fn assert_left_cleanly(tmux: &Tmux) {
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
pub(crate) fn bottom(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_end()
}
