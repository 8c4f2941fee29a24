//! Tab completion as a pure function of the line, the cursor and what is known:
//! `/commands` at the start of a line, group names after `/join`, names after
//! `/msg` and `/whois`, and elsewhere the names of the current scope (with `: `
//! when the name starts the line, as in weechat and irssi). Repeated Tab cycles
//! through the candidates.

/// What completion can draw on.
#[derive(Debug, Default)]
pub(crate) struct Known<'a> {
    /// The names of the current scope (the member list).
    pub(crate) names: Vec<&'a str>,
    /// Every name seen on the server, for `/msg` and `/whois`.
    pub(crate) all_names: Vec<&'a str>,
    pub(crate) groups: Vec<&'a str>,
    pub(crate) commands: Vec<&'a str>,
}

/// A completion in progress: what Tab replaced, so the next Tab can try the next
/// candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cycle {
    /// The line and cursor before the first Tab.
    base: String,
    base_cursor: usize,
    /// Where the completed word starts in `base`.
    start: usize,
    candidates: Vec<String>,
    next: usize,
    /// The line and cursor this completion produced: a Tab on anything else
    /// starts afresh.
    shown: (String, usize),
}

/// The result of one Tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Completed {
    pub(crate) line: String,
    pub(crate) cursor: usize,
}

/// Completes the word before `cursor` in `line`. `previous` is the cycle left by
/// the last Tab, if the line has not changed since. `None`: nothing matches.
pub(crate) fn complete(
    line: &str,
    cursor: usize,
    known: &Known<'_>,
    previous: &mut Option<Cycle>,
) -> Option<Completed> {
    if let Some(cycle) = previous
        .as_mut()
        .filter(|c| c.shown.0 == line && c.shown.1 == cursor)
    {
        let pick = cycle.candidates[cycle.next % cycle.candidates.len()].clone();
        cycle.next += 1;
        let done = apply(&cycle.base, cycle.base_cursor, cycle.start, &pick);
        cycle.shown = (done.line.clone(), done.cursor);
        return Some(done);
    }
    let before = &line[..cursor];
    let start = before.rfind([' ', '\t']).map_or(0, |i| i + 1);
    let word = &before[start..];
    let first_word = before[..start].split_whitespace().next();
    let (pool, suffix): (&[&str], &str) = match first_word {
        None if word.starts_with('/') => (&known.commands, " "),
        None => (&known.names, ": "),
        Some("/join") if start == "/join ".len() => (&known.groups, ""),
        Some("/msg" | "/whois") if before[..start].split_whitespace().count() == 1 => {
            (&known.all_names, " ")
        }
        Some(_) => (&known.names, " "),
    };
    let lower = word.to_lowercase();
    let mut candidates: Vec<String> = pool
        .iter()
        .filter(|c| c.to_lowercase().starts_with(&lower))
        .map(|c| format!("{c}{suffix}"))
        .collect();
    candidates.sort_by_key(|c| c.to_lowercase());
    candidates.dedup();
    if candidates.is_empty() {
        *previous = None;
        return None;
    }
    let done = apply(line, cursor, start, &candidates[0]);
    *previous = Some(Cycle {
        base: line.to_owned(),
        base_cursor: cursor,
        start,
        candidates,
        next: 1,
        shown: (done.line.clone(), done.cursor),
    });
    Some(done)
}

fn apply(base: &str, cursor: usize, start: usize, pick: &str) -> Completed {
    let mut line = String::with_capacity(base.len() + pick.len());
    line.push_str(&base[..start]);
    line.push_str(pick);
    let at = line.len();
    line.push_str(&base[cursor..]);
    Completed { line, cursor: at }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Known<'static> {
        Known {
            names: vec!["bob", "Bea", "carol"],
            all_names: vec!["bob", "Bea", "carol", "zed"],
            groups: vec!["rust", "ruby"],
            commands: vec!["/join", "/me", "/msg", "/whois"],
        }
    }

    fn tab(line: &str, cycle: &mut Option<Cycle>) -> Option<String> {
        complete(line, line.len(), &known(), cycle).map(|c| c.line)
    }

    #[test]
    fn names_at_the_start_get_a_colon() {
        let mut c = None;
        assert_eq!(tab("ca", &mut c).as_deref(), Some("carol: "));
        let mut c = None;
        assert_eq!(tab("hi ca", &mut c).as_deref(), Some("hi carol "));
    }

    #[test]
    fn repeated_tab_cycles_ignoring_case() {
        let mut c = None;
        assert_eq!(tab("b", &mut c).as_deref(), Some("Bea: "));
        assert_eq!(tab("Bea: ", &mut c).as_deref(), Some("bob: "));
        assert_eq!(tab("bob: ", &mut c).as_deref(), Some("Bea: "));
        // A changed line starts afresh.
        assert_eq!(tab("bob: ca", &mut c).as_deref(), Some("bob: carol "));
    }

    #[test]
    fn commands_groups_and_everyone_for_msg() {
        let mut c = None;
        assert_eq!(tab("/jo", &mut c).as_deref(), Some("/join "));
        let mut c = None;
        assert_eq!(tab("/join ru", &mut c).as_deref(), Some("/join ruby"));
        let mut c = None;
        assert_eq!(tab("/msg z", &mut c).as_deref(), Some("/msg zed "));
        let mut c = None;
        assert_eq!(tab("nobody", &mut c), None);
        assert_eq!(c, None);
    }

    #[test]
    fn completes_in_the_middle_of_a_line() {
        let mut c = None;
        let got = complete("hi ca there", 5, &known(), &mut c).unwrap();
        assert_eq!(got.line, "hi carol  there");
        assert_eq!(got.cursor, "hi carol ".len());
    }
}
