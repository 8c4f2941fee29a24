//! The whole protocol against the real binary: registration, names, scopes,
//! groups, messages, renames, help, errors, keepalive and quitting.

mod support;

use chatproto::{Event, COMMAND_HELP};
use support::Chatd;

#[test]
fn registration_and_name_rules() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.connect();
    // Commands other than naming wait for registration.
    ann.send("/users");
    ann.expect_prefix("ERR not-registered ");
    ann.send("/join rust");
    ann.expect_prefix("ERR not-registered ");
    // Bad names are refused and can be retried.
    for bad in ["bad name", "no!", &"x".repeat(33), "émile"] {
        ann.send(bad);
        ann.expect_prefix("ERR name-invalid ");
    }
    ann.send("/nick bad!");
    ann.expect_prefix("ERR name-invalid ");
    ann.register("Ann_1-x");

    let mut bob = chatd.connect();
    // Names are unique ignoring case.
    bob.send("ann_1-X");
    bob.expect_prefix("ERR name-taken ");
    bob.send("/nick ANN_1-x");
    bob.expect_prefix("ERR name-taken ");
    bob.send("/nick bob");
    bob.expect("WELCOME bob");
    ann.expect("JOIN * bob");
    // Exactly 32 characters is fine.
    let long = "y".repeat(32);
    let _carol = chatd.user(&long);
    ann.expect(&format!("JOIN * {long}"));
    bob.expect(&format!("JOIN * {long}"));
    bob.expect_nothing();
}

#[test]
fn users_and_groups() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("bob");
    let mut cy = chatd.user("cy");
    ann.send("/users");
    ann.expect("JOIN * bob");
    ann.expect("JOIN * cy");
    ann.expect("USERS * ann bob cy");
    bob.expect("JOIN * cy");

    ann.send("/groups");
    ann.expect("GROUPS");
    ann.send("/join Rust");
    ann.expect("JOIN Rust ann");
    bob.send("/join rust"); // same group, ignoring case; the creator's spelling wins
    bob.expect("JOIN Rust bob");
    ann.expect("JOIN Rust bob");
    ann.send("/users");
    ann.expect("USERS Rust ann bob");
    // Outside a group, /users lists everyone.
    cy.send("/users");
    cy.expect("USERS * ann bob cy");
    cy.send("/groups");
    cy.expect("GROUPS Rust=2");

    // Switching groups parts the old one first.
    bob.send("/join go");
    bob.expect("PART Rust bob");
    bob.expect("JOIN go bob");
    ann.expect("PART Rust bob");
    cy.send("/groups");
    cy.expect("GROUPS go=1 Rust=1");
    bob.send("/join go");
    bob.expect_prefix("ERR already-in-group ");

    // Leaving: back to global; the last one out removes the group.
    ann.send("/leave");
    ann.expect("PART Rust ann");
    ann.send("/leave");
    ann.expect_prefix("ERR not-in-group ");
    ann.send("/users");
    ann.expect("USERS * ann bob cy");
    cy.send("/groups");
    cy.expect("GROUPS go=1");
    cy.send("/join go");
    cy.expect("JOIN go cy");
    bob.expect("JOIN go cy");
    cy.send("/groups");
    cy.expect("GROUPS go=2");
    ann.expect_nothing();
}

#[test]
fn broadcasts_reach_their_scope_and_are_not_echoed() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("bob");
    let mut cy = chatd.user("cy");
    for (c, n) in [(&mut ann, 2), (&mut bob, 1)] {
        for _ in 0..n {
            c.expect_prefix("JOIN * ");
        }
    }
    bob.send("/join g");
    bob.expect("JOIN g bob");
    cy.send("/join g");
    cy.expect("JOIN g cy");
    bob.expect("JOIN g cy");

    // Global text reaches everyone, group members included, but not the sender.
    ann.send("hello  all ");
    bob.expect("MSG * ann hello  all ");
    cy.expect("MSG * ann hello  all ");
    ann.expect_nothing();

    // Group text stays in the group.
    bob.send("in the group");
    cy.expect("MSG g bob in the group");
    bob.expect_nothing();
    ann.expect_nothing();

    // Actions follow the same rules.
    cy.send("/me waves");
    bob.expect("ME g cy waves");
    cy.expect_nothing();
    ann.send("/me nods");
    bob.expect("ME * ann nods");
    cy.expect("ME * ann nods");

    // `//` escapes a leading slash.
    ann.send("//join not a command");
    bob.expect("MSG * ann /join not a command");
    cy.expect("MSG * ann /join not a command");
    ann.expect_nothing();

    // Parsed events agree.
    ann.send("typed");
    match bob.event() {
        Event::Msg { scope, from, text } => {
            assert_eq!(
                (scope.as_str(), from.as_str(), text.as_str()),
                ("*", "ann", "typed")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn private_messages() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("Bob");
    ann.expect("JOIN * Bob");
    ann.send("/join g"); // scopes do not matter for DMs
    ann.expect("JOIN g ann");
    ann.send("/msg bob psst, you there?");
    bob.expect("DM ann Bob psst, you there?");
    ann.expect("DM ann Bob psst, you there?");
    ann.send("/msg nobody hi");
    ann.expect_prefix("ERR no-such-user ");
    ann.send("/msg bob");
    ann.expect_prefix("ERR bad-args ");
    ann.send("/msg ann note to self");
    ann.expect("DM ann ann note to self");
    bob.expect_nothing();
}

#[test]
fn renames() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("bob");
    ann.expect("JOIN * bob");
    bob.send("/join g");
    bob.expect("JOIN g bob");
    bob.send("/nick robert");
    bob.expect("WELCOME robert");
    ann.expect("NICK bob robert");
    bob.send("/nick ANN");
    bob.expect_prefix("ERR name-taken ");
    bob.send("/nick Robert"); // its own name in another case is fine
    bob.expect("WELCOME Robert");
    ann.expect("NICK robert Robert");
    bob.send("/users");
    bob.expect("USERS g Robert");
    ann.send("/users");
    ann.expect("USERS * ann Robert");
    // The old name is free again.
    let _bob2 = chatd.user("bob");
}

#[test]
fn quitting_tells_everyone_and_cleans_up() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("bob");
    let mut cy = chatd.user("cy");
    ann.expect("JOIN * bob");
    ann.expect("JOIN * cy");
    bob.expect("JOIN * cy");
    bob.send("/join g");
    bob.expect("JOIN g bob");

    bob.send("/quit gone fishing");
    assert_eq!(bob.until_closed(), vec!["BYE quit"]);
    ann.expect("PART * bob gone fishing");
    cy.expect("PART * bob gone fishing");
    ann.send("/groups");
    ann.expect("GROUPS");

    cy.send("/quit");
    assert_eq!(cy.until_closed(), vec!["BYE quit"]);
    ann.expect("PART * cy quit");
    ann.send("/users");
    ann.expect("USERS * ann");

    // Quitting before registering is fine too.
    let mut anon = chatd.connect();
    anon.send("/quit");
    assert_eq!(anon.until_closed(), vec!["BYE quit"]);
    ann.expect_nothing();
}

#[test]
fn help_unknown_commands_and_bad_arguments() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.connect();
    // Help works before registering, too.
    ann.send("/help");
    for (usage, _) in COMMAND_HELP {
        let line = ann.expect_prefix("INFO ");
        assert!(line.contains(usage), "{line:?} should mention {usage:?}");
    }
    ann.register("ann");
    ann.send("/help");
    for _ in COMMAND_HELP {
        ann.expect_prefix("INFO ");
    }
    ann.send("/frobnicate now");
    ann.expect_prefix("ERR unknown-command ");
    ann.send("/");
    ann.expect_prefix("ERR unknown-command ");
    for bad in ["/join", "/join a b", "/users now", "/me", "/pong", "/nick"] {
        ann.send(bad);
        ann.expect_prefix("ERR bad-args ");
    }
    // Command words ignore case.
    ann.send("/USERS");
    ann.expect("USERS * ann");
    // An empty line is ignored silently.
    ann.send("");
    ann.expect_nothing();
}

#[test]
fn keepalive_both_ways() {
    let chatd = Chatd::start(&[]);
    let mut ann = chatd.connect();
    ann.send("/ping before-name");
    ann.expect("PONG before-name");
    ann.register("ann");
    ann.send("/ping 12345");
    ann.expect("PONG 12345");
    ann.send("/ping");
    ann.expect("PONG chatd");
    // An unsolicited /pong is accepted silently.
    ann.send("/pong 7");
    ann.expect_nothing();
}

#[test]
fn say_act_whois_and_count() {
    use std::time::{SystemTime, UNIX_EPOCH};

    let chatd = Chatd::start(&[]);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let mut ann = chatd.user("ann");
    let mut bob = chatd.user("Bob");
    let mut cy = chatd.user("cy");
    ann.expect("JOIN * Bob");
    ann.expect("JOIN * cy");
    bob.expect("JOIN * cy");
    let mut lurker = chatd.connect();
    for cmd in ["/say * hi", "/act * hi", "/whois ann", "/count"] {
        lurker.send(cmd);
        lurker.expect_prefix("ERR not-registered ");
    }
    bob.send("/join Rust");
    bob.expect("JOIN Rust Bob");
    cy.send("/join rust");
    cy.expect("JOIN Rust cy");
    bob.expect("JOIN Rust cy");

    // From inside a group, global speech reaches everyone but the sender.
    bob.send("/say * hello  all ");
    ann.expect("MSG * Bob hello  all ");
    cy.expect("MSG * Bob hello  all ");
    cy.send("/act RUST nods");
    bob.expect("ME Rust cy nods");
    bob.send("/say go hi");
    bob.expect("ERR not-in-group you are not in go");
    ann.send("/act Rust waves");
    ann.expect("ERR not-in-group you are not in Rust");
    bob.expect_nothing();
    cy.expect_nothing();

    // WHOIS: the registered spelling, the group's spelling, idle seconds and
    // the sign-on time from chatd's wall clock.
    ann.send("/whois bob");
    let Event::Whois {
        name,
        scope,
        idle,
        signon,
    } = ann.event()
    else {
        panic!("expected WHOIS");
    };
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    assert_eq!((name.as_str(), scope.as_str()), ("Bob", "Rust"));
    assert!(idle <= 10, "idle {idle}");
    assert!(
        (before..=after).contains(&signon),
        "signon {signon} not in {before}..={after}"
    );
    ann.send("/whois nobody");
    ann.expect_prefix("ERR no-such-user ");

    // COUNT: three users, one group, four connections (the lurker included).
    ann.send("/count");
    ann.expect("COUNT 3 1 4");
    lurker.send("/quit");
    assert_eq!(lurker.until_closed(), vec!["BYE quit"]);
    cy.send("/leave");
    cy.expect("PART Rust cy");
    bob.expect("PART Rust cy");
    cy.send("/count");
    cy.expect("COUNT 3 1 3");
}
