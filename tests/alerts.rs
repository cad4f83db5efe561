//! Alert delivery against a real HTTP server on 127.0.0.1 that plays Discord, Slack and a JSON
//! endpoint. Alerts enter the spool through the same functions a denied request uses
//! (`Alert::from_decision` on a real decision, then `Spool::put`); the real `gateway notify`
//! binary delivers them. Each test has its own spool, policy and receiver, so they run in
//! parallel; nothing here touches system state (see alerts_system.rs for that). The HTTPS test
//! makes its certificates with the openssl command.

#[path = "support/alerts.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use gateway::alert::spool::{Spool, Stored};
use gateway::alert::{now_ms, Alert, Kind};
use gateway::audit::Context;
use gateway::decision::{decide, Channel, Input, Request};
use gateway::policy::Policy;

use support::*;

/// What a denied request queues: a real decision from the scratch policy, as `raise` builds it.
fn request_alert(config: &Path, user: &str, argv: &[&str]) -> Alert {
    let policy = Policy::load(config).expect("scratch policy loads");
    let req = Request {
        user: user.into(),
        channel: Channel::Sudo,
        input: Input::Argv(argv.iter().map(|s| s.to_string()).collect()),
    };
    let d = decide(&policy, &req);
    let ctx = Context {
        time: SystemTime::now(),
        host: "gwta-host".into(),
        uid: Some(0),
        ssh_client: None,
    };
    Alert::from_decision(&req, &d, &ctx)
}

fn put(s: &Setup, a: &Alert) {
    Spool::new(&s.spool).put(a).expect("queue an alert");
}

/// `put` with the scratch policy's own spool cap, as `alert::raise` does for a request.
fn put_capped(s: &Setup, a: &Alert) -> Stored {
    let policy = Policy::load(&s.config).expect("scratch policy loads");
    Spool::for_settings(&policy.alerts)
        .put(a)
        .expect("queue an alert")
}

/// The waiting messages in `out/`, as the deliverer wrote them.
fn out_messages(s: &Setup) -> Vec<serde_json::Value> {
    s.spool_files("out")
        .iter()
        .map(|n| {
            serde_json::from_slice(&std::fs::read(s.spool.join("out").join(n)).unwrap()).unwrap()
        })
        .collect()
}

/// Every file under the spool (new/, queue/, out/ and the state, lock and ledger files).
fn spool_file_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        spool_file_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A deny of `program` by `user` at `ms` (a distinct kind per user and program).
fn deny(user: &str, program: &str, ms: u64) -> Alert {
    let mut a = Alert::new(
        Kind::Deny,
        ms,
        "gwta-host".into(),
        format!("unknown program {program:?}"),
    );
    a.user = Some(user.into());
    a.channel = Some("sudo".into());
    a.argv = Some(vec![program.into(), format!("--n{ms}")]);
    a
}

fn wait_exit(child: &mut std::process::Child, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output_ref();
            assert!(status.success(), "notify failed: {out}");
            return out;
        }
        assert!(
            Instant::now() < end,
            "gateway notify still runs after {secs} s"
        );
        sleep(Duration::from_millis(50));
    }
}

trait OutputRef {
    fn wait_with_output_ref(&mut self) -> String;
}

impl OutputRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(o) = self.stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        if let Some(e) = self.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

#[test]
fn discord_slack_and_json_webhooks_receive_the_alert() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new(
        "content",
        &[],
        "",
        &[
            (
                "ops-discord",
                "discord",
                rx.url(&format!("/api/webhooks/1/{SECRET}")),
            ),
            (
                "ops-slack",
                "slack",
                rx.url(&format!("/services/T0/B0/{SECRET}")),
            ),
            ("siem", "json", rx.url(&format!("/ingest/{SECRET}"))),
        ],
    );
    let denied = request_alert(&s.config, "root", &["whoami", "--help"]);
    let would = request_alert(&s.config, "nobody", &["true", "--x"]);
    assert_eq!((denied.kind, would.kind), (Kind::Deny, Kind::WouldDeny));
    put(&s, &denied);
    put(&s, &would);
    let out = s.gateway(&["notify", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
    let hits = rx.wait_for(10, "two messages on each of three webhooks", |h| {
        h.len() == 6
    });
    let on = |prefix: &str| -> Vec<Hit> {
        hits.iter()
            .filter(|h| h.path.starts_with(prefix))
            .cloned()
            .collect()
    };

    // Discord: one embed per alert, with host, user, channel, argv, reason and time.
    let discord = on("/api/webhooks/");
    assert_eq!(discord.len(), 2);
    let d = discord
        .iter()
        .find(|h| title(h) == "Denied: root via sudo")
        .expect("the deny");
    assert_eq!(field(d, "Host").as_deref(), Some("gwta-host"));
    assert_eq!(field(d, "User").as_deref(), Some("root"));
    assert_eq!(field(d, "Channel").as_deref(), Some("sudo"));
    assert_eq!(
        field(d, "Command").as_deref(),
        Some("```\nwhoami --help\n```")
    );
    assert!(
        field(d, "Reason").unwrap().contains("unknown program"),
        "{d:?}"
    );
    let time = field(d, "Time").unwrap();
    assert!(
        time.len() == 27 && time.ends_with('Z'),
        "RFC 3339 time: {time}"
    );
    assert_eq!(embed(d)["timestamp"], time.as_str());
    assert_eq!(d.body["allowed_mentions"]["parse"], serde_json::json!([]));
    let w = discord.iter().find(|h| h != &d).unwrap();
    assert_eq!(
        title(w),
        "Audit mode: the rules deny this, and it ran: nobody"
    );
    assert_eq!(field(w, "Refused by rule").as_deref(), Some("true-bare"));
    assert!(field(w, "Reason")
        .unwrap()
        .contains("option --x is not allowed"));

    // Slack: a fallback text and blocks, with the same facts.
    let slack = on("/services/");
    assert_eq!(slack.len(), 2);
    let sl = slack
        .iter()
        .find(|h| h.body["text"] == "Denied: root via sudo")
        .expect("slack deny");
    let blocks = sl.body["blocks"].to_string();
    assert!(
        blocks.contains("whoami --help") && blocks.contains("gwta-host"),
        "{blocks}"
    );

    // The JSON webhook gets the alert as data.
    let json = on("/ingest/");
    let j = json
        .iter()
        .find(|h| h.body["alert"]["kind"] == "deny")
        .expect("json deny");
    assert_eq!(
        j.body["alert"]["argv"],
        serde_json::json!(["whoami", "--help"])
    );
    assert_eq!(j.body["alert"]["user"], "root");
    assert_eq!(j.body["count"], 1);
    assert!(
        s.spool_files("out").is_empty() && s.spool_files("queue").is_empty(),
        "all delivered, spool empty"
    );
}

#[test]
fn the_url_never_appears_in_output_logs_or_the_spool() {
    need_root();
    let rx = Receiver::start(0);
    rx.script(vec![Reply::Status(404), Reply::Status(404)]);
    let closed = free_port();
    let s = Setup::new(
        "secret",
        &[],
        "",
        &[
            (
                "gone",
                "discord",
                rx.url(&format!("/api/webhooks/9/{SECRET}?wait=1")),
            ),
            (
                "down",
                "json",
                format!("http://127.0.0.1:{closed}/x/{SECRET}"),
            ),
        ],
    );
    put(&s, &deny("root", "whoami", now_ms()));
    let mut seen = String::new();
    // Delivery failures (404, connection refused), the operator's test, the policy check.
    for args in [&["notify", "--once"][..], &["alert", "test"], &["check"]] {
        let o = s.gateway(args);
        seen.push_str(&text(&o));
        if args[0] == "alert" {
            assert_eq!(o.status.code(), Some(69), "{}", text(&o));
            let t = text(&o);
            assert!(
                t.contains("gone (discord): not delivered: HTTP 404 (the webhook was deleted"),
                "{t}"
            );
            assert!(
                t.contains("down (json): not delivered: cannot connect"),
                "{t}"
            );
        }
    }
    // A webhooks file with an error on the URL's line, and one that others can read.
    std::fs::write(&s.webhooks, format!("[[webhook]]\nname = [\"{SECRET}\"]\n")).unwrap();
    let o = s.gateway(&["check"]);
    assert_eq!(
        o.status.code(),
        Some(78),
        "a broken webhooks file fails the check"
    );
    seen.push_str(&text(&o));
    s.set_sinks(&[(
        "d",
        "discord",
        format!("https://discord.com/api/webhooks/1/{SECRET}"),
    )]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s.webhooks, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = s.gateway(&["check"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        text(&o).contains("only root can read (chmod 600)"),
        "{}",
        text(&o)
    );
    seen.push_str(&text(&o));
    seen.push_str(&text(&s.gateway(&["notify", "--once"])));
    assert!(
        seen.contains("gone") && seen.contains("404"),
        "the failures are reported: {seen}"
    );
    assert!(
        !seen.contains(SECRET),
        "the URL leaked into output:\n{seen}"
    );
    let spool = all_bytes(&s.spool);
    assert!(
        !spool.is_empty() && !spool.contains(SECRET),
        "the URL leaked into the spool"
    );
    assert!(
        !s.spool_files("out").is_empty(),
        "the undelivered message is kept"
    );
}

#[test]
fn nothing_is_lost_during_an_outage_a_crash_or_after_it() {
    need_root();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/api/webhooks/2/{SECRET}");
    let s = Setup::new("outage", &[], "", &[("ops", "discord", url)]);
    let t0 = now_ms();
    let first: Vec<Alert> = (0..5)
        .map(|i| deny("root", &format!("prog{i}"), t0 + i))
        .collect();
    for a in &first {
        put(&s, a);
    }
    // The webhook is down (nothing listens): the deliverer keeps retrying...
    let mut crashed = s.notify_child();
    sleep(Duration::from_millis(2500));
    assert!(
        crashed.try_wait().unwrap().is_none(),
        "a deliverer waits out an outage"
    );
    // ... and dies (a crash, a reboot). Every alert is still on disk, as a message.
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    assert_eq!(
        s.spool_files("out").len(),
        5,
        "five messages wait in the spool"
    );
    // After the reboot, a new deliverer starts during the outage; the webhook comes back.
    let second: Vec<Alert> = (5..8)
        .map(|i| deny("root", &format!("prog{i}"), t0 + i))
        .collect();
    for a in &second {
        put(&s, a);
    }
    let mut after = s.notify_child();
    sleep(Duration::from_millis(1500));
    let rx = Receiver::start(port);
    wait_exit(&mut after, 60);
    let hits = rx.hits();
    let got: BTreeSet<String> = hits.iter().filter_map(|h| field(h, "Command")).collect();
    let want: BTreeSet<String> = first
        .iter()
        .chain(&second)
        .map(|a| format!("```\n{}\n```", a.argv.as_ref().unwrap().join(" ")))
        .collect();
    assert_eq!(got, want, "every alert arrives after the outage");
    assert_eq!(hits.len(), 8, "and each once");
    assert!(s.spool_files("out").is_empty() && s.spool_files("queue").is_empty());
}

#[test]
fn a_429_retry_after_is_honoured() {
    need_root();
    // (webhook kind, the 429 reply, the wait it asks for, why)
    let rows = [
        (
            "discord",
            Reply::TooMany {
                header: None,
                body: Some(r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#.into()),
            },
            1.5,
            "Discord says how long in its JSON body",
        ),
        (
            "slack",
            Reply::TooMany {
                header: Some("2".into()),
                body: None,
            },
            2.0,
            "Slack and others use the Retry-After header",
        ),
    ];
    for (kind, reply, asked, why) in rows {
        let rx = Receiver::start(0);
        rx.script(vec![reply]);
        let s = Setup::new(
            &format!("429-{kind}"),
            &[],
            "",
            &[("rl", kind, rx.url(&format!("/hook/{SECRET}")))],
        );
        put(&s, &deny("root", "whoami", now_ms()));
        let mut child = s.notify_child();
        let out = wait_exit(&mut child, 30);
        let hits = rx.hits();
        assert_eq!(
            hits.iter().map(|h| h.status).collect::<Vec<_>>(),
            [429, 204],
            "{why}: {out}"
        );
        let waited = hits[1].at.duration_since(hits[0].answered).as_secs_f64();
        println!("429 from a {kind} webhook asked for {asked} s; the next attempt came after {waited:.3} s");
        assert!(
            waited >= asked,
            "{why}: retried after {waited:.3} s, before {asked} s"
        );
        assert!(
            waited < asked + 1.5,
            "{why}: retried only after {waited:.3} s"
        );
        assert_eq!(
            hits[0].body, hits[1].body,
            "{why}: the same message is sent again"
        );
    }
}

#[test]
fn a_burst_of_1000_alerts_gives_a_bounded_number_of_messages_that_add_up() {
    need_root();
    // (kinds in the burst, most messages allowed, why)
    let rows = [
        (
            1,
            2,
            "one kind: the first alone, one summary for the other 999",
        ),
        (
            100,
            21,
            "100 kinds: 10 firsts, their 10 summaries and one overflow summary",
        ),
    ];
    for (kinds, bound, why) in rows {
        let rx = Receiver::start(0);
        let s = Setup::new(
            &format!("burst{kinds}"),
            &[],
            "",
            &[(
                "ops",
                "discord",
                rx.url(&format!("/api/webhooks/3/{SECRET}")),
            )],
        );
        let t0 = now_ms();
        for i in 0..1000u64 {
            put(&s, &deny("root", &format!("p{}", i % kinds), t0 + i / 10));
        }
        let mut child = s.notify_child();
        wait_exit(&mut child, 60);
        let hits = rx.hits();
        let accounted: u64 = hits.iter().map(accounts_for).sum();
        println!(
            "burst of 1000 denials of {kinds} kind(s): {} messages, accounting for {accounted}",
            hits.len()
        );
        assert!(hits.len() <= bound, "{why}: {} messages", hits.len());
        assert_eq!(
            accounted, 1000,
            "{why}: the messages account for every alert"
        );
        if kinds == 1 {
            assert_eq!(
                title(&hits[1]),
                "999 more denials of the same kind in the last 2 seconds"
            );
            let d = embed(&hits[1])["description"].as_str().unwrap();
            assert!(
                d.contains("p0 --n") && d.contains("and 90 more different ones"),
                "{d}"
            );
        } else {
            assert!(
                hits.iter()
                    .any(|h| title(h).contains("more alerts of other kinds")),
                "{why}"
            );
        }
        assert!(s.spool_files("queue").is_empty() && s.spool_files("out").is_empty());
    }
}

#[test]
fn one_deliverer_at_a_time_and_each_message_once() {
    need_root();
    let rx = Receiver::start(0);
    rx.script(vec![Reply::Status(500), Reply::Status(503)]);
    let s = Setup::new(
        "lock",
        &[("max_messages_per_window", "100")],
        "",
        &[(
            "ops",
            "discord",
            rx.url(&format!("/api/webhooks/4/{SECRET}")),
        )],
    );
    let t0 = now_ms();
    for i in 0..30 {
        put(&s, &deny("root", &format!("q{i}"), t0 + i));
    }
    // Ten deliverers at once, as a burst of denials would start them.
    let mut children: Vec<_> = (0..10).map(|_| s.notify_child()).collect();
    let mut busy = 0;
    for c in children.iter_mut() {
        if wait_exit(c, 60).contains("another gateway notify") {
            busy += 1;
        }
    }
    assert!(busy >= 1, "the others saw the lock held");
    let hits = rx.wait_for(10, "30 delivered messages", |h| {
        h.iter().filter(|x| x.status == 204).count() >= 30
    });
    let ok: Vec<String> = hits
        .iter()
        .filter(|h| h.status == 204)
        .filter_map(|h| field(h, "Command"))
        .collect();
    let unique: BTreeSet<&String> = ok.iter().collect();
    assert_eq!(
        (ok.len(), unique.len()),
        (30, 30),
        "each alert delivered exactly once"
    );
}

#[test]
fn old_alerts_expire_and_the_next_message_says_so() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new(
        "expire",
        &[("expire_hours", "1")],
        "",
        &[("ops", "discord", rx.url("/api/webhooks/5/x"))],
    );
    put(&s, &deny("root", "old", now_ms() - 2 * 3_600_000));
    put(&s, &deny("root", "fresh", now_ms()));
    let o = s.gateway(&["notify", "--once"]);
    assert!(
        text(&o).contains("1 alert(s) expired after 1 h undelivered"),
        "{}",
        text(&o)
    );
    let hits = rx.wait_for(10, "the fresh alert", |h| !h.is_empty());
    assert_eq!(hits.len(), 1);
    assert!(field(&hits[0], "Command").unwrap().contains("fresh"));
    let d = embed(&hits[0])["description"].as_str().unwrap_or("");
    assert!(d.contains("1 older alert(s) expired undelivered"), "{d}");
}

#[test]
fn an_unreadable_spool_file_becomes_a_notice_not_a_silent_loss() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new(
        "corrupt",
        &[],
        "",
        &[("ops", "discord", rx.url("/api/webhooks/6/x"))],
    );
    put(&s, &deny("root", "ok", now_ms()));
    std::fs::write(
        s.spool.join("new").join("0000000000001-1-1.json"),
        b"{not json",
    )
    .unwrap();
    let o = s.gateway(&["notify", "--once"]);
    assert!(o.status.success(), "{}", text(&o));
    let hits = rx.wait_for(10, "two messages", |h| h.len() == 2);
    assert!(
        hits.iter()
            .any(|h| title(h).contains("an alert file in the spool was unreadable")),
        "{hits:#?}"
    );
    assert!(s.spool_files("queue").is_empty());
}

#[test]
fn no_webhook_file_keeps_alerts_as_messages_until_one_exists() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new("nowebhook", &[], "", &[]);
    std::fs::remove_file(&s.webhooks).unwrap();
    put(&s, &deny("root", "waiting", now_ms()));
    let o = s.gateway(&["notify"]);
    assert!(
        text(&o).contains("does not exist; alerts wait in the spool"),
        "{}",
        text(&o)
    );
    assert!(s.spool_files("queue").is_empty(), "folded into its message");
    assert_eq!(s.spool_files("out").len(), 1, "kept, as a message");
    let o = s.gateway(&["alert", "test"]);
    assert_eq!(o.status.code(), Some(69), "{}", text(&o));
    s.set_sinks(&[("ops", "discord", rx.url("/api/webhooks/7/x"))]);
    let o = s.gateway(&["alert", "test"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("ops (discord): delivered (HTTP 204)"),
        "{}",
        text(&o)
    );
    assert!(s.gateway(&["notify", "--once"]).status.success());
    let hits = rx.wait_for(10, "the test message and the kept alert", |h| h.len() == 2);
    assert!(title(&hits[0]).starts_with("Test message from gateway"));
    assert!(field(&hits[1], "Command").unwrap().contains("waiting"));
}

#[test]
fn redirects_are_not_followed_and_no_proxy_is_taken_from_the_environment() {
    use std::io::{Read, Write};
    need_root();
    // Where a redirect points, and what the environment names as a proxy: neither may be hit.
    let elsewhere = Receiver::start(0);
    let proxy = Receiver::start(0);
    let rx = Receiver::start(0);
    // A webhook that answers 307 with a Location, as a moved or hijacked endpoint would.
    let mover = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let mover_port = mover.local_addr().unwrap().port();
    let location = elsewhere.url("/api/webhooks/9/moved");
    // Answers one request, or gives up after 20 s (when the client never comes, the asserts
    // below say why).
    mover.set_nonblocking(true).unwrap();
    let moved = std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(20);
        let mut c = loop {
            match mover.accept() {
                Ok((c, _)) => break c,
                Err(_) if Instant::now() < end => sleep(Duration::from_millis(5)),
                Err(_) => return,
            }
        };
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8192];
        let _ = c.read(&mut buf);
        let reply = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        );
        let _ = c.write_all(reply.as_bytes());
    });
    let s = Setup::new(
        "noproxy",
        &[],
        "",
        &[
            (
                "moved",
                "json",
                format!("http://127.0.0.1:{mover_port}/hook/{SECRET}"),
            ),
            (
                "direct",
                "discord",
                rx.url(&format!("/api/webhooks/8/{SECRET}")),
            ),
        ],
    );
    let proxy_url = proxy.url("");
    let o = std::process::Command::new(BIN)
        .args(["alert", "test", "--config", s.config.to_str().unwrap()])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(
            [
                "http_proxy",
                "HTTP_PROXY",
                "https_proxy",
                "HTTPS_PROXY",
                "ALL_PROXY",
            ]
            .map(|k| (k, &proxy_url)),
        )
        .output()
        .unwrap();
    moved.join().unwrap();
    let t = text(&o);
    assert!(
        t.contains("moved (json): refused (HTTP 307)"),
        "a redirect is an answer: {t}"
    );
    assert!(t.contains("direct (discord): delivered (HTTP 204)"), "{t}");
    assert!(!t.contains(SECRET), "the URL leaked: {t}");
    assert_eq!(rx.hits().len(), 1, "the webhook was reached directly");
    assert!(elsewhere.hits().is_empty(), "the redirect was followed");
    assert!(
        proxy.hits().is_empty(),
        "the proxy from the environment was used"
    );
}

#[test]
fn https_webhooks_are_verified_against_the_trust_store() {
    need_root();
    let certs = scratch("tls-certs");
    let (tls, ca) = tls_server(&certs);
    let rx = Receiver::start_tls(tls);
    let url = format!("https://127.0.0.1:{}/api/webhooks/8/{SECRET}", rx.port);
    let s = Setup::new("tls", &[], "", &[("ops", "discord", url)]);
    let test = |ca: Option<&Path>| {
        let mut c = std::process::Command::new(BIN);
        c.args(["alert", "test", "--config", s.config.to_str().unwrap()])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        if let Some(ca) = ca {
            // rustls-native-certs reads the trust store from here instead of the system's.
            c.env("SSL_CERT_FILE", ca);
        }
        c.output().unwrap()
    };
    // (trust store, expected status, expected report, why)
    let rows = [
        (
            None,
            69,
            "not delivered: cannot connect",
            "a certificate the system does not trust is refused",
        ),
        (
            Some(ca.as_path()),
            0,
            "ops (discord): delivered (HTTP 204)",
            "with its CA trusted, TLS goes through",
        ),
    ];
    for (store, code, report, why) in rows {
        let o = test(store);
        assert_eq!(o.status.code(), Some(code), "{why}: {}", text(&o));
        assert!(text(&o).contains(report), "{why}: {}", text(&o));
        assert!(!text(&o).contains(SECRET), "{why}: the URL leaked");
    }
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "only the trusted attempt reached the server");
    assert!(title(&hits[0]).starts_with("Test message from gateway"));
    let _ = std::fs::remove_dir_all(certs);
}

#[test]
fn with_no_webhook_5000_denials_wait_as_a_bounded_number_of_messages_and_all_arrive_later() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new("fold5000", &[("coalesce_seconds", "60")], "", &[]);
    std::fs::remove_file(&s.webhooks).unwrap();
    // 5,000 denials of 5 kinds over ten minutes (two hours ago), entered in two halves with a
    // deliverer pass after each, as a flood with a deliverer running sees it.
    let (kinds, window_s, span_s) = (5u64, 60u64, 600u64);
    let t0 = now_ms() - 2 * 3_600_000;
    let alert = |i: u64| deny("root", &format!("p{}", i % kinds), t0 + i * 120);
    // Per kind, at most a first message and a summary per window of alert time, and a pass
    // boundary can split one window in two: 2 x 5 x (600 / 60 + 1) = 110 messages.
    let bound = (2 * kinds * (span_s / window_s + 1)) as usize;
    for half in [0..2500u64, 2500..5000] {
        for i in half {
            assert_eq!(put_capped(&s, &alert(i)), Stored::File);
        }
        assert_eq!(
            s.spool_files("new").len(),
            2500,
            "one file per alert, before a pass"
        );
        let o = s.gateway(&["notify"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            s.spool_files("new").is_empty() && s.spool_files("queue").is_empty(),
            "every alert folded into a message"
        );
        assert!(
            s.spool_files("out").len() <= bound,
            "{} messages, more than {bound}",
            s.spool_files("out").len()
        );
    }
    let waiting = s.spool_files("out").len();
    let files = spool_file_count(&s.spool);
    println!(
        "5000 denials of {kinds} kinds, no webhook: {waiting} messages wait (bound {bound}), \
         {files} files in the whole spool"
    );
    // out/, plus state.json, notify.lock and intake.json.
    assert!(files <= bound + 3, "{files} files in the spool");
    let held: u64 = out_messages(&s)
        .iter()
        .map(|m| m["body"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(held, 5000, "the waiting messages account for every denial");
    // A webhook appears: what arrives accounts for all 5,000, 1,000 of each kind.
    s.set_sinks(&[("siem", "json", rx.url(&format!("/ingest/{SECRET}")))]);
    let mut child = s.notify_child();
    wait_exit(&mut child, 120);
    let hits = rx.hits();
    let (total, by) = json_account(&hits);
    println!(
        "delivered: {} messages accounting for {total}: {by:?}",
        hits.len()
    );
    assert_eq!(hits.len(), waiting, "each waiting message sent once");
    assert_eq!(total, 5000);
    assert!(
        by.len() == kinds as usize && by.values().all(|&n| n == 1000),
        "{by:?}"
    );
    assert!(s.spool_files("out").is_empty());
}

#[test]
fn parts_of_an_open_window_fold_into_one_message_sent_when_it_closes() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new("foldopen", &[("coalesce_seconds", "20")], "", &[]);
    std::fs::remove_file(&s.webhooks).unwrap();
    let (t0, i0) = (now_ms(), Instant::now());
    // Two bursts of 1,000 of one kind inside one window, a deliverer pass after each.
    for part in 0..2u64 {
        for i in 0..1000u64 {
            put(&s, &deny("root", "whoami", t0 + part * 100 + i / 20));
        }
        assert!(s.gateway(&["notify"]).status.success());
    }
    let mut counts: Vec<(u64, bool)> = out_messages(&s)
        .iter()
        .map(|m| {
            (
                m["body"]["count"].as_u64().unwrap(),
                m["window"].is_object(),
            )
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [(1, false), (1999, true)],
        "the first alone, the other 1,999 in the window's one waiting summary"
    );
    // With a webhook, the first goes at once; the summary only once its window has closed.
    s.set_sinks(&[(
        "ops",
        "discord",
        rx.url(&format!("/api/webhooks/20/{SECRET}")),
    )]);
    let o = s.gateway(&["notify", "--once"]);
    assert!(o.status.success(), "{}", text(&o));
    let hits = rx.wait_for(10, "the first denial", |h| !h.is_empty());
    assert_eq!(title(&hits[0]), "Denied: root via sudo");
    assert_eq!(
        s.spool_files("out").len(),
        1,
        "the summary waits for its window"
    );
    let mut child = s.notify_child();
    wait_exit(&mut child, 60);
    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(
        title(&hits[1]),
        "1999 more denials of the same kind in the last 20 seconds"
    );
    let after = hits[1].at.duration_since(i0).as_secs_f64();
    assert!(
        after >= 19.9,
        "sent {after:.1} s after the first denial, before its window closed"
    );
    assert_eq!(hits.iter().map(accounts_for).sum::<u64>(), 2000);
}

#[test]
fn a_spool_over_its_cap_folds_the_oldest_messages_into_a_note_that_counts_them() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new(
        "capout",
        &[("coalesce_seconds", "1"), ("spool_max_files", "100")],
        "",
        &[],
    );
    std::fs::remove_file(&s.webhooks).unwrap();
    let t0 = now_ms() - 3_600_000;
    // The oldest message is a change of sudoers: the cap folds denials before it.
    let mut watch = Alert::new(
        Kind::Watch,
        t0 - 1000,
        "gwta-host".into(),
        "modified".into(),
    );
    watch.path = Some("/etc/sudoers".into());
    watch.diff = Some("+gwta ALL=(ALL) NOPASSWD: ALL".into());
    put(&s, &watch);
    // Denials 700 ms apart in 1 s windows: about one message each, 2,400 in all, entered 60
    // at a time (under the cap of new/) with a deliverer pass after each.
    let total = 2400u64;
    for round in 0..total / 60 {
        for i in round * 60..(round + 1) * 60 {
            let who = if i % 2 == 0 { "whoami" } else { "id" };
            assert_eq!(
                put_capped(&s, &deny("root", who, t0 + i * 700)),
                Stored::File
            );
        }
        let o = s.gateway(&["notify"]);
        assert!(o.status.success(), "{}", text(&o));
        let n = s.spool_files("out").len();
        assert!(
            n <= 100,
            "round {round}: {n} messages wait, over the cap of 100"
        );
    }
    let notes: Vec<serde_json::Value> = out_messages(&s)
        .into_iter()
        .filter(|m| m["body"]["form"] == "dropped")
        .collect();
    assert!(!notes.is_empty(), "the surplus became a note");
    for n in &notes {
        let tally: u64 = n["body"]["tally"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[1].as_u64().unwrap())
            .sum();
        assert_eq!(
            tally,
            n["body"]["count"].as_u64().unwrap(),
            "a note's tally adds up"
        );
        assert!(
            n["folded"].is_null(),
            "the folded messages are gone, and the note says so"
        );
    }
    let held: u64 = out_messages(&s)
        .iter()
        .map(|m| m["body"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        held,
        total + 1,
        "notes and messages still account for every alert"
    );
    // Delivered: the counts still add up to every alert, and the sudoers diff is intact.
    s.set_sinks(&[("siem", "json", rx.url(&format!("/ingest/{SECRET}")))]);
    let mut child = s.notify_child();
    wait_exit(&mut child, 120);
    let hits = rx.hits();
    let (sum, by) = json_account(&hits);
    println!(
        "{} denials and a watch alert under a cap of 100 files: {} messages delivered, {by:?}",
        total,
        hits.len()
    );
    assert_eq!(sum, total + 1);
    assert!(by["note"] > 0 && by["note"] < total, "{by:?}");
    let note = hits
        .iter()
        .find(|h| h.body["form"] == "dropped")
        .expect("a note");
    assert!(
        note.body["title"].as_str().unwrap().ends_with(
            "alerts not kept: the spool was full (counted here; the audit log has each)"
        ),
        "{}",
        note.body["title"]
    );
    assert!(
        hits.iter()
            .any(|h| h.body["alert"]["diff"] == "+gwta ALL=(ALL) NOPASSWD: ALL"),
        "the change of sudoers was not folded away"
    );
}

#[test]
fn at_the_cap_of_new_a_request_counts_its_alert_and_a_note_says_how_many() {
    need_root();
    let rx = Receiver::start(0);
    let s = Setup::new("capnew", &[("spool_max_files", "100")], "", &[]);
    std::fs::remove_file(&s.webhooks).unwrap();
    // No deliverer runs (none is started here): new/ fills up to its cap, then requests count.
    let t0 = now_ms();
    let stored: Vec<Stored> = (0..1000u64)
        .map(|i| {
            put_capped(
                &s,
                &deny("root", if i < 700 { "whoami" } else { "id" }, t0 + i),
            )
        })
        .collect();
    let counted = stored.iter().filter(|&&x| x == Stored::Counted).count();
    assert_eq!((s.spool_files("new").len(), counted), (100, 900));
    s.set_sinks(&[("siem", "json", rx.url(&format!("/ingest/{SECRET}")))]);
    let mut child = s.notify_child();
    let out = wait_exit(&mut child, 60);
    assert!(
        out.contains("900 alert(s) were counted, not queued"),
        "the deliverer says so: {out}"
    );
    let hits = rx.hits();
    let (sum, by) = json_account(&hits);
    println!(
        "1000 denials with new/ capped at 100: {} messages, {by:?}",
        hits.len()
    );
    assert_eq!(
        sum, 1000,
        "the messages and the note account for every denial"
    );
    let note = hits
        .iter()
        .find(|h| h.body["form"] == "dropped")
        .expect("a note");
    assert_eq!(note.body["count"], 900);
    assert_eq!(
        note.body["tally"],
        serde_json::json!([["deny root whoami", 600], ["deny root id", 300]]),
        "by kind: the first 100 denials were written, all of them whoami"
    );
    assert_eq!(note.body["first"], gateway::alert::rfc3339_ms(t0 + 100));
    assert_eq!(note.body["last"], gateway::alert::rfc3339_ms(t0 + 999));
    // The ledger is back to an empty new/: the next denial is written again.
    assert_eq!(
        put_capped(&s, &deny("root", "whoami", now_ms())),
        Stored::File
    );
}
