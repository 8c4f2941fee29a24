//! `chatcli`: a terminal client for the chat line protocol (PROTOCOL.md).
//!
//! On a terminal: a prompt with line editing, incoming lines printed above it.
//! On a pipe: each input line is sent, each event printed as one plain line, so
//! `printf 'alice\nhello\n/quit\n' | chatcli` works in scripts.
//!
//! Exit status: 0 when the person leaves (`/quit`, Ctrl+C, Ctrl+D, end of
//! input, SIGTERM), 1 when the server cannot be reached or goes away (or its
//! TLS certificate is refused, which no reconnection retries), 2 for bad
//! arguments.

#![forbid(unsafe_code)]

mod app;
mod complete;
mod editor;
mod fullscreen;
mod fullui;
mod input;
mod keys;
mod linescreen;
mod net;
mod render;
mod roster;
mod sanitize;
mod secret;
mod terminal;
mod tls;
mod views;

use std::process::ExitCode;

use argh::FromArgs;
use chatproto::Name;

/// Terminal client for the chat server.
#[derive(FromArgs, Debug)]
struct Args {
    /// server host name or address (default 127.0.0.1)
    #[argh(option)]
    host: Option<String>,
    /// server port (default 8080)
    #[argh(option)]
    port: Option<u16>,
    /// your name (1-32 of A-Z a-z 0-9 _ -); without it the client asks
    #[argh(option)]
    name: Option<String>,
    /// no colours (also off when NO_COLOR is set or output is not a terminal)
    #[argh(switch)]
    no_color: bool,
    /// the line mode on a terminal: a prompt at the bottom, lines scrolling up
    /// (the full-screen mode is the default on a terminal)
    #[argh(switch)]
    plain: bool,
    /// full-screen mode: no bell for a mention or private message in a view
    /// that is not in front
    #[argh(switch)]
    no_bell: bool,
    /// full-screen mode: show in the window title how many views have a
    /// mention or private message waiting
    #[argh(switch)]
    title: bool,
    /// when the connection is lost, exit (status 1) instead of reconnecting
    #[argh(switch)]
    no_reconnect: bool,
    /// reconnect when the connection is lost (the default; kept for old scripts)
    #[argh(switch)]
    reconnect: bool,
    /// seconds of silence from the server before the client asks for a sign of
    /// life, and again before it gives the connection up (default 60)
    #[argh(option, default = "60")]
    keepalive: u64,
    /// TLS to the server, verified against the system's root certificates
    /// (implied by chats:// and the three flags below)
    #[argh(switch)]
    tls: bool,
    /// TLS, trusting the certificates in this PEM file instead of the
    /// system's roots (a private CA, or a self-signed server certificate)
    #[argh(option)]
    ca_file: Option<std::path::PathBuf>,
    /// TLS, accepting only the server certificate with this SHA-256
    /// fingerprint (AB:CD:... as chatd logs it, or 64 hex digits)
    #[argh(option)]
    fingerprint: Option<String>,
    /// TLS without verifying the server at all (a loud warning on every
    /// connect): anyone on the path can pose as the server
    #[argh(switch)]
    insecure: bool,
    /// with --name: log in to the account NAME with the password in this
    /// file (its first line), at connect and after each reconnection; the
    /// CHAT_PASSWORD environment variable does the same
    #[argh(option)]
    password_file: Option<std::path::PathBuf>,
    /// server address: HOST:PORT or HOST, chat://HOST:PORT (plaintext) or
    /// chats://HOST:PORT (TLS); the port is 8080 unless given
    #[argh(positional)]
    addr: Option<String>,
}

const DEFAULT_HOST: &str = "127.0.0.1";
const DEFAULT_PORT: u16 = 8080;

/// Where to connect, from the flags and the address.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `host:port` (`[v6]:port`), as `TcpStream::connect` takes it.
    addr: String,
    /// The host alone (no brackets): the name a TLS certificate must carry.
    host: String,
    /// `chats://` (true) or `chat://` (false) in the address; `None` without a scheme.
    url_tls: Option<bool>,
}

/// Where to connect, from the flags. `chats://HOST:PORT` and `chat://HOST:PORT`
/// are accepted as the address (a trailing `/` too), with the same default port
/// as a bare `HOST`: chatd serves TLS on whatever port `--tls-listen` names, so
/// no well-known TLS port would be right more often.
fn target(args: &Args) -> Result<Target, String> {
    let join = |host: &str, port: u16| {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}") // a bare IPv6 address
        } else {
            format!("{host}:{port}")
        }
    };
    let bare = |host: &str| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned()
    };
    let Some(given) = &args.addr else {
        let host = args.host.as_deref().unwrap_or(DEFAULT_HOST);
        return Ok(Target {
            addr: join(host, args.port.unwrap_or(DEFAULT_PORT)),
            host: bare(host),
            url_tls: None,
        });
    };
    if args.host.is_some() || args.port.is_some() {
        return Err("give either ADDR or --host/--port, not both".to_owned());
    }
    let (url_tls, addr) = if let Some(rest) = given.strip_prefix("chats://") {
        (Some(true), rest.strip_suffix('/').unwrap_or(rest))
    } else if let Some(rest) = given.strip_prefix("chat://") {
        (Some(false), rest.strip_suffix('/').unwrap_or(rest))
    } else if given.contains("://") {
        return Err(format!(
            "{given:?}: only chat:// (plaintext) and chats:// (TLS) addresses are known"
        ));
    } else {
        (None, given.as_str())
    };
    if addr.is_empty() || addr.contains('/') {
        return Err(format!("{given:?} is not HOST, HOST:PORT or [v6]:PORT"));
    }
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return Ok(Target {
            addr: addr.to_owned(),
            host: sock.ip().to_string(),
            url_tls,
        });
    }
    let (host, port) = match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port: u16 = port.parse().map_err(|_| format!("bad port in {given:?}"))?;
            (host, port)
        }
        _ => (addr, DEFAULT_PORT),
    };
    Ok(Target {
        addr: join(host, port),
        host: bare(host),
        url_tls,
    })
}

/// TLS from the flags and the address's scheme: `None` for plaintext. Errors are
/// bad arguments (exit 2): contradicting flags, an unreadable `--ca-file`, a
/// malformed `--fingerprint`.
fn tls_setup(args: &Args, target: &Target) -> Result<Option<net::TlsSetup>, String> {
    let opts = tls::TlsOptions {
        ca_file: args.ca_file.clone(),
        fingerprint: args.fingerprint.clone(),
        insecure: args.insecure,
    };
    let asked = args.tls || opts != tls::TlsOptions::default();
    let wanted = match target.url_tls {
        Some(false) if asked => {
            return Err(format!(
                "{} is a plaintext address (chat://), but TLS flags were given: use chats://",
                args.addr.as_deref().unwrap_or_default()
            ));
        }
        Some(url) => url,
        None => asked,
    };
    if !wanted {
        return Ok(None);
    }
    let connector = tls::connector(&opts).map_err(|e| e.to_string())?;
    Ok(Some(net::TlsSetup {
        connector,
        server_name: target.host.clone(),
        insecure: opts.insecure,
    }))
}

/// The password to log in with at connect: the first line of `--password-file`
/// (its line ending removed), else `CHAT_PASSWORD` (`env`) if set. Only with
/// `--name`: a password file without it is an error, the variable is ignored.
fn password(
    args: &Args,
    env: Option<std::ffi::OsString>,
) -> Result<Option<chatproto::Password>, String> {
    let (raw, from) = match &args.password_file {
        Some(path) => {
            if args.name.is_none() {
                return Err("--password-file needs --name (the account to log in to)".to_owned());
            }
            let text = read_password_file(path)?;
            let first = text.lines().next().unwrap_or_default().to_owned();
            (first, format!("--password-file {}", path.display()))
        }
        None => match env {
            // Set but empty is as good as unset (`CHAT_PASSWORD= chatcli ...`).
            Some(v) if args.name.is_some() && !v.is_empty() => (
                v.into_string()
                    .map_err(|_| "CHAT_PASSWORD: not UTF-8".to_owned())?,
                "CHAT_PASSWORD".to_owned(),
            ),
            _ => return Ok(None),
        },
    };
    // The error names the rule (length, spaces), never the password itself.
    chatproto::Password::try_from(raw.as_str())
        .map(Some)
        .map_err(|e| format!("{from}: {e}"))
}

/// The start of a `--password-file`, bounded: a password is at most 256
/// bytes, and a path such as /dev/zero must not fill the memory. Warns (on
/// stderr, not fatal) when others may read the file, as ssh does for keys.
fn read_password_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    /// Well past the longest password and its line ending.
    const READ_AT_MOST: u64 = 4096;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("--password-file {shown}: {e}"))?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt;
        if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "chatcli: warning: --password-file {shown} can be read by others (chmod 600 {shown})"
            );
        }
    }
    let mut bytes = Vec::new();
    file.take(READ_AT_MOST)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("--password-file {shown}: {e}"))?;
    // A first line cut by the bound is too long anyway: the rule says so.
    String::from_utf8(bytes).map_err(|_| format!("--password-file {shown}: not UTF-8"))
}

/// Colours unless asked not to (flag or `NO_COLOR`, see no-color.org) or
/// printing to something that is not a terminal.
fn want_colour(no_color_flag: bool) -> bool {
    use std::io::IsTerminal;
    let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color_flag
        && !no_color_env
        && std::io::stdout().is_terminal()
        && std::io::stdin().is_terminal()
}

/// The flags, or the exit status to leave with: 0 after `--help`, 2 for
/// anything argh refuses (an unknown flag, `--port abc`, `--port 99999`), as for
/// the client's own checks; 1 stays for a server that cannot be reached.
fn parse_args(argv: &[String]) -> Result<Args, ExitCode> {
    let command = argv.first().map_or("chatcli", String::as_str);
    let rest: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    Args::from_args(&[command], &rest).map_err(|early| {
        if early.status.is_ok() {
            println!("{}", early.output);
            ExitCode::SUCCESS
        } else {
            eprintln!("{}", early.output.trim_end());
            eprintln!("Run {command} --help for more information.");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(status) => return status,
    };
    if args.keepalive == 0 {
        eprintln!("chatcli: --keepalive: must be at least 1 second");
        return ExitCode::from(2);
    }
    if args.reconnect && args.no_reconnect {
        eprintln!("chatcli: give either --reconnect or --no-reconnect, not both");
        return ExitCode::from(2);
    }
    let target = match target(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chatcli: {e}");
            return ExitCode::from(2);
        }
    };
    let tls = match tls_setup(&args, &target) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("chatcli: {e}");
            return ExitCode::from(2);
        }
    };
    let password = match password(&args, std::env::var_os("CHAT_PASSWORD")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("chatcli: {e}");
            return ExitCode::from(2);
        }
    };
    let name = match args.name.as_deref().map(Name::try_from).transpose() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("chatcli: --name: {e}");
            return ExitCode::from(2);
        }
    };
    // SIGINT (outside raw mode), SIGTERM and SIGHUP: leave through /quit so the
    // terminal is restored and the server hears a goodbye.
    let (sig_tx, sig_rx) = async_channel::bounded(1);
    if let Err(e) = ctrlc::set_handler(move || {
        let _ = sig_tx.try_send(());
    }) {
        eprintln!("chatcli: no signal handler ({e}); Ctrl+C will not say goodbye");
    }
    let opts = app::Options {
        addr: target.addr,
        tls,
        name,
        password,
        colour: want_colour(args.no_color),
        reconnect: !args.no_reconnect,
        full_screen: !args.plain,
        alerts: fullui::Alerts {
            bell: !args.no_bell,
            title: args.title,
        },
        keepalive: std::time::Duration::from_secs(args.keepalive),
    };
    match smol::block_on(app::run(opts, sig_rx)) {
        app::Exit::Quit => ExitCode::SUCCESS,
        app::Exit::Lost => ExitCode::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Args {
        Args::from_args(&["chatcli"], argv).unwrap()
    }

    #[test]
    fn addresses_from_flags() {
        let cases: &[(&[&str], &str, &str, Option<bool>)] = &[
            (&[], "127.0.0.1:8080", "127.0.0.1", None),
            (&["--port", "9000"], "127.0.0.1:9000", "127.0.0.1", None),
            (
                &["--host", "example.test"],
                "example.test:8080",
                "example.test",
                None,
            ),
            (&["--host", "::1", "--port", "1"], "[::1]:1", "::1", None),
            (&["localhost:7000"], "localhost:7000", "localhost", None),
            (&["localhost"], "localhost:8080", "localhost", None),
            (&["[::1]:7000"], "[::1]:7000", "::1", None),
            (&["::1"], "[::1]:8080", "::1", None),
            (&["10.1.2.3:5"], "10.1.2.3:5", "10.1.2.3", None),
            (
                &["chats://chat.example.org:6697"],
                "chat.example.org:6697",
                "chat.example.org",
                Some(true),
            ),
            (
                &["chats://chat.example.org/"],
                "chat.example.org:8080",
                "chat.example.org",
                Some(true),
            ),
            (&["chats://[::1]:7000"], "[::1]:7000", "::1", Some(true)),
            (
                &["chat://localhost:9"],
                "localhost:9",
                "localhost",
                Some(false),
            ),
        ];
        for (argv, addr, host, url_tls) in cases {
            let want = Target {
                addr: (*addr).to_owned(),
                host: (*host).to_owned(),
                url_tls: *url_tls,
            };
            assert_eq!(target(&args(argv)), Ok(want), "{argv:?}");
        }
        for bad in [
            &["x:1", "--port", "2"][..],
            &["x:notaport"],
            &["https://x:1"],
            &["chats://"],
            &["chats://x:1/path"],
            &["chats://x:99999"],
        ] {
            assert!(target(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tls_comes_from_the_scheme_or_the_flags_and_they_must_agree() {
        let tls = |argv: &[&str]| {
            let a = args(argv);
            let t = target(&a).unwrap();
            tls_setup(&a, &t).map(|s| s.map(|s| (s.server_name, s.insecure)))
        };
        assert_eq!(tls(&["localhost:1"]), Ok(None));
        assert_eq!(tls(&["chat://localhost:1"]), Ok(None));
        assert_eq!(
            tls(&["--tls", "localhost:1"]),
            Ok(Some(("localhost".into(), false)))
        );
        assert_eq!(tls(&["chats://[::1]:1"]), Ok(Some(("::1".into(), false))));
        assert_eq!(
            tls(&["--insecure", "--host", "example.test"]),
            Ok(Some(("example.test".into(), true)))
        );
        let pin = "AB".repeat(32);
        assert!(matches!(tls(&["--fingerprint", &pin, "h:1"]), Ok(Some(_))));
        let err = tls(&["--tls", "chat://localhost:1"]).unwrap_err();
        assert!(err.contains("plaintext address"), "{err}");
        let err = tls(&["--fingerprint", "ab:cd", "h:1"]).unwrap_err();
        assert!(err.contains("--fingerprint"), "{err}");
        let err = tls(&["--ca-file", "/nonexistent/ca.pem", "h:1"]).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = tls(&["--insecure", "--fingerprint", &pin, "h:1"]).unwrap_err();
        assert!(err.contains("exclude each other"), "{err}");
    }

    #[test]
    fn the_password_comes_from_the_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("chatcli-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "correct-horse\nignored second line\n").unwrap();
        let path = file.to_str().unwrap();
        let pw = |argv: &[&str], env: Option<&str>| {
            password(&args(argv), env.map(Into::into)).map(|p| p.map(|p| p.expose().to_owned()))
        };
        assert_eq!(
            pw(
                &["--name", "ann", "--password-file", path],
                Some("other-env")
            ),
            Ok(Some("correct-horse".into()))
        );
        assert_eq!(
            pw(&["--name", "ann"], Some("from-env-1")),
            Ok(Some("from-env-1".into()))
        );
        // Without --name the variable is not for us; the file is a mistake.
        assert_eq!(pw(&[], Some("from-env-1")), Ok(None));
        assert_eq!(pw(&["--name", "ann"], Some("")), Ok(None));
        // Bounded: an endless file is read no further than a password can go.
        let err = pw(&["--name", "ann", "--password-file", "/dev/zero"], None).unwrap_err();
        assert!(err.contains("/dev/zero"), "{err}");
        assert!(pw(&["--password-file", path], None)
            .unwrap_err()
            .contains("--name"));
        let err = pw(
            &["--name", "ann", "--password-file", "/nonexistent/pw"],
            None,
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/pw"), "{err}");
        std::fs::write(&file, "short\n").unwrap();
        let err = pw(&["--name", "ann", "--password-file", path], None).unwrap_err();
        assert!(!err.contains("short"), "the password is never shown: {err}");
        assert!(err.contains("--password-file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_flags_exit_2_and_help_exits_0() {
        let argv = |a: &[&str]| -> Vec<String> {
            std::iter::once("chatcli")
                .chain(a.iter().copied())
                .map(str::to_owned)
                .collect()
        };
        for bad in [
            &["--port", "99999"][..],
            &["--port", "abc"],
            &["--bogus"],
            &["--name"],
        ] {
            assert_eq!(
                parse_args(&argv(bad)).unwrap_err(),
                ExitCode::from(2),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_args(&argv(&["--help"])).unwrap_err(),
            ExitCode::SUCCESS
        );
        assert!(parse_args(&argv(&["--port", "9000"])).is_ok());
    }
}
