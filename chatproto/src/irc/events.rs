//! Native events to IRC lines: [`IrcSession::on_event`], and
//! [`encode_shared`] for broadcasts encoded once per dialect.

use std::sync::Arc;

use super::message::encode_message;
use super::session::{
    echo, echo_trailing, Caps, Delivery, IrcConfig, IrcSession, Pending, Via, NICKSERV,
};
use crate::server::Outgoing;
use crate::{AccountState, ErrorCode, Event, Name, Scope, Text};

/// The longest line body, CRLF excluded (tags do not count).
const MAX_BODY: usize = super::message::MAX_LINE_LEN - 2;

/// The target of numerics: the nick, or `*` before registration.
pub(super) fn numeric_target(nick: Option<&Name>) -> String {
    nick.map_or_else(|| "*".to_owned(), |n| n.as_str().to_owned())
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC with
/// milliseconds, as IRCv3 `server-time` wants: `2026-12-01T10:00:00.000Z`.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let ms = unix_ms % 1000;
    let secs = unix_ms / 1000;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let (year, month, day) = civil_from_days(secs / 86_400);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for non-negative days): eras of 400 years
/// repeat exactly, and counting years from March puts the leap day last.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365, from March 1
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// IRC lines being written for one dialect.
#[derive(Debug)]
pub(super) struct Lines<'c> {
    config: &'c IrcConfig,
    caps: Caps,
    out: Vec<u8>,
}

impl<'c> Lines<'c> {
    pub(super) fn new(config: &'c IrcConfig, caps: Caps) -> Self {
        Self {
            config,
            caps,
            out: Vec::new(),
        }
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.out
    }

    /// One line; one that cannot be encoded (a bug, or a config string with a
    /// space) is left out rather than sent broken.
    fn put(&mut self, stamp: Option<&Outgoing>, source: Option<&str>, cmd: &str, params: &[&str]) {
        let time;
        let id;
        let mut tags: Vec<(&str, Option<&str>)> = Vec::new();
        if let Some(o) = stamp {
            if self.caps.contains(Caps::SERVER_TIME) && o.unix_ms() != 0 {
                time = rfc3339_ms(o.unix_ms());
                tags.push(("time", Some(&time)));
            }
            if self.caps.contains(Caps::MESSAGE_TAGS) && o.id() != 0 {
                id = o.id().to_string();
                tags.push(("msgid", Some(&id)));
            }
        }
        let result = encode_message(&mut self.out, &tags, source, cmd, params);
        debug_assert!(result.is_ok(), "{cmd} {params:?}: {result:?}");
    }

    /// A numeric from the server to `me`; a last parameter written `:text`
    /// loses its `:` (the encoder adds one where needed).
    pub(super) fn numeric(&mut self, me: &str, code: &str, params: &[&str]) {
        let mut all: Vec<&str> = Vec::with_capacity(params.len() + 1);
        all.push(me);
        all.extend_from_slice(params);
        if let Some(last) = all.last_mut() {
            if let Some(text) = last.strip_prefix(':') {
                *last = text;
            }
        }
        let server = self.config.server_name.clone();
        self.put(None, Some(&server), code, &all);
    }

    /// A command from the server, parameters as they are.
    pub(super) fn server_line(&mut self, cmd: &str, params: &[&str]) {
        let server = self.config.server_name.clone();
        self.put(None, Some(&server), cmd, params);
    }

    /// A `NOTICE` from the server to `me`.
    pub(super) fn server_notice(&mut self, me: &str, text: &str) {
        let text = echo_trailing(text);
        self.server_line("NOTICE", &[me, &text]);
    }

    /// A `NOTICE` from NickServ to `me`.
    pub(super) fn nickserv_notice(&mut self, me: &str, text: &str) {
        let source = format!("{NICKSERV}!{NICKSERV}@{}", self.config.server_name);
        let text = echo_trailing(text);
        self.put(None, Some(&source), "NOTICE", &[me, &text]);
    }

    /// Bytes already encoded (held lines).
    pub(super) fn extend(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// `ERROR :text`.
    pub(super) fn error(&mut self, text: &str) {
        self.put(None, None, "ERROR", &[text]);
    }

    fn source(&self, nick: &Name) -> String {
        format!("{nick}!{nick}@{}", self.config.user_host)
    }

    /// A command from a user.
    pub(super) fn user_line(&mut self, nick: &Name, cmd: &str, params: &[&str]) {
        let source = self.source(nick);
        self.put(None, Some(&source), cmd, params);
    }

    fn stamped_from_user(&mut self, o: &Outgoing, nick: &Name, cmd: &str, params: &[&str]) {
        let source = self.source(nick);
        self.put(Some(o), Some(&source), cmd, params);
    }

    /// `PRIVMSG target :text` from `from`, split into as many lines as the
    /// text needs, at UTF-8 boundaries; an action is wrapped in CTCP on each.
    fn chat(&mut self, o: &Outgoing, from: &Name, target: &str, text: &str, action: bool) {
        let source = self.source(from);
        // ":source PRIVMSG target :" and, for an action, "\x01ACTION " and "\x01".
        let overhead = source.len() + target.len() + 13 + if action { 9 } else { 0 };
        let budget = MAX_BODY.saturating_sub(overhead);
        for chunk in split_utf8(text, budget) {
            if action {
                let wrapped = format!("\u{1}ACTION {chunk}\u{1}");
                self.put(Some(o), Some(&source), "PRIVMSG", &[target, &wrapped]);
            } else {
                self.put(Some(o), Some(&source), "PRIVMSG", &[target, chunk]);
            }
        }
    }
}

/// `text` cut into pieces of at most `max` bytes at character boundaries
/// (each piece holds at least one character, so this always ends).
fn split_utf8(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(max.max(1));
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// The channel for a scope: `#g`, or the global channel if there is one.
fn channel(scope: &Scope, config: &IrcConfig) -> Option<String> {
    match scope {
        Scope::Global => config.global_channel.clone(),
        Scope::Group(g) => Some(format!("#{g}")),
    }
}

/// The IRC lines of a broadcast (`MSG`, `ME`, `JOIN`, `PART`, `NICK` reaching
/// many) for every connection whose [`Caps::dialect`] is `caps.dialect()`:
/// they do not depend on the recipient, so a driver encodes each broadcast
/// once per dialect and shares the bytes. Empty for other events, and for
/// global events when there is no global channel.
///
/// `PART * name reason` (a user left the server) becomes `QUIT :reason`,
/// which IRC clients apply to every channel they share with the user.
pub fn encode_shared(event: &Outgoing, caps: Caps, config: &IrcConfig) -> Arc<[u8]> {
    let mut r = Lines::new(config, caps.dialect());
    match event.event() {
        Event::Msg { scope, from, text } | Event::Me { scope, from, text } => {
            if let Some(c) = channel(scope, config) {
                let action = matches!(event.event(), Event::Me { .. });
                r.chat(event, from, &c, text.as_str(), action);
            }
        }
        Event::Join { scope, name } => {
            if let Some(c) = channel(scope, config) {
                r.stamped_from_user(event, name, "JOIN", &[&c]);
            }
        }
        Event::Part {
            scope: Scope::Group(g),
            name,
            reason,
        } => {
            let c = format!("#{g}");
            match reason {
                Some(reason) => r.stamped_from_user(event, name, "PART", &[&c, reason.as_str()]),
                None => r.stamped_from_user(event, name, "PART", &[&c]),
            }
        }
        Event::Part {
            scope: Scope::Global,
            name,
            reason,
        } => {
            let reason = reason.as_ref().map_or("", Text::as_str);
            r.stamped_from_user(event, name, "QUIT", &[reason]);
        }
        Event::Nick { old, new } => r.stamped_from_user(event, old, "NICK", &[new.as_str()]),
        _ => {}
    }
    r.into_bytes().into()
}

impl IrcSession {
    /// Handles one event the server delivered to this connection: what to
    /// send to the client.
    ///
    /// Between a SASL login and `CAP END`, what the registration brings
    /// (`001` and on) is held back and comes with the reply to `CAP END`;
    /// only the answer to `AUTHENTICATE` goes out at once.
    pub fn on_event(&mut self, event: &Outgoing) -> Delivery {
        let delivery = self.deliver(event);
        let Some(held) = &mut self.held else {
            return delivery;
        };
        if matches!(event.event(), Event::Account { .. }) || matches!(delivery, Delivery::Nothing) {
            return delivery;
        }
        let bytes = match delivery {
            Delivery::Lines(lines) => lines,
            Delivery::Shared => encode_shared(event, self.caps, &self.config).to_vec(),
            Delivery::Nothing => Vec::new(),
        };
        if held.len() + bytes.len() <= super::session::MAX_HELD {
            held.extend_from_slice(&bytes);
        }
        Delivery::Nothing
    }

    fn deliver(&mut self, event: &Outgoing) -> Delivery {
        if self.closed {
            return Delivery::Nothing;
        }
        let config = self.config.clone();
        let mut r = Lines::new(&config, self.caps);
        let me = numeric_target(self.nick.as_ref());
        let nick = self.nick.clone();
        let is_me = |n: &Name| nick.as_ref().is_some_and(|m| m.same_as(n));
        let echo = self.caps.contains(Caps::ECHO_MESSAGE);
        let shared = match event.event() {
            // One's own line comes only with echo-message (the server sends
            // it only after `/echo on`).
            Event::Msg { scope, from, .. } | Event::Me { scope, from, .. } => {
                (!is_me(from) || echo) && self.wants(scope)
            }
            Event::Join { scope, name } => !is_me(name) && self.wants(scope),
            // A departure (`PART *`, as `QUIT`) is shown even after `PART
            // &global` or without a global channel: IRC clients need it to
            // take the user out of the group channel they shared.
            Event::Part { name, .. } => !is_me(name),
            Event::Nick { old, .. } => !is_me(old),
            _ => false,
        };
        if shared {
            return Delivery::Shared;
        }
        match event.event() {
            Event::Welcome(name) => {
                self.take(|p| matches!(p, Pending::Nick(_)));
                match self.nick.replace(name.clone()) {
                    None => {
                        self.registration_refused();
                        if self.negotiating() {
                            // A SASL login registered it before `CAP END`.
                            self.held = Some(Vec::new());
                        }
                        self.welcome(&mut r);
                        // The names follow: `/users` went out with the nick.
                        if let Some(global) = &config.global_channel {
                            self.in_global = true;
                            r.user_line(name, "JOIN", &[global]);
                        }
                    }
                    Some(old) if old != *name => r.user_line(&old, "NICK", &[name.as_str()]),
                    Some(_) => {}
                }
            }
            Event::Dm { from, to, text } => {
                if is_me(from) {
                    self.take(|p| matches!(p, Pending::Msg { .. }));
                }
                // The sender's copy is a confirmation IRC shows only with
                // echo-message, or when it was sent to oneself.
                if !is_me(from) || is_me(to) || echo {
                    let (action, text) = match text.as_str().strip_prefix("/me ") {
                        Some(action) => (true, action),
                        None => (false, text.as_str()),
                    };
                    r.chat(event, from, to.as_str(), text, action);
                }
            }
            Event::Join {
                scope: Scope::Group(g),
                name,
            } if is_me(name) => {
                self.take(|p| *p == Pending::Join);
                self.group = Some(g.clone());
                let c = format!("#{g}");
                r.stamped_from_user(event, name, "JOIN", &[&c]);
            }
            Event::Part {
                scope: Scope::Group(g),
                name,
                ..
            } if is_me(name) => {
                self.take(|p| *p == Pending::Leave);
                self.group = None;
                r.stamped_from_user(event, name, "PART", &[&format!("#{g}")]);
            }
            Event::Users { scope, names } => {
                let pending = self.take(|p| matches!(p, Pending::Names | Pending::Who));
                // The scope the server listed: the group as its creator
                // spelled it, or global (even if the client asked about a
                // channel it has just left).
                match (pending, channel(scope, &config)) {
                    (Some(Pending::Names), Some(c)) => self.names_reply(&mut r, &c, names),
                    (Some(Pending::Who), Some(c)) => {
                        for n in names {
                            self.who_line(&mut r, &c, n);
                        }
                        r.numeric(&me, "315", &[&c, ":End of /WHO list"]);
                    }
                    _ => {}
                }
            }
            Event::Groups(groups) if self.take(|p| *p == Pending::List).is_some() => {
                for (g, n) in groups {
                    let c = format!("#{g}");
                    r.numeric(&me, "322", &[&c, &n.to_string(), ":"]);
                }
                r.numeric(&me, "323", &[":End of /LIST"]);
            }
            Event::Info(text) => r.server_notice(&me, text.as_str()),
            Event::Err { code, text } => {
                if let (Some(Pending::Said { channel, n }), ErrorCode::NotInGroup) =
                    (self.pending.front_mut(), code)
                {
                    // One of these group messages came after the group was left.
                    let c = channel.clone();
                    *n -= 1;
                    if *n == 0 {
                        self.pending.pop_front();
                    }
                    r.numeric(&me, "404", &[&c, ":Cannot send to channel (you left it)"]);
                } else {
                    let pending = self.take(|_| true);
                    self.refused(&mut r, &me, pending, code, text);
                }
            }
            Event::Whois {
                name,
                scope,
                idle,
                signon,
            } => match self.take(|p| matches!(p, Pending::Whois(_) | Pending::WhoNick(_))) {
                Some(Pending::Whois(_)) => self.whois_reply(&mut r, name, scope, *idle, *signon),
                Some(Pending::WhoNick(mask)) => {
                    self.who_line(&mut r, "*", name);
                    r.numeric(&me, "315", &[&mask, ":End of /WHO list"]);
                }
                _ => {}
            },
            Event::Count {
                users,
                groups,
                connections,
            } if self.take(|p| *p == Pending::Lusers).is_some() => {
                let users_line = format!(":There are {users} users and 0 invisible on 1 servers");
                r.numeric(&me, "251", &[&users_line]);
                let unknown = connections.saturating_sub(*users);
                if unknown > 0 {
                    r.numeric(
                        &me,
                        "253",
                        &[&unknown.to_string(), ":unknown connection(s)"],
                    );
                }
                r.numeric(&me, "254", &[&groups.to_string(), ":channels formed"]);
                let clients = format!(":I have {connections} clients and 0 servers");
                r.numeric(&me, "255", &[&clients]);
            }
            Event::Account { name, state } => {
                let via = match self.take(|p| matches!(p, Pending::Account(_))) {
                    Some(Pending::Account(via)) => Some(via),
                    _ => None,
                };
                self.account_reply(&mut r, &me, via, name, state);
            }
            Event::History(past) => self.replayed(&mut r, event, past.event()),
            // The end of a replay: IRC has no marker for it without
            // `batch`, which this adapter does not offer.
            Event::Replayed { .. } => {}
            Event::Ping(token) => r.put(None, None, "PING", &[token.as_str()]),
            Event::Bye(reason) => {
                self.closed = true;
                r.error(&format!("Closing link: ({reason})"));
            }
            // HELLO, PONG (never asked for), and events of newer servers.
            _ => {}
        }
        let bytes = r.into_bytes();
        if bytes.is_empty() {
            Delivery::Nothing
        } else {
            Delivery::Lines(bytes)
        }
    }

    /// True if this connection shows events of `scope`.
    fn wants(&self, scope: &Scope) -> bool {
        match scope {
            Scope::Global => self.in_global && self.config.global_channel.is_some(),
            Scope::Group(_) => true,
        }
    }

    /// Pops the oldest pending reply if it is the one `want` says. Group
    /// messages before it were answered by nothing: they went through.
    fn take(&mut self, want: impl Fn(&Pending) -> bool) -> Option<Pending> {
        while matches!(self.pending.front(), Some(Pending::Said { .. })) {
            self.pending.pop_front();
        }
        if self.pending.front().is_some_and(want) {
            self.pending.pop_front()
        } else {
            None
        }
    }

    /// What an `ACCOUNT` event becomes: `900` (logged in) for a login or a
    /// registration, with `903` after SASL and NickServ's words after its
    /// commands; a notice for the rest.
    fn account_reply(
        &mut self,
        r: &mut Lines<'_>,
        me: &str,
        via: Option<Via>,
        name: &Name,
        state: &AccountState,
    ) {
        let logged_in = matches!(state, AccountState::LoggedIn | AccountState::Registered);
        if logged_in {
            let mask = format!("{me}!{me}@{}", self.config.user_host);
            let text = format!(":You are now logged in as {name}");
            r.numeric(me, "900", &[&mask, name.as_str(), &text]);
        }
        match (via, state) {
            (Some(Via::Sasl), _) if logged_in => {
                r.numeric(me, "903", &[":SASL authentication successful"]);
            }
            (Some(Via::NickServ), AccountState::Registered) => {
                r.nickserv_notice(me, &format!("Account {name} registered; you are logged in"));
            }
            (Some(Via::NickServ), AccountState::LoggedIn) => {
                r.nickserv_notice(me, &format!("You are now identified for {name}"));
            }
            (_, AccountState::PasswordChanged) => {
                r.nickserv_notice(me, &format!("The password of {name} was changed"));
            }
            (_, AccountState::Unregistered) => {
                r.nickserv_notice(me, &format!("Account {name} was dropped"));
            }
            _ => {}
        }
    }

    /// A line from the past (`HISTORY`): the `PRIVMSG` it was, stamped with
    /// its own time (`server-time`) and id (`message-tags`); a client without
    /// `server-time` sees the time at the start of the text instead.
    fn replayed(&mut self, r: &mut Lines<'_>, o: &Outgoing, past: &Event) {
        let when = if self.caps.contains(Caps::SERVER_TIME) || o.unix_ms() == 0 {
            String::new()
        } else {
            let t = rfc3339_ms(o.unix_ms());
            // `2026-12-01T10:00:00.000Z` as `[2026-12-01 10:00] `.
            format!("[{} {}] ", &t[..10], &t[11..16])
        };
        let (target, from, text, action) = match past {
            Event::Msg { scope, from, text } | Event::Me { scope, from, text } => {
                let Some(c) = channel(scope, &self.config) else {
                    return;
                };
                if !self.wants(scope) {
                    return;
                }
                (c, from, text.as_str(), matches!(past, Event::Me { .. }))
            }
            Event::Dm { from, to, text } => match text.as_str().strip_prefix("/me ") {
                Some(action) => (to.as_str().to_owned(), from, action, true),
                None => (to.as_str().to_owned(), from, text.as_str(), false),
            },
            _ => return,
        };
        r.chat(o, from, &target, &format!("{when}{text}"), action);
    }

    /// `001`-`005` and the MOTD.
    fn welcome(&self, r: &mut Lines<'_>) {
        let me = numeric_target(self.nick.as_ref());
        let c = &self.config;
        r.numeric(
            &me,
            "001",
            &[&format!(":Welcome to the {} IRC network, {me}", c.network)],
        );
        r.numeric(
            &me,
            "002",
            &[&format!(
                ":Your host is {}, running version {}",
                c.server_name, c.version
            )],
        );
        let created = if c.created.is_empty() {
            "This server has no creation date on record".to_owned()
        } else {
            format!("This server was created {}", c.created)
        };
        r.numeric(&me, "003", &[&format!(":{created}")]);
        // User modes: `i` (WHO shows nobody outside shared channels); channel
        // modes: `n` (only members speak), `t` (nobody sets the topic).
        r.numeric(&me, "004", &[&c.server_name, &c.version, "i", "nt"]);
        let network = format!("NETWORK={}", c.network);
        r.numeric(
            &me,
            "005",
            &[
                "CASEMAPPING=ascii",
                "CHANLIMIT=#:1,&:1",
                "CHANMODES=,,,nt",
                "CHANNELLEN=33",
                "CHANTYPES=#&",
                &network,
                "NICKLEN=32",
                "PREFIX=",
                "TARGMAX=JOIN:1,PART:1,PRIVMSG:1,NOTICE:1",
                "UTF8ONLY",
                ":are supported by this server",
            ],
        );
        self.motd(r);
    }

    /// `311`, `319`, `312`, `301`, `317`, `318` from a native `WHOIS`.
    fn whois_reply(&self, r: &mut Lines<'_>, name: &Name, scope: &Scope, idle: u32, signon: u64) {
        let me = numeric_target(self.nick.as_ref());
        let c = &self.config;
        let n = name.as_str();
        r.numeric(&me, "311", &[n, n, &c.user_host, "*", &format!(":{n}")]);
        // Everyone is in the global scope; a group member in its group too.
        let mut channels: Vec<String> = c.global_channel.iter().cloned().collect();
        if let Scope::Group(g) = scope {
            channels.push(format!("#{g}"));
        }
        if !channels.is_empty() {
            r.numeric(&me, "319", &[n, &format!(":{}", channels.join(" "))]);
        }
        r.numeric(&me, "312", &[n, &c.server_name, &format!(":{}", c.network)]);
        if self.nick.as_ref() == Some(name) {
            if let Some(away) = self.away() {
                r.numeric(&me, "301", &[n, &format!(":{}", echo_trailing(away))]);
            }
        }
        let (idle, signon) = (idle.to_string(), signon.to_string());
        r.numeric(
            &me,
            "317",
            &[n, &idle, &signon, ":seconds idle, signon time"],
        );
        r.numeric(&me, "318", &[n, ":End of /WHOIS list"]);
    }

    /// `353` lines (as many as the names need) and `366`.
    fn names_reply(&self, r: &mut Lines<'_>, channel: &str, names: &[Name]) {
        let me = numeric_target(self.nick.as_ref());
        let full = self.caps.contains(Caps::USERHOST_IN_NAMES);
        let host = &self.config.user_host;
        let entries: Vec<String> = names
            .iter()
            .map(|n| {
                if full {
                    format!("{n}!{n}@{host}")
                } else {
                    n.to_string()
                }
            })
            .collect();
        // ":server 353 me = channel :"
        let overhead = self.config.server_name.len() + me.len() + channel.len() + 12;
        let budget = MAX_BODY.saturating_sub(overhead);
        let mut line = String::new();
        for entry in entries {
            if !line.is_empty() && line.len() + 1 + entry.len() > budget {
                r.numeric(&me, "353", &["=", channel, &std::mem::take(&mut line)]);
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&entry);
        }
        if !line.is_empty() {
            r.numeric(&me, "353", &["=", channel, &line]);
        }
        r.numeric(&me, "366", &[channel, ":End of /NAMES list"]);
    }

    /// A native `ERR` as IRC: the numeric for the command it refuses, or a
    /// `NOTICE` with the server's words.
    fn refused(
        &mut self,
        r: &mut Lines<'_>,
        me: &str,
        pending: Option<Pending>,
        code: &ErrorCode,
        text: &Text,
    ) {
        match (pending, code) {
            // The nick sent with a successful `PASS` login: 001 already
            // named the account.
            (Some(Pending::Nick(_)), ErrorCode::LoggedIn) if self.nick_after_pass => {
                self.nick_after_pass = false;
            }
            (Some(Pending::Nick(n)), ErrorCode::NameTaken) => {
                self.registration_refused();
                r.numeric(me, "433", &[n.as_str(), ":Nickname is already in use"]);
            }
            (Some(Pending::Nick(n)), _) => {
                // Reserved names get 432 too: they can never be had, so a
                // client should not retry them later.
                self.registration_refused();
                let why = format!(":Erroneous nickname: {}", echo_trailing(text.as_str()));
                r.numeric(me, "432", &[n.as_str(), &why]);
            }
            (Some(Pending::Msg { notice: true, .. }), _) => {}
            (Some(Pending::Msg { target, .. }), ErrorCode::NoSuchUser) => {
                r.numeric(me, "401", &[&echo(&target), ":No such nick/channel"]);
            }
            (Some(Pending::Join), ErrorCode::AlreadyInGroup) => {}
            // The names asked for with a registration the server refused.
            (Some(Pending::Names), ErrorCode::NotRegistered) => {}
            (Some(Pending::Whois(t)), ErrorCode::NoSuchUser) => {
                r.numeric(me, "401", &[&t, ":No such nick/channel"]);
                r.numeric(me, "318", &[&t, ":End of /WHOIS list"]);
            }
            (Some(Pending::WhoNick(mask)), ErrorCode::NoSuchUser) => {
                r.numeric(me, "315", &[&mask, ":End of /WHO list"]);
            }
            (Some(Pending::Account(Via::NickServ)), _) => r.nickserv_notice(me, text.as_str()),
            (Some(Pending::Account(Via::Sasl)), _) => {
                r.numeric(me, "904", &[":SASL authentication failed"]);
            }
            (Some(Pending::Account(Via::Pass)), _) => {
                self.nick_after_pass = false;
                r.numeric(me, "464", &[":Password incorrect"]);
            }
            (_, ErrorCode::NotRegistered) => r.numeric(me, "451", &[":You have not registered"]),
            (_, code) => r.server_notice(me, &format!("{code}: {text}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::parse_line;
    use crate::server::{ConnId, Effect, Input, Server, ServerConfig, Time};

    #[test]
    fn shared_encodings_of_each_broadcast() {
        let mut server = Server::new(ServerConfig::default());
        let t = Time {
            instant: Instant::now(),
            unix_ms: 1_796_119_200_000,
        };
        let (ann, bob) = (ConnId::new(1), ConnId::new(2));
        for (c, name) in [(ann, "ann"), (bob, "bob")] {
            let _ = server.handle(t, Input::Connected(c));
            let _ = server.handle(t, Input::Line(c, parse_line(name).unwrap()));
        }
        let _ = server.handle(t, Input::Line(bob, parse_line("/join g").unwrap()));
        let cases: &[(&str, &str)] = &[
            ("hi there", ":ann!ann@hidden PRIVMSG &global :hi there"),
            (
                "/me waves",
                ":ann!ann@hidden PRIVMSG &global :\u{1}ACTION waves\u{1}",
            ),
            ("/join g", ":ann!ann@hidden JOIN #g"),
            (":-)", ":ann!ann@hidden PRIVMSG #g ::-)"),
            ("/leave", ":ann!ann@hidden PART #g"),
            ("/nick anne", ":ann!ann@hidden NICK anne"),
            ("/quit gone", ":anne!anne@hidden QUIT gone"),
        ];
        let config = IrcConfig::default();
        for (line, want) in cases {
            let effects = server.handle(t, Input::Line(ann, parse_line(line).unwrap()));
            let event = effects
                .into_iter()
                .find_map(|e| match e {
                    Effect::Deliver { to, event } if to == bob => Some(event),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{line}: nothing for bob"));
            let plain = encode_shared(&event, Caps::NONE, &config);
            assert_eq!(*plain, *format!("{want}\r\n").as_bytes(), "{line}");
            // Capabilities that do not change the dialect change nothing.
            let same = encode_shared(
                &event,
                Caps::USERHOST_IN_NAMES.with(Caps::CAP_NOTIFY),
                &config,
            );
            assert_eq!(plain, same);
            let tagged = encode_shared(&event, Caps::SERVER_TIME.with(Caps::MESSAGE_TAGS), &config);
            let prefix = format!("@time=2026-12-01T10:00:00.000Z;msgid={} ", event.id());
            assert_eq!(*tagged, *format!("{prefix}{want}\r\n").as_bytes(), "{line}");
        }
        // Non-broadcasts have no shared encoding.
        let effects = server.handle(t, Input::Line(bob, parse_line("/users").unwrap()));
        let Some(Effect::Deliver { event, .. }) = effects.first() else {
            panic!("{effects:?}")
        };
        assert!(encode_shared(event, Caps::NONE, &config).is_empty());
    }

    #[test]
    fn rfc3339_on_known_dates() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00.000Z"),
            (1, "1970-01-01T00:00:00.001Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"), // leap year divisible by 400
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (951_868_800_000, "2000-03-01T00:00:00.000Z"),
            (1_709_164_800_000, "2024-02-29T00:00:00.000Z"),
            (1_709_251_200_000, "2024-03-01T00:00:00.000Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"), // 2100 is no leap year
            (4_107_456_000_000, "2100-02-28T00:00:00.000Z"),
            (1_798_761_599_123, "2026-12-31T23:59:59.123Z"),
            (1_798_761_600_000, "2027-01-01T00:00:00.000Z"),
            (1_234_567_890_000, "2009-02-13T23:31:30.000Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(rfc3339_ms(*ms), *want, "{ms}");
        }
    }

    #[test]
    fn split_keeps_every_byte_and_boundaries() {
        let text = "aé€😀".repeat(50);
        for max in [1, 2, 3, 4, 5, 7, 100, 1000] {
            let pieces: Vec<&str> = split_utf8(&text, max).collect();
            assert_eq!(pieces.concat(), text, "{max}");
            assert!(pieces
                .iter()
                .all(|p| !p.is_empty() && (p.len() <= max || p.chars().count() == 1)));
        }
        assert_eq!(split_utf8("", 5).count(), 0);
    }
}
