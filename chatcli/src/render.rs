//! Turning events into screen lines: pure functions from (event, session, time of
//! day) to styled text, and [`paint`], the one place where styles become colours.
//!
//! Every string that came from the network goes through [`sanitize`] here, so no
//! caller can forget it.

use std::fmt;

use chatproto::{
    AccountState, Command, Event, FrameError, Name, ParseError, Past, Scope, Session, Token,
    COMMAND_HELP,
};

use crate::sanitize::{sanitize, sanitize_clipped};

/// How much of a line that did not parse is shown: enough to recognise it, not
/// a screenful of megabytes.
const RAW_SHOWN_CHARS: usize = 300;

/// The local time of day a line is stamped with (`12:04`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    hour: u8,
    minute: u8,
}

impl Stamp {
    pub(crate) fn new(hour: u8, minute: u8) -> Self {
        Self { hour, minute }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// What a piece of a line means; [`paint`] decides how that looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    /// The time stamp.
    Time,
    /// `[Global]`, `[rust]`.
    Scope,
    /// `[DM]`.
    Private,
    /// A user's name, in the colour derived from it (a 256-colour index).
    Name(u8),
    /// This session's own name: bold, so own lines stand out.
    Own,
    /// The words of a line that names us (someone said our name).
    Mention,
    /// Join, part and rename notices, and other things of little weight.
    Dim,
    /// Refusals from the server and local mistakes.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) style: Style,
    pub(crate) text: String,
}

/// One screen line (it may wrap), as styled spans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Line(pub(crate) Vec<Span>);

impl Line {
    fn push(mut self, style: Style, text: impl Into<String>) -> Self {
        self.0.push(Span {
            style,
            text: text.into(),
        });
        self
    }

    /// The line as it reads without styles.
    #[cfg(test)]
    pub(crate) fn text(&self) -> String {
        self.0.iter().map(|s| s.text.as_str()).collect()
    }
}

/// The 256-colour indexes names get, as weechat's larger palettes: greens,
/// yellows, blues, magentas, cyans and oranges that read on dark and light
/// backgrounds. Pure reds are kept for errors, greys for notices.
pub(crate) const NAME_COLOURS: [u8; 24] = [
    28, 30, 32, 34, 37, 39, 62, 64, 67, 70, 73, 75, 97, 99, 105, 128, 130, 133, 136, 141, 166, 170,
    172, 178,
];

/// A colour derived from the name alone (ignoring case, as names are unique
/// ignoring case), so a user looks the same in every line and every session.
pub(crate) fn name_colour(name: &str) -> u8 {
    // FNV-1a: tiny, and stable across Rust versions unlike `DefaultHasher`.
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b.to_ascii_lowercase());
        hash = hash.wrapping_mul(0x0100_0193);
    }
    NAME_COLOURS[hash as usize % NAME_COLOURS.len()]
}

/// The line as terminal text: with SGR colours when `colour` is set, else plain.
/// The only place where escape sequences are written.
pub(crate) fn paint(line: &Line, colour: bool) -> String {
    let mut out = String::new();
    // Every `-- ` line is a notice (greetings, lists, joins): its words are
    // dimmed, the names in it keep their colours.
    let notice = line
        .0
        .iter()
        .find(|s| s.style != Style::Time)
        .is_some_and(|s| s.text.starts_with("-- "));
    for span in &line.0 {
        let sgr = match span.style {
            _ if !colour => None,
            Style::Plain if notice => Some("2".to_owned()),
            Style::Plain => None,
            Style::Time | Style::Dim => Some("2".to_owned()),
            Style::Scope => Some("1".to_owned()),
            Style::Private => Some("1;35".to_owned()),
            Style::Name(c) => Some(format!("38;5;{c}")),
            Style::Own => Some("1".to_owned()),
            Style::Mention => Some("1;33".to_owned()),
            Style::Error => Some("31".to_owned()),
        };
        match sgr {
            Some(sgr) => {
                out.push_str("\x1b[");
                out.push_str(&sgr);
                out.push('m');
                out.push_str(&span.text);
                out.push_str("\x1b[0m");
            }
            None => out.push_str(&span.text),
        }
    }
    out
}

fn stamped(at: Stamp) -> Line {
    Line::default().push(Style::Time, format!("{at} "))
}

/// A user's name, sanitised (names are validated, but this costs nothing).
fn name_span(line: Line, name: &str) -> Line {
    let shown = sanitize(name).into_owned();
    line.push(Style::Name(name_colour(name)), shown)
}

/// `line` with its plain words marked as a mention of us.
pub(crate) fn highlighted(line: &Line) -> Line {
    Line(
        line.0
            .iter()
            .map(|s| Span {
                style: if s.style == Style::Plain {
                    Style::Mention
                } else {
                    s.style
                },
                text: s.text.clone(),
            })
            .collect(),
    )
}

/// `Global` or `rust`: a view's title.
pub(crate) fn scope_title(scope: &Scope) -> String {
    match scope {
        Scope::Global => "Global".to_owned(),
        Scope::Group(g) => sanitize(g.as_str()).into_owned(),
    }
}

/// `[Global]` or `[rust]`.
pub(crate) fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Global => "[Global]".to_owned(),
        Scope::Group(g) => format!("[{}]", sanitize(g.as_str())),
    }
}

/// A name, this session's own in its own style. Own lines show the real name,
/// not "you": names are unique, so nobody else can look like us (a user who
/// registers as `you` could, even without colours).
fn who(line: Line, session: &Session, name: &Name) -> Line {
    if session.is_me(name) {
        line.push(Style::Own, sanitize(name.as_str()).into_owned())
    } else {
        name_span(line, name.as_str())
    }
}

/// A dimmed `-- ...` notice built by `build` after the stamp.
fn dim_notice(at: Stamp, build: impl FnOnce(Line) -> Line) -> Line {
    let line = stamped(at).push(Style::Dim, "-- ");
    let line = build(line);
    // Everything in a notice is dim, names included: it is of little weight.
    Line(
        line.0
            .into_iter()
            .map(|s| match s.style {
                Style::Time => s,
                _ => Span {
                    style: Style::Dim,
                    text: s.text,
                },
            })
            .collect(),
    )
}

/// The greeting when the client registers by itself (`--name`, a
/// reconnection): the server's question ("who are you?") is not for the person.
pub(crate) fn hello_short(server: &Token, version: &Token, at: Stamp) -> Line {
    stamped(at).push(
        Style::Plain,
        format!(
            "-- connected to {} {}",
            sanitize(server.as_str()),
            sanitize(version.as_str())
        ),
    )
}

/// A local notice: `-- text`, dimmed. `text` is ours, not the network's.
pub(crate) fn notice(at: Stamp, text: &str) -> Line {
    dim_notice(at, |l| l.push(Style::Dim, text))
}

/// A local mistake (a bad command, not connected): `!! text`, in red.
pub(crate) fn local_error(at: Stamp, text: &str) -> Line {
    stamped(at).push(Style::Error, format!("!! {text}"))
}

/// The line for one event from the server, rendered with the session as it was
/// before the event (so "you" still means the old name on a rename). `None` for
/// events a person need not see (`PING`, answered automatically).
pub(crate) fn event(ev: &Event, session: &Session, at: Stamp) -> Option<Line> {
    let line = match ev {
        Event::Msg { scope, from, text } => {
            let line = stamped(at)
                .push(Style::Scope, scope_label(scope))
                .push(Style::Plain, " ");
            who(line, session, from).push(Style::Plain, format!(": {}", sanitize(text.as_str())))
        }
        Event::Me { scope, from, text } => {
            let mut line = stamped(at);
            if let Scope::Group(_) = scope {
                line = line
                    .push(Style::Scope, scope_label(scope))
                    .push(Style::Plain, " ");
            }
            let line = line.push(Style::Plain, "* ");
            who(line, session, from).push(Style::Plain, format!(" {}", sanitize(text.as_str())))
        }
        Event::Dm { from, to, text } => {
            let line = stamped(at)
                .push(Style::Private, "[DM]")
                .push(Style::Plain, " ");
            let line = who(line, session, from).push(Style::Plain, " -> ");
            who(line, session, to).push(Style::Plain, format!(": {}", sanitize(text.as_str())))
        }
        Event::Join {
            scope: Scope::Global,
            name,
        } => dim_notice(at, |l| {
            name_span(l, name.as_str()).push(Style::Dim, " connected")
        }),
        Event::Join { scope, name } => dim_notice(at, |l| {
            who(l, session, name).push(Style::Dim, format!(" joined {}", sanitize(scope.as_str())))
        }),
        Event::Part {
            scope: Scope::Global,
            name,
            reason,
        } => dim_notice(at, |l| {
            let l = name_span(l, name.as_str()).push(Style::Dim, " disconnected");
            match reason {
                Some(r) => l.push(Style::Dim, format!(" ({})", sanitize(r.as_str()))),
                None => l,
            }
        }),
        Event::Part {
            scope,
            name,
            reason,
        } => dim_notice(at, |l| {
            let l = who(l, session, name)
                .push(Style::Dim, format!(" left {}", sanitize(scope.as_str())));
            match reason {
                Some(r) => l.push(Style::Dim, format!(" ({})", sanitize(r.as_str()))),
                None => l,
            }
        }),
        Event::Nick { old, new } => dim_notice(at, |l| {
            let l = who(l, session, old).push(Style::Dim, " is now known as ");
            name_span(l, new.as_str())
        }),
        Event::Welcome(name) => match session.name() {
            None => {
                let l = stamped(at).push(Style::Plain, "-- you are ");
                name_span(l, name.as_str()).push(Style::Plain, "; /help lists the commands")
            }
            Some(_) => dim_notice(at, |l| {
                name_span(l.push(Style::Dim, "you are now known as "), name.as_str())
            }),
        },
        Event::Hello {
            server,
            version,
            text,
        } => stamped(at).push(
            Style::Plain,
            format!(
                "-- connected to {} {}: {}",
                sanitize(server.as_str()),
                sanitize(version.as_str()),
                sanitize(text.as_str())
            ),
        ),
        Event::Users { scope, names } => {
            let count = counted(names.len(), "user");
            let mut line = stamped(at)
                .push(Style::Plain, format!("-- {count} in "))
                .push(Style::Scope, scope_label(scope))
                .push(Style::Plain, ":");
            for (i, name) in names.iter().enumerate() {
                line = line.push(Style::Plain, if i == 0 { " " } else { ", " });
                line = name_span(line, name.as_str());
            }
            line
        }
        Event::Groups(groups) if groups.is_empty() => {
            stamped(at).push(Style::Plain, "-- no groups yet; /join <group> starts one")
        }
        Event::Groups(groups) => {
            let count = counted(groups.len(), "group");
            let listed: Vec<String> = groups
                .iter()
                .map(|(g, n)| format!("{} ({n})", sanitize(g.as_str())))
                .collect();
            stamped(at).push(Style::Plain, format!("-- {count}: {}", listed.join(", ")))
        }
        Event::Info(text) => {
            stamped(at).push(Style::Plain, format!("-- {}", sanitize(text.as_str())))
        }
        Event::Err { code, text } => stamped(at).push(
            Style::Error,
            format!(
                "!! {} [{}]",
                sanitize(text.as_str()),
                sanitize(code.as_str())
            ),
        ),
        Event::Ping(_) => return None,
        Event::Pong(token) => notice_from_net(at, "pong ", token.as_str()),
        Event::Bye(reason) if reason.as_str() == "quit" => notice(at, "disconnected, bye"),
        Event::Bye(reason) => stamped(at).push(
            Style::Error,
            format!(
                "!! the server closed the connection: {}",
                sanitize(reason.as_str())
            ),
        ),
        Event::Whois {
            name,
            scope,
            idle,
            signon,
        } => {
            let line = name_span(stamped(at).push(Style::Plain, "-- "), name.as_str())
                .push(Style::Plain, " is in ")
                .push(Style::Scope, scope_label(scope))
                .push(Style::Plain, format!(", idle {}", idle_label(*idle)));
            // The wall clock and time zone are read here, as for the stamp.
            match signon_label(*signon, &jiff::ZonedDateTime::now()) {
                Some(since) => line.push(Style::Plain, format!(", here since {since}")),
                None => line,
            }
        }
        Event::Count {
            users,
            groups,
            connections,
        } => stamped(at).push(
            Style::Plain,
            format!(
                "-- {}, {}, {}",
                counted(*users as usize, "user"),
                counted(*groups as usize, "group"),
                counted(*connections as usize, "connection")
            ),
        ),
        Event::Account { name, state } => account(name, state, at),
        // The wall clock and time zone are read here, as for the stamp.
        Event::History(past) => history(past, session, &jiff::ZonedDateTime::now()),
        // Shown by the caller, which knows whether it answers a `/history`.
        Event::Replayed { .. } => return None,
        // A newer chatproto may know events this client does not render yet.
        other => notice_from_net(at, "", &other.to_string()),
    };
    Some(line)
}

/// `ACCOUNT <name> <state>`: what happened to our account, in words, bold
/// (it matters more than a notice).
fn account(name: &Name, state: &AccountState, at: Stamp) -> Line {
    let name = sanitize(name.as_str());
    let words = match state {
        AccountState::Registered => {
            format!("account {name} registered: you are logged in, and the name is yours")
        }
        AccountState::LoggedIn => format!("logged in as {name}"),
        AccountState::PasswordChanged => format!("password of {name} changed"),
        AccountState::Unregistered => {
            format!("account {name} deleted: the name is free for anyone once you leave it")
        }
        other => format!("account {name}: {}", sanitize(other.as_str())),
    };
    stamped(at)
        .push(Style::Plain, "-- ")
        .push(Style::Own, words)
}

/// When a `HISTORY` line was said, in `now`'s time zone: the stamp, and the
/// date when it is not `now`'s day. `None` for a time of 0 (the server did
/// not know) or out of range.
pub(crate) fn said_at(unix_ms: u64, now: &jiff::ZonedDateTime) -> Option<jiff::ZonedDateTime> {
    if unix_ms == 0 {
        return None;
    }
    let ms = i64::try_from(unix_ms).ok()?;
    let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(ts.to_zoned_datetime(now.time_zone().clone()))
}

/// A line said earlier (`HISTORY`), as it was shown live but marked: stamped
/// with when it was said, `(history)` after its scope (`(history
/// 2026-11-30)` when not said today), and dimmed, names included. Its text is
/// sanitised as any live line's.
pub(crate) fn history(past: &Past, session: &Session, now: &jiff::ZonedDateTime) -> Line {
    let when = said_at(past.unix_ms(), now);
    let (stamp, mark) = match &when {
        // hour() is 0..=23 and minute() 0..=59, so both fit in u8.
        Some(t) => (
            Stamp::new(
                u8::try_from(t.hour()).unwrap_or(0),
                u8::try_from(t.minute()).unwrap_or(0),
            ),
            if t.date() == now.date() {
                "(history) ".to_owned()
            } else {
                format!("(history {}) ", t.date())
            },
        ),
        None => (
            Stamp::new(
                u8::try_from(now.hour()).unwrap_or(0),
                u8::try_from(now.minute()).unwrap_or(0),
            ),
            "(history, time unknown) ".to_owned(),
        ),
    };
    // A Past holds only a MSG, ME or DM, which always render.
    let inner = event(past.event(), session, stamp).unwrap_or_default();
    let mut spans = inner.0.into_iter().peekable();
    let mut out = Vec::new();
    // The stamp, and the scope label with its space: the full-screen views
    // drop a leading label (the view says it), so the mark goes after it.
    while let Some(s) = spans.next_if(|s| s.style == Style::Time || s.style == Style::Scope) {
        let scope = s.style == Style::Scope;
        out.push(s);
        if scope {
            if let Some(space) = spans.next_if(|s| s.text == " ") {
                out.push(space);
            }
        }
    }
    out.push(Span {
        style: Style::Dim,
        text: mark,
    });
    out.extend(spans.map(|s| Span {
        style: Style::Dim,
        text: s.text,
    }));
    Line(out)
}

/// The end of a replay (`REPLAYED <scope> <count>`): how many lines came, and
/// how to page further back (`first_id`, the id of the oldest line of this
/// replay); for a `/history` (`asked`) that found nothing, that there is
/// nothing earlier. `None` for a replay of nothing nobody asked for (every
/// join to a new group).
pub(crate) fn replayed(
    scope: &Scope,
    count: u32,
    first_id: Option<u64>,
    asked: bool,
    at: Stamp,
) -> Option<Line> {
    let label = scope_label(scope);
    let text = match (count, first_id) {
        (0, _) if !asked => return None,
        (0, _) => format!("-- nothing earlier in {label}"),
        (n, Some(id)) => format!(
            "-- {} of {label} above; /history 20 {id} shows earlier ones",
            counted(n as usize, "earlier line")
        ),
        (n, None) => format!(
            "-- {} of {label} above",
            counted(n as usize, "earlier line")
        ),
    };
    Some(stamped(at).push(Style::Plain, text))
}

/// Idle time, to the most significant two units: `12s`, `5m 3s`, `2h 4m`, `3d 2h`.
fn idle_label(secs: u32) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// A sign-on time (seconds since the Unix epoch) in `now`'s time zone: `14:02`
/// on `now`'s day, else with the date (`2026-11-30 14:02`). `None` when the
/// server does not know it (0) or it is out of range.
fn signon_label(signon: u64, now: &jiff::ZonedDateTime) -> Option<String> {
    if signon == 0 {
        return None;
    }
    let at = jiff::Timestamp::from_second(i64::try_from(signon).ok()?)
        .ok()?
        .to_zoned_datetime(now.time_zone().clone());
    let time = format!("{:02}:{:02}", at.hour(), at.minute());
    if at.date() == now.date() {
        Some(time)
    } else {
        Some(format!("{} {time}", at.date()))
    }
}

/// `1 user`, `3 users`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn notice_from_net(at: Stamp, prefix: &str, text: &str) -> Line {
    dim_notice(at, |l| {
        l.push(Style::Dim, format!("{prefix}{}", sanitize(text)))
    })
}

/// The local copy of what this session just sent, for the commands the server
/// does not echo (`MSG`, `ME`); `None` for the others, and before registration
/// (a plain line is then a name, not a message).
pub(crate) fn own(cmd: &Command, session: &Session, at: Stamp) -> Option<Line> {
    let from = session.name()?.clone();
    let scope = session.scope().clone();
    let ev = match cmd {
        Command::Say(text) => Event::Msg {
            scope,
            from,
            text: text.clone(),
        },
        Command::Me(text) => Event::Me {
            scope,
            from,
            text: text.clone(),
        },
        Command::SayIn { scope: to, text } => Event::Msg {
            scope: named_scope(to, &scope)?,
            from,
            text: text.clone(),
        },
        Command::MeIn { scope: to, text } => Event::Me {
            scope: named_scope(to, &scope)?,
            from,
            text: text.clone(),
        },
        _ => return None,
    };
    event(&ev, session, at)
}

/// Where `/say` and `/act` to `to` are said, given the current scope: global,
/// or the current group in its confirmed spelling. `None` for another group,
/// which the server refuses (so there is nothing to echo).
fn named_scope(to: &Scope, current: &Scope) -> Option<Scope> {
    match (to, current) {
        (Scope::Global, _) => Some(Scope::Global),
        (Scope::Group(g), Scope::Group(mine)) if g.key() == mine.key() => Some(current.clone()),
        (Scope::Group(_), _) => None,
    }
}

/// A server line that did not parse: shown, sanitised and clipped, rather than
/// dropped, so nothing the server says goes unseen.
pub(crate) fn unparsed(raw: &str, err: &ParseError, at: Stamp) -> Line {
    stamped(at).push(
        Style::Error,
        // The error quotes parts of the line (an unknown tag, say), so it is
        // network text too.
        format!(
            "?? unreadable line from the server ({}): {}",
            sanitize(&err.to_string()),
            sanitize_clipped(raw, RAW_SHOWN_CHARS)
        ),
    )
}

/// A server line the framer refused (too long, not UTF-8).
pub(crate) fn frame_error(err: &FrameError, at: Stamp) -> Line {
    stamped(at).push(
        Style::Error,
        format!("?? unreadable line from the server: {err}"),
    )
}

/// The command list, offline: chatproto's table plus this client's keys.
pub(crate) fn help() -> Vec<Line> {
    let mut lines = vec![Line::default().push(Style::Plain, "commands:")];
    // `/pong` is the client's business: it answers PING by itself.
    for (usage, what) in COMMAND_HELP.iter().filter(|(u, _)| !u.starts_with("/pong")) {
        lines.push(Line::default().push(Style::Plain, format!("  {usage:<20} {what}")));
    }
    lines.push(Line::default().push(
        Style::Dim,
        "keys: Enter sends, Tab completes, Up/Down history, Left/Right/Home/End (Ctrl+A/E, \
         Alt+B/F) move, Ctrl+W/U/K cut, Ctrl+Y pastes the cut, Ctrl+L clears the screen, \
         Ctrl+C clears the line or quits on an empty one, Ctrl+D quits on an empty line",
    ));
    lines.push(Line::default().push(
        Style::Dim,
        "full screen: Alt+1..9/0, Ctrl+N, Ctrl+P switch views, PgUp/PgDn scroll, \
         Ctrl+R searches, Alt+T shows seconds",
    ));
    lines
}

#[cfg(test)]
mod tests {
    use chatproto::parse_event;

    use super::*;

    const AT: Stamp = Stamp {
        hour: 12,
        minute: 4,
    };

    fn session(lines: &[&str]) -> Session {
        let mut s = Session::new();
        for l in lines {
            let _ = s.handle(&parse_event(l).unwrap());
        }
        s
    }

    fn alice() -> Session {
        session(&["WELCOME alice"])
    }

    fn text_of(line: &str, s: &Session) -> Option<String> {
        event(&parse_event(line).unwrap(), s, AT).map(|l| l.text())
    }

    #[test]
    fn renders_each_event_like_the_old_client() {
        let me = alice();
        let cases = [
            ("MSG * bob hello", "12:04 [Global] bob: hello"),
            ("MSG rust bob hello", "12:04 [rust] bob: hello"),
            (
                "MSG * bob   spaced  out ",
                "12:04 [Global] bob:   spaced  out ",
            ),
            ("ME * bob waves", "12:04 * bob waves"),
            ("ME rust bob waves", "12:04 [rust] * bob waves"),
            ("DM bob alice hi", "12:04 [DM] bob -> alice: hi"),
            ("DM Alice bob hi", "12:04 [DM] Alice -> bob: hi"),
            ("JOIN * carol", "12:04 -- carol connected"),
            ("JOIN rust carol", "12:04 -- carol joined rust"),
            ("JOIN rust alice", "12:04 -- alice joined rust"),
            ("PART rust carol", "12:04 -- carol left rust"),
            (
                "PART * carol ping-timeout",
                "12:04 -- carol disconnected (ping-timeout)",
            ),
            ("PART * carol", "12:04 -- carol disconnected"),
            (
                "NICK carol caroline",
                "12:04 -- carol is now known as caroline",
            ),
            ("WELCOME alicia", "12:04 -- you are now known as alicia"),
            (
                "USERS * alice bob",
                "12:04 -- 2 users in [Global]: alice, bob",
            ),
            ("USERS rust bob", "12:04 -- 1 user in [rust]: bob"),
            ("GROUPS rust=2 go=1", "12:04 -- 2 groups: rust (2), go (1)"),
            ("GROUPS go=1", "12:04 -- 1 group: go (1)"),
            ("GROUPS", "12:04 -- no groups yet; /join <group> starts one"),
            ("INFO some notice", "12:04 -- some notice"),
            (
                "ERR name-taken the name bob is taken",
                "12:04 !! the name bob is taken [name-taken]",
            ),
            ("PONG 42", "12:04 -- pong 42"),
            ("BYE quit", "12:04 -- disconnected, bye"),
            (
                "BYE server-shutdown",
                "12:04 !! the server closed the connection: server-shutdown",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(text_of(line, &me).as_deref(), Some(want), "{line}");
        }
        assert_eq!(text_of("PING 7", &me), None);
    }

    #[test]
    fn whois_reads_as_a_sentence() {
        let me = alice();
        assert_eq!(
            text_of("WHOIS bob rust 12 0", &me).as_deref(),
            Some("12:04 -- bob is in [rust], idle 12s"),
            "no sign-on time when the server does not know it"
        );
        assert_eq!(
            text_of("WHOIS bob * 3725 0", &me).as_deref(),
            Some("12:04 -- bob is in [Global], idle 1h 2m")
        );
        let known = text_of("WHOIS bob * 0 1764597720", &me).unwrap();
        assert!(known.contains(", idle 0s, here since "), "{known}");
        assert_eq!(
            [0, 59, 60, 61, 3599, 3600, 86_399, 90_000, u32::MAX].map(idle_label),
            [
                "0s",
                "59s",
                "1m 0s",
                "1m 1s",
                "59m 59s",
                "1h 0m",
                "23h 59m",
                "1d 1h",
                "49710d 6h"
            ]
        );
    }

    #[test]
    fn signon_shows_the_time_of_day_or_the_date() {
        let utc = |secs: i64| {
            jiff::Timestamp::from_second(secs)
                .unwrap()
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        };
        // 2025-12-01 14:02:00 UTC, asked about the same evening and a day later.
        let signon = 1_764_597_720;
        assert_eq!(
            signon_label(signon, &utc(1_764_615_600)).as_deref(),
            Some("14:02")
        );
        assert_eq!(
            signon_label(signon, &utc(1_764_684_000)).as_deref(),
            Some("2025-12-01 14:02")
        );
        assert_eq!(signon_label(0, &utc(1_764_615_600)), None, "unknown");
        assert_eq!(signon_label(u64::MAX, &utc(1_764_615_600)), None);
    }

    #[test]
    fn count_names_each_number() {
        let me = alice();
        assert_eq!(
            text_of("COUNT 3 1 4", &me).as_deref(),
            Some("12:04 -- 3 users, 1 group, 4 connections")
        );
        assert_eq!(
            text_of("COUNT 1 0 1", &me).as_deref(),
            Some("12:04 -- 1 user, 0 groups, 1 connection")
        );
    }

    #[test]
    fn greeting_and_first_welcome() {
        let new = Session::new();
        assert_eq!(
            text_of("HELLO chatd 0.1.0 who are you?", &new).unwrap(),
            "12:04 -- connected to chatd 0.1.0: who are you?"
        );
        assert_eq!(
            text_of("WELCOME alice", &new).unwrap(),
            "12:04 -- you are alice; /help lists the commands"
        );
    }

    #[test]
    fn own_messages_are_echoed_in_the_current_scope() {
        let me = session(&["WELCOME alice"]);
        let say = chatproto::parse_line("hello there").unwrap();
        assert_eq!(
            own(&say, &me, AT).unwrap().text(),
            "12:04 [Global] alice: hello there"
        );
        let me = session(&["WELCOME alice", "JOIN rust alice"]);
        assert_eq!(
            own(&say, &me, AT).unwrap().text(),
            "12:04 [rust] alice: hello there"
        );
        let act = chatproto::parse_line("/me waves").unwrap();
        assert_eq!(
            own(&act, &me, AT).unwrap().text(),
            "12:04 [rust] * alice waves"
        );
        // /say and /act: echoed in the scope named, the group as confirmed.
        let cases = [
            ("/say * hi all", Some("12:04 [Global] alice: hi all")),
            ("/say RUST hi", Some("12:04 [rust] alice: hi")),
            ("/act * waves", Some("12:04 * alice waves")),
            ("/act Rust nods", Some("12:04 [rust] * alice nods")),
            ("/say go hi", None),
        ];
        for (line, want) in cases {
            let cmd = chatproto::parse_line(line).unwrap();
            assert_eq!(
                own(&cmd, &me, AT).map(|l| l.text()).as_deref(),
                want,
                "{line}"
            );
        }
        let outside = session(&["WELCOME alice"]);
        let to_group = chatproto::parse_line("/say rust hi").unwrap();
        assert_eq!(own(&to_group, &outside, AT), None, "not in a group");
        // The server echoes DMs itself; commands have no echo.
        for line in ["/msg bob hi", "/join go", "/users"] {
            assert_eq!(
                own(&chatproto::parse_line(line).unwrap(), &me, AT),
                None,
                "{line}"
            );
        }
        // Before registration a plain line is a name.
        assert_eq!(own(&say, &Session::new(), AT), None);
    }

    #[test]
    fn colours_only_in_paint_and_only_when_asked() {
        let line = event(&parse_event("MSG * bob hi").unwrap(), &alice(), AT).unwrap();
        let plain = paint(&line, false);
        assert_eq!(plain, "12:04 [Global] bob: hi");
        assert!(!plain.contains('\x1b'));
        let coloured = paint(&line, true);
        let bob = format!("\x1b[38;5;{}mbob\x1b[0m", name_colour("bob"));
        assert!(coloured.contains(&bob), "{coloured:?}");
        assert!(coloured.starts_with("\x1b[2m12:04 \x1b[0m"), "{coloured:?}");
        let err = event(
            &parse_event("ERR bad-args usage: /join <group>").unwrap(),
            &alice(),
            AT,
        )
        .unwrap();
        assert!(
            paint(&err, true).starts_with("\x1b[2m12:04 \x1b[0m\x1b[31m!! usage"),
            "{:?}",
            paint(&err, true)
        );
        let info = event(&parse_event("INFO some news").unwrap(), &alice(), AT).unwrap();
        assert!(
            paint(&info, true).ends_with("\x1b[2m-- some news\x1b[0m"),
            "{:?}",
            paint(&info, true)
        );
        let join = event(&parse_event("JOIN * carol").unwrap(), &alice(), AT).unwrap();
        assert!(
            join.0.iter().skip(1).all(|s| s.style == Style::Dim),
            "{join:?}"
        );
    }

    #[test]
    fn own_lines_stand_out() {
        let me = alice();
        let say = chatproto::parse_line("hello").unwrap();
        let line = own(&say, &me, AT).unwrap();
        assert!(
            line.0
                .iter()
                .any(|s| s.style == Style::Own && s.text == "alice"),
            "{line:?}"
        );
        assert!(paint(&line, true).contains("\x1b[1malice\x1b[0m"));
        let theirs = event(&parse_event("MSG * bob hi").unwrap(), &me, AT).unwrap();
        assert!(
            !theirs.0.iter().any(|s| s.style == Style::Own),
            "{theirs:?}"
        );
    }

    #[test]
    fn name_colours_are_stable_and_spread() {
        assert_eq!(name_colour("bob"), name_colour("BOB"));
        assert_eq!(name_colour("bob"), name_colour("bob"));
        assert!(NAME_COLOURS.contains(&name_colour("anyone")));
        let names = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        ];
        let distinct: std::collections::HashSet<u8> =
            names.iter().map(|n| name_colour(n)).collect();
        assert!(
            distinct.len() >= 7,
            "only {} colours for 10 names",
            distinct.len()
        );
    }

    #[test]
    fn hostile_raw_lines_are_shown_escaped() {
        for raw in [
            "INFO \x1b]52;c;ZWNobyBwd25lZA==\x07",
            "MSG * bob \x1b[2J",
            "MSG * bob \u{9b}31m",
            "\x1b[1;1H\x1b[2JNOPE",
            "\u{202e}NOPE x",
        ] {
            let err = parse_event(raw).unwrap_err();
            let line = unparsed(raw, &err, AT);
            for coloured in [false, true] {
                let painted = paint(&line, coloured);
                // The only escapes are our own SGR sequences.
                let stripped = painted
                    .replace("\x1b[2m", "")
                    .replace("\x1b[31m", "")
                    .replace("\x1b[0m", "");
                assert!(!stripped.chars().any(|c| c.is_control()), "{painted:?}");
            }
            assert!(!line.text().contains('\u{202e}'), "{line:?}");
            assert!(
                line.text().contains("\\x1b")
                    || line.text().contains("\\u{9b}")
                    || line.text().contains("\\u{202e}"),
                "{line:?}"
            );
        }
        let huge = format!("NOPE {}", "x".repeat(1 << 20));
        let line = unparsed(&huge, &parse_event(&huge).unwrap_err(), AT);
        assert!(line.text().len() < 1000);
    }

    #[test]
    fn bidi_overrides_in_parsed_text_are_escaped() {
        // Bidi controls are not C0/C1, so chatproto lets them through as text.
        let ev =
            parse_event("MSG * bob see \u{202e}txt.exe\u{202c} and \u{2066}x\u{2069}").unwrap();
        assert_eq!(
            event(&ev, &alice(), AT).unwrap().text(),
            "12:04 [Global] bob: see \\u{202e}txt.exe\\u{202c} and \\u{2066}x\\u{2069}"
        );
        let ev = parse_event("ERR x-y \u{202e}gnorw").unwrap();
        assert!(event(&ev, &alice(), AT)
            .unwrap()
            .text()
            .contains("\\u{202e}gnorw"));
    }

    #[test]
    fn frame_errors_and_help() {
        let l = frame_error(&FrameError::BadEncoding { at: 3 }, AT);
        assert!(l.text().starts_with("12:04 ?? unreadable line"), "{l:?}");
        let help: Vec<String> = help().iter().map(Line::text).collect();
        assert_eq!(
            help.len(),
            COMMAND_HELP.len() + 2,
            "all but /pong, and two of keys"
        );
        assert!(!help.iter().any(|l| l.contains("/pong")), "{help:?}");
        assert!(help.iter().any(|l| l.contains("/join <group>")));
        assert!(help.iter().any(|l| l.contains("Ctrl+C")));
    }

    /// 2025-12-01 14:40:00 UTC, as PROTOCOL.md's example session.
    fn now_utc() -> jiff::ZonedDateTime {
        jiff::Timestamp::from_second(1_764_600_000)
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
    }

    fn past_of(line: &str) -> Past {
        match parse_event(line).unwrap() {
            Event::History(past) => past,
            other => panic!("not HISTORY: {other}"),
        }
    }

    #[test]
    fn history_is_stamped_when_said_marked_and_dimmed() {
        let now = now_utc();
        let me = alice();
        let shown = |line: &str| history(&past_of(line), &me, &now).text();
        // A minute before now, today: the stamp of then, `(history)`.
        assert_eq!(
            shown("HISTORY 7 1764599940000 MSG rust bob anyone here?"),
            "14:39 [rust] (history) bob: anyone here?"
        );
        assert_eq!(
            shown("HISTORY 8 1764599940000 ME * bob waves"),
            "14:39 (history) * bob waves"
        );
        // Another day: its date in the mark.
        assert_eq!(
            shown("HISTORY 2 1764513600000 MSG * bob yesterday's news"),
            "14:40 [Global] (history 2025-11-30) bob: yesterday's news"
        );
        // An offline DM, and a time the server did not know.
        assert_eq!(
            shown("HISTORY 16 0 DM bob alice see you tomorrow"),
            "14:40 (history, time unknown) [DM] bob -> alice: see you tomorrow"
        );
        // Sanitised as a live line is.
        assert_eq!(
            shown("HISTORY 9 1764599940000 MSG * bob \u{202e}txt.exe"),
            "14:39 [Global] (history) bob: \\u{202e}txt.exe"
        );
        // Dimmed but for the stamp and the scope label (which the full-screen
        // views take off); our own name is no longer bold either.
        let line = history(
            &past_of("HISTORY 7 1764599940000 MSG rust alice mine"),
            &me,
            &now,
        );
        let styles: Vec<Style> = line.0.iter().map(|s| s.style).collect();
        assert_eq!(styles[..3], [Style::Time, Style::Scope, Style::Plain]);
        assert!(
            line.0[3..].iter().all(|s| s.style == Style::Dim),
            "{line:?}"
        );
        // Through `event` too (it reads the real clock: only the mark is checked).
        let via_event = event(
            &parse_event("HISTORY 7 1764599940000 MSG rust bob hi").unwrap(),
            &me,
            AT,
        )
        .unwrap()
        .text();
        assert!(
            via_event.contains("(history 2025-12-01) bob: hi")
                || via_event.contains("(history) bob: hi"),
            "{via_event}"
        );
    }

    #[test]
    fn account_events_say_what_happened_in_bold() {
        let me = alice();
        let cases = [
            (
                "ACCOUNT alice registered",
                "12:04 -- account alice registered: you are logged in, and the name is yours",
            ),
            ("ACCOUNT alice logged-in", "12:04 -- logged in as alice"),
            (
                "ACCOUNT alice password-changed",
                "12:04 -- password of alice changed",
            ),
            (
                "ACCOUNT alice unregistered",
                "12:04 -- account alice deleted: the name is free for anyone once you leave it",
            ),
            ("ACCOUNT alice frozen", "12:04 -- account alice: frozen"),
        ];
        for (wire, want) in cases {
            let line = event(&parse_event(wire).unwrap(), &me, AT).unwrap();
            assert_eq!(line.text(), want);
            assert_eq!(line.0.last().unwrap().style, Style::Own, "{wire}");
        }
    }

    #[test]
    fn the_end_of_a_replay_says_how_to_page_back() {
        let rust = Scope::Group(chatproto::GroupName::try_from("rust").unwrap());
        let text = |count, first, asked| replayed(&rust, count, first, asked, AT).map(|l| l.text());
        assert_eq!(
            text(20, Some(41), false).as_deref(),
            Some("12:04 -- 20 earlier lines of [rust] above; /history 20 41 shows earlier ones")
        );
        assert_eq!(
            text(1, None, true).as_deref(),
            Some("12:04 -- 1 earlier line of [rust] above")
        );
        // A join to a new group replays nothing: not worth a line.
        assert_eq!(text(0, None, false), None);
        // A /history that found nothing says so.
        assert_eq!(
            text(0, None, true).as_deref(),
            Some("12:04 -- nothing earlier in [rust]")
        );
        // Never rendered by `event` itself: the caller knows what it answers.
        assert!(event(&parse_event("REPLAYED * 3").unwrap(), &alice(), AT).is_none());
    }
}
