//! [`Session`]: a client's view of its own state, kept from the events it receives.

use crate::{Command, Event, Name, Scope};

/// What a client knows about itself: its name once registered, its current
/// scope, and whether the server said goodbye. Feed it every event received;
/// it returns the replies a client sends without asking its user (`/pong`).
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
#[derive(Clone, Debug, Default)]
pub struct Session {
    name: Option<Name>,
    scope: Option<Scope>,
    closed: bool,
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

    /// True after `BYE`.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True if `name` is this session's name (ignoring case).
    pub fn is_me(&self, name: &Name) -> bool {
        self.name.as_ref().is_some_and(|me| me.same_as(name))
    }

    /// Updates the state from one received event; returns the command to send
    /// back at once, if any.
    ///
    /// Render the event first if the rendering depends on the session: after
    /// `NICK` or `WELCOME` for a rename, [`name`](Self::name) is the new name.
    pub fn handle(&mut self, event: &Event) -> Option<Command> {
        match event {
            Event::Welcome(name) => self.name = Some(name.clone()),
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
            Event::Ping(token) => return Some(Command::Pong(token.clone())),
            Event::Bye(_) => self.closed = true,
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_event;

    fn feed(s: &mut Session, lines: &[&str]) {
        for l in lines {
            let _ = s.handle(&parse_event(l).unwrap());
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
}
