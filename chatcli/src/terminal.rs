//! Taking the terminal and giving it back: raw mode, bracketed paste and (in
//! full-screen mode) the alternate screen, undone on every way out: a normal
//! exit drops the [`TerminalGuard`], and a panic runs the hook installed here
//! before the message is printed, so it is readable on a sane terminal.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::{cursor, event, execute, terminal};

/// Whether the alternate screen is in use, for the panic hook.
static ALTERNATE: AtomicBool = AtomicBool::new(false);
/// Whether the terminal is ours now (raw mode on).
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Restores the terminal; safe to call more than once, and from the panic hook.
pub(crate) fn restore() {
    if !TAKEN.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    let _ = execute!(
        out,
        event::DisableBracketedPaste,
        event::DisableFocusChange,
        cursor::Show
    );
    if ALTERNATE.swap(false, Ordering::SeqCst) {
        let _ = execute!(out, terminal::LeaveAlternateScreen);
    }
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

/// The terminal in raw mode with bracketed paste (so a paste arrives as one
/// event, not as keys, and its line breaks are not Enter) and focus reports;
/// restored on drop.
#[derive(Debug)]
pub(crate) struct TerminalGuard(());

impl TerminalGuard {
    pub(crate) fn take(alternate: bool) -> io::Result<Self> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        TAKEN.store(true, Ordering::SeqCst);
        let guard = Self(());
        let mut out = io::stdout();
        // Focus reports tell whether the terminal is in front, for the bell.
        execute!(out, event::EnableBracketedPaste, event::EnableFocusChange)?;
        if alternate {
            execute!(out, terminal::EnterAlternateScreen)?;
            ALTERNATE.store(true, Ordering::SeqCst);
        }
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn install_panic_hook() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
