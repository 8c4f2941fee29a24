//! Typed lines that carry a password (`/login`, `/register`, `/passwd`,
//! `/unregister`): which they are, so they stay out of the input history, and
//! the line as the screen may show it, the passwords masked. Pure.

use std::borrow::Cow;

/// The commands with passwords, and how many words (after the command word)
/// come before the first password: `/login <name> <password>`.
const WITH_PASSWORDS: [(&str, usize); 4] = [
    ("login", 1),
    ("register", 0),
    ("passwd", 0),
    ("unregister", 0),
];

/// Shown instead of each character of a password.
const MASK: char = '*';

/// How many words precede the passwords, if `line` starts with a command that
/// carries one (`/LOGIN ` too: command words ignore case). The command word
/// must be complete (followed by a space): `/log` is still being typed.
fn words_before_password(line: &str) -> Option<usize> {
    let rest = line.strip_prefix('/')?;
    let (word, _) = rest.split_once(' ')?;
    WITH_PASSWORDS
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map(|(_, before)| *before)
}

/// True if `line` is a command that carries a password: it is not kept in the
/// input history.
pub(crate) fn holds_password(line: &str) -> bool {
    words_before_password(line).is_some()
}

/// `line` as it may be drawn: the password words of `/login`, `/register`,
/// `/passwd` and `/unregister` as one `*` per character, the rest as typed.
/// Masking a prefix of a line gives a prefix of the masked line (the mask of a
/// character depends only on what comes before it), so a cursor at byte `c`
/// is drawn at `mask(&line[..c]).len()`.
pub(crate) fn mask(line: &str) -> Cow<'_, str> {
    let Some(before) = words_before_password(line) else {
        return Cow::Borrowed(line);
    };
    let mut out = String::with_capacity(line.len());
    // Words seen after the command word (a run of spaces separates words).
    let mut words = 0;
    let mut in_word = false;
    let mut command = true;
    for c in line.chars() {
        if c == ' ' {
            if in_word && !command {
                words += 1;
            }
            in_word = false;
            command = false;
            out.push(c);
            continue;
        }
        in_word = true;
        out.push(if !command && words >= before { MASK } else { c });
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_shown() {
        let cases = [
            ("/login alice hunter22", "/login alice ********"),
            ("/LOGIN alice hunter22", "/LOGIN alice ********"),
            ("/login alice", "/login alice"),
            ("/login ", "/login "),
            ("/register correct-horse", "/register *************"),
            ("/passwd old-one new-one!", "/passwd ******* ********"),
            ("/unregister pässwörd", "/unregister ********"),
            ("/login  alice  pw x", "/login  alice  ** *"),
            ("/log alice hunter22", "/log alice hunter22"),
            ("/login", "/login"),
            ("hello /login a b", "hello /login a b"),
            ("//login a b", "//login a b"),
            ("/msg bob /login x y", "/msg bob /login x y"),
        ];
        for (typed, shown) in cases {
            assert_eq!(mask(typed), shown, "{typed:?}");
        }
    }

    #[test]
    fn a_masked_prefix_is_a_prefix_of_the_masked_line() {
        let line = "/passwd pä55wörd nëw-pässwörd";
        let full = mask(line);
        for (at, _) in line.char_indices() {
            assert!(full.starts_with(&*mask(&line[..at])), "cut at {at}");
        }
    }

    #[test]
    fn only_password_commands_are_kept_out_of_the_history() {
        assert!(holds_password("/login alice hunter22"));
        assert!(holds_password("/Register x"));
        assert!(holds_password("/passwd a b"));
        assert!(holds_password("/unregister a"));
        assert!(!holds_password("/login"));
        assert!(!holds_password("/join rust"));
        assert!(!holds_password("login alice hunter22"));
    }
}
