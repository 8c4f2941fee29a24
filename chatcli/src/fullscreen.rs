//! The full-screen mode's screen: the view in front (wrapped, scrolled), the
//! member list on the right, a status line (name, scope, connection, the views
//! with their unread counts) and the input row. [`draw`] is a pure function of
//! [`Screen`] into a ratatui frame, so tests render it into a `TestBackend`.
//!
//! Every text drawn here was sanitised before it arrived (render.rs), or is
//! sanitised here (member names, view titles, the window title).

use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style as TuiStyle};
use ratatui::text::{Line as TuiLine, Span as TuiSpan};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use crate::linescreen::prompt_row;
use crate::render::{name_colour, Style};
use crate::sanitize::sanitize;
use crate::views::{Entry, Views};

/// The member list is shown when the terminal is at least this wide.
const MEMBERS_MIN_WIDTH: u16 = 50;
/// Its widest, in columns.
const MEMBERS_MAX: usize = 18;

/// Everything the screen shows, besides the views.
#[derive(Debug, Default)]
pub(crate) struct Screen {
    pub(crate) views: Views,
    pub(crate) colour: bool,
    /// Stamps with seconds (Alt+T).
    pub(crate) seconds: bool,
    /// Our name, or what the status line says instead.
    pub(crate) name: String,
    /// `[Global]`, `[rust]`.
    pub(crate) scope: String,
    /// `connected`, `connecting…`, `offline: retrying in 4 s`.
    pub(crate) state: String,
    /// The members of the scope in front, if it is ours and known.
    pub(crate) members: Vec<String>,
    /// The input row: the prompt, the line, the cursor (a byte index).
    pub(crate) prompt: String,
    pub(crate) line: String,
    pub(crate) cursor: usize,
    /// Replaces the input row (a paste question, the search).
    pub(crate) question: Option<String>,
    /// Rows the view in front can scroll up at most, from the last draw.
    pub(crate) max_scroll: usize,
    /// Columns of the view area at the last draw.
    pub(crate) view_width: usize,
}

/// What a draw found out about the layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Drawn {
    pub(crate) max_scroll: usize,
    pub(crate) view_width: usize,
}

fn tui_style(style: Style, colour: bool, mention: bool) -> TuiStyle {
    let base = TuiStyle::default();
    let s = match style {
        Style::Plain => base,
        Style::Time | Style::Dim => base.add_modifier(Modifier::DIM),
        Style::Scope => base.add_modifier(Modifier::BOLD),
        Style::Private if colour => base.fg(Color::Magenta).add_modifier(Modifier::BOLD),
        Style::Private => base.add_modifier(Modifier::BOLD),
        Style::Name(c) if colour => base.fg(Color::Indexed(c)),
        Style::Name(_) => base,
        Style::Own => base.add_modifier(Modifier::BOLD),
        Style::Error if colour => base.fg(Color::Red),
        Style::Error => base.add_modifier(Modifier::BOLD),
        Style::Mention if colour => base.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        Style::Mention => base.add_modifier(Modifier::BOLD),
    };
    if mention && matches!(style, Style::Plain) {
        // A line that names us: its words stand out, its names keep their colour.
        if colour {
            s.fg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            s.add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        }
    } else {
        s
    }
}

/// One entry as styled pieces, its stamp first.
fn pieces(entry: &Entry, seconds: bool, colour: bool) -> Vec<(String, TuiStyle)> {
    match entry {
        Entry::DayChange(text) => vec![(text.clone(), tui_style(Style::Dim, colour, false))],
        Entry::Line {
            when,
            line,
            mention,
            ..
        } => {
            let stamp = if seconds {
                format!("{:02}:{:02}:{:02} ", when.hour, when.minute, when.second)
            } else {
                format!("{:02}:{:02} ", when.hour, when.minute)
            };
            let mut out = vec![(stamp, tui_style(Style::Time, colour, false))];
            // `-- ` notices are dimmed as a whole, as in the line mode.
            let notice = line.0.first().is_some_and(|s| s.text.starts_with("-- "));
            for span in &line.0 {
                let style = match span.style {
                    Style::Plain if notice => Style::Dim,
                    other => other,
                };
                out.push((
                    span.text.replace('\t', " "),
                    tui_style(style, colour, *mention),
                ));
            }
            out
        }
    }
}

/// Cuts styled pieces into rows of at most `width` columns (by character;
/// a wide character that does not fit starts the next row).
fn wrap(pieces: Vec<(String, TuiStyle)>, width: usize) -> Vec<TuiLine<'static>> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut row: Vec<TuiSpan<'static>> = Vec::new();
    let mut used = 0;
    for (text, style) in pieces {
        let mut chunk = String::new();
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if used + w > width && used > 0 {
                row.push(TuiSpan::styled(std::mem::take(&mut chunk), style));
                rows.push(TuiLine::from(std::mem::take(&mut row)));
                used = 0;
            }
            chunk.push(c);
            used += w;
        }
        if !chunk.is_empty() {
            row.push(TuiSpan::styled(chunk, style));
        }
    }
    rows.push(TuiLine::from(row));
    rows
}

/// The rows of the view in front that fit `height`, scrolled up by `scroll`
/// (clamped); and the largest scroll that still shows something.
fn visible_rows(s: &Screen, width: usize, height: usize) -> (Vec<TuiLine<'static>>, usize) {
    let view = s.views.current();
    let want = height + view.scroll;
    let mut rows: Vec<TuiLine<'static>> = Vec::new();
    let mut all = true;
    for entry in view.entries.iter().rev() {
        let mut wrapped = wrap(pieces(entry, s.seconds, s.colour), width);
        wrapped.reverse();
        rows.extend(wrapped);
        if rows.len() >= want + height {
            all = false;
            break;
        }
    }
    let total = rows.len();
    // Without all rows wrapped, the top is further than this, which is enough.
    let max_scroll = if all {
        total.saturating_sub(height)
    } else {
        total
    };
    let scroll = view.scroll.min(max_scroll);
    let mut shown: Vec<TuiLine<'static>> = rows.into_iter().skip(scroll).take(height).collect();
    shown.reverse();
    (shown, max_scroll)
}

/// Rows that the last `from_end + 1` entries of the view in front take at
/// `width` columns: how far to scroll up to show entry `from_end`.
pub(crate) fn rows_from_end(s: &Screen, from_end: usize, width: usize) -> usize {
    s.views
        .current()
        .entries
        .iter()
        .rev()
        .take(from_end + 1)
        .map(|e| wrap(pieces(e, s.seconds, s.colour), width).len())
        .sum()
}

/// The views as the status line lists them: `1:Global 2:rust(3) 3:bob(1!)`.
fn view_list(s: &Screen) -> Vec<(String, TuiStyle)> {
    let mut out = Vec::new();
    for (i, v) in s.views.all().iter().enumerate() {
        let mut label = format!("{}:{}", i + 1, sanitize(&v.title));
        if v.activity.unread > 0 {
            label.push_str(&format!(
                "({}{})",
                v.activity.unread,
                if v.activity.marked { "!" } else { "" }
            ));
        }
        let style = if i == s.views.current_index() {
            TuiStyle::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else if v.activity.marked {
            if s.colour {
                TuiStyle::default()
                    .fg(Color::Yellow)
                    .add_modifier(Modifier::BOLD)
            } else {
                TuiStyle::default().add_modifier(Modifier::BOLD)
            }
        } else {
            TuiStyle::default()
        };
        out.push((format!(" {label}"), style));
    }
    out
}

/// Rows the last line of view `view` takes at `width` columns.
pub(crate) fn last_entry_rows(s: &Screen, view: usize, width: usize) -> usize {
    s.views
        .all()
        .get(view)
        .and_then(|v| v.entries.back())
        .map_or(0, |e| wrap(pieces(e, s.seconds, s.colour), width).len())
}

/// Draws the whole screen; returns what the caller keeps in
/// [`Screen::max_scroll`] and [`Screen::view_width`].
pub(crate) fn draw(f: &mut Frame<'_>, s: &Screen) -> Drawn {
    let area = f.area();
    let none = Drawn::default();
    if area.width == 0 || area.height == 0 {
        return none;
    }
    let input_y = area.bottom() - 1;
    // The input row.
    let width = usize::from(area.width);
    let row = match &s.question {
        Some(q) => prompt_row("", q, 0, width),
        None => prompt_row(&s.prompt, &s.line, s.cursor, width),
    };
    f.render_widget(
        Paragraph::new(row.text.clone()),
        Rect::new(area.x, input_y, area.width, 1),
    );
    let cursor_x = u16::try_from(row.cursor_col)
        .unwrap_or(u16::MAX)
        .min(area.width - 1);
    f.set_cursor_position(Position::new(area.x + cursor_x, input_y));
    if area.height < 2 {
        return none;
    }
    // The status line.
    let status_y = input_y - 1;
    let bar = if s.colour {
        TuiStyle::default().bg(Color::Blue).fg(Color::White)
    } else {
        TuiStyle::default().add_modifier(Modifier::REVERSED)
    };
    let mut spans = vec![TuiSpan::raw(format!(
        "[{}] {} {} ·",
        sanitize(&s.name),
        s.scope,
        s.state
    ))];
    spans.extend(
        view_list(s)
            .into_iter()
            .map(|(t, st)| TuiSpan::styled(t, st)),
    );
    f.render_widget(
        Paragraph::new(TuiLine::from(spans)).style(bar),
        Rect::new(area.x, status_y, area.width, 1),
    );
    if area.height < 3 {
        return none;
    }
    // The view, and the member list beside it when there is room.
    let height = status_y - area.y;
    let mut view_area = Rect::new(area.x, area.y, area.width, height);
    if area.width >= MEMBERS_MIN_WIDTH && !s.members.is_empty() {
        let widest = s
            .members
            .iter()
            .map(|m| m.chars().count())
            .max()
            .unwrap_or(0);
        let list_w = u16::try_from(widest.min(MEMBERS_MAX) + 2).unwrap_or(20);
        view_area.width -= list_w;
        let list_area = Rect::new(area.x + view_area.width, area.y, list_w, height);
        let mut names: Vec<TuiLine<'static>> = s
            .members
            .iter()
            .take(usize::from(height))
            .map(|m| {
                let style = if s.colour {
                    TuiStyle::default().fg(Color::Indexed(name_colour(m)))
                } else {
                    TuiStyle::default()
                };
                let shown: String = sanitize(m).chars().take(MEMBERS_MAX).collect();
                TuiLine::from(vec![TuiSpan::raw("│ "), TuiSpan::styled(shown, style)])
            })
            .collect();
        if s.members.len() > usize::from(height) && height > 0 {
            names.truncate(usize::from(height) - 1);
            names.push(TuiLine::from(format!(
                "│ +{}",
                s.members.len() + 1 - usize::from(height)
            )));
        }
        // The separator runs the whole height.
        while names.len() < usize::from(height) {
            names.push(TuiLine::from("│"));
        }
        f.render_widget(Paragraph::new(names), list_area);
    }
    let (rows, max_scroll) = visible_rows(s, usize::from(view_area.width), usize::from(height));
    // Rows fill from the bottom, as in a chat.
    let top = view_area.y + height - u16::try_from(rows.len()).unwrap_or(height);
    f.render_widget(
        Paragraph::new(rows),
        Rect::new(view_area.x, top, view_area.width, view_area.bottom() - top),
    );
    Drawn {
        max_scroll,
        view_width: usize::from(view_area.width),
    }
}

/// The window title: ours, with the count of views that want attention.
pub(crate) fn window_title(s: &Screen) -> String {
    let marked = s.views.unread_marked();
    let name = sanitize(&s.name);
    if marked > 0 {
        format!("chatcli {name} ({marked} waiting)")
    } else {
        format!("chatcli {name}")
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    use super::*;
    use crate::render::{Line, Span};
    use crate::views::{Origin, Target, ViewKey, When};

    fn when(second: u8) -> When {
        When {
            day: 20_423,
            hour: 12,
            minute: 4,
            second,
        }
    }

    fn line(parts: &[(Style, &str)]) -> Line {
        Line(
            parts
                .iter()
                .map(|(style, text)| Span {
                    style: *style,
                    text: (*text).to_owned(),
                })
                .collect(),
        )
    }

    fn screen() -> Screen {
        let mut s = Screen {
            name: "alice".into(),
            scope: "[Global]".into(),
            state: "connected".into(),
            prompt: "[Global]> ".into(),
            members: vec!["alice".into(), "bob".into()],
            ..Screen::default()
        };
        let msg = |s: &mut Screen, t: &Target, title: &str, text: &str, sec| {
            s.views.add(
                &Origin {
                    target: t,
                    title,
                    me: Some("alice"),
                    from_other: true,
                    private: matches!(t, Target::View(ViewKey::Dm(_))),
                    history: None,
                },
                when(sec),
                line(&[(Style::Name(32), "bob"), (Style::Plain, text)]),
            );
        };
        msg(
            &mut s,
            &Target::View(ViewKey::Global),
            "Global",
            ": hello",
            1,
        );
        msg(
            &mut s,
            &Target::View(ViewKey::group("rust")),
            "rust",
            ": in rust",
            2,
        );
        msg(
            &mut s,
            &Target::View(ViewKey::dm("bob")),
            "bob",
            ": psst alice",
            3,
        );
        s
    }

    fn render(s: &Screen, w: u16, h: u16) -> Vec<String> {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| {
            draw(f, s);
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn the_view_in_front_the_members_the_status_and_the_input() {
        let mut s = screen();
        s.line = "typing".into();
        s.cursor = 6;
        let rows = render(&s, 60, 6);
        assert_eq!(
            rows,
            [
                "                                                     │ alice",
                "                                                     │ bob",
                "                                                     │",
                "12:04 bob: hello                                     │",
                "[alice] [Global] connected · 1:Global 2:rust(1) 3:bob(1!)",
                "[Global]> typing",
            ]
        );
    }

    #[test]
    fn switching_views_and_seconds() {
        let mut s = screen();
        s.views.switch(2);
        s.seconds = true;
        let rows = render(&s, 60, 4);
        assert_eq!(
            rows[1],
            "12:04:03 bob: psst alice                             │ bob"
        );
        assert!(rows[2].ends_with("1:Global 2:rust(1) 3:bob"), "{rows:?}");
    }

    #[test]
    fn long_lines_wrap_and_scroll() {
        let mut s = screen();
        let long = "x".repeat(50);
        s.views.add(
            &Origin::said_in(&Target::Current, "", None),
            when(9),
            line(&[(Style::Plain, &long)]),
        );
        let rows = render(&s, 20, 4);
        assert_eq!(rows[..2], ["x".repeat(20), "x".repeat(16)]);
        s.views.scroll(2, 100);
        let rows = render(&s, 20, 4);
        assert_eq!(rows[..2], ["12:04 bob: hello", "12:04 xxxxxxxxxxxxxx"]);
        s.views.scroll(100, 100);
        let rows = render(&s, 20, 4);
        assert_eq!(rows[1], "12:04 xxxxxxxxxxxxxx", "not past the top");
    }

    #[test]
    fn a_scrolled_view_stays_in_place_when_long_lines_come() {
        let mut s = screen();
        for i in 0..10 {
            let text = format!("old {i}");
            s.views.add(
                &Origin::current(),
                when(0),
                line(&[(Style::Plain, text.as_str())]),
            );
        }
        let mut t = Terminal::new(TestBackend::new(20, 5)).unwrap();
        let mut drawn = Drawn::default();
        t.draw(|f| drawn = draw(f, &s)).unwrap();
        s.views.scroll(4, drawn.max_scroll);
        let before = render(&s, 20, 5);
        assert!(
            before[..3].contains(&"12:04 old 5".to_owned()),
            "{before:?}"
        );
        let long = "z".repeat(40);
        let added = s
            .views
            .add(&Origin::current(), when(0), line(&[(Style::Plain, &long)]));
        s.views.keep_place(
            added.view,
            last_entry_rows(&s, added.view, drawn.view_width) - 1,
        );
        assert_eq!(render(&s, 20, 5)[..3], before[..3]);
    }

    #[test]
    fn a_tiny_terminal_keeps_the_input() {
        let s = screen();
        let rows = render(&s, 20, 5);
        assert_eq!(rows[4], "[Global]>");
        assert!(rows[3].starts_with("[alice]"), "{rows:?}");
        let rows = render(&s, 20, 1);
        assert_eq!(rows, ["[Global]>"]);
        let rows = render(&s, 3, 2);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn mentions_stand_out_and_titles_are_sanitised() {
        let mut s = screen();
        s.colour = true;
        s.views.switch(2);
        let mut t = Terminal::new(TestBackend::new(40, 4)).unwrap();
        t.draw(|f| {
            draw(f, &s);
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        // ": psst alice" is a mention: yellow and bold; "bob" keeps its colour.
        assert_eq!(buf[(6, 1)].symbol(), "b");
        assert_eq!(buf[(6, 1)].fg, Color::Indexed(32));
        assert_eq!(buf[(10, 1)].fg, Color::Yellow);
        s.name = "x\x1b]0;pwn\x07".into();
        assert_eq!(window_title(&s), "chatcli x\\x1b]0;pwn\\x07");
    }

    #[test]
    fn history_shows_when_it_was_said_before_the_live_lines() {
        use chatproto::{parse_event, Event, Session};
        let mut me = Session::new();
        let _ = me.handle(&parse_event("WELCOME alice").unwrap());
        // 2025-12-01 14:40 UTC; the views get the times as the client's
        // clock gives them (here in UTC).
        let now = jiff::Timestamp::from_second(1_764_600_000)
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC);
        let mut s = Screen {
            name: "alice".into(),
            scope: "[rust]".into(),
            state: "connected".into(),
            prompt: "[rust]> ".into(),
            ..Screen::default()
        };
        let rust = Target::View(ViewKey::group("rust"));
        for (wire, day, hour, minute) in [
            (
                "HISTORY 3 1764513600000 MSG rust bob yesterday's news",
                20_422,
                14,
                40,
            ),
            (
                "HISTORY 7 1764599940000 MSG rust bob anyone here?",
                20_423,
                14,
                39,
            ),
        ] {
            let Event::History(past) = parse_event(wire).unwrap() else {
                panic!("{wire} is HISTORY");
            };
            s.views.add(
                &Origin {
                    target: &rust,
                    title: "rust",
                    me: Some("alice"),
                    from_other: false,
                    private: false,
                    history: Some(past.id()),
                },
                When {
                    day,
                    hour,
                    minute,
                    second: 0,
                },
                crate::render::history(&past, &me, &now),
            );
        }
        s.views.add(
            &Origin::said_in(&rust, "rust", Some("alice")),
            When {
                day: 20_423,
                hour: 14,
                minute: 40,
                second: 0,
            },
            line(&[(Style::Name(32), "bob"), (Style::Plain, ": live now")]),
        );
        s.views.switch(1);
        let rows = render(&s, 60, 6);
        // Oldest first, each with the time it was said, no day-change line
        // between past days and today, the scope left to the view.
        assert_eq!(
            rows,
            [
                "",
                "14:40 (history 2025-11-30) bob: yesterday's news",
                "14:39 (history) bob: anyone here?",
                "14:40 bob: live now",
                "[alice] [rust] connected · 1:Global 2:rust",
                "[rust]>",
            ]
        );
        // The history rows are dim (the live one is not).
        let mut t = Terminal::new(TestBackend::new(60, 6)).unwrap();
        t.draw(|f| {
            draw(f, &s);
        })
        .unwrap();
        let buf = t.backend().buffer().clone();
        let dim = |x: u16, y: u16| buf[(x, y)].modifier.contains(Modifier::DIM);
        assert!(dim(10, 1) && dim(30, 2), "history dimmed");
        assert!(!dim(10, 3), "live line not dimmed");
    }
}
