//! Who is where, as far as the server's lines tell: the member list of the current
//! scope (from `USERS` replies, kept current by `JOIN`, `PART` and `NICK`), every
//! name seen, and the group names from `GROUPS` and `JOIN`. Pure; feeds the member
//! list and Tab completion.

use std::collections::BTreeMap;

use chatproto::{Event, Scope, Session};

/// Names are unique ignoring ASCII case: the key is the lower-case form, the
/// value the spelling last seen.
type Names = BTreeMap<String, String>;

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[derive(Debug, Default)]
pub(crate) struct Roster {
    /// The members of the current scope; `None` until a `USERS` reply for it.
    members: Option<Names>,
    everyone: Names,
    groups: Names,
}

impl Roster {
    /// The member list, sorted ignoring case; empty until the server listed it.
    pub(crate) fn members(&self) -> Vec<&str> {
        self.members
            .iter()
            .flat_map(|m| m.values().map(String::as_str))
            .collect()
    }

    pub(crate) fn everyone(&self) -> Vec<&str> {
        self.everyone.values().map(String::as_str).collect()
    }

    pub(crate) fn groups(&self) -> Vec<&str> {
        self.groups.values().map(String::as_str).collect()
    }

    /// Forget the member list (the scope changed, or the connection).
    pub(crate) fn scope_changed(&mut self) {
        self.members = None;
    }

    fn add_member(&mut self, name: &str) {
        if let Some(m) = &mut self.members {
            m.insert(key(name), name.to_owned());
        }
    }

    fn remove_member(&mut self, name: &str) {
        if let Some(m) = &mut self.members {
            m.remove(&key(name));
        }
    }

    /// `old` is now called `new` (a `NICK`, or our own `WELCOME` after `/nick`,
    /// which the server sends us instead of a `NICK`).
    pub(crate) fn rename(&mut self, old: &str, new: &str) {
        self.everyone.remove(&key(old));
        self.everyone.insert(key(new), new.to_owned());
        let had = self
            .members
            .as_mut()
            .is_some_and(|m| m.remove(&key(old)).is_some());
        if had {
            self.add_member(new);
        }
    }

    /// Takes in one event; `session` is the session *after* it was handled, so
    /// its scope is the current one.
    pub(crate) fn handle(&mut self, ev: &Event, session: &Session) {
        let here = session.scope();
        match ev {
            Event::Users { scope, names } => {
                for n in names {
                    self.everyone.insert(key(n.as_str()), n.as_str().to_owned());
                }
                if scope_eq(scope, here) {
                    self.members = Some(
                        names
                            .iter()
                            .map(|n| (key(n.as_str()), n.as_str().to_owned()))
                            .collect(),
                    );
                }
            }
            Event::Join { scope, name } => {
                self.everyone
                    .insert(key(name.as_str()), name.as_str().to_owned());
                if let Scope::Group(g) = scope {
                    self.groups.insert(key(g.as_str()), g.as_str().to_owned());
                }
                if session.is_me(name) && !matches!(scope, Scope::Global) {
                    // Our own join: a new scope whose members are not known yet.
                    self.members = None;
                } else if scope_eq(scope, here)
                    || matches!(scope, Scope::Global) && here.group().is_none()
                {
                    self.add_member(name.as_str());
                }
            }
            Event::Part { scope, name, .. } => {
                if session.is_me(name) {
                    self.members = None;
                } else if matches!(scope, Scope::Global) {
                    self.everyone.remove(&key(name.as_str()));
                    self.remove_member(name.as_str());
                } else if scope_eq(scope, here) {
                    self.remove_member(name.as_str());
                }
            }
            Event::Nick { old, new } => self.rename(old.as_str(), new.as_str()),
            Event::Msg { from, scope, .. } | Event::Me { from, scope, .. } => {
                self.everyone
                    .insert(key(from.as_str()), from.as_str().to_owned());
                if scope_eq(scope, here) {
                    self.add_member(from.as_str());
                }
            }
            Event::Dm { from, to, .. } => {
                for n in [from, to] {
                    self.everyone.insert(key(n.as_str()), n.as_str().to_owned());
                }
            }
            Event::Groups(list) => {
                self.groups = list
                    .iter()
                    .map(|(g, _)| (key(g.as_str()), g.as_str().to_owned()))
                    .collect();
            }
            _ => {}
        }
    }
}

/// Scopes compared as the server does: group names ignoring case.
fn scope_eq(a: &Scope, b: &Scope) -> bool {
    match (a, b) {
        (Scope::Global, Scope::Global) => true,
        (Scope::Group(x), Scope::Group(y)) => x.key() == y.key(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use chatproto::parse_event;

    use super::*;

    fn feed(roster: &mut Roster, session: &mut Session, lines: &[&str]) {
        for l in lines {
            let ev = parse_event(l).unwrap();
            let _ = session.handle(&ev);
            roster.handle(&ev, session);
        }
    }

    #[test]
    fn members_follow_joins_parts_and_renames() {
        let (mut r, mut s) = (Roster::default(), Session::new());
        feed(&mut r, &mut s, &["WELCOME alice"]);
        assert!(r.members().is_empty());
        feed(
            &mut r,
            &mut s,
            &["USERS * alice bob", "JOIN * carol", "NICK bob bobby"],
        );
        assert_eq!(r.members(), ["alice", "bobby", "carol"]);
        feed(&mut r, &mut s, &["PART * carol quit"]);
        assert_eq!(r.members(), ["alice", "bobby"]);
        assert_eq!(r.everyone(), ["alice", "bobby"]);
        // Our own join: the group's members are unknown until USERS.
        feed(&mut r, &mut s, &["JOIN rust alice"]);
        assert!(r.members().is_empty());
        assert_eq!(r.groups(), ["rust"]);
        feed(&mut r, &mut s, &["USERS Rust alice dan", "JOIN * eve"]);
        assert_eq!(r.members(), ["alice", "dan"], "eve is not in rust");
        feed(&mut r, &mut s, &["JOIN rust eve", "PART rust dan"]);
        assert_eq!(r.members(), ["alice", "eve"]);
        r.rename("alice", "alicia");
        assert_eq!(r.members(), ["alicia", "eve"]);
    }

    #[test]
    fn groups_from_the_list() {
        let (mut r, mut s) = (Roster::default(), Session::new());
        feed(&mut r, &mut s, &["WELCOME alice", "GROUPS go=1 rust=2"]);
        assert_eq!(r.groups(), ["go", "rust"]);
    }
}
