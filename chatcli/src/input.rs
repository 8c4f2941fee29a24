//! The person's side: on a terminal, keys and pastes through the [`Editor`] with
//! the prompt row of the line mode (or the full-screen mode); on a pipe, plain
//! lines. And where rendered lines go.

use std::io::{self, IsTerminal, Stdin, Write};

use std::collections::VecDeque;
use std::time::Duration;

use chatproto::{FrameError, LineFramer, COMMAND_HELP, DEFAULT_MAX_LINE};
use futures_lite::{future, AsyncReadExt};
use smol::{Timer, Unblock};

use crate::complete::{self, Cycle, Known};
use crate::editor::{Edit, Editor, Key};
use crate::fullui::{Alerts, FullUi};
use crate::keys::{KeyDecoder, TermInput, PASTE_MAX_BYTES};
use crate::linescreen::{prompt_row, LineScreen};
use crate::render::{self, Line};
use crate::roster::Roster;
use crate::terminal::TerminalGuard;
use crate::views::{Origin, ViewKey, When};

/// A paste of more lines than this is refused: it is not a message.
pub(crate) const PASTE_MAX_LINES: usize = 500;
/// How often the terminal's size is checked while nothing happens.
const RESIZE_CHECK: Duration = Duration::from_millis(250);

/// What the person did.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line, without its ending.
    Line(String),
    /// A paste of several lines, confirmed: each is sent as a message.
    Lines(Vec<String>),
    /// A plain-mode line that is too long or not UTF-8; it was skipped.
    Unreadable(FrameError),
    /// Something typed or pasted was refused before it was drawn (too long).
    Refused(String),
    /// Ctrl+C or Ctrl+D on an empty line: leave.
    Quit,
    /// The end of piped input.
    Eof,
}

/// Where input comes from and output goes.
pub(crate) enum Console {
    /// A terminal: keys through the editor, the prompt row at the bottom.
    Terminal(Box<Term>),
    /// A pipe or file: one line in, one line out, no prompt.
    Plain {
        stdin: Unblock<Stdin>,
        /// Bounds a line read from stdin like a server bounds a client's.
        framer: LineFramer,
        buf: Box<[u8]>,
        eof: bool,
    },
}

/// The terminal side.
pub(crate) struct Term {
    /// Restores the terminal when dropped.
    _guard: TerminalGuard,
    /// The terminal's bytes, read on a blocking thread (cancel-safe: what was
    /// read waits in its buffer), decoded into `queue`.
    tty: Unblock<Stdin>,
    buf: Box<[u8]>,
    decoder: KeyDecoder,
    queue: VecDeque<TermInput>,
    editor: Editor,
    cycle: Option<Cycle>,
    /// A multi-line paste waiting for Enter (send) or Esc (cancel).
    paste: Option<Vec<String>>,
    prompt: String,
    /// The prompt names the scope (see [`Console::set_prompt`]).
    scoped: bool,
    /// Ring the bell for a mention or a DM (line mode; the full-screen mode
    /// keeps its own [`Alerts`]).
    bell: bool,
    ui: Ui,
    colour: bool,
    width: usize,
    /// The line is full and the person was told: further keys that would
    /// lengthen it only ring the bell, rather than print the error again.
    told_full: bool,
}

/// How the terminal is used.
enum Ui {
    /// Lines scroll up the terminal, the prompt row at the bottom (`--plain`).
    Line(LineScreen),
    /// Views, status line and input row on the alternate screen.
    Full(Box<FullUi>),
}

/// How [`Console::open`] should use a terminal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TermOptions {
    pub(crate) colour: bool,
    pub(crate) full_screen: bool,
    pub(crate) alerts: Alerts,
}

/// The commands offered by Tab: those of the protocol a person types
/// (`/pong` is the client's business), plus `/help`.
fn commands() -> Vec<&'static str> {
    COMMAND_HELP
        .iter()
        .filter_map(|(usage, _)| usage.split([' ', '<']).next())
        .filter(|c| c.len() > 1 && *c != "/pong" && !c.starts_with("//"))
        .collect()
}

/// Splits a paste into lines: CR LF, CR and LF all end a line, and a final
/// line break does not make an empty last line.
pub(crate) fn paste_lines(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n').map(str::to_owned).collect()
}

impl Console {
    /// The full-screen mode (or the line mode) when both stdin and stdout are
    /// terminals, plain lines otherwise (or when the terminal cannot be set up).
    pub(crate) fn open(opts: TermOptions) -> Self {
        let TermOptions { colour, .. } = opts;
        if io::stdin().is_terminal() && io::stdout().is_terminal() {
            match TerminalGuard::take(opts.full_screen) {
                Ok(guard) => {
                    let ui = if opts.full_screen {
                        match FullUi::new(colour, opts.alerts) {
                            Ok(full) => Ui::Full(Box::new(full)),
                            Err(e) => {
                                drop(guard);
                                eprintln!("chatcli: no full-screen mode ({e})");
                                return Self::open(TermOptions {
                                    full_screen: false,
                                    ..opts
                                });
                            }
                        }
                    } else {
                        Ui::Line(LineScreen::default())
                    };
                    let width = crossterm::terminal::size().map_or(80, |(w, _)| usize::from(w));
                    return Self::Terminal(Box::new(Term {
                        _guard: guard,
                        tty: Unblock::new(io::stdin()),
                        buf: vec![0; 16 * 1024].into_boxed_slice(),
                        decoder: KeyDecoder::default(),
                        queue: VecDeque::new(),
                        editor: Editor::new(DEFAULT_MAX_LINE),
                        cycle: None,
                        paste: None,
                        prompt: String::new(),
                        scoped: false,
                        bell: opts.alerts.bell,
                        ui,
                        colour,
                        width,
                        told_full: false,
                    }));
                }
                Err(e) => eprintln!("chatcli: no line editing ({e}); reading plain lines"),
            }
        }
        Self::Plain {
            stdin: Unblock::new(io::stdin()),
            framer: LineFramer::new(DEFAULT_MAX_LINE),
            buf: vec![0; 8192].into_boxed_slice(),
            eof: false,
        }
    }

    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Self::Terminal(_))
    }

    /// The next thing the person did. Cancel-safe: the terminal's events are
    /// handled whole between awaits, and piped bytes go into the framer before
    /// any await.
    pub(crate) async fn next(&mut self, roster: &Roster) -> io::Result<Input> {
        match self {
            Self::Terminal(term) => term.next(roster).await,
            Self::Plain {
                stdin,
                framer,
                buf,
                eof,
            } => loop {
                if let Some(framed) = framer.next_line() {
                    return Ok(match framed {
                        Ok(line) => Input::Line(line.to_owned()),
                        Err(e) => Input::Unreadable(e),
                    });
                }
                if *eof {
                    return Ok(Input::Eof);
                }
                let n = stdin.read(buf).await?;
                if n == 0 {
                    *eof = true;
                    // A last line without LF still counts.
                    framer.push(b"\n");
                    continue;
                }
                framer.push(&buf[..n]);
            },
        }
    }

    /// Shows lines: in their view in the full-screen mode, painted above the
    /// prompt in the line mode, plain on a pipe.
    pub(crate) fn show(&mut self, lines: &[Line], origin: &Origin<'_>, when: When) {
        match self {
            Self::Terminal(term) => {
                match &mut term.ui {
                    Ui::Line(screen) => {
                        let mut text = String::new();
                        for line in lines {
                            let words: String = line.0.iter().map(|s| s.text.as_str()).collect();
                            let mention = origin.from_other
                                && origin
                                    .me
                                    .is_some_and(|me| crate::views::mentions(&words, me));
                            if (mention || origin.private) && term.bell {
                                // The line mode has no views to mark: the bell
                                // says someone wants us.
                                text.push('\x07');
                            }
                            if mention {
                                text.push_str(&render::paint(
                                    &render::highlighted(line),
                                    term.colour,
                                ));
                                text.push('\n');
                                continue;
                            }
                            text.push_str(&render::paint(line, term.colour));
                            text.push('\n');
                        }
                        screen.print(&text);
                    }
                    Ui::Full(full) => full.add(origin, when, lines),
                }
                term.draw();
            }
            Self::Plain { .. } => {
                let mut text = String::new();
                for line in lines {
                    text.push_str(&render::paint(line, false));
                    text.push('\n');
                }
                // If stdout is gone (a closed pipe) there is nobody to tell.
                let mut stdout = io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
        }
    }

    /// Shows `prompt` if it differs from the current one (terminal only).
    /// `scoped`: it names the scope, which the full-screen mode replaces with
    /// the conversation of the view in front.
    pub(crate) fn set_prompt(&mut self, new: &str, scoped: bool) {
        if let Self::Terminal(term) = self {
            if term.prompt != new || term.scoped != scoped {
                new.clone_into(&mut term.prompt);
                term.scoped = scoped;
                term.draw();
            }
        }
    }

    /// The full-screen mode's status line (name, scope, connection) and the
    /// member list of our scope.
    pub(crate) fn set_status(&mut self, name: &str, scope: &str, state: &str) {
        if let Self::Terminal(term) = self {
            if let Ui::Full(full) = &mut term.ui {
                full.set_status(name, scope, state);
            }
        }
    }

    pub(crate) fn set_members(
        &mut self,
        scope: ViewKey,
        members: Vec<String>,
        everyone: Vec<String>,
    ) {
        if let Self::Terminal(term) = self {
            if let Ui::Full(full) = &mut term.ui {
                full.set_members(scope, members, everyone);
            }
        }
    }

    /// The view in front (full-screen mode only), and its title.
    pub(crate) fn current_view(&self) -> Option<(ViewKey, String)> {
        match self {
            Self::Terminal(term) => match &term.ui {
                Ui::Full(full) => Some(full.current_view()),
                Ui::Line(_) => None,
            },
            Self::Plain { .. } => None,
        }
    }

    /// Brings a view to the front (full-screen mode only).
    pub(crate) fn show_view(&mut self, key: ViewKey, title: &str) {
        if let Self::Terminal(term) = self {
            if let Ui::Full(full) = &mut term.ui {
                full.show_view(key, title);
            }
        }
    }

    pub(crate) fn is_full_screen(&self) -> bool {
        matches!(self, Self::Terminal(t) if matches!(t.ui, Ui::Full(_)))
    }

    /// Puts a line that could not be sent back into the input (terminal only),
    /// unless something else was typed meanwhile.
    pub(crate) fn restore(&mut self, line: String) {
        if let Self::Terminal(term) = self {
            if term.editor.is_empty() {
                let at = line.len();
                let _ = term.editor.set(line, at);
                term.draw();
            }
        }
    }

    /// Redraws the screen (full-screen mode), after a change of status.
    pub(crate) fn redraw(&mut self) {
        if let Self::Terminal(term) = self {
            term.draw();
        }
    }

    /// Leaves the prompt row empty and gives the terminal back as it was found.
    pub(crate) fn finish(self) {
        match self {
            Self::Terminal(mut term) => {
                if let Ui::Line(screen) = &mut term.ui {
                    screen.finish();
                }
            }
            Self::Plain { .. } => {
                let _ = io::stdout().flush();
            }
        }
    }
}

impl Term {
    fn draw(&mut self) {
        let question = self.paste.as_ref().map(|lines| {
            let n = lines.len();
            format!("paste {n} lines? Enter sends them as {n} messages, Esc cancels")
        });
        match &mut self.ui {
            Ui::Line(screen) => {
                let row = match question {
                    // Cut to the width so the row never wraps.
                    Some(text) => prompt_row("", &text, 0, self.width),
                    None => {
                        let (line, cursor) = self.editor.shown();
                        prompt_row(&self.prompt, &line, cursor, self.width)
                    }
                };
                screen.draw(row);
            }
            Ui::Full(full) => {
                let prompt = if self.scoped {
                    full.view_prompt()
                } else {
                    self.prompt.clone()
                };
                full.draw(&prompt, &self.editor, question);
            }
        }
    }

    fn bell(&mut self) {
        match &mut self.ui {
            Ui::Line(screen) => screen.bell(),
            Ui::Full(_) => {
                let mut out = io::stdout().lock();
                let _ = out.write_all(b"\x07");
                let _ = out.flush();
            }
        }
    }

    /// Notices a change of the terminal's size (checked on each wake and
    /// every [`RESIZE_CHECK`], which costs one ioctl).
    fn check_size(&mut self) {
        let width = crossterm::terminal::size().map_or(self.width, |(w, _)| usize::from(w));
        if width != self.width {
            self.width = width;
            if let Ui::Line(screen) = &mut self.ui {
                screen.invalidate();
            }
        }
    }

    async fn next(&mut self, roster: &Roster) -> io::Result<Input> {
        loop {
            while let Some(event) = self.queue.pop_front() {
                if let Some(input) = self.handle(event, roster) {
                    self.draw();
                    return Ok(input);
                }
            }
            self.check_size();
            self.draw();
            let read = async { Some(self.tty.read(&mut self.buf).await) };
            let tick = async {
                Timer::after(RESIZE_CHECK).await;
                None
            };
            match future::or(read, tick).await {
                None => {}
                Some(Ok(0)) => return Ok(Input::Quit),
                Some(Ok(n)) => self.decoder.push(&self.buf[..n], &mut self.queue),
                Some(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Err(e)) => return Err(e),
            }
        }
    }

    /// One decoded input; `Some` when the app must act on it.
    fn handle(&mut self, event: TermInput, roster: &Roster) -> Option<Input> {
        match event {
            TermInput::Paste(text) => self.pasted(&text),
            TermInput::PasteTooLarge(bytes) => Some(Input::Refused(format!(
                "paste of {bytes} bytes refused (at most {PASTE_MAX_BYTES})"
            ))),
            TermInput::Key(key) => self.key(&key, roster),
            TermInput::Focus(front) => {
                if let Ui::Full(full) = &mut self.ui {
                    full.focused = front;
                }
                None
            }
        }
    }

    fn pasted(&mut self, text: &str) -> Option<Input> {
        if self.paste.is_some() {
            return None;
        }
        let lines = paste_lines(text);
        if lines.len() > PASTE_MAX_LINES {
            return Some(Input::Refused(format!(
                "paste of {} lines refused (at most {PASTE_MAX_LINES})",
                lines.len()
            )));
        }
        match lines.as_slice() {
            [] => None,
            [one] => match self.editor.insert(one) {
                Edit::TooLong { bytes } => Some(Input::Refused(format!(
                    "paste refused: the line would be {bytes} bytes, longer than the \
                     {DEFAULT_MAX_LINE} a server accepts"
                ))),
                _ => None,
            },
            _ => {
                if let Some(long) = lines.iter().find(|l| l.len() > DEFAULT_MAX_LINE) {
                    return Some(Input::Refused(format!(
                        "paste refused: a line of {} bytes is longer than the {DEFAULT_MAX_LINE} \
                         a server accepts",
                        long.len()
                    )));
                }
                self.paste = Some(lines);
                None
            }
        }
    }

    fn key(&mut self, key: &Key, roster: &Roster) -> Option<Input> {
        if let Some(lines) = self.paste.take() {
            return match key {
                Key::Enter => Some(Input::Lines(lines)),
                Key::Esc | Key::Interrupt => None,
                _ => {
                    // Anything else leaves the question on screen.
                    self.paste = Some(lines);
                    None
                }
            };
        }
        if *key != Key::Tab {
            self.cycle = None;
        }
        if let Ui::Full(full) = &mut self.ui {
            if full.key(key) {
                return None;
            }
        }
        match key {
            Key::Enter => {
                self.told_full = false;
                let line = self.editor.take();
                Some(Input::Line(line))
            }
            Key::Interrupt if self.editor.is_empty() => Some(Input::Quit),
            Key::Interrupt => {
                self.editor.clear();
                None
            }
            Key::CtrlD if self.editor.is_empty() => Some(Input::Quit),
            Key::Redraw => {
                if let Ui::Line(screen) = &mut self.ui {
                    screen.clear();
                }
                None
            }
            Key::Tab => {
                // The names of our scope first; any name seen when none of
                // them fits (a DM partner, someone in the view of another scope).
                let mut known = Known {
                    names: roster.members(),
                    all_names: roster.everyone(),
                    groups: roster.groups(),
                    commands: commands(),
                };
                let (line, cursor) = (self.editor.line().to_owned(), self.editor.cursor());
                let mut done = complete::complete(&line, cursor, &known, &mut self.cycle);
                if done.is_none() {
                    known.names = roster.everyone();
                    done = complete::complete(&line, cursor, &known, &mut self.cycle);
                }
                match done {
                    Some(done) => {
                        if let Edit::TooLong { bytes } = self.editor.set(done.line, done.cursor) {
                            return Some(Input::Refused(format!(
                                "completion refused: the line would be {bytes} bytes"
                            )));
                        }
                    }
                    // Nothing to complete: say so, as readline does.
                    None => self.bell(),
                }
                None
            }
            other => match self.editor.key(other) {
                Some(Edit::TooLong { .. }) if self.told_full => {
                    self.bell();
                    None
                }
                Some(Edit::TooLong { .. }) => {
                    self.told_full = true;
                    Some(Input::Refused(format!(
                        "the line is at the {DEFAULT_MAX_LINE}-byte limit a server accepts; \
                         what is typed past it is refused"
                    )))
                }
                _ => {
                    if self.editor.line().len() < DEFAULT_MAX_LINE {
                        self.told_full = false;
                    }
                    None
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pastes_split_on_any_line_break() {
        assert_eq!(paste_lines("one"), ["one"]);
        assert_eq!(paste_lines("one\n"), ["one"]);
        assert_eq!(paste_lines("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(paste_lines("a\n\nb"), ["a", "", "b"]);
    }

    #[test]
    fn tab_offers_the_commands_a_person_types() {
        let c = commands();
        assert!(c.contains(&"/join") && c.contains(&"/msg") && c.contains(&"/help"));
        assert!(!c.contains(&"/pong"), "{c:?}");
        assert!(c.iter().all(|c| c.starts_with('/') && !c.contains(' ')));
    }
}
