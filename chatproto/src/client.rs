//! [`Session`]: a client's view of its own state, kept from the events it receives.

use std::collections::VecDeque;
use std::fmt;

use crate::{AccountState, Command, ErrorCode, Event, Name, Scope, Text};

/// What a client knows about itself: its name once registered, its current
/// scope, the names it asked for and has no answer to yet, and whether the
/// server said goodbye. Feed it every event received; it returns the replies a
/// client sends without asking its user (`/pong`).
///
/// ```
/// use chatproto::{parse_event, Command, Scope, Session};
/// let mut session = Session::new();
/// for line in ["HELLO chatd 0.1.0 who are you?", "WELCOME ann", "JOIN rust ann"] {
///     assert_eq!(session.handle(&parse_event(line).unwrap()), None);
/// }
/// assert_eq!(session.name().unwrap().as_str(), "ann");
/// assert_eq!(session.scope().as_str(), "rust");
/// let reply = session.handle(&parse_event("PING 7").unwrap());
/// assert_eq!(reply.unwrap().to_string(), "/pong 7");
/// ```
///
/// # Names asked for
/// A client that also tells the session what it sends
/// ([`note_sent`](Self::note_sent)) learns whether each name it asked for, by
/// `/nick` or (before registration) by a plain line, was accepted: the server
/// answers each such line, in order, with `WELCOME` or with `ERR name-taken`,
/// `ERR name-invalid` or `ERR name-reserved`.
/// [`pending_name`](Self::pending_name) is the name awaiting its answer, and
/// [`take_name_refusal`](Self::take_name_refusal) reports a refusal once. These
/// codes while no name is pending are not name refusals for the session (they
/// may answer another line). A plain line too long for the server gets `ERR line-too-long` instead and
/// stays pending; [`Command::nick`] checks the name before it is sent, so it
/// avoids that.
///
/// ```
/// use chatproto::{parse_event, Command, ErrorCode, Session};
/// let mut session = Session::new();
/// let ask = Command::say("ann").unwrap(); // before registration: the name
/// session.note_sent(&ask);
/// assert_eq!(session.pending_name(), Some("ann"));
/// let _ = session.handle(&parse_event("ERR name-taken the name ann is taken").unwrap());
/// let refusal = session.take_name_refusal().unwrap();
/// assert_eq!((refusal.name(), refusal.code()), ("ann", &ErrorCode::NameTaken));
/// assert_eq!(refusal.to_string(), "name ann refused: name-taken");
/// assert_eq!(session.pending_name(), None);
/// assert!(!session.is_registered()); // ask for another name
/// ```
#[derive(Clone, Debug, Default)]
pub struct Session {
    name: Option<Name>,
    /// The account logged in to, from `ACCOUNT`.
    account: Option<Name>,
    scope: Option<Scope>,
    closed: bool,
    /// Lines sent that ask for a name, oldest first, not answered yet.
    asked: VecDeque<Asked>,
    refusal: Option<NameRefusal>,
}

/// One line that asks for a name.
#[derive(Clone, Debug)]
struct Asked {
    name: Text,
    /// A plain line sent before registration while an earlier request was
    /// unanswered: it asks for a name only if every earlier one is refused, and
    /// is a chat message (with no answer) if one is accepted.
    if_refused: bool,
}

/// The server refused a name this session asked for: the answer
/// `ERR name-taken`, `ERR name-invalid` or `ERR name-reserved` to a `/nick` or,
/// before registration, to a plain line. See [`Session::take_name_refusal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameRefusal {
    name: Text,
    code: ErrorCode,
    text: Text,
}

impl NameRefusal {
    /// The name asked for, as sent (it need not be a valid [`Name`]).
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Why: [`ErrorCode::NameTaken`], [`ErrorCode::NameInvalid`] or
    /// [`ErrorCode::NameReserved`].
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The server's words for a person.
    pub fn text(&self) -> &Text {
        &self.text
    }
}

/// `name <name> refused: <code>`, for logs.
impl fmt::Display for NameRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name {} refused: {}", self.name, self.code)
    }
}

impl Session {
    /// A session that has not registered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The registered name, if any.
    pub fn name(&self) -> Option<&Name> {
        self.name.as_ref()
    }

    /// True once the server accepted a name.
    pub fn is_registered(&self) -> bool {
        self.name.is_some()
    }

    /// The current scope: where plain text goes.
    pub fn scope(&self) -> &Scope {
        self.scope.as_ref().unwrap_or(&Scope::Global)
    }

    /// The account this connection is logged in to, once the server said
    /// `ACCOUNT <name> registered` or `ACCOUNT <name> logged-in` (and until
    /// `ACCOUNT <name> unregistered`).
    ///
    /// ```
    /// use chatproto::{parse_event, Session};
    /// let mut session = Session::new();
    /// for line in ["WELCOME ann", "ACCOUNT ann logged-in", "HISTORY 3 0 DM bob ann hi"] {
    ///     let _ = session.handle(&parse_event(line).unwrap());
    /// }
    /// assert_eq!(session.account().unwrap().as_str(), "ann");
    /// ```
    pub fn account(&self) -> Option<&Name> {
        self.account.as_ref()
    }

    /// True after `BYE`.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True if `name` is this session's name (ignoring case).
    pub fn is_me(&self, name: &Name) -> bool {
        self.name.as_ref().is_some_and(|me| me.same_as(name))
    }

    /// Notes a command sent to the server, so the session knows which names
    /// it asked for (see [`pending_name`](Self::pending_name)). Call it for
    /// every command sent, in order, including the replies
    /// [`handle`](Self::handle) returned; commands that ask for no name are
    /// ignored. Optional: a client that never calls it gets no name refusals.
    pub fn note_sent(&mut self, cmd: &Command) {
        match cmd {
            Command::Nick(name) => self.asked.push_back(Asked {
                name: name.clone().into(),
                if_refused: false,
            }),
            // Before registration a plain line is the name; while an earlier
            // request is unanswered it depends on that answer.
            Command::Say(text) if !self.is_registered() => self.asked.push_back(Asked {
                name: text.clone(),
                if_refused: !self.asked.is_empty(),
            }),
            _ => {}
        }
    }

    /// The name asked for (by a command passed to
    /// [`note_sent`](Self::note_sent)) that the server has not answered yet,
    /// as sent; the oldest if several are.
    pub fn pending_name(&self) -> Option<&str> {
        self.asked.front().map(|a| a.name.as_str())
    }

    /// The last name refusal not taken yet, and clears it. Call it after
    /// [`handle`](Self::handle): a refused name is no longer pending, and a
    /// client that has not registered asks for another one.
    pub fn take_name_refusal(&mut self) -> Option<NameRefusal> {
        self.refusal.take()
    }

    /// Updates the state from one received event; returns the command to send
    /// back at once, if any.
    ///
    /// Render the event first if the rendering depends on the session: after
    /// `NICK` or `WELCOME` for a rename, [`name`](Self::name) is the new name.
    pub fn handle(&mut self, event: &Event) -> Option<Command> {
        match event {
            Event::Welcome(name) => {
                self.name = Some(name.clone());
                self.asked.pop_front();
                // Registered now: plain lines that waited on this answer were
                // chat messages, which get none.
                self.asked.retain(|a| !a.if_refused);
            }
            Event::Err {
                code:
                    code @ (ErrorCode::NameTaken | ErrorCode::NameInvalid | ErrorCode::NameReserved),
                text,
            } => {
                if let Some(asked) = self.asked.pop_front() {
                    self.refusal = Some(NameRefusal {
                        name: asked.name,
                        code: code.clone(),
                        text: text.clone(),
                    });
                    // Every earlier request was refused, so the next plain line
                    // asks for a name for sure.
                    if let Some(next) = self.asked.front_mut() {
                        next.if_refused = false;
                    }
                }
            }
            Event::Join {
                scope: scope @ Scope::Group(_),
                name,
            } if self.is_me(name) => {
                self.scope = Some(scope.clone());
            }
            Event::Part {
                scope: Scope::Group(g),
                name,
                ..
            } if self.is_me(name) && self.scope().group().is_some_and(|cur| cur.same_as(g)) => {
                self.scope = None;
            }
            Event::Nick { old, new } if self.is_me(old) => self.name = Some(new.clone()),
            Event::Account { name, state } => match state {
                AccountState::Registered | AccountState::LoggedIn => {
                    self.account = Some(name.clone());
                }
                AccountState::Unregistered => self.account = None,
                _ => {}
            },
            Event::Ping(token) => return Some(Command::Pong(token.clone())),
            Event::Bye(_) => {
                self.closed = true;
                self.asked.clear();
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_event, parse_line};

    fn feed(s: &mut Session, lines: &[&str]) {
        for l in lines {
            let _ = s.handle(&parse_event(l).unwrap());
        }
    }

    fn send(s: &mut Session, lines: &[&str]) {
        for l in lines {
            s.note_sent(&parse_line(l).unwrap());
        }
    }

    #[test]
    fn tracks_name_and_scope() {
        let mut s = Session::new();
        assert!(!s.is_registered());
        feed(&mut s, &["WELCOME Ann", "JOIN rust bob", "JOIN rust ann"]);
        assert_eq!(s.scope().as_str(), "rust");
        feed(&mut s, &["PART rust ann", "JOIN go ann"]);
        assert_eq!(s.scope().as_str(), "go");
        feed(&mut s, &["PART go bob"]);
        assert_eq!(s.scope().as_str(), "go");
        feed(&mut s, &["PART go ann"]);
        assert_eq!(*s.scope(), Scope::Global);
        feed(&mut s, &["WELCOME anna"]);
        assert_eq!(s.name().unwrap().as_str(), "anna");
        feed(&mut s, &["BYE quit"]);
        assert!(s.is_closed());
    }

    /// Lines sent, lines received, then the pending name and the refusal
    /// (`name code`) expected after them.
    #[test]
    fn names_asked_for_are_answered_in_order() {
        type Case<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            Option<&'a str>,
            Option<&'a str>,
        );
        let taken = "ERR name-taken the name is taken";
        let invalid = "ERR name-invalid name has ' ' at byte 3";
        let reserved = "ERR name-reserved the name root is reserved";
        let cases: &[Case<'_>] = &[
            (&["ann"], &[], Some("ann"), None),
            (&["ann"], &["WELCOME ann"], None, None),
            (&["ann"], &[taken], None, Some("ann name-taken")),
            (
                &["bob smith"],
                &[invalid],
                None,
                Some("bob smith name-invalid"),
            ),
            (&["/nick ann"], &[taken], None, Some("ann name-taken")),
            (&["root"], &[reserved], None, Some("root name-reserved")),
            // Commands that ask for no name change nothing.
            (&["/users", "/ping 1", "/join g"], &[taken], None, None),
            // The first name refused, the second (then certain to be a name) accepted.
            (
                &["ann", "bob"],
                &[taken],
                Some("bob"),
                Some("ann name-taken"),
            ),
            (
                &["ann", "bob"],
                &[taken, "WELCOME bob"],
                None,
                Some("ann name-taken"),
            ),
            (
                &["ann", "bob"],
                &[taken, taken],
                None,
                Some("bob name-taken"),
            ),
            // The first name accepted: the second line was a chat message.
            (&["ann", "hi all"], &["WELCOME ann"], None, None),
            (&["ann", "hi all"], &["WELCOME ann", taken], None, None),
            // A /nick behind it is answered whatever the first answer was.
            (
                &["ann", "hi", "/nick bo"],
                &["WELCOME ann"],
                Some("bo"),
                None,
            ),
            (
                &["ann", "/nick bo"],
                &["WELCOME ann", taken],
                None,
                Some("bo name-taken"),
            ),
            // BYE answers nothing but ends every request.
            (&["ann"], &["BYE server-shutdown"], None, None),
        ];
        for (sent, received, pending, refused) in cases {
            let mut s = Session::new();
            send(&mut s, sent);
            feed(&mut s, received);
            let what = format!("sent {sent:?}, received {received:?}");
            assert_eq!(s.pending_name(), *pending, "{what}");
            let refusal = s.take_name_refusal();
            let got = refusal.map(|r| format!("{} {}", r.name(), r.code()));
            assert_eq!(got.as_deref(), *refused, "{what}");
            assert_eq!(s.take_name_refusal(), None, "reported once: {what}");
        }
    }

    #[test]
    fn tracks_the_account_and_ignores_history() {
        let mut s = Session::new();
        send(&mut s, &["/login ann hunter22"]);
        assert_eq!(s.pending_name(), None, "a login asks for no name");
        feed(&mut s, &["WELCOME ann", "ACCOUNT ann logged-in"]);
        assert_eq!(s.account().unwrap().as_str(), "ann");
        // A replayed JOIN-less history line changes nothing, even one of
        // another scope or a DM.
        feed(&mut s, &["HISTORY 1 0 MSG rust bob hi", "REPLAYED rust 1"]);
        assert_eq!(*s.scope(), Scope::Global);
        feed(&mut s, &["ACCOUNT ann password-changed"]);
        assert_eq!(s.account().unwrap().as_str(), "ann");
        feed(&mut s, &["ACCOUNT ann unregistered"]);
        assert_eq!(s.account(), None);
        assert_eq!(s.name().unwrap().as_str(), "ann");
    }

    #[test]
    fn registered_plain_lines_ask_for_nothing() {
        let mut s = Session::new();
        feed(&mut s, &["WELCOME ann"]);
        send(&mut s, &["bob", "/me waves", "/msg bob hi", "/quit"]);
        assert_eq!(s.pending_name(), None);
    }

    #[test]
    fn refused_rename_keeps_the_name() {
        let mut s = Session::new();
        send(&mut s, &["ann"]);
        feed(&mut s, &["WELCOME ann"]);
        send(&mut s, &["/nick Bob"]);
        assert_eq!(s.pending_name(), Some("Bob"));
        feed(&mut s, &["ERR name-taken the name Bob is taken"]);
        assert_eq!(s.name().unwrap().as_str(), "ann");
        let refusal = s.take_name_refusal().unwrap();
        assert_eq!(refusal.text().as_str(), "the name Bob is taken");
        assert_eq!(refusal.to_string(), "name Bob refused: name-taken");
    }

    #[test]
    fn without_note_sent_nothing_is_pending_or_refused() {
        let mut s = Session::new();
        feed(
            &mut s,
            &["ERR name-taken the name ann is taken", "WELCOME bob"],
        );
        assert_eq!(s.take_name_refusal(), None);
        assert_eq!(s.pending_name(), None);
        assert_eq!(s.name().unwrap().as_str(), "bob");
    }
}
