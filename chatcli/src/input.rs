//! The person's side: a line editor with a prompt on a terminal, plain lines on a
//! pipe; and where rendered lines are printed.

use std::io::{self, IsTerminal, Stdin, Write};

use chatproto::{FrameError, LineFramer, DEFAULT_MAX_LINE};
use futures_lite::AsyncReadExt;
use rustyline_async::{Readline, ReadlineError, ReadlineEvent, SharedWriter};
use smol::Unblock;

/// What the person did.
#[derive(Debug)]
pub(crate) enum Input {
    /// A line, without its ending.
    Line(String),
    /// A plain-mode line that is too long or not UTF-8; it was skipped.
    Unreadable(FrameError),
    /// Ctrl+C on the terminal.
    Interrupt,
    /// Ctrl+D on the terminal, or the end of piped input.
    Eof,
}

/// Where input comes from and output goes.
pub(crate) enum Console {
    /// A terminal: `rustyline-async` keeps the prompt and the half-typed line
    /// at the bottom while lines print above it.
    Terminal {
        editor: Readline,
        out: SharedWriter,
        prompt: String,
    },
    /// A pipe or file: one line in, one line out, no prompt.
    Plain {
        stdin: Unblock<Stdin>,
        /// Bounds a line read from stdin like a server bounds a client's.
        framer: LineFramer,
        buf: Box<[u8]>,
        eof: bool,
    },
}

impl Console {
    /// A line editor when both stdin and stdout are terminals, plain lines
    /// otherwise (or when the terminal cannot be set up).
    pub(crate) fn open(prompt: &str) -> Self {
        if io::stdin().is_terminal() && io::stdout().is_terminal() {
            match Readline::new(prompt.to_owned()) {
                Ok((mut editor, out)) => {
                    // The client prints its own copy of what was sent (with time
                    // and scope), so the editor must not leave the raw line behind.
                    editor.should_print_line_on(false, false);
                    return Self::Terminal {
                        editor,
                        out,
                        prompt: prompt.to_owned(),
                    };
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
        matches!(self, Self::Terminal { .. })
    }

    /// The next thing the person did. Cancel-safe: the editor keeps its state
    /// between calls, and piped bytes go into the framer before any await.
    pub(crate) async fn next(&mut self) -> io::Result<Input> {
        match self {
            Self::Terminal { editor, .. } => match editor.readline().await {
                Ok(ReadlineEvent::Line(line)) => {
                    if !line.is_empty() {
                        editor.add_history_entry(line.clone());
                    }
                    Ok(Input::Line(line))
                }
                Ok(ReadlineEvent::Eof) => Ok(Input::Eof),
                Ok(ReadlineEvent::Interrupted) => Ok(Input::Interrupt),
                Err(ReadlineError::IO(e)) => Err(e),
                Err(ReadlineError::Closed) => Ok(Input::Eof),
            },
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

    /// Prints `text` (one or more lines, each ending in LF). On a terminal it
    /// goes above the prompt and shows while [`next`](Self::next) is awaited.
    pub(crate) fn print(&mut self, text: &str) {
        match self {
            Self::Terminal { editor, out, .. } => {
                if let Err(e) = out.write_all(text.as_bytes()) {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        // The editor's queue is full (nobody awaited `next` for a
                        // long while): print what waits, then queue again. The
                        // refused text stays in this writer's own buffer and would
                        // go out twice (now and with the next line), so it is
                        // dropped with the writer: a clone shares the queue only.
                        *out = out.clone();
                        let _ = editor.flush();
                        let _ = out.write_all(text.as_bytes());
                    }
                }
            }
            Self::Plain { .. } => {
                // Plain mode has no editor to share the screen with. If stdout is
                // gone (a closed pipe) there is nobody to tell.
                let mut stdout = io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
        }
    }

    /// Shows `prompt` if it differs from the current one (terminal only).
    pub(crate) fn set_prompt(&mut self, new: &str) {
        if let Self::Terminal { editor, prompt, .. } = self {
            if prompt != new {
                let _ = editor.update_prompt(new);
                new.clone_into(prompt);
            }
        }
    }

    /// Prints what is still queued, removes the prompt and gives the terminal
    /// back in the mode it was found (the editor's drop leaves raw mode).
    pub(crate) fn finish(self) {
        match self {
            Self::Terminal {
                mut editor, out, ..
            } => {
                drop(out);
                let _ = editor.flush();
                drop(editor);
            }
            Self::Plain { .. } => {
                let _ = io::stdout().flush();
            }
        }
    }
}
