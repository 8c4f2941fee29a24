//! Runs the real `chatload` binary, briefly and with few clients, against a
//! real chatd on 127.0.0.1 (ephemeral port), and checks its `--json` reports.
//! Performance numbers are not asserted here: they go in BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde_json::Value;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

mod support;
use support::{run_bounded, Chatd};

impl Chatd {
    /// The options that make chatload's clients speak `dialect` to this
    /// chatd's IRC listener.
    fn dialect(&self, dialect: &'static str) -> [String; 4] {
        let irc = self.irc_addr.clone().expect("chatd has an IRC listener");
        ["--dialect".into(), dialect.into(), "--irc-addr".into(), irc]
    }

    /// Runs chatload with `args` after the common options; returns its JSON.
    fn chatload(&self, args: &[&str]) -> Value {
        self.chatload_at(&self.addr, args)
    }

    /// [`Chatd::chatload`] against `addr` (a TLS terminator in front of it).
    fn chatload_at(&self, addr: &str, args: &[&str]) -> Value {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatload"));
        cmd.args(["--addr", addr, "--json", "--quiet", "--timeout", "45"])
            .args(args);
        let out = run_bounded(cmd, RUN_TIMEOUT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "chatload {args:?} failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v:#}"))
}

#[test]
fn scenarios_report_clean_runs_against_chatd() {
    let chatd = Chatd::start();

    let ttfb = chatd.chatload(&["ttfb", "-n", "5", "-r", "4", "-d", "2", "--drain", "5"]);
    assert_eq!(ttfb["mode"], "single", "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_ok"), 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_failed"), 0, "{ttfb:#}");
    let sent = num(&ttfb, "requests_sent");
    assert!(sent >= 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "responses"), sent, "{ttfb:#}");
    assert_eq!(num(&ttfb, "unanswered"), 0, "{ttfb:#}");
    assert_eq!(ttfb["ttfb"]["count"].as_u64(), Some(sent), "{ttfb:#}");
    assert!(
        ttfb["ttfb"]["max_ms"].as_f64().is_some_and(|m| m > 0.0),
        "{ttfb:#}"
    );

    let fan = chatd.chatload(&[
        "fanout", "-n", "6", "-s", "2", "-m", "20", "-d", "2", "--group", "load",
    ]);
    assert_eq!(fan["scope"], "load", "{fan:#}");
    assert_eq!(fan["dialect"], "native", "{fan:#}");
    assert_eq!(num(&fan, "connections_ok"), 6, "{fan:#}");
    let msgs = num(&fan, "messages_sent");
    assert!(msgs >= 20, "{fan:#}");
    // Every message reaches the 5 other members, once.
    assert_eq!(num(&fan, "expected_deliveries"), msgs * 5, "{fan:#}");
    assert_eq!(num(&fan, "deliveries"), msgs * 5, "{fan:#}");
    assert_eq!(num(&fan, "lost"), 0, "{fan:#}");
    assert_eq!(num(&fan, "duplicated"), 0, "{fan:#}");
    assert_eq!(num(&fan, "foreign"), 0, "{fan:#}");
    assert_eq!(fan["latency"]["count"].as_u64(), Some(msgs * 5), "{fan:#}");

    // Two seconds are far too short to fill chatd's send queue: only the
    // readers' side and the probe are checked here (BENCHMARKS.md has the cut).
    let slow = chatd.chatload(&[
        "slowreader",
        "-n",
        "4",
        "-s",
        "2",
        "-m",
        "20",
        "-d",
        "2",
        "--final-read",
        "1",
    ]);
    assert_eq!(num(&slow, "connections_ok"), 4 + 1 + 1, "{slow:#}");
    assert_eq!(num(&slow, "lost"), 0, "{slow:#}");
    assert_eq!(slow["slow"]["slow_clients"], 1, "{slow:#}");
    let probes = num(&slow["slow"], "probe_sent");
    assert!(probes >= 2, "{slow:#}");
    assert_eq!(num(&slow["slow"], "probe_answered"), probes, "{slow:#}");

    let idle = chatd.chatload(&[
        "idle",
        "-n",
        "20",
        "--pid",
        &chatd.child.id().to_string(),
        "--hold",
        "0.5",
    ]);
    assert_eq!(num(&idle, "connections_ok"), 20, "{idle:#}");
    assert_eq!(num(&idle, "still_open_after_hold"), 20, "{idle:#}");
    assert!(num(&idle["rss_after_hold"], "vm_rss") > 0, "{idle:#}");
}

#[test]
fn refuses_a_non_loopback_address_without_connecting() {
    let out = run_bounded(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_chatload"));
            c.args(["--addr", "192.0.2.1:8080", "ttfb", "-n", "1", "-d", "1"]);
            c
        },
        RUN_TIMEOUT,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}

/// A port on 127.0.0.1 that nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

#[test]
fn fails_with_one_line_when_no_connection_succeeds() {
    let port = closed_port();
    let addr = format!("127.0.0.1:{port}");
    let pid = std::process::id().to_string();
    for args in [
        &["ttfb", "-n", "3", "-d", "1"][..],
        &["fanout", "-n", "3", "-s", "1", "-d", "1"],
        &["idle", "-n", "3", "--pid", &pid],
        &["storm", "-n", "3"],
        &["sendqmem", "-k", "3", "--pid", &pid, "-d", "1"],
        &["dmflood", "-m", "2", "-d", "1"],
        &["cascade", "-n", "3", "-d", "1"],
        &["bigreply", "-u", "3", "-d", "1"],
        &["handshakes", "-c", "2", "-d", "1"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatload"));
        cmd.args(["--addr", &addr, "--quiet", "--timeout", "20"])
            .args(args);
        let out = run_bounded(cmd, RUN_TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} exited 0; stderr: {err}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed a report: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        let want = format!("chatload: no connection to {addr} succeeded (");
        assert!(lines[0].starts_with(&want), "{args:?}: {err}");
        assert!(
            lines[0].to_lowercase().contains("refused"),
            "{args:?}: {err}"
        );
    }
}

fn float(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v:#}"))
}

/// The attack scenarios of issue 8, briefly: only that each report shows
/// what chatload observed (chatd's limits change; the numbers go in
/// BENCHMARKS.md). A small queue and no pacing make the queues overflow
/// within the few seconds each run has.
#[test]
fn attack_scenarios_report_what_they_observed() {
    let chatd = Chatd::start_with(&["--sendq", "64KiB", "--flood-rate", "0"]);
    let pid = chatd.child.id().to_string();

    // First, while chatd's memory is fresh.
    let mem = chatd.chatload(&[
        "sendqmem",
        "-k",
        "10",
        "--pid",
        &pid,
        "--sendq",
        "64KiB",
        "-d",
        "2",
        "--final-read",
        "1",
    ]);
    assert_eq!(num(&mem, "connections_ok"), 10 + 1, "{mem:#}");
    assert_eq!(num(&mem, "sendq_bytes"), 65536, "{mem:#}");
    assert!(num(&mem, "lines_sent") > 0, "{mem:#}");
    assert!(num(&mem, "peak_rss") > 0, "{mem:#}");
    assert!(float(&mem, "peak_bytes_per_slow_client") > 0.0, "{mem:#}");
    assert!(float(&mem, "ratio_to_sendq") > 0.0, "{mem:#}");
    // Two seconds of an unpaced flood overflow 64 KiB queues.
    let cut = num(&mem, "cut");
    assert!((1..=10).contains(&cut), "{mem:#}");

    let storm = chatd.chatload(&["storm", "-n", "200", "--concurrency", "100", "--wait", "30"]);
    assert_eq!(num(&storm, "registered"), 200, "{storm:#}");
    assert_eq!(num(&storm, "connections_failed"), 0, "{storm:#}");
    assert_eq!(num(&storm["registration"], "count"), 200, "{storm:#}");
    let all = float(&storm, "all_registered_s");
    assert!(all > 0.0 && all < 30.0, "{storm:#}");
    assert!(
        float(&storm["registration"], "max_ms") <= all * 1e3,
        "{storm:#}"
    );

    let dm = chatd.chatload(&["dmflood", "-m", "2", "-d", "2", "--size", "1000"]);
    assert_eq!(num(&dm, "connections_ok"), 3, "{dm:#}");
    assert!(num(&dm, "dms_delivered") > 0, "{dm:#}");
    assert!(num(&dm, "victim_bytes") > 0, "{dm:#}");
    // A cut is reported with when and how, or not at all.
    assert_eq!(
        dm["victim_cut"].as_bool(),
        Some(dm["cut_after_s"].is_f64()),
        "{dm:#}"
    );

    let cascade = chatd.chatload(&["cascade", "-n", "50", "-d", "2", "--final-read", "1"]);
    assert_eq!(num(&cascade, "connections_ok"), 50 + 2, "{cascade:#}");
    let answered = num(&cascade, "pings_answered");
    assert!(answered > 0, "{cascade:#}");
    assert!(answered <= num(&cascade, "pings_sent"), "{cascade:#}");
    assert_eq!(num(&cascade["probe_rtt"], "count"), answered, "{cascade:#}");
    assert!(num(&cascade, "cut") <= 50, "{cascade:#}");
    // Pings during the cascade are a subset of the answered ones.
    assert!(
        num(&cascade, "pings_during_cascade") <= answered,
        "{cascade:#}"
    );

    let big = chatd.chatload(&["bigreply", "-u", "20", "-d", "1"]);
    assert_eq!(num(&big, "connections_ok"), 20, "{big:#}");
    assert!(num(&big, "replies") > 0, "{big:#}");
    assert!(float(&big, "bytes_per_s") > 0.0, "{big:#}");
}

/// `--dialect irc` and `mix` against chatd's IRC listener: IRC clients
/// register (with CAP), receive the fanout as `PRIVMSG &global` (mix: half of
/// them; the senders are half IRC too), and time `NAMES &global` replies.
#[test]
fn irc_and_mixed_clients_against_chatds_irc_listener() {
    let chatd = Chatd::start_with(&["--irc-listen", "127.0.0.1:0"]);
    for dialect in ["mix", "irc"] {
        let mut args: Vec<String> = chatd.dialect(dialect).into();
        args.extend(["fanout", "-n", "8", "-s", "3", "-m", "30", "-d", "2"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let fan = chatd.chatload(&args);
        assert_eq!(fan["dialect"], dialect, "{fan:#}");
        assert_eq!(num(&fan, "connections_ok"), 8, "{dialect}: {fan:#}");
        assert_eq!(num(&fan, "connections_failed"), 0, "{dialect}: {fan:#}");
        let msgs = num(&fan, "messages_sent");
        assert!(msgs >= 30, "{dialect}: {fan:#}");
        assert!(num(&fan, "deliveries") > 0, "{dialect}: {fan:#}");
        // Every message reaches the 7 other members, once.
        assert_eq!(num(&fan, "deliveries"), msgs * 7, "{dialect}: {fan:#}");
        assert_eq!(num(&fan, "lost"), 0, "{dialect}: {fan:#}");
        assert_eq!(num(&fan, "duplicated"), 0, "{dialect}: {fan:#}");
        assert_eq!(num(&fan, "foreign"), 0, "{dialect}: {fan:#}");
        assert_eq!(num(&fan, "malformed_lines"), 0, "{dialect}: {fan:#}");
    }

    let mut args: Vec<String> = chatd.dialect("irc").into();
    args.extend(["ttfb", "-n", "5", "-r", "4", "-d", "2", "--drain", "5"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ttfb = chatd.chatload(&args);
    assert_eq!(ttfb["dialect"], "irc", "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_ok"), 5, "{ttfb:#}");
    let sent = num(&ttfb, "requests_sent");
    let answered = num(&ttfb, "responses");
    assert!(answered > 0, "{ttfb:#}");
    assert_eq!(answered, sent, "{ttfb:#}");
    assert_eq!(num(&ttfb, "error_replies"), 0, "{ttfb:#}");
    assert_eq!(ttfb["ttfb"]["count"].as_u64(), Some(answered), "{ttfb:#}");
}

/// A TLS terminator on 127.0.0.1 (ephemeral port) in front of `upstream`,
/// with a fresh self-signed certificate for `localhost`: chatload's TLS path
/// against the real chatd, whatever listeners chatd has. Returns its address
/// and the certificate's PEM; it lives as long as the test process.
fn tls_proxy(upstream: &str) -> (String, String) {
    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
    use futures_rustls::rustls;

    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("certificate and key match");
    let acceptor = futures_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address").to_string();
    let upstream = upstream.to_owned();
    thread::spawn(move || {
        let listener = smol::net::TcpListener::try_from(listener).expect("async listener");
        smol::block_on(async {
            // Ends with the test process.
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                smol::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(up) = smol::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = up.set_nodelay(true);
                    let (mut tls_r, mut tls_w) = futures_lite::io::split(tls);
                    let (mut up_r, mut up_w) = (up.clone(), up);
                    // Each chunk is written and flushed at once: a TLS record
                    // must not wait for more bytes.
                    let to_server = async move {
                        let mut buf = vec![0u8; 16384];
                        while let Ok(n @ 1..) = tls_r.read(&mut buf).await {
                            if up_w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    };
                    let to_client = async move {
                        let mut buf = vec![0u8; 16384];
                        while let Ok(n @ 1..) = up_r.read(&mut buf).await {
                            if tls_w.write_all(&buf[..n]).await.is_err()
                                || tls_w.flush().await.is_err()
                            {
                                break;
                            }
                        }
                    };
                    futures_lite::future::race(to_server, to_client).await;
                })
                .detach();
            }
        });
    });
    (addr, ck.cert.pem())
}

/// `text` in a file under the temporary directory, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("chatload-{}-{tag}", std::process::id()));
        std::fs::write(&path, text).expect("write a temporary file");
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temporary paths are UTF-8 here")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn scenarios_over_tls_through_a_terminator_in_front_of_chatd() {
    let chatd = Chatd::start_with(&["--irc-listen", "127.0.0.1:0"]);
    let (native, pem) = tls_proxy(&chatd.addr);
    let (irc, irc_pem) = tls_proxy(chatd.irc_addr.as_deref().expect("IRC listener"));
    let ca = TempFile::new("ca.pem", &pem);
    // The scenarios run against the terminator, not chatd's own port.
    let over_tls = |args: &[&str]| {
        let mut all = vec!["--tls", "--ca-file", ca.path()];
        all.extend_from_slice(args);
        chatd.chatload_at(&native, &all)
    };

    let ttfb = over_tls(&["ttfb", "-n", "5", "-r", "4", "-d", "2", "--drain", "5"]);
    assert_eq!(ttfb["tls"], true, "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_ok"), 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_failed"), 0, "{ttfb:#}");
    let sent = num(&ttfb, "requests_sent");
    assert!(sent >= 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "responses"), sent, "{ttfb:#}");
    // Connect + handshake is measured apart, once per connection.
    assert_eq!(ttfb["connect"]["count"].as_u64(), Some(5), "{ttfb:#}");
    assert!(
        ttfb["connect"]["max_ms"].as_f64().is_some_and(|m| m > 0.0),
        "{ttfb:#}"
    );

    let fan = over_tls(&["fanout", "-n", "6", "-s", "2", "-m", "20", "-d", "2"]);
    assert_eq!(num(&fan, "connections_ok"), 6, "{fan:#}");
    let msgs = num(&fan, "messages_sent");
    assert!(msgs >= 20, "{fan:#}");
    assert_eq!(num(&fan, "deliveries"), msgs * 5, "{fan:#}");
    assert_eq!(num(&fan, "lost"), 0, "{fan:#}");
    assert_eq!(num(&fan, "duplicated"), 0, "{fan:#}");

    // IRC clients through their own terminator; both certificates verified
    // by one --ca-file holding both.
    let both = TempFile::new("both.pem", &format!("{pem}{irc_pem}"));
    let mixed = chatd.chatload_at(
        &native,
        &[
            "--ca-file",
            both.path(),
            "--dialect",
            "mix",
            "--irc-addr",
            &irc,
            "fanout",
            "-n",
            "6",
            "-s",
            "2",
            "-m",
            "20",
            "-d",
            "2",
        ],
    );
    assert_eq!(mixed["tls"], true, "{mixed:#}");
    assert_eq!(num(&mixed, "connections_ok"), 6, "{mixed:#}");
    let msgs = num(&mixed, "messages_sent");
    assert_eq!(num(&mixed, "deliveries"), msgs * 5, "{mixed:#}");
    assert_eq!(num(&mixed, "lost"), 0, "{mixed:#}");

    let hs = over_tls(&["handshakes", "-c", "2", "-d", "1"]);
    assert_eq!(hs["tls"], true, "{hs:#}");
    let done = num(&hs, "completed");
    assert!(done > 0, "{hs:#}");
    assert_eq!(num(&hs, "failed"), 0, "{hs:#}");
    assert_eq!(num(&hs, "refused"), 0, "{hs:#}");
    assert_eq!(hs["handshake"]["count"].as_u64(), Some(done), "{hs:#}");

    // The same scenario in plaintext, straight to chatd, with its CPU time.
    let pid = chatd.child.id().to_string();
    let plain = chatd.chatload(&["handshakes", "-c", "2", "-d", "1", "--pid", &pid]);
    assert_eq!(plain["tls"], false, "{plain:#}");
    assert!(num(&plain, "completed") > 0, "{plain:#}");
    assert!(plain["server_cpu_s"].as_f64().is_some(), "{plain:#}");
}

#[test]
fn tls_verification_failures_are_one_line() {
    let chatd = Chatd::start();
    let (native, _pem) = tls_proxy(&chatd.addr);
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let wrong = TempFile::new("wrong.pem", &other.cert.pem());
    let not_pem = TempFile::new("notpem.pem", "no certificate here\n");
    for (addr, args, want) in [
        (
            &native,
            vec!["--ca-file", wrong.path(), "ttfb", "-n", "2", "-d", "1"],
            "invalid peer certificate",
        ),
        (
            &native,
            vec!["--ca-file", not_pem.path(), "ttfb", "-n", "2", "-d", "1"],
            "holds no PEM certificate",
        ),
        // A plaintext port answered with TLS: chatd's HELLO is no handshake.
        (
            &chatd.addr,
            vec!["--tls", "handshakes", "-c", "1", "-d", "1"],
            "plaintext port",
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatload"));
        cmd.args(["--addr", addr, "--quiet", "--timeout", "20"])
            .args(&args);
        let out = run_bounded(cmd, RUN_TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} exited 0; stderr: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn scenarios_over_chatds_own_tls_listeners() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let cert = TempFile::new("chatd.crt", &ck.cert.pem());
    let key = TempFile::new("chatd.key", &ck.signing_key.serialize_pem());
    let chatd = Chatd::start_with(&[
        "--tls-listen",
        "127.0.0.1:0",
        "--irc-tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.path(),
        "--tls-key",
        key.path(),
    ]);
    let tls = chatd.tls_addr.clone().expect("TLS listener");
    let irc_tls = chatd.irc_tls_addr.clone().expect("IRC TLS listener");
    let verified = ["--ca-file", cert.path()];

    let mut args = verified.to_vec();
    args.extend(["ttfb", "-n", "5", "-r", "4", "-d", "2", "--drain", "5"]);
    let ttfb = chatd.chatload_at(&tls, &args);
    assert_eq!(ttfb["tls"], true, "{ttfb:#}");
    assert_eq!(num(&ttfb, "connections_ok"), 5, "{ttfb:#}");
    let sent = num(&ttfb, "requests_sent");
    assert!(sent >= 5, "{ttfb:#}");
    assert_eq!(num(&ttfb, "responses"), sent, "{ttfb:#}");
    assert_eq!(ttfb["connect"]["count"].as_u64(), Some(5), "{ttfb:#}");

    // IRC over TLS for every client: --irc-addr is chatd's --irc-tls-listen.
    let mut args = verified.to_vec();
    args.extend(["--dialect", "mix", "--irc-addr", &irc_tls]);
    args.extend(["fanout", "-n", "6", "-s", "2", "-m", "20", "-d", "2"]);
    let fan = chatd.chatload_at(&tls, &args);
    assert_eq!(num(&fan, "connections_ok"), 6, "{fan:#}");
    let msgs = num(&fan, "messages_sent");
    assert!(msgs >= 20, "{fan:#}");
    assert_eq!(num(&fan, "deliveries"), msgs * 5, "{fan:#}");
    assert_eq!(num(&fan, "lost"), 0, "{fan:#}");
    assert_eq!(num(&fan, "duplicated"), 0, "{fan:#}");

    let pid = chatd.child.id().to_string();
    let hs = chatd.chatload_at(
        &tls,
        &["--tls", "handshakes", "-c", "2", "-d", "1", "--pid", &pid],
    );
    assert_eq!(hs["tls"], true, "{hs:#}");
    assert!(num(&hs, "completed") > 0, "{hs:#}");
    assert_eq!(num(&hs, "failed"), 0, "{hs:#}");
    assert_eq!(num(&hs, "refused"), 0, "{hs:#}");
    assert!(hs["per_server_cpu_s"].as_f64().is_some(), "{hs:#}");

    let idle = chatd.chatload_at(
        &tls,
        &["--tls", "idle", "-n", "10", "--pid", &pid, "--hold", "0.5"],
    );
    assert_eq!(num(&idle, "still_open_after_hold"), 10, "{idle:#}");
}
