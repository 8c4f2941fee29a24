//! The full-screen mode on the terminal: the [`Screen`] model drawn by ratatui
//! on the alternate screen, the keys that belong to it (views, scrolling,
//! search, seconds), the bell and the window title.

use std::io::{self, Stdout, Write};

use chatproto::DEFAULT_MAX_LINE;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

use crate::editor::{Editor, Key};
use crate::fullscreen::{draw, last_entry_rows, rows_from_end, window_title, Drawn, Screen};
use crate::render::Line;
use crate::views::{Origin, ViewKey, When};

/// A search of the view in front (Ctrl+R): what is typed, and the match shown.
#[derive(Debug)]
struct Search {
    query: Editor,
    /// The match, as entries from the end.
    found: Option<usize>,
}

/// When the bell rings and whether the window title is ours.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Alerts {
    pub(crate) bell: bool,
    pub(crate) title: bool,
}

pub(crate) struct FullUi {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    pub(crate) screen: Screen,
    search: Option<Search>,
    alerts: Alerts,
    title_shown: String,
    /// The members of our scope, and the view that scope is.
    members: (ViewKey, Vec<String>),
    /// Everyone known to be connected: the global view's list while our
    /// scope is a group (`/users` there lists the group).
    everyone: Vec<String>,
    /// The terminal window is in front (from focus reports; terminals that
    /// send none count as always in front).
    pub(crate) focused: bool,
}

impl FullUi {
    pub(crate) fn new(colour: bool, alerts: Alerts) -> io::Result<Self> {
        let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        terminal.clear()?;
        Ok(Self {
            terminal,
            screen: Screen {
                colour,
                ..Screen::default()
            },
            search: None,
            alerts,
            title_shown: String::new(),
            members: (ViewKey::Global, Vec::new()),
            everyone: Vec::new(),
            focused: true,
        })
    }

    /// Adds lines to a view; rings the bell for a mention or a DM away from
    /// the view in front (or while the window is behind).
    pub(crate) fn add(&mut self, origin: &Origin<'_>, when: When, lines: &[Line]) {
        let mut alert = false;
        for line in lines {
            let added = self.screen.views.add(origin, when, line.clone());
            // Nothing drawn yet, nothing scrolled: no width to count rows at.
            // A line that went above the bottom moves nothing below it.
            if self.screen.view_width > 0 && added.at_bottom {
                let rows = last_entry_rows(&self.screen, added.view, self.screen.view_width);
                self.screen
                    .views
                    .keep_place(added.view, rows.saturating_sub(1));
            }
            alert |= added.alert || (added.wanted && !self.focused);
        }
        if alert && self.alerts.bell {
            let mut out = io::stdout().lock();
            let _ = out.write_all(b"\x07");
            let _ = out.flush();
        }
    }

    pub(crate) fn set_members(
        &mut self,
        scope: ViewKey,
        members: Vec<String>,
        everyone: Vec<String>,
    ) {
        self.members = (scope, members);
        self.everyone = everyone;
    }

    pub(crate) fn current_view(&self) -> (ViewKey, String) {
        let v = self.screen.views.current();
        (v.key.clone(), v.title.clone())
    }

    /// Opens (and shows) the view of `key`: a group just joined.
    pub(crate) fn show_view(&mut self, key: ViewKey, title: &str) {
        let i = self.screen.views.open(key, title);
        self.screen.views.switch(i);
    }

    /// The prompt of the view in front: `[Global]> `, `[rust]> `, `[DM bob]> `.
    pub(crate) fn view_prompt(&self) -> String {
        let v = self.screen.views.current();
        let title = crate::sanitize::sanitize(&v.title);
        match v.key {
            ViewKey::Dm(_) => format!("[DM {title}]> "),
            _ => format!("[{title}]> "),
        }
    }

    fn view_height(&self) -> usize {
        let h = self.terminal.size().map_or(24, |s| usize::from(s.height));
        h.saturating_sub(2).max(1)
    }

    /// The keys of the full-screen mode; `true` if `key` was one of them.
    /// While a search is open, every key is the search's.
    pub(crate) fn key(&mut self, key: &Key) -> bool {
        if let Some(search) = &mut self.search {
            match key {
                Key::Esc | Key::Interrupt => {
                    self.search = None;
                    self.screen.views.scroll(isize::MIN, 0);
                }
                Key::Enter => self.search = None,
                Key::Search => {
                    let from = search.found.map_or(0, |f| f + 1);
                    let query = search.query.line().to_owned();
                    self.find(&query, from);
                }
                other => {
                    search.query.key(other);
                    let query = search.query.line().to_owned();
                    self.find(&query, 0);
                }
            }
            return true;
        }
        let page = isize::try_from(self.view_height().saturating_sub(1).max(1)).unwrap_or(1);
        match key {
            Key::PageUp => self.screen.views.scroll(page, self.screen.max_scroll),
            Key::PageDown => self.screen.views.scroll(-page, self.screen.max_scroll),
            Key::NextView => self.screen.views.next(),
            Key::PrevView => self.screen.views.prev(),
            Key::View(i) => {
                self.screen.views.switch(*i);
            }
            Key::ToggleSeconds => self.screen.seconds = !self.screen.seconds,
            Key::Search => {
                self.search = Some(Search {
                    query: Editor::new(DEFAULT_MAX_LINE),
                    found: None,
                })
            }
            Key::Redraw => {
                let _ = self.terminal.clear();
            }
            _ => return false,
        }
        true
    }

    /// Scrolls so that the latest match of `query` at or before `from`
    /// (entries from the end) is in view.
    fn find(&mut self, query: &str, from: usize) {
        let found = self.screen.views.search(query, from);
        if let Some(search) = &mut self.search {
            search.found = found.or(search.found);
        }
        if let Some(at) = found {
            let width = self.terminal.size().map_or(80, |s| usize::from(s.width));
            let rows = rows_from_end(&self.screen, at, width);
            let half = self.view_height() / 2;
            let current = self.screen.views.current().scroll;
            let target = rows.saturating_sub(half);
            let delta =
                isize::try_from(target).unwrap_or(0) - isize::try_from(current).unwrap_or(0);
            self.screen.views.scroll(delta, usize::MAX);
        }
    }

    /// Draws everything; `question` replaces the input row.
    pub(crate) fn draw(&mut self, prompt: &str, editor: &Editor, question: Option<String>) {
        let s = &mut self.screen;
        prompt.clone_into(&mut s.prompt);
        let (line, cursor) = editor.shown();
        (*line).clone_into(&mut s.line);
        s.cursor = cursor;
        s.question = match &self.search {
            Some(search) => Some(format!(
                "search: {}{}",
                search.query.line(),
                if search.found.is_none() && !search.query.is_empty() {
                    "  (not found)"
                } else {
                    "  (Ctrl+R older, Enter stays, Esc back)"
                }
            )),
            None => question,
        };
        let in_front = s.views.current().key.clone();
        s.members = match &in_front {
            key if *key == self.members.0 => self.members.1.clone(),
            ViewKey::Dm(_) => vec![s.name.clone(), s.views.current().title.clone()],
            ViewKey::Global => self.everyone.clone(),
            ViewKey::Group(_) => Vec::new(),
        };
        let mut drawn = Drawn::default();
        let _ = self.terminal.draw(|f| drawn = draw(f, s));
        s.max_scroll = drawn.max_scroll;
        s.view_width = drawn.view_width;
        if self.alerts.title {
            let title = window_title(s);
            if title != self.title_shown {
                let _ = crossterm::execute!(io::stdout(), crossterm::terminal::SetTitle(&title));
                self.title_shown = title;
            }
        }
    }

    pub(crate) fn set_status(&mut self, name: &str, scope: &str, state: &str) {
        let s = &mut self.screen;
        name.clone_into(&mut s.name);
        scope.clone_into(&mut s.scope);
        state.clone_into(&mut s.state);
    }
}
