//! The full-screen mode's model: one view (buffer) per conversation, each with
//! its scrollback, unread count and mention mark, and which one is in front.
//! Pure: lines come in already rendered and sanitised (render.rs), with their
//! time; nothing here reads a clock or touches the terminal.

use std::collections::VecDeque;

use chatproto::{Event, Scope, Session};

use crate::render::{Line, Span, Style};

/// Lines kept per view; older ones are dropped.
pub(crate) const SCROLLBACK: usize = 5000;
/// Characters kept of one line: a `USERS` reply can be megabytes, and the view
/// wraps what it shows at every draw.
pub(crate) const LINE_MAX_CHARS: usize = 20_000;

/// Which conversation a line belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ViewKey {
    Global,
    /// A group, by its name folded to lower case (names are unique ignoring case).
    Group(String),
    /// Private messages with one user, by the name folded to lower case.
    Dm(String),
}

impl ViewKey {
    pub(crate) fn group(name: &str) -> Self {
        Self::Group(name.to_ascii_lowercase())
    }

    pub(crate) fn dm(name: &str) -> Self {
        Self::Dm(name.to_ascii_lowercase())
    }

    /// The view of a scope.
    pub(crate) fn of_scope(scope: &Scope) -> Self {
        match scope {
            Scope::Global => Self::Global,
            Scope::Group(g) => Self::group(g.as_str()),
        }
    }
}

/// Where a line goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The view in front (answers to commands, local notices).
    Current,
    View(ViewKey),
}

/// Where a line goes and what it is, for [`Views::add`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin<'a> {
    pub(crate) target: &'a Target,
    /// The view's title, if the line opens it.
    pub(crate) title: &'a str,
    /// Our name, for mentions.
    pub(crate) me: Option<&'a str>,
    /// Said by someone else (a message, not a notice): it counts as unread.
    pub(crate) from_other: bool,
    /// A private message to us.
    pub(crate) private: bool,
    /// A line said earlier (`HISTORY`), with its message id, stamped with
    /// when it was said: it does not move the view's day (its own date is in
    /// the line when it is not today's), and it goes before the view's later
    /// history lines, so a `/history` page lands above the replay it extends.
    pub(crate) history: Option<u64>,
}

#[cfg(test)]
impl<'a> Origin<'a> {
    /// A line someone else said (unread, not private, live): what most tests add.
    pub(crate) fn said_in(target: &'a Target, title: &'a str, me: Option<&'a str>) -> Self {
        Self {
            target,
            title,
            me,
            from_other: true,
            private: false,
            history: None,
        }
    }
}

impl Origin<'_> {
    /// Local notices and answers to commands: the view in front, never unread.
    pub(crate) fn current() -> Origin<'static> {
        Origin {
            target: &Target::Current,
            title: "",
            me: None,
            from_other: false,
            private: false,
            history: None,
        }
    }
}

/// The view an event from the server belongs to; `session` is the one before
/// the event (as for rendering).
pub(crate) fn target_of(ev: &Event, session: &Session) -> Target {
    match ev {
        Event::Msg { scope, .. } | Event::Me { scope, .. } => {
            Target::View(ViewKey::of_scope(scope))
        }
        Event::Join { scope, .. } | Event::Part { scope, .. } => {
            Target::View(ViewKey::of_scope(scope))
        }
        Event::Dm { from, to, .. } => {
            let partner = if session.is_me(from) { to } else { from };
            Target::View(ViewKey::dm(partner.as_str()))
        }
        _ => Target::Current,
    }
}

/// A time of day with seconds, and the day, for stamps and day-change lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct When {
    /// Days since some epoch (only compared), and the date as shown.
    pub(crate) day: i32,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
}

/// One line of a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    Line {
        when: When,
        /// The rendered line without its time stamp.
        line: Line,
        /// It contains our name (said by someone else).
        mention: bool,
        /// The message id of a history line.
        id: Option<u64>,
    },
    /// `-- day changed to 2026-12-01 --`.
    DayChange(String),
}

/// What arriving lines did to a view that is not in front.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Activity {
    pub(crate) unread: usize,
    /// A mention or a private message is among the unread.
    pub(crate) marked: bool,
}

#[derive(Debug)]
pub(crate) struct View {
    pub(crate) key: ViewKey,
    /// As shown: `Global`, the group's or the user's spelling.
    pub(crate) title: String,
    pub(crate) entries: VecDeque<Entry>,
    pub(crate) activity: Activity,
    /// Rows scrolled up from the bottom (0: following new lines).
    pub(crate) scroll: usize,
    last_day: Option<i32>,
}

impl View {
    fn new(key: ViewKey, title: &str) -> Self {
        Self {
            key,
            title: title.to_owned(),
            entries: VecDeque::new(),
            activity: Activity::default(),
            scroll: 0,
            last_day: None,
        }
    }

    fn push(&mut self, entry: Entry) {
        if self.entries.len() == SCROLLBACK {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
    }

    /// Adds a history line before the first history line said after it
    /// (a larger id), else at the bottom. Rows counted from the bottom do not
    /// change above the insertion, so a scrolled view keeps its place.
    /// True if it went to the bottom.
    fn insert_history(&mut self, id: u64, entry: Entry) -> bool {
        let later = |e: &Entry| matches!(e, Entry::Line { id: Some(x), .. } if *x > id);
        match self.entries.iter().position(later) {
            // Full: the oldest line goes, as for any line; a page older than
            // everything kept goes with it.
            Some(0) if self.entries.len() == SCROLLBACK => false,
            Some(at) => {
                let at = if self.entries.len() == SCROLLBACK {
                    self.entries.pop_front();
                    at - 1
                } else {
                    at
                };
                self.entries.insert(at, entry);
                false
            }
            None => {
                self.push(entry);
                true
            }
        }
    }
}

/// Cuts `line` to `max` characters, saying how many were left out.
fn clip(line: &mut Line, max: usize) {
    let mut left = max;
    let mut cut = 0;
    for span in &mut line.0 {
        let n = span.text.chars().count();
        if n <= left {
            left -= n;
            continue;
        }
        let at = span
            .text
            .char_indices()
            .nth(left)
            .map_or(span.text.len(), |(i, _)| i);
        cut += n - left;
        span.text.truncate(at);
        left = 0;
    }
    if cut > 0 {
        line.0.push(Span {
            style: Style::Dim,
            text: format!(" … ({cut} more characters)"),
        });
    }
}

/// Whether `text` names `me` as a word (ignoring case): `alice`, `@alice:`, not `malice`.
pub(crate) fn mentions(text: &str, me: &str) -> bool {
    if me.is_empty() {
        return false;
    }
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let lower = text.to_ascii_lowercase();
    let me = me.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&me) {
        let start = from + at;
        let end = start + me.len();
        let before_ok = !lower[..start].chars().next_back().is_some_and(is_name_char);
        let after_ok = !lower[end..].chars().next().is_some_and(is_name_char);
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
        while !lower.is_char_boundary(from) {
            from += 1;
        }
    }
    false
}

/// All the views, in the order they were opened (global first), and the one in front.
#[derive(Debug)]
pub(crate) struct Views {
    views: Vec<View>,
    current: usize,
}

impl Default for Views {
    fn default() -> Self {
        Self {
            views: vec![View::new(ViewKey::Global, "Global")],
            current: 0,
        }
    }
}

/// What [`Views::add`] asks the caller to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Added {
    /// A mention or private message arrived where the person is not looking:
    /// ring the bell (if so configured).
    pub(crate) alert: bool,
    /// A mention or private message arrived, wherever: worth the bell when
    /// the terminal is not in front.
    pub(crate) wanted: bool,
    /// The view the line went to.
    pub(crate) view: usize,
    /// It went to the bottom of the view (a history line may go higher up).
    pub(crate) at_bottom: bool,
}

impl Views {
    pub(crate) fn all(&self) -> &[View] {
        &self.views
    }

    pub(crate) fn current(&self) -> &View {
        &self.views[self.current]
    }

    pub(crate) fn current_index(&self) -> usize {
        self.current
    }

    fn find(&self, key: &ViewKey) -> Option<usize> {
        self.views.iter().position(|v| &v.key == key)
    }

    /// The view for `key`, opened (titled `title`) if it is new.
    pub(crate) fn open(&mut self, key: ViewKey, title: &str) -> usize {
        match self.find(&key) {
            Some(i) => i,
            None => {
                self.views.push(View::new(key, title));
                self.views.len() - 1
            }
        }
    }

    /// Brings view `i` to the front; its unread lines are read now.
    pub(crate) fn switch(&mut self, i: usize) -> bool {
        if i >= self.views.len() {
            return false;
        }
        self.current = i;
        self.views[i].activity = Activity::default();
        true
    }

    pub(crate) fn next(&mut self) {
        let n = self.views.len();
        self.switch((self.current + 1) % n);
    }

    pub(crate) fn prev(&mut self) {
        let n = self.views.len();
        self.switch((self.current + n - 1) % n);
    }

    /// Scrolls the view in front by `rows` (up is positive), not past its top
    /// (`max_scroll`, known to the layout) nor below its bottom.
    pub(crate) fn scroll(&mut self, rows: isize, max_scroll: usize) {
        let v = &mut self.views[self.current];
        v.scroll = v.scroll.saturating_add_signed(rows).min(max_scroll);
    }

    /// Adds a line to the view its origin names (opened if new).
    pub(crate) fn add(&mut self, origin: &Origin<'_>, when: When, mut line: Line) -> Added {
        let Origin {
            target,
            title,
            me,
            from_other,
            private,
            history,
        } = *origin;
        let i = match target {
            Target::Current => self.current,
            Target::View(key) => self.open(key.clone(), title),
        };
        // The stamp is drawn by the layout (with or without seconds).
        if line.0.first().is_some_and(|s| s.style == Style::Time) {
            line.0.remove(0);
        }
        // `[rust] ` before a message says which view it is in: the view says it.
        if matches!(target, Target::View(_))
            && line.0.first().is_some_and(|s| s.style == Style::Scope)
        {
            line.0.remove(0);
            if line.0.first().is_some_and(|s| s.text == " ") {
                line.0.remove(0);
            }
        }
        clip(&mut line, LINE_MAX_CHARS);
        let text: String = line.0.iter().map(|s| s.text.as_str()).collect();
        let mention = from_other && me.is_some_and(|me| mentions(&text, me));
        let view = &mut self.views[i];
        if history.is_none() {
            if view.last_day.is_some_and(|d| d != when.day) {
                view.push(Entry::DayChange(format!(
                    "-- day changed: {} --",
                    day_label(when)
                )));
            }
            view.last_day = Some(when.day);
        }
        let entry = Entry::Line {
            when,
            line,
            mention,
            id: history,
        };
        let at_bottom = match history {
            Some(id) => view.insert_history(id, entry),
            None => {
                view.push(entry);
                true
            }
        };
        // Above the bottom, the rows counted from the bottom are unchanged.
        if view.scroll > 0 && at_bottom {
            // Keep what the person reads in place (one row here; the layout,
            // which knows the width, adds the rest: `keep_place`).
            view.scroll += 1;
        }
        let in_front = i == self.current;
        if !in_front && from_other {
            view.activity.unread += 1;
            if mention || private {
                view.activity.marked = true;
            }
        }
        let wanted = from_other && (mention || private);
        Added {
            alert: wanted && !in_front,
            wanted,
            view: i,
            at_bottom,
        }
    }

    /// A line added to view `i` took `extra` rows more than one: a view
    /// scrolled up moves by as much, so what the person reads stays in place.
    pub(crate) fn keep_place(&mut self, i: usize, extra: usize) {
        if let Some(v) = self.views.get_mut(i) {
            if v.scroll > 0 {
                v.scroll += extra;
            }
        }
    }

    /// The latest line of the view in front that contains `query` (ignoring
    /// case), searching back from `before` entries from the end; its index
    /// from the end.
    pub(crate) fn search(&self, query: &str, before: usize) -> Option<usize> {
        if query.is_empty() {
            return None;
        }
        let query = query.to_lowercase();
        let entries = &self.current().entries;
        entries
            .iter()
            .rev()
            .enumerate()
            .skip(before)
            .find(|(_, e)| match e {
                Entry::Line { line, .. } => line
                    .0
                    .iter()
                    .map(|s| s.text.as_str())
                    .collect::<String>()
                    .to_lowercase()
                    .contains(&query),
                Entry::DayChange(_) => false,
            })
            .map(|(i, _)| i)
    }

    /// Total unread and marked views, for the window title.
    pub(crate) fn unread_marked(&self) -> usize {
        self.views.iter().filter(|v| v.activity.marked).count()
    }
}

/// The day a [`When`] is on, as the layout shows it. The day number is days
/// since 1970-01-01 (civil), so the date is computed here without a clock.
pub(crate) fn day_label(when: When) -> String {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(when.day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use chatproto::parse_event;

    use super::*;

    const DAY: i32 = 20_423; // 2025-12-01
    fn at(day: i32, minute: u8) -> When {
        When {
            day,
            hour: 12,
            minute,
            second: 7,
        }
    }

    fn msg(text: &str) -> Line {
        Line(vec![
            Span {
                style: Style::Time,
                text: "12:04 ".into(),
            },
            Span {
                style: Style::Plain,
                text: text.into(),
            },
        ])
    }

    #[test]
    fn lines_go_to_their_conversation() {
        let mut me = Session::new();
        let _ = me.handle(&parse_event("WELCOME alice").unwrap());
        let t = |l: &str| target_of(&parse_event(l).unwrap(), &me);
        assert_eq!(t("MSG * bob hi"), Target::View(ViewKey::Global));
        assert_eq!(t("MSG Rust bob hi"), Target::View(ViewKey::group("rust")));
        assert_eq!(t("DM Bob alice hi"), Target::View(ViewKey::dm("bob")));
        assert_eq!(t("DM alice Bob hi"), Target::View(ViewKey::dm("bob")));
        assert_eq!(t("JOIN rust carol"), Target::View(ViewKey::group("rust")));
        assert_eq!(t("USERS * alice"), Target::Current);
        assert_eq!(t("ERR bad-args nope"), Target::Current);
    }

    #[test]
    fn unread_counts_and_marks_only_away_from_the_front() {
        let mut v = Views::default();
        let rust = Target::View(ViewKey::group("rust"));
        let bob = Target::View(ViewKey::dm("bob"));
        let a = v.add(
            &Origin::said_in(&rust, "rust", Some("alice")),
            at(DAY, 1),
            msg("bob: hi"),
        );
        assert!(!a.alert);
        v.add(
            &Origin::said_in(&rust, "rust", Some("alice")),
            at(DAY, 1),
            msg("bob: alice, look"),
        );
        let a = v.add(
            &Origin {
                target: &bob,
                title: "bob",
                me: Some("alice"),
                from_other: true,
                private: true,
                history: None,
            },
            at(DAY, 2),
            msg("psst"),
        );
        assert!(a.alert, "a DM away from the front");
        let global = v.add(
            &Origin::said_in(&Target::View(ViewKey::Global), "Global", Some("alice")),
            at(DAY, 2),
            msg("alice!"),
        );
        assert!(!global.alert, "the view in front needs no bell");
        let titles: Vec<(&str, usize, bool)> = v
            .all()
            .iter()
            .map(|x| (x.title.as_str(), x.activity.unread, x.activity.marked))
            .collect();
        assert_eq!(
            titles,
            [("Global", 0, false), ("rust", 2, true), ("bob", 1, true)]
        );
        assert_eq!(v.unread_marked(), 2);
        v.next();
        assert_eq!(v.current().title, "rust");
        assert_eq!(v.current().activity, Activity::default(), "read when shown");
        v.prev();
        v.prev();
        assert_eq!(v.current().title, "bob");
        assert!(!v.switch(7));
        // Our own lines and notices are never unread.
        v.switch(0);
        v.add(
            &Origin {
                target: &rust,
                title: "rust",
                me: Some("alice"),
                from_other: false,
                private: false,
                history: None,
            },
            at(DAY, 3),
            msg("alice: me"),
        );
        assert_eq!(v.all()[1].activity.unread, 0);
    }

    #[test]
    fn the_scope_label_is_left_to_the_view() {
        let mut v = Views::default();
        let line = Line(vec![
            Span {
                style: Style::Time,
                text: "12:04 ".into(),
            },
            Span {
                style: Style::Scope,
                text: "[rust]".into(),
            },
            Span {
                style: Style::Plain,
                text: " ".into(),
            },
            Span {
                style: Style::Plain,
                text: "bob: hi".into(),
            },
        ]);
        let rust = Target::View(ViewKey::group("rust"));
        v.add(
            &Origin::said_in(&rust, "rust", None),
            at(DAY, 1),
            line.clone(),
        );
        v.add(
            &Origin::said_in(&Target::Current, "", None),
            at(DAY, 1),
            line,
        );
        let text = |e: &Entry| match e {
            Entry::Line { line, .. } => line.0.iter().map(|s| s.text.as_str()).collect::<String>(),
            Entry::DayChange(t) => t.clone(),
        };
        assert_eq!(text(&v.all()[1].entries[0]), "bob: hi");
        assert_eq!(
            text(&v.all()[0].entries[0]),
            "[rust] bob: hi",
            "an answer keeps it"
        );
    }

    #[test]
    fn huge_lines_are_clipped() {
        let mut v = Views::default();
        let huge = "n".repeat(LINE_MAX_CHARS + 500);
        v.add(
            &Origin::said_in(&Target::Current, "", None),
            at(DAY, 1),
            msg(&huge),
        );
        match &v.current().entries[0] {
            Entry::Line { line, .. } => {
                let text: String = line.0.iter().map(|s| s.text.as_str()).collect();
                assert!(
                    text.ends_with(" … (500 more characters)"),
                    "{}",
                    &text[text.len() - 40..]
                );
                assert!(text.chars().count() < LINE_MAX_CHARS + 40);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mentions_are_whole_names_ignoring_case() {
        assert!(mentions("hi Alice!", "alice"));
        assert!(mentions("alice: look", "alice"));
        assert!(mentions("@ALICE", "alice"));
        assert!(!mentions("malice", "alice"));
        assert!(!mentions("alice_2 here", "alice"));
        assert!(!mentions("anything", ""));
        assert!(mentions("日本 alice", "alice"));
    }

    #[test]
    fn a_new_day_gets_a_line_and_stamps_are_kept_apart() {
        let mut v = Views::default();
        let g = Target::Current;
        v.add(&Origin::said_in(&g, "", None), at(DAY, 1), msg("one"));
        v.add(&Origin::said_in(&g, "", None), at(DAY + 1, 1), msg("two"));
        let e = &v.current().entries;
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[1],
            Entry::DayChange("-- day changed: 2025-12-02 --".into())
        );
        match &e[2] {
            Entry::Line { line, when, .. } => {
                assert_eq!(line.0.len(), 1, "the stamp span is dropped");
                assert_eq!(when.second, 7);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(day_label(at(0, 0)), "1970-01-01");
        assert_eq!(day_label(at(DAY, 0)), "2025-12-01");
    }

    #[test]
    fn scrollback_is_bounded_and_search_finds_the_latest() {
        let mut v = Views::default();
        for i in 0..SCROLLBACK + 10 {
            v.add(
                &Origin::said_in(&Target::Current, "", None),
                at(DAY, 0),
                msg(&format!("line {i}")),
            );
        }
        assert_eq!(v.current().entries.len(), SCROLLBACK);
        assert_eq!(v.search("LINE 5009", 0), Some(0));
        assert_eq!(
            v.search("line 500", 10),
            Some(5009 - 500),
            "past 5009 … 5000"
        );
        assert_eq!(v.search("line 1", 0), Some(5009 - 1999));
        assert_eq!(v.search("line 5", 0), Some(0));
        assert_eq!(v.search("line 3 ", 0), None);
        assert_eq!(v.search("nowhere", 0), None);
        // Scrolled up, new lines keep the view in place.
        v.scroll(5, 100);
        v.add(
            &Origin::said_in(&Target::Current, "", None),
            at(DAY, 0),
            msg("new"),
        );
        assert_eq!(v.current().scroll, 6);
        v.scroll(-100, 100);
        assert_eq!(v.current().scroll, 0);
    }

    /// The texts of a view's lines, oldest first.
    fn texts(v: &View) -> Vec<String> {
        v.entries
            .iter()
            .map(|e| match e {
                Entry::Line { line, .. } => line.0.iter().map(|s| s.text.as_str()).collect(),
                Entry::DayChange(d) => d.clone(),
            })
            .collect()
    }

    #[test]
    fn a_history_page_goes_above_the_replay_it_extends() {
        let mut views = Views::default();
        let rust = Target::View(ViewKey::group("rust"));
        let add = |views: &mut Views, text: &str, history: Option<u64>, day: i32| {
            views
                .add(
                    &Origin {
                        target: &rust,
                        title: "rust",
                        me: Some("alice"),
                        from_other: history.is_none(),
                        private: false,
                        history,
                    },
                    at(day, 1),
                    msg(text),
                )
                .at_bottom
        };
        // The replay on /join (said days ago), then a live line today.
        assert!(add(&mut views, "r10", Some(10), DAY - 2));
        assert!(add(&mut views, "r11", Some(11), DAY - 1));
        assert!(add(&mut views, "live", None, DAY));
        // Scrolled up: lines added above the bottom do not move the view.
        views.switch(1);
        views.scroll(2, 10);
        // `/history 20 10`: older lines, oldest first.
        assert!(!add(&mut views, "p5", Some(5), DAY - 3));
        assert!(!add(&mut views, "p6", Some(6), DAY - 3));
        assert_eq!(views.current().scroll, 2);
        // `/history 1`: the latest, after everything.
        assert!(add(&mut views, "r11 again", Some(11), DAY - 1));
        assert_eq!(views.current().scroll, 3);
        let v = &views.all()[1];
        // No day-change line for history: its date is in its mark.
        assert_eq!(texts(v), ["p5", "p6", "r10", "r11", "live", "r11 again"]);

        // Full: the oldest line goes to make room, as for any line.
        let mut views = Views::default();
        for n in 0..SCROLLBACK as u64 {
            add(&mut views, &format!("h{}", 100 + n), Some(100 + n), DAY);
        }
        add(&mut views, "h50", Some(50), DAY);
        add(&mut views, "h150b", Some(150), DAY);
        let v = &views.all()[1];
        assert_eq!(v.entries.len(), SCROLLBACK);
        let t = texts(v);
        assert_eq!(t[0], "h101", "{:?}", &t[..3]);
        assert_eq!(t[50], "h150b");
        assert_eq!(t[51], "h151");
    }

    #[test]
    fn a_dm_kept_while_away_is_unread_a_replayed_line_is_not() {
        let mut views = Views::default();
        let add = |views: &mut Views, target: &Target, from_other, private, id| {
            views.add(
                &Origin {
                    target,
                    title: "bob",
                    me: Some("alice"),
                    from_other,
                    private,
                    history: Some(id),
                },
                at(DAY - 1, 1),
                msg("bob: alice, see you"),
            )
        };
        // As app.rs passes them: a DM to us from the mailbox, a group line.
        let dm = add(&mut views, &Target::View(ViewKey::dm("bob")), true, true, 3);
        assert!(dm.alert);
        let group = add(
            &mut views,
            &Target::View(ViewKey::group("go")),
            false,
            false,
            4,
        );
        assert!(!group.alert && !group.wanted);
        let a = &views.all();
        assert_eq!((a[1].activity.unread, a[1].activity.marked), (1, true));
        assert_eq!((a[2].activity.unread, a[2].activity.marked), (0, false));
    }
}
