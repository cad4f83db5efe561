//! Alerts end to end on the real system, as root: denials through the real `gateway run`
//! pipeline (policy installed at /etc/gateway/gateway.toml), sudo's own refusals through real
//! sudo, the watcher against real `crontab` and the sudoers drop-in, core limits on real
//! children, and the systemd units through `systemd-analyze verify`.
//!
//! Every test here holds /run/gateway-tests.lock and puts back what it changed (Drop guards),
//! even when it fails. Needs: sudo, cron (for `crontab`), systemd (for `systemd-analyze`),
//! util-linux (`runuser`, `prlimit`), logrotate.

#[path = "support/alerts.rs"]
mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::*;

const POLICY: &str = "/etc/gateway/gateway.toml";

/// Installs the scratch policy as the system policy for the test's duration.
fn install_policy(s: &Setup) -> Replaced {
    Replaced::install(Path::new(POLICY), &fs::read(&s.config).unwrap(), 0o644)
}

/// `gateway run ARGV` as sudo would start it for `user` (None: root itself).
fn gateway_run(user: Option<(&str, u32)>, argv: &[&str]) -> std::process::Output {
    let mut c = Command::new(BIN);
    c.arg("run")
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    if let Some((name, uid)) = user {
        c.env("SUDO_USER", name).env("SUDO_UID", uid.to_string());
    }
    c.output().unwrap()
}

fn audit_lines(s: &Setup) -> Vec<serde_json::Value> {
    fs::read_to_string(s.dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A system user for the test, removed afterwards.
struct TestUser(String);

impl TestUser {
    fn create(name: &str) -> TestUser {
        let _ = run("userdel", &[name]);
        must(
            "useradd",
            &["-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name],
        );
        TestUser(name.into())
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = run("userdel", &[&self.0]);
    }
}

/// Root's crontab as it was, put back on drop (or removed if there was none).
struct CrontabGuard(Option<Vec<u8>>);

impl CrontabGuard {
    fn save() -> CrontabGuard {
        let o = run("crontab", &["-l"]);
        CrontabGuard(o.status.success().then_some(o.stdout))
    }

    fn set(text: &[u8]) {
        let f = std::env::temp_dir().join(format!("gwta-crontab-{}", std::process::id()));
        fs::write(&f, text).unwrap();
        must("crontab", &[f.to_str().unwrap()]);
        let _ = fs::remove_file(f);
    }
}

impl Drop for CrontabGuard {
    fn drop(&mut self) {
        match &self.0 {
            Some(old) => CrontabGuard::set(old),
            None => {
                let _ = run("crontab", &["-r"]);
            }
        }
    }
}

/// The shipped sudoers drop-in for `users`, with sudo's JSON log sent to `log`.
fn sudoers_for(users: &str, log: &Path) -> String {
    let text = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/sudoers.d/gateway"
    ))
    .unwrap();
    assert!(
        text.contains("logfile=/var/log/gateway-sudo.json"),
        "the drop-in logs sudo's events"
    );
    text.replace("@USERS@", users)
        .replace("/var/log/gateway-sudo.json", log.to_str().unwrap())
}

fn visudo_ok(text: &str) {
    let f = std::env::temp_dir().join(format!("gwta-sudoers-{}", std::process::id()));
    fs::write(&f, text).unwrap();
    let o = run("visudo", &["-cf", f.to_str().unwrap()]);
    let _ = fs::remove_file(&f);
    assert!(
        o.status.success(),
        "visudo -cf refuses the drop-in: {}",
        text_of(&o)
    );
}

fn text_of(o: &std::process::Output) -> String {
    text(o)
}

#[test]
fn denials_through_gateway_run_reach_the_webhook() {
    need_root();
    let _lock = system_lock();
    let rx = Receiver::start(0);
    // The first attempt fails, so the deliverer stays a moment and can be looked at.
    rx.script(vec![Reply::Status(503)]);
    let s = Setup::new(
        "run",
        &[],
        "",
        &[(
            "ops",
            "discord",
            rx.url(&format!("/api/webhooks/10/{SECRET}")),
        )],
    );
    let _policy = install_policy(&s);
    let denied = gateway_run(None, &["whoami", "--help"]);
    assert_eq!(denied.status.code(), Some(77), "{}", text(&denied));
    // The deliverer the request started is detached: its own session, stdio on /dev/null, and
    // nothing of the request's left open (else `output()` above would still be waiting).
    rx.wait_for(10, "the first attempt", |h| !h.is_empty());
    let pid: u32 = fs::read_to_string(s.spool.join("notify.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split(' ').collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "the deliverer leads its own session: {stat}"
    );
    assert_ne!(
        fields[1],
        std::process::id().to_string(),
        "and is not the test's child"
    );
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    // Audit mode runs what the rules deny (true ignores its argument) and alerts all the same.
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let would = gateway_run(Some(("nobody", nobody.uid.as_raw())), &["true", "--x"]);
    assert_eq!(would.status.code(), Some(0), "{}", text(&would));
    // An allowed request raises nothing.
    let allowed = gateway_run(None, &["true"]);
    assert_eq!(allowed.status.code(), Some(0), "{}", text(&allowed));
    let hits: Vec<Hit> = rx
        .wait_for(30, "the deny and the would-deny", |h| {
            h.iter().filter(|x| x.status == 204).count() >= 2
        })
        .into_iter()
        .filter(|h| h.status == 204)
        .collect();
    s.wait_idle(30);
    assert_eq!(
        rx.hits().len(),
        3,
        "one retry, nothing for the allowed request"
    );
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    let d = hits
        .iter()
        .find(|h| title(h) == "Denied: root via sudo")
        .expect("deny");
    assert_eq!(field(d, "Host"), Some(host));
    assert_eq!(
        field(d, "Command").as_deref(),
        Some("```\nwhoami --help\n```")
    );
    assert!(field(d, "Reason")
        .unwrap()
        .contains("unknown program \"whoami\""));
    assert!(hits
        .iter()
        .any(|h| title(h) == "Audit mode: the rules deny this, and it ran: nobody"));
    let audit = audit_lines(&s);
    assert_eq!(audit.len(), 3, "every decision has its audit record");
    assert!(
        s.spool_files("new").is_empty()
            && s.spool_files("queue").is_empty()
            && s.spool_files("out").is_empty()
    );
}

#[test]
fn a_burst_of_1000_denials_through_gateway_run_gives_few_messages_that_add_up() {
    need_root();
    let _lock = system_lock();
    let rx = Receiver::start(0);
    let s = Setup::new(
        "runburst",
        &[("coalesce_seconds", "10")],
        "",
        &[(
            "ops",
            "discord",
            rx.url(&format!("/api/webhooks/11/{SECRET}")),
        )],
    );
    let _policy = install_policy(&s);
    let start = Instant::now();
    for i in 0..1000 {
        let o = gateway_run(None, &["whoami", &format!("--try={i}")]);
        assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    }
    let took = start.elapsed().as_secs_f64();
    let hits = rx.wait_for(60, "messages accounting for 1000 denials", |h| {
        h.iter().map(accounts_for).sum::<u64>() >= 1000
    });
    s.wait_idle(60);
    let hits_after = rx.hits();
    let accounted: u64 = hits_after.iter().map(accounts_for).sum();
    // One window of 10 s gives at most a first message and a summary.
    let windows = (took / 10.0).ceil() as usize + 1;
    println!(
        "1000 denials through gateway run in {took:.1} s: {} messages, accounting for {accounted}",
        hits_after.len()
    );
    // Whatever else ran the gateway meanwhile used the installed policy, hence this spool.
    let strangers: Vec<String> = audit_lines(&s)
        .iter()
        .filter(|r| r["argv"][0] != "whoami")
        .map(|r| r["argv"].to_string())
        .collect();
    assert!(
        strangers.is_empty(),
        "{} denials this test did not make reached its spool, the first: {:?}",
        strangers.len(),
        strangers.first()
    );
    assert_eq!(accounted, 1000, "every denial is accounted for, once");
    assert!(
        hits_after.len() <= 2 * windows,
        "{} messages for {windows} windows",
        hits.len()
    );
    assert_eq!(audit_lines(&s).len(), 1000);
}

#[test]
fn with_no_webhook_5000_denials_through_gateway_run_leave_few_files_and_all_arrive_later() {
    need_root();
    let _lock = system_lock();
    let rx = Receiver::start(0);
    let window_s = 10.0;
    let s = Setup::new("runfold", &[("coalesce_seconds", "10")], "", &[]);
    // The shipped default: no webhooks file until the operator writes one.
    fs::remove_file(&s.webhooks).unwrap();
    let _policy = install_policy(&s);
    let start = Instant::now();
    for i in 0..5000 {
        let program = if i % 2 == 0 { "whoami" } else { "id" };
        let o = gateway_run(None, &[program, &format!("--try={i}")]);
        assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    }
    let took = start.elapsed().as_secs_f64();
    s.wait_idle(60);
    // Two kinds; per kind a first message and a summary per window the burst spans.
    let windows = (took / window_s).ceil() as usize + 1;
    let bound = 2 * 2 * windows;
    let (new, queue, out) = (
        s.spool_files("new").len(),
        s.spool_files("queue").len(),
        s.spool_files("out").len(),
    );
    println!(
        "5000 denials through gateway run in {took:.1} s, no webhooks file: new/ {new}, queue/ \
         {queue}, out/ {out} messages (bound {bound}: 2 kinds x 2 x {windows} windows)"
    );
    assert_eq!((new, queue), (0, 0), "every alert folded into a message");
    assert!(out <= bound, "{out} messages wait, more than {bound}");
    assert_eq!(audit_lines(&s).len(), 5000, "every decision is audited");
    // The operator configures a webhook: what arrives accounts for every denial.
    s.set_sinks(&[("siem", "json", rx.url(&format!("/ingest/{SECRET}")))]);
    let mut child = s.notify_child();
    let end = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "the deliverer still runs after 120 s");
        sleep(Duration::from_millis(50));
    }
    let hits = rx.hits();
    let (total, by) = json_account(&hits);
    println!(
        "then delivered: {} messages accounting for {total}: {by:?}",
        hits.len()
    );
    assert_eq!(total, 5000, "{by:?}");
    assert_eq!(by.get("whoami"), Some(&2500));
    assert_eq!(by.get("id"), Some(&2500));
    assert!(s.spool_files("out").is_empty());
}

#[test]
fn at_the_cap_denials_through_gateway_run_are_counted_and_the_note_says_how_many() {
    need_root();
    let _lock = system_lock();
    let rx = Receiver::start(0);
    // The path unit's trigger: the requests start no deliverer, as when none runs at all.
    let s = Setup::new(
        "runcap",
        &[("trigger", "\"systemd\""), ("spool_max_files", "100")],
        "",
        &[("siem", "json", rx.url(&format!("/ingest/{SECRET}")))],
    );
    let _policy = install_policy(&s);
    for i in 0..300 {
        let o = gateway_run(None, &["whoami", &format!("--try={i}")]);
        assert_eq!(
            o.status.code(),
            Some(77),
            "the deny is unchanged: {}",
            text(&o)
        );
        assert!(text(&o).contains("gateway: denied: unknown program \"whoami\""));
    }
    assert_eq!(s.spool_files("new").len(), 100, "new/ stops at its cap");
    assert_eq!(
        audit_lines(&s).len(),
        300,
        "the audit log has every decision"
    );
    let o = s.gateway(&["notify"]);
    assert!(
        text(&o).contains("200 alert(s) were counted, not queued"),
        "{}",
        text(&o)
    );
    let hits = rx.wait_for(30, "every denial accounted for", |h| {
        json_account(h).0 >= 300
    });
    let (total, by) = json_account(&hits);
    println!(
        "300 denials with new/ capped at 100: {} messages, {by:?}",
        hits.len()
    );
    assert_eq!(total, 300);
    assert_eq!(by.get("note"), Some(&200));
}

/// The processes running the executable at `exe` (by `/proc/PID/exe`).
fn processes_of(exe: &Path) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe))
        .collect()
}

/// Ends whatever a gateway started under another name left running, even when the test
/// fails: with `new/` open to others no request can queue an alert, so none starts another
/// process; then it waits for the last one (the deliverer, or a request in flight).
struct StopChain {
    new_dir: PathBuf,
    exe: PathBuf,
}

impl Drop for StopChain {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&self.new_dir, fs::Permissions::from_mode(0o755));
        let end = Instant::now() + Duration::from_secs(30);
        while !processes_of(&self.exe).is_empty() && Instant::now() < end {
            sleep(Duration::from_millis(20));
        }
        for pid in processes_of(&self.exe) {
            eprintln!(
                "killing {pid}, still running {} after 30 s",
                self.exe.display()
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = fs::set_permissions(&self.new_dir, fs::Permissions::from_mode(0o700));
    }
}

#[test]
fn a_gateway_under_another_name_starts_its_deliverer_instead_of_denying_itself() {
    need_root();
    let _lock = system_lock();
    let rx = Receiver::start(0);
    let s = Setup::new(
        "renamed",
        &[],
        "",
        &[(
            "ops",
            "discord",
            rx.url(&format!("/api/webhooks/13/{SECRET}")),
        )],
    );
    let _policy = install_policy(&s);
    // A shim installed as a hard link, or a renamed copy of the binary, has its own name in
    // argv[0] and in /proc/self/exe. The deliverer it starts must still be `gateway notify`:
    // run as a request for program "whoami", it is denied, queues an alert, starts the next.
    let shim = s.dir.join("whoami");
    fs::hard_link(BIN, &shim).unwrap();
    let _stop = StopChain {
        new_dir: s.spool.join("new"),
        exe: shim.clone(),
    };
    let o = Command::new(&shim)
        .arg("--renamed")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(77), "{}", text(&o));
    let end = Instant::now() + Duration::from_secs(15);
    while rx.hits().is_empty() && audit_lines(&s).len() < 2 && Instant::now() < end {
        sleep(Duration::from_millis(20));
    }
    // Time for a chain of self-denials to show (each link takes a few ms).
    sleep(Duration::from_millis(500));
    let argvs: Vec<String> = audit_lines(&s)
        .iter()
        .map(|r| r["argv"].to_string())
        .collect();
    assert_eq!(
        argvs.first().map(String::as_str),
        Some(r#"["whoami","--renamed"]"#)
    );
    assert_eq!(
        argvs.len(),
        1,
        "the only decision is the request made here; the trigger ran as a request instead \
         of starting the deliverer: {:?} ...",
        &argvs[..argvs.len().min(3)]
    );
    let hits = rx.wait_for(15, "the denial", |h| !h.is_empty());
    assert_eq!(title(&hits[0]), "Denied: root via sudo");
    assert_eq!(
        field(&hits[0], "Command").as_deref(),
        Some("```\nwhoami --renamed\n```")
    );
    s.wait_idle(30);
    assert_eq!(rx.hits().len(), 1, "one denial, one message");
}

#[test]
fn a_spool_that_cannot_be_written_costs_the_alert_only() {
    need_root();
    let _lock = system_lock();
    let s = Setup::new("badspool", &[], "", &[]);
    // The spool path is a file: nothing can be queued there.
    fs::write(&s.spool, b"not a directory").unwrap();
    let _policy = install_policy(&s);
    let denied = gateway_run(None, &["whoami"]);
    assert_eq!(
        denied.status.code(),
        Some(77),
        "the deny is unchanged: {}",
        text(&denied)
    );
    assert!(text(&denied).contains("gateway: denied: unknown program \"whoami\""));
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let would = gateway_run(Some(("nobody", nobody.uid.as_raw())), &["true", "--x"]);
    assert_eq!(
        would.status.code(),
        Some(0),
        "an allow stays an allow: {}",
        text(&would)
    );
    let audit = audit_lines(&s);
    assert_eq!(audit.len(), 2, "the audit records are written");
    assert_eq!(audit[0]["verdict"], "deny");
    assert_eq!(audit[1]["would_deny"], true);
}

#[test]
fn sudo_refusals_become_the_same_alert() {
    need_root();
    let _lock = system_lock();
    let rx = Receiver::start(0);
    let user = TestUser::create("gwtasudo");
    let s = Setup::new(
        "sudo",
        &[],
        "\n[users.gwtasudo]\nrules = [\"true-bare\"]\n",
        &[(
            "ops",
            "discord",
            rx.url(&format!("/api/webhooks/12/{SECRET}")),
        )],
    );
    let logdir = s.dir.join("sudolog");
    fs::create_dir(&logdir).unwrap();
    fs::set_permissions(&logdir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let log = logdir.join("sudo-events.json");
    let policy = fs::read_to_string(&s.config).unwrap().replace(
        "sudo_log = \"\"",
        &format!("sudo_log = {:?}", log.display().to_string()),
    );
    fs::write(&s.config, policy).unwrap();
    let dropin = sudoers_for(&user.0, &log);
    visudo_ok(&dropin);
    let _sudoers = Replaced::install(
        Path::new("/etc/sudoers.d/gwta-alerts"),
        dropin.as_bytes(),
        0o440,
    );
    // The user asks sudo for something only the gateway entry could grant: sudo refuses.
    let o = run(
        "runuser",
        &["-u", &user.0, "--", "sudo", "-n", "/usr/bin/whoami"],
    );
    assert!(!o.status.success(), "sudo must refuse: {}", text(&o));
    assert!(
        fs::metadata(&log).map(|m| m.uid() == 0).unwrap_or(false),
        "sudo wrote its JSON log"
    );
    // What gateway-notify.path starts when sudo writes its log.
    let n = s.gateway(&["notify", "--once"]);
    assert!(n.status.success(), "{}", text(&n));
    let hits = rx.wait_for(10, "sudo's refusal", |h| !h.is_empty());
    let h = &hits[0];
    assert_eq!(title(h), "sudo refused gwtasudo");
    assert_eq!(field(h, "User").as_deref(), Some("gwtasudo"));
    assert_eq!(field(h, "Channel").as_deref(), Some("sudo"));
    assert_eq!(field(h, "Run as").as_deref(), Some("root"));
    assert_eq!(
        field(h, "Command").as_deref(),
        Some("```\n/usr/bin/whoami\n```")
    );
    assert!(
        field(h, "Reason").unwrap().starts_with("sudo\\: ")
            || field(h, "Reason").unwrap().starts_with("sudo: "),
        "{h:?}"
    );
    // Read once: the next pass finds nothing new.
    assert!(s.gateway(&["notify", "--once"]).status.success());
    assert_eq!(rx.hits().len(), 1, "a sudo event alerts once");
}

#[test]
fn watch_reports_crontab_and_sudoers_changes_with_diffs() {
    need_root();
    let _lock = system_lock();
    assert!(
        Path::new("/usr/bin/crontab").exists(),
        "crontab is missing: apt-get install cron"
    );
    let rx = Receiver::start(0);
    let s = Setup::new(
        "watch",
        &[],
        "",
        &[(
            "ops",
            "discord",
            rx.url(&format!("/api/webhooks/13/{SECRET}")),
        )],
    );
    let crontab = CrontabGuard::save();
    let mut cron = crontab.0.clone().unwrap_or_default();
    cron.extend_from_slice(b"# gwta: root's crontab before the change\n");
    CrontabGuard::set(&cron);
    let dropin = sudoers_for("gwtawatch", Path::new("/var/log/gateway-sudo.json"));
    visudo_ok(&dropin);
    let sudoers = Replaced::install(
        Path::new("/etc/sudoers.d/gateway"),
        dropin.as_bytes(),
        0o440,
    );
    // The first run records the baseline and says nothing.
    let o = s.gateway(&["watch"]);
    assert!(
        o.status.success() && text(&o).contains("baseline recorded"),
        "{}",
        text(&o)
    );
    let o = s.gateway(&["watch"]);
    assert!(text(&o).contains("0 change(s)"), "{}", text(&o));
    // Root's crontab gains a line (with the real crontab command); the drop-in gains one too.
    cron.extend_from_slice(b"17 3 * * * /usr/bin/true gwta-e2e-marker\n");
    CrontabGuard::set(&cron);
    let edited = format!("{dropin}GATEWAY_USERS ALL=(root) NOPASSWD: /usr/bin/id\n");
    visudo_ok(&edited);
    sudoers.write(edited.as_bytes(), 0o440);
    // As gateway-watch.service runs it; it starts the deliverer itself (no systemd here).
    let o = s.gateway(&["watch"]);
    assert!(text(&o).contains("2 change(s)"), "{}", text(&o));
    let hits = rx.wait_for(30, "two change alerts", |h| h.len() >= 2);
    let find = |path: &str| {
        hits.iter()
            .find(|h| title(h) == format!("Changed: {path}"))
            .unwrap_or_else(|| panic!("no alert for {path}: {hits:#?}"))
    };
    let c = embed(find("/var/spool/cron/crontabs/root"))["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        c.starts_with("modified\n```diff\n--- a/var/spool/cron/crontabs/root"),
        "{c}"
    );
    assert!(c.contains("\n # gwta: root's crontab before the change\n+17 3 * * * /usr/bin/true gwta-e2e-marker\n"), "{c}");
    let d = embed(find("/etc/sudoers.d/gateway"))["description"]
        .as_str()
        .unwrap()
        .to_string();
    println!("crontab alert:\n{c}\nsudoers alert:\n{d}");
    assert!(
        d.contains("+GATEWAY_USERS ALL=(root) NOPASSWD: /usr/bin/id"),
        "{d}"
    );
    s.wait_idle(30);
    // The snapshots are root's alone.
    let snaps = s.dir.join("snapshots");
    assert_eq!(fs::metadata(&snaps).unwrap().mode() & 0o777, 0o700);
    for e in fs::read_dir(&snaps).unwrap().flatten() {
        assert_eq!(
            e.metadata().unwrap().mode() & 0o077,
            0,
            "{:?} is root-only",
            e.path()
        );
    }
    // Putting the drop-in back as it was is a change too.
    drop(sudoers);
    let o = s.gateway(&["watch"]);
    assert!(text(&o).contains("1 change(s)"), "{}", text(&o));
    rx.wait_for(30, "the third change alert", |h| h.len() >= 3);
}

#[test]
fn everything_the_gateway_runs_has_no_core_dumps() {
    need_root();
    let _lock = system_lock();
    let s = Setup::new("core", &[], "", &[]);
    let _policy = install_policy(&s);
    let core_line = |out: &[u8]| -> String {
        String::from_utf8_lossy(out)
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .map(|l| {
                l.split_whitespace()
                    .skip(4)
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    // The caller allows cores (as sudo might pass on): the child proves the gateway's own limit.
    let direct = must(
        "prlimit",
        &[
            "--core=unlimited:unlimited",
            "--",
            "cat",
            "/proc/self/limits",
        ],
    );
    assert_eq!(
        core_line(&direct.stdout),
        "unlimited unlimited",
        "the test's own baseline"
    );
    // (argv, why)
    let rows: [(&[&str], &str); 2] = [
        (
            &["cat", "/proc/self/limits"],
            "a program the gateway execs in its place",
        ),
        (
            &["head", "/proc/self/limits"],
            "a program run under a time limit (supervised child)",
        ),
    ];
    for (argv, why) in rows {
        let mut args = vec!["--core=unlimited:unlimited", "--", BIN, "run"];
        args.extend(argv);
        let o = run("prlimit", &args);
        assert!(o.status.success(), "{why}: {}", text(&o));
        assert_eq!(
            core_line(&o.stdout),
            "0 0",
            "{why}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
}

#[test]
fn contrib_core_limit_files_work_with_real_pam_and_sysctl() {
    need_root();
    let _lock = system_lock();
    let contrib = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib");
    // sysctl.d: every key exists on this kernel and has a value it accepts.
    let sysctl = fs::read_to_string(format!("{contrib}/sysctl.d/50-gateway.conf")).unwrap();
    let settings: Vec<(String, String)> = sysctl
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key = value");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    assert_eq!(
        settings,
        [("fs.suid_dumpable".to_string(), "0".to_string())]
    );
    assert!(Path::new("/proc/sys/fs/suid_dumpable").exists());
    // limits.d: rendered for a real user, pam_limits (runuser's PAM session) applies it.
    let user = TestUser::create("gwtacore");
    let template = fs::read_to_string(format!("{contrib}/limits.d/gateway.conf")).unwrap();
    let rendered = template.replace("@USER@", &user.0);
    let _limits = Replaced::install(
        Path::new("/etc/security/limits.d/gwta-alerts.conf"),
        rendered.as_bytes(),
        0o644,
    );
    let o = must(
        "prlimit",
        &[
            "--core=unlimited:unlimited",
            "--",
            "runuser",
            "-u",
            &user.0,
            "--",
            "cat",
            "/proc/self/limits",
        ],
    );
    let line = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string();
    assert!(
        line.split_whitespace().skip(4).take(2).eq(["0", "0"]),
        "{line}"
    );
    // logrotate: the file parses (debug mode changes nothing).
    let o = must(
        "logrotate",
        &["--debug", &format!("{contrib}/logrotate.d/gateway")],
    );
    assert!(!text(&o).to_lowercase().contains("error"), "{}", text(&o));
    // systemd-coredump drop-in: a [Coredump] section that keeps nothing.
    let dropin =
        fs::read_to_string(format!("{contrib}/systemd/coredump.conf.d/gateway.conf")).unwrap();
    assert!(dropin.contains("[Coredump]\nStorage=none\nProcessSizeMax=0"));
}

#[test]
fn the_systemd_units_verify() {
    need_root();
    let dir = scratch("units");
    let units = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/systemd");
    let mut names = Vec::new();
    for e in fs::read_dir(units).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_file() {
            // The binary as built here stands in for /usr/local/bin/gateway.
            let text = fs::read_to_string(e.path())
                .unwrap()
                .replace("/usr/local/bin/gateway", BIN);
            fs::write(dir.join(&name), text).unwrap();
            names.push(name);
        }
    }
    names.sort();
    assert_eq!(
        names,
        [
            "gateway-notify.path",
            "gateway-notify.service",
            "gateway-notify.timer",
            "gateway-watch.path",
            "gateway-watch.service",
            "gateway-watch.timer"
        ]
    );
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(names.iter().map(|n| dir.join(n)))
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let complaints: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(&dir.display().to_string()) || l.contains("gateway-"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze complains: {out}");
    let _ = fs::remove_dir_all(dir);
}
